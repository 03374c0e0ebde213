"""``write_report``: read a study store, write ``index.html`` and its PNG figures."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from s3l_core.atomic import write_file_set

from . import figures
from .page import (
    Section,
    columns_for,
    counts_html,
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
from .store import ACCURACY_COLUMNS, COST_COLUMNS, UNFINISHED, StoreSnapshot, load_store
from .summary import (
    cost_model_error,
    finished,
    fmt_number,
    fmt_pct,
    headline,
    knob_columns,
    label,
    plural,
    primary_cost,
    s3l_check,
    s3l_summary,
    study_objectives,
)

FIGURE_PREFIX = "fig_"
MAX_HIGHLIGHT_CURVES = 8  # coloured learning curves (from the Pareto set)
MAX_BACKGROUND_CURVES = 40  # grey learning curves sampled from the other trials
MAX_PARETO_ROWS = 50
MAX_FAILED_SHOWN = 100
MAX_PAIR_ROWS = 1000  # S3L pairs shown in the page; all of them go to PAIRS_CSV
PAIRS_CSV = "s3l_pairs.csv"
# state.json states that mean the driver stopped early, as words
STOPPED = {"crashed": "crashed", "interrupted": "was interrupted", "failed": "failed", "killed": "was killed"}


def write_report(store_dir: Path, report_dir: Path) -> Path:
    """Write the report for the study store ``store_dir`` into ``report_dir``; return index.html.

    Figures are written first and ``index.html`` last, each atomically, so a reader never
    sees a page pointing at a missing or half-written image.
    """
    if not Path(store_dir).is_dir():
        raise FileNotFoundError(f"no study store at {store_dir}")
    store = load_store(Path(store_dir))
    report_dir = Path(report_dir)
    files: dict[str, bytes] = {}
    html = build_page(store, files)
    index = report_dir / "index.html"
    # index last; deletes only files an earlier report wrote (its manifest), never through a link
    write_file_set(report_dir, {**files, index.name: html.encode()})
    return index


def build_page(store: StoreSnapshot, files: dict[str, bytes]) -> str:
    """The report's HTML; the files it links (figures, CSV) are added to ``files`` (name -> bytes)."""
    df = store.results
    study = store.study
    objectives = study_objectives(study, df)
    accuracy = next(iter(objectives))
    cost = primary_cost(objectives)
    knobs = knob_columns(study, df)
    done = finished(df, accuracy)
    declared = (
        pareto_mask(done, objectives).reindex(df.index, fill_value=False)
        if not done.empty else pd.Series(False, index=df.index)
    )
    summary = headline(df, objectives, knobs=knobs)

    def add_figure(name: str, png: bytes | None, alt: str, caption: str = "") -> str:
        if png is None:
            return ""
        files[FIGURE_PREFIX + name] = png
        return figure(FIGURE_PREFIX + name, alt, png, caption)

    sections = [
        Section("headline", "1. Headline",
                f'<div class="headline">{paragraphs(summary.sentences)}{counts_html(summary.counts)}</div>'),
        _pareto_section(df, done, declared, objectives, knobs, add_figure),
        _knob_section(done, knobs, accuracy, cost, add_figure),
        _curves_section(df, store.epochs, declared, knobs, add_figure),
        _s3l_section(df, done, knobs, accuracy, cost, add_figure, files),
        _cost_model_section(df, knobs, add_figure),
        _trials_section(df, declared, knobs, accuracy),
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
    return render_page(f"{name}: S3L report", subtitle, _banners(store, df), sections)


# ---------------------------------------------------------------- banners


def _banners(store: StoreSnapshot, df: pd.DataFrame) -> list[tuple[str, str]]:
    counts = df["status"].value_counts() if len(df) else pd.Series(dtype=int)
    unfinished = int(sum(counts.get(s, 0) for s in UNFINISHED))
    n_done = int(counts.get("finished", 0))
    state = str(store.state.get("state", "unknown")) if store.state else None
    banners: list[tuple[str, str]] = []
    tally = f"{n_done} of {len(df)} trials finished"
    if state == "running":
        banners.append(("warn", f"PARTIAL RESULTS: the study is still running ({tally}, "
                                f"{unfinished} running or pending)."))
    elif state in STOPPED:
        banners.append(("bad", f"PARTIAL RESULTS: the study {STOPPED[state]} before it finished ({tally}, "
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
    restarted = int(df["resumed_from_corrupt"].sum()) if len(df) else 0
    if restarted:
        banners.append(("warn", f"Note: {plural(restarted, 'trial')} restarted from scratch because a checkpoint was "
                                "corrupt (see the note column under Trials)."))
    return banners


# ---------------------------------------------------------------- sections


def _pareto_section(df, done, declared, objectives, knobs, add_figure) -> Section:
    accuracy = next(iter(objectives))
    if done.empty:
        return Section("pareto", "2. Pareto front", message("No finished trials: no Pareto front yet."))
    costs = [k for k, v in list(objectives.items())[1:] if str(v).lower().startswith("min")]
    costs = list(dict.fromkeys([*costs, "train_pflops", "gpu_hours"]))[:3]
    colour_by = knobs[0] if knobs else None
    shared = (done["gpu_fraction"] > 0) & (done["gpu_fraction"] < 1)  # 0 = CPU-only, no GPU held
    caption = (
        "Every finished trial is a point"
        + (f", coloured by {label(colour_by)}" if colour_by else "")
        + "; the non-dominated set for each pair of axes is joined by a step line and dominated points are muted."
    )
    if shared.any():
        fr = done.loc[shared, "gpu_fraction"]
        fractions = fmt_number(fr.min()) + ("" if fr.min() == fr.max() else f"–{fmt_number(fr.max())}")
        caption += (f" {plural(int(shared.sum()), 'trial')} shared a GPU (fraction {fractions}); GPU-hours = "
                    "wall-clock × fraction held, and shared-GPU timings are not comparable to solo ones.")
    fig = add_figure("pareto.png", figures.pareto_figure(done, accuracy, costs, colour_by),
                     "Pareto front: accuracy against cost", caption)
    front = df[declared]
    front = front.sort_values(list(objectives)[1] if len(objectives) > 1 else accuracy, kind="stable")
    names = ["trial_id", *knobs, "seed", *objectives]
    names = list(dict.fromkeys(n for n in names if n in df))
    shown = front.head(MAX_PARETO_ROWS)
    more = f" (first {MAX_PARETO_ROWS} of {len(front)})" if len(front) > MAX_PARETO_ROWS else ""
    set_html = (
        f"<h3>Pareto set over the declared objectives{esc(more)}</h3>"
        f"<p class=\"sub\">{esc(', '.join(f'{label(k)} ({v})' for k, v in objectives.items()))}: "
        f"{len(front)} of {len(done)} finished trials are non-dominated.</p>"
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
        png, note = figures.knob_figure(done, knob, others, accuracy, cost)
        slug = re.sub(r"[^a-z0-9]+", "_", knob.lower()).strip("_") or "knob"
        caption = "Lines: mean over seeds, error bars: standard deviation; grey dots: single trials."
        if note:
            caption += f" {note[0].upper()}{note[1:]}."
        parts.append(f"<h3>{esc(label(knob))}</h3>" + (
            add_figure(f"knob_{i}_{slug}.png", png, f"accuracy and cost against {label(knob)}", caption)
            or message(f"No finished trial has a value for {label(knob)}.")
        ))
    return Section("knobs", title, "".join(parts))


def _curves_section(df, epochs, declared, knobs, add_figure) -> Section:
    title = "4. Learning curves"
    if epochs.empty or epochs["knn_top1"].notna().sum() == 0:
        return Section("curves", title, message("No per-epoch kNN evaluations recorded yet."))
    have = set(epochs["trial_id"].unique())
    front = df[declared & df["trial_id"].isin(have)]
    cost = "train_pflops"
    front = front.sort_values(cost, kind="stable")
    if len(front) > MAX_HIGHLIGHT_CURVES:
        front = front.iloc[np.linspace(0, len(front) - 1, MAX_HIGHLIGHT_CURVES).round().astype(int)]
    highlight = {row["trial_id"]: _short_label(row, knobs) for _, row in front.iterrows()}
    rest = sorted(have - set(highlight))
    if len(rest) > MAX_BACKGROUND_CURVES:
        rng = np.random.default_rng(0)
        rest = sorted(rng.choice(rest, MAX_BACKGROUND_CURVES, replace=False).tolist())
    png = figures.learning_curves_figure(epochs, highlight, rest)
    caption = (f"Coloured: {len(highlight)} trials of the Pareto set; grey: {len(rest)} of the other "
               f"{len(have) - len(highlight)} trials with recorded epochs (a fixed sample when there are many).")
    return Section("curves", title, add_figure("learning_curves.png", png, "learning curves", caption)
                   or message("No learning curves to draw."))


def _short_label(row: pd.Series, knobs: Sequence[str]) -> str:
    parts = [f"{label(k)} {fmt_number(row[k])}" for k in knobs if k in row.index]
    if "seed" in row.index and not pd.isna(row["seed"]):
        parts.append(f"seed {fmt_number(row['seed'])}")
    return ", ".join(parts) or str(row["trial_id"])


def _s3l_section(df, done, knobs, accuracy, cost, add_figure, files) -> Section:
    title = "5. S3L check"
    check, sentences = s3l_check(df, knobs, accuracy=accuracy, cost=cost)
    floors = [c for c in ("knn_pixels_top1", "knn_random_top1") if done[c].notna().any()] if len(done) else []
    floor_text = [f"Floor {label(c)}: {fmt_pct(done[c].mean())} (mean over finished trials)." for c in floors]
    if check.empty:
        why = ("The study varies none of resolution, width, depth, stages or data fraction, or no scaled-down "
               "trial has a finished full-size trial with the same seed and other knobs.")
        return Section("s3l", title, message(why) + paragraphs(floor_text))
    png = figures.s3l_figure(check, done, accuracy)
    fig = add_figure("s3l.png", png, "S3L check: accuracy against relative cost",
                     "Accuracy of each scaled-down setting as a percentage of the full-size trial with the same "
                     "seed and other knobs (star), against its relative cost; mean and standard deviation over "
                     "pairs. Dashed/dotted: raw-pixel and random-encoder kNN floors, relative to the mean "
                     "full-size accuracy.")
    headers = {"accuracy": f"{label(accuracy)} (%)", "full_accuracy": "full size (%)",
               "accuracy_ratio": "of full-size accuracy (%)", "accuracy_diff": "difference (points)",
               "cost_ratio": f"{label(cost)} ratio", "full_trial_id": "full-size trial", "full_value": "full size",
               "context": "other knobs", "pairs": "same-seed pairs"}
    digest = _readable_values(s3l_summary(check))
    files[PAIRS_CSV] = check.to_csv(index=False).encode("utf-8")
    pairs = _readable_values(check.head(MAX_PAIR_ROWS))
    shown = (f"first {MAX_PAIR_ROWS} of {len(check)}; " if len(check) > MAX_PAIR_ROWS else "")
    digest_names = ["knob", "value", "full_value", "pairs", "accuracy_ratio", "accuracy_diff", "cost_ratio"]
    pair_names = ["knob", "value", "full_value", "seed", "context", "accuracy", "full_accuracy", "accuracy_ratio",
                  "accuracy_diff", "cost_ratio", "trial_id", "full_trial_id"]
    return Section(
        "s3l", title,
        paragraphs(sentences, "claim") + fig + paragraphs(floor_text)
        + "<h3>Mean over same-seed pairs</h3>" + table(digest, _as_pct(columns_for(digest, digest_names, headers)),
                                                        "s3l-summary")
        + f'<details><summary>Every pair ({esc(shown)}all in <a href="{PAIRS_CSV}">{PAIRS_CSV}</a>)</summary>'
        + table(pairs, _as_pct(columns_for(pairs, pair_names, headers)), "s3l-pairs") + "</details>",
    )


def _readable_values(check: pd.DataFrame) -> pd.DataFrame:
    out = check.copy()
    out["knob"] = out["knob"].map(label)
    for col in ("value", "full_value"):
        out[col] = out[col].map(fmt_number)
    for col in ("accuracy_ratio", "accuracy_diff", "cost_ratio"):
        out[col] = out[col].astype(float)
    return out


def _as_pct(columns: list) -> list:
    """Ratios and differences of accuracies are shown in percent (points)."""
    return [type(c)(c.name, c.header, "pct") if c.name in ("accuracy_ratio", "accuracy_diff") else c
            for c in columns]


def _cost_model_section(df, knobs, add_figure) -> Section:
    title = "6. Cost model"
    errors = cost_model_error(df)
    if errors.empty:
        return Section("cost-model", title, message("No finished trial has both a predicted and a measured cost."))
    err = errors["error"]
    worst = errors.loc[err.abs().idxmax()]
    text = [
        f"Measured train PFLOPs against the cost model's prediction over {len(errors)} trials: median "
        f"|error| {fmt_pct(float(err.abs().median()))}, mean error {100 * err.mean():+.1f}%, worst "
        f"{100 * worst['error']:+.1f}% (trial {worst['trial_id']})."
    ]
    key = figures.colour_key(df.loc[errors.index], knobs[0]) if knobs else None
    fig = add_figure("cost_model.png", figures.cost_model_figure(errors, key),
                     "cost model: measured against predicted PFLOPs")
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
    known = ["trial_id", "status", *knobs, "seed", accuracy, *ACCURACY_COLUMNS, "pareto", *COST_COLUMNS,
             "epochs_done", "epochs", "device", "node", "note", "error"]
    known = list(dict.fromkeys(known))
    extras = [c for c in view.columns if c not in known and not c.startswith("_") and c != "resumed_from_corrupt"
              and view[c].astype(str).nunique() > 1][:10]
    names = [*known[: known.index("pareto")], *extras, *known[known.index("pareto"):]]
    cols = columns_for(view, names, {"trial_id": "trial", "pareto": "Pareto", "resolution": "final resolution",
                                     "resolution_schedule": "resolution schedule"})
    body = (f"<p class=\"sub\">{len(view)} trials. Click a column header to sort (again to reverse). "
            "Accuracies in %; costs as recorded.</p>"
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
    return Section("study", "8. Study and provenance", body)
