"""Under L2: how close is the `paper` suite's worst case to full AutoAttack, and is our PGD-L2
as strong as torchattacks' PGDL2?

On an L2 checkpoint (`[attack] norm = "l2"`, e.g. a `mnist5k_madry_l2` run) and
the same first N test examples:

* the whole `paper` suite (its white-box columns and its APGD cascade, in the
  checkpoint's L2 ball), timed, and its per-example worst case;
* the standard AutoAttack with `norm = "L2"` (APGD-CE, APGD-T, FAB-T, Square),
  timed;
* the gap (points, Newcombe's paired 95% interval, McNemar's p) and the time
  share; the targets: gap <= 1 point, time <= 25% of AutoAttack's;
* our PGD-40 column against `torchattacks.PGDL2` with the same eps, step,
  steps and a random start, on the same examples (skipped with a message when
  torchattacks, the `bench` extra, is not installed).

    .venv/bin/python bench/l2_vs_autoattack.py runs/mnist5k_madry_l2/best.safetensors --samples 500

Exit status: 0 when the suite meets both targets, 1 when not, 2 on bad input
(including a checkpoint that is not L2).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import add_common_args, cpu_count, pin_malloc  # noqa: E402

GAP_TARGET, TIME_TARGET = 1.0, 0.25


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("--samples", type=int, default=500, help="test examples (first N)")
    p.add_argument("--batch", type=int, default=500)
    add_common_args(p)
    args = p.parse_args()
    if args.pin_malloc:
        pin_malloc()

    import torch

    from engine.attacks.autoattack import AutoAttackCascade
    from engine.attacks.threat import ThreatModel
    from engine.checkpoint_io import load_model
    from engine.data import dataset_info
    from engine.eval.entries import predict
    from engine.eval.evaluate import eval_inputs
    from engine.eval.plan import plan_suite
    from engine.eval.run import run_suite
    from engine.eval.stats import paired, wilson
    from engine.eval.suites import load_suite, resolve_columns
    from engine.spec.errors import WorkbenchError

    torch.set_num_threads(cpu_count())
    try:
        cfg, model = load_model(Path(args.checkpoint), None, "cpu")
        if cfg.attack.norm != "l2":
            raise WorkbenchError(
                f"{args.checkpoint}: key 'attack.norm': given {cfg.attack.norm!r}, this "
                "benchmark needs an L2 checkpoint (e.g. workbench run mnist5k_madry_l2)"
            )
        x, y = eval_inputs(cfg, args.samples, torch.device("cpu"))
        spec = load_suite("paper")
        cols = resolve_columns(spec, cfg, False)
    except WorkbenchError as exc:
        log(f"error: {exc}")
        return 2
    n, n_cls = len(y), dataset_info(cfg.data.dataset).num_classes
    threat = ThreatModel(cfg.attack.norm, cfg.attack.eps)
    log(f"{args.checkpoint}: {n} test examples, {threat.label}")

    def pct(mask: torch.Tensor) -> float:
        return 100.0 * mask.float().mean().item()

    def interval(mask: torch.Tensor) -> list[float]:
        return list(wilson(int(mask.sum()), len(mask)))

    t0 = time.perf_counter()
    plan = plan_suite(cols, model, n_cls, args.seed)
    res = run_suite(model, x, y, plan.entries, args.batch, args.seed)
    t_suite = time.perf_counter() - t0
    suite_worst, clean = res.worst_case, res.correct["clean"]
    log(f"paper suite: worst case {pct(suite_worst):.2f}% in {t_suite:.1f} s")

    aa_casc = AutoAttackCascade("AA", threat, "standard", args.seed, n_cls)
    t0 = time.perf_counter()
    aa = aa_casc.run(model, x, y, clean, args.batch)[aa_casc.columns[-1]].cpu()
    t_aa = time.perf_counter() - t0
    log(f"standard AutoAttack (L2): {pct(aa):.2f}% in {t_aa:.1f} s")
    gap = paired(suite_worst.tolist(), aa.tolist())
    doc: dict = {
        "checkpoint": args.checkpoint,
        "threat": threat.label,
        "n": n,
        "clean": pct(clean),
        "paper_suite": {"worst_case": pct(suite_worst), "interval": interval(suite_worst)},
        "paper_seconds": t_suite,
        "autoattack": {"accuracy": pct(aa), "interval": interval(aa), "seconds": t_aa},
        "gap": gap.diff,
        "gap_interval": [gap.low, gap.high],
        "mcnemar_p": gap.p,
        "time_share": t_suite / t_aa if t_aa > 0 else float("inf"),
        "targets": {"gap_points": GAP_TARGET, "time_share": TIME_TARGET},
    }
    doc["meets"] = doc["gap"] <= GAP_TARGET and doc["time_share"] <= TIME_TARGET

    pgd = next((c for c in cols if c.name == "PGD-40"), None)
    try:
        torchattacks = importlib.import_module("torchattacks")
    except ImportError:
        torchattacks = None
        doc["torchattacks"] = "skipped: torchattacks is not installed (the bench extra)"
        log(doc["torchattacks"])
    if torchattacks is not None and pgd is not None:
        prm = pgd.params
        t0 = time.perf_counter()
        ours = run_suite(model, x, y, {"PGD-40": pgd.spec.build(prm)}, args.batch, args.seed)
        t_ours = time.perf_counter() - t0
        ta = torchattacks.PGDL2(
            model, eps=prm["eps"], alpha=prm["step"], steps=prm["steps"], random_start=True
        )
        torch.manual_seed(args.seed)
        t0 = time.perf_counter()
        ok = clean.clone()
        for _ in range(prm["restarts"]):
            for i in range(0, n, args.batch):
                xb, yb = x[i : i + args.batch], y[i : i + args.batch]
                xa = ta(xb, yb)
                ok[i : i + args.batch] &= (predict(model, xa, args.batch) == yb).cpu()
        t_theirs = time.perf_counter() - t0
        mine = ours.correct["PGD-40"]
        d = paired(mine.tolist(), ok.tolist())
        doc["pgd_l2"] = {
            "ours": {"accuracy": pct(mine), "interval": interval(mine), "seconds": t_ours},
            "torchattacks": {"accuracy": pct(ok), "interval": interval(ok), "seconds": t_theirs},
            "difference": d.diff,
            "difference_interval": [d.low, d.high],
            "mcnemar_p": d.p,
        }
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        lo, hi = doc["gap_interval"]
        print(f"{args.checkpoint}: {threat.label}, n={n}, clean {doc['clean']:.2f}%")
        for label, part, secs in (
            ("paper suite worst case", doc["paper_suite"], t_suite),
            ("standard AutoAttack (L2)", doc["autoattack"], t_aa),
        ):
            acc = part.get("worst_case", part.get("accuracy"))
            a, b = part["interval"]
            print(f"{label:28} {acc:6.2f}% [{a:.1f}, {b:.1f}] in {secs:8.1f} s")
        print(
            f"gap {doc['gap']:+.2f} points [{lo:+.1f}, {hi:+.1f}], "
            f"McNemar p {doc['mcnemar_p']:.3f}; time {doc['time_share']:.0%} of AutoAttack's"
            + ("  meets both targets" if doc["meets"] else "  misses a target")
        )
        if "pgd_l2" in doc:
            q = doc["pgd_l2"]
            print(
                f"PGD-40 (L2): ours {q['ours']['accuracy']:.2f}% in {q['ours']['seconds']:.1f} s, "
                f"torchattacks PGDL2 {q['torchattacks']['accuracy']:.2f}% in "
                f"{q['torchattacks']['seconds']:.1f} s ({q['difference']:+.2f} points)"
            )
        else:
            print(f"PGD-L2 vs torchattacks: {doc.get('torchattacks', 'no PGD-40 column')}")
    return 0 if doc["meets"] else 1


if __name__ == "__main__":
    sys.exit(main())
