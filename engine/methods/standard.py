"""Natural training: CE on clean inputs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.config import AttackConfig, StandardMethod


class Standard:
    name = "standard"

    def __init__(self, cfg: StandardMethod, attack: AttackConfig) -> None:
        self.cfg = cfg

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        ce = F.cross_entropy(model(x), y)
        return ce, {"ce": ce.detach()}
