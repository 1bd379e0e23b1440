"""Madry et al.'s MNIST network, used by ATBLR Table 1: two 5x5 convs and FC 1024."""

from __future__ import annotations

from torch import nn

from engine.data import DatasetInfo
from engine.models.layers import conv_relu_pool
from engine.spec.registry import MODELS


@MODELS.register("madry_cnn")
def madry_cnn(info: DatasetInfo) -> tuple[nn.Module, int]:
    """The body and its feature size; this MNIST net sees raw pixels (no normalisation)."""
    c, h, w = info.shape
    body = nn.Sequential(
        *conv_relu_pool(c, 32, 5, padding=2),
        *conv_relu_pool(32, 64, 5, padding=2),
        nn.Flatten(),
        nn.Linear(64 * (h // 4) * (w // 4), 1024),
        nn.ReLU(),
    )
    return body, 1024
