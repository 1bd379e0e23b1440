"""What every attack shares: the call shape, eval mode while crafting, and its suite column.

Conventions: inputs in [0, 1], every iterate projected into the threat
model's ball and [0, 1] (engine/attacks/threat.py); BatchNorm and Dropout in
eval mode while crafting, each module's previous mode restored afterwards.

An attack is one file that registers its suite column class with
`@ATTACKS.register("kind")`: the class declares the `[[attack]]` keys of that
kind (on top of the ones every column has), fills in the numbers a checkpoint
does not say (`resolve`), and builds the attack from them (`build`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, ValidationInfo
from torch import nn

from engine.spec.config import PresetConfig, Section
from engine.spec.registry import NORMS

LossName = Literal["ce", "cw"]
Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode and restore each one's own flag afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, was_training in modes:
            m.training = was_training


def ball(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The corners of the L-inf eps-ball around x inside [0, 1], for code written before
    threat models (engine/attacks/threat.py's `ThreatModel.around` is what attacks use)."""
    return (x - eps).clamp_(min=0.0), (x + eps).clamp_(max=1.0)


def within_norm_cap(value: float | None, info: ValidationInfo) -> float | None:
    """A column's eps or step within its norm's cap (L-inf: a pixel fraction, at most 1). A
    column without a norm gets the checkpoint's, unknown here, so the default norm's cap holds
    until the column names one."""
    norm = info.data.get("norm") or "linf"
    cap = NORMS.get(norm).eps_cap if norm in NORMS else None
    if value is not None and cap is not None and value > cap:
        raise ValueError(
            f"Input should be less than or equal to {cap:g} (under norm {norm!r}; a larger eps "
            "or step needs a norm without that cap, such as 'l2', in the column)"
        )
    return value


class AttackColumn(Section):
    """One `[[attack]]` of a suite: the keys every kind shares (each kind adds its own).

    Unset numbers come from the checkpoint's config (`resolve`), so one suite
    serves MNIST at 0.3 and CIFAR at 8/255 alike.
    """

    name: str = Field(min_length=1, max_length=40)  # "{steps}" is filled in
    kind: str
    source: Literal["self", "substitute"] = "self"  # substitute: crafted on --source
    optional: bool = False  # skipped (not an error) when its --source is not given
    defended: bool = True  # attacked by every strategy under an inference-time defence
    paper: bool = False  # one of the papers' own columns (tables say which are)

    # What the evaluation needs to know about this kind:
    per_example: ClassVar[bool] = True  # False: it runs the whole set itself (AutoAttack)
    role: ClassVar[str] = "white"  # its part in the sanity checks (fgsm, white)

    def resolve(self, cfg: PresetConfig) -> dict[str, Any]:
        """The numbers this column runs with on a checkpoint with config `cfg`."""
        return {}

    def title(self, params: dict[str, Any]) -> str:
        """The column's name with `{steps}` (any resolved number) filled in."""
        try:
            return self.name.format(**params)
        except (KeyError, IndexError, ValueError):  # braces that name nothing: keep them
            return self.name

    @classmethod
    def build(cls, params: dict[str, Any]) -> Attack:
        """The attack a resolved column (or a training `[attack]`) describes (`per_example`)."""
        raise TypeError(f"attack kind {cls.__name__} has no per-example form")

    @staticmethod
    def entry(name: str, params: dict[str, Any], seed: int, num_classes: int, target: str) -> Any:
        """The whole-set plan entry of a kind that is not `per_example` (engine/eval/entries.py)."""
        raise TypeError("a per-example attack kind is planned through `build`")
