"""A run's curves as its events give them, for figures and tables (torch-free, no matplotlib).

Read through `engine.records.events.read_log`, so a damaged line is skipped and
reported, never a crash. A step or an epoch that appears twice (a run resumed
from its last checkpoint repeats the steps after it) keeps its latest value:
what the run finally did.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.records.events import Damage, read_log
from engine.records.run_state import RunState
from engine.spec.errors import WorkbenchError
from engine.spec.panels import Panels

EVENTS = "events.jsonl"


def number(v: Any) -> float | None:
    """An event's number: floats and ints, and the writer's "nan"/"inf" strings; else None."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str) and v in ("nan", "inf", "-inf"):
        return float(v)
    return None


@dataclass
class Curve:
    """x and y of one series, in x order."""

    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)


@dataclass
class EpochPoint:
    epoch: int
    clean: float | None
    clean_interval: tuple[float, float] | None
    robust: float | None
    robust_interval: tuple[float, float] | None


@dataclass
class RunData:
    """What a run's report draws."""

    name: str
    path: Path
    state: RunState
    steps: dict[int, dict[str, float]] = field(default_factory=dict)  # step -> series -> value
    epochs: dict[int, EpochPoint] = field(default_factory=dict)
    damage: list[Damage] = field(default_factory=list)

    @property
    def panels(self) -> Panels | None:
        return self.state.panels

    def curve(self, key: str) -> Curve:
        """A per-step series ("loss", "lr" or a loss part) over the global step."""
        out = Curve()
        for step in sorted(self.steps):
            v = self.steps[step].get(key)
            if v is not None:
                out.x.append(float(step))
                out.y.append(v)
        return out

    def series_keys(self) -> list[str]:
        """Every loss part the run streamed, in the order it first appeared."""
        keys: dict[str, None] = {}
        for step in sorted(self.steps):
            keys.update(dict.fromkeys(k for k in self.steps[step] if k not in ("loss", "lr")))
        return list(keys)

    def epoch_points(self) -> list[EpochPoint]:
        return [self.epochs[e] for e in sorted(self.epochs)]


def _interval(v: Any) -> tuple[float, float] | None:
    if isinstance(v, list | tuple) and len(v) == 2:
        lo, hi = number(v[0]), number(v[1])
        if lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi):
            return lo, hi
    return None


def run_data(run_dir: Path) -> RunData:
    """A run folder's curves; WorkbenchError when it is not a run (no events file)."""
    events = run_dir / EVENTS
    if not run_dir.is_dir():
        what = "is a file, not a run folder" if run_dir.exists() else "no such run"
        raise WorkbenchError(f"{run_dir}: {what}")
    if not events.is_file():
        raise WorkbenchError(f"{run_dir}: not a run folder (no {EVENTS})")
    log = read_log(events)
    state = RunState()
    data = RunData(run_dir.name, run_dir, state, damage=list(log.damage))
    for e in log.events:
        if not state.apply(e, checked=True):
            continue
        t = e["type"]
        if t == "step" and isinstance(e.get("step"), int):
            row: dict[str, float] = {}
            for key, v in (("loss", e.get("loss")), ("lr", e.get("lr"))):
                if number(v) is not None:
                    row[key] = number(v)  # type: ignore[assignment]
            for key, v in (e.get("parts") or {}).items():
                if number(v) is not None:
                    row[str(key)] = number(v)  # type: ignore[assignment]
            data.steps[e["step"]] = row
        elif t == "epoch_end" and isinstance(e.get("epoch"), int):
            data.epochs[e["epoch"]] = EpochPoint(
                e["epoch"],
                number(e.get("clean_acc")),
                _interval(e.get("clean_interval")),
                number(e.get("robust_acc")),
                _interval(e.get("robust_interval")),
            )
    if not data.name or data.name in (".", ""):
        data.name = run_dir.resolve().name
    return data
