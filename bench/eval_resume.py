"""What `workbench eval --resume` saves after a kill -9, and what saving progress costs.

Trains a LeNet on the bundled MNIST subset (or takes --checkpoint), then runs
`workbench eval` three times as a user would, each a fresh process:

1. uninterrupted (T seconds);
2. again, killed with SIGKILL after --kill-at x T seconds;
3. `--resume` (R seconds),

checks that the resumed evaluation's per-example outcomes and accuracies equal
the uninterrupted one's, and prints T, the time to the kill, R and the time the
resume saved against starting again (T - R).

    .venv/bin/python bench/eval_resume.py            # paper suite, 500 digits (~5 min, 2 cores)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.records.run_request import EvalRequest  # noqa: E402 (torch-free)


def train_lenet(out: Path, epochs: int, seed: int) -> Path:
    import torch

    from engine import checkpoint_io as ckpt
    from engine.data import load_dataset
    from engine.loader import TensorLoader, epoch_generator
    from engine.models import build_model
    from engine.spec.config import validate

    data = load_dataset("mnist-5k")
    torch.manual_seed(seed)
    model = build_model("lenet", "linear", (1, 28, 28), 10)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    loader = TensorLoader(data.train_x, data.train_y, 64, torch.device("cpu"), shuffle=True)
    for epoch in range(epochs):
        for x, y in loader.epoch(epoch_generator(seed, epoch)):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    cfg = validate(
        {
            "name": "bench-lenet",
            "data": {"dataset": "mnist-5k"},
            "model": {"arch": "lenet", "head": "linear"},
            "attack": {"eps": 0.1, "step": 0.01, "steps": 10},
        }
    )
    ckpt.save(out, ckpt.pack_model(model.eval()), ckpt.base_metadata(cfg, epochs, {}, "best"))
    return out


def command(args: argparse.Namespace, ckpt: Path, resume: bool = False) -> list[str]:
    """The eval command line, spelled by the one place that spells it (EvalRequest)."""
    request = EvalRequest(
        ckpt,
        args.suite,
        args.samples,
        seed=args.seed,
        batch_size=args.batch_size,
        device=args.device,
        resume=resume,
        as_json=True,
    )
    return request.command(sys.executable)


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, dict]:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    if res.returncode:
        raise SystemExit(res.stderr)
    return time.perf_counter() - t0, json.loads(res.stdout)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, help="a checkpoint (default: train a LeNet)")
    p.add_argument("--suite", default="paper")
    p.add_argument("--samples", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kill-at", type=float, default=0.5, help="fraction of T to kill at")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.checkpoint or train_lenet(Path(tmp) / "bench" / "best.safetensors", 2, 0)
        print("uninterrupted ...", file=sys.stderr)
        whole_s, whole = timed(command(args, ckpt), env)
        saved = json.loads(Path(whole["saved"]).read_text())
        print(
            f"  {whole_s:.1f} s; killing the next run at {args.kill_at * whole_s:.1f} s",
            file=sys.stderr,
        )
        t0 = time.perf_counter()
        victim = subprocess.Popen(
            command(args, ckpt),
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(args.kill_at * whole_s)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        kill_s = time.perf_counter() - t0
        from engine.eval.journal import progress_of

        partials = list(Path(whole["saved"]).parent.glob(".partial-*.safetensors"))
        at_kill = progress_of(partials[0]) if partials else {}
        print(f"  killed after {kill_s:.1f} s; resuming ...", file=sys.stderr)
        resume_s, resumed = timed(command(args, ckpt, resume=True), env)
        again = json.loads(Path(resumed["saved"]).read_text())
    same = again["per_example"] == saved["per_example"] and again["accuracy"] == saved["accuracy"]
    same_sanity = all(
        again["sanity_runs"]["runs"][k]["per_example"] == v["per_example"]
        for k, v in saved.get("sanity_runs", {}).get("runs", {}).items()
    )
    doc = {
        "suite": args.suite,
        "samples": args.samples,
        "batch_size": args.batch_size,
        "device": args.device,
        "uninterrupted_s": round(whole_s, 2),
        "killed_after_s": round(kill_s, 2),
        "resume_s": round(resume_s, 2),
        "saved_s": round(whole_s - resume_s, 2),
        "columns_done_at_kill": sum(1 for k, (n, c) in at_kill.items() if c and "/" not in k) - 1,
        "partial_at_kill": {k: n for k, (n, c) in at_kill.items() if not c},
        "resumed": again.get("resumed"),
        "identical_per_example": same,
        "identical_sanity_runs": same_sanity,
        "worst_case": saved["accuracy"].get("robust (worst case)"),
    }
    if args.json:
        print(json.dumps(doc, indent=1))
    else:
        for k, v in doc.items():
            print(f"{k:24} {v}")
    if not (same and same_sanity):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
