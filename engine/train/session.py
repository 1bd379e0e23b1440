"""A training run from request to outcome: everything around the loop that makes it safe.

`prepare` loads and checks the preset, the run name and the device before
anything is written; `run` then creates (or reopens) the run directory, holds
its lock, writes the resolved `config.toml`, coordinates DDP ranks (one run
name, rank 0 downloads alone and alone writes), trains, and turns a crash
into `crash.log` plus a `run_failed` event. The faces add the live view and
the exit code (engine/train/trainer.py `Outcome.status`).
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch

from engine.data import load_dataset
from engine.devices import resolve_device
from engine.records.checkpoint_header import atomic_write_bytes
from engine.records.events import EventWriter, Listener
from engine.records.run_request import Preflight, RunRequest
from engine.records.runs import RunLock, create_run_dir
from engine.train import distributed
from engine.train.trainer import Outcome, Trainer


@dataclass(frozen=True)
class PreparedRun(Preflight):
    """A request checked against everything that can be checked before writing anything."""

    device: torch.device


def prepare(req: RunRequest, nproc: int = 1, new_run: bool = True) -> PreparedRun:
    """The request's preflight (engine/records/run_request.py), then its device and distributed
    settings on this machine; write nothing.

    `nproc` is the processes of the job on this machine (a rank's request says 1);
    `new_run=False` skips the "name already taken" check (DDP ranks > 0, whose
    rank 0 may already have made the folder).
    """
    pre = req.preflight(new_run)
    dev = resolve_device(
        pre.cfg.train.device, f"--device {req.device}" if req.device else pre.source
    )
    distributed.check(pre.cfg.distributed, dev, nproc, pre.source)
    return PreparedRun(pre.request, pre.cfg, pre.source, pre.preset_path, pre.run_dir, dev)


def run(
    req: RunRequest,
    stop: threading.Event,
    listeners: list[Listener] | None = None,
    around_training: Callable[[], AbstractContextManager[Any]] = nullcontext,
) -> Outcome:
    """Train the request in this process (one rank of a DDP job, or the whole run).

    `listeners` see every event as it is written (the headless view);
    `around_training` wraps the loop itself (the live display), so errors found
    while setting up end before any display starts. Bad input raises
    WorkbenchError with nothing written; a crash in the loop is recorded and
    returned as a failed outcome; a second interrupt returns at once with
    `saved=False`.
    """
    world = distributed.env_world()  # set by torchrun or --nproc; rank 0 of 1 otherwise
    prep = prepare(req, world.local_size, new_run=world.is_main)
    dev = distributed.init(world, prep.cfg.distributed, prep.device)
    cfg, run_dir = prep.cfg, prep.run_dir
    try:
        if world.enabled and req.resume is None and req.name is None:  # one name: rank 0's
            run_dir = req.runs_dir / distributed.broadcast(run_dir.name, world)
        if cfg.data.download and not world.is_main:
            distributed.barrier(world)  # rank 0 downloads alone
        try:
            data = load_dataset(cfg.data.dataset, cfg.data.root, cfg.data.download)
        finally:  # also when it fails: the others then fail with the same one line, not hang
            if cfg.data.download and world.is_main:
                distributed.barrier(world)
        trainer = Trainer(cfg, data, run_dir, EventWriter(None), dev, stop, world)
        if not world.is_main:  # ranks > 0 write nothing: no folder, lock, config or events
            if req.resume is not None:
                trainer.resume(run_dir / "last.safetensors")
            return _train(trainer, around_training, quiet=True)
        if req.resume is not None:
            lock = RunLock(run_dir).acquire()
            try:
                trainer.resume(run_dir / "last.safetensors")
            except BaseException:
                lock.release()
                raise
        else:
            run_dir = create_run_dir(req.runs_dir, run_dir.name)
            lock = RunLock(run_dir).acquire()
        writer = sink = None
        try:
            atomic_write_bytes(run_dir / "config.toml", trainer.cfg.to_toml().encode())
            writer = trainer.writer = EventWriter(run_dir / "events.jsonl")
            writer.listeners.extend(listeners or [])
            if trainer.cfg.log.tensorboard:  # live TensorBoard files beside the events
                from engine.report.trackers import TensorBoardSink

                sink = TensorBoardSink(run_dir)
                writer.listeners.append(sink)
            return _train(trainer, around_training)
        finally:
            if writer is not None:
                writer.close()
            if sink is not None:
                sink.close()
            lock.release()
    finally:
        distributed.shutdown()


def _train(
    trainer: Trainer,
    around_training: Callable[[], AbstractContextManager[Any]],
    quiet: bool = False,
) -> Outcome:
    """The loop, with an abort (a second Ctrl-C) and a crash each leaving a last word.

    `quiet`: a DDP rank > 0, which writes nothing (rank 0 records the job).
    """
    writer = trainer.writer
    try:
        with nullcontext() if quiet else around_training():
            return trainer.run()
    except KeyboardInterrupt:
        writer.emit("run_finished", status="interrupted", saved=False)
        return Outcome("interrupted", trainer.run_dir, trainer.state.metrics(), saved=False)
    except Exception as exc:  # a crash: keep the last good checkpoint, log the traceback
        error = f"{type(exc).__name__}: {exc}"
        if quiet:
            return Outcome("failed", trainer.run_dir, trainer.state.metrics(), error)
        log = trainer.run_dir / "crash.log"
        log.write_text(traceback.format_exc(), encoding="utf-8")
        writer.emit("run_failed", error=error, log=str(log))
        return Outcome(
            "failed", trainer.run_dir, trainer.state.metrics(), f"{error} (traceback in {log})"
        )
