"""Time to robust: wall seconds until a run's validation PGD-20 first reaches a target.

What it measures: for each preset (default: `demo` and `mnist5k_madry`), with
the fast path on (`perf.amp = "auto"`, bf16 where the CPU has it natively)
and off (`perf.amp = "off"`, fp32), the real `Trainer` trains as `workbench
run --headless` would, and after every epoch measures robust accuracy under
PGD-20 on the whole validation split (400 mnist-5k digits; the demo's own
setting, imposed on mnist5k_madry too so both are judged by the same test).
The clock starts before the Trainer is built and stops at the `epoch_end`
event whose validation robust accuracy first reaches `--target` (default 60%),
so it counts everything a user waits for: data split, model, training,
per-epoch evaluation and checkpoint writes. Training seconds alone (the
epochs' `seconds - eval_seconds`) are shown beside it. The run stops there;
a run that never reaches the target within the preset's epochs says so.

Why: throughput ratios say how fast a step is; a user wants to know how long
until the model is robust. The validation split is the honest place to watch
(the test split is for the final number only).

How: one process, the sides interleaved (demo on, demo off, madry on, madry
off), each in a fresh temporary run directory, malloc thresholds pinned as
`workbench` pins them. The evaluation itself is always fp32.

    python bench/time_to_robust.py                 # about 15 minutes on 2 cores
    python bench/time_to_robust.py --presets demo --target 50 --json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import add_common_args, cpu_count, pin_malloc

from engine.data import load_dataset
from engine.records.events import EventWriter
from engine.spec.catalog import resolve_preset
from engine.spec.preset_files import load_preset
from engine.train.trainer import Trainer

SIDES = {"on": "auto", "off": "off"}  # fast path -> perf.amp


def time_to_target(preset: str, amp: str, target: float, seed: int) -> dict[str, Any]:
    """Train `preset` until validation PGD-20 >= target (percent); the epochs and when."""
    cfg = load_preset(
        resolve_preset(preset),
        [
            f"perf.amp={amp}",
            "eval.samples=400",
            "eval.steps=20",
            "eval.every=1",
            "eval.suite=quick",
            "train.device=cpu",
            f"train.seed={seed}",
        ],
    )
    data = load_dataset(cfg.data.dataset, cfg.data.root, cfg.data.download)
    run_dir = Path(tempfile.mkdtemp(prefix="bench-ttr-"))
    stop = threading.Event()
    epochs: list[dict[str, Any]] = []
    perf: dict[str, Any] = {}
    t0 = time.perf_counter()
    train_s = 0.0

    def listen(e: dict[str, Any]) -> None:
        nonlocal train_s
        if e["type"] == "run_started":
            perf.update(e["perf"])
        if e["type"] != "epoch_end" or e["robust_acc"] is None:
            return
        train_s += e["seconds"] - e["eval_seconds"]
        epochs.append(
            {
                "epoch": e["epoch"],
                "wall_s": round(time.perf_counter() - t0, 2),
                "train_s": round(train_s, 2),
                "val_clean": e["clean_acc"],
                "val_pgd20": e["robust_acc"],
            }
        )
        if e["robust_acc"] >= target:
            stop.set()

    try:
        (run_dir / "checkpoints").mkdir()
        writer = EventWriter(run_dir / "events.jsonl")
        writer.listeners.append(listen)
        outcome = Trainer(cfg, data, run_dir, writer, torch.device("cpu"), stop).run()
        writer.close()
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    if outcome.status == "failed":
        raise RuntimeError(f"{preset} ({amp}) failed: {outcome.error}")
    hit = next((r for r in epochs if r["val_pgd20"] >= target), None)
    return {
        "preset": preset,
        "amp": perf.get("amp"),
        "amp_requested": amp,
        "epochs_max": cfg.train.epochs,
        "reached": hit is not None,
        "epoch": hit["epoch"] if hit else None,
        "wall_s": hit["wall_s"] if hit else None,
        "train_s": hit["train_s"] if hit else None,
        "history": epochs,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", default="demo,mnist5k_madry", help="comma-separated preset names")
    p.add_argument("--target", type=float, default=60.0, help="validation PGD-20, percent")
    p.add_argument("--sides", default="on,off", help="fast path: on, off, or both")
    add_common_args(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(cpu_count())
    pinned = pin_malloc() if args.pin_malloc else False
    out = sys.stderr if args.json else sys.stdout

    def log(msg: str) -> None:
        print(msg, file=out, flush=True)

    log(
        f"time to validation PGD-20 >= {args.target:g}% on mnist-5k (400 validation digits), "
        f"cpu, {cpu_count()} threads, torch {torch.__version__}, "
        f"malloc {'pinned' if pinned else 'adaptive'}"
    )
    results = []
    for preset in args.presets.split(","):
        for side in args.sides.split(","):
            r = time_to_target(preset, SIDES[side], args.target, args.seed)
            r["fast_path"] = side
            results.append(r)
            trace = ", ".join(f"{h['epoch']}:{h['val_pgd20']:.1f}" for h in r["history"])
            when = (
                f"epoch {r['epoch']}, {r['wall_s']:.0f} s wall ({r['train_s']:.0f} s training)"
                if r["reached"]
                else f"not reached in {r['epochs_max']} epochs"
            )
            log(f"  {preset:14s} fast path {side:3s} ({r['amp']}): {when}")
            log(f"    epoch:val PGD-20  {trace}")
    for preset in args.presets.split(","):
        on = next((r for r in results if r["preset"] == preset and r["fast_path"] == "on"), None)
        off = next((r for r in results if r["preset"] == preset and r["fast_path"] == "off"), None)
        if on and off and on["reached"] and off["reached"]:
            log(f"  {preset}: fast path {off['wall_s'] / on['wall_s']:.2f}x sooner robust")
    if args.json:
        print(json.dumps({"target": args.target, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
