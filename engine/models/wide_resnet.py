"""WideResNet-34-10 as in TRADES (yaodongyu/TRADES, models/wideresnet.py) and Madry's PyTorch ports.

depth 34 = 6n + 4 with n = 5 pre-activation blocks per stage, widths
16 -> 160 -> 320 -> 640 (widen factor 10), 1x1 conv shortcuts where the width
changes, a final BN-ReLU and global average pooling to a 640-d h(x).
46,160,474 parameters with a 10-class linear head. TRADES' file also defines
an unused `sub_block1` (parameters never used in forward); it is left out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.data import DatasetInfo
from engine.models.normalize import Normalize
from engine.spec.registry import MODELS


class WideBlock(nn.Module):
    """TRADES' BasicBlock: BN-ReLU-conv-BN-ReLU-conv, shortcut from the activated input."""

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.equal = in_planes == out_planes
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.shortcut = (
            None if self.equal else nn.Conv2d(in_planes, out_planes, 1, stride, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(act))))
        return out + (x if self.shortcut is None else self.shortcut(act))


class WideResNetBody(nn.Module):
    """Normalise, 3x3 stem to 16, three stages of n blocks, BN-ReLU, pool: x -> h(x)."""

    def __init__(self, info: DatasetInfo, depth: int = 34, widen: int = 10) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError("WideResNet depth must be 6n + 4")
        n = (depth - 4) // 6
        widths = (16, 16 * widen, 32 * widen, 64 * widen)
        self.norm = Normalize(info)
        self.conv1 = nn.Conv2d(info.shape[0], widths[0], 3, 1, 1, bias=False)
        stages = []
        for i, stride in enumerate((1, 2, 2)):
            blocks = [WideBlock(widths[i], widths[i + 1], stride)]
            blocks += [WideBlock(widths[i + 1], widths[i + 1], 1) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
        self.block1, self.block2, self.block3 = stages
        self.bn = nn.BatchNorm2d(widths[3])
        self.out_dim = widths[3]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # TRADES: N(0, sqrt(2 / (k * k * out)))
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.norm(x))
        out = self.block3(self.block2(self.block1(out)))
        out = F.relu(self.bn(out))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)


@MODELS.register("wrn34_10")
def wrn34_10(info: DatasetInfo) -> tuple[nn.Module, int]:
    """TRADES / Madry WideResNet-34-10 body and its feature size (640)."""
    return WideResNetBody(info, 34, 10), 640
