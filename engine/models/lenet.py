"""LeNet-5 (LeCun et al. 1998) with ReLU and max-pooling, as commonly used today."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def lenet(
    in_shape: tuple[int, int, int],
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> tuple[nn.Module, int]:
    """The body and its feature size; `mean`/`std` are ignored: this MNIST net sees raw pixels."""
    c, h, w = in_shape
    body = nn.Sequential(
        nn.Conv2d(c, 6, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * ((h // 2 - 4) // 2) * ((w // 2 - 4) // 2), 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
    )
    return body, 84
