"""Adversarial-training throughput: the engine's Trainer against a bare hand-written loop.

What it measures: samples per second of Madry PGD adversarial training on the
bundled mnist-5k split (4000 training images), CPU, for

  * ours: the real `engine.train.trainer.Trainer`, built and run the way
    `workbench run --headless` does (preset `presets/mnist_madry.toml` with
    `--set` overrides, events to `events.jsonl`, checkpoints on disk), only
    without the live view. Training throughput = training samples / training
    time, where training time = each epoch's `seconds - eval_seconds` from the
    `epoch_end` events (the per-epoch evaluation is not training). Also shown:
    samples / epoch seconds with the evaluation included, and samples / the
    wall time of the whole `trainer.run()` (evaluation and checkpoint writes);
  * bare: a plain Python loop doing the same math with nothing else: shuffled
    batches of the same uint8 tensors (float, /255, no augmentation), the same
    `madry_cnn` + linear head, hand-written PGD (uniform(-eps, eps) start,
    sign-gradient ascent on CE via `torch.autograd.grad` w.r.t. the input only,
    projection onto the eps-ball and [0, 1], model.eval() while crafting, then
    model.train()), CE on the adversarial batch, Adam step.

Why: the engine adds bookkeeping around that math (learning-rate schedule,
on-device metric sums read every `log_every` steps, NaN checks, events,
resumable state). This shows what it costs; the target is ours / bare >= 0.97
(at most 3% overhead) on training throughput.

How: both run in one process with the same batch size, PGD steps, eps, step
size, optimiser (Adam, the preset's lr) and number of samples, after an untimed
warm-up of each on one full and one partial batch. The repeats are interleaved
(ours, bare, ours, bare, ...) so machine noise hits both alike; the median of
each is reported. Torch's global determinism flag, which the Trainer switches on
for CPU runs (`train.deterministic`), is set the same way for the bare loop.
glibc malloc's adaptive mmap/trim thresholds are pinned (`--no-pin-malloc` to
keep them): left adaptive, they decide by allocation history whether a side
re-faults its activation buffers from the OS every step (millions of minor page
faults per epoch, 10-20% of the time here), which swung this ratio by 15%
between otherwise identical runs. Minor page faults per side are printed.

    python bench/train_throughput.py                   # 1 epoch, PGD-10, 3 repeats each
    python bench/train_throughput.py --limit 512 --steps 2 --repeats 1   # quick check
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# Runnable as `python bench/train_throughput.py` from a checkout that is not installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import add_common_args, cpu_count, minor_faults, pin_malloc

from engine.data import Dataset, load_dataset
from engine.models import build_model
from engine.records.events import EventWriter, read_events
from engine.spec.catalog import resolve_preset
from engine.spec.config import PresetConfig
from engine.spec.preset_files import load_preset
from engine.splits import split
from engine.train.trainer import Trainer

TARGET = 0.97  # the engine's bookkeeping, same math: at most 3% slower than the bare loop
FAST_TARGET = 1.6  # the fast path (--amp auto/bf16) over the fp32 bare loop
PRESET = resolve_preset("mnist_madry")


def make_config(
    args: argparse.Namespace, limit: int | None, amp: str | None = None
) -> PresetConfig:
    overrides = [
        "data.dataset=mnist-5k",
        f"model.arch={args.arch}",
        f"perf.amp={amp or args.amp}",
        f"train.epochs={args.epochs}",
        f"attack.steps={args.steps}",
        f"attack.step={args.step}",
        "eval.samples=100",
        "eval.steps=1",
        "data.augment=false",
        f"data.batch_size={args.batch}",
        "train.device=cpu",
    ]
    if limit is not None:
        overrides.append(f"data.train_limit={limit}")
    return load_preset(PRESET, overrides)


def run_ours(cfg: PresetConfig, data: Dataset) -> dict[str, float]:
    """One Trainer run in a fresh temporary run directory; timings from its events."""
    run_dir = Path(tempfile.mkdtemp(prefix="bench-train-"))
    try:
        (run_dir / "checkpoints").mkdir()
        writer = EventWriter(run_dir / "events.jsonl")
        marks: list[tuple[dict[str, Any], float, int]] = []
        writer.listeners.append(lambda e: marks.append((e, time.process_time(), minor_faults())))
        trainer = Trainer(cfg, data, run_dir, writer, torch.device("cpu"), threading.Event())
        t0, c0 = time.perf_counter(), time.process_time()
        outcome = trainer.run()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        writer.close()
        if outcome.status != "finished":
            raise RuntimeError(f"engine run ended {outcome.status}: {outcome.error}")
        events = read_events(run_dir / "events.jsonl")
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    started = next(e for e in events if e["type"] == "run_started")
    epochs = [e for e in events if e["type"] == "epoch_end"]
    samples = started["train_size"] * len(epochs)
    train_s = sum(e["seconds"] - e["eval_seconds"] for e in epochs)
    epoch_s = sum(e["seconds"] for e in epochs)
    last = epochs[-1]
    return {
        "samples": samples,
        "train_s": train_s,
        "epoch_s": epoch_s,
        "run_s": wall,
        **training_usage(marks),
        "run_cpu_s": cpu,
        "loss": last["train"].get("loss", float("nan")),
        "clean_acc": last["clean_acc"],
        "robust_acc": last["robust_acc"],
        "amp": started["perf"]["amp"],
    }


def training_usage(marks: list[tuple[dict[str, Any], float, int]]) -> dict[str, float]:
    """Process CPU seconds and minor page faults of the training loops, from event marks.

    An epoch's training runs from the last non-step event before its steps
    (run_started, or the previous epoch's last checkpoint_saved) to its last
    step event (batch == batches); evaluation and checkpoints fall outside.
    """
    cpu, faults, start = 0.0, 0, None
    for event, c, f in marks:
        if event["type"] != "step":
            start = (c, f)
        elif event["batch"] == event["batches"] and start is not None:
            cpu += c - start[0]
            faults += f - start[1]
            start = None
    return {"train_cpu_s": cpu, "train_faults": faults}


def run_bare(cfg: PresetConfig, data: Dataset, seed: int) -> dict[str, float]:
    """The same adversarial training written as one plain loop; returns its wall time."""
    torch.manual_seed(seed)
    model = build_model(cfg.model.arch, cfg.model.head, (1, 28, 28), 10)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr)
    limit = cfg.data.train_limit
    train = split(data, cfg.data.val_size, cfg.data.val_seed).train[:limit]  # the Trainer's
    x_all, y_all = data.train_x[train], data.train_y[train]
    eps, step, steps, batch = cfg.attack.eps, cfg.attack.step, cfg.attack.steps, cfg.data.batch_size
    gen = torch.Generator().manual_seed(seed)
    n = len(y_all)
    loss_sum = torch.zeros(())
    t0, c0, f0 = time.perf_counter(), time.process_time(), minor_faults()
    for _ in range(cfg.train.epochs):
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, batch):
            idx = order[i : i + batch]
            x = x_all[idx].float().div_(255.0)
            y = y_all[idx]
            x_adv = pgd(model, x, y, eps, step, steps)
            loss = F.cross_entropy(model(x_adv), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach()
    final = loss_sum.item()  # one host sync at the end, as a bare script would print it
    wall, cpu, faults = time.perf_counter() - t0, time.process_time() - c0, minor_faults() - f0
    batches = cfg.train.epochs * -(-n // batch)
    return {
        "samples": n * cfg.train.epochs,
        "train_s": wall,
        "train_cpu_s": cpu,
        "train_faults": faults,
        "loss": final / batches,
    }


def pgd(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, step: float, steps: int
) -> torch.Tensor:
    """Madry's PGD, last iterate: random start, sign steps, project, clip; eval mode inside."""
    model.eval()
    lower, upper = (x - eps).clamp(min=0.0), (x + eps).clamp(max=1.0)
    x_adv = torch.clamp(x + torch.empty_like(x).uniform_(-eps, eps), min=lower, max=upper)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y)
        (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = torch.clamp(x_adv.detach() + step * grad.sign(), min=lower, max=upper)
    model.train()
    return x_adv


def accuracy_check(args: argparse.Namespace, data: Dataset, log: Any) -> dict[str, Any]:
    """Train once with --amp and once in fp32 (same seed, data, steps); PGD-20 paired on test."""
    from engine.attacks import PGD
    from engine.checkpoint_io import load_model
    from engine.eval.run import run_suite
    from engine.eval.stats import paired

    outcomes = {}
    for amp in (args.amp, "off"):
        cfg = make_config(args, args.limit, amp)
        run_dir = Path(tempfile.mkdtemp(prefix="bench-acc-"))
        try:
            (run_dir / "checkpoints").mkdir()
            writer = EventWriter(run_dir / "events.jsonl")
            Trainer(cfg, data, run_dir, writer, torch.device("cpu"), threading.Event()).run()
            writer.close()
            _, model = load_model(run_dir / "last.safetensors")
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)
        n = args.check_accuracy
        x, y = data.test_x[:n].float() / 255, data.test_y[:n]
        attack = PGD(cfg.attack.eps, 0.01, 20)
        res = run_suite(model, x, y, {"PGD-20": attack}, 500, args.seed)
        outcomes[amp] = res.correct["PGD-20"].tolist()
    diff = paired(outcomes[args.amp], outcomes["off"])
    log(
        f"accuracy check: PGD-20 on {diff.n} test images, amp {args.amp} {diff.a:.2f}% vs "
        f"fp32 {diff.b:.2f}%: {diff.diff:+.2f} points [{diff.low:.1f}, {diff.high:.1f}], "
        f"McNemar p = {diff.p:.3g}"
    )
    return diff.to_dict()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=f"Adversarial-training throughput: engine Trainer vs a bare loop "
        f"(ratio target >= {TARGET}).",
    )
    p.add_argument("--steps", type=int, default=10, help="PGD steps of the training adversary (10)")
    p.add_argument("--step", type=float, default=0.04, help="PGD step size (0.04; eps is 0.3)")
    p.add_argument("--batch", type=int, default=128, help="training batch size (128)")
    p.add_argument("--epochs", type=int, default=1, help="epochs per timed run (1 = 4000 samples)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each, interleaved (3)")
    p.add_argument(
        "--limit",
        type=int,
        default=None,
        help="train on the first N of the 3600 training images only (quick checks)",
    )
    p.add_argument("--arch", default="madry_cnn", help="madry_cnn (default) or smallcnn")
    p.add_argument(
        "--amp",
        default="off",
        choices=("off", "auto", "bf16"),
        help="ours: fp32 (off, the overhead check) or the fast path (auto, bf16; target 1.6x)",
    )
    p.add_argument(
        "--check-accuracy",
        type=int,
        default=0,
        metavar="N",
        help="also train once with this --amp and once fp32, and compare their PGD-20 "
        "accuracy on the first N test images, paired (McNemar)",
    )
    add_common_args(p)
    args = p.parse_args(argv)
    if min(args.steps, args.batch, args.epochs, args.repeats) < 1:
        p.error("--steps, --batch, --epochs and --repeats must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    threads = cpu_count()
    torch.set_num_threads(threads)
    pinned = pin_malloc() if args.pin_malloc else False
    out = sys.stderr if args.json else sys.stdout

    def log(msg: str) -> None:
        print(msg, file=out, flush=True)

    data = load_dataset("mnist-5k")
    cfg = make_config(args, args.limit)
    torch.use_deterministic_algorithms(cfg.train.deterministic, warn_only=True)
    n = min(len(split(data).train), args.limit or len(data.train_y))
    log(
        f"training throughput: {args.arch}, amp {args.amp}, mnist-5k ({n} train images), "
        f"batch {args.batch}, "
        f"PGD-{args.steps} eps {cfg.attack.eps} step {args.step}, Adam lr {cfg.optim.lr}, "
        f"{args.epochs} epoch(s) per run, cpu, {threads} threads, torch {torch.__version__}, "
        f"deterministic algorithms {torch.are_deterministic_algorithms_enabled()}, "
        f"malloc thresholds {'pinned' if pinned else 'adaptive (stock)'}"
    )

    # Warm-up: one full and one partial batch through each, so first-call costs
    # (allocator, oneDNN primitives for both batch shapes) land on neither side.
    warm_n = min(n, args.batch + (n % args.batch or args.batch // 2))
    warm = make_config(argparse.Namespace(**{**vars(args), "epochs": 1}), warm_n)
    t0 = time.perf_counter()
    run_ours(warm, data)
    run_bare(warm, data, args.seed)
    log(f"  warm-up on {warm_n} images: {time.perf_counter() - t0:.1f} s")

    ours: list[dict[str, float]] = []
    bare: list[dict[str, float]] = []
    for r in range(args.repeats):
        o = run_ours(cfg, data)
        ours.append(o)
        b = run_bare(cfg, data, args.seed)
        bare.append(b)
        log(
            f"  repeat {r + 1}/{args.repeats}: ours train {o['train_s']:.2f} s "
            f"({o['samples'] / o['train_s']:.1f} samples/s), epoch incl. eval "
            f"{o['epoch_s']:.2f} s, run() {o['run_s']:.2f} s, train cpu {o['train_cpu_s']:.1f} s, "
            f"{o['train_faults']} faults | bare {b['train_s']:.2f} s "
            f"({b['samples'] / b['train_s']:.1f} samples/s), cpu {b['train_cpu_s']:.1f} s, "
            f"{b['train_faults']} faults"
        )

    samples = ours[0]["samples"]
    assert samples == bare[0]["samples"], (samples, bare[0]["samples"])
    med = {
        "ours_train_s": statistics.median(o["train_s"] for o in ours),
        "ours_epoch_s": statistics.median(o["epoch_s"] for o in ours),
        "ours_run_s": statistics.median(o["run_s"] for o in ours),
        "bare_s": statistics.median(b["train_s"] for b in bare),
    }
    med_cpu = {
        "ours_train_cpu_s": statistics.median(o["train_cpu_s"] for o in ours),
        "bare_cpu_s": statistics.median(b["train_cpu_s"] for b in bare),
    }
    sps = {k.removesuffix("_s"): samples / v for k, v in med.items()}
    ratio = sps["ours_train"] / sps["bare"]
    ratio_e2e = sps["ours_epoch"] / sps["bare"]
    ratio_run = sps["ours_run"] / sps["bare"]
    # Per-repeat ratios: robust to drifts that slow a whole repeat (noisy shared machines).
    paired = statistics.median(b["train_s"] / o["train_s"] for o, b in zip(ours, bare, strict=True))
    ratio_cpu = med_cpu["bare_cpu_s"] / med_cpu["ours_train_cpu_s"]
    target = TARGET if args.amp == "off" else FAST_TARGET
    result: dict[str, Any] = {
        "benchmark": "train_throughput",
        "samples_per_run": samples,
        "batch": args.batch,
        "steps": args.steps,
        "step": args.step,
        "eps": cfg.attack.eps,
        "epochs": args.epochs,
        "repeats": args.repeats,
        "threads": threads,
        "torch": torch.__version__,
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "malloc_pinned": pinned,
        "median_s": med,
        "median_cpu_s": med_cpu,
        "samples_per_s": sps,
        "ratio": ratio,
        "ratio_paired_median": paired,
        "ratio_cpu_time": ratio_cpu,
        "ratio_incl_eval": ratio_e2e,
        "ratio_whole_run": ratio_run,
        "arch": args.arch,
        "amp": args.amp,
        "amp_used": ours[0]["amp"],
        "target": target,
        "target_met": ratio >= target,
        "ours_runs": ours,
        "bare_runs": bare,
    }
    if args.check_accuracy:
        result["accuracy_check"] = accuracy_check(args, data, log)
    if args.json:
        print(json.dumps(result))
        return 0
    last_o, last_b = ours[-1], bare[-1]
    print(f"\nmedian over {args.repeats} run(s) of {samples} samples each:")
    print(
        f"  ours, training only          {med['ours_train_s']:8.2f} s  "
        f"{sps['ours_train']:8.1f} samples/s"
    )
    print(
        f"  ours, epoch incl. eval       {med['ours_epoch_s']:8.2f} s  "
        f"{sps['ours_epoch']:8.1f} samples/s"
    )
    print(
        f"  ours, whole run() (+ckpts)   {med['ours_run_s']:8.2f} s  "
        f"{sps['ours_run']:8.1f} samples/s"
    )
    print(f"  bare loop                    {med['bare_s']:8.2f} s  {sps['bare']:8.1f} samples/s")
    faults_o = statistics.median(o["train_faults"] for o in ours)
    faults_b = statistics.median(b["train_faults"] for b in bare)
    print(f"  minor page faults while training (median): ours {faults_o:.0f}, bare {faults_b:.0f}")
    print(
        f"  last run: ours mean train loss {last_o['loss']:.4f}, clean acc "
        f"{last_o['clean_acc']:.1f}%, robust acc {last_o['robust_acc']:.1f}% "
        f"(eval PGD-1 on 100) | bare mean train loss {last_b['loss']:.4f}"
    )
    verdict = "met" if ratio >= target else "NOT met"
    print(f"\nratio ours/bare (training throughput): {ratio:.3f}  (target >= {target}: {verdict})")
    print(f"ratio ours/bare incl. per-epoch eval:  {ratio_e2e:.3f}")
    print(f"ratio ours/bare whole run() (eval + checkpoints): {ratio_run:.3f}")
    print(
        f"noise checks (training): median of per-repeat ratios {paired:.3f}, "
        f"ratio of CPU times {ratio_cpu:.3f} (should agree with the first line)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
