"""A run as its events describe it, built up one event at a time (torch-free).

The runs listing, the app's live screen and the headless view all read a run
this way, so they agree on its status, progress, accuracies and ETA.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunState:
    """What a run's events say so far; `apply` one event at a time, in order."""

    status: str = "starting"  # starting | running | finished | failed | interrupted
    config: dict[str, Any] = field(default_factory=dict)
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

    def apply(self, e: dict[str, Any]) -> None:
        t = e.get("type")
        if t == "run_started":
            self.config = e.get("config") or {}
            self.device = e.get("device", "")
            self.steps_per_epoch = max(1, int(e.get("steps_per_epoch", 1) or 1))
            self.start_step = int(e.get("start_epoch", 0) or 0) * self.steps_per_epoch
            self.started = self.started or e.get("time")
            self.resumed_at = e.get("time")
            self.last_step = {}  # a restart's progress starts from its own first step
            self.status = "running"
        elif t == "step":
            self.last_step = e
        elif t == "epoch_end":
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
        elif t == "run_failed":
            self.status = "failed"
            self.error = str(e.get("error", ""))

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
        """Seconds left at the pace (evaluation included) of this process so far."""
        done, total = self.progress()
        if self.status != "running" or self.resumed_at is None or done <= self.start_step:
            return None
        pace = (now - self.resumed_at) / (done - self.start_step)
        return max(0.0, (total - done) * pace)


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None
