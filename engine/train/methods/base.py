"""What every training method provides, and the training adversary most of them share.

A method is one class registered by name with `@METHODS.register("name")`. It
carries `config`, the pydantic class of its `[method]` table (a
`MethodSection` subclass with `name: Literal["name"]`, whose `panels` says
what the faces show: engine/spec/panels.py), is built from the whole resolved
preset, and turns a batch into a loss and its named parts.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from engine.attacks import ThreatModel, build_attack
from engine.spec.config import AttackConfig, MethodSection, PresetConfig
from engine.spec.registry import METHODS
from engine.train.distributed import attack_model


class Method(Protocol):
    config: ClassVar[type[MethodSection]]

    def __init__(self, cfg: PresetConfig) -> None: ...

    def loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return the loss to minimise and detached parts for logging (ce, lkd_adv, ...)."""
        ...


def build_method(cfg: PresetConfig) -> Any:
    """The registered method `cfg.method.name`, built from the whole preset."""
    return METHODS.get(cfg.method.name)(cfg)


def training_adversary(cfg: AttackConfig):
    """The inner maximiser of adversarial training in the run's threat model (`attack.norm`,
    `attack.eps`): last iterate, as in Madry et al.

    It attacks the plain module even when the loss trains through a DDP view
    (engine/train/distributed.py): input gradients need no gradient all-reduce.
    """
    attack = build_attack(
        cfg.kind,
        ThreatModel(cfg.norm, cfg.eps),
        step=cfg.step,
        steps=cfg.steps,
        restarts=cfg.restarts,
        loss=cfg.loss,
        kappa=cfg.kappa,
        random_start=cfg.random_start,
        keep_best=cfg.restarts > 1,
    )

    def adversary(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return attack(attack_model(model), x, y)

    return adversary
