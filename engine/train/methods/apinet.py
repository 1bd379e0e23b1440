"""API-Net training (Dong et al., ECCV 2020, Alg. 1, Eqs. 14-16).

Per batch: delta by PGD on the base model (the z = x approximation the paper
uses in training), then the C anti-perturbation searches from x + delta, then
CE over the C scores log p(c | z_c). z_c is detached: gradients reach theta
through f(z_c) only. Usually started from a Madry-trained discriminator
(`method.init_from`) and run at a low learning rate, as the public code does.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from engine.data import dataset_info
from engine.defenses.apinet import anti_perturbation, class_scores
from engine.spec.config import MethodSection, PresetConfig
from engine.spec.panels import Panels, Series
from engine.spec.registry import METHODS
from engine.train.distributed import attack_model
from engine.train.methods.base import training_adversary


class ApinetConfig(MethodSection):
    name: Literal["apinet"]
    init_from: str = ""  # a checkpoint to start from (usually a Madry-trained discriminator)
    panels = Panels(series=(Series("ce_api"),))

    def requirement(self, cfg: PresetConfig) -> tuple[str, str] | None:
        if cfg.defense.name != "apinet":
            return "defense.name", (
                f"method 'apinet' trains the defence, given {cfg.defense.name!r}, allowed: 'apinet'"
            )
        return None


@METHODS.register("apinet")
class Apinet:
    config = ApinetConfig

    def __init__(self, cfg: PresetConfig) -> None:
        self.ap = anti_perturbation(cfg)
        self.num_classes = dataset_info(cfg.data.dataset).num_classes
        self.adversary = training_adversary(cfg.attack)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        a = self.adversary(model, x, y)
        noise = self.ap.start_noise(torch.Size((len(x), self.num_classes, *x.shape[1:])), x.device)
        z = self.ap.search(attack_model(model), a, self.num_classes, noise)  # input grads only
        scores = class_scores(model, z)
        ce = F.cross_entropy(scores, y)
        return ce, {"ce_api": ce.detach()}
