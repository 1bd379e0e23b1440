"""CIFAR ResNet-18: the ImageNet ResNet-18 with a 3x3 stride-1 stem and no max-pool.

This is the network of API-Net's public code (models/resnet.py there, itself
kuangliu/pytorch-cifar): BasicBlocks of widths 64-128-256-512, two per stage,
1x1 conv + BN projection shortcuts, global average pooling to a 512-d h(x).
11,173,962 parameters with a 10-class linear head.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from engine.data import DatasetInfo
from engine.models.normalize import Normalize
from engine.spec.registry import MODELS


class BasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus shortcut, then ReLU (post-activation, He et al. 2016)."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18Body(nn.Module):
    """Normalise, stem, four stages, global average pool: x -> h(x) (512-d)."""

    def __init__(self, info: DatasetInfo, blocks: Sequence[int] = (2, 2, 2, 2)) -> None:
        super().__init__()
        self.norm = Normalize(info)
        self.conv1 = nn.Conv2d(info.shape[0], 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        layers, in_planes = [], 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), blocks, strict=True)):
            stage = []
            for j in range(n):
                stage.append(BasicBlock(in_planes, planes, 2 if (i > 0 and j == 0) else 1))
                in_planes = planes
            layers.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(self.norm(x))))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)


@MODELS.register("resnet18")
def resnet18(info: DatasetInfo) -> tuple[nn.Module, int]:
    """API-Net's CIFAR/SVHN ResNet-18 body and its feature size."""
    return ResNet18Body(info), 512
