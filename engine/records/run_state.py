"""A run as its events describe it, built up one event at a time (torch-free).

The runs listing, the app's live screen and the headless view all read a run
this way, so they agree on its status, progress, accuracies and ETA.
"""

from __future__ import annotations

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
    error: str = ""
    damage: list[str] = field(default_factory=list)  # what could not be applied, and where

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
        if t == "run_started":
            self.config = e.get("config") or {}
            self.panels = Panels.from_json(e.get("panels"))
            self.device = e.get("device", "")
            self.steps_per_epoch = max(1, int(e.get("steps_per_epoch", 1) or 1))
            self.start_step = int(e.get("start_epoch", 0) or 0) * self.steps_per_epoch
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
        elif t == "run_finished":
            self.status = e.get("status", "finished")
            self.phase = "done"
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

    def eta(self, now: float) -> float | None:
        """Seconds left at the pace (evaluation included) of this process so far.

        The pace is measured up to the newest event and the time since then is
        taken off, so between events the ETA counts down instead of growing.
        """
        done, total = self.progress()
        if self.status != "running" or self.resumed_at is None or done <= self.start_step:
            return None
        last = self.last_time if self.last_time is not None else now
        pace = (last - self.resumed_at) / (done - self.start_step)
        return max(0.0, (total - done) * pace - max(0.0, now - last))

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
