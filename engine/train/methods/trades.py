"""TRADES (Zhang et al. 2019): CE(f(x), y) + beta * KL(f(x) || f(x')).

x' maximises the KL inside the run's ball (`attack.norm`, `attack.eps`) by PGD
started at x + 0.001 * N(0, 1), with the model in eval mode while crafting (as
the reference code does).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from engine.attacks import ThreatModel, ascend, eval_mode
from engine.attacks.objectives import kl_from
from engine.spec.config import MethodSection, NonNegReal, PresetConfig
from engine.spec.panels import Panels, Series
from engine.spec.registry import METHODS
from engine.train.distributed import attack_model


class TradesConfig(MethodSection):
    name: Literal["trades"]
    beta: NonNegReal = 6.0
    panels = Panels(series=(Series("ce"), Series("kl")))

    def requirement(self, cfg: PresetConfig) -> tuple[str, str] | None:
        """TRADES' inner search is its own: one KL-PGD from x + 0.001 N(0, 1), nothing else."""
        a = cfg.attack
        for key, given, allowed in (
            ("attack.kind", a.kind, "pgd"),
            ("attack.loss", a.loss, "ce"),
            ("attack.restarts", a.restarts, 1),
            ("attack.random_start", a.random_start, True),
        ):
            if given != allowed:
                return key, (
                    f"method 'trades' maximises its own KL term from x + 0.001 * N(0, 1) in "
                    f"one run of PGD and cannot honour it; given {given!r}, allowed: {allowed!r}"
                )
        return None


def kl_batchmean(logits_clean: torch.Tensor, logits_adv: torch.Tensor) -> torch.Tensor:
    """KL(p_clean || p_adv) summed over classes, averaged over the batch."""
    return F.kl_div(
        F.log_softmax(logits_adv, 1),
        F.log_softmax(logits_clean, 1),
        reduction="batchmean",
        log_target=True,
    )


@METHODS.register("trades")
class Trades:
    config = TradesConfig

    def __init__(self, cfg: PresetConfig) -> None:
        self.beta = cfg.method.beta
        self.attack = cfg.attack

    def adversary(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        a = self.attack
        model = attack_model(model)  # input gradients only: never through a DDP view
        ball = ThreatModel(a.norm, a.eps).around(x)
        with eval_mode(model):
            with torch.no_grad():
                p_clean = F.log_softmax(model(x), 1)
            start = ball.offset(0.001 * torch.randn_like(x))
            x_adv = ascend(model, start, ball, kl_from(p_clean), a.step, a.steps)
        return x_adv.detach()

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        x_adv = self.adversary(model, x)
        logits_clean = model(x)
        ce = F.cross_entropy(logits_clean, y)
        kl = kl_batchmean(logits_clean, model(x_adv))
        loss = ce + self.beta * kl
        return loss, {"ce": ce.detach(), "kl": kl.detach()}
