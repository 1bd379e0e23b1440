"""Pre-activation ResNet-18 (He et al., ECCV 2016), the robust-overfitting reference net.

Layout of Rice, Wong and Kolter (ICML 2020, locuslab/robust_overfitting;
CIFAR-10 PGD-10 AT, best epoch 82.9 clean / 53.5 PGD-10): kuangliu's PreActResNet18 plus a
final BN-ReLU before pooling (without it the last block's sum is never
normalised). 1x1 conv shortcuts without BN, taken after the first BN-ReLU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.data import DatasetInfo
from engine.models.normalize import Normalize
from engine.spec.registry import MODELS


class PreActBlock(nn.Module):
    """BN-ReLU-conv-BN-ReLU-conv plus (projected) input."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet18Body(nn.Module):
    """Normalise, 3x3 stem, four pre-activation stages, BN-ReLU, pool: x -> h(x) (512-d)."""

    def __init__(self, info: DatasetInfo) -> None:
        super().__init__()
        self.norm = Normalize(info)
        self.conv1 = nn.Conv2d(info.shape[0], 64, 3, 1, 1, bias=False)
        layers, in_planes = [], 64
        for i, planes in enumerate((64, 128, 256, 512)):
            first = PreActBlock(in_planes, planes, 1 if i == 0 else 2)
            layers.append(nn.Sequential(first, PreActBlock(planes, planes)))
            in_planes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.bn = nn.BatchNorm2d(512)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.norm(x))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.relu(self.bn(out))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)


@MODELS.register("preact_resnet18")
def preact_resnet18(info: DatasetInfo) -> tuple[nn.Module, int]:
    """PreAct ResNet-18 body and its feature size."""
    return PreActResNet18Body(info), 512
