"""A model card beside every evaluation: RobustBench's fields, our intervals, JSON and Markdown.

The card is built from the evaluation document alone (read as hostile input
through `engine.records.evidence.read_suite`), so an evaluation saved before
cards existed gets the same card as a new one. Field names follow
RobustBench's `model_info/<dataset>/<threat model>/<name>.json` where they fit
(`dataset`, `threat_model` spelled Linf/L2/L1, `eps` as text such as "8/255",
`clean_acc`, `autoattack_acc`, `additional_data`, `number_forward_passes`,
`architecture`) and `n_examples` as its `benchmark()` names it; ours add the
worst case (`robust_acc`), 95% intervals, provenance and the code version.
Accuracies are percentages as numbers (RobustBench writes them as strings).
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Any

from engine.records import evidence
from engine.records.checkpoint_header import atomic_write_bytes
from engine.records.evidence import WORST
from engine.spec.errors import WorkbenchError
from engine.spec.registry import known_norm_label

FORMAT = "workbench-card/1"
AUTOATTACK_VERSION = "standard"  # the version whose last column is "AutoAttack's" number


def eps_text(eps: float) -> str:
    """eps as it was most likely written: "8/255" for a float that is exactly 8/255, else "0.3".

    The resolved config keeps only the float, so the text is recovered from it:
    a float whose shortest decimal is short was given as a decimal; otherwise the
    first fraction n/d (d up to 16, then 255 as pixel budgets are written, then
    up to 1000) whose float is bit-for-bit the same number is the fraction it was
    given as (8/255 stays 8/255, and 6/255 is not reduced to 2/85).
    """
    text = repr(float(eps))
    digits = text.split("e")[0].replace("-", "").replace(".", "").strip("0")
    if len(digits) <= 6:
        return text.removesuffix(".0")
    for d in (*range(1, 17), 255, *range(17, 1001)):
        n = round(eps * d)
        if n and n / d == eps:
            return f"{n}/{d}"
    f = Fraction(eps).limit_denominator(10**6)
    return f"{f.numerator}/{f.denominator}" if float(f) == eps else text


def threat_name(norm: Any) -> str:
    """RobustBench's name of a threat model: Linf, L2, L1 (our header label without its dash)."""
    if not isinstance(norm, str):
        return "mixed"  # the columns' norms differ (or a damaged file)
    return known_norm_label(norm, norm).replace("-", "")


def forward_passes(defense: dict[str, Any] | None, num_classes: int | None) -> int | None:
    """Forward passes of the model per prediction: 1, or API-Net's C searches plus scoring.

    API-Net (engine/defenses/apinet.py) runs, for each of the C classes, `steps`
    ascent steps (a forward and a backward pass each) and then one forward pass
    to score z_c: C * (steps + 1) forward passes per input.
    """
    if not defense or defense.get("name", "none") == "none":
        return 1
    steps = defense.get("steps")
    if not isinstance(steps, int) or isinstance(steps, bool) or num_classes is None:
        return None
    return num_classes * (steps + 1)


def model_card(doc: dict[str, Any], evaluation: Path) -> dict[str, Any]:
    """The card of one saved (or just written) evaluation document."""
    from engine.eval import stats  # scipy: for documents saved before intervals

    row = evidence.summary(evaluation, doc)
    table = _dict(doc.get("table"))
    per_example = _dict(doc.get("per_example"))
    saved_intervals = _dict(doc.get("intervals"))
    n = row["n"]

    def interval(col: str) -> list[float] | None:
        iv = saved_intervals.get(col)
        if isinstance(iv, list) and len(iv) == 2 and all(_real(v) for v in iv):
            return [float(iv[0]), float(iv[1])]
        outcomes = _outcomes(per_example, col) if col != WORST else _worst(per_example)
        if outcomes is None or not outcomes:
            return None
        return list(stats.wilson(sum(outcomes), len(outcomes)))

    robust_col = WORST if WORST in table else ("worst case" if "worst case" in table else None)
    aa = _autoattack_column(_dict(doc.get("columns")), table)
    norm = row["norm"]
    eps = row["eps"]
    source_model = doc.get("source_model")  # absent in documents saved before it: our own
    defense = doc.get("defense") if isinstance(doc.get("defense"), dict) else None
    num_classes = doc.get("num_classes")
    if not isinstance(num_classes, int) or isinstance(num_classes, bool):
        num_classes = _num_classes(row.get("dataset") or doc.get("dataset"))
    arch = doc.get("arch") if isinstance(doc.get("arch"), str) else _arch(doc.get("checkpoint"))
    code = _dict(doc.get("code"))
    sanity = [c for c in doc.get("sanity") or [] if isinstance(c, dict)]
    return {
        "format": FORMAT,
        "kind": "card",  # never read as an evaluation (listings, studies, diff)
        "name": _name(doc.get("checkpoint")),
        "checkpoint": doc.get("checkpoint") if isinstance(doc.get("checkpoint"), str) else None,
        "architecture": arch,
        "dataset": doc.get("dataset") if isinstance(doc.get("dataset"), str) else None,
        "split": doc.get("split") if isinstance(doc.get("split"), str) else None,
        "threat_model": threat_name(norm),
        "eps": None if eps is None else eps_text(eps),
        "eps_value": eps,
        "n_examples": n,
        "clean_acc": row["clean"],
        "clean_acc_ci95": interval("clean"),
        "robust_acc": None if robust_col is None else row["worst case"],
        "robust_acc_ci95": None if robust_col is None else interval(robust_col),
        "robust_acc_attack": (
            f"per-example worst case over the {row['suite']} suite's "
            f"{max(0, len(table) - 2)} attack column(s)"
            if robust_col is not None
            else None
        ),
        "autoattack_acc": None if aa is None else float(table[aa]),
        "autoattack_acc_ci95": None if aa is None else interval(aa),
        "autoattack_column": aa,
        "number_forward_passes": forward_passes(defense, num_classes),
        "defense": defense,
        "additional_data": _additional_data(source_model),
        "external_model": isinstance(source_model, dict),
        "source_model": source_model if isinstance(source_model, dict) else None,
        "suite": row["suite"],
        "seed": row["seed"],
        "time": row["time"],
        "sanity": {
            s: sum(1 for c in sanity if c.get("status") == s) for s in ("PASS", "WARN", "SKIP")
        },
        "interval_method": doc.get("interval_method") or stats.METHOD,
        "code_version": {
            "engine": code.get("engine"),
            "commit": code.get("commit"),
            "dirty": code.get("dirty"),
        },
        "evaluation": str(evaluation),
    }


def card_markdown(card: dict[str, Any]) -> str:
    """The card as a Markdown table (what `workbench card` prints and `.card.md` holds)."""

    def pct(key: str) -> str:
        v, iv = card.get(key), card.get(f"{key}_ci95")
        if v is None:
            return "not run"
        return f"{v:.2f}%" + (f" [{iv[0]:.2f}, {iv[1]:.2f}]" if iv else "")

    def yes(v: Any) -> str:
        return "unknown" if v is None else ("yes" if v else "no")

    code = card["code_version"]
    commit = (code.get("commit") or "")[:12] or "no git commit"
    dirty = " (uncommitted changes)" if code.get("dirty") else ""
    aa = card.get("autoattack_column")
    passes = card["number_forward_passes"]
    d = card.get("defense")
    rows = [
        ("model", card.get("name") or "?"),
        ("architecture", card.get("architecture") or "unknown"),
        ("dataset", f"{card['dataset']} ({card.get('split') or 'test'} split)"),
        ("threat model", f"{card['threat_model']}, eps = {card['eps'] or 'mixed'}"),
        ("n examples", str(card["n_examples"])),
        ("clean accuracy", pct("clean_acc")),
        (
            "robust accuracy (worst case)",
            pct("robust_acc") + (f" — {card['robust_acc_attack']}" if card["robust_acc"] else ""),
        ),
        ("AutoAttack accuracy", pct("autoattack_acc") + (f" — column {aa!r}" if aa else "")),
        (
            "forward passes per prediction",
            "unknown" if passes is None else str(passes),
        ),
        ("defence", "none" if not d else f"{d.get('name')}, {d.get('steps')} steps"),
        ("additional data", yes(card["additional_data"])),
        ("model from outside the workbench", yes(card["external_model"])),
        ("sanity checks", ", ".join(f"{v} {k}" for k, v in card["sanity"].items())),
        ("suite, seed", f"{card['suite']}, seed {card['seed']}"),
        ("code", f"engine {code.get('engine')}, {commit}{dirty}"),
        ("evaluation", card["evaluation"]),
    ]
    lines = [f"# Model card: {card.get('name') or '?'}", "", "| field | value |", "|---|---|"]
    lines += [f"| {k} | {str(v).replace('|', '/')} |" for k, v in rows]
    lines += ["", f"Intervals: {card['interval_method']}."]
    return "\n".join(lines) + "\n"


def card_paths(evaluation: Path) -> tuple[Path, Path]:
    """`eval/<suite>-<time>.card.json` and `.card.md` beside `eval/<suite>-<time>.json`."""
    stem = evaluation.name.removesuffix(".json")
    return evaluation.with_name(stem + ".card.json"), evaluation.with_name(stem + ".card.md")


def write_card(evaluation: Path, doc: dict[str, Any]) -> str:
    """Write the card of a just-saved evaluation (JSON and Markdown, atomically); its path."""
    card = model_card(doc, evaluation)
    as_json, as_md = card_paths(evaluation)
    atomic_write_bytes(as_json, json.dumps(card, indent=1).encode())
    atomic_write_bytes(as_md, card_markdown(card).encode())
    return str(as_json)


def card_of(path: Path) -> dict[str, Any]:
    """The card of an evaluation file, or of a checkpoint's latest evaluation (else exit 2)."""
    if path.suffix == ".json":
        return model_card(evidence.read_suite(path), path)
    if not path.exists():
        raise WorkbenchError(f"{path}: no such checkpoint or evaluation file")
    rows = [r for r in evidence.list_evaluations(path) if r.get("kind") == "suite"]
    if not rows:
        raise WorkbenchError(f"{path}: no saved evaluation; run 'workbench eval {path}' first")
    latest = max(rows, key=lambda r: (r["time"] or "", r["file"]))
    return model_card(evidence.read_suite(Path(latest["file"])), Path(latest["file"]))


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _real(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _outcomes(per_example: dict[str, Any], col: str) -> list[bool] | None:
    v = per_example.get(col)
    if not isinstance(v, list) or not all(x in (0, 1, True, False) for x in v):
        return None
    return [bool(x) for x in v]


def _worst(per_example: dict[str, Any]) -> list[bool] | None:
    cols = [_outcomes(per_example, c) for c in per_example]
    if not cols or any(c is None for c in cols) or len({len(c) for c in cols}) != 1:  # type: ignore[arg-type]
        return None
    return [all(v) for v in zip(*cols, strict=True)]  # type: ignore[misc]


def _autoattack_column(columns: dict[str, Any], table: dict[str, Any]) -> str | None:
    """The last column of a standard AutoAttack run from the clean-correct examples, if any."""
    for name, p in columns.items():
        if not isinstance(p, dict) or p.get("kind") != "autoattack":
            continue
        comps = p.get("components")
        if (
            p.get("version") == AUTOATTACK_VERSION
            and not p.get("from_survivors")
            and isinstance(comps, list)
            and comps
            and p.get("component") == comps[-1]
            and _real(table.get(name))
        ):
            return name
    return None


def _additional_data(source_model: Any) -> bool | None:
    """False for our own training; what an imported model's record says; else unknown."""
    if not isinstance(source_model, dict):
        return False
    v = source_model.get("additional_data")
    return v if isinstance(v, bool) else None


def _num_classes(dataset: Any) -> int | None:
    """A dataset's class count from the registry (imports torch: older defended documents only)."""
    if not isinstance(dataset, str):
        return None
    try:
        from engine.data import dataset_info

        return dataset_info(dataset).num_classes
    except Exception:
        return None


def _arch(checkpoint: Any) -> str | None:
    """The architecture from the checkpoint's header, for documents saved before `arch`."""
    if not isinstance(checkpoint, str) or "\0" in checkpoint:
        return None
    try:
        from engine.records.checkpoint_header import read_header

        return read_header(checkpoint)[1].get("arch")
    except Exception:
        return None


def _name(checkpoint: Any) -> str | None:
    """run/checkpoint (or the file name of a loose checkpoint)."""
    if not isinstance(checkpoint, str):
        return None
    p = Path(checkpoint)
    return f"{p.parent.name}/{p.name}" if p.parent.name else p.name
