"""Is our PGD-40 as strong as an independent implementation, and is AutoAttack no weaker?

Runs the PGD-40 column that `workbench eval --suite paper` reports for a
checkpoint (its eps, step, steps and restarts, resolved from the checkpoint
exactly as `eval` resolves them) and `torchattacks.PGD` with the same numbers
on the same test examples, then the standard AutoAttack cascade on a subset,
and prints both verdicts:

    PGD-40: ours A%  torchattacks B%  |A-B| = D points (target <= 1: met | NOT met)
    AutoAttack C% <= our PGD-40 E% on the same N examples: met | NOT met

torchattacks is not a project dependency: when it cannot be imported it is
installed with pip into a throwaway folder (deleted at exit) that is appended
to sys.path, so the project's own torch and numpy stay the ones in use.
Exit status: 0 when both targets are met, 1 when one is not, 2 on bad input.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import add_common_args, pin_malloc  # noqa: E402


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def import_torchattacks():
    """torchattacks from the environment, or from a throwaway pip --target folder."""
    try:
        return importlib.import_module("torchattacks"), "installed"
    except ImportError:
        pass
    tmp = Path(tempfile.mkdtemp(prefix="torchattacks-"))
    atexit.register(shutil.rmtree, tmp, True)
    log(f"torchattacks not installed: pip install into throwaway {tmp}")
    pip = [sys.executable, "-m", "pip", "install", "-q", "--target", str(tmp)]
    subprocess.run([*pip, "--no-deps", "torchattacks"], check=True)
    sys.path.append(str(tmp))  # appended: our torch/numpy still win
    missing = []
    for mod, dist in (("scipy", "scipy"), ("tqdm", "tqdm"), ("requests", "requests")):
        try:
            importlib.import_module(mod)
        except ImportError:
            missing.append(dist)
    if missing:
        subprocess.run([*pip, *missing], check=True)
    importlib.invalidate_caches()
    return importlib.import_module("torchattacks"), f"throwaway {tmp}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default="runs/mnist5k_madry/best.safetensors")
    p.add_argument("--samples", type=int, default=1000, help="first N test examples (PGD)")
    p.add_argument(
        "--aa-samples", type=int, default=200, help="first N for AutoAttack (0: skip it)"
    )
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--device", default="cpu")
    add_common_args(p)
    args = p.parse_args()
    if args.pin_malloc:
        pin_malloc()

    import torch

    from engine.attacks.autoattack import AutoAttackCascade
    from engine.attacks.pgd import threat_of
    from engine.checkpoint_io import load_model
    from engine.data import dataset_info
    from engine.eval.entries import predict
    from engine.eval.evaluate import eval_inputs
    from engine.eval.run import run_suite
    from engine.eval.suites import load_suite, resolve_columns
    from engine.spec.errors import WorkbenchError

    path = Path(args.checkpoint)
    try:
        cfg, model = load_model(path, None, args.device)
        x, y = eval_inputs(cfg, args.samples, torch.device(args.device))
    except WorkbenchError as exc:
        log(f"error: {exc}")
        return 2
    col = next(c for c in resolve_columns(load_suite("paper"), cfg, False) if c.name == "PGD-40")
    prm = col.params
    n = len(y)
    log(f"{path}: {cfg.data.dataset} {cfg.model.arch}, PGD-40 {prm}, {n} examples")

    torchattacks, where = import_torchattacks()
    clean = predict(model, x, args.batch) == y

    t0 = time.perf_counter()
    ours = run_suite(model, x, y, {"PGD-40": col.spec.build(prm)}, args.batch, args.seed)
    t_ours = time.perf_counter() - t0
    ours_ok = ours.correct["PGD-40"].to(y.device)

    ta = torchattacks.PGD(
        model, eps=prm["eps"], alpha=prm["step"], steps=prm["steps"], random_start=True
    )

    def theirs(seed: int) -> torch.Tensor:
        """Per example: survived every restart of torchattacks' PGD."""
        torch.manual_seed(seed)
        ok = clean.clone()
        for _ in range(prm["restarts"]):
            for i in range(0, n, args.batch):
                xb, yb = x[i : i + args.batch], y[i : i + args.batch]
                xa = ta(xb, yb)
                assert (xa - xb).abs().max() <= prm["eps"] + 1e-6 and 0 <= xa.min() <= xa.max() <= 1
                ok[i : i + args.batch] &= predict(model, xa, args.batch) == yb
        return ok

    t0 = time.perf_counter()
    theirs_ok = theirs(args.seed)  # same seed: same random starts, so same iterates if equal
    t_theirs = time.perf_counter() - t0
    other_ok = theirs(args.seed + 1)  # independent random starts: same strength, not same points

    a, b = 100 * ours_ok.float().mean().item(), 100 * theirs_ok.float().mean().item()
    b2 = 100 * other_ok.float().mean().item()
    diff = max(abs(a - b), abs(a - b2))
    pgd_met = diff <= 1.0
    out = {
        "checkpoint": str(path),
        "n": n,
        "pgd": prm,
        "torchattacks": getattr(torchattacks, "__version__", "?"),
        "torchattacks_from": where,
        "clean": 100 * clean.float().mean().item(),
        "ours": a,
        "torchattacks_pgd": b,
        "torchattacks_pgd_other_seed": b2,
        "difference_points": diff,
        "only_ours_breaks": int((~ours_ok & theirs_ok).sum()),
        "only_theirs_breaks": int((ours_ok & ~theirs_ok).sum()),
        "seconds": {"ours": t_ours, "torchattacks": t_theirs},
        "pgd_target_met": pgd_met,
    }
    print(
        f"PGD-40 on {n}: ours {a:.1f}%  torchattacks {b:.1f}% (other random starts "
        f"{b2:.1f}%)  largest |diff| = {diff:.1f} points "
        f"(target <= 1: {'met' if pgd_met else 'NOT met'}); "
        f"broken only by ours {out['only_ours_breaks']}, only by torchattacks "
        f"{out['only_theirs_breaks']}; {t_ours:.0f} s vs {t_theirs:.0f} s"
    )

    aa_met = True
    m = min(args.aa_samples, n)
    if m > 0:
        n_cls = dataset_info(cfg.data.dataset).num_classes
        casc = AutoAttackCascade("AA", threat_of(prm), "standard", args.seed, n_cls)
        t0 = time.perf_counter()
        cols = casc.run(model, x[:m], y[:m], clean[:m], args.batch)
        t_aa = time.perf_counter() - t0
        aa = 100 * cols[casc.columns[-1]].float().mean().item()
        ours_m = 100 * ours_ok[:m].float().mean().item()
        aa_met = aa <= ours_m
        out["autoattack"] = {
            "n": m,
            "columns": {k: 100 * v.float().mean().item() for k, v in cols.items()},
            "robust": aa,
            "ours_pgd_same_examples": ours_m,
            "flags": casc.flags,
            "seconds": t_aa,
            "target_met": aa_met,
        }
        steps = ", ".join(f"{k} {100 * v.float().mean().item():.1f}" for k, v in cols.items())
        print(
            f"AutoAttack {aa:.1f}% <= our PGD-40 {ours_m:.1f}% on the same {m} examples: "
            f"{'met' if aa_met else 'NOT met'} ({steps}; {t_aa:.0f} s)"
        )
        for f in casc.flags:
            print(f"  AutoAttack says: {f}")
    if args.json:
        print(json.dumps(out, indent=2))
    return 0 if pgd_met and aa_met else 1


if __name__ == "__main__":
    sys.exit(main())
