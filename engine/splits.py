"""The validation split: carved from the training data by a seeded, stratified draw.

Per-epoch curves and the best-checkpoint selection use it, so the test split
is left for `workbench eval` and for the final table (which says it is test).
The same labels, size and seed always give the same split, whatever the
training seed: runs with other seeds are selected on the same examples.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.data import Dataset, default_val_size
from engine.spec.errors import WorkbenchError


@dataclass(frozen=True)
class Splits:
    """Train and validation examples (indices into the dataset's training set) and the test size."""

    train: torch.Tensor
    val: torch.Tensor
    test_size: int
    seed: int

    def record(self) -> dict[str, int]:
        """What a checkpoint's `splits` metadata says (sizes and seed)."""
        return {
            "train": len(self.train),
            "val": len(self.val),
            "test": self.test_size,
            "val_seed": self.seed,
        }


def stratified(y: torch.Tensor, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(kept, drawn) indices: `size` examples drawn so each class gives its share of them.

    Shares are rounded by largest remainder, so the sizes add up exactly; within a
    class the drawn examples are a seeded random subset. Both index lists are sorted.
    """
    n = len(y)
    size = max(0, min(size, n))
    g = torch.Generator().manual_seed(seed)
    classes, counts = torch.unique(y, return_counts=True)
    exact = counts.double() * size / n
    quota = exact.floor().long()
    rest = size - int(quota.sum())
    quota[torch.argsort(exact - quota, descending=True, stable=True)[:rest]] += 1
    drawn = []
    for c, q in zip(classes.tolist(), quota.tolist(), strict=True):
        members = (y == c).nonzero().squeeze(1)
        drawn.append(members[torch.randperm(len(members), generator=g)[:q]])
    chosen = torch.sort(torch.cat(drawn)).values
    keep = torch.ones(n, dtype=torch.bool)
    keep[chosen] = False
    return keep.nonzero().squeeze(1), chosen


def split(data: Dataset, size: int | None = None, seed: int = 0) -> Splits:
    """The run's splits: validation `size` (the dataset's default if None) from train."""
    size = default_val_size(data.name) if size is None else size
    if size >= len(data.train_y):
        raise WorkbenchError(
            f"key 'data.val_size': {size} would leave none of the {len(data.train_y)} "
            f"{data.name} training examples to train on"
        )
    train, val = stratified(data.train_y, size, seed)
    return Splits(train, val, len(data.test_y), seed)
