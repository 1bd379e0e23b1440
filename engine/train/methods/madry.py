"""Madry et al. (ICLR 2018): min_theta E max_{||d|| <= eps} CE(f(x + d), y).

The inner max is the configured PGD adversary. `clean_weight` w > 0 mixes in
clean CE, (1 - w) * CE(adv) + w * CE(clean), the variant some papers call
adversarial training on clean and adversarial data; the default 0 is Madry's.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from engine.spec.config import MethodSection, PresetConfig, Unit
from engine.spec.panels import Panels, Series
from engine.spec.registry import METHODS
from engine.train.methods.base import training_adversary


class MadryConfig(MethodSection):
    name: Literal["madry"]
    clean_weight: Unit = 0.0
    panels = Panels(series=(Series("ce_clean"), Series("ce_adv")))  # ce_clean when w > 0


@METHODS.register("madry")
class Madry:
    config = MadryConfig

    def __init__(self, cfg: PresetConfig) -> None:
        self.w = cfg.method.clean_weight
        self.adversary = training_adversary(cfg.attack)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        x_adv = self.adversary(model, x, y)
        if self.w == 0:
            ce_adv = F.cross_entropy(model(x_adv), y)
            return ce_adv, {"ce_adv": ce_adv.detach()}
        logits = model(torch.cat([x, x_adv]))
        ce_clean = F.cross_entropy(logits[: len(x)], y)
        ce_adv = F.cross_entropy(logits[len(x) :], y)
        loss = (1 - self.w) * ce_adv + self.w * ce_clean
        return loss, {"ce_clean": ce_clean.detach(), "ce_adv": ce_adv.detach()}
