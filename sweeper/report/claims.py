"""Every sentence the report states about results, built from configuration means, fair pairs
and trend fits (``compare``), intervals (``stats``) and the verdict rule (``verdict``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .compare import _float, config_floors_beaten, config_words, configurations, reported_column, selection_column
from .stats import BINOMIAL, NONE, Interval, difference_interval, mean_interval
from .summary import describe_value, fmt_acc, fmt_pct, label, plural, primary_cost, scaled_kind, status_counts
from .verdict import (
    FAILS,
    FLOOR_WORDS,
    HOLDS,
    INCONCLUSIVE,
    NOT_MEANINGFUL,
    classify,
    floor_columns,
    floors_in,
    settle_words,
)


def points(x: float) -> str:
    """Signed accuracy points, one decimal ('+0.4', '-3.0'; '0.0', never '-0.0')."""
    if not math.isfinite(x):
        return "–"
    text = f"{100 * x:+.1f}"
    return "0.0" if text in ("+0.0", "-0.0") else text


def interval_words(interval: Interval, as_points: bool = False) -> str:
    """'95% CI 87.9–89.1%' (or '95% CI -0.9 to +0.1 points'); 'no interval' when unknown."""
    if not interval.known:
        return "no interval: one seed and no test-set size"
    if as_points:
        return f"95% CI {points(interval.low)} to {points(interval.high)} points"
    return f"95% CI {100 * interval.low:.1f}–{100 * interval.high:.1f}%"


def seed_words(interval: Interval) -> str:
    return "one seed, test-set noise only" if interval.method == BINOMIAL else plural(interval.n, "seed")


# ---------------------------------------------------------------- headline


@dataclass(frozen=True)
class Headline:
    counts: dict[str, int]
    accuracy: str  # the reported (test) column
    cost: str
    configs: pd.DataFrame = field(default_factory=pd.DataFrame)
    best: pd.Series | None = None
    cheapest: pd.Series | None = None  # cheapest configuration that holds against the best on validation
    cost_fraction: float = float("nan")
    floors_beaten: bool = True
    sentences: list[str] = field(default_factory=list)


def counts_sentence(counts: Mapping[str, int]) -> str:
    parts = [f"{plural(counts['total'], 'trial')}: {counts['finished']} finished, {counts['failed']} failed, "
             f"{counts['running']} running"]
    parts += [f"{counts[k]} {k.replace('_', ' ')}" for k in counts
              if k not in ("total", "finished", "failed", "running") and counts[k]]
    return ", ".join(parts) + "."


def headline(df: pd.DataFrame, objectives: Mapping[str, str], knobs: Sequence[str] = ()) -> Headline:
    """The best configuration (chosen on validation accuracy when recorded, stated on test) with
    its floors (first when they were not beaten), the cheapest configuration within 1 point of
    it, the trial counts once, and how the intervals were made."""
    accuracy = reported_column(next(iter(objectives)))
    cost = primary_cost(objectives)
    counts = status_counts(df)
    configs = configurations(df, knobs, accuracy, cost)
    configs = configs[configs["accuracy"].notna()] if len(configs) else configs
    if configs.empty:
        return Headline(counts, accuracy, cost, configs,
                        sentences=[f"No finished trial has a {label(accuracy)} value yet.", counts_sentence(counts)])
    select = selection_column(accuracy, df)
    score = configs["selection"].where(configs["selection"].notna(), configs["accuracy"])
    at_best = configs[score == score.max()]
    best = at_best.loc[at_best["cost"].fillna(math.inf).idxmin()]
    cheapest = cheapest_holding(configs, best)
    fraction = cheapest["cost"] / best["cost"] if best["cost"] > 0 else float("nan")
    beaten, missed = config_floors_beaten(best)
    sentences = []
    chosen = f", chosen on {label(select)}" if select != accuracy else ""
    best_text = (f"{fmt_acc(best['accuracy'])} {label(accuracy)} ({interval_words(best['interval'])}; "
                 f"{seed_words(best['interval'])}) with {config_words(best, knobs)}{chosen}")
    floors = floor_words(best)
    if not beaten:
        sentences.append(f"Pre-training did not beat {FLOOR_WORDS[missed]} here: the best configuration reached "
                         f"{best_text}, not above the floors of its own architecture ({floors}).")
    elif floors:  # a number never stands without its floors
        sentences.append(f"Best configuration: {best_text}, above the floors of its own architecture ({floors}).")
    else:
        sentences.append(f"Best configuration: {best_text}. No floors of its protocol were recorded for it "
                         "(`eval.floors` off, or a store from before this protocol's floors were measured), so nothing "
                         f"here shows that it beats {' or '.join(FLOOR_WORDS[c] for c in floor_columns(accuracy))}.")
    rule = f"by the verdict rule on {label(select)}"
    if cheapest.name == best.name:
        sentences.append(f"No cheaper configuration holds within 1 point of it ({rule}).")
    else:
        sentence = (f"Cheapest configuration that holds within 1 point of it ({rule}): {fmt_acc(cheapest['accuracy'])} "
                    f"{label(accuracy)} ({interval_words(cheapest['interval'])}) at {fmt_pct(fraction)} of its {label(cost)} "
                    f"({config_words(cheapest, knobs)}).")
        cheapest_floors = floor_words(cheapest)
        if cheapest_floors != floors:  # another architecture: its own floors stand beside its number
            above, _ = config_floors_beaten(cheapest)
            sentence += (f" It is {'above' if above else 'not above'} the floors of its own architecture ({cheapest_floors})."
                         if cheapest_floors else " No floors were recorded for it.")
        sentences.append(sentence)
    below = below_floors_sentence(configs[configs.index != best.name], knobs, accuracy)
    if below:
        sentences.append(below)
    sentences.append(counts_sentence(counts))
    sentences.append(noise_sentence(configs))
    return Headline(counts, accuracy, cost, configs, best, cheapest, fraction, beaten, sentences)


def cheapest_holding(configs: pd.DataFrame, best: pd.Series) -> pd.Series:
    """The cheapest configuration strictly cheaper than `best` whose selection (validation)
    accuracy holds against it by the verdict rule (the interval of the difference excludes a
    loss of more than 1 point); `best` itself when none does. The test split chooses nothing."""
    if not math.isfinite(_float(best["cost"])):
        return best
    for _, row in configs.sort_values("cost", kind="stable").iterrows():
        if not _float(row["cost"]) < _float(best["cost"]):
            break
        sizes = [x for x in (_float(row["selection_size"]), _float(best["selection_size"])) if math.isfinite(x)]
        diff = difference_interval(row["selection_by_seed"], best["selection_by_seed"], float(np.mean(sizes)) if sizes else float("nan"))
        if classify(diff) == HOLDS:
            return row
    return best


MAX_BELOW_NAMED = 6  # configurations named in the below-floors sentence; the rest are counted


def below_floors_sentence(configs: pd.DataFrame, knobs: Sequence[str], accuracy: str) -> str:
    """Every configuration whose accuracy does not beat one of its own floors, named with the floor."""
    below = []
    for _, config in configs.iterrows():
        beaten, missed = config_floors_beaten(config)
        if not beaten:
            below.append(f"{config_words(config, knobs)} ({fmt_acc(config['accuracy'])}, not above "
                         f"{FLOOR_WORDS[missed]} at {fmt_acc(config[missed])})")
    if not below:
        return ""
    more = len(below) - MAX_BELOW_NAMED
    named = "; ".join(below[:MAX_BELOW_NAMED]) + (f"; and {more} more (the trials table)" if more > 0 else "")
    return (f"{plural(len(below), 'configuration')} {'does' if len(below) == 1 else 'do'} not beat the floors of "
            f"{'its' if len(below) == 1 else 'their'} own architecture on {label(accuracy)}: {named}.")


def floor_words(config: pd.Series) -> str:
    """'raw-pixel kNN top-1 76.0%; random-encoder kNN top-1 71.2%': the floors recorded for a configuration."""
    return "; ".join(f"{label(c)} {fmt_acc(config[c])}" for c in floors_in(config.index) if math.isfinite(config[c]))


def noise_sentence(configs: pd.DataFrame) -> str:
    methods = set(configs["interval_method"])
    if methods <= {BINOMIAL, NONE}:
        sizes = configs["test_size"].dropna()
        if sizes.empty:
            return ("One seed per configuration and no test-set size recorded: these numbers carry no interval; "
                    "differences of a point or two may be noise.")
        n = float(sizes.median())
        typical = mean_interval([float(configs["accuracy"].median())], n)
        return (f"One seed per configuration: intervals come from the binomial standard error of the test accuracy "
                f"({n:,.0f} test images: about ±{100 * typical.se:.1f} points, ±{100 * typical.half_width:.1f} at 95%), "
                "which leaves seed-to-seed variation out; the interval of a difference of two such arms adds their "
                "errors as if independent, though both are scored on the same test images, so it is approximate. "
                "Verdicts from one seed per arm say so; run at least 3 seeds per arm (`seeds: [0, 1, 2]`) to settle them.")
    seeds = configs["n_seeds"]
    spread = f"{seeds.min()}" if seeds.min() == seeds.max() else f"{seeds.min()}–{seeds.max()}"
    one = (" (the binomial standard error of the test accuracy for a configuration with one seed)"
           if seeds.min() == 1 else "")
    return (f"Intervals are 95% t-intervals over seeds ({spread} per configuration){one}; single trials stay in "
            "the table.")


# ---------------------------------------------------------------- pairs, trends, verdict


def subject(knob: str, value) -> str:
    words = describe_value(knob, value)
    return "pre-training at " + words if scaled_kind(knob) == "resolution" else words


def pair_sentence(row) -> str:
    """'Pre-training at 14 px (equal epochs, width=1): -0.4 points (95% CI ...; 3 seeds) at 27% of
    the cost of 28 px: holds.'"""
    full = "full data" if scaled_kind(row.knob) == "data_fraction" else describe_value(row.knob, row.full_value)
    text = subject(row.knob, row.value)
    where = f"{row.pairing}" + (f", {row.context}" if row.context else "")
    if row.length and row.length != row.full_length:
        where += f", {row.length} against {row.full_length}"
    diff: Interval = row.diff_interval
    sentence = (f"{text[0].upper()}{text[1:]} ({where}): {points(row.diff)} points against {full} "
                f"({interval_words(diff, as_points=True)}; {seed_words(diff)}) at {fmt_pct(row.cost_ratio)} of its "
                f"cost: {row.verdict}")
    return sentence + _reason(row.verdict, diff, row.floor_missed, f"the {full} arm") + "."


def _reason(verdict: str, diff: Interval, floor_missed: str | None, arm: str) -> str:
    if verdict == NOT_MEANINGFUL:
        return f" ({arm} does not beat {FLOOR_WORDS.get(floor_missed, 'its floors')})"
    if verdict == INCONCLUSIVE:
        return f" ({settle_words(diff)})"
    return ""


def schedules_left_out_sentence(schedules: pd.DataFrame) -> str:
    """What the trend fits leave out: trials pre-trained with a resolution schedule."""
    if schedules.empty:
        return ""
    distinct = sorted(set(schedules["resolution_schedule"].dropna())) if "resolution_schedule" in schedules else []
    words = "; ".join(s.words() for s in distinct[:4]) + ("; ..." if len(distinct) > 4 else "")
    return (f"{plural(len(schedules), 'trial')} pre-trained with a resolution schedule ({words}) "
            f"{'is' if len(schedules) == 1 else 'are'} left out of these fits: a schedule is not one resolution, "
            "so it is no point on the resolution axis. Its accuracy and cost are in the trials table and on the "
            "Pareto plot; a grid study that pairs it with the full-resolution arm gives it a verdict.")


def trend_sentence(row) -> str:
    diff: Interval = row.diff_interval
    full, small = describe_value(row.knob, row.full_value), describe_value(row.knob, row.small_value)
    return (f"Fitted trend over {row.trials} trials, {label(row.knob)} from {full} down to {small}: "
            f"{points(row.diff)} points ({interval_words(diff, as_points=True)}; "
            f"{points(row.per_halving)} points per halving) at {fmt_pct(row.cost_ratio)} of the fitted cost: "
            f"{row.verdict}" + _reason(row.verdict, diff, row.floor_missed, f"{full}") + ".")


def one_seed_words(diff: Interval) -> str:
    """' (one seed)' for a verdict whose interval is the test set's binomial error alone (one seed per
    arm): seed-to-seed variation is not in it, so the verdict must say so where it is stated."""
    return " (one seed)" if isinstance(diff, Interval) and diff.method == BINOMIAL else ""


def verdict_line(pairs: pd.DataFrame, trends: pd.DataFrame, head: Headline) -> str:
    """One sentence answering the study's question, per scaled-down setting."""
    if not len(pairs) and not len(trends):
        return ("Verdict: none. The study has no scaled-down setting with a finished full-size arm to compare "
                "against (nor enough varied trials to fit a trend).")
    verdicts = (pairs.loc[pairs["primary"], "verdict"] if len(pairs) else trends["verdict"]).tolist()
    if not head.floors_beaten and all(v == NOT_MEANINGFUL for v in verdicts):
        return ("Verdict: not meaningful. Pre-training did not beat its floors (raw pixels or an untrained encoder "
                "of the same architecture), so no scaled-down setting can keep an accuracy that was never learned.")
    parts = []
    if len(pairs):
        chosen = pairs[pairs["primary"]]
        knob_order = {k: i for i, k in enumerate(pd.unique(chosen["knob"]))}
        chosen = chosen.assign(_knob=chosen["knob"].map(knob_order)).sort_values(
            ["_knob", "cost_ratio"], ascending=[True, False], kind="stable")  # per knob, nearest full size first
        pairing = chosen["pairing"].iloc[0] if (chosen["pairing"] == chosen["pairing"].iloc[0]).all() else None
        for row in chosen.itertuples(index=False):
            text = f"{subject(row.knob, row.value)} {row.verdict}{one_seed_words(row.diff_interval)} ({points(row.diff)} points"
            text += f", {row.pairing}" if pairing is None else ""
            text += f", {fmt_pct(row.cost_ratio)} of the cost" + (f"; {settle_words(row.diff_interval)}"
                                                                   if row.verdict == INCONCLUSIVE else "") + ")"
            parts.append(text)
        head_words = f"Verdict ({pairing}): " if pairing else "Verdict: "
    elif len(trends):
        for row in trends.itertuples(index=False):
            text = (f"{subject(row.knob, row.small_value)} {row.verdict}{one_seed_words(row.diff_interval)} ({points(row.diff)} points against "
                    f"{describe_value(row.knob, row.full_value)}, fitted; {fmt_pct(row.cost_ratio)} of the cost"
                    + (f"; {settle_words(row.diff_interval)}" if row.verdict == INCONCLUSIVE else "") + ")")
            parts.append(text)
        head_words = "Verdict (fitted trends): "
    return head_words + "; ".join(parts) + "."


def tally(pairs: pd.DataFrame) -> dict[str, int]:
    chosen = pairs[pairs["primary"]] if len(pairs) else pairs
    return {v: int((chosen["verdict"] == v).sum()) if len(chosen) else 0
            for v in (HOLDS, FAILS, INCONCLUSIVE, NOT_MEANINGFUL)}
