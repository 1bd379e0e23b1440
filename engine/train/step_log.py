"""The loop's `step` events: loss parts summed on the device, read once per logging window.

Reading the sums is the training loop's one host sync, so it happens every
`train.log_every` steps (and at an epoch's end), never per step. The same read
checks the loss for NaN/inf before anything of the window is recorded, and
under DDP carries each rank's stop request, so every rank stops after the same
step.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

import torch

from engine.records.events import EventWriter
from engine.spec.errors import TrainingDiverged
from engine.train import distributed
from engine.train.distributed import World
from engine.train.state import TrainState


@dataclass
class LogWindow:
    """The steps since the last `step` event: loss parts summed on the device, samples, clock."""

    sums: dict[str, torch.Tensor] = field(default_factory=dict)
    samples: int = 0
    steps: int = 0
    t0: float = field(default_factory=time.perf_counter)

    def add(self, metrics: dict[str, torch.Tensor], samples: int) -> None:
        for k, v in metrics.items():
            self.sums[k] = self.sums[k] + v if k in self.sums else v.clone()
        self.samples += samples
        self.steps += 1

    def reset(self) -> None:
        self.sums, self.samples, self.steps, self.t0 = {}, 0, 0, time.perf_counter()


class StepLog:
    """Writes a run's `step` events and says when the loop must stop (a stop request)."""

    def __init__(
        self,
        world: World,
        stop: threading.Event,
        device: torch.device,
        log_every: int,
        batches: int,
    ) -> None:
        self.world, self.stop, self.device = world, stop, device
        self.log_every, self.batches = log_every, batches

    def due(self, global_step: int, last: bool) -> bool:
        """Every `train.log_every` steps, at the epoch's last step, and (one process) at a stop.

        Under DDP a stop is agreed at logging steps, so every rank stops after the same one.
        """
        asked = self.stop.is_set() and not self.world.enabled
        return global_step % self.log_every == 0 or last or asked

    def emit(
        self, writer: EventWriter, window: LogWindow, s: TrainState, b: int, lr: float
    ) -> bool:
        """Emit the window's `step` event to `writer` (the run's, set when its folder is
        made), add it to `s`'s epoch sums, start a new window; True if the run stops here.

        A non-finite loss part raises TrainingDiverged before anything of this
        window is recorded.
        """
        values, agreed = self._gather(window)
        if not all(math.isfinite(v) for v in values.values()):
            bad = ", ".join(k for k, v in values.items() if not math.isfinite(v))
            raise TrainingDiverged(
                f"non-finite {bad} at epoch {s.epoch + 1} step {s.global_step}; "
                "last good checkpoint kept"
            )
        means = {k: v / window.steps for k, v in values.items()}
        for k, v in values.items():
            s.sums[k] = s.sums.get(k, 0.0) + v
        s.count += window.steps
        dt = time.perf_counter() - window.t0
        writer.emit(
            "step",
            epoch=s.epoch + 1,
            step=s.global_step,
            batch=b + 1,
            batches=self.batches,
            loss=means.pop("loss"),
            parts=means,
            lr=lr,
            samples_per_s=window.samples / dt if dt > 0 else 0.0,
            **self._gpu_memory(),
        )
        window.reset()
        # one process: a stop asked for while logging counts too
        return agreed if self.world.enabled else self.stop.is_set()

    def _gather(self, window: LogWindow) -> tuple[dict[str, float], bool]:
        """The window's sums as numbers, and whether the ranks agree to stop.

        Under DDP one all-reduce sums both over the ranks, the stop request
        riding as an extra element: a stop asked on any rank stops them all.
        """
        stacked = torch.stack(list(window.sums.values()))
        stop = self.stop.is_set()
        if self.world.enabled:
            flag = torch.tensor([float(stop)], device=stacked.device)
            stacked = distributed.all_sum(torch.cat([stacked.float(), flag]), self.world)
            stop = bool(stacked[-1].item() > 0)
            stacked = stacked[:-1]
        return dict(zip(window.sums, stacked.tolist(), strict=True)), stop

    def _gpu_memory(self) -> dict[str, float]:
        """Allocated and peak CUDA memory in MiB (host-side counters: no device sync)."""
        if self.device.type != "cuda":
            return {}
        return {
            "gpu_mem_mb": torch.cuda.memory_allocated(self.device) / 2**20,
            "gpu_peak_mb": torch.cuda.max_memory_allocated(self.device) / 2**20,
        }
