"""The event stream: one JSON object per line in `events.jsonl`, flushed per line.

Writers never block on readers; readers (headless view, TUI, tools) tail the
file and tolerate a half-written last line. Types: run_started, step,
epoch_end, checkpoint_saved, eval_result, warning, phase, run_finished,
run_failed.

An events file is hostile input (a crashed writer, a user's editor, a disk
error): every reader goes through `read_log` or `EventTail`, which hand on
only events whose fields have the types `event_schema` demands and report
every other line as `Damage` (file, line, reason) instead of raising.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.records.event_schema import problem

EVENT_TYPES = (
    "run_started",
    "step",
    "epoch_end",
    "checkpoint_saved",
    "eval_result",
    "warning",
    "phase",  # what the run is doing between steps: evaluating, testing
    "guard",  # a check of the catastrophic-overfitting guard (engine/train/guard.py)
    "run_finished",
    "run_failed",
)

Listener = Callable[[dict[str, Any]], None]


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: write them as strings so every line stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


class EventWriter:
    """Appends events to a JSONL file and tells in-process listeners (the headless view)."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self._fh = open(self.path, "a", encoding="utf-8") if self.path else None  # noqa: SIM115
        self.listeners: list[Listener] = []

    def emit(self, type: str, **fields: Any) -> dict[str, Any]:
        assert type in EVENT_TYPES, type
        event = {"type": type, "time": time.time(), **_clean(fields)}
        if self._fh is not None:
            self._fh.write(json.dumps(event, separators=(",", ":")) + "\n")
            self._fh.flush()
        for listener in self.listeners:
            listener(event)
        return event

    def close(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None


@dataclass(frozen=True)
class Damage:
    """One line of an events file that no reader may trust (or the file itself, line 0)."""

    path: str
    line: int  # 1-based; 0 when the file as a whole cannot be read
    reason: str

    def __str__(self) -> str:
        where = f"{self.path} line {self.line}" if self.line else self.path
        return f"{where}: {self.reason}"


@dataclass
class EventLog:
    """The events a reader may trust, and what it had to skip."""

    events: list[dict[str, Any]] = field(default_factory=list)
    damage: list[Damage] = field(default_factory=list)


def read_log(path: str | Path) -> EventLog:
    """Every valid complete event; bad lines (and an unreadable file) become `damage`.

    A torn last line is a writer mid-write, not damage: it is left for later.
    """
    path = Path(path)
    log = EventLog()
    try:
        with open(path, encoding="utf-8", errors="replace", newline="") as fh:
            text = fh.read()  # newline="": a stray \r in binary junk ends no line
    except OSError as exc:
        log.damage.append(Damage(str(path), 0, f"cannot be read ({exc.strerror or exc})"))
        return log
    _parse(text.split("\n")[:-1], str(path), 1, log)  # the last piece is torn or empty
    return log


def read_events(path: str | Path) -> list[dict[str, Any]]:
    """The valid complete events of a file (see `read_log` for what was skipped)."""
    return read_log(path).events


def _parse(lines: list[str], path: str, first: int, log: EventLog) -> None:
    """Complete lines (their newline removed), numbered from `first`, into `log`."""
    for number, line in enumerate(lines, start=first):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except (ValueError, RecursionError):  # includes a 5,000-digit number
            log.damage.append(Damage(path, number, "not a JSON object"))
            continue
        reason = problem(event)
        if reason is None:
            log.events.append(event)
        elif reason:  # "" = an event type this version does not know: skipped quietly
            log.damage.append(Damage(path, number, reason))


class EventTail:
    """Incremental reader: each `poll()` returns the valid events appended since the last call.

    What it had to skip accumulates in `damage`.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.offset = 0
        self.line = 1  # the number of the next complete line
        self._partial = ""
        self.damage: list[Damage] = []

    def poll(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, encoding="utf-8", errors="replace", newline="") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
                self.offset = fh.tell()
        except FileNotFoundError:
            return []
        except OSError as exc:
            reason = f"cannot be read ({exc.strerror or exc})"
            if not any(d.line == 0 and d.reason == reason for d in self.damage):
                self.damage.append(Damage(str(self.path), 0, reason))
            return []
        *lines, self._partial = (self._partial + chunk).split("\n")
        log = EventLog()
        _parse(lines, str(self.path), self.line, log)
        self.line += len(lines)
        self.damage.extend(log.damage)
        return log.events
