"""How an attack gets its gradients when the classifier is an inference-time defence.

The defence always judges the result; a strategy only decides which model the
attack differentiates. Callers pick the strategies they want by building them
(the evaluation uses all three, an eps sweep transfer and BPDA), so nothing
filters columns by name.

* `Transfer`: craft on the undefended base model (z = x in both passes), the
  "forward-backward approximation" of API-Net's tables;
* `BPDA`: through the full defence, whose backward pass is the identity
  dz/dx = I (engine/defenses/apinet.py);
* `Adaptive`: through the unrolled, differentiable inner search, every
  iterate scored by the real defence.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from engine.attacks import Attack
from engine.defenses.apinet import unrolled
from engine.spec.config import PresetConfig


@dataclass(frozen=True)
class Strategy:
    """Craft on `surrogate`; `white_box` False makes it a transfer attack in the sanity checks."""

    name: str
    surrogate: nn.Module
    white_box: bool = True
    scorer: nn.Module | None = None  # judges every iterate (when the attack keeps its best)

    def role(self, attack_role: str) -> str:
        """This strategy's part in the sanity checks, given the attack's own role."""
        return attack_role if self.white_box else "transfer"

    def craft(self, attack: Attack) -> Attack:
        """The attack, differentiating `surrogate` whatever model it is handed."""
        if self.scorer is not None and getattr(attack, "keep_best", False):
            attack = replace(attack, scorer=self.scorer)  # type: ignore[type-var]

        def crafted(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return attack(self.surrogate, x, y)

        return crafted


def transfer(base: nn.Module) -> Strategy:
    return Strategy("transfer", base, white_box=False)


def bpda(defended: nn.Module) -> Strategy:
    return Strategy("BPDA", defended)


def adaptive(unrolled: nn.Module, defended: nn.Module) -> Strategy:
    return Strategy("adaptive", unrolled, scorer=defended)


def every_strategy(
    cfg: PresetConfig, base: nn.Module, defended: nn.Module, num_classes: int
) -> list[Strategy]:
    """Transfer, BPDA and adaptive against the defence `cfg` configures (what `eval` runs)."""
    return [transfer(base), bpda(defended), adaptive(unrolled(cfg, base, num_classes), defended)]
