"""Data-parallel training over processes (torch.distributed DDP), one GPU per process.

A run is distributed when it is started by `torchrun` (or `workbench run
--nproc N`, which sets the same environment), or as one task of a multi-task
SLURM step (`srun -n N`, whose variables engine/train/slurm_world.py
translates): `WORLD_SIZE` > 1. The contract:

* `data.batch_size` stays the *global* batch. Every rank draws the same epoch
  permutation and augmentation plan (seeded by seed and epoch), slices the
  same global batch and keeps its own contiguous shard of it. So a step sees
  the same examples whatever the world size, and `step_in_epoch` in a
  checkpoint means the same thing in 1 or 8 processes: resume works across
  world sizes.
* Each rank's loss is scaled by n_rank * world / n_global before backward, so
  DDP's gradient average equals the gradient of the global batch's mean loss
  even when the last batch splits unevenly. With losses that are per-example
  means (every method here) a 2-process run follows the 1-process run with the
  same global batch up to float rounding; BatchNorm statistics are per rank
  unless `distributed.sync_bn` (CUDA only) is on, and random attack starts are
  drawn per rank, so those runs agree in distribution, not bit for bit.
* The method's attacks (PGD, the TRADES KL search, API-Net's search) run on
  the plain module: they need input gradients only, and routing them through
  DDP would trigger buffer broadcasts and reducer bookkeeping on every attack
  step. Only the loss's own forward passes go through DDP (`TrainView`).
* Rank 0 alone evaluates, writes events, checkpoints and config; it broadcasts
  the epoch's accuracies so every rank keeps the same history. Checkpoints hold
  the unwrapped module, exactly as in a 1-process run.
* A stop request (Ctrl-C, SIGTERM) is agreed at logging steps, where the ranks
  already exchange their metrics, so every rank stops after the same step.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from engine.spec.config import DistributedConfig
from engine.spec.errors import WorkbenchError
from engine.train import slurm_world

TIMEOUT = datetime.timedelta(hours=2)  # rank 0 evaluates alone while the others wait


@dataclass(frozen=True)
class World:
    """This process's place in the job (rank 0 of 1 when not distributed)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def info(self) -> dict[str, Any]:
        return {"world_size": self.size, "rank": self.rank, "backend": backend_name()}


SINGLE = World()


def env_world() -> World:
    """The world torchrun (or a multi-task SLURM step) describes in the environment (SINGLE
    when it does not). SLURM's variables are translated into torchrun's in `os.environ`,
    where `init_process_group` reads MASTER_ADDR and MASTER_PORT."""
    os.environ.update(slurm_world.from_slurm(os.environ))
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        local_size = int(os.environ.get("LOCAL_WORLD_SIZE", str(size)))
    except ValueError as exc:
        raise WorkbenchError(f"torchrun environment: {exc}") from None
    if size <= 1:
        return SINGLE
    return World(rank, size, local_rank, local_size)


def backend_name() -> str | None:
    return dist.get_backend() if dist.is_available() and dist.is_initialized() else None


def check(cfg: DistributedConfig, device: torch.device, nproc_local: int, source: str) -> None:
    """Refuse a distributed set-up that cannot work, naming the preset key (before any spawn)."""
    if nproc_local <= 1:
        return
    if device.type == "cuda" and nproc_local > torch.cuda.device_count():
        raise WorkbenchError(
            f"{source}: key 'train.device': {nproc_local} processes need one GPU each, "
            f"this machine has {torch.cuda.device_count()}"
        )
    if cfg.backend == "nccl" and device.type != "cuda":
        raise WorkbenchError(f"{source}: key 'distributed.backend': nccl needs CUDA devices")
    if cfg.sync_bn and device.type != "cuda":
        raise WorkbenchError(
            f"{source}: key 'distributed.sync_bn': SyncBatchNorm runs on CUDA only "
            "(set it to false for a CPU run)"
        )


def init(world: World, cfg: DistributedConfig, device: torch.device) -> torch.device:
    """Join the process group; returns this rank's device (cuda:LOCAL_RANK on CUDA)."""
    if not world.enabled:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    backend = cfg.backend
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:  # share this machine's cores
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world.local_size))
    dist.init_process_group(backend, rank=world.rank, world_size=world.size, timeout=TIMEOUT)
    return device


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def broadcast(value: Any, world: World) -> Any:
    """Rank 0's Python value on every rank (run names, accuracies, errors)."""
    if not world.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(world: World) -> None:
    if world.enabled:
        dist.barrier()


def all_sum(t: torch.Tensor, world: World) -> torch.Tensor:
    """Sum a tensor over the ranks, in place (NCCL wants it on this rank's GPU)."""
    if world.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_min(value: int, world: World, device: torch.device) -> int:
    if not world.enabled:
        return value
    t = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def rank_seed(seed: int, world: World, step: int = 0) -> None:
    """Give ranks > 0 their own RNG stream (attack starts, dropout); rank 0 keeps the run's."""
    if world.rank > 0:
        torch.manual_seed((seed * 1_000_003 + world.rank * 7919 + step) % 2**63)


class _Dispatch(nn.Module):
    """Lets DDP's forward reach methods other than `forward` (ATBLR's forward_features)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor, *args: Any, _call: str = "forward") -> Any:
        return getattr(self.inner, _call)(x, *args)


class TrainView(nn.Module):
    """What a method's loss sees under DDP: its forward passes go through DDP, attacks do not.

    Attribute lookups it does not define (`head`, ...) fall through to the
    plain module, whose parameters DDP shares.
    """

    def __init__(self, module: nn.Module, ddp: nn.Module) -> None:
        super().__init__()
        self.plain_module = module
        self.ddp = ddp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ddp(x)

    def forward_features(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Any:
        return self.ddp(x, y, _call="forward_features")

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("plain_module"), name)


def wrap(
    model: nn.Module, fast_model: nn.Module, world: World, device: torch.device, compile: bool
) -> nn.Module:
    """The model a method's loss trains through: `fast_model` alone, or a DDP view of it.

    `fast_model` is the eager model or its torch.compile'd twin (engine/perf.py);
    attacks keep using it, the DDP wrapper holds the eager module (DDP first,
    then compile, as PyTorch recommends).
    """
    if not world.enabled:
        return fast_model
    ddp: nn.Module = DistributedDataParallel(
        _Dispatch(model),
        device_ids=[device.index] if device.type == "cuda" else None,
    )
    if compile:
        ddp = torch.compile(ddp)  # type: ignore[assignment]
    return TrainView(fast_model, ddp)


def convert_sync_bn(model: nn.Module, cfg: DistributedConfig, world: World) -> nn.Module:
    if world.enabled and cfg.sync_bn:
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def attack_model(model: nn.Module) -> nn.Module:
    """The module an attack inside a training loss should differentiate (not the DDP view)."""
    return model.plain_module if isinstance(model, TrainView) else model


def global_batch(requested: int | str, batch: int, world: World, device: torch.device) -> int:
    """The batch all ranks together take per step (`batch`: one rank's, or the global one).

    Under DDP the batch is global: "auto" (`requested`) probed one rank's share,
    the smallest wins.
    """
    if requested == "auto" and world.enabled:
        batch = all_min(batch, world, device) * world.size
    if batch < world.size:
        raise WorkbenchError(
            f"key 'data.batch_size': {batch} is the global batch and must be at least "
            f"the number of processes ({world.size})"
        )
    return batch
