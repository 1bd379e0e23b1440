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

With `--full` every run trains all its preset's epochs (the time to the target
is still the first epoch that reached it) and then its checkpoint selected on
validation (`best.safetensors`) is evaluated with the `paper` suite on the
test split (`--test-samples` digits; 0: all 1,000), sanity checks included unless
`--skip-sanity` (the worst case is the same; the checks cost time), so
that "faster" never hides "less robust": the report gives the suite's worst
case with n and its 95% Wilson interval, its seconds, and what the run's
catastrophic-overfitting guard did (fast_at's preset has it on).

Why: throughput ratios say how fast a step is; a user wants to know how long
until the model is robust. The validation split is the honest place to watch
(the test split is for the final number only).

How: one process, the sides interleaved (demo on, demo off, madry on, madry
off), each in a fresh temporary run directory, malloc thresholds pinned as
`workbench` pins them. The evaluation itself is always fp32.

    python bench/time_to_robust.py                 # about 15 minutes on 2 cores
    python bench/time_to_robust.py --presets demo --target 50 --json
    python bench/time_to_robust.py --presets mnist5k_fast_at,mnist5k_madry,mnist5k_atblr \
        --sides on --full --test-samples 500      # per method: time to 60%, final worst case
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
from engine.eval import WORST
from engine.eval.evaluate import evaluate_checkpoint
from engine.records.events import EventWriter
from engine.spec.catalog import resolve_preset, resolve_suite
from engine.spec.preset_files import load_preset
from engine.train.trainer import Trainer

SIDES = {"on": "auto", "off": "off"}  # fast path -> perf.amp


def time_to_target(
    preset: str,
    amp: str,
    target: float,
    seed: int,
    full: bool = False,
    test_samples: int = 0,
    sanity: bool = True,
    sets: list[str] | None = None,
) -> dict[str, Any]:
    """Train `preset` until validation PGD-20 >= target (percent); the epochs and when.

    `full`: train every epoch, then the `paper` suite on `test_samples` test digits.
    """
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
            *(sets or []),
        ],
    )
    data = load_dataset(cfg.data.dataset, cfg.data.root, cfg.data.download)
    run_dir = Path(tempfile.mkdtemp(prefix="bench-ttr-"))
    stop = threading.Event()
    epochs: list[dict[str, Any]] = []
    perf: dict[str, Any] = {}
    warnings: list[str] = []
    guard: list[dict[str, Any]] = []
    t0, c0 = time.perf_counter(), time.process_time()
    train_s = 0.0

    def listen(e: dict[str, Any]) -> None:
        nonlocal train_s
        if e["type"] == "run_started":
            perf.update(e["perf"])
        if e["type"] == "warning":
            warnings.append(e["message"])
        if e["type"] == "guard":
            guard.append({k: e[k] for k in ("step", "epochs", "acc", "n", "fired")})
        if e["type"] != "epoch_end" or e["robust_acc"] is None:
            return
        train_s += e["seconds"] - e["eval_seconds"]
        epochs.append(
            {
                "epoch": e["epoch"],
                "wall_s": round(time.perf_counter() - t0, 2),
                # CPU seconds of this process (all its threads): what other jobs cannot inflate
                "cpu_s": round(time.process_time() - c0, 2),
                "train_s": round(train_s, 2),
                "val_clean": e["clean_acc"],
                "val_pgd20": e["robust_acc"],
            }
        )
        if e["robust_acc"] >= target and not full:
            stop.set()

    try:
        (run_dir / "checkpoints").mkdir()
        writer = EventWriter(run_dir / "events.jsonl")
        writer.listeners.append(listen)
        outcome = Trainer(cfg, data, run_dir, writer, torch.device("cpu"), stop).run()
        writer.close()
        wall_total = time.perf_counter() - t0
        paper = (
            paper_suite(run_dir / "best.safetensors", test_samples, seed, sanity) if full else None
        )
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    if outcome.status == "failed":
        raise RuntimeError(f"{preset} ({amp}) failed: {outcome.error}")
    hit = next((r for r in epochs if r["val_pgd20"] >= target), None)
    return {
        "preset": preset,
        "sets": sets or [],
        "amp": perf.get("amp"),
        "amp_requested": amp,
        "epochs_max": cfg.train.epochs,
        "reached": hit is not None,
        "epoch": hit["epoch"] if hit else None,
        "wall_s": hit["wall_s"] if hit else None,
        "cpu_s": hit["cpu_s"] if hit else None,
        "train_s": hit["train_s"] if hit else None,
        "history": epochs,
        "wall_total_s": round(wall_total, 1),
        "epochs_trained": len(epochs),
        "guard": outcome.final.get("guard"),
        "guard_checks": guard,
        "warnings": warnings,
        "selected_epoch": (outcome.final.get("test") or {}).get("epoch"),
        "paper": paper,
    }


def paper_suite(best: Path, samples: int, seed: int, sanity: bool = True) -> dict[str, Any]:
    """The `paper` suite's worst case (n, 95% Wilson) of the selected checkpoint on test.

    Without `sanity` the suite's sanity runs are left out (its columns and worst case
    are the same; the runs only check them).
    """
    suite = "paper"
    if not sanity:
        text = resolve_suite("paper").read_text(encoding="utf-8")
        off = text.replace("[sanity]\nenabled = true", "[sanity]\nenabled = false")
        assert off != text, "the paper suite's [sanity] block moved"
        suite = str(best.parent / "paper-no-sanity.toml")
        Path(suite).write_text(off, encoding="utf-8")
    t = time.perf_counter()
    doc = evaluate_checkpoint(best, suite, samples=samples, device="cpu", seed=seed)
    return {
        "n": doc["n"],
        "worst_case": doc["table"][WORST],
        "interval": doc["intervals"][WORST],
        "clean": doc["table"]["clean"],
        "clean_interval": doc["intervals"]["clean"],
        "seconds": round(time.perf_counter() - t, 1),
        "sanity": sanity,
        "table": doc["table"],
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", default="demo,mnist5k_madry", help="comma-separated preset names")
    p.add_argument("--target", type=float, default=60.0, help="validation PGD-20, percent")
    p.add_argument("--sides", default="on,off", help="fast path: on, off, or both")
    p.add_argument(
        "--full",
        action="store_true",
        help="train every epoch, then the paper suite on the test split (the final worst case)",
    )
    p.add_argument(
        "--test-samples", type=int, default=0, help="--full: test digits, paper suite (0: all)"
    )
    p.add_argument(
        "--skip-sanity",
        action="store_true",
        help="--full: leave the suite's sanity runs out (same worst case, less time)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an override for every preset, as `workbench run --set` (repeatable)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads (0: every CPU this process may use); 1 on a machine other jobs load",
    )
    add_common_args(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    threads = args.threads or cpu_count()
    torch.set_num_threads(threads)
    pinned = pin_malloc() if args.pin_malloc else False
    out = sys.stderr if args.json else sys.stdout

    def log(msg: str) -> None:
        print(msg, file=out, flush=True)

    log(
        f"time to validation PGD-20 >= {args.target:g}% on mnist-5k (400 validation digits), "
        f"cpu, {threads} threads, torch {torch.__version__}, "
        f"malloc {'pinned' if pinned else 'adaptive'}"
    )
    results = []
    for preset in args.presets.split(","):
        for side in args.sides.split(","):
            r = time_to_target(
                preset,
                SIDES[side],
                args.target,
                args.seed,
                args.full,
                args.test_samples,
                not args.skip_sanity,
                args.set,
            )
            r["fast_path"] = side
            results.append(r)
            trace = ", ".join(f"{h['epoch']}:{h['val_pgd20']:.1f}" for h in r["history"])
            when = (
                f"epoch {r['epoch']}, {r['wall_s']:.0f} s wall ({r['train_s']:.0f} s training, "
                f"{r['cpu_s']:.0f} CPU s)"
                if r["reached"]
                else f"not reached in {r['epochs_max']} epochs"
            )
            log(f"  {preset:14s} fast path {side:3s} ({r['amp']}): {when}")
            log(f"    epoch:val PGD-20  {trace}")
            if r["paper"]:
                q = r["paper"]
                lo, hi = q["interval"]
                log(
                    f"    paper suite, test n={q['n']} (epoch {r['selected_epoch']} selected on "
                    f"validation): worst case {q['worst_case']:.1f}% [{lo:.1f}, {hi:.1f}], "
                    f"clean {q['clean']:.1f}%; {q['seconds']:.0f} s; training run "
                    f"{r['wall_total_s']:.0f} s for {r['epochs_trained']} epochs"
                )
            for w in r["warnings"]:
                log(f"    warning: {w}")
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
