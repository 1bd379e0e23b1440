"""The fast evaluation against the path before it: the same suite, checkpoint and examples.

Runs a suite (default `paper`, its sanity runs included) on the first
`--samples` test examples of a checkpoint twice per round: "full", the path
before issue 26 (every PGD column's `early_stop = false`, every example
attacked to the last step, the whole batch through the model at once), and
"early", today's (`early_stop = true`: broken examples leave the working
batch; on the CPU the model runs on micro-batches of `--slice` examples,
engine/eval/microbatch.py). `--attribute` adds "early-whole" (early stop on
the whole batch) to say what each part gives. It reports (full, early, full,
early: machine noise hits both alike)

* per-example agreement: the share of (column, example) outcomes, the suite's
  columns and its sanity runs together, that are the same in both (target
  >= 99.8%), and of the worst case alone;
* the headline (worst case) of each, and their difference (target: within 0.2
  points);
* the wall time of the whole evaluation (suite, sanity runs, batch probe) and
  the ratio full / early, per round and as the ratio of the medians (target
  >= 1.5), and the same for the process's CPU seconds (with `--threads 1`
  the work done, which other jobs on a shared machine do not inflate).

    .venv/bin/python bench/early_stop.py runs/demo/best.safetensors --samples 500 --rounds 2

Numbers, with the command that gave them, are in bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import add_common_args, cpu_count, pin_malloc

from engine.checkpoint_io import load_model
from engine.data import dataset_info
from engine.devices import resolve_device
from engine.eval import WORST
from engine.eval.evaluate import eval_inputs, evaluate_model
from engine.eval.microbatch import CPU_SLICE
from engine.eval.stats import wilson
from engine.eval.suites import Column, load_suite, resolve_columns


def with_early_stop(cols: list[Column], on: bool) -> list[Column]:
    """The columns with every PGD's `early_stop` set to `on` (other kinds as they are)."""
    out = []
    for c in cols:
        params = {**c.params, "early_stop": on} if "early_stop" in c.params else c.params
        out.append(Column(c.name, c.kind, params, c.source, c.defended))
    return out


def outcomes(ev: Any) -> dict[str, list[int]]:
    """Per column (the suite's and the sanity runs'), the per-example outcomes."""
    out = {k: v.int().tolist() for k, v in ev.result.correct.items()}
    out[WORST] = ev.result.worst_case.int().tolist()
    for k, run in ev.sanity_runs.get("runs", {}).items():
        out[k] = list(run["per_example"])
    return out


def agreement(a: dict[str, list[int]], b: dict[str, list[int]]) -> dict[str, Any]:
    """Share of equal outcomes over every column both have, and per column the differences."""
    same = total = 0
    differ: dict[str, dict[str, int]] = {}
    for k in a:
        if k == WORST or k not in b:
            continue
        pairs = list(zip(a[k], b[k], strict=True))
        same += sum(x == y for x, y in pairs)
        total += len(pairs)
        full_only = sum(x == 0 and y == 1 for x, y in pairs)  # broken by full, not by early
        early_only = sum(x == 1 and y == 0 for x, y in pairs)
        if full_only or early_only:
            differ[k] = {"broken_by_full_only": full_only, "broken_by_early_only": early_only}
    worst = list(zip(a[WORST], b[WORST], strict=True))
    return {
        "pairs": total,
        "agreement_pct": 100.0 * same / total if total else float("nan"),
        "worst_case_agreement_pct": 100.0 * sum(x == y for x, y in worst) / len(worst),
        "differences": differ,
    }


def summarise(
    runs: dict[str, list[dict[str, Any]]],
    args: argparse.Namespace,
    cfg: Any,
    spec: Any,
    n: int,
    pinned: bool,
) -> tuple[dict[str, Any], list[str]]:
    """The numbers of the rounds so far, as JSON and as the lines printed."""
    full, early = runs["full"], runs["early"]
    pairs = [agreement(f["outcomes"], e["outcomes"]) for f, e in zip(full, early, strict=True)]
    repeat = agreement(full[0]["outcomes"], full[-1]["outcomes"]) if len(full) > 1 else None
    worst_f, worst_e = full[0]["table"][WORST], early[0]["table"][WORST]
    kf = round(worst_f * n / 100)
    ke = round(worst_e * n / 100)
    med_f = statistics.median(x["wall_s"] for x in full)
    med_e = statistics.median(x["wall_s"] for x in early)
    cpu_f = statistics.median(x["cpu_s"] for x in full)
    cpu_e = statistics.median(x["cpu_s"] for x in early)
    column_ratio = {
        k: statistics.median(f["column_s"][k] for f in full)
        / max(1e-9, statistics.median(e["column_s"][k] for e in early))
        for k in full[0]["column_s"]
        if k != "clean"
    }
    doc = {
        "checkpoint": str(args.checkpoint),
        "suite": spec.name,
        "n": n,
        "seed": args.seed,
        "norm": cfg.attack.norm,
        "eps": cfg.attack.eps,
        "threads": torch.get_num_threads(),
        "malloc_pinned": pinned,
        "rounds": len(full),
        "agreement": pairs,
        "full_vs_full_agreement": repeat,
        "worst_case_full": {"acc": worst_f, "ci95": list(wilson(kf, n))},
        "worst_case_early": {"acc": worst_e, "ci95": list(wilson(ke, n))},
        "worst_case_diff_points": worst_e - worst_f,
        "wall_s": {"full": [x["wall_s"] for x in full], "early": [x["wall_s"] for x in early]},
        "attack_columns_s": {
            "full": [x["attack_columns_s"] for x in full],
            "early": [x["attack_columns_s"] for x in early],
        },
        "sanity_runs_s": {
            "full": [x["sanity_runs_s"] for x in full],
            "early": [x["sanity_runs_s"] for x in early],
        },
        "speedup_per_round": [f["wall_s"] / e["wall_s"] for f, e in zip(full, early, strict=True)],
        "speedup_median": med_f / med_e,
        "cpu_s": {"full": [x["cpu_s"] for x in full], "early": [x["cpu_s"] for x in early]},
        "cpu_speedup_median": cpu_f / cpu_e,
        "speedup_per_column": column_ratio,
        "tables": {"full": full[0]["table"], "early": early[0]["table"]},
    }
    worst_agree = min(a["agreement_pct"] for a in pairs)
    lines = [
        f"{args.checkpoint} ({cfg.attack.norm}, eps {cfg.attack.eps:g}), suite {spec.name}, "
        f"n = {n}, {len(full)} rounds, {torch.get_num_threads()} threads",
        f"worst case: full {worst_f:.2f}% {list(map(lambda v: round(v, 1), wilson(kf, n)))}, "
        f"early {worst_e:.2f}% {list(map(lambda v: round(v, 1), wilson(ke, n)))}, "
        f"diff {worst_e - worst_f:+.2f} points (target within 0.2: "
        f"{'met' if abs(worst_e - worst_f) <= 0.2 + 1e-9 else 'NOT met'})",
        f"per-example agreement: {worst_agree:.3f}% of {pairs[0]['pairs']} (column, example) "
        f"outcomes (target >= 99.8: {'met' if worst_agree >= 99.8 else 'NOT met'}); "
        f"worst case {min(a['worst_case_agreement_pct'] for a in pairs):.2f}%",
        f"wall s: full {', '.join(f'{v:.1f}' for v in doc['wall_s']['full'])}; "
        f"early {', '.join(f'{v:.1f}' for v in doc['wall_s']['early'])}",
        f"speed-up of the whole suite (median full / median early): {med_f / med_e:.2f}x "
        f"(per round {', '.join(f'{v:.2f}' for v in doc['speedup_per_round'])}; "
        f"target >= 1.5: {'met' if med_f / med_e >= 1.5 else 'NOT met'})",
        f"CPU s: full {', '.join(f'{v:.1f}' for v in doc['cpu_s']['full'])}; "
        f"early {', '.join(f'{v:.1f}' for v in doc['cpu_s']['early'])}; "
        f"ratio of the medians {cpu_f / cpu_e:.2f}x (the work done, whatever else runs; "
        f"target >= 1.5: {'met' if cpu_f / cpu_e >= 1.5 else 'NOT met'}; trust it over the wall "
        "ratio when the machine is shared)",
    ]
    if "early-whole" in runs:
        whole = runs["early-whole"]
        med_w = statistics.median(x["wall_s"] for x in whole)
        cpu_w = statistics.median(x["cpu_s"] for x in whole)
        doc["early_whole_batch"] = {
            "wall_s": [x["wall_s"] for x in whole],
            "cpu_s": [x["cpu_s"] for x in whole],
            "agreement": [
                agreement(f["outcomes"], w["outcomes"]) for f, w in zip(full, whole, strict=True)
            ],
        }
        lines.append(
            f"early stop alone (whole batch): {med_f / med_w:.2f}x wall, {cpu_f / cpu_w:.2f}x "
            f"CPU; the micro-batch on top: {med_w / med_e:.2f}x wall, {cpu_w / cpu_e:.2f}x CPU"
        )
    if repeat is not None:
        lines.append(f"full vs full (rounds 0, {len(full) - 1}): {repeat['agreement_pct']:.3f}%")
    for k, d in (pairs[0]["differences"] or {}).items():
        lines.append(f"  differs: {k}: {d}")
    return doc, lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--suite", default="paper")
    p.add_argument("--samples", type=int, default=500)
    p.add_argument("--rounds", type=int, default=2, help="full/early pairs (full first)")
    p.add_argument("--batch", type=int, default=None, help="default: the checkpoint's eval batch")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads (0: every CPU this process may use); with 1 the CPU seconds "
        "are the work done, a fair measure on a machine shared with other jobs",
    )
    p.add_argument(
        "--slice",
        type=int,
        default=CPU_SLICE,
        help="the early path's CPU micro-batch (0: the whole batch at once, early stop alone)",
    )
    p.add_argument(
        "--attribute",
        action="store_true",
        help="also run early stop on the whole batch, to say what each part gives",
    )
    p.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    add_common_args(p)
    args = p.parse_args()
    pinned = pin_malloc() if args.pin_malloc else False
    torch.set_num_threads(args.threads or cpu_count())
    dev = resolve_device(args.device, "--device")
    cfg, model = load_model(args.checkpoint, None, dev)
    spec = load_suite(args.suite)
    cols = resolve_columns(spec, cfg, False)
    x, y = eval_inputs(cfg, args.samples, dev)
    n_cls = dataset_info(cfg.data.dataset).num_classes
    # name: (every PGD's early_stop, the CPU micro-batch); "full" is the path before both
    variants = {"full": (False, None), "early": (True, args.slice or None)}
    if args.attribute:
        variants["early-whole"] = (True, None)  # early stop alone: which part gives what

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for r in range(args.rounds):
        for name, (stop, piece) in variants.items():  # full, early, full, early, ...
            t0, c0 = time.perf_counter(), time.process_time()
            ev = evaluate_model(
                spec,
                with_early_stop(cols, stop),
                model,
                x,
                y,
                n_cls,
                seed=args.seed,
                batch_size=args.batch,
                default_batch=cfg.data.eval_batch_size,
                micro_batch=piece,
            )
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            table = ev.result.table()
            sanity_s = {k: v["seconds"] for k, v in ev.sanity_runs.get("runs", {}).items()}
            runs[name].append(
                {
                    "round": r,
                    "wall_s": wall,
                    "cpu_s": cpu,
                    "attack_columns_s": ev.attack_seconds,
                    "sanity_runs_s": sum(sanity_s.values()),
                    "column_s": {**ev.result.seconds, **sanity_s},
                    "table": table,
                    "outcomes": outcomes(ev),
                    "early_stop": sorted(
                        {str(v.get("early_stop")) for v in ev.plan.params.values()}
                    ),
                }
            )
            log(
                f"round {r} {name:11s}: {wall:7.1f} s wall, {cpu:7.1f} s CPU "
                f"(attack columns {ev.attack_seconds:.1f} s, "
                f"sanity runs {sum(sanity_s.values()):.1f} s), worst case {table[WORST]:.2f}%, "
                f"early_stop in its columns: {runs[name][-1]['early_stop']}"
            )
        doc, lines = summarise(runs, args, cfg, spec, len(y), pinned)
        log("\n".join(lines))
        if args.out is not None:  # after every round: a stopped benchmark keeps what it measured
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(doc, indent=1))
    print(json.dumps(doc, indent=1) if args.json else "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
