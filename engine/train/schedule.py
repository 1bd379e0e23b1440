"""The optimiser a preset names and its learning-rate schedule, as a function of the epoch."""

from __future__ import annotations

import math

import torch
from torch import nn

from engine.spec.config import PresetConfig


def lr_at(cfg: PresetConfig, epoch_float: float) -> float:
    """Learning rate after `epoch_float` epochs (0-based, fractional within an epoch)."""
    base, s = cfg.optim.lr, cfg.schedule
    if s.kind == "multistep":
        # "paper": m is the first (1-based) epoch at the lower rate; "torch": epochs completed
        epoch = int(epoch_float) + (1 if s.convention == "paper" else 0)
        return base * s.gamma ** sum(1 for m in s.milestones if epoch >= m)
    if s.kind == "cosine":
        return base * 0.5 * (1.0 + math.cos(math.pi * epoch_float / cfg.train.epochs))
    if s.kind == "cyclic":  # one triangle per run: 0 -> base at `peak` -> 0 (Wong et al. 2020)
        t = min(max(epoch_float / cfg.train.epochs, 0.0), 1.0)
        return base * (t / s.peak if t <= s.peak else (1.0 - t) / (1.0 - s.peak))
    return base


def build_optimizer(cfg: PresetConfig, model: nn.Module) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.name == "sgd":
        return torch.optim.SGD(
            model.parameters(),
            lr=o.lr,
            momentum=o.momentum,
            weight_decay=o.weight_decay,
            nesterov=o.nesterov,
        )
    return torch.optim.Adam(model.parameters(), lr=o.lr, weight_decay=o.weight_decay)
