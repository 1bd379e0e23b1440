"""API-Net's eps_ap ablation (paper Table 5): the quick defended suite at each eps_ap."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.eval.evaluate import Loaded, evaluate_checkpoint
from engine.records.evidence import evaluation_dir, stamp, write_json


def eps_ap_sweep(
    path: Path,
    values: list[float],
    samples: int = 0,
    device: str = "auto",
    seed: int = 0,
    sets: list[str] | None = None,
    progress: Callable[[float, dict[str, Any]], None] | None = None,
    *,
    loaded: Loaded | None = None,
) -> dict[str, Any]:
    """Every eps_ap in `values`, each saved as its own evaluation, the rows as one JSON.

    eps_ap = 0 is the undefended base classifier (z_c = x), so the first row
    is the baseline every other row is compared with. `loaded`: a model from
    outside the workbench (`ablate --model`); `path` then names it.
    """
    rows = []
    for v in values:
        doc = evaluate_checkpoint(
            path,
            "quick",
            sets=[*(sets or []), f"defense.eps_ap={v}"],
            samples=samples,
            device=device,
            seed=seed,
            defense="apinet",
            loaded=loaded,
        )
        rows.append({"eps_ap": v, "accuracy": doc["accuracy"], "saved": doc["saved"]})
        if progress is not None:
            progress(v, doc)
    out_dir, _ = evaluation_dir(path)
    out = out_dir / f"eps_ap-sweep-{stamp()}.json"
    summary = {
        "kind": "eps_ap-sweep",
        "checkpoint": str(path),
        "samples": samples,
        "seed": seed,
        "rows": rows,
    }
    write_json(out, summary)
    summary["saved"] = str(out)
    return summary
