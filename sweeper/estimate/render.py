"""`estimate` and `run --dry-run`: what a study would run and what it would cost, from the cost
model alone (no Ray, no training).

Grid and random studies list their trials (random draws are seeded, so they are known in
advance). Optuna studies sample adaptively: they show the space, the sample count and the
cost range (cheapest and dearest corner of the space, and the mean over uniform draws).
Costs are train + evaluation FLOPs, the quantity `budget.pflops` and the ledger charge, turned
into wall time and device-hours on this machine's CPU (a rate measured for each step shape)
and on the GPU kinds of `sweeper.estimate.cost_model.GPU_RATES`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pandas as pd

from s3l_core.config import TrialConfig
from sweeper.estimate.cost_model import GPU_RATES, DeviceRate, TrialCost, concurrent_trials, makespan, predicted_cost, predicted_seconds
from sweeper.study.resolution_schedule import stage_spec_label
from sweeper.study.plan import is_sampled, pending_points, unique_points
from sweeper.study.space import random_points
from sweeper.study.cost_checks import corner_points
from sweeper.study.model import ENUMERATED, Study

MEAN_DRAWS = 256  # uniform draws averaged for an Optuna study's expected trial cost


def _knob_text(key: str, value: Any) -> Any:
    """A knob's value for a table cell: a resolution schedule as `14x80%,28x20%` (or `14x8,28x2` in epochs)."""
    return stage_spec_label(value) if key == "resolution" and isinstance(value, list) else value


def trial_table(points: list[dict[str, Any]], configs: list[TrialConfig]) -> pd.DataFrame:
    """One row per point (and its config): its knobs, epochs and predicted PFLOPs (train, eval, total)."""
    rows = []
    for point, config in zip(points, configs):
        cost = predicted_cost(config)
        knobs = {k: _knob_text(k, v) for k, v in point.items()}
        rows.append({**knobs, "epochs": config.epochs, "train_pflops": cost.train_pflops, "eval_pflops": cost.eval_pflops, "total_pflops": cost.total_pflops})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------ sampled studies


def space_lines(study: Study) -> list[str]:
    """Each knob and what it may take: `resolution: choice of 8, 12, 16`, `epochs: int in [10, 100]`."""
    lines = []
    for key, spec in study.space.items():
        if spec.kind in ENUMERATED:
            values = ", ".join(str(_knob_text(key, v)) for v in spec.values)
            lines.append(f"  {key}: {spec.kind} of {values}")
        else:
            lo, hi = spec.values
            lines.append(f"  {key}: {spec.kind} in [{lo:g}, {hi:g}]")
    if len(study.seeds) > 1:
        lines.append(f"  seed: choice of {', '.join(map(str, study.seeds))}")
    return lines


@dataclass(frozen=True)
class CostRange:
    cheapest: tuple[dict[str, Any], TrialCost]
    dearest: tuple[dict[str, Any], TrialCost]
    mean: TrialCost


def cost_range(study: Study) -> CostRange:
    """Cheapest and dearest corner (each knob at its cheapest / dearest value with the others at
    the base trial; cost grows with each knob on its own, so the corners bound the space), and
    the mean over uniform draws of the space."""
    cheap, dear = corner_points(study)
    draws = random_points(study, MEAN_DRAWS, study.search.seed)
    costs = [predicted_cost(study.trial_config(p)) for p in draws]
    mean = TrialCost(sum(c.train_pflops for c in costs) / len(costs), sum(c.eval_pflops for c in costs) / len(costs))
    return CostRange((cheap, predicted_cost(study.trial_config(cheap))), (dear, predicted_cost(study.trial_config(dear))), mean)


# ------------------------------------------------------------------------------ devices


@dataclass(frozen=True)
class DeviceTimes:
    """One device kind's predicted seconds for each trial, in launch order. For this CPU,
    `rate.tflops` is the study's FLOPs over its predicted seconds (each shape has its own rate)."""

    rate: DeviceRate
    trial_seconds: tuple[float, ...]


def device_times(study: Study, configs: list[TrialConfig] | None, per_trial_pflops: list[float], measure_cpu: bool = True,
                 remeasure: bool = False) -> list[DeviceTimes]:
    """This machine's CPU (measured once per step shape, cached; `remeasure`: measured again) and
    the GPU kinds of the cost model. `configs` lists the trials (None for a sampled study: its CPU
    rate is the base trial's)."""
    from sweeper.estimate.device_rate import cache_path, cpu_rate, cpu_rate_name, cpu_trial_seconds, measured_note

    threads = max(1, int(study.resources.cpu))
    times = []
    if configs is not None:
        cpu = cpu_trial_seconds(configs, threads, measure_cpu, remeasure)
        if cpu is not None:
            tflops = sum(per_trial_pflops) * 1e3 / sum(cpu.seconds) if sum(cpu.seconds) > 0 else 0.0
            # Shapes, not trials: trials differing only in seed, epochs or data share one (so may a schedule's stages).
            shapes = f"{cpu.shapes} step shape{'s' if cpu.shapes != 1 else ''} (network x resolution) of its {len(configs)} trial{'s' if len(configs) != 1 else ''}"
            source = f"measured on this machine at the {shapes} ({measured_note(list(cpu.rates))}; {cache_path()})"
            times.append(DeviceTimes(DeviceRate(cpu_rate_name(threads), tflops, source, False), cpu.seconds))
    else:
        base = cpu_rate(study.trial_config(), threads, measure_cpu, remeasure)
        if base is not None:
            times.append(DeviceTimes(base, tuple(predicted_seconds(p, base) for p in per_trial_pflops)))
    times.extend(DeviceTimes(rate, tuple(predicted_seconds(p, rate) for p in per_trial_pflops)) for rate in GPU_RATES)
    return times


def _duration(seconds: float) -> str:
    if seconds < 0.01:
        return "< 0.01 s"
    if seconds < 10:  # a GPU row of a small study: "0 s" said it takes no time at all
        return f"{seconds:.2g} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def device_lines(study: Study, times: list[DeviceTimes]) -> list[str]:
    """Per device kind: wall time per trial (mean), for the study (trials started in order as
    slots free up) and device-hours."""
    lines = [f"  {'device':<22} {'TFLOP/s':>8}  {'per trial':>10}  {'study wall':>10}  {'device-hours':>12}  rate"]
    for device in times:
        rate, seconds = device.rate, device.trial_seconds
        at_once = concurrent_trials(study.max_concurrent, study.resources.cpu, study.resources.gpu, rate.is_gpu, os.cpu_count() or 1)
        study_s = makespan(seconds, at_once)
        if rate.is_gpu:
            held = study.resources.gpu if study.resources.gpu > 0 else 1.0
            hours, unit = sum(seconds) * held / 3600, "GPU-h"
            where = f"1 {rate.name}, {at_once} at once"
        else:
            hours, unit = sum(seconds) * study.resources.cpu / 3600, "CPU-h"
            where = f"{os.cpu_count()} CPUs, {at_once} at once"
        mean = sum(seconds) / len(seconds)
        lines.append(f"  {rate.name:<22} {rate.tflops:>8.3g}  {_duration(mean):>10}  {_duration(study_s):>10}  {hours:>8.3g} {unit}  {rate.source}; {where}")
    return lines


def render_estimate(study: Study, finished_ids: set[str] | None = None, measure_cpu: bool = True, remeasure: bool = False) -> str:
    """The text of `estimate` (and of `run --dry-run` when `finished_ids` is given: only what would
    run); `remeasure` measures the CPU rate of every step shape again."""
    out = [f"study {study.name}: {study.search.algorithm} search, {study.resources.cpu:g} CPU + {study.resources.gpu:g} GPU per trial, up to {study.max_concurrent} at once"]
    if is_sampled(study):
        count = study.search.num_samples
        spread = cost_range(study)
        out.append(f"{count} trials, SAMPLED by {study.search.algorithm} as results come in (not known in advance); the space:")
        out.extend(space_lines(study))
        out.append("cost per trial, train + eval PFLOPs (what budget.pflops and the ledger charge):")
        for label, (point, cost) in (("cheapest corner", spread.cheapest), ("dearest corner", spread.dearest)):
            knobs = ", ".join(f"{k}={_knob_text(k, v)}" for k, v in point.items() if k != "seed")
            out.append(f"  {label:<16} {cost.total_pflops:.4g} PFLOPs ({cost.train_pflops:.3g} train + {cost.eval_pflops:.3g} eval): {knobs}")
        out.append(f"  {'expected mean':<16} {spread.mean.total_pflops:.4g} PFLOPs (over {MEAN_DRAWS} uniform draws of the space)")
        out.append(f"expected total: {count} x {spread.mean.total_pflops:.4g} = {count * spread.mean.total_pflops:.4g} PFLOPs "
                   f"(range {count * spread.cheapest[1].total_pflops:.3g} to {count * spread.dearest[1].total_pflops:.3g})")
        configs, totals = None, [spread.mean.total_pflops] * count
    else:
        everything = unique_points(study)
        points = everything if finished_ids is None else pending_points(study, finished_ids)
        configs = [study.trial_config(p) for p in points]
        table = trial_table(points, configs)
        count = len(points)
        if finished_ids is not None:
            out.append(f"{len(everything)} trials, {len(everything) - count} already finished in the store, {count} would run" + (":" if count else "."))
        else:
            out.append(f"{count} trials" + (f" (random draws, search seed {study.search.seed})" if study.search.algorithm == "random" else "") + ":")
        if count:
            out.append(table.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
            out.append(f"total: {count} trials, {table['total_pflops'].sum():.4g} PFLOPs ({table['train_pflops'].sum():.3g} train + "
                       f"{table['eval_pflops'].sum():.3g} eval; budget.pflops and the ledger charge both)")
        totals = list(table["total_pflops"]) if count else []
    if count and totals:
        out.append("predicted wall time (training and evaluation FLOPs at each rate; Ray start-up and data loading apart):")
        out.extend(device_lines(study, device_times(study, configs, totals, measure_cpu, remeasure)))
    if study.budget.gpu_hours is not None:
        out.append(f"budget: {study.budget.gpu_hours:g} GPU-hours (no new trial starts once spent)")
    if study.budget.pflops is not None:
        out.append(f"budget: {study.budget.pflops:g} PFLOPs, train + eval (no new trial starts once spent)")
    return "\n".join(out)
