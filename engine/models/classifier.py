"""A classifier = a body producing the deepest features h(x) + a head producing logits."""

from __future__ import annotations

import torch
from torch import nn


class Classifier(nn.Module):
    """Every model here has this shape, so methods can ask for h(x) (ATBLR) or logits alone.

    `normalize` (a module without persistent state, such as `Normalize`) runs before
    the body: the input normalisation an imported model was trained with. It
    adds no state_dict keys, so it never changes a checkpoint's tensors.
    """

    def __init__(
        self,
        body: nn.Module,
        head: nn.Module,
        feature_dim: int,
        normalize: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.body = body
        self.head = head
        self.feature_dim = feature_dim
        self.normalize = normalize

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x if self.normalize is None else self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self._features(x))

    def forward_features(
        self, x: torch.Tensor, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, h); `y` lets a margin head apply its training-time margin."""
        h = self._features(x)
        return self.head(h, y), h
