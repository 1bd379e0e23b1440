"""RunState: the phase, one epoch numbering for every face, an ETA that counts down."""

from __future__ import annotations

import pytest

from engine.records.run_state import RunState

START = {"type": "run_started", "time": 100.0, "config": {"train": {"epochs": 2}}}
START["steps_per_epoch"] = 10


def step(n: int, t: float) -> dict:
    return {"type": "step", "time": t, "step": n, "epoch": 1 + (n - 1) // 10}


def test_phase_and_epoch_follow_the_run_through_an_epoch_end():
    s = RunState()
    assert (s.phase, s.current_epoch()) == ("loading data", 0)
    s.apply(START)
    assert (s.phase, s.current_epoch()) == ("training", 1)
    s.apply(step(10, 110.0))
    s.apply({"type": "phase", "time": 111.0, "phase": "evaluating", "epoch": 1})
    assert (s.phase, s.current_epoch()) == ("evaluating", 1)  # still epoch 1: not 0, not 2
    s.apply({"type": "epoch_end", "time": 115.0, "epoch": 1, "robust_acc": 50.0})
    assert (s.phase, s.current_epoch()) == ("saving", 1)
    s.apply(step(11, 116.0))
    assert (s.phase, s.current_epoch()) == ("training", 2)
    s.apply({"type": "epoch_end", "time": 130.0, "epoch": 2})
    s.apply({"type": "phase", "time": 131.0, "phase": "testing", "epoch": 2})
    assert (s.phase, s.current_epoch()) == ("testing", 2)
    s.apply({"type": "run_finished", "time": 140.0, "status": "finished"})
    assert (s.phase, s.status, s.current_epoch()) == ("done", "finished", 2)


def test_the_eta_counts_down_between_events_and_says_when_the_last_came():
    s = RunState()
    s.apply(START)
    s.apply(step(5, 110.0))  # 5 steps in 10 s: 2 s a step, 15 steps left -> 30 s
    assert s.eta(110.0) == pytest.approx(30.0)
    assert s.eta(115.0) == pytest.approx(25.0)  # no new event: it keeps counting down
    assert s.eta(200.0) == 0.0
    assert s.since_last_event(117.0) == pytest.approx(7.0)
    s.apply(step(10, 120.0))
    assert s.eta(120.0) == pytest.approx(20.0)
