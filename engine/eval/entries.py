"""Plan entries: what runs one or more columns of a suite and says which examples survived.

Most attacks craft examples batch by batch (`Crafted`); AutoAttack
(engine/attacks/autoattack.py) runs its cascade over the whole set and yields
a column per component. Both have the shape of `Entry`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from engine.attacks import Attack, eval_mode
from engine.eval.journal import Journal

Progress = Callable[[str, int, int], None]
# (column, positions in the evaluated set, inputs the column judged, which of them fooled the
# classifier): how an entry hands its adversarial inputs to `--save-adv` (engine/eval/adv_keep.py)
Keep = Callable[[str, torch.Tensor, torch.Tensor, torch.Tensor], None]


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Predicted labels in eval mode (the caller's mode is restored)."""
    with eval_mode(model):
        return torch.cat(
            [model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)]
        )


class Entry(Protocol):
    """Something a plan runs: its columns, and per column which examples survived."""

    columns: list[str]
    roles: dict[str, str]
    params: dict[str, dict[str, Any]]
    seconds: dict[str, float]

    def run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        clean: torch.Tensor,
        batch_size: int,
        progress: Progress | None,
    ) -> dict[str, torch.Tensor]: ...


@dataclass
class Crafted:
    """One column crafted batch by batch by a per-example attack, judged by the model run on."""

    name: str
    attack: Attack
    role: str = "white"
    info: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    resumable: ClassVar[bool] = True  # `run` takes a journal and continues what it holds
    keep: Keep | None = None  # set by `--save-adv`: sees every batch's inputs and outcomes

    @property
    def columns(self) -> list[str]:
        return [self.name]

    @property
    def roles(self) -> dict[str, str]:
        return {self.name: self.role}

    @property
    def params(self) -> dict[str, dict[str, Any]]:
        return {self.name: self.info}

    def run(
        self, model, x, y, clean, batch_size, progress, journal: Journal | None = None
    ) -> dict[str, torch.Tensor]:
        """`Entry.run`: craft each batch on `model`, judge it by `model`.

        With a `journal` each batch's outcome is saved as it finishes, and a
        column it holds part of continues from the next batch with the random
        generators where they were (engine/eval/journal.py).
        """
        t0 = time.perf_counter()
        survived: list[torch.Tensor] = []
        first, before = 0, 0.0
        saved = None if journal is None else journal.get(self.name)
        if saved is not None:
            survived.append(saved.survived.to(x.device))
            first, before = len(saved.survived), saved.seconds
            saved.restore_rng(x.device)
            if saved.extra and hasattr(self.attack, "load_state"):
                self.attack.load_state(saved.extra)  # type: ignore[attr-defined]
            if progress is not None:
                progress(self.name, first, len(x))
        for i in range(first, len(x), batch_size):
            xb, yb = x[i : i + batch_size], y[i : i + batch_size]
            x_adv = self.attack(model, xb, yb)
            ok = predict(model, x_adv, batch_size) == yb
            survived.append(ok)
            if self.keep is not None:
                self.keep(self.name, torch.arange(i, i + len(xb)), x_adv, ~ok)
            end = min(i + batch_size, len(x))
            if journal is not None:
                state = getattr(self.attack, "state", None)
                journal.record(
                    self.name,
                    torch.cat(survived),
                    before + time.perf_counter() - t0,
                    complete=end == len(x),
                    device=x.device,
                    extra=state() if callable(state) else None,
                )
            if progress is not None:
                progress(self.name, end, len(x))
        self.seconds[self.name] = before + time.perf_counter() - t0
        return {self.name: torch.cat(survived)}
