"""Running a plan: clean accuracy, then every entry on every example, batch by batch.

An example counts as robust under an attack only if the model classifies it
correctly both clean and attacked; the suite's worst case is the per-example
AND over its columns, never the minimum of aggregate accuracies.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from engine.attacks import Attack, eval_mode
from engine.devices import release_memory, search_batch_size
from engine.eval import WORST
from engine.eval.entries import Crafted, Entry, Progress, predict
from engine.eval.journal import Journal


@dataclass
class SuiteResult:
    """Per-example outcomes of a suite: `correct[name][i]` is True if example i survived."""

    n: int
    correct: dict[str, torch.Tensor] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def accuracy(self, name: str) -> float:
        return 100.0 * self.correct[name].float().mean().item() if self.n else float("nan")

    @property
    def worst_case(self) -> torch.Tensor:
        names = list(self.correct)
        out = self.correct[names[0]].clone()
        for name in names[1:]:
            out &= self.correct[name]
        return out

    def table(self) -> dict[str, float]:
        """Accuracy (%): the worst case first (the headline number), then clean and each column."""
        cols = {name: self.accuracy(name) for name in self.correct}
        if len(self.correct) > 1:
            return {WORST: 100.0 * self.worst_case.float().mean().item(), **cols}
        return cols

    def rates(self) -> dict[str, float]:
        """Attacked examples per second, per column."""
        return {k: self.n / s for k, s in self.seconds.items() if s > 0}


def run_suite(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attacks: dict[str, Entry | Attack],
    batch_size: int = 500,
    seed: int = 0,
    progress: Progress | None = None,
    *,
    on_result: Callable[[str, float, float], None] | None = None,
    clean: torch.Tensor | None = None,
    journal: Journal | None = None,
) -> SuiteResult:
    """Clean accuracy of `model`, then every entry's columns on every example.

    `attacks` maps names to plan entries, or to plain attacks (crafted and
    judged on `model`). Each entry starts from `torch.manual_seed(seed)`, so a
    column does not depend on the ones before it. `progress(name, done, total)`
    is called after each batch and `on_result(name, accuracy, seconds)` after
    each column, for the faces. With a `journal` every batch's outcome is saved
    as it goes and what it already holds is not run again: batch by batch for
    crafted columns, entry by entry for whole-set entries (AutoAttack's cascade).
    """
    result = SuiteResult(len(x))
    t0 = time.perf_counter()
    if clean is None:
        saved = None if journal is None else journal.get("clean")
        if saved is not None and saved.complete:
            clean = saved.survived.to(x.device)
            result.seconds["clean"] = saved.seconds
        else:
            clean = predict(model, x, batch_size) == y
            result.seconds["clean"] = time.perf_counter() - t0
            if journal is not None:
                journal.record(
                    "clean", clean, result.seconds["clean"], complete=True, device=x.device
                )
    else:
        result.seconds["clean"] = time.perf_counter() - t0
    result.correct["clean"] = clean.cpu()

    def done(name: str) -> None:
        if on_result is not None:
            on_result(name, result.accuracy(name), result.seconds[name])

    done("clean")
    for name, item in attacks.items():
        entry = item if hasattr(item, "columns") else Crafted(name, item)  # type: ignore[arg-type]
        start = clean
        if getattr(entry, "from_survivors", False):  # only what every column so far left
            start = clean.clone()
            for alive in result.correct.values():
                start &= alive.to(start.device)
        survived = _restored(entry, journal)
        if survived is None:
            torch.manual_seed(seed)
            survived = _run_entry(entry, model, x, y, start, batch_size, progress, journal=journal)
        for col, alive in survived.items():
            result.correct[col] = (alive & clean).cpu()
            result.seconds[col] = entry.seconds.get(col, 0.0)  # type: ignore[union-attr]
            done(col)
    return result


def _restored(entry: Any, journal: Journal | None) -> dict[str, torch.Tensor] | None:
    """Every column of `entry` as the journal holds it, if it holds them all complete."""
    saved = {c: journal.get(c) for c in entry.columns} if journal is not None else {}
    if not saved or any(s is None or not s.complete for s in saved.values()):
        return None
    for col, s in saved.items():
        entry.seconds[col] = s.seconds  # type: ignore[union-attr]
        if "flags" in s.extra:  # AutoAttack's own checks, raised when it ran
            entry.flags = list(s.extra["flags"])
    return {col: s.survived for col, s in saved.items()}  # type: ignore[union-attr]


def _run_entry(
    entry: Any,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    start: torch.Tensor,
    batch_size: int,
    progress: Progress | None,
    *,
    journal: Journal | None,
) -> dict[str, torch.Tensor]:
    """Run one entry; it saves its own progress if it can, else it is saved when done."""
    if getattr(entry, "resumable", False):
        return entry.run(model, x, y, start, batch_size, progress, journal=journal)
    survived = entry.run(model, x, y, start, batch_size, progress)
    if journal is not None:
        flags = {"flags": list(getattr(entry, "flags", []))}
        for col, alive in survived.items():
            journal.record(
                col, alive, entry.seconds.get(col, 0.0), complete=True, device=x.device, extra=flags
            )
    return survived


def pick_batch_size(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, requested: int | None, default: int
) -> int:
    """The evaluation batch: as asked, else on CUDA the largest power of two that fits.

    The probe runs one forward and input-gradient pass (an attack step) at
    doubling sizes from 64 (engine/devices.py, as training's probe does); on
    CPU memory is not the limit, so the config's `data.eval_batch_size` is used.
    The probe draws no random numbers the evaluation would see (a resumed run,
    which keeps its batch and skips the probe, draws the same as the first).
    """
    if requested:
        return min(requested, len(x))
    if x.device.type != "cuda":
        return min(default, len(x))

    def trial(b: int) -> None:
        xb = x[:b].clone().requires_grad_(True)
        with eval_mode(model):
            loss = F.cross_entropy(model(xb), y[:b])
        torch.autograd.grad(loss, xb)

    with torch.random.fork_rng(devices=[x.device]):  # a stochastic model's draws stay put
        best, _ = search_batch_size(
            trial,
            min(len(x), 16384),
            64,
            headroom=1.0,
            cleanup=lambda: release_memory(x.device),
            what="--batch-size",
        )
    return best if best < len(x) else len(x)
