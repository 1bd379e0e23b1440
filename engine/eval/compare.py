"""Two saved evaluations compared on the examples they share, column by column.

Each column's difference (A minus B, points) comes with Newcombe's paired
interval and an exact McNemar p-value (engine/eval/stats.py): the test a claim
"A is more robust than B" needs, since both were measured on the same examples.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.eval import WORST, stats
from engine.spec.errors import WorkbenchError


def read_evaluation(path: Path) -> dict[str, Any]:
    """A saved suite evaluation with per-example outcomes, or a one-line error naming the file."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WorkbenchError(f"{path}: evaluation file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WorkbenchError(f"{path}: not an evaluation file ({exc})") from None
    if not isinstance(doc, dict) or doc.get("kind", "suite") != "suite":
        raise WorkbenchError(f"{path}: key 'kind': not a suite evaluation (eval/<suite>-*.json)")
    for key in ("per_example", "indices", "dataset"):
        if key not in doc:
            raise WorkbenchError(f"{path}: key {key!r}: missing, so it cannot be paired")
    return doc


def compare(a_path: Path, b_path: Path) -> dict[str, Any]:
    """A vs B per shared column (and their worst cases) on their shared test examples."""
    a, b = read_evaluation(a_path), read_evaluation(b_path)
    for key in ("dataset", "split"):
        if a.get(key) != b.get(key):
            raise WorkbenchError(
                f"{b_path}: key {key!r}: {b.get(key)!r}, but {a_path} has {a.get(key)!r}; "
                "paired outcomes need the same examples"
            )
    pos_a = {int(i): j for j, i in enumerate(a["indices"])}
    pos_b = {int(i): j for j, i in enumerate(b["indices"])}
    shared = sorted(set(pos_a) & set(pos_b))
    if not shared:
        raise WorkbenchError(f"{a_path} and {b_path} share no test examples")

    def outcomes(doc: dict[str, Any], pos: dict[int, int], column: str) -> list[bool]:
        return [bool(doc["per_example"][column][pos[i]]) for i in shared]

    columns = [c for c in a["per_example"] if c in b["per_example"]]
    rows, notes = [], []
    for col in columns:
        rows.append(
            {
                "column": col,
                **stats.paired(outcomes(a, pos_a, col), outcomes(b, pos_b, col)).to_dict(),
            }
        )
        if (a.get("columns") or {}).get(col) != (b.get("columns") or {}).get(col):
            notes.append(f"{col}: run with different settings in the two evaluations")

    def worst(doc: dict[str, Any], pos: dict[int, int]) -> list[bool]:
        cols = [outcomes(doc, pos, c) for c in doc["per_example"]]
        return [all(v) for v in zip(*cols, strict=True)]

    rows.append({"column": WORST, **stats.paired(worst(a, pos_a), worst(b, pos_b)).to_dict()})
    return {
        "kind": "diff",
        "a": str(a_path),
        "b": str(b_path),
        "a_suite": a.get("suite"),
        "b_suite": b.get("suite"),
        "dataset": a["dataset"],
        "n": len(shared),
        "method": stats.METHOD,
        "rows": rows,
        "notes": notes,
    }
