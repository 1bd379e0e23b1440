"""CIFAR-10 PGD-10 adversarial-training throughput, its FLOPs, and the share of the device's peak.

What it measures: images per second of Madry PGD-10 adversarial training
(eps 8/255, step 2/255, random start; SGD with momentum; flip + 4-px crop
on the device) of a CIFAR ResNet-18 (`--arch`), through the engine's own
`Trainer` with the `[perf]` options given on the command line. Each training
image counts once per step, although a step runs 11 forward and backward
passes over it (10 attack steps + the update).

How: the Trainer is built as `workbench run` builds it; its training loop
(`Trainer._train_epoch`: loader, on-device augmentation, attack, update,
metrics read every `--steps` steps) runs `--warmup` untimed steps (first-call
costs, cuDNN autotuning, torch.compile) and then one timed epoch of `--steps`
batches, bracketed by device synchronisations. The data are `cifar10` when its files are under
data/, else `synthetic-cifar10` (same shape and normalisation; its 512 images
are tiled to fill the steps), so the numbers need no download.

FLOPs: `torch.utils.flop_counter.FlopCounterMode` counts one training step
(fp32, eager, on the same batch): the 10 attack passes (forward, then backward
to the input only) and the update (forward, backward to weights and input).
It counts matmuls and convolutions, the "model FLOPs" convention; elementwise
and normalisation work is not counted. Achieved FLOP/s = FLOPs per step x
steps / timed seconds.

Peak: the best of several large matmuls timed on the same device in the
training dtype (bf16 on CUDA with `--amp bf16`, fp32 otherwise; fp32 matmuls
on CUDA use TF32 only if torch's default says so). The ratio achieved / peak
says how much of the matrix hardware the training step keeps busy.

Target (issue 6): >= 5,000 images/s on one H100-class GPU with `--amp bf16`.

    python bench/cifar_throughput.py                      # CPU: batch 32, 3 steps (~2-3 min)
    python bench/cifar_throughput.py --device cuda --amp bf16 --channels-last --cudnn-benchmark
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

# Runnable as `python bench/cifar_throughput.py` from a checkout that is not installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import add_common_args, cpu_count, pin_malloc

from engine.data import Dataset, load_dataset
from engine.devices import release_memory, resolve_device
from engine.records.events import EventWriter
from engine.spec.config import PresetConfig, validate
from engine.train import perf
from engine.train.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
TARGET = 5000.0  # images/s, one H100-class GPU, bf16
EPS, STEP, PGD_STEPS = 8 / 255, 2 / 255, 10


def pick_data(choice: str, root: Path) -> str:
    """`auto`: real CIFAR-10 when its python batches are under `root`, else the synthetic one."""
    if choice != "auto":
        return choice
    return "cifar10" if (root / "cifar-10-batches-py").is_dir() else "synthetic-cifar10"


def tiled(data: Dataset, n: int) -> Dataset:
    """The dataset with its training split repeated to at least n images (synthetic: 512)."""
    have = len(data.train_y)
    if have >= n:
        return data
    reps = -(-n // have)
    return Dataset(
        data.name,
        data.train_x.repeat(reps, 1, 1, 1)[:n],
        data.train_y.repeat(reps)[:n],
        data.test_x,
        data.test_y,
        data.num_classes,
    )


def make_config(args: argparse.Namespace, dataset: str, batch: int | str, n: int) -> PresetConfig:
    return validate(
        {
            "name": "cifar_throughput",
            "data": {
                "dataset": dataset,
                "root": str(args.root),
                "batch_size": batch,
                "augment": True,
                "flip": True,
                "crop_padding": 4,
                "train_limit": n,
            },
            "model": {"arch": args.arch, "head": "linear"},
            "method": {"name": "madry"},
            "attack": {"kind": "pgd", "eps": EPS, "step": STEP, "steps": PGD_STEPS},
            "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4},
            "train": {
                "epochs": 1,
                "seed": args.seed,
                "device": args.device,
                "log_every": args.steps,
            },
            "eval": {"samples": 16, "steps": 1},
            "perf": {
                "amp": args.amp,
                "channels_last": args.channels_last,
                "cudnn_benchmark": args.cudnn_benchmark,
                "compile": args.compile,
            },
        },
        source="bench/cifar_throughput.py",
    )


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _GlobalOnly:
    """Stands in for FlopCounterMode's module tracker, whose backward hooks break the attack's
    `torch.autograd.grad` w.r.t. a leaf input ("A leaf node was passed to
    _will_engine_execute_node"); we only need the global total anyway."""

    parents = frozenset({"Global"})

    def __enter__(self) -> _GlobalOnly:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def flop_counter() -> FlopCounterMode:
    """torch's FlopCounterMode (its FLOP formulas), counting globally, without printing."""
    fc = FlopCounterMode(display=False)
    fc.mod_tracker = _GlobalOnly()  # type: ignore[assignment]
    return fc


def count_flops(t: Trainer, batch: int) -> dict[str, int]:
    """FLOPs of one training step (eager fp32), split into the attack and the update."""
    model, device = t.model, t.device
    x = t.train_loader.x[:batch].float().div_(255.0)
    y = t.train_loader.y[:batch]
    with perf.preserved_state(model, t.optim, device):
        model.train()
        with flop_counter() as attack_fc:
            x_adv = t.method.adversary(model, x, y)
        step = perf.make_step_trial(model, t.method, t.optim, x, y, device)
        with flop_counter() as step_fc:
            step(batch)
        with flop_counter() as fwd_fc, torch.no_grad():
            model(x_adv)
    total = step_fc.get_total_flops()
    attack = attack_fc.get_total_flops()
    return {
        "step": total,
        "attack": attack,
        "update": total - attack,
        "forward": fwd_fc.get_total_flops(),
    }


def measure_peak(device: torch.device, dtype: torch.dtype, repeats: int = 5) -> dict[str, Any]:
    """Best-of-`repeats` FLOP/s of a square matmul (8192 on CUDA, 2048 on CPU) in `dtype`."""
    n = 8192 if device.type == "cuda" else 2048
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    inner = 20 if device.type == "cuda" else 2
    a @ b  # warm-up
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            a @ b
        sync(device)
        best = min(best, (time.perf_counter() - t0) / inner)
    return {"n": n, "dtype": str(dtype).removeprefix("torch."), "flops_per_s": 2 * n**3 / best}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({cpu_count()} threads)"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="CIFAR-10 ResNet-18 PGD-10 adversarial training: images/s, FLOPs, share of "
        f"peak (target >= {TARGET:,.0f} images/s on one H100 with bf16).",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (auto)")
    p.add_argument("--arch", default="resnet18", help="model architecture (resnet18)")
    p.add_argument(
        "--data",
        default="auto",
        help="dataset: auto (cifar10 if under --root, else synthetic-cifar10) or a registry name",
    )
    p.add_argument("--root", type=Path, default=REPO / "data", help="data root (data/)")
    p.add_argument("--batch", default=None, help='batch size or "auto" (32 on CPU, 512 on CUDA)')
    p.add_argument("--steps", type=int, default=None, help="timed steps (3 on CPU, 50 on CUDA)")
    p.add_argument(
        "--warmup", type=int, default=None, help="untimed warm-up steps (1 on CPU, 20 on CUDA)"
    )
    p.add_argument("--amp", choices=["off", "bf16"], default="off", help="perf.amp (off)")
    p.add_argument("--channels-last", action="store_true", help="perf.channels_last")
    p.add_argument("--cudnn-benchmark", action="store_true", help="perf.cudnn_benchmark")
    p.add_argument("--compile", action="store_true", help="perf.compile (torch.compile)")
    p.add_argument("--no-flops", dest="flops", action="store_false", help="skip FLOP counting")
    add_common_args(p)
    args = p.parse_args(argv)
    if args.batch is not None and args.batch != "auto":
        if not args.batch.isdigit() or int(args.batch) < 1:
            p.error('--batch must be a positive integer or "auto"')
        args.batch = int(args.batch)
    if (args.steps is not None and args.steps < 1) or (args.warmup or 0) < 0:
        p.error("--steps must be >= 1 and --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = resolve_device(args.device, "--device")
    args.device = str(device)
    on_cuda = device.type == "cuda"
    if args.batch is None:
        args.batch = 512 if on_cuda else 32
    if args.steps is None:
        args.steps = 50 if on_cuda else 3
    if args.warmup is None:
        args.warmup = 20 if on_cuda else 1
    if not on_cuda:
        torch.set_num_threads(cpu_count())
    pinned = pin_malloc() if args.pin_malloc and not on_cuda else False
    out = sys.stderr if args.json else sys.stdout

    def log(msg: str) -> None:
        print(msg, file=out, flush=True)

    dataset = pick_data(args.data, args.root)
    raw = load_dataset(dataset, str(args.root))
    batch = args.batch
    if batch == "auto":  # resolve it as a run would (probe on CUDA), then size the data
        probe = tiled(raw, 65536)
        prober = Trainer(
            make_config(args, dataset, "auto", len(probe.train_y)),
            probe,
            Path(tempfile.gettempdir()),
            EventWriter(None),
            device,
        )
        batch = prober.fast.batch_size
        log(f"  batch_size = auto -> {batch}: {json.dumps(prober.fast.info.get('batch_probe'))}")
        del prober, probe
        release_memory(device)
    n = batch * args.steps
    data = tiled(raw, n)
    cfg = make_config(args, dataset, batch, n)
    log(
        f"cifar throughput: {args.arch}, {dataset} ({n} train images), batch {batch}, "
        f"PGD-{PGD_STEPS} eps 8/255 step 2/255, Madry AT, SGD, flip+crop on device, "
        f"{device_name(device)}, torch {torch.__version__}, amp {args.amp}, "
        f"channels_last {args.channels_last}, cudnn_benchmark {args.cudnn_benchmark}, "
        f"compile {args.compile}" + (f", malloc pinned {pinned}" if not on_cuda else "")
    )
    t_build = time.perf_counter()
    trainer = Trainer(
        cfg, data, Path(tempfile.gettempdir()), EventWriter(None), device, threading.Event()
    )
    for w in trainer.fast.warnings:
        log(f"  warning: {w}")
    log(f"  set-up {time.perf_counter() - t_build:.1f} s; perf {json.dumps(trainer.fast.info)}")

    losses: list[float] = []
    trainer.writer.listeners.append(
        lambda e: losses.append(e["loss"]) if e["type"] == "step" else None
    )
    # warm-up: the last `k` batches of an epoch (the loader resumes mid-epoch exactly)
    left, t0 = args.warmup, time.perf_counter()
    while left > 0:
        k = min(left, args.steps)
        trainer.state.step_in_epoch = args.steps - k
        trainer._train_epoch()
        left -= k
    sync(device)
    log(f"  warm-up: {args.warmup} step(s) in {time.perf_counter() - t0:.2f} s")
    trainer.state.step_in_epoch = trainer.state.global_step = 0
    sync(device)
    t0 = time.perf_counter()
    trainer._train_epoch()
    sync(device)
    seconds = time.perf_counter() - t0
    images_per_s = n / seconds
    log(f"  timed epoch: {args.steps} steps in {seconds:.2f} s, last mean loss {losses[-1]:.4f}")

    flops = count_flops(trainer, batch) if args.flops else None
    peak_dtype = torch.bfloat16 if (on_cuda and args.amp == "bf16") else torch.float32
    peak = measure_peak(device, peak_dtype)
    achieved = flops["step"] * args.steps / seconds if flops else None
    ratio = achieved / peak["flops_per_s"] if achieved else None
    result: dict[str, Any] = {
        "benchmark": "cifar_throughput",
        "device": device_name(device),
        "arch": args.arch,
        "dataset": dataset,
        "batch": batch,
        "batch_requested": args.batch,
        "steps": args.steps,
        "warmup_steps": args.warmup,
        "pgd_steps": PGD_STEPS,
        "perf": trainer.fast.info,
        "torch": torch.__version__,
        "seconds": seconds,
        "images_per_s": images_per_s,
        "step_ms": 1000 * seconds / args.steps,
        "flops_per_step": flops,
        "flops_per_image": flops["step"] / batch if flops else None,
        "achieved_flops_per_s": achieved,
        "peak": peak,
        "ratio_to_peak": ratio,
        "target_images_per_s": TARGET,
        "target_applies": on_cuda and args.amp == "bf16",
        "target_met": (images_per_s >= TARGET) if on_cuda else None,
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"\n{args.arch} PGD-{PGD_STEPS} adversarial training on {device_name(device)}:")
    print(
        f"  training throughput  {images_per_s:12,.1f} images/s  ({result['step_ms']:.1f} ms/step)"
    )
    if flops:
        print(
            f"  FLOPs per step       {flops['step']:12.4g}  (attack {flops['attack']:.4g} + "
            f"update {flops['update']:.4g}; = {flops['step'] / flops['forward']:.1f} forwards)"
        )
        print(f"  achieved             {achieved / 1e12:12.3f} TFLOP/s")
    print(
        f"  device peak          {peak['flops_per_s'] / 1e12:12.3f} TFLOP/s  ({peak['dtype']} "
        f"matmul {peak['n']}x{peak['n']})"
    )
    if ratio is not None:
        print(f"  achieved / peak      {ratio:12.1%}")
    goal = f"target >= {TARGET:,.0f} images/s on one H100-class GPU with bf16"
    if on_cuda:
        verdict = "met" if images_per_s >= TARGET else "NOT met"
        note = "" if args.amp == "bf16" else " (this run is not bf16: --amp bf16 for the target)"
        print(f"\n{goal}: {verdict}{note}")
    else:
        print(f"\n{goal}: not applicable, no GPU here (CPU figures above)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
