"""Running a plan: clean accuracy, then every entry on every example, batch by batch.

An example counts as robust under an attack only if the model classifies it
correctly both clean and attacked; the suite's worst case is the per-example
AND over its columns, never the minimum of aggregate accuracies.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from engine.attacks import Attack, eval_mode
from engine.devices import release_memory, search_batch_size
from engine.eval import WORST
from engine.eval.entries import Crafted, Entry, Progress, predict


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
) -> SuiteResult:
    """Clean accuracy of `model`, then every entry's columns on every example.

    `attacks` maps names to plan entries, or to plain attacks (crafted and
    judged on `model`). Each entry starts from `torch.manual_seed(seed)`, so a
    column does not depend on the ones before it. `progress(name, done, total)`
    is called after each batch and `on_result(name, accuracy, seconds)` after
    each column, for the faces.
    """
    result = SuiteResult(len(x))
    t0 = time.perf_counter()
    if clean is None:
        clean = predict(model, x, batch_size) == y
    result.correct["clean"] = clean.cpu()
    result.seconds["clean"] = time.perf_counter() - t0

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
        torch.manual_seed(seed)
        survived = entry.run(model, x, y, start, batch_size, progress)  # type: ignore[union-attr]
        for col, alive in survived.items():
            result.correct[col] = (alive & clean).cpu()
            result.seconds[col] = entry.seconds.get(col, 0.0)  # type: ignore[union-attr]
            done(col)
    return result


def pick_batch_size(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, requested: int | None, default: int
) -> int:
    """The evaluation batch: as asked, else on CUDA the largest power of two that fits.

    The probe runs one forward and input-gradient pass (an attack step) at
    doubling sizes from 64 (engine/devices.py, as training's probe does); on
    CPU memory is not the limit, so the config's `data.eval_batch_size` is used.
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

    best, _ = search_batch_size(
        trial,
        min(len(x), 16384),
        64,
        headroom=1.0,
        cleanup=lambda: release_memory(x.device),
        what="--batch-size",
    )
    return best if best < len(x) else len(x)
