"""The ETA counts every phase: training, each evaluation still due, checkpoints, the test.

A synthetic run with known times: 4 epochs of 10 steps at 1 s a step (a step event every 5),
an evaluation of 100 samples every epoch taking 4 s, 1 s of checkpoints after each epoch_end,
and a test of 200 samples (twice an evaluation: 8 s).
"""

from __future__ import annotations

import pytest

from engine.records.run_state import RunState

CONFIG = {"name": "eta", "train": {"epochs": 4}, "eval": {"every": 1}}


def started(t: float, start_epoch: int = 0) -> dict:
    return {
        "type": "run_started",
        "time": t,
        "config": CONFIG,
        "steps_per_epoch": 10,
        "start_epoch": start_epoch,
        "eval_samples": 100,
        "test_size": 200,
    }


def step(n: int, t: float) -> dict:
    return {"type": "step", "time": t, "step": n, "epoch": 1 + (n - 1) // 10, "samples_per_s": 50}


def epoch(k: int, t0: float) -> list[dict]:
    """Epoch k's events from t0, when its first steps begin: 10 s of steps, 4 s of
    evaluation, 1 s of checkpoints; it ends at t0 + 15."""
    return [
        step(10 * k - 5, t0 + 5),
        step(10 * k, t0 + 10),
        {"type": "phase", "time": t0 + 10, "phase": "evaluating", "epoch": k},
        {
            "type": "epoch_end",
            "time": t0 + 14,
            "epoch": k,
            "clean_acc": 50.0,
            "robust_acc": 30.0,
            "seconds": 14.0,
            "eval_seconds": 4.0,
        },
        {"type": "checkpoint_saved", "time": t0 + 15, "epoch": k, "kind": "last"},
    ]


def run(events: list[dict]) -> RunState:
    s = RunState()
    for e in events:
        assert s.apply(e), e
    return s


def test_at_three_quarters_of_the_steps_the_eta_holds_the_evaluations_saves_and_test():
    s = run([started(0.0), *epoch(1, 0.0), *epoch(2, 15.0), step(25, 35.0), step(30, 40.0)])
    assert s.progress() == (30, 40)
    # 10 steps (10 s) + evaluations of epochs 3 and 4 (8 s) + 2 saves (2 s) + the test (8 s);
    # the run really ends at 68: epoch 3 evaluates and saves to 45, epoch 4 to 60, test to 68
    assert s.eta(40.0) == pytest.approx(28.0)
    assert s.eta(41.0) == pytest.approx(27.0)  # counts down between events


def test_the_eta_counts_down_through_an_evaluation_and_a_save():
    s = run([started(0.0), *epoch(1, 0.0), step(15, 20.0), step(20, 25.0)])
    s.apply({"type": "phase", "time": 25.0, "phase": "evaluating", "epoch": 2})
    # epochs 2-4 evaluate (12 s), 3 saves (3 s), 20 steps (20 s), the test (8 s)
    assert s.eta(25.0) == pytest.approx(43.0)
    assert s.eta(27.0) == pytest.approx(41.0)  # 2 s into the evaluation: 2 s of it left
    s.apply({"type": "epoch_end", "time": 29.0, "epoch": 2, "robust_acc": 1.0, "eval_seconds": 4})
    assert s.phase == "saving"
    assert s.eta(29.5) == pytest.approx(0.5 + 20 + 8 + 2 + 8)  # half the save left


def test_while_testing_the_eta_is_the_test_left_never_zero():
    events = [started(0.0)]
    for k in range(4):
        events += epoch(k + 1, 15.0 * k)
    s = run([*events, {"type": "phase", "time": 60.0, "phase": "testing", "epoch": 4}])
    assert s.eta(60.0) == pytest.approx(8.0)  # 200 test samples at 4 s per 100
    assert s.eta(64.0) == pytest.approx(4.0)
    assert s.eta(75.0) == pytest.approx(1.0)  # overran its estimate: still not done
    s.apply({"type": "run_finished", "time": 68.0, "status": "finished", "epoch": 4})
    assert s.eta(68.0) is None


def test_after_a_resume_the_pace_pools_the_earlier_process_and_counts_from_where_it_stopped():
    s = run([started(0.0), *epoch(1, 0.0), step(15, 20.0)])
    s.apply({"type": "run_finished", "time": 21.0, "status": "interrupted", "epoch": 1, "step": 15})
    s.apply(started(1000.0, start_epoch=1))
    # right after the restart: the earlier process's pace, 25 steps, 3 evaluations, 3 saves, test
    assert s.eta(1000.0) == pytest.approx(25 + 12 + 3 + 8)
    s.apply(step(20, 1005.0))  # 5 steps from step 15 in 5 s: not 10 steps (0.5 s a step)
    assert s.eta(1005.0) == pytest.approx(20 + 12 + 3 + 8)


def test_hostile_times_give_no_eta_rather_than_an_infinite_one():
    s = run([started(-1e308), step(5, 1e308)])
    assert s.eta(1e308) is None
    s = run([started(0.0), *epoch(1, 0.0)])
    s.apply({"type": "epoch_end", "time": 16.0, "epoch": 2, "robust_acc": 1.0, "eval_seconds": -5})
    assert s.eval_seconds == [4.0]  # a negative evaluation time is not a measurement
