"""Classification heads: a plain linear layer, or ATBLR's Gaussian-mixture head."""

from __future__ import annotations

import torch
from torch import nn


class LinearHead(nn.Module):
    """The usual last FC layer; `y` is accepted and ignored so every head has one shape."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, h: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.fc(h)


class GaussianHead(nn.Module):
    """Gaussian mixture with identity covariance and equal priors (ATBLR Eq. 4).

    logits_k = -0.5 * ||h - mu_k||^2, so softmax(logits) is the posterior of
    Eq. 4 and the class means are the only parameters (K x D, like a linear
    layer without bias). With `margin` alpha > 0 and labels given in training
    mode, the true class distance is enlarged by (1 + alpha), the L-GM loss of
    Wan et al. (CVPR 2018); evaluation logits never carry a margin.
    """

    def __init__(self, dim: int, num_classes: int, margin: float = 0.0) -> None:
        super().__init__()
        self.means = nn.Parameter(torch.randn(num_classes, dim) / dim**0.5)
        self.margin = margin

    def sq_distances(self, h: torch.Tensor) -> torch.Tensor:
        """||h - mu_k||^2 for every k, B x K, computed exactly (no expansion cancellation)."""
        return (h[:, None, :] - self.means[None, :, :]).pow(2).sum(-1)

    def sq_distance_to(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-example ||h - mu_y||^2."""
        return (h - self.means[y]).pow(2).sum(-1)

    def lkd(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """L_lkd of Eq. 6: the batch mean of ||h - mu_y||^2."""
        return self.sq_distance_to(h, y).mean()

    def forward(self, h: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        d = self.sq_distances(h)
        if self.margin > 0 and y is not None and self.training:
            onehot = torch.nn.functional.one_hot(y, d.shape[1]).to(d.dtype)
            d = d * (1.0 + self.margin * onehot)
        return -0.5 * d


def build_head(kind: str, dim: int, num_classes: int, margin: float = 0.0) -> nn.Module:
    if kind == "linear":
        return LinearHead(dim, num_classes)
    if kind == "gaussian":
        return GaussianHead(dim, num_classes, margin)
    raise ValueError(f"unknown head {kind!r}")
