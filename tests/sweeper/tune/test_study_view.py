"""The live view: one line per trial event off a terminal, one block redrawn in place on one."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

from sweeper.tune.study_view import UP_AND_CLEAR, StudyView


@dataclass
class FakeTrial:
    trial_id: str
    status: str = "PENDING"
    last_result: dict[str, Any] = field(default_factory=dict)


def view(tty: bool, clock=lambda: 0.0, error=lambda trial: None) -> tuple[StudyView, io.StringIO]:
    out = io.StringIO()
    return StudyView(lambda t: f"id-{t.trial_id}", lambda t: f"resolution {t.trial_id}", lambda t: 16,
                     lambda: "study: 1/2 trials done", error=error, out=out, tty=tty, clock=clock), out


def test_off_a_terminal_each_trial_event_is_one_line_and_nothing_is_repeated():
    v, out = view(tty=False)
    a, b = FakeTrial("8"), FakeTrial("14")
    for _ in range(50):  # Tune calls report every loop step: nothing new, nothing printed
        v.report([a, b], done=False)
    assert out.getvalue() == ""
    a.status = "RUNNING"
    a.last_result = {"epoch": 1, "knn_val_top1": float("nan")}  # before the first evaluation
    for _ in range(20):
        v.report([a, b], done=False)
    a.status, a.last_result = "TERMINATED", {"epoch": 16, "knn_val_top1": 0.748, "wall_s": 85.2}
    b.status = "RUNNING"
    v.report([a, b], done=False)
    b.status, b.last_result = "ERROR", {"epoch": 1, "knn_val_top1": float("nan"), "wall_s": 2.0}  # ended before any evaluation
    v.report([a, b], done=True)
    lines = out.getvalue().splitlines()
    assert lines == [
        "started  id-8  resolution 8",
        "finished id-8  resolution 8: val kNN 74.8%, 85 s  [study: 1/2 trials done]",
        "started  id-14  resolution 14",
        "failed   id-14  resolution 14: 2 s  [study: 1/2 trials done]",
    ]
    assert "nan" not in out.getvalue() and "\x1b" not in out.getvalue()


def test_a_failure_says_why_once():
    v, out = view(tty=False, error=lambda t: "ConfigError: width must be positive" if t.status != "RUNNING" else None)
    t = FakeTrial("8", "RUNNING")
    v.report([t], done=False)
    t.status = "TERMINATED"  # failed at once: Tune sees a trial that reported and returned
    v.report([t], done=False)
    v.report([t], done=True)
    assert out.getvalue().splitlines() == ["started  id-8  resolution 8",
                                           "failed   id-8  resolution 8: ConfigError: width must be positive  [study: 1/2 trials done]"]


def test_on_a_terminal_the_status_block_is_redrawn_in_place_at_most_once_a_second():
    now = [0.0]
    v, out = view(tty=True, clock=lambda: now[0])
    t = FakeTrial("8", "RUNNING", {"epoch": 3, "knn_val_top1": 0.71})
    v.report([t], done=False)  # the start: an event, then the block (study line + one running trial)
    first = out.getvalue()
    assert first == ("started  id-8  resolution 8\n" "study: 1/2 trials done\n" "  running id-8  resolution 8: epoch 3/16, val kNN 71.0%\n")
    for step in range(10):  # ten calls within the same second: no redraw
        now[0] = 0.05 * step
        v.report([t], done=False)
    assert out.getvalue() == first
    now[0] = 1.5
    t.last_result = {"epoch": 4, "knn_val_top1": 0.72}
    v.report([t], done=False)
    redraw = out.getvalue()[len(first):]
    assert redraw == UP_AND_CLEAR.format(n=2) + "study: 1/2 trials done\n" "  running id-8  resolution 8: epoch 4/16, val kNN 72.0%\n"
    t.status = "TERMINATED"
    v.report([t], done=True)  # the block is cleared and the finished line stays
    assert out.getvalue().endswith(UP_AND_CLEAR.format(n=2) + "finished id-8  resolution 8: val kNN 72.0%  [study: 1/2 trials done]\n")


def test_trials_are_looked_at_twice_a_second_at_most_and_always_at_the_end():
    """Tune asks `should_report` at every step of its loop; scanning every trial that often costs
    time that grows with the study."""
    now = [0.0]
    v, _ = view(tty=False, clock=lambda: now[0])
    assert v.should_report([], done=False)
    assert not any(v.should_report([], done=False) for _ in range(100))
    assert v.should_report([], done=True)
    now[0] = 0.6
    assert v.should_report([], done=False) and not v.should_report([], done=False)
