"""A run's events as (tag, step, epoch, value) scalars under stable tags (torch-free).

One mapping feeds the TensorBoard export, the live TensorBoard sink and the
long-form CSV, so all three hold the same numbers under the same names:

| event | tags (step: the global step) |
|---|---|
| `step` | `train/loss`, `train/<part>` (each loss part), `train/lr`, `train/samples_per_s` |
| `epoch_end` | `val/clean_acc`, `val/robust_acc` with `_low`/`_high` (95% Wilson), |
|  | `epoch/<mean>` (the epoch's training means), `epoch/seconds` |
| `run_finished` | `test/clean_acc`, `test/robust_acc` with `_low`/`_high` |
| `eval_result` | `eval/<suite>/<column>` |

An epoch's scalars sit at the global step that ends it (epoch x steps per epoch),
so validation curves line up with training ones in TensorBoard.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from engine.report.run_data import number

HPARAM_METRICS = ("val/robust_acc", "val/clean_acc", "test/robust_acc", "test/clean_acc")


@dataclass(frozen=True)
class Scalar:
    tag: str
    step: int
    epoch: int
    value: float
    time: float


def tag_part(text: str) -> str:
    """A name made safe as one level of a tag: "robust (worst case)" -> "robust_worst_case"."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("_") or "_"


class ScalarStream:
    """Feed events in file order; each `feed` returns that event's scalars."""

    def __init__(self) -> None:
        self.steps_per_epoch = 1
        self.step = 0
        self.epoch = 0

    def feed(self, e: dict[str, Any]) -> list[Scalar]:
        t = e.get("type")
        when = number(e.get("time")) or 0.0
        out: list[Scalar] = []

        def add(tag: str, value: Any) -> None:
            v = number(value)
            if v is not None:
                out.append(Scalar(tag, self.step, self.epoch, v, when))

        def accuracies(split: str, record: dict[str, Any]) -> None:
            """Clean and robust accuracy of a split, with their interval's bounds."""
            for which in ("clean", "robust"):
                add(f"{split}/{which}_acc", record.get(f"{which}_acc"))
                bounds = record.get(f"{which}_interval")
                if isinstance(bounds, list) and len(bounds) == 2:
                    add(f"{split}/{which}_acc_low", bounds[0])
                    add(f"{split}/{which}_acc_high", bounds[1])

        if t == "run_started":
            spe = e.get("steps_per_epoch")
            self.steps_per_epoch = spe if isinstance(spe, int) and spe > 0 else 1
        elif t == "step":
            if isinstance(e.get("step"), int):
                self.step = e["step"]
            if isinstance(e.get("epoch"), int):
                self.epoch = e["epoch"]
            add("train/loss", e.get("loss"))
            for key, v in (e.get("parts") or {}).items():
                add(f"train/{tag_part(key)}", v)
            add("train/lr", e.get("lr"))
            add("train/samples_per_s", e.get("samples_per_s"))
        elif t == "epoch_end" and isinstance(e.get("epoch"), int):
            self.epoch = e["epoch"]
            self.step = self.epoch * self.steps_per_epoch
            accuracies("val", e)
            for key, v in (e.get("train") or {}).items():
                add(f"epoch/{tag_part(key)}", v)
            add("epoch/seconds", e.get("seconds"))
        elif t == "run_finished" and isinstance(e.get("test"), dict):
            accuracies("test", e["test"])
        elif t == "eval_result" and isinstance(e.get("table"), dict):
            suite = tag_part(e.get("suite", "suite"))
            for column, v in e["table"].items():
                add(f"eval/{suite}/{tag_part(column)}", v)
        return out


def scalars(events: list[dict[str, Any]]) -> list[Scalar]:
    """Every scalar of a run's events, in order."""
    stream = ScalarStream()
    return [s for e in events for s in stream.feed(e)]


def hparams(config: dict[str, Any]) -> dict[str, int | float | str]:
    """A resolved config flattened for TensorBoard's HParams: "method.lambda" -> 0.1.

    Booleans become "true"/"false", lists and other values their text; `description` is left
    out (it is prose).
    """
    out: dict[str, int | float | str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, bool):  # torch's hparams() would store a bool as 1.0
            out[prefix] = "true" if value else "false"
        elif isinstance(value, int | float | str):
            out[prefix] = value
        elif value is not None:
            out[prefix] = str(value)

    walk("", {k: v for k, v in config.items() if k != "description"})
    return out
