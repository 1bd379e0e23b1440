"""Natural training: CE on clean inputs."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from engine.spec.config import MethodSection, PresetConfig
from engine.spec.panels import Panels, Series
from engine.spec.registry import METHODS


class StandardConfig(MethodSection):
    name: Literal["standard"]
    panels = Panels(series=(Series("ce"),))


@METHODS.register("standard")
class Standard:
    config = StandardConfig

    def __init__(self, cfg: PresetConfig) -> None:
        self.cfg = cfg.method

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        ce = F.cross_entropy(model(x), y)
        return ce, {"ce": ce.detach()}
