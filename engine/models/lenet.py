"""LeNet-5 (LeCun et al. 1998) with ReLU and max-pooling, as commonly used today."""

from __future__ import annotations

from torch import nn

from engine.data import DatasetInfo
from engine.models.layers import conv_relu_pool
from engine.spec.registry import MODELS


@MODELS.register("lenet")
def lenet(info: DatasetInfo) -> tuple[nn.Module, int]:
    """The body and its feature size; this MNIST net sees raw pixels (no normalisation)."""
    c, h, w = info.shape
    body = nn.Sequential(
        *conv_relu_pool(c, 6, 5, padding=2),
        *conv_relu_pool(6, 16, 5),
        nn.Flatten(),
        nn.Linear(16 * ((h // 2 - 4) // 2) * ((w // 2 - 4) // 2), 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
    )
    return body, 84
