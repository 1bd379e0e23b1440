"""The TRADES repository's MNIST SmallCNN (yaodongyu/TRADES, models/small_cnn.py), in its
own module names, so its published checkpoint imports as `--model trades:smallcnn`.

Same network as `smallcnn` (four 3x3 convs, FC 200-200, dropout 0.5, raw
pixels), but the layers are named as the published code names them:
`feature_extractor.{conv1..conv4}` and `classifier.{fc1, fc2}`; its last layer
`classifier.fc3` is our linear head (`head.fc`).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from engine.data import DatasetInfo
from engine.models.layouts import Layout, register_layout
from engine.spec.registry import MODELS


class TradesSmallCNNBody(nn.Module):
    """x -> the 200-d features before TRADES' `classifier.fc3`."""

    def __init__(self, info: DatasetInfo, drop: float = 0.5) -> None:
        super().__init__()
        c, h, w = info.shape
        side_h, side_w = (((h - 4) // 2) - 4) // 2, (((w - 4) // 2) - 4) // 2
        self.feature_extractor = nn.Sequential(
            OrderedDict(
                [
                    ("conv1", nn.Conv2d(c, 32, 3)),
                    ("relu1", nn.ReLU()),
                    ("conv2", nn.Conv2d(32, 32, 3)),
                    ("relu2", nn.ReLU()),
                    ("maxpool1", nn.MaxPool2d(2, 2)),
                    ("conv3", nn.Conv2d(32, 64, 3)),
                    ("relu3", nn.ReLU()),
                    ("conv4", nn.Conv2d(64, 64, 3)),
                    ("relu4", nn.ReLU()),
                    ("maxpool2", nn.MaxPool2d(2, 2)),
                ]
            )
        )
        self.classifier = nn.Sequential(
            OrderedDict(
                [
                    ("fc1", nn.Linear(64 * side_h * side_w, 200)),
                    ("relu1", nn.ReLU()),
                    ("drop", nn.Dropout(drop)),
                    ("fc2", nn.Linear(200, 200)),
                    ("relu2", nn.ReLU()),
                ]
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.feature_extractor(x).flatten(1))


@MODELS.register("trades_smallcnn")
def trades_smallcnn(info: DatasetInfo) -> tuple[nn.Module, int]:
    """The body and its feature size; raw pixels, as TRADES trains it."""
    return TradesSmallCNNBody(info), 200


register_layout(
    Layout(
        name="trades:smallcnn",
        arch="trades_smallcnn",
        prefixes=(("classifier.fc3.", "head.fc."),),
        source="github.com/yaodongyu/TRADES models/small_cnn.py",
    )
)
