"""The training loop: one readable loop from preset to checkpoints and events.

Per step: method loss -> backward -> optimiser step, with metrics summed on
the device and read only every `train.log_every` steps (the single host sync).
Per epoch: clean and robust accuracy on the validation split (carved from
train, engine/splits.py) under the built-in suite `eval.suite`
(engine/train/validation.py), `last` (resumable), `epoch-NNNN` (every N,
keep K) and `best` (by validation robust accuracy) checkpoints. A finished run
then measures its best checkpoint on the test split, once. With `[guard]` on,
the catastrophic-overfitting guard (engine/train/guard.py) checks every N steps
or epoch, keeps its best check's weights in `guard.safetensors`, and when it
fires stops the run, restores those weights, or lowers the method's step. A stop request (Ctrl-C,
SIGTERM) saves a resumable checkpoint at the current step; a NaN/inf stops the
run with `run_failed` and leaves the last good checkpoint untouched.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine import checkpoint_io as ckpt
from engine.data import Dataset
from engine.loader import Augment, TensorLoader, epoch_generator
from engine.models import build
from engine.records.checkpoint_header import read_header
from engine.records.events import EventWriter
from engine.spec.config import PresetConfig
from engine.spec.errors import CheckpointError, TrainingDiverged
from engine.splits import split
from engine.train import distributed, perf
from engine.train.distributed import SINGLE, World
from engine.train.guard import Guard, GuardCheck, GuardState
from engine.train.methods.base import build_method
from engine.train.schedule import build_optimizer, lr_at
from engine.train.state import TrainState, load_full, save_full
from engine.train.step_log import LogWindow, StepLog
from engine.train.validation import SplitEvaluation, test_checkpoint


@dataclass
class Outcome:
    """How a run ended: finished | failed | interrupted, and what is on disk."""

    status: str
    run_dir: Path
    final: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    saved: bool = True  # False: interrupted twice, so no final checkpoint was written


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
        # a copy: the resolved batch size is written into it (config.toml, checkpoints record it)
        self.cfg = cfg = cfg.model_copy(deep=True)
        self.world = world
        self.data = data
        self.run_dir = run_dir
        self.writer = writer
        self.device = device
        self.stop = stop or threading.Event()
        self.model = self._build_model()
        self.method = build_method(cfg)
        self.optim = build_optimizer(cfg, self.model)
        self.splits = split(data, cfg.data.val_size, cfg.data.val_seed)
        train_x, train_y = self._train_set()
        # [perf] fast path and batch_size = "auto" (engine/train/perf.py); the resolved batch
        # goes into this run's copy of the config, so config.toml, checkpoints and resume see it.
        self.fast = perf.setup(
            cfg.perf,
            requested_batch=cfg.data.batch_size,
            model=self.model,
            method=self.method,
            optim=self.optim,
            train_x=train_x,
            train_y=train_y,
            device=device,
            deterministic=cfg.train.deterministic,
        )
        cfg.data.batch_size = distributed.global_batch(
            cfg.data.batch_size, self.fast.batch_size, world, device
        )
        self.train_loader = TensorLoader(
            train_x,
            train_y,
            cfg.data.batch_size,
            device,
            shuffle=True,
            augment=self._augment(),
            shard=(world.rank, world.size),
        )
        # what the method's loss trains through: the fast model, or its DDP view
        self.train_model = distributed.wrap(
            self.model, self.fast.model, world, device, bool(self.fast.info.get("compiled"))
        )
        distributed.rank_seed(cfg.train.seed, world)
        self.guard = (
            Guard(cfg, train_x, train_y, device, len(self.train_loader))
            if cfg.guard.enabled
            else None
        )
        val_x, val_y = data.train_x[self.splits.val], data.train_y[self.splits.val]
        self.evaluation = SplitEvaluation(
            cfg, self.model, val_x, val_y, data.num_classes, device, split="val"
        )
        self.state = TrainState()
        self.step_log = StepLog(
            world, self.stop, device, cfg.train.log_every, len(self.train_loader)
        )

    def _build_model(self) -> nn.Module:
        """The seeded model on the device: its initial weights depend on the seed alone."""
        cfg, device = self.cfg, self.device
        if cfg.train.deterministic and device.type == "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)
        torch.manual_seed(cfg.train.seed)
        model = build(cfg).to(device)
        init_from = getattr(cfg.method, "init_from", "")
        if init_from:  # e.g. API-Net fine-tuning starts from a Madry-trained model
            ckpt.load_weights(model, init_from, "method.init_from")
        return distributed.convert_sync_bn(model, cfg.distributed, self.world)

    def _train_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The training split's images and labels, cut to `data.train_limit` if set."""
        data, limit = self.data, self.cfg.data.train_limit
        train_x, train_y = data.train_x[self.splits.train], data.train_y[self.splits.train]
        return (train_x[:limit], train_y[:limit]) if limit else (train_x, train_y)

    def _augment(self) -> Augment | None:
        d = self.cfg.data
        return Augment(d.flip, d.crop_padding, d.pad_mode) if d.augment else None

    # ------------------------------------------------------------ checkpoints

    def _meta(self, kind: str, metrics: dict[str, Any]) -> dict[str, str]:
        meta = ckpt.base_metadata(self.cfg, self.state.epoch, metrics, kind)
        meta["device"] = str(self.device)
        meta["splits"] = json.dumps(self.splits.record(), sort_keys=True)
        return meta

    def _save_full(self, path: Path) -> Path:
        if self.guard is not None:
            self.state.guard = self.guard.state.to_json()
        meta = self._meta("full", self.state.metrics())
        return save_full(path, self.model, self.optim, self.state, meta, self.device)

    def resume(self, path: Path) -> None:
        """Load model, optimiser, RNG and progress from a full checkpoint of this same split."""
        _, meta = read_header(path)
        recorded = meta.get("splits")
        if recorded is None:
            raise CheckpointError(
                f"{path}: key 'splits': this run started before runs had a validation split; "
                "resuming it now would change its training set (start a new run instead)"
            )
        if json.loads(recorded) != self.splits.record():
            raise CheckpointError(
                f"{path}: key 'splits': the run was split as {recorded}, the resumed config "
                f"gives {json.dumps(self.splits.record(), sort_keys=True)} (data.val_size, "
                "data.val_seed and data.dataset must stay as they were)"
            )
        self.state = load_full(path, self.model, self.optim, self.device, meta=meta)
        if self.guard is not None:
            self.guard.state = GuardState.from_json(self.state.guard)
            if self.guard.state.step_scale != 1.0:  # an earlier "lower_step" stays lowered
                self.method.scale_step(self.guard.state.step_scale)
        distributed.rank_seed(self.cfg.train.seed, self.world, self.state.global_step)

    def _prune(self) -> None:
        files = sorted((self.run_dir / "checkpoints").glob("epoch-*.safetensors"))
        for old in files[: -self.cfg.checkpoint.keep]:
            old.unlink()

    # ------------------------------------------------------------ evaluation

    def evaluate(self) -> dict[str, Any]:
        """Validation accuracies with n and intervals, measured on rank 0.

        Under DDP rank 0 evaluates and every rank receives its numbers.
        """
        seed = self.cfg.train.seed + self.state.epoch
        result = self.evaluation(seed) if self.world.is_main else None
        return distributed.broadcast(result, self.world)

    def test_selected(self) -> dict[str, Any] | None:
        """The best checkpoint on the whole test split, once, at the end (rank 0)."""
        best = self.run_dir / "best.safetensors"
        if not self.world.is_main or not best.exists():
            return None
        self.writer.emit("phase", phase="testing", epoch=self.state.epoch)
        return test_checkpoint(best, self.data, self.device, self.cfg.train.seed)

    # ------------------------------------------------------------ the loop

    def run(self) -> Outcome:
        cfg, s = self.cfg, self.state
        w = self.writer
        w.emit(
            "run_started",
            config=cfg.to_dict(),
            panels=cfg.method.panels.to_json(),  # what the faces draw (engine/spec/panels.py)
            device=str(self.device),
            train_size=len(self.train_loader.y),
            val_size=len(self.splits.val),
            test_size=len(self.data.test_y),
            eval_samples=self.evaluation.size,
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
            while s.epoch < cfg.train.epochs and not self.guard_stopped:
                started = time.perf_counter()  # the epoch's seconds: training and evaluation
                if self._train_epoch():
                    outcome = self._interrupted()
                    distributed.barrier(self.world)  # rank 0 has saved before anyone leaves
                    return outcome
                self._end_epoch(started)
        except TrainingDiverged as exc:
            w.emit("run_failed", error=str(exc), epoch=s.epoch + 1, step=s.global_step)
            return Outcome("failed", self.run_dir, self.state.metrics(), str(exc))
        final = self.state.metrics()
        if self.guard is not None:
            final["guard"] = self.guard.summary()
        final["test"] = self.test_selected()
        w.emit("run_finished", status="finished", epoch=s.epoch, **final)
        distributed.barrier(self.world)
        return Outcome("finished", self.run_dir, final)

    def _train_epoch(self) -> bool:
        """Train the rest of the current epoch; True if a stop was requested."""
        s, loader = self.state, self.train_loader
        n_batches = len(loader)
        gen = epoch_generator(self.cfg.train.seed, s.epoch)
        window = LogWindow()
        for b, (x, y) in enumerate(loader.epoch(gen, start=s.step_in_epoch), s.step_in_epoch):
            lr = self._set_lr(s.epoch + b / n_batches)
            window.add(self._step(x, y, b), loader.global_batch(b))
            s.global_step += 1
            s.step_in_epoch = b + 1
            due = self.step_log.due(s.global_step, last=b + 1 == n_batches)
            if due and self.step_log.emit(self.writer, window, s, b, lr):
                return True
            due = self.guard is not None and self.guard.due(s.global_step, b + 1 == n_batches)
            if due and self._guard_check():  # training ends here: the epoch ends with it
                if window.steps:
                    self.step_log.emit(self.writer, window, s, b, lr)
                return False
        return False

    @property
    def guard_stopped(self) -> bool:
        """Whether the guard fired and ended training (its action "stop" or "restore")."""
        return self.guard is not None and self.guard.state.stopped

    def _guard_check(self) -> bool:
        """Check the guard now (rank 0 measures, every rank acts); True if training ends.

        A new best writes its weights to guard.safetensors (the last good
        checkpoint). A firing emits a `warning` and does `guard.action`.
        """
        g, s, w = self.guard, self.state, self.writer
        assert g is not None
        check = g.check(self.model, s.global_step) if self.world.is_main else None
        check, g.state = distributed.broadcast((check, g.state), self.world)
        assert isinstance(check, GuardCheck)
        w.emit("guard", **asdict(check), attack=g.label)
        good = self.run_dir / "guard.safetensors"
        if check.improved and self.world.is_main:
            meta = self._meta("weights", self.state.metrics())
            if s.step_in_epoch >= len(self.train_loader):  # checked at an epoch's end
                meta["epoch"] = str(s.epoch + 1)  # epochs completed by these weights
            meta["guard"] = json.dumps({"step": check.step, "acc": check.acc, "n": check.n})
            ckpt.save(good, ckpt.pack_model(self.model), meta)
        if not check.fired:
            return False
        if g.cfg.action != "stop":
            distributed.barrier(self.world)  # rank 0 has written guard.safetensors
        return g.act(check, self.model, self.method, w, good)

    def _set_lr(self, epochs_done: float) -> float:
        lr = lr_at(self.cfg, epochs_done)
        for group in self.optim.param_groups:
            group["lr"] = lr
        return lr

    def _step(self, x: torch.Tensor, y: torch.Tensor, b: int) -> dict[str, torch.Tensor]:
        """Forward, backward, optimiser step on batch `b`; its loss parts, still on the device."""
        self.model.train()
        self.train_model.train()
        if self.fast.channels_last:
            x = perf.to_channels_last(x)
        with self.fast.autocast(self.device):  # bf16 forward passes when perf.amp asks
            loss, parts = self.method.loss(self.train_model, x, y)
        metrics = {"loss": loss.detach(), **parts}
        if self.world.enabled:  # DDP averages gradients; weight each rank by its share
            share = len(y) / self.train_loader.global_batch(b)
            metrics = {k: v * share for k, v in metrics.items()}  # summed when logged
            loss = loss * (share * self.world.size)
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        self.optim.step()
        return metrics

    def _end_epoch(self, started: float) -> None:
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
        final = s.epoch == cfg.train.epochs or self.guard_stopped
        measured: dict[str, Any] = {"clean_acc": None, "robust_acc": None}
        t_eval = time.perf_counter()
        if s.epoch % cfg.eval.every == 0 or final:
            self.writer.emit("phase", phase="evaluating", epoch=s.epoch)  # the faces show it
            measured = self.evaluate()
        robust = measured["robust_acc"]
        seconds = time.perf_counter() - started
        record = {
            "epoch": s.epoch,
            "train": train_means,
            **measured,
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
        good = self.run_dir / "guard.safetensors"
        if no_best_yet and self.guard_stopped and good.exists() and not improved:
            # stopped before any validation best: the guard's last good weights are the selection
            best = ckpt.save(self.run_dir / "best.safetensors", *ckpt.load(good))
            self.writer.emit("checkpoint_saved", path=str(best), epoch=s.epoch, kind="best")
        elif improved or (no_best_yet and final):
            best = ckpt.save(
                self.run_dir / "best.safetensors",
                ckpt.pack_model(self.model),
                self._meta("weights", self.state.metrics()),
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
            **self.state.metrics(),
        )
        return Outcome("interrupted", self.run_dir, self.state.metrics())
