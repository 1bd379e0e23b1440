"""The training loop: one readable loop from preset to checkpoints and events.

Per step: method loss -> backward -> optimiser step, with metrics summed on
the device and read only every `train.log_every` steps (the single host sync).
Per epoch: clean accuracy on the test split, robust accuracy by PGD on the
first `eval.samples` test examples, `last` (resumable), `epoch-NNNN` (every N,
keep K) and `best` (by robust accuracy) checkpoints. A stop request (Ctrl-C,
SIGTERM) saves a resumable checkpoint at the current step; a NaN/inf stops the
run with `run_failed` and leaves the last good checkpoint untouched.
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine import checkpoint as ckpt
from engine import distributed, perf
from engine.config import PresetConfig
from engine.data import Augment, Dataset, TensorLoader, epoch_generator
from engine.distributed import SINGLE, World
from engine.errors import CheckpointError, TrainingDiverged, WorkbenchError
from engine.evaluate import run_suite, suite_attacks
from engine.events import EventWriter
from engine.methods import build_method
from engine.models import build


def resolve_device(name: str, source: str = "device") -> torch.device:
    """`auto` picks CUDA when present; asking for CUDA on a machine without it is bad input."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise WorkbenchError(
                f"{source}: key 'train.device': given {name!r} but CUDA is not available here"
            )
        idx = int(name.split(":")[1]) if ":" in name else 0
        if idx >= torch.cuda.device_count():
            raise WorkbenchError(
                f"train.device: given {name!r}, this machine has {torch.cuda.device_count()} GPU(s)"
            )
    return torch.device(name)


def lr_at(cfg: PresetConfig, epoch_float: float) -> float:
    """Learning rate after `epoch_float` epochs (0-based, fractional within an epoch)."""
    base, s = cfg.optim.lr, cfg.schedule
    if s.kind == "multistep":
        done = int(epoch_float) + 1  # the 1-based epoch being trained
        return base * s.gamma ** sum(1 for m in s.milestones if done >= m)
    if s.kind == "cosine":
        return base * 0.5 * (1.0 + math.cos(math.pi * epoch_float / cfg.train.epochs))
    return base


def build_optimizer(cfg: PresetConfig, model: nn.Module) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.name == "sgd":
        return torch.optim.SGD(
            model.parameters(),
            lr=o.lr,
            momentum=o.momentum,
            weight_decay=o.weight_decay,
            nesterov=o.nesterov,
        )
    return torch.optim.Adam(model.parameters(), lr=o.lr, weight_decay=o.weight_decay)


@dataclass
class Outcome:
    """How a run ended, for the faces: status, exit code and what is on disk."""

    status: str  # finished | failed | interrupted
    exit_code: int
    run_dir: Path
    final: dict[str, Any] = field(default_factory=dict)
    error: str = ""


@dataclass
class _State:
    epoch: int = 0  # completed epochs
    step_in_epoch: int = 0  # batches done in the epoch in progress
    global_step: int = 0
    best_robust: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    sums: dict[str, float] = field(default_factory=dict)
    count: int = 0


class Trainer:
    """Runs one preset in one run directory; events go to `writer`."""

    def __init__(
        self,
        cfg: PresetConfig,
        data: Dataset,
        run_dir: Path,
        writer: EventWriter,
        device: torch.device,
        stop: threading.Event | None = None,
        world: World = SINGLE,
    ) -> None:
        self.cfg = cfg
        self.world = world
        self.data = data
        self.run_dir = run_dir
        self.writer = writer
        self.device = device
        self.stop = stop or threading.Event()
        if cfg.train.deterministic and device.type == "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)
        torch.manual_seed(cfg.train.seed)
        self.model = build(cfg).to(device)
        init_from = getattr(cfg.method, "init_from", "")
        if init_from:  # e.g. API-Net fine-tuning starts from a Madry-trained model
            try:
                tensors, _ = ckpt.load(init_from)
                ckpt.unpack_model(self.model, tensors, init_from)
            except CheckpointError as exc:
                raise CheckpointError(f"key 'method.init_from': {exc}") from None
        self.model = distributed.convert_sync_bn(self.model, cfg.distributed, world)
        self.method = build_method(cfg)
        self.optim = build_optimizer(cfg, self.model)
        train_x, train_y = data.train_x, data.train_y
        if cfg.data.train_limit:
            train_x, train_y = train_x[: cfg.data.train_limit], train_y[: cfg.data.train_limit]
        aug = (
            Augment(cfg.data.flip, cfg.data.crop_padding, cfg.data.pad_mode)
            if cfg.data.augment
            else None
        )
        # [perf] fast path and batch_size = "auto" (engine/perf.py); the resolved batch is
        # written back into the config, so config.toml, checkpoints and resume record it.
        # Under DDP the batch is global: "auto" probes one rank's share, the smallest wins.
        self.fast = perf.setup(
            cfg.perf,
            cfg.data.batch_size,
            self.model,
            self.method,
            self.optim,
            train_x,
            train_y,
            device,
            cfg.train.deterministic,
        )
        batch = self.fast.batch_size
        if cfg.data.batch_size == "auto" and world.enabled:
            batch = distributed.all_min(batch, world, device) * world.size
        if batch < world.size:
            raise WorkbenchError(
                f"key 'data.batch_size': {batch} is the global batch and must be at least "
                f"the number of processes ({world.size})"
            )
        cfg.data.batch_size = batch
        self.train_loader = TensorLoader(
            train_x,
            train_y,
            batch,
            device,
            shuffle=True,
            augment=aug,
            shard=(world.rank, world.size),
        )
        # what the method's loss trains through: the fast model, or its DDP view
        self.train_model = distributed.wrap(
            self.model, self.fast.model, world, device, bool(self.fast.info.get("compiled"))
        )
        distributed.rank_seed(cfg.train.seed, world)
        n_eval = cfg.eval.samples or len(data.test_y)
        self.test_x = data.test_x.to(device).float().div_(255.0)
        self.test_y = data.test_y.to(device)
        self.eval_x, self.eval_y = self.test_x[:n_eval], self.test_y[:n_eval]
        self.state = _State()

    # ------------------------------------------------------------ checkpoints

    def _meta(self, kind: str, metrics: dict[str, Any]) -> dict[str, str]:
        meta = ckpt.base_metadata(self.cfg, self.state.epoch, metrics, kind)
        meta["device"] = str(self.device)
        return meta

    def _save_full(self, path: Path) -> Path:
        s = self.state
        tensors = ckpt.pack_model(self.model)
        opt_tensors, opt_blob = ckpt.pack_optimizer(self.optim)
        tensors.update(opt_tensors)
        tensors.update(ckpt.pack_rng())
        tensors["sched.last_epoch"] = torch.tensor(s.epoch, dtype=torch.int64)
        meta = self._meta("full", self._metrics())
        meta["optim"] = opt_blob
        meta["progress"] = json.dumps(
            {
                "step_in_epoch": s.step_in_epoch,
                "global_step": s.global_step,
                "best_robust": s.best_robust,
                "history": s.history,
                "sums": s.sums,
                "count": s.count,
            }
        )
        return ckpt.save(path, tensors, meta)

    def _metrics(self) -> dict[str, Any]:
        s = self.state
        last = s.history[-1] if s.history else {}
        return {"best_robust_acc": s.best_robust, "last": last, "history": s.history}

    def resume(self, path: Path) -> None:
        """Load model, optimiser, RNG and progress from a full checkpoint."""
        tensors, meta = ckpt.load(path)
        if meta.get("kind") != "full":
            raise CheckpointError(f"{path}: key 'kind': a weights-only checkpoint cannot resume")
        ckpt.unpack_model(self.model, tensors, str(path))
        self.model.to(self.device)
        try:
            ckpt.unpack_optimizer(self.optim, tensors, meta["optim"])
            ckpt.unpack_rng(tensors)
            p = json.loads(meta["progress"])
            self.state = _State(
                int(meta["epoch"]),
                p["step_in_epoch"],
                p["global_step"],
                p["best_robust"],
                p["history"],
                p["sums"],
                p["count"],
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise CheckpointError(
                f"{path}: key {exc!s}: resumable state is missing or malformed"
            ) from None
        distributed.rank_seed(self.cfg.train.seed, self.world, self.state.global_step)

    def _prune(self) -> None:
        files = sorted((self.run_dir / "checkpoints").glob("epoch-*.safetensors"))
        for old in files[: -self.cfg.checkpoint.keep]:
            old.unlink()

    # ------------------------------------------------------------ evaluation

    def evaluate(self) -> tuple[float, float]:
        """Test clean accuracy (all examples) and robust accuracy (eval subset), on rank 0.

        Under DDP rank 0 evaluates and every rank receives its numbers.
        """
        result = self._evaluate() if self.world.is_main else None
        return distributed.broadcast(result, self.world)

    def _evaluate(self) -> tuple[float, float]:
        """Test clean accuracy (all examples) and robust accuracy (eval subset).

        With an inference-time defence both are the defended classifier's, on
        the eval subset, and robust accuracy is the transfer attack's (cheap
        enough to run every epoch; `workbench eval --defense` runs the others).
        """
        cfg = self.cfg
        if cfg.defense.name != "none":
            return self._evaluate_defended()
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            clean = run_suite(
                self.model, self.test_x, self.test_y, {}, cfg.data.eval_batch_size
            ).accuracy("clean")
            res = run_suite(
                self.model,
                self.eval_x,
                self.eval_y,
                suite_attacks(cfg, "quick"),
                cfg.data.eval_batch_size,
                seed=cfg.train.seed + self.state.epoch,
            )
        return clean, 100.0 * res.worst_case.float().mean().item()

    def _evaluate_defended(self) -> tuple[float, float]:
        from engine.defenses import build_defense

        cfg = self.cfg
        defended = build_defense(cfg, self.model, self.data.num_classes)
        attack = suite_attacks(cfg, "quick")[f"PGD-{cfg.eval.steps}"]
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            res = run_suite(
                defended,
                self.eval_x,
                self.eval_y,
                {"transfer": lambda m, x, y: attack(self.model, x, y)},
                cfg.data.eval_batch_size,
                seed=cfg.train.seed + self.state.epoch,
            )
        return res.accuracy("clean"), res.accuracy("transfer")

    # ------------------------------------------------------------ the loop

    def run(self) -> Outcome:
        cfg, s = self.cfg, self.state
        w = self.writer
        w.emit(
            "run_started",
            config=cfg.to_dict(),
            device=str(self.device),
            train_size=len(self.train_loader.y),
            test_size=len(self.test_y),
            eval_samples=len(self.eval_y),
            resumed=s.epoch > 0 or s.step_in_epoch > 0,
            start_epoch=s.epoch,
            steps_per_epoch=len(self.train_loader),
            torch_version=torch.__version__,
            threads=torch.get_num_threads(),
            perf=self.fast.info,
            distributed=self.world.info(),
        )
        for message in self.fast.warnings:
            w.emit("warning", message=message)
        try:
            while s.epoch < cfg.train.epochs:
                if self._train_epoch():
                    outcome = self._interrupted()
                    distributed.barrier(self.world)  # rank 0 has saved before anyone leaves
                    return outcome
                self._end_epoch()
        except TrainingDiverged as exc:
            w.emit("run_failed", error=str(exc), epoch=s.epoch + 1, step=s.global_step)
            return Outcome("failed", 1, self.run_dir, self._metrics(), str(exc))
        final = self._metrics()
        w.emit("run_finished", status="finished", epoch=s.epoch, **final)
        distributed.barrier(self.world)
        return Outcome("finished", 0, self.run_dir, final)

    def _train_epoch(self) -> bool:
        """Train the rest of the current epoch; True if a stop was requested."""
        cfg, s, model, world = self.cfg, self.state, self.model, self.world
        loader = self.train_loader
        n_batches = len(loader)
        gen = epoch_generator(cfg.train.seed, s.epoch)
        acc: dict[str, torch.Tensor] = {}
        seen, n_steps, t_log = 0, 0, time.perf_counter()
        self._epoch_t0 = time.perf_counter()
        for b, (x, y) in enumerate(loader.epoch(gen, start=s.step_in_epoch), s.step_in_epoch):
            lr = lr_at(cfg, s.epoch + b / n_batches)
            for group in self.optim.param_groups:
                group["lr"] = lr
            model.train()
            self.train_model.train()
            if self.fast.channels_last:
                x = perf.to_channels_last(x)
            with self.fast.autocast(self.device):  # bf16 forward passes when perf.amp asks
                loss, parts = self.method.loss(self.train_model, x, y)
            metrics = {"loss": loss.detach(), **parts}
            if world.enabled:  # DDP averages gradients; weight each rank by its share
                share = len(y) / loader.global_batch(b)
                metrics = {k: v * share for k, v in metrics.items()}  # summed when logged
                loss = loss * (share * world.size)
            self.optim.zero_grad(set_to_none=True)
            loss.backward()
            self.optim.step()
            for k, v in metrics.items():
                acc[k] = acc[k] + v if k in acc else v.clone()
            seen += loader.global_batch(b)
            n_steps += 1
            s.global_step += 1
            s.step_in_epoch = b + 1
            last = b + 1 == n_batches
            # under DDP a stop is agreed at logging steps, so every rank stops after the same one
            asked = self.stop.is_set() and not world.enabled
            if s.global_step % cfg.train.log_every == 0 or last or asked:
                stacked = torch.stack(list(acc.values()))
                stopping = self.stop.is_set()
                if world.enabled:
                    flag = torch.tensor([float(stopping)], device=stacked.device)
                    stacked = distributed.all_sum(torch.cat([stacked.float(), flag]), world)
                    stopping = bool(stacked[-1].item() > 0)
                    stacked = stacked[:-1]
                values = dict(zip(acc, stacked.tolist(), strict=True))
                if not all(math.isfinite(v) for v in values.values()):
                    bad = ", ".join(k for k, v in values.items() if not math.isfinite(v))
                    raise TrainingDiverged(
                        f"non-finite {bad} at epoch {s.epoch + 1} step {s.global_step}; "
                        "last good checkpoint kept"
                    )
                means = {k: v / n_steps for k, v in values.items()}
                for k, v in values.items():
                    s.sums[k] = s.sums.get(k, 0.0) + v
                s.count += n_steps
                dt = time.perf_counter() - t_log
                extra = {}
                if self.device.type == "cuda":  # host-side counters: no device sync
                    extra = {
                        "gpu_mem_mb": torch.cuda.memory_allocated(self.device) / 2**20,
                        "gpu_peak_mb": torch.cuda.max_memory_allocated(self.device) / 2**20,
                    }
                self.writer.emit(
                    "step",
                    epoch=s.epoch + 1,
                    step=s.global_step,
                    batch=b + 1,
                    batches=n_batches,
                    loss=means.pop("loss"),
                    parts=means,
                    lr=lr,
                    samples_per_s=seen / dt if dt > 0 else 0.0,
                    **extra,
                )
                acc, seen, n_steps, t_log = {}, 0, 0, time.perf_counter()
                if not world.enabled:  # one process: a stop asked for while logging counts too
                    stopping = self.stop.is_set()
                if stopping:
                    return True
        return False

    def _end_epoch(self) -> None:
        cfg, s = self.cfg, self.state
        for name, p in self.model.named_parameters():
            if not torch.isfinite(p).all():
                raise TrainingDiverged(
                    f"non-finite weights in {name} at epoch {s.epoch + 1}; "
                    "last good checkpoint kept"
                )
        train_means = {k: v / max(s.count, 1) for k, v in s.sums.items()}
        s.epoch += 1
        s.step_in_epoch = 0
        s.sums, s.count = {}, 0
        final = s.epoch == cfg.train.epochs
        clean, robust = None, None
        t_eval = time.perf_counter()
        if s.epoch % cfg.eval.every == 0 or final:
            clean, robust = self.evaluate()
        seconds = time.perf_counter() - self._epoch_t0
        record = {
            "epoch": s.epoch,
            "train": train_means,
            "clean_acc": clean,
            "robust_acc": robust,
            "seconds": seconds,
            "eval_seconds": time.perf_counter() - t_eval,
        }
        s.history.append(record)
        improved = robust is not None and (s.best_robust is None or robust > s.best_robust)
        if improved:
            s.best_robust = robust
        self.writer.emit(
            "epoch_end", **record, lr=lr_at(cfg, s.epoch - 1), best_robust_acc=s.best_robust
        )
        if not self.world.is_main:  # rank 0 alone writes checkpoints
            return
        last = self._save_full(self.run_dir / "last.safetensors")
        self.writer.emit("checkpoint_saved", path=str(last), epoch=s.epoch, kind="last")
        if s.epoch % cfg.checkpoint.every == 0 or final:
            p = self._save_full(self.run_dir / "checkpoints" / f"epoch-{s.epoch:04d}.safetensors")
            self._prune()
            self.writer.emit("checkpoint_saved", path=str(p), epoch=s.epoch, kind="epoch")
        no_best_yet = not (self.run_dir / "best.safetensors").exists()
        if improved or (no_best_yet and final):
            best = ckpt.save(
                self.run_dir / "best.safetensors",
                ckpt.pack_model(self.model),
                self._meta("weights", self._metrics()),
            )
            self.writer.emit("checkpoint_saved", path=str(best), epoch=s.epoch, kind="best")

    def _interrupted(self) -> Outcome:
        if self.world.is_main:
            path = self._save_full(self.run_dir / "last.safetensors")
            self.writer.emit(
                "checkpoint_saved", path=str(path), epoch=self.state.epoch, kind="last"
            )
        self.writer.emit(
            "run_finished",
            status="interrupted",
            epoch=self.state.epoch,
            step=self.state.global_step,
            **self._metrics(),
        )
        return Outcome("interrupted", 130, self.run_dir, self._metrics())
