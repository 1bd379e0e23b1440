"""TRADES' SmallCNN for MNIST (also API-Net Table 3): four 3x3 convs, FC 200-200."""

from __future__ import annotations

from torch import nn

from engine.data import DatasetInfo
from engine.spec.registry import MODELS


@MODELS.register("smallcnn")
def smallcnn(info: DatasetInfo) -> tuple[nn.Module, int]:
    """The body and its feature size; this MNIST net sees raw pixels (no normalisation)."""
    c, h, w = info.shape
    flat = 64 * ((((h - 4) // 2) - 4) // 2) * ((((w - 4) // 2) - 4) // 2)
    body = nn.Sequential(
        nn.Conv2d(c, 32, 3),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3),
        nn.ReLU(),
        nn.Conv2d(64, 64, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(flat, 200),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(200, 200),
        nn.ReLU(),
    )
    for m in body.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return body, 200
