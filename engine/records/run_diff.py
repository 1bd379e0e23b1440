"""Which settings differ between runs: the question a comparison of curves raises first.

Torch-free, so the app's Compare screen and the CLI can both ask it cheaply.
A run's settings are the resolved config its `run_started` event recorded
(what actually ran, after presets, `--set` and the fast path's choices).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.records.events import read_events
from engine.spec.errors import WorkbenchError

MISSING = "(unset)"


def flatten(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"train": {"epochs": 3}}` -> `{"train.epochs": 3}`; lists stay one value."""
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def differing(configs: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, list[Any]]]:
    """(dotted key, one value per run in `configs`' order) for every key whose values differ.

    A key one run lacks counts as different and shows as "(unset)"; with fewer
    than two runs nothing can differ.
    """
    if len(configs) < 2:
        return []
    flat = [flatten(c) for c in configs.values()]
    keys = sorted({k for f in flat for k in f})
    rows = []
    for key in keys:
        values = [f.get(key, MISSING) for f in flat]
        if any(v != values[0] for v in values[1:]):
            rows.append((key, values))
    return rows


def run_config(run_dir: Path) -> dict[str, Any]:
    """The resolved config a run recorded in its first `run_started` event."""
    path = run_dir / "events.jsonl"
    if not path.exists():
        raise WorkbenchError(f"{run_dir}: not a run (no events.jsonl)")
    for e in read_events(path):
        if e.get("type") == "run_started" and isinstance(e.get("config"), dict):
            return e["config"]
    raise WorkbenchError(f"{path}: no run_started event yet")
