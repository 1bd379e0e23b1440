"""Madry et al.'s MNIST network, used by ATBLR Table 1: two 5x5 convs and FC 1024."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def madry_cnn(
    in_shape: tuple[int, int, int],
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> tuple[nn.Module, int]:
    """The body and its feature size; `mean`/`std` are ignored: this MNIST net sees raw pixels."""
    c, h, w = in_shape
    body = nn.Sequential(
        nn.Conv2d(c, 32, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * (h // 4) * (w // 4), 1024),
        nn.ReLU(),
    )
    return body, 1024
