"""What a valid event looks like: the field types every reader of `events.jsonl` relies on.

The readers (the runs listing, the app's screens, studies, `runs --diff`)
do arithmetic and formatting on these fields; one line with `"epoch":
"three"` or `1e308` must not reach them. `problem(event)` says what is
wrong with an event in one phrase, or None when it may be applied. Fields
not listed here are free; a listed field may be absent unless required.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

MAX_COUNT = 10**9  # epochs, steps, batches, sizes: any real run is far below this
NON_FINITE = ("nan", "inf", "-inf")  # how the writer spells NaN and inf (JSON has neither)

Check = Callable[[Any], str | None]  # None when the value is fine, else what it should be


def _is_real(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def count(v: Any) -> str | None:
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_COUNT:
        return None
    return f"a whole number from 0 to {MAX_COUNT:,}"


def finite(v: Any) -> str | None:
    return None if _is_real(v) and math.isfinite(v) else "a finite number"


def reading(v: Any) -> str | None:
    """A measured value (a loss, a rate): finite, or the writer's spelling of NaN/inf."""
    if _is_real(v) or v in NON_FINITE:
        return None
    return "a number"


def percent(v: Any) -> str | None:
    """An accuracy in percent, or null where the epoch measured none."""
    if v is None or (_is_real(v) and 0.0 <= v <= 100.0):
        return None
    return "a percentage from 0 to 100, or null"


def measured(v: Any) -> str | None:
    """An accuracy that was measured: a percentage, never null."""
    return "a percentage from 0 to 100" if v is None else percent(v)


def interval(v: Any) -> str | None:
    if v is None or (
        isinstance(v, list) and len(v) == 2 and all(percent(b) is None and b is not None for b in v)
    ):
        return None
    return "null or [low, high] in percent"


def text(v: Any) -> str | None:
    return None if isinstance(v, str) else "a string"


def flag(v: Any) -> str | None:
    return None if isinstance(v, bool) else "true or false"


def readings(v: Any) -> str | None:
    """A table of named measured values (a step's loss parts, an epoch's training means)."""
    if isinstance(v, dict) and all(isinstance(k, str) and reading(x) is None for k, x in v.items()):
        return None
    return "an object of numbers"


def table(v: Any) -> str | None:
    """An evaluation's accuracy per column (null where a column did not run)."""
    if isinstance(v, dict) and all(isinstance(k, str) and percent(x) is None for k, x in v.items()):
        return None
    return "an object of percentages"


def obj(v: Any) -> str | None:
    return None if isinstance(v, dict) else "an object"


def one_of(*values: str) -> Check:
    def check(v: Any) -> str | None:
        return None if v in values else "one of " + ", ".join(values)

    return check


def config(v: Any) -> str | None:
    """The resolved preset: the parts the listing and the app read must have their types."""
    if not isinstance(v, dict):
        return "an object"
    for section, key, check in (
        (None, "name", text),
        ("method", "name", text),
        ("train", "epochs", count),
    ):
        where = v if section is None else v.get(section, {})
        if section is not None and not isinstance(where, dict):
            return f"an object whose {section} is an object"
        if key in where and check(where[key]) is not None:
            return f"an object whose {section + '.' if section else ''}{key} is {check(where[key])}"
    return None


# type -> {field: (check, required)}
SCHEMA: dict[str, dict[str, tuple[Check, bool]]] = {
    "run_started": {
        "config": (config, True),
        "device": (text, False),
        "steps_per_epoch": (count, False),
        "start_epoch": (count, False),
        "resumed": (flag, False),
        "train_size": (count, False),
        "val_size": (count, False),
        "test_size": (count, False),
        "eval_samples": (count, False),
        "threads": (count, False),
        "perf": (obj, False),
        "distributed": (obj, False),
    },
    "step": {
        "epoch": (count, False),
        "step": (count, True),
        "batch": (count, False),
        "batches": (count, False),
        "loss": (reading, False),
        "parts": (readings, False),
        "lr": (reading, False),
        "samples_per_s": (finite, False),
        "gpu_mem_mb": (finite, False),
        "gpu_peak_mb": (finite, False),
    },
    "epoch_end": {
        "epoch": (count, True),
        "train": (readings, False),
        "split": (text, False),
        "clean_acc": (percent, False),
        "clean_n": (count, False),
        "clean_interval": (interval, False),
        "robust_acc": (percent, False),
        "robust_n": (count, False),
        "robust_interval": (interval, False),
        "seconds": (reading, False),
        "eval_seconds": (reading, False),
        "lr": (reading, False),
        "best_robust_acc": (percent, False),
    },
    "checkpoint_saved": {"path": (text, False), "epoch": (count, False), "kind": (text, False)},
    "eval_result": {
        "suite": (text, False),
        "checkpoint": (text, False),
        "table": (table, False),
        "path": (text, False),
        "warnings": (count, False),
    },
    "warning": {"message": (text, False)},
    "guard": {
        "step": (count, True),
        "epochs": (finite, False),
        "acc": (measured, True),
        "n": (count, False),
        "interval": (interval, False),
        "best_acc": (percent, False),
        "best_step": (count, False),
        "improved": (flag, False),
        "fired": (flag, False),
        "attack": (text, False),
    },
    "phase": {"phase": (text, True), "epoch": (count, False)},
    "run_finished": {
        "status": (one_of("finished", "interrupted"), False),
        "epoch": (count, False),
        "step": (count, False),
        "best_robust_acc": (percent, False),
        "last": (obj, False),
        "test": (lambda v: None if v is None else obj(v), False),
        "guard": (obj, False),
    },
    "run_failed": {"error": (text, False), "log": (text, False)},
}


def problem(event: Any) -> str | None:
    """What is wrong with one decoded line: None if valid, "" for an unknown event type."""
    if not isinstance(event, dict):
        return "not a JSON object"
    kind = event.get("type")
    if not isinstance(kind, str):
        return "no event type"
    fields = SCHEMA.get(kind)
    if fields is None:
        return ""  # written by a newer version, perhaps: nothing here reads it
    if "time" in event and finite(event["time"]) is not None:
        return f"{kind}.time is {_show(event['time'])}, not a finite number"
    for name, (check, required) in fields.items():
        if name not in event:
            if required:
                return f"{kind} has no {name}"
            continue
        wanted = check(event[name])
        if wanted is not None:
            return f"{kind}.{name} is {_show(event[name])}, not {wanted}"
    return None


def _show(v: Any) -> str:
    """A value as the message quotes it: short, whatever it is."""
    s = json.dumps(v) if not isinstance(v, float) or math.isfinite(v) else repr(v)
    return s if len(s) <= 40 else s[:37] + "..."
