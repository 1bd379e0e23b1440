"""What every training method provides: a batch in, a loss and its named parts out."""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from engine.attacks import PGD, build_attack
from engine.config import AttackConfig
from engine.distributed import attack_model


class Method(Protocol):
    name: str

    def loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return the loss to minimise and detached parts for logging (ce, lkd_adv, ...)."""
        ...


def training_adversary(cfg: AttackConfig):
    """The inner maximiser of adversarial training: last iterate, as in Madry et al.

    It attacks the plain module even when the loss trains through a DDP view
    (engine/distributed.py): input gradients need no gradient all-reduce.
    """
    attack = build_attack(
        cfg.kind,
        cfg.eps,
        cfg.step,
        cfg.steps,
        cfg.restarts,
        cfg.loss,
        cfg.kappa,
        cfg.random_start,
        keep_best=cfg.restarts > 1,
    )

    def adversary(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return attack(attack_model(model), x, y)

    return adversary


__all__ = ["PGD", "Method", "attack_model", "training_adversary"]
