"""A run as its events describe it, built up one event at a time (torch-free).

The runs listing, the app's live screen and the headless view all read a run
this way, so they agree on its status, progress, accuracies and ETA.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from engine.records.event_schema import problem
from engine.spec.panels import Panels


@dataclass
class RunState:
    """What a run's events say so far; `apply` one event at a time, in order."""

    status: str = "starting"  # starting | running | finished | failed | interrupted
    phase: str = "loading data"  # loading data | training | evaluating | saving | testing | done
    last_time: float | None = None  # the newest event's time ("last event Ns ago")
    config: dict[str, Any] = field(default_factory=dict)
    panels: Panels | None = None  # what the method declared it shows; None: an older run
    device: str = ""
    started: float | None = None  # the first run_started
    resumed_at: float | None = None  # the latest run_started (this process's start)
    steps_per_epoch: int = 1
    start_step: int = 0  # global step this process started from
    last_step: dict[str, Any] = field(default_factory=dict)
    last_epoch: dict[str, Any] = field(default_factory=dict)  # the latest epoch_end
    epoch: int = 0  # completed epochs
    best_robust_acc: float | None = None
    best_robust_interval: list[float] | None = None  # of the epoch that set the best
    last_clean_acc: float | None = None
    last_clean_interval: list[float] | None = None
    epochs: list[int] = field(default_factory=list)
    clean_acc: list[float | None] = field(default_factory=list)
    robust_acc: list[float | None] = field(default_factory=list)
    # the catastrophic-overfitting guard's checks (`guard` events): x in epochs trained
    guard_x: list[float] = field(default_factory=list)
    guard_acc: list[float] = field(default_factory=list)
    guard_last: dict[str, Any] = field(default_factory=dict)  # the latest guard event
    guard_fired: dict[str, Any] = field(default_factory=dict)  # the latest that fired
    error: str = ""
    damage: list[str] = field(default_factory=list)  # what could not be applied, and where
    test: dict[str, Any] | None = None  # run_finished's final test of the selected checkpoint
    # what the ETA is measured from (see `eta`): every process of the run, pooled
    eval_samples: int = 0  # validation samples an evaluation reads (run_started)
    test_size: int = 0
    train_seconds: float = 0.0  # time between step events, and the steps it took
    train_steps: int = 0
    eval_seconds: list[float] = field(default_factory=list)  # one per validation evaluation
    save_seconds: dict[int, float] = field(default_factory=dict)  # epoch -> epoch_end to saved
    phase_time: float | None = None  # when the current phase (evaluating, saving, ...) began
    _stretch: tuple[float, int] | None = field(default=None, repr=False)  # (time, step)
    _stopped_at: tuple[int, int] | None = field(default=None, repr=False)  # (epoch, step)

    def apply(self, e: dict[str, Any], checked: bool = False) -> bool:
        """Apply one event (True if applied); one with fields of the wrong types goes to `damage`.

        An event type this version does not know is skipped without complaint. `checked`:
        the event came through `read_log` or `EventTail`, which validated it already.
        """
        reason = None if checked else problem(e)
        if reason:
            self.damage.append(reason)
        if reason is not None:
            return False
        t = e.get("type")
        if isinstance(e.get("time"), int | float):
            self.last_time = float(e["time"])
        self._time_phases(e)
        if t == "run_started":
            self.config = e.get("config") or {}
            self.panels = Panels.from_json(e.get("panels"))
            self.device = e.get("device", "")
            self.steps_per_epoch = max(1, int(e.get("steps_per_epoch", 1) or 1))
            self.start_step = self._resumed_from(e)
            self._stopped_at = None
            self.started = self.started or e.get("time")
            self.resumed_at = e.get("time")
            self.last_step = {}  # a restart's progress starts from its own first step
            self.status = "running"
            self.phase = "training"
        elif t == "step":
            self.last_step = e
            self.phase = "training"
        elif t == "phase":
            self.phase = str(e.get("phase", self.phase))
        elif t == "epoch_end":
            self.phase = "saving"  # checkpoints are written right after epoch_end
            self.last_epoch = e
            self.epoch = int(e.get("epoch", self.epoch))
            self.epochs.append(self.epoch)
            self.clean_acc.append(_number(e.get("clean_acc")))
            self.robust_acc.append(_number(e.get("robust_acc")))
            best = _number(e.get("best_robust_acc"))
            if best is not None and best == _number(e.get("robust_acc")):
                self.best_robust_interval = e.get("robust_interval")
            self.best_robust_acc = best
            clean = _number(e.get("clean_acc"))
            if clean is not None:
                self.last_clean_acc, self.last_clean_interval = clean, e.get("clean_interval")
        elif t == "guard":
            self.guard_last = e
            x = e.get("epochs")
            self.guard_x.append(float(x) if isinstance(x, int | float) else float(self.epoch))
            self.guard_acc.append(float(e["acc"]))
            if e.get("fired"):
                self.guard_fired = e
        elif t == "run_finished":
            self.status = e.get("status", "finished")
            self.phase = "done"
            if isinstance(e.get("test"), dict):
                self.test = e["test"]
        elif t == "run_failed":
            self.status = "failed"
            self.phase = "done"
            self.error = str(e.get("error", ""))
        return True

    @property
    def damaged(self) -> str:
        """The first thing that could not be read ("" for an intact run), and how many more."""
        if not self.damage:
            return ""
        more = len(self.damage) - 1
        return self.damage[0] + (f" (and {more} more)" if more else "")

    @property
    def name(self) -> str:
        return str(self.config.get("name", ""))

    @property
    def method(self) -> str:
        return str((self.config.get("method") or {}).get("name", ""))

    @property
    def epochs_total(self) -> int:
        return int((self.config.get("train") or {}).get("epochs", 0) or 0)

    def progress(self) -> tuple[int, int]:
        """(steps done, steps in the whole run)."""
        done = int(self.last_step.get("step", self.start_step))
        return done, max(1, self.epochs_total * self.steps_per_epoch)

    def _resumed_from(self, e: dict[str, Any]) -> int:
        """The global step a run_started begins at: its epoch's first, or where a stop saved
        mid-epoch (that stop's run_finished named the step) when it resumes that epoch."""
        spe = max(1, int(e.get("steps_per_epoch", 1) or 1))
        start = int(e.get("start_epoch", 0) or 0) * spe
        if self._stopped_at and self._stopped_at[0] == e.get("start_epoch", 0):
            start = max(start, self._stopped_at[1])
        return start

    def _time_phases(self, e: dict[str, Any]) -> None:
        """Measure what each phase takes, for `eta`: training between step events (a stretch
        starts at run_started or after an epoch's checkpoints, and breaks at an evaluation),
        each evaluation's `eval_seconds`, and each epoch's saving (epoch_end to its last
        checkpoint_saved). Gaps between processes never count: a stretch restarts at run_started."""
        t, kind = e.get("time"), e.get("type")
        if not isinstance(t, int | float):
            return
        t = float(t)
        if kind == "run_started":
            self.eval_samples = int(e.get("eval_samples") or e.get("val_size") or 0)
            self.test_size = int(e.get("test_size") or 0)
            self._stretch = (t, self._resumed_from(e))
            self.phase_time = t
        elif kind == "step":
            step = int(e.get("step", 0))
            if self._stretch is not None and step > self._stretch[1]:
                self.train_seconds += t - self._stretch[0]
                self.train_steps += step - self._stretch[1]
            self._stretch = (t, step)
        elif kind == "phase":
            self._stretch, self.phase_time = None, t
        elif kind == "epoch_end":
            took = e.get("eval_seconds")
            evaluated = e.get("robust_acc") is not None or e.get("clean_acc") is not None
            if isinstance(took, int | float) and math.isfinite(took) and took >= 0 and evaluated:
                self.eval_seconds.append(float(took))
            elif evaluated and self.phase == "evaluating" and self.phase_time is not None:
                self.eval_seconds.append(t - self.phase_time)  # an older run: no eval_seconds
            self._stretch, self.phase_time = None, t
        elif kind == "checkpoint_saved" and self.phase == "saving" and self.phase_time:
            self.save_seconds[self.epoch] = t - self.phase_time
            self._stretch = (t, self.epoch * self.steps_per_epoch)
        elif kind == "run_finished" and isinstance(e.get("step"), int):
            self._stopped_at = (int(e.get("epoch", 0) or 0), int(e["step"]))

    def eta(self, now: float) -> float | None:
        """Seconds left: the training steps, every evaluation still due, every epoch's
        checkpoints and the final test, each at the pace this run measured so far.

        The training pace pools every process of the run, so a resume does not trust a
        few steps of its own. An evaluation takes the mean of the measured ones (before the
        first, its samples at the training throughput); the test, the mean evaluation scaled
        by test size / evaluation samples. The time since the newest event is taken off the
        piece in progress, so the ETA counts down between events; an evaluation or the test
        still running never counts below one second. None until a pace is known.
        """
        if self.status != "running" or self.resumed_at is None or not self.train_steps:
            return None
        done, total = self.progress()
        last = self.last_time if self.last_time is not None else now
        since = max(0.0, now - last)
        phase = self.phase
        train = max(0, total - done) * self.train_seconds / self.train_steps
        if phase == "training":
            train = max(0.0, train - since)
        rate = self.last_step.get("samples_per_s")
        per_eval = (
            sum(self.eval_seconds) / len(self.eval_seconds)
            if self.eval_seconds
            else self.eval_samples / rate
            if isinstance(rate, int | float) and rate > 0
            else 0.0
        )
        in_phase = max(0.0, now - (self.phase_time if self.phase_time is not None else last))
        every = (self.config.get("eval") or {}).get("every", 1)
        every = every if isinstance(every, int) and every > 0 else 1
        last_epoch = self.epochs_total
        due = [
            x for x in range(self.epoch + 1, last_epoch + 1) if x % every == 0 or x == last_epoch
        ]
        evals = len(due) * per_eval
        if phase == "evaluating" and due and per_eval:
            evals -= per_eval - max(1.0, per_eval - in_phase)
        per_save = (
            sum(self.save_seconds.values()) / len(self.save_seconds) if self.save_seconds else 0.0
        )
        saves = max(0, last_epoch - self.epoch) * per_save
        if phase == "saving":
            saves += max(0.0, per_save - in_phase)
        per_test = per_eval * (
            self.test_size / self.eval_samples if self.test_size and self.eval_samples else 1.0
        )
        test = max(1.0, per_test - in_phase) if phase == "testing" and per_test else per_test
        left = train + evals + saves + test
        return left if math.isfinite(left) and left >= 0 else None  # an edited file's times

    def current_epoch(self) -> int:
        """The epoch the run is in (1-based) while inside one; else the epochs done.

        Inside: training it, or evaluating it before its epoch_end. From its
        epoch_end (checkpoints being written) to the next step, it is done.

        Home and the live screen both show this, so they never disagree by one.
        """
        in_epoch = self.phase in ("loading data", "training", "evaluating")
        if self.status == "running" and in_epoch:
            return min(self.epoch + 1, self.epochs_total or self.epoch + 1)
        return self.epoch

    def since_last_event(self, now: float) -> float | None:
        return None if self.last_time is None else max(0.0, now - self.last_time)


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None
