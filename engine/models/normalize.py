"""Input normalisation inside the model, so attacks and eps live in raw [0, 1] pixels."""

from __future__ import annotations

import torch
from torch import nn

from engine.data import DatasetInfo


class Normalize(nn.Module):
    """(x - mean) / std per channel with the dataset's statistics; identity when it has none.

    The statistics are non-persistent buffers: they follow `.to(device)` but
    stay out of the state_dict, so checkpoints hold only learned weights and a
    model rebuilt from its config gets the dataset's statistics back.
    """

    def __init__(self, info: DatasetInfo) -> None:
        super().__init__()
        channels, mean, std = info.shape[0], info.mean, info.std
        m = torch.zeros(channels) if mean is None else torch.tensor(mean, dtype=torch.float32)
        s = torch.ones(channels) if std is None else torch.tensor(std, dtype=torch.float32)
        if m.numel() != channels or s.numel() != channels:
            raise ValueError(f"normalisation needs {channels} channel statistics")
        self.register_buffer("mean", m.view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", s.view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        if self.mean.is_meta:
            return f"channels={self.mean.shape[1]}"
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"
