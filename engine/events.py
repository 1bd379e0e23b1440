"""The event stream: one JSON object per line in `events.jsonl`, flushed per line.

Writers never block on readers; readers (headless view, TUI, tools) tail the
file and tolerate a half-written last line. Types: run_started, step,
epoch_end, checkpoint_saved, eval_result, warning, run_finished, run_failed.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

EVENT_TYPES = (
    "run_started",
    "step",
    "epoch_end",
    "checkpoint_saved",
    "eval_result",
    "warning",
    "phase",  # what the run is doing between steps: evaluating, testing
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


def read_events(path: str | Path) -> list[dict[str, Any]]:
    """All complete events in a file; a torn last line (a writer mid-write) is skipped."""
    return list(_parse(Path(path).read_text(encoding="utf-8", errors="replace").splitlines(True)))


def _parse(lines: list[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        if not line.endswith("\n"):
            break
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict) and "type" in event:
            yield event


class EventTail:
    """Incremental reader: each `poll()` returns the events appended since the last call."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.offset = 0
        self._partial = ""

    def poll(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, encoding="utf-8", errors="replace") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
                self.offset = fh.tell()
        except FileNotFoundError:
            return []
        text = self._partial + chunk
        lines = text.splitlines(True)
        if lines and not lines[-1].endswith("\n"):
            self._partial = lines.pop()
        else:
            self._partial = ""
        return list(_parse(lines))
