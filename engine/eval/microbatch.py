"""Micro-batches on the CPU: an evaluation batch run through the model in cache-sized slices.

An evaluation batch holds hundreds of examples (`data.eval_batch_size`, 500 by
default) because its random starts, journal and progress are per batch. On a
CPU the model's forward and backward pass over that many examples at once
spills out of cache: a SmallCNN attack step on this project's 2-core machine
ran at about 1,450 examples/s on 512 digits at once and 2,300-2,700 on slices
of 96-160 (`bench/early_stop.py --attribute` measures what it gives a whole
suite). Slicing changes nothing an attack sees beyond floating-point noise: in
eval mode each example's logits and input gradient are its own, and the batch
(its random starts, which examples early stop drops) is the same. On CUDA a
big batch is what keeps the device busy, so nothing is sliced there.
"""

from __future__ import annotations

import torch
from torch import nn

CPU_SLICE = 128  # examples per forward on the CPU (measured: see the module docstring)


class MicroBatched(nn.Module):
    """`model`, run on slices of at most `size` examples whose outputs are concatenated."""

    def __init__(self, model: nn.Module, size: int) -> None:
        super().__init__()
        self.model, self.size = model, size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(x) <= self.size:
            return self.model(x)
        return torch.cat([self.model(part) for part in x.split(self.size)])


def micro_batched(
    model: nn.Module, device: torch.device, size: int | None = CPU_SLICE
) -> nn.Module:
    """`model` sliced on the CPU (`size` None: never), as it is elsewhere or when already sliced."""
    if size is None or device.type != "cpu" or isinstance(model, MicroBatched):
        return model
    return MicroBatched(model, size)
