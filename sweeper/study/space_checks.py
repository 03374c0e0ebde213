"""Checks of what a study sweeps: `space` entries (their form, and every value as a trial),
`seeds`, and the number of trials they make together."""

from __future__ import annotations

import itertools
import json
import math
import types
import typing
from typing import Any, Union

from s3l_core.config import ConfigError, TrialConfig, apply_overrides, did_you_mean
from s3l_core.quoting import brief
from sweeper.study.checker import StudyChecker, integral
from sweeper.study.model import ENUMERATED, SearchConfig, SpaceSpec
from sweeper.study.schema import KNOBS, LEAF_KNOBS, SPEC_KINDS, is_int, is_number
from sweeper.study.trial_checks import data_dir_problem, dataset_problem

# Caps that keep a study runnable and `validate`/`estimate` fast for anything accepted.
MAX_TRIALS = 10_000
MAX_SEED = 2**31 - 1  # what numpy, torch and parquet's int columns all take
SPEC_FORMS = "{grid: [...]}, {choice: [...]}, {uniform: [lo, hi]}, {loguniform: [lo, hi]} or {int: [lo, hi]}"


def check_seeds(c: StudyChecker) -> tuple[int, ...]:
    if "seeds" not in c.data:
        return (0,)
    seeds = c.data["seeds"]
    if not isinstance(seeds, list) or not seeds:
        c.problem("seeds", f"expected a non-empty list of seeds such as [0, 1, 2], got {brief(seeds)}")
        return (0,)
    ok = True
    seeds = [integral(s) for s in seeds]
    for i, s in enumerate(seeds):
        if not is_int(s) or not 0 <= s <= MAX_SEED:
            c.problem(f"seeds[{i}]", f"{brief(s)} is not an integer from 0 to {MAX_SEED}")
            ok = False
    first: dict[int, int] = {}  # seed -> where it is first listed (one pass: a study may list 10,000 seeds)
    for i, s in enumerate(seeds):
        if is_int(s) and first.setdefault(s, i) != i:
            c.problem(f"seeds[{i}]", f"seed {s} is listed twice")
            ok = False
    return tuple(seeds) if ok else (0,)


def check_space(c: StudyChecker, base: dict[str, Any], search: SearchConfig) -> dict[str, SpaceSpec]:
    """The valid entries of `space`; each value is checked as a trial of its own."""
    raw = c.data.get("space")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        c.problem("space", f"expected a mapping of dotted trial keys to grids or distributions, got {brief(raw)}")
        return {}
    space: dict[str, SpaceSpec] = {}
    for knob, entry in raw.items():
        path = f"space.{knob}"
        spec = parse_spec(c, path, entry)
        if not isinstance(knob, str) or knob not in KNOBS:
            if knob == "seed":
                c.problem(path, "seeds are set with the top-level `seeds` list, not in space")
            else:
                c.problem(path, f"unknown knob '{knob}'" + did_you_mean(str(knob), LEAF_KNOBS))
            continue
        if spec is None:
            continue
        if spec.kind in ENUMERATED:
            if _check_values(c, base, knob, path, spec):
                space[knob] = spec
        elif _check_distribution(c, base, knob, path, spec):
            space[knob] = spec
        if search.algorithm == "grid" and spec.kind not in ENUMERATED:
            c.problem(path, f"{spec.kind} needs search.algorithm random, optuna-tpe or optuna-nsga2; "
                      "grid search enumerates grid and choice entries only")
        if search.algorithm.startswith("optuna") and spec.kind == "grid":
            c.warn(path, f"{search.algorithm} samples grid entries like choice entries; it does not try every value")
    return space


def parse_spec(c: StudyChecker, path: str, entry: Any) -> SpaceSpec | None:
    """The form of one entry (`{grid: [...]}`, `{uniform: [lo, hi]}`, ...), its values unchecked."""
    if isinstance(entry, list):
        c.problem(path, f"expected one of {SPEC_FORMS}, got a bare list (did you mean {{grid: {json.dumps(entry)}}}?)")
        return None
    if not isinstance(entry, dict):
        c.problem(path, f"expected one of {SPEC_FORMS}, got {brief(entry)}; a fixed value belongs under trial:")
        return None
    unknown = [k for k in entry if k not in SPEC_KINDS]
    for k in unknown:
        c.problem(f"{path}.{k}", f"unknown kind '{k}'" + did_you_mean(str(k), list(SPEC_KINDS)))
    if unknown:
        return None
    if len(entry) != 1:
        c.problem(path, f"expected exactly one of {SPEC_FORMS}, got {len(entry)} keys")
        return None
    ((kind, values),) = entry.items()
    kpath = f"{path}.{kind}"
    if kind in ENUMERATED:
        if not isinstance(values, list):
            c.problem(kpath, f"expected a list of values, got {brief(values)}")
            return None
        if not values:
            c.problem(kpath, f"the {kind} is empty: list at least one value")
            return None
        return SpaceSpec(kind, tuple(values))
    return _parse_range(c, kind, kpath, values)


def _parse_range(c: StudyChecker, kind: str, kpath: str, values: Any) -> SpaceSpec | None:
    if not isinstance(values, list) or len(values) != 2:
        c.problem(kpath, f"expected [lo, hi], got {brief(values)}")
        return None
    ok = True
    for i, v in enumerate(values):
        if kind == "int" and not is_int(v):
            c.problem(f"{kpath}[{i}]", f"{brief(v)} is not an integer")
            ok = False
        elif not is_number(v):
            c.problem(f"{kpath}[{i}]", f"{brief(v)} is not a number")
            ok = False
    if not ok:
        return None
    lo, hi = values
    if not lo < hi:
        c.problem(kpath, f"lo ({lo}) must be less than hi ({hi})")
        return None
    if kind == "loguniform" and lo <= 0:
        c.problem(f"{kpath}[0]", f"loguniform needs lo > 0, got {lo}")
        return None
    return SpaceSpec(kind, (lo, hi) if kind == "int" else (float(lo), float(hi)))


def _check_values(c: StudyChecker, base: dict[str, Any], knob: str, path: str, spec: SpaceSpec) -> bool:
    ok = True
    seen: dict[str, int] = {}
    for i, v in enumerate(spec.values):
        vpath = f"{path}.{spec.kind}[{i}]"
        canonical = json.dumps(v, sort_keys=True, default=str)
        if canonical in seen:
            c.problem(vpath, f"{brief(v)} is listed twice (also at [{seen[canonical]}])")
            ok = False
            continue
        seen[canonical] = i
        ok = _check_value(c, base, knob, vpath, v) and ok
    return ok


def _check_value(c: StudyChecker, base: dict[str, Any], knob: str, vpath: str, value: Any) -> bool:
    """Does `value` at `knob` give a valid trial? Problems are reported at `vpath`."""
    if knob == "dataset" and isinstance(value, str):
        message = dataset_problem(value)
        if message:
            c.problem(vpath, message)
            return False
    if knob == "data_dir" and isinstance(value, str):
        message = data_dir_problem(value)
        if message:
            c.problem(vpath, message)
            return False
    try:
        TrialConfig.from_dict(apply_overrides(base, {knob: value}))
    except ConfigError as exc:
        ok = True
        for p in exc.problems:
            if p.path == knob or p.path.startswith((knob + ".", knob + "[")):
                c.problem(vpath + p.path[len(knob):], p.message)
                ok = False
        return ok
    return True


def _check_distribution(c: StudyChecker, base: dict[str, Any], knob: str, path: str, spec: SpaceSpec) -> bool:
    hint = KNOBS[knob]
    accepts = set(typing.get_args(hint)) if typing.get_origin(hint) in (Union, types.UnionType) else {hint}
    if float not in accepts and int not in accepts:
        c.problem(path, f"{knob} is not numeric: use {{grid: [...]}} or {{choice: [...]}}")
        return False
    if spec.kind in ("uniform", "loguniform") and float not in accepts:
        c.problem(path, f"{spec.kind} draws real numbers but {knob} takes an integer: use {{int: [lo, hi]}}")
        return False
    lo_ok = _check_value(c, base, knob, f"{path}.{spec.kind}[0]", spec.values[0])
    hi_ok = _check_value(c, base, knob, f"{path}.{spec.kind}[1]", spec.values[1])
    return lo_ok and hi_ok


def check_trial_count(c: StudyChecker, space: dict[str, SpaceSpec], seeds: tuple[int, ...], search: SearchConfig) -> None:
    """Counted, not enumerated, so a huge grid is refused at once."""
    if search.algorithm == "grid":
        count = math.prod(len(s.values) for s in space.values() if s.kind in ENUMERATED) * len(seeds)
        if count > MAX_TRIALS:
            c.problem("space", f"the grid makes {count:,} trials (every combination, times {len(seeds)} seeds); "
                      f"a study may have at most {MAX_TRIALS:,}: split it into several studies")
    elif search.num_samples > MAX_TRIALS:
        c.problem("search.num_samples", f"{search.num_samples:,} samples: a study may have at most {MAX_TRIALS:,} trials")


def check_grid_combinations(c: StudyChecker, base: dict[str, Any], space: dict[str, SpaceSpec], limit: int = 2_000) -> None:
    """Values valid one at a time can clash together (e.g. stage epochs and epochs)."""
    keys = list(space)
    if len(keys) < 2:
        return
    bad = 0
    for combo in itertools.islice(itertools.product(*(space[k].values for k in keys)), limit):
        point = dict(zip(keys, combo))
        try:
            TrialConfig.from_dict(apply_overrides(base, point))
        except ConfigError as exc:
            c.problem("space", f"the combination {json.dumps(point)} is not a valid trial: {exc}")
            bad += 1
            if bad == 3:
                return
