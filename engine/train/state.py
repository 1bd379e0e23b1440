"""What a run knows about its own progress, and the resumable checkpoint that carries it.

A full checkpoint holds the model, the optimiser, the RNG and `TrainState`
(as JSON in the `progress` metadata), so a resumed run replays exactly the
batches and random starts an uninterrupted one would have seen.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine import checkpoint_io as ckpt
from engine.spec.errors import CheckpointError


@dataclass
class TrainState:
    epoch: int = 0  # completed epochs
    step_in_epoch: int = 0  # batches done in the epoch in progress
    global_step: int = 0
    best_robust: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    sums: dict[str, float] = field(default_factory=dict)
    count: int = 0
    guard: dict[str, Any] = field(default_factory=dict)  # the guard's GuardState (its JSON)

    def metrics(self) -> dict[str, Any]:
        """The `metrics` metadata of every checkpoint, and what a finished run reports."""
        last = self.history[-1] if self.history else {}
        return {"best_robust_acc": self.best_robust, "last": last, "history": self.history}


def save_full(
    path: Path,
    model: nn.Module,
    optim: torch.optim.Optimizer,
    state: TrainState,
    meta: dict[str, str],
    device: torch.device | None = None,
) -> Path:
    """A resumable checkpoint: weights, optimiser, RNG (the CPU's, and `device`'s) and progress."""
    tensors = ckpt.pack_model(model)
    opt_tensors, opt_blob = ckpt.pack_optimizer(optim)
    tensors.update(opt_tensors)
    tensors.update(ckpt.pack_rng(device))
    tensors["sched.last_epoch"] = torch.tensor(state.epoch, dtype=torch.int64)
    progress = asdict(state)
    del progress["epoch"]  # the `epoch` metadata holds it
    meta = {**meta, "optim": opt_blob, "progress": json.dumps(progress)}
    return ckpt.save(path, tensors, meta)


def load_full(
    path: Path,
    model: nn.Module,
    optim: torch.optim.Optimizer,
    device: torch.device,
    *,
    meta: dict[str, str] | None = None,
) -> TrainState:
    """Restore model, optimiser and RNG from a full checkpoint; return its progress.

    `meta`: the header's metadata when the caller has read it already (read once).
    """
    if meta is None:
        tensors, meta = ckpt.load(path)
    else:
        tensors = ckpt.load_tensors(path)
    if meta.get("kind") != "full":
        raise CheckpointError(f"{path}: key 'kind': a weights-only checkpoint cannot resume")
    ckpt.unpack_model(model, tensors, str(path))
    model.to(device)
    try:
        ckpt.unpack_optimizer(optim, tensors, meta["optim"])
        ckpt.unpack_rng(tensors, device)
        p = json.loads(meta["progress"])
        return TrainState(
            int(meta["epoch"]),
            p["step_in_epoch"],
            p["global_step"],
            p["best_robust"],
            p["history"],
            p["sums"],
            p["count"],
            p.get("guard") or {},  # checkpoints from before the guard have none
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(
            f"{path}: key {exc!s}: resumable state is missing or malformed"
        ) from None
