"""What `workbench report` reads, checked before anything is drawn: the target named on the
command line (a run, a study, an evaluation or sweep JSON), the output folder and formats."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.records.runs import STUDY_MARK, listed_run_dir
from engine.report import style
from engine.report.run_data import EVENTS, number
from engine.spec.errors import WorkbenchError


def parse_formats(text: str) -> tuple[str, ...]:
    """ "png,svg" -> ("png", "svg"); an unknown or empty format is one line."""
    parts = [p.strip().lower() for p in text.split(",") if p.strip()]
    bad = [p for p in parts if p not in style.FORMATS]
    if bad or not parts:
        raise WorkbenchError(
            f"--format {text!r}: {'unsupported ' + ', '.join(bad) if bad else 'empty'}; "
            f"use one or more of {', '.join(style.FORMATS)}, comma-separated"
        )
    return tuple(dict.fromkeys(parts))


def check_out(out: Path) -> Path:
    if out.exists() and not out.is_dir():
        raise WorkbenchError(f"--out {out}: is a file, not a folder for the report")
    return out


def locate(target: str, runs_dir: Path) -> tuple[str, Path]:
    """(kind, path) of what `target` names: a path, or a run or study under `runs_dir`."""
    path = Path(target)
    if not path.exists():
        if target.endswith(".json"):
            raise WorkbenchError(f"{target}: no such file")
        if runs_dir.exists() and not runs_dir.is_dir():
            raise WorkbenchError(f"--runs-dir {runs_dir}: is a file, not a folder for runs")
        path = listed_run_dir(runs_dir, target, "report")
        if not path.exists():
            raise WorkbenchError(
                f"report {target!r}: no such run, study or file (runs under {runs_dir})"
            )
    if path.is_dir():
        if (path / STUDY_MARK).is_dir():
            return "study", path
        if (path / EVENTS).is_file():
            return "run", path
        raise WorkbenchError(f"{path}: not a run, a study or an evaluation (no {EVENTS})")
    if path.suffix != ".json":
        raise WorkbenchError(
            f"{path}: not a run folder, a study or an evaluation JSON (eval/<suite>-<time>.json)"
        )
    doc = _json(path)
    kind = doc.get("kind", "suite")
    if kind == "eps-sweep":
        return "sweep", path
    if kind == "study_report":
        return "study-json", path
    if kind == "suite":
        return "evaluation", path
    raise WorkbenchError(f"{path}: key 'kind': {kind!r} is not an evaluation, sweep or study")


def _json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise WorkbenchError(f"{path}: not a readable JSON document ({exc})") from None
    if not isinstance(doc, dict):
        raise WorkbenchError(f"{path}: not a JSON object")
    return doc


# ---------------------------------------------------------------- checks of hostile documents


def check_suite(doc: dict[str, Any], path: Path) -> dict[str, Any]:
    """A saved evaluation's table and intervals are numbers: else one line naming the key."""
    for key, v in doc["table"].items():
        if number(v) is None:
            raise WorkbenchError(f"{path}: key 'table.{key}': not a number")
    intervals = doc.get("intervals", {})
    if not isinstance(intervals, dict):
        raise WorkbenchError(f"{path}: key 'intervals': not an object")
    for key, v in intervals.items():
        if not (isinstance(v, list) and len(v) == 2 and all(number(b) is not None for b in v)):
            raise WorkbenchError(f"{path}: key 'intervals.{key}': not a [low, high] pair")
    return doc


def check_sweep(doc: dict[str, Any], path: Path) -> dict[str, Any]:
    from engine.report.eval_figures import sweep_curves

    eps = doc.get("eps")
    if not isinstance(eps, list) or not eps or any(number(e) is None for e in eps):
        raise WorkbenchError(f"{path}: key 'eps': not a list of numbers")
    for i, c in enumerate(sweep_curves(doc)):
        acc, bounds = (c.get("accuracy"), c.get("intervals")) if isinstance(c, dict) else (0, 0)
        if not isinstance(acc, list) or len(acc) != len(eps) or any(number(a) is None for a in acc):
            raise WorkbenchError(f"{path}: key 'curves[{i}].accuracy': not {len(eps)} numbers")
        ok = isinstance(bounds, list) and len(bounds) == len(eps)
        if not ok or not all(isinstance(b, list) and len(b) == 2 for b in bounds):
            raise WorkbenchError(f"{path}: key 'curves[{i}].intervals': not {len(eps)} pairs")
        if any(number(x) is None for b in bounds for x in b):
            raise WorkbenchError(f"{path}: key 'curves[{i}].intervals': not numbers")
    return doc


# ---------------------------------------------------------------- the targets


def checkpoint_label(checkpoint: Any) -> str:
    """What a table calls a checkpoint: its run's name (best.safetensors of runs/demo: demo)."""
    p = Path(str(checkpoint))
    if p.parent.name == "checkpoints":
        return f"{p.parent.parent.name}/{p.stem}"
    return p.parent.name if p.parent.name not in ("", ".") else p.stem


def newest_sweep(eval_dir: Path, checkpoint: Path) -> tuple[dict[str, Any], Path] | None:
    """The newest per-checkpoint sweep (`sweep` writes one into the checkpoint's eval/)."""
    if not eval_dir.is_dir():
        return None
    mine = _place(checkpoint)
    for f in sorted(eval_dir.glob("sweep-*.json"), reverse=True):
        if f.name.endswith("-combined.json"):
            continue
        try:
            doc = _json(f)
            if _place(Path(str(doc.get("checkpoint")))) == mine:
                return check_sweep(doc, f), f
        except WorkbenchError:
            continue  # a damaged sweep is skipped: the report draws what it can
    return None


def _place(p: Path) -> tuple[str, ...]:
    """A checkpoint as its eval folder knows it, wherever the command ran (paths saved in
    evaluations may be relative to another folder): `best.safetensors`, `checkpoints/epoch-3...`."""
    return (p.parent.name, p.name) if p.parent.name == "checkpoints" else (p.name,)
