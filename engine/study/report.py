"""A study's answer: per arm and setting over seeds, and each pair paired on the test examples.

* Per group (an arm at one grid setting): the mean over seeds of clean and
  robust (worst case) test accuracy with its 95% Student-t interval, the
  seeds that finished, and the members that failed (with their reasons).
* Per pair of groups: for each seed both finished, an exact McNemar test of
  the worst-case outcomes on the same test examples (engine/eval/stats.py);
  combined over seeds, the mean difference with its t-interval and a paired
  t-test, read as one line: "atblr - madry = +x.x pts [lo, hi], p = ...".

The JSON holds every member's per-example outcomes, so the report can be
rebuilt from it alone (`rebuild`).
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
from pathlib import Path
from typing import Any

from engine.eval import WORST, stats
from engine.study import members as ms
from engine.study.spec import Member, StudySpec


def member_numbers(state: ms.MemberState) -> dict[str, Any]:
    """One member's row: status, and when evaluated, clean/worst accuracy and outcomes."""
    row = state.to_dict()
    row["setting"] = {k: v for k, v in state.member.setting}
    if state.evaluation is None:
        return row
    try:
        doc = json.loads(state.evaluation.read_text(encoding="utf-8"))
        per, n, indices = _outcomes(doc)
    except (OSError, ValueError, RecursionError) as exc:  # a damaged file is the member's fault
        row.update(status=ms.FAILED, reason=f"{state.evaluation}: {exc}", evaluation=None)
        return row
    worst = [int(all(v)) for v in zip(*per.values(), strict=True)]
    row.update(
        n=n,
        indices=indices,
        clean=100.0 * sum(per["clean"]) / n,
        robust=100.0 * sum(worst) / n,
        clean_outcomes=list(per["clean"]),
        robust_outcomes=worst,
        columns=sorted(per),
    )
    return row


def _outcomes(doc: Any) -> tuple[dict[str, list[int]], int, list[int]]:
    """A saved evaluation's per-example outcomes, checked: ValueError says what is wrong."""
    if not isinstance(doc, dict):
        raise ValueError("not an evaluation (not a JSON object)")
    per, n, indices = doc.get("per_example"), doc.get("n"), doc.get("indices")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError("n is not a positive whole number")
    if not isinstance(indices, list) or len(indices) != n or not all(_whole(i) for i in indices):
        raise ValueError(f"indices is not a list of {n} example indices")
    if not isinstance(per, dict) or "clean" not in per:
        raise ValueError("per_example has no clean column")
    for name, v in per.items():
        if not isinstance(v, list) or len(v) != n or any(x not in (0, 1) for x in v):
            raise ValueError(f"per_example.{name} is not {n} outcomes of 0 or 1")
    return {k: [int(x) for x in v] for k, v in per.items()}, n, [int(i) for i in indices]


def _whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _paired_on_shared(a: dict[str, Any], b: dict[str, Any]) -> stats.Paired:
    pos_b = {int(i): j for j, i in enumerate(b["indices"])}
    shared = [(j, pos_b[int(i)]) for j, i in enumerate(a["indices"]) if int(i) in pos_b]
    return stats.paired(
        [bool(a["robust_outcomes"][i]) for i, _ in shared],
        [bool(b["robust_outcomes"][j]) for _, j in shared],
    )


def _fixed_on_every_seed(
    a: dict[Any, dict[str, Any]], b: dict[Any, dict[str, Any]]
) -> tuple[dict[Any, dict[str, Any]], dict[Any, dict[str, Any]]]:
    """A fixed model (its one row under seed None) pairs with each seed of the other side;
    two fixed models pair once."""
    if None in a and None not in b:
        a = {s: a[None] for s in b}
    elif None in b and None not in a:
        b = {s: b[None] for s in a}
    return a, b


def build(spec_doc: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The report from member rows (as `member_numbers` gives them)."""
    labels = list(dict.fromkeys(r["label"] for r in rows))
    groups = []
    for label in labels:
        mine = [r for r in rows if r["label"] == label]
        done = [r for r in mine if "robust" in r]
        groups.append(
            {
                "label": label,
                "arm": mine[0]["arm"],
                "fixed": mine[0]["seed"] is None,  # a fixed model: no seeds, no training
                "setting": mine[0]["setting"],
                "members": len(mine),
                "evaluated": len(done),
                "seeds": [r["seed"] for r in done],
                "failed": [
                    {"name": r["name"], "reason": r["reason"]}
                    for r in mine
                    if r["status"] == ms.FAILED
                ],
                "clean": stats.over_seeds([r["clean"] for r in done]).to_dict(),
                "robust": stats.over_seeds([r["robust"] for r in done]).to_dict(),
                "n": sorted({r["n"] for r in done}),
            }
        )
    pairs = []
    for la, lb in itertools.combinations(reversed(labels), 2):  # later arms first: "atblr - madry"
        a = {r["seed"]: r for r in rows if r["label"] == la and "robust" in r}
        b = {r["seed"]: r for r in rows if r["label"] == lb and "robust" in r}
        a, b = _fixed_on_every_seed(a, b)
        seeds = sorted(set(a) & set(b), key=lambda s: -1 if s is None else s)
        if not seeds:
            continue
        per_seed = [{"seed": s, **_paired_on_shared(a[s], b[s]).to_dict()} for s in seeds]
        combined = stats.over_seeds([p["diff"] for p in per_seed])
        pairs.append({"a": la, "b": lb, "seeds": seeds, "per_seed": per_seed, **combined.to_dict()})
    return {
        "kind": "study_report",
        "study": spec_doc["name"],
        "suite": spec_doc["suite"],
        "spec": spec_doc,
        "metric": f"{WORST} under the {spec_doc['suite']} suite, test split",
        "method": "mean over seeds with a 95% Student-t interval; per seed exact McNemar on the "
        "same test examples; combined: mean paired difference, t-interval, paired t-test",
        "members": rows,
        "groups": groups,
        "pairs": pairs,
    }


def report(
    spec: StudySpec, members: list[Member], runs_dir: Path
) -> tuple[dict[str, Any], list[ms.MemberState]]:
    states = [ms.member_state(runs_dir, spec.name, spec.suite, m) for m in members]
    doc = build(spec.model_dump(), [member_numbers(s) for s in states])
    return doc, states


def rebuild(doc: dict[str, Any]) -> dict[str, Any]:
    """The report again from a saved report's member rows (nothing else read)."""
    return build(doc["spec"], doc["members"])


def pair_line(p: dict[str, Any]) -> str:
    """ "atblr - madry = +x.x pts [lo, hi], p = ... (k seeds; McNemar per seed: ...)"."""
    mc = ", ".join(
        f"{'fixed' if q['seed'] is None else 's' + str(q['seed'])} {q['diff']:+.1f} p={q['p']:.2g}"
        for q in p["per_seed"]
    )
    if math.isnan(p["low"]):
        head = f"{p['a']} - {p['b']} = {p['mean']:+.1f} pts (1 seed: no interval over seeds)"
    else:
        head = (
            f"{p['a']} - {p['b']} = {p['mean']:+.1f} pts [{p['low']:+.1f}, {p['high']:+.1f}], "
            f"p = {p['p']:.2g}"
        )
    seeds = f"{p['k']} seed" + ("s" if p["k"] != 1 else "")
    return f"{head} ({seeds}; McNemar per seed: {mc})"


def to_csv(doc: dict[str, Any]) -> str:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["member", "arm", "setting", "seed", "status", "n", "clean", "robust", "reason"])
    for r in doc["members"]:
        setting = ";".join(f"{k}={v}" for k, v in r["setting"].items())
        w.writerow(
            [
                r["name"],
                r["arm"],
                setting,
                r["seed"],
                r["status"],
                r.get("n", ""),
                "" if "clean" not in r else f"{r['clean']:.2f}",
                "" if "robust" not in r else f"{r['robust']:.2f}",
                r["reason"],
            ]
        )
    return out.getvalue()
