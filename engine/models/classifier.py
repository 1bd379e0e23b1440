"""A classifier = a body producing the deepest features h(x) + a head producing logits."""

from __future__ import annotations

import torch
from torch import nn


class Classifier(nn.Module):
    """Every model here has this shape, so methods can ask for h(x) (ATBLR) or logits alone."""

    def __init__(self, body: nn.Module, head: nn.Module, feature_dim: int) -> None:
        super().__init__()
        self.body = body
        self.head = head
        self.feature_dim = feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    def forward_features(
        self, x: torch.Tensor, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, h); `y` lets a margin head apply its training-time margin."""
        h = self.body(x)
        return self.head(h, y), h
