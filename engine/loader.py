"""Batches from device-resident uint8 tensors: epoch order, augmentation, DDP shards.

Small image datasets fit in memory (MNIST is 47 MB as uint8), so the loader
holds them as one tensor on the device, draws each epoch's order and
augmentation parameters up front from a generator seeded by (seed, epoch), and
slices batches with tensor ops: no per-sample Python in the hot loop, and a run
resumed mid-epoch replays exactly the same batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator that fixes one epoch's order and augmentation, independent of history."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


@dataclass
class Augment:
    """The papers' augmentation: optional horizontal flip, random crop after padding."""

    flip: bool = False
    padding: int = 0
    pad_mode: str = "zeros"

    @property
    def active(self) -> bool:
        return self.flip or self.padding > 0


class TensorLoader:
    """Batches from device-resident uint8 tensors, as float images in [0, 1]."""

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        device: torch.device,
        shuffle: bool = False,
        augment: Augment | None = None,
        *,
        drop_last: bool = False,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        self.x = x.to(device)
        self.y = y.to(device)
        self.batch_size = batch_size
        self.device = device
        self.shuffle = shuffle
        self.augment = augment if augment is not None and augment.active else None
        self.drop_last = drop_last
        self.rank, self.world = shard  # data parallel: this rank's share of each global batch

    def __len__(self) -> int:
        n = len(self.y)
        full, rest = divmod(n, self.batch_size)
        if self.drop_last or rest < self.world:  # a last batch too small to give every rank one
            return full
        return full + 1

    def epoch(
        self, gen: torch.Generator | None = None, start: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield batches of one epoch, from batch index `start` (for exact mid-epoch resume)."""
        n = len(self.y)
        order = torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
        plan = None
        if self.augment is not None:
            p = self.augment.padding
            offsets = torch.randint(0, 2 * p + 1, (n, 2), generator=gen)
            flips = torch.rand(n, generator=gen) < 0.5
            plan = (offsets.to(self.device), flips.to(self.device))
        order = order.to(self.device)
        for b in range(start, len(self)):
            lo = b * self.batch_size
            hi = min(lo + self.batch_size, n)
            if self.world > 1:  # the same global batch on every rank; keep this rank's slice
                lo, hi = shard_range(lo, hi, self.rank, self.world)
            idx = order[lo:hi]
            xb = self.x[idx].float().div_(255.0)
            if plan is not None:
                xb = self._apply(xb, plan[0][lo:hi], plan[1][lo:hi])
            yield xb, self.y[idx]

    def global_batch(self, b: int) -> int:
        """Examples in global batch `b` (all ranks together)."""
        return min(self.batch_size, len(self.y) - b * self.batch_size)

    def _apply(self, x: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
        aug = self.augment
        assert aug is not None
        if aug.flip:
            x = torch.where(flips[:, None, None, None], x.flip(-1), x)
        p = aug.padding
        if p > 0:
            mode = "constant" if aug.pad_mode == "zeros" else "reflect"
            padded = F.pad(x, (p, p, p, p), mode=mode)
            h, w = x.shape[-2:]
            rows = offsets[:, 0, None] + torch.arange(h, device=x.device)  # B x H
            cols = offsets[:, 1, None] + torch.arange(w, device=x.device)  # B x W
            bidx = torch.arange(len(x), device=x.device)[:, None, None]
            x = padded.permute(0, 2, 3, 1)[bidx, rows[:, :, None], cols[:, None, :]]
            x = x.permute(0, 3, 1, 2).contiguous()
        return x


def shard_range(lo: int, hi: int, rank: int, world: int) -> tuple[int, int]:
    """Rank `rank`'s contiguous part of [lo, hi) split `world` ways (sizes differ by <= 1)."""
    base, extra = divmod(hi - lo, world)
    start = lo + rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)
