"""What a person reads while a study runs: one line per trial event, and on a terminal one status
block of the running trials redrawn in place.

Ray's own table (about 14 lines) was reprinted every 15 s: the 2-trial quickstart printed 1,391
lines. Here a trial that starts, finishes or fails prints one line each; the study line (done,
failed, PFLOPs, ETA) ends each finished trial's line; on a TTY the block under the events shows
each running trial's epoch and validation kNN, rewritten in place at most once a second.
`run -v` keeps Ray's own table.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from ray.tune import ProgressReporter

from sweeper.study.resolution_schedule import stage_spec_label
from sweeper.study.model import Study

REDRAW_EVERY_S = 1.0
LOOK_EVERY_S = 0.5  # how often trial events are looked for (and printed)
ENDED = {"TERMINATED": "finished", "ERROR": "failed"}
UP_AND_CLEAR = "\x1b[{n}F\x1b[J"  # cursor to the start of the line n lines up, erase to the end


def point_words(study: Study, point: dict[str, Any]) -> str:
    """'resolution 8, seed 1': the knobs a trial's point sets (the seed when the study has several)."""
    knobs = [k for k in study.space if k in point] + (["seed"] if len(study.seeds) > 1 and "seed" in point else [])
    words = [f"{k} {stage_spec_label(point[k]) if isinstance(point[k], list) else point[k]}" for k in knobs]
    return ", ".join(words) or "the base trial"


def _pct(value: Any) -> str | None:
    """A validation accuracy as '74.8%'; None when there is none yet (no 'nan')."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return f"{100 * v:.1f}%" if math.isfinite(v) else None


class StudyView(ProgressReporter):
    """A Ray Tune progress reporter: `name(trial)` is the store's trial id, `describe(trial)` the
    trial's knobs in words, `rounds(trial)` its planned rounds, `study_line()` the study's state."""

    def __init__(self, name: Callable[[Any], str], describe: Callable[[Any], str], rounds: Callable[[Any], int],
                 study_line: Callable[[], str], error: Callable[[Any], str | None] = lambda trial: None,
                 out: TextIO | None = None, tty: bool | None = None, clock: Callable[[], float] = time.monotonic):
        self._name, self._describe, self._study_line, self._error = name, describe, study_line, error
        self._rounds = rounds
        self._rounds_of: dict[str, int] = {}  # Ray trial id -> its planned rounds, worked out once
        self._out = out  # None: sys.stdout when writing (Tune pickles its reporter; a stream does not pickle)
        self._tty = (out or sys.stdout).isatty() if tty is None else tty
        self._clock = clock
        self._seen: dict[str, str] = {}  # Ray trial id -> the last status shown
        self._block_lines = 0
        self._last_draw = -math.inf
        self._last_look = -math.inf

    def setup(self, *args: Any, **kwargs: Any) -> None:
        pass

    def should_report(self, trials: list[Any], done: bool = False) -> bool:
        # Tune asks at every step of its loop; looking at every trial that often made the driver's
        # work per trial grow with the study's size
        now = self._clock()
        if done or now - self._last_look >= LOOK_EVERY_S:
            self._last_look = now
            return True
        return False

    def report(self, trials: list[Any], done: bool, *sys_info: str) -> None:
        events = self._events(trials)
        now = self._clock()
        redraw = self._tty and (events or done or now - self._last_draw >= REDRAW_EVERY_S)
        if not events and not redraw:
            return
        lines = []
        if redraw and self._block_lines:
            lines.append(UP_AND_CLEAR.format(n=self._block_lines))
        lines += [e + "\n" for e in events]
        if redraw:
            block = [] if done else self._block(trials)
            lines += [b + "\n" for b in block]
            self._block_lines, self._last_draw = len(block), now
        out = self._out or sys.stdout
        out.write("".join(lines))
        out.flush()

    def _events(self, trials: list[Any]) -> list[str]:
        events = []
        for trial in trials:
            status = str(trial.status)
            shown = self._seen.get(trial.trial_id)
            if status == shown or (status not in ENDED and status != "RUNNING") or shown in ENDED:
                continue
            self._seen[trial.trial_id] = status
            if status == "RUNNING":
                events.append(f"started  {self._name(trial)}  {self._describe(trial)}")
                continue
            error = self._error(trial)
            outcome = f"failed   {self._name(trial)}  {self._describe(trial)}: {error}" if error else (
                f"{ENDED[status]:8s} {self._name(trial)}  {self._describe(trial)}{self._outcome(trial)}")
            events.append(f"{outcome}  [{self._study_line()}]")
        return events

    def _outcome(self, trial: Any) -> str:
        result = trial.last_result or {}
        parts = []
        if (accuracy := _pct(result.get("knn_val_top1"))) is not None:
            parts.append(f"val kNN {accuracy}")
        if isinstance(result.get("wall_s"), (int, float)) and math.isfinite(result["wall_s"]):
            parts.append(f"{result['wall_s']:.0f} s")
        return (": " + ", ".join(parts)) if parts else ""

    def _block(self, trials: list[Any]) -> list[str]:
        running = [t for t in trials if str(t.status) == "RUNNING"]
        lines = [self._study_line()]
        for trial in running:
            result = trial.last_result or {}
            epoch = result.get("epoch")
            if trial.trial_id not in self._rounds_of:
                self._rounds_of[trial.trial_id] = self._rounds(trial)
            rounds = self._rounds_of[trial.trial_id]
            parts = [f"epoch {int(epoch)}/{rounds}" if isinstance(epoch, (int, float)) else "starting"]
            if (accuracy := _pct(result.get("knn_val_top1"))) is not None:
                parts.append(f"val kNN {accuracy}")
            lines.append(f"  running {self._name(trial)}  {self._describe(trial)}: {', '.join(parts)}")
        return lines
