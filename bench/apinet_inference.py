"""API-Net inference throughput: one batched (B*C) PGD over the per-class Python loop.

Why: anti-perturbation inference runs C searches per example, so at test time
it costs C times an 8-step PGD. The engine runs them as one PGD over a B*C
batch (chunked); the public reference code loops over classes. Target: >= 3x
on CPU. Both produce the same z_c and scores (tests/test_defenses.py); this
script checks that again and times both, interleaved, in one process.

    python bench/apinet_inference.py                 # smallcnn, batch 64, 8 steps
    python bench/apinet_inference.py --arch madry_cnn --batch 32
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.data import load_dataset
from engine.defenses.apinet import AntiPerturbation, class_scores
from engine.models import build_model
from tests.test_defenses import loop_reference

TARGET = 3.0


def loop(model, x, ap: AntiPerturbation, num_classes: int) -> torch.Tensor:
    """The reference shape: a Python loop over classes (the tests' reference implementation)."""
    return loop_reference(model, x, ap, num_classes)[0]


def batched(model, x, ap: AntiPerturbation, num_classes: int) -> torch.Tensor:
    z = ap.search(model, x, num_classes)
    with torch.no_grad():
        return class_scores(model, z)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="smallcnn")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    from workbench.process import pin_malloc

    pin_malloc()
    torch.manual_seed(0)
    model = build_model(args.arch, "linear", (1, 28, 28), 10).eval()
    d = load_dataset("mnist-5k")
    x = d.test_x[: args.batch].float() / 255
    ap = AntiPerturbation(eps_ap=12 / 255, steps=args.steps, step=0.01)
    a, b = batched(model, x, ap, 10), loop(model, x, ap, 10)
    agree = torch.equal(a.argmax(1), b.argmax(1)) and torch.allclose(a, b, atol=1e-4)
    t_batched, t_loop = [], []
    for _ in range(args.repeats):
        for fn, out in ((batched, t_batched), (loop, t_loop)):
            t0 = time.perf_counter()
            fn(model, x, ap, 10)
            out.append(time.perf_counter() - t0)
    mb, ml = statistics.median(t_batched), statistics.median(t_loop)
    ratio = ml / mb
    print(
        f"{args.arch}, batch {args.batch} x 10 classes, {args.steps} steps, "
        f"{torch.get_num_threads()} threads; scores agree: {agree}"
    )
    print(f"batched  {mb:.3f} s  {args.batch / mb:8.1f} examples/s")
    print(f"loop     {ml:.3f} s  {args.batch / ml:8.1f} examples/s")
    print(
        f"ratio batched/loop: {ratio:.2f}   (target >= {TARGET}: "
        f"{'met' if ratio >= TARGET else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
