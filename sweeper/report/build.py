"""``write_report``: read a study store, write ``index.html``, its PNG figures and ``summary.txt``."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from matplotlib.figure import Figure

from s3l_core.atomic import write_file_set
from s3l_core.floors import PROTOCOL_FLOORS

from . import figures
from .claims import Headline, headline, pair_sentence, schedules_left_out_sentence, trend_sentence, verdict_line
from .compare import (
    configurations,
    fair_pairs,
    reported_column,
    trend_fits,
    trend_model,
)
from .files import ANSWER_NAME, INDEX_NAME
from .membership import Membership, Plan, current_trial_ids, membership, study_plan
from .page import (
    Section,
    columns_for,
    esc,
    figure,
    message,
    paragraphs,
    pre,
    render_page,
    row_classes,
    table,
)
from .pareto import pareto_mask
from .snapshot import ACCURACY_COLUMNS, COST_COLUMNS, EVALUATION_COLUMNS, UNFINISHED, StoreSnapshot, curve_column, load_store
from .summary import (
    cost_model_error,
    finished,
    fmt_number,
    fmt_pct,
    label,
    plural,
    primary_cost,
    study_objectives,
    knob_columns,
)
from .verdict import RULE

FIGURE_PREFIX = "fig_"
MAX_HIGHLIGHT_CURVES = 8  # coloured learning curves (from the Pareto set)
MAX_BACKGROUND_CURVES = 40  # grey learning curves sampled from the other trials
MAX_PARETO_ROWS = 50
MAX_FAILED_SHOWN = 100
MAX_PAIR_ROWS = 1000  # S3L pairs shown in the page; all of them go to PAIRS_CSV
MAX_STALE_ROWS = 200  # records of points no longer in the study shown in the page
PAIRS_CSV = "s3l_pairs.csv"
GRID_SEARCHES = ("grid",)  # searches whose points share every other knob: fair pairs; others get trends
# state.json states that mean the driver stopped early, as words
STOPPED = {"crashed": "crashed", "interrupted": "was interrupted", "failed": "failed", "killed": "was killed"}


FigureHook = Callable[[str, Figure], None]


def write_report(store_dir: Path, report_dir: Path, on_figure: FigureHook | None = None) -> Path:
    """Write the report for the study store ``store_dir`` into ``report_dir``; return index.html.
    Beside it, ``summary.txt`` holds its warnings, verdict and headline as plain text (``answer_text``).

    Figures are written first and ``index.html`` last, each atomically, so a reader never
    sees a page pointing at a missing or half-written image. ``on_figure(name, figure)`` sees
    every figure before it is rendered (the tests check their layout).
    """
    if not Path(store_dir).is_dir():
        raise FileNotFoundError(f"no study store at {store_dir}")
    store = load_store(Path(store_dir))
    ids, why = current_trial_ids(Path(store_dir))
    report_dir = Path(report_dir)
    files: dict[str, bytes] = {}
    html = build_page(store, files, membership(store.results, ids, why, study_plan(Path(store_dir))), on_figure)
    index = report_dir / INDEX_NAME
    # index last; deletes only files an earlier report wrote (its manifest), never through a link
    write_file_set(report_dir, {**files, index.name: html.encode()})
    return index


def build_page(store: StoreSnapshot, files: dict[str, bytes], members: Membership | None = None,
               on_figure: FigureHook | None = None) -> str:
    """The report's HTML; the files it links (figures, CSV) are added to ``files`` (name -> bytes).

    Only the trials of the current study (``members``) enter the claims and figures; the
    others are listed apart.
    """
    members = members or membership(store.results, None)
    everything = store.results
    df = everything[members.current].reset_index(drop=True)
    stale = everything[members.stale].reset_index(drop=True)
    study = store.study
    objectives = study_objectives(study, df)
    accuracy = reported_column(next(iter(objectives)))
    cost = primary_cost(objectives)
    knobs = knob_columns(study, df)
    done = finished(df, accuracy)
    front = _front_trials(df, done, knobs, objectives)
    summary = headline(df, objectives, knobs=knobs)
    configs = configurations(df, knobs, accuracy, cost)
    search = str((study.get("search") or {}).get("algorithm", "grid")) if isinstance(study, dict) else "grid"
    pairs = fair_pairs(configs, knobs) if search in GRID_SEARCHES else fair_pairs(configs.iloc[0:0], knobs)
    model = trend_model(df, knobs, accuracy, cost) if pairs.empty else None
    trends = trend_fits(df, knobs, accuracy, cost) if model is not None else None
    verdict = verdict_line(pairs, trends if trends is not None else pd.DataFrame(), summary)

    def add_figure(name: str, fig: Figure | None, alt: str, caption: str = "") -> str:
        if fig is None:
            return ""
        if on_figure is not None:
            on_figure(FIGURE_PREFIX + name, fig)
        png = figures.to_png(fig)
        files[FIGURE_PREFIX + name] = png
        return figure(FIGURE_PREFIX + name, alt, png, caption)

    banners = _banners(store, df, members, len(stale))
    files[ANSWER_NAME] = answer_text(banners, verdict, summary).encode()
    sections = [
        Section("headline", "1. Headline", _headline_html(verdict, summary)),
        _pareto_section(df, done, front, objectives, knobs, add_figure),
        _knob_section(done, knobs, accuracy, cost, add_figure),
        _curves_section(df, store.epochs, front, knobs, add_figure),
        _s3l_section(pairs, model, trends, add_figure, files),
        _cost_model_section(df, knobs, add_figure),
        _trials_section(df, front, knobs, accuracy),
        _stale_section(stale, members, knobs, accuracy),
        _study_section(store),
    ]
    name = str(study.get("name") or store.path.name)
    subtitle = [
        str(study.get("description") or ""),
        f"dataset {study.get('dataset', '?')} · objectives "
        + ", ".join(f"{label(k)} ({v})" for k, v in objectives.items())
        + (" · swept: " + ", ".join(label(k) for k in knobs) if knobs else ""),
        f"store {store.path} · generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}",
    ]
    return render_page(f"{name}: S3L report", subtitle, banners, sections)


def answer_text(banners: Sequence[tuple[str, str]], verdict: str, summary: Headline) -> str:
    """The report's answer as plain text: its banners first, as on the page (partial results, a
    store problem), then the verdict line and each headline sentence."""
    return "\n".join([*(text for _, text in banners), verdict, *summary.sentences]) + "\n"


def _headline_html(verdict: str, summary: Headline) -> str:
    return (f'<div class="headline"><p class="verdict" id="verdict">{esc(verdict)}</p>'
            f"{paragraphs(summary.sentences)}</div>"
            f'<p class="sub rule">{esc(RULE)} Accuracies stated are on the test split; selection and learning '
            "curves use the validation split. FLOPs are counted analytically (torch.utils.flop_counter); "
            "wall-clock and GPU-hours are measured.</p>")


def _front_trials(df: pd.DataFrame, done: pd.DataFrame, knobs: Sequence[str], objectives) -> pd.Series:
    """Per trial: whether its configuration (mean over seeds) is on the Pareto front of the
    declared objectives."""
    if done.empty:
        return pd.Series(False, index=df.index)
    columns = [c for c in objectives if c in done]
    keys = [k for k in knobs if k in done]
    numeric = done[columns].apply(pd.to_numeric, errors="coerce")
    if keys:
        means = numeric.groupby([done[k] for k in keys], dropna=False, sort=False).transform("mean")
    else:
        means = numeric.apply(lambda c: pd.Series(c.mean(), index=c.index))
    mask = pareto_mask(means, {c: objectives[c] for c in columns})
    return mask.reindex(df.index, fill_value=False)


# ---------------------------------------------------------------- banners


def _planned_tally(plan: Plan, df: pd.DataFrame, counts: pd.Series) -> str:
    """'6 planned: 4 finished, 1 interrupted, 1 not started' (each kind that has trials)."""
    recorded = set(df["trial_id"].astype(str)) if len(df) else set()
    interrupted = plan.interrupted(recorded)
    parts = [f"{int(counts.get('finished', 0))} finished"]
    words = {"failed": "failed", "stopped": "stopped early", "skipped_budget": "skipped (budget spent)", **{s: s for s in UNFINISHED}}
    parts += [f"{int(counts[status])} {word}" for status, word in words.items() if counts.get(status, 0)]
    not_started = max(0, plan.planned - len(recorded) - interrupted)
    parts += [f"{n} {word}" for n, word in ((interrupted, "interrupted"), (not_started, "not started")) if n]
    return f"{plan.planned} planned: " + ", ".join(parts)


def _banners(store: StoreSnapshot, df: pd.DataFrame, members: Membership, stale: int) -> list[tuple[str, str]]:
    counts = df["status"].value_counts() if len(df) else pd.Series(dtype=int)
    unfinished = int(sum(counts.get(s, 0) for s in UNFINISHED))
    n_done = int(counts.get("finished", 0))
    state = str(store.state.get("state", "unknown")) if store.state else None
    banners: list[tuple[str, str]] = []
    tally = f"{n_done} of {len(df)} trials finished"
    plan = members.plan if members.note is None else None  # a plan means nothing when membership was not checked
    if plan is not None and n_done < plan.planned:
        # Counted against the study's plan, not the records on disk: an interrupted run leaves no record
        # for the trials it stopped, nor for those it never started.
        tally = _planned_tally(plan, df, counts)
        if state in (None, "finished"):
            banners.append(("bad", f"PARTIAL RESULTS: the store holds fewer finished trials than the study plans ({tally}); "
                                   "every sentence below is about the finished ones only. `run` the study again to finish it."))
    if state == "running":
        banners.append(("warn", f"PARTIAL RESULTS: the study is still running ({tally}, "
                                f"{unfinished} running or pending)."))
    elif state is not None and state.split(":", 1)[0] in STOPPED:  # "failed: <reason>" after a full store
        banners.append(("bad", f"PARTIAL RESULTS: the study {STOPPED[state.split(':', 1)[0]]} before it finished ({tally}, "
                               f"{unfinished} left running or pending)."))
    elif state is None and unfinished:
        banners.append(("warn", f"POSSIBLY PARTIAL: {unfinished} trials were running or pending when the results "
                                f"were written and the study's state is unknown (no state.json); {tally}."))
    elif state not in (None, "finished"):
        banners.append(("warn", f"Study state: {state} ({tally})."))
    elif unfinished:
        banners.append(("warn", f"The study is marked finished but {unfinished} trials are running or pending."))
    if len(df) and n_done == 0:
        banners.append(("bad", "No trial has finished: there is nothing to plot yet. Failed trials and their "
                               "errors are listed under Trials."))
    if not len(df):
        banners.append(("bad", "The results table is empty."))
    for problem in store.problems:
        banners.append(("bad", f"StoreSnapshot problem: {problem}."))
    if members.note and not members.unchecked:
        banners.append(("warn", members.note))
    if stale:
        banners.append(("warn", f"{plural(stale, 'record')} of points no longer in the study (a shrunk grid or a "
                                "changed base config) are left out of every claim and figure; they are listed under "
                                "\"Not in the current study\"."))
    restarted = int(df["resumed_from_corrupt"].sum()) if len(df) else 0
    if restarted:
        banners.append(("warn", f"Note: {plural(restarted, 'trial')} restarted from scratch because a checkpoint was "
                                "corrupt (see the note column under Trials)."))
    return banners


# ---------------------------------------------------------------- sections


def _pareto_section(df, done, front, objectives, knobs, add_figure) -> Section:
    accuracy = reported_column(next(iter(objectives)))
    if done.empty:
        return Section("pareto", "2. Pareto front", message("No finished trials: no Pareto front yet."))
    costs = [k for k, v in list(objectives.items())[1:] if str(v).lower().startswith("min")]
    costs = list(dict.fromkeys([*costs, "train_pflops", "gpu_hours"]))[:3]
    colour_by = knobs[0] if knobs else None
    shared = (done["gpu_fraction"] > 0) & (done["gpu_fraction"] < 1)  # 0 = CPU-only, no GPU held
    caption = (
        "Each configuration is its mean over seeds with a 95% interval bar"
        + (f", coloured by {label(colour_by)}" if colour_by else "")
        + "; the front over configuration means is joined by a step line, dominated configurations are grey, "
        "single trials are faint dots, and the floors (raw-pixel kNN, an untrained encoder of the same "
        "architecture) are horizontal lines or bands spanning their values across architectures."
    )
    if shared.any():
        fr = done.loc[shared, "gpu_fraction"]
        fractions = fmt_number(fr.min()) + ("" if fr.min() == fr.max() else f"–{fmt_number(fr.max())}")
        caption += (f" {plural(int(shared.sum()), 'trial')} shared a GPU (fraction {fractions}); GPU-hours = "
                    "wall-clock × fraction held, and shared-GPU timings are not comparable to solo ones.")
    fig = add_figure("pareto.png", figures.pareto_figure(done, knobs, accuracy, costs, colour_by),
                     "Pareto front: accuracy against cost", caption)
    on_front = df[front]
    on_front = on_front.sort_values(list(objectives)[1] if len(objectives) > 1 else accuracy, kind="stable")
    names = ["trial_id", *knobs, "seed", *objectives]
    names = list(dict.fromkeys(n for n in names if n in df))
    shown = on_front.head(MAX_PARETO_ROWS)
    more = f" (first {MAX_PARETO_ROWS} of {len(on_front)})" if len(on_front) > MAX_PARETO_ROWS else ""
    set_html = (
        f"<h3>Trials of the configurations on the front{esc(more)}</h3>"
        f"<p class=\"sub\">{esc(', '.join(f'{label(k)} ({v})' for k, v in objectives.items()))}, compared on "
        f"configuration means: {len(on_front)} of {len(done)} finished trials.</p>"
        + table(shown, columns_for(shown, names), "pareto-set")
    )
    return Section("pareto", "2. Pareto front",
                   f'<div class="row"><div class="wide">{fig}</div><div class="side">{set_html}</div></div>')


def _knob_section(done, knobs, accuracy, cost, add_figure) -> Section:
    title = "3. Knobs"
    if not knobs:
        return Section("knobs", title, message("The study's space sweeps no knob (or none found in the results)."))
    if done.empty:
        return Section("knobs", title, message("No finished trials: nothing to plot per knob yet."))
    parts = []
    for i, knob in enumerate(knobs):
        others = [k for k in knobs if k != knob]
        fig, note = figures.knob_figure(done, knob, others, accuracy, cost)
        slug = re.sub(r"[^a-z0-9]+", "_", knob.lower()).strip("_") or "knob"
        caption = ("Lines: configuration means with 95% interval bars (the legend says how many seeds); dashed and "
                   "dotted grey: the floors of each setting; grey dots: single trials. The y-axis includes the "
                   "intervals and the floors.")
        if note:
            caption += f" {note[0].upper()}{note[1:]}."
        parts.append(f"<h3>{esc(label(knob))}</h3>" + (
            add_figure(f"knob_{i}_{slug}.png", fig, f"accuracy and cost against {label(knob)}", caption)
            or message(f"No finished trial has a value for {label(knob)}.")
        ))
    return Section("knobs", title, "".join(parts))


def _curves_section(df, epochs, front, knobs, add_figure) -> Section:
    title = "4. Learning curves"
    accuracy = curve_column(epochs)
    if epochs.empty or epochs[accuracy].notna().sum() == 0:
        return Section("curves", title, message("No per-epoch kNN evaluations recorded yet."))
    have = set(epochs["trial_id"].unique()) & set(df["trial_id"])  # only this study's current trials
    highlighted = df[front & df["trial_id"].isin(have)]
    highlighted = highlighted.sort_values("train_pflops", kind="stable")
    if len(highlighted) > MAX_HIGHLIGHT_CURVES:
        picks = np.linspace(0, len(highlighted) - 1, MAX_HIGHLIGHT_CURVES).round().astype(int)
        highlighted = highlighted.iloc[picks]
    highlight = {row["trial_id"]: _short_label(row, knobs) for _, row in highlighted.iterrows()}
    rest = sorted(have - set(highlight))
    if len(rest) > MAX_BACKGROUND_CURVES:
        rng = np.random.default_rng(0)
        rest = sorted(rng.choice(rest, MAX_BACKGROUND_CURVES, replace=False).tolist())
    floors = {}
    knn = PROTOCOL_FLOORS["knn"]  # the curves are kNN: kNN floors, of the curves' split
    split_floors = (knn.val_pixels, knn.val_random) if accuracy == "knn_val_top1" else (knn.pixels, knn.random)
    for column in split_floors:
        values = pd.to_numeric(highlighted[column], errors="coerce").dropna() if column in highlighted else pd.Series(dtype=float)
        if len(values):
            floors[column] = (float(values.min()), float(values.max()))
    fig = figures.learning_curves_figure(epochs, highlight, rest, floors, accuracy)
    split = "validation" if accuracy == "knn_val_top1" else "test (an older store without a validation split)"
    others = len(have) - len(highlight)
    grey = ("" if not rest else f"; grey: the other {others} trials with recorded epochs" if len(rest) == others else
            f"; grey: {len(rest)} of the other {others} trials with recorded epochs (a fixed sample)")
    caption = (f"kNN top-1 on the {split} split after each evaluation. Coloured: {plural(len(highlight), 'trial')} of the "
               f"Pareto set{grey}. Dashed / dotted: the kNN floors of the coloured trials, on the same "
               f"{'validation' if accuracy == 'knn_val_top1' else 'test'} split.")
    return Section("curves", title, add_figure("learning_curves.png", fig, "learning curves", caption)
                   or message("No learning curves to draw."))


def _short_label(row: pd.Series, knobs: Sequence[str]) -> str:
    parts = [f"{label(k)} {fmt_number(row[k])}" for k in knobs if k in row.index]
    if "seed" in row.index and not pd.isna(row["seed"]):
        parts.append(f"seed {fmt_number(row['seed'])}")
    return ", ".join(parts) or str(row["trial_id"])


PAIR_HEADERS = {
    "knob": "knob", "value": "setting", "full_value": "full size", "pairing": "pairing", "context": "other knobs",
    "length": "run length", "full_length": "full-size run length", "seeds": "seeds", "accuracy": "accuracy (%)",
    "full_accuracy": "full size (%)", "diff": "difference (points)", "diff_low": "95% CI low (points)",
    "diff_high": "95% CI high (points)", "cost_ratio": "cost ratio", "verdict": "verdict",
}
TREND_HEADERS = {
    "knob": "knob", "full_value": "from", "small_value": "down to", "diff": "fitted difference (points)",
    "diff_low": "95% CI low (points)", "diff_high": "95% CI high (points)", "per_halving": "per halving (points)",
    "cost_ratio": "fitted cost ratio", "trials": "trials", "verdict": "verdict",
}


def _s3l_section(pairs, model, trends, add_figure, files) -> Section:
    title = "5. S3L check"
    rule = paragraphs([RULE], "sub")
    if not pairs.empty:
        fig = add_figure("s3l.png", figures.s3l_figure(pairs), "S3L check: accuracy difference against relative cost",
                         "Each scaled-down configuration against full size: accuracy difference in points with its "
                         "95% interval, against relative cost; colours name the pairing. Hollow: the full-size arm "
                         "does not beat its floors, so the comparison is not meaningful. Dashed red: -1 point, the "
                         "verdict rule's threshold.")
        export = pairs.drop(columns=["diff_interval"]).copy()
        files[PAIRS_CSV] = export.to_csv(index=False).encode("utf-8")
        view = _readable_values(pairs.head(MAX_PAIR_ROWS))
        shown = f"first {MAX_PAIR_ROWS} of {len(pairs)}; " if len(pairs) > MAX_PAIR_ROWS else ""
        sentences = [pair_sentence(row) for row in pairs[pairs["primary"]].itertuples(index=False)]
        others = [pair_sentence(row) for row in pairs[~pairs["primary"]].itertuples(index=False)]
        more = (f"<details><summary>{len(others)} more comparisons at other settings of the other knobs</summary>"
                + paragraphs(others) + "</details>") if others else ""
        return Section("s3l", title, paragraphs(sentences, "claim") + more + fig + rule
                       + f'<h3>Every comparison ({esc(shown)}all in <a href="{PAIRS_CSV}">{PAIRS_CSV}</a>)</h3>'
                       + table(view, _as_pct(columns_for(view, list(PAIR_HEADERS), PAIR_HEADERS)), "s3l-pairs"))
    if trends is not None and not trends.empty:
        fig = add_figure("s3l_trend.png", figures.trend_figure(model), "S3L trend: accuracy against each knob",
                         "Points of a random or Optuna search rarely share every other knob, so accuracy and log "
                         "cost are fitted against log2 of every numeric scaled knob at once; each panel shows one "
                         "knob with the others held at their mean, the fitted line and its 95% band.")
        view = _readable_values(trends)
        left_out = schedules_left_out_sentence(model.schedules)
        return Section("s3l", title, paragraphs([trend_sentence(r) for r in trends.itertuples(index=False)], "claim")
                       + (paragraphs([left_out]) if left_out else "")
                       + fig + rule + table(view, _as_pct(columns_for(view, list(TREND_HEADERS), TREND_HEADERS)),
                                            "s3l-trends"))
    why = ("The study varies none of resolution, width, depth, stages or data fraction, or no scaled-down "
           "configuration has a finished full-size configuration with the same other knobs (and there are too "
           "few varied trials to fit a trend).")
    return Section("s3l", title, message(why) + rule)


def _readable_values(check: pd.DataFrame) -> pd.DataFrame:
    out = check.copy()
    out["knob"] = out["knob"].map(label)
    for col in ("value", "full_value", "small_value"):
        if col in out:
            out[col] = out[col].map(fmt_number)
    for col in ("accuracy", "full_accuracy", "diff", "diff_low", "diff_high", "per_halving", "cost_ratio"):
        if col in out:
            out[col] = out[col].astype(float)
    return out


def _as_pct(columns: list) -> list:
    """Accuracies and their differences are shown in percent (points)."""
    pct = ("accuracy", "full_accuracy", "diff", "diff_low", "diff_high", "per_halving")
    return [type(c)(c.name, c.header, "pct") if c.name in pct else c for c in columns]


def _cost_model_section(df, knobs, add_figure) -> Section:
    title = "6. Cost model"
    errors = cost_model_error(df)
    if errors.empty:
        return Section("cost-model", title, message("No finished trial has both a predicted and a counted cost."))
    err = errors["error"]
    worst = errors.loc[err.abs().idxmax()]
    text = [
        f"Counted train PFLOPs against the cost model's prediction over {len(errors)} trials: median "
        f"|error| {fmt_pct(float(err.abs().median()))}, mean error {100 * err.mean():+.1f}%, worst "
        f"{100 * worst['error']:+.1f}% (trial {worst['trial_id']})."
    ]
    key = figures.colour_key(df.loc[errors.index], knobs[0]) if knobs else None
    fig = add_figure("cost_model.png", figures.cost_model_figure(errors, key),
                     "cost model: counted against predicted PFLOPs")
    return Section("cost-model", title, paragraphs(text) + fig)


def _trials_section(df, declared, knobs, accuracy) -> Section:
    title = "7. Trials"
    if df.empty:
        return Section("trials", title, message("No trials recorded."))
    view = df.copy()
    view["pareto"] = declared
    view["note"] = np.where(view["resumed_from_corrupt"], "restarted: corrupt checkpoint", "")
    rank = view["status"].map({"finished": 0, "running": 1, "pending": 2}).fillna(3)
    view = view.assign(_rank=rank).sort_values(["_rank", accuracy], ascending=[True, False], kind="stable")
    known = ["trial_id", "status", *knobs, "seed", accuracy, *ACCURACY_COLUMNS, *EVALUATION_COLUMNS, "pareto",
             *COST_COLUMNS, "epochs_done", "epochs", "device", "node", "note", "error"]
    known = list(dict.fromkeys(known))
    extras = [c for c in view.columns if c not in known and not c.startswith("_") and c != "resumed_from_corrupt"
              and view[c].astype(str).nunique() > 1][:10]
    names = [*known[: known.index("pareto")], *extras, *known[known.index("pareto"):]]
    cols = columns_for(view, names, {"trial_id": "trial", "pareto": "on the front", "resolution": "final resolution",
                                     "resolution_schedule": "resolution schedule"})
    body = (f"<p class=\"sub\">{len(view)} trials. Click a column header to sort (again to reverse). "
            "Accuracies in %; costs as recorded; \"on the front\": the trial's configuration mean is on the Pareto "
            "front.</p>"
            + table(view, cols, "trials-table", row_class=row_classes(view, view["pareto"])))
    failed = view[view["status"] == "failed"]
    if len(failed):
        items = []
        for _, row in failed.head(MAX_FAILED_SHOWN).iterrows():
            knob_text = ", ".join(f"{label(k)}={fmt_number(row[k])}" for k in knobs if k in row.index)
            error = row["error"] if isinstance(row["error"], str) and row["error"].strip() else "(no error recorded)"
            items.append(f"<details><summary>{esc(row['trial_id'])} {esc(knob_text)}"
                         f"{' seed ' + esc(fmt_number(row['seed'])) if 'seed' in row.index else ''}</summary>"
                         f"{pre(error)}</details>")
        more = (f" (first {MAX_FAILED_SHOWN} of {len(failed)})" if len(failed) > MAX_FAILED_SHOWN else "")
        body += f"<h3>Failed trials{esc(more)}</h3>" + "".join(items)
    return Section("trials", title, body)


def _stale_section(stale: pd.DataFrame, members: Membership, knobs, accuracy) -> Section:
    title = "8. Not in the current study"
    if stale.empty:
        text = members.note or "Every record in the store is a trial of the study as it now stands."
        return Section("stale", title, message(text))
    shown = stale.head(MAX_STALE_ROWS)
    more = f" (first {MAX_STALE_ROWS})" if len(stale) > MAX_STALE_ROWS else ""
    names = list(dict.fromkeys(n for n in ["trial_id", "status", *knobs, "seed", accuracy, "train_pflops"]
                               if n in stale))
    body = (f"<p class=\"sub\">{plural(len(stale), 'record')}{esc(more)} of points the study no longer has (a shrunk "
            "grid, a changed base config); kept in the store, left out of every claim and figure above.</p>"
            + table(shown, columns_for(shown, names, {"trial_id": "trial"}), "stale-table"))
    return Section("stale", title, body)


def _study_section(store: StoreSnapshot) -> Section:
    def dump_yaml(value: Any) -> str:
        try:
            return yaml.safe_dump(value, sort_keys=False, allow_unicode=True)
        except yaml.YAMLError:
            return json.dumps(value, indent=2, default=str)

    body = ("<h3>Resolved study (study.yaml)</h3>" + (pre(dump_yaml(store.study)) if store.study
                                                      else message("study.yaml missing."))
            + "<h3>Provenance (provenance.json)</h3>"
            + (pre(json.dumps(store.provenance, indent=2, default=str)) if store.provenance
               else message("provenance.json missing."))
            + "<h3>State (state.json)</h3>"
            + (pre(json.dumps(store.state, indent=2, default=str)) if store.state is not None
               else message("No state.json: the study's state is unknown.")))
    return Section("study", "9. Study and provenance", body)
