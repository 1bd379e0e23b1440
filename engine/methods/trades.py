"""TRADES (Zhang et al. 2019): CE(f(x), y) + beta * KL(f(x) || f(x')).

x' maximises the KL inside the eps-ball by PGD started at x + 0.001 * N(0, 1),
with the model in eval mode while crafting (as the reference code does).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.attacks import eval_mode
from engine.config import AttackConfig, TradesMethod
from engine.methods.base import attack_model


def kl_batchmean(logits_clean: torch.Tensor, logits_adv: torch.Tensor) -> torch.Tensor:
    """KL(p_clean || p_adv) summed over classes, averaged over the batch."""
    return F.kl_div(
        F.log_softmax(logits_adv, 1),
        F.log_softmax(logits_clean, 1),
        reduction="batchmean",
        log_target=True,
    )


class Trades:
    name = "trades"

    def __init__(self, cfg: TradesMethod, attack: AttackConfig) -> None:
        self.beta = cfg.beta
        self.attack = attack

    def adversary(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        a = self.attack
        model = attack_model(model)  # input gradients only: never through a DDP view
        lower, upper = (x - a.eps).clamp(min=0), (x + a.eps).clamp(max=1)
        with eval_mode(model):
            with torch.no_grad():
                p_clean = F.log_softmax(model(x), 1)
            x_adv = torch.clamp(x + 0.001 * torch.randn_like(x), min=lower, max=upper)
            for _ in range(a.steps):
                x_adv.requires_grad_(True)
                kl = F.kl_div(
                    F.log_softmax(model(x_adv), 1), p_clean, reduction="sum", log_target=True
                )
                (grad,) = torch.autograd.grad(kl, x_adv)
                x_adv = torch.clamp(x_adv.detach() + a.step * grad.sign(), min=lower, max=upper)
        return x_adv.detach()

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        x_adv = self.adversary(model, x)
        logits_clean = model(x)
        ce = F.cross_entropy(logits_clean, y)
        kl = kl_batchmean(logits_clean, model(x_adv))
        loss = ce + self.beta * kl
        return loss, {"ce": ce.detach(), "kl": kl.detach()}
