"""How close is the `paper` suite's worst case to full AutoAttack, and at what cost?

On one checkpoint and the same test examples it runs:

* the papers' columns of the `paper` suite (FGSM, PGD-40/100, CW-40/100), timed;
* the standard AutoAttack (APGD-CE, APGD-T, FAB-T, Square, pyautoattack), timed;
* a grid of APGD cascades (APGD-CE, then targeted APGD-DLR) started from the
  examples the papers' columns left standing, as the `paper` suite runs them,
  each with its own time.

For each grid point it prints the resulting worst case, its gap to AutoAttack
(points, with Newcombe's paired 95% interval and McNemar's p on the same
examples) and its wall time as a share of AutoAttack's (papers' columns
included). The targets: gap <= 1.0 point, time <= 25%. Exit status 0 when the
suite's own setting (the `paper` suite file) meets both, 1 when not, 2 on bad input.

    .venv/bin/python bench/paper_vs_autoattack.py runs/mnist5k_madry/best.safetensors --samples 500
"""

from __future__ import annotations

import argparse
import itertools
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
    p.add_argument("--iterations", default="25,50,100", help="APGD iterations to try")
    p.add_argument("--targets", default="0,1,3,9", help="APGD-T target classes (0: none)")
    add_common_args(p)
    args = p.parse_args()
    if args.pin_malloc:
        pin_malloc()

    import torch

    from engine.attacks.autoattack import AutoAttackCascade
    from engine.attacks.threat import ThreatModel
    from engine.checkpoint_io import load_model
    from engine.data import dataset_info
    from engine.eval.evaluate import eval_inputs
    from engine.eval.plan import plan_suite
    from engine.eval.run import run_suite
    from engine.eval.stats import paired, wilson
    from engine.eval.suites import load_suite, resolve_columns
    from engine.spec.errors import WorkbenchError

    torch.set_num_threads(cpu_count())
    try:
        cfg, model = load_model(Path(args.checkpoint), None, "cpu")
        x, y = eval_inputs(cfg, args.samples, torch.device("cpu"))
        spec = load_suite("paper")
    except WorkbenchError as exc:
        log(f"error: {exc}")
        return 2
    n, n_cls = len(y), dataset_info(cfg.data.dataset).num_classes
    cols = resolve_columns(spec, cfg, False)
    papers = [c for c in cols if c.kind != "autoattack"]
    ours = next((c for c in cols if c.kind == "autoattack"), None)
    log(f"{args.checkpoint}: {n} test examples, eps {cfg.attack.eps}")

    def pct(mask: torch.Tensor) -> float:
        return 100.0 * mask.float().mean().item()

    def cascade(tuning: dict, start: torch.Tensor) -> tuple[torch.Tensor, float]:
        version = "custom" if "components" in tuning else "standard"
        threat = ThreatModel(cfg.attack.norm, cfg.attack.eps)  # the checkpoint's norm
        casc = AutoAttackCascade("x", threat, version, args.seed, n_cls, tuning=tuning)
        t0 = time.perf_counter()
        out = casc.run(model, x, y, start, args.batch)
        return out[casc.columns[-1]].cpu(), time.perf_counter() - t0

    t0 = time.perf_counter()
    res = run_suite(
        model, x, y, plan_suite(papers, model, n_cls, args.seed).entries, args.batch, args.seed
    )
    t_papers = time.perf_counter() - t0
    paper_worst = res.worst_case
    clean = res.correct["clean"]
    log(f"papers' columns: worst case {pct(paper_worst):.2f}% in {t_papers:.1f} s")
    aa, t_aa = cascade({}, clean)
    log(f"standard AutoAttack: {pct(aa):.2f}% in {t_aa:.1f} s")

    def row(label: str, worst: torch.Tensor, seconds: float) -> dict:
        gap = paired(worst.tolist(), aa.tolist())
        share = seconds / t_aa
        return {
            "setting": label,
            "worst_case": pct(worst),
            "interval": list(wilson(int(worst.sum()), n)),
            "gap": gap.diff,
            "gap_interval": [gap.low, gap.high],
            "mcnemar_p": gap.p,
            "seconds": seconds,
            "time_share": share,
            "meets": gap.diff <= GAP_TARGET and share <= TIME_TARGET,
        }

    rows = [row("papers' columns only", paper_worst, t_papers)]
    grid = itertools.product(
        [int(v) for v in args.iterations.split(",")], [int(v) for v in args.targets.split(",")]
    )
    for iters, targets in grid:
        comps = ["apgd-ce"] + (["apgd-t"] if targets else [])
        tuning = {"components": comps, "iterations": iters, "from_survivors": True}
        if targets:
            tuning["target_classes"] = targets
        worst, secs = cascade(tuning, paper_worst & clean)
        label = f"+ APGD-CE{' + APGD-T x' + str(targets) if targets else ''}, {iters} iterations"
        rows.append(row(label, worst, t_papers + secs))
        log(f"{label}: {rows[-1]['worst_case']:.2f}% ({rows[-1]['time_share']:.0%} of AutoAttack)")
    suite_row = None
    if ours is not None:
        tuning = {k: v for k, v in ours.params.items() if k not in ("eps", "norm", "version")}
        worst, secs = cascade(tuning, paper_worst & clean)
        suite_row = row(f"the paper suite as shipped ({ours.params})", worst, t_papers + secs)
        rows.append(suite_row)
    doc = {
        "checkpoint": args.checkpoint,
        "n": n,
        "autoattack": {
            "accuracy": pct(aa),
            "interval": list(wilson(int(aa.sum()), n)),
            "seconds": t_aa,
        },
        "papers_seconds": t_papers,
        "rows": rows,
        "targets": {"gap_points": GAP_TARGET, "time_share": TIME_TARGET},
    }
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        aa_lo, aa_hi = doc["autoattack"]["interval"]
        print(
            f"standard AutoAttack: {pct(aa):.2f}% [{aa_lo:.1f}, {aa_hi:.1f}] in {t_aa:.1f} s, n={n}"
        )
        print(f"{'setting':58} {'worst %':>8} {'gap pts':>16} {'p':>7} {'time':>6}")
        for r in rows:
            lo, hi = r["gap_interval"]
            print(
                f"{r['setting'][:58]:58} {r['worst_case']:8.2f} {r['gap']:+6.2f} "
                f"[{lo:+.1f},{hi:+.1f}] {r['mcnemar_p']:7.3f} {r['time_share']:6.0%}"
                + ("  meets" if r["meets"] else "")
            )
    return 0 if suite_row is not None and suite_row["meets"] else 1


if __name__ == "__main__":
    sys.exit(main())
