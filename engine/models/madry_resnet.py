"""Madry et al.'s CIFAR ResNet family (MadryLab/cifar10_challenge, model.py), used by ATBLR.

ATBLR (Sec. 4.2) trains "ResNet-32 [He et al.] and WideResNet-32 [Zagoruyko &
Komodakis] following Madry et al.", in TensorFlow. Madry's model.py is one
pre-activation residual network whose widths are a single line:
`filters = [16, 160, 320, 640]` (the wide one; its comment says "w28-10", but
it builds 5 units per stage) and "use filters = [16, 16, 32, 64] for a non-wide
version". Counting the weighted layers, 1 stem conv + 3 stages x 5 units x 2
convs + 1 FC = 32, hence ATBLR's names. So here:

- `resnet32`  = filters 16/16/32/64: He et al.'s CIFAR ResNet-32 topology (3 stages
  x 5 basic blocks, parameter-free "option A" shortcuts), 464,154 parameters
  with a 10-class linear head, the same count as He et al.'s post-activation
  ResNet-32 (0.46M);
- `wrn32_10` = filters 16/160/320/640: "WideResNet-32-10", 45.9M parameters. It
  differs from TRADES' WRN-34-10 (`wrn34_10`) only in its shortcuts, which
  have no 1x1 convs (the 34 counts those three), and in the leaky ReLU.

Kept from model.py: pre-activation units (BN, leaky ReLU 0.1, conv, BN, leaky
ReLU, conv); the first unit activates before branching ("activate before
residual"), later ones branch from the raw input; a widening or striding
shortcut is average pooling by the stride plus symmetric zero channel padding;
a final BN + leaky ReLU before global average pooling. Changed: model.py
standardises each image (`tf.image.per_image_standardization`); here, like
every CIFAR model in this workbench, the input is normalised by the dataset's
per-channel mean/std inside the model. Convolutions use symmetric padding 1
(TF's 'SAME' pads stride-2 convs on the bottom/right only).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from engine.data import DatasetInfo
from engine.models.normalize import Normalize
from engine.spec.registry import MODELS

LEAK = 0.1  # model.py's _relu(x, 0.1): every activation is a leaky ReLU


class MadryUnit(nn.Module):
    """model.py's `_residual`: a pre-activation unit with a parameter-free shortcut."""

    def __init__(self, in_f: int, out_f: int, stride: int, activate_before_residual: bool) -> None:
        super().__init__()
        self.in_f, self.out_f, self.stride = in_f, out_f, stride
        self.activate_before_residual = activate_before_residual
        self.bn1 = nn.BatchNorm2d(in_f)
        self.conv1 = nn.Conv2d(in_f, out_f, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_f)
        self.conv2 = nn.Conv2d(out_f, out_f, 3, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activate_before_residual:
            x = F.leaky_relu(self.bn1(x), LEAK)
            orig = x
        else:
            orig = x
            x = F.leaky_relu(self.bn1(x), LEAK)
        x = self.conv1(x)
        x = self.conv2(F.leaky_relu(self.bn2(x), LEAK))
        if self.stride > 1:
            orig = F.avg_pool2d(orig, self.stride, self.stride)
        if self.out_f != self.in_f:
            pad = (self.out_f - self.in_f) // 2
            orig = F.pad(orig, (0, 0, 0, 0, pad, self.out_f - self.in_f - pad))
        return x + orig


class MadryResNetBody(nn.Module):
    """Normalise, 3x3 stem to 16, three stages of `units` units, BN-leaky-ReLU, pool."""

    def __init__(self, info: DatasetInfo, filters: Sequence[int], units: int = 5) -> None:
        super().__init__()
        self.norm = Normalize(info)
        self.init_conv = nn.Conv2d(info.shape[0], filters[0], 3, 1, 1, bias=False)
        stages = []
        for i, stride in enumerate((1, 2, 2)):
            first = MadryUnit(filters[i], filters[i + 1], stride, i == 0)
            rest = [MadryUnit(filters[i + 1], filters[i + 1], 1, False) for _ in range(units - 1)]
            stages.append(nn.Sequential(first, *rest))
        self.stage1, self.stage2, self.stage3 = stages
        self.final_bn = nn.BatchNorm2d(filters[3])
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # model.py: N(0, sqrt(2 / (k * k * out)))
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.init_conv(self.norm(x))
        out = self.stage3(self.stage2(self.stage1(out)))
        out = F.leaky_relu(self.final_bn(out), LEAK)
        return F.adaptive_avg_pool2d(out, 1).flatten(1)


@MODELS.register("resnet32")
def resnet32(info: DatasetInfo) -> tuple[nn.Module, int]:
    """ATBLR's ResNet-32: model.py's non-wide filters 16/16/32/64, 64-d h(x)."""
    return MadryResNetBody(info, (16, 16, 32, 64)), 64


@MODELS.register("wrn32_10")
def wrn32_10(info: DatasetInfo) -> tuple[nn.Module, int]:
    """ATBLR's WideResNet-32 (x10): model.py's filters 16/160/320/640, 640-d h(x)."""
    return MadryResNetBody(info, (16, 160, 320, 640)), 640
