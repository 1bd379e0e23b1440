"""Small building blocks the MNIST nets share."""

from __future__ import annotations

from torch import nn


def conv_relu_pool(c_in: int, c_out: int, kernel: int, padding: int = 0) -> list[nn.Module]:
    """Conv, ReLU, 2x2 max-pool: three entries of an nn.Sequential (keys stay numbered)."""
    return [nn.Conv2d(c_in, c_out, kernel, padding=padding), nn.ReLU(), nn.MaxPool2d(2)]
