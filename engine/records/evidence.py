"""The evidence of an evaluation: where it is saved, the code behind it, how it is listed.

Every evaluation leaves `eval/<suite>-<time>.json` in the checkpoint's run
directory (or an `eval/` folder beside a loose checkpoint), so `inspect` and
the app can show a checkpoint's evaluation history quickly. Torch-free (the
listing runs in `workbench inspect`): the suite document itself is built where
its types live, `engine.eval.evaluate.suite_document`, from what this module
records of the code and library versions.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from engine import __version__
from engine.records.checkpoint_header import atomic_write_bytes
from engine.spec.errors import WorkbenchError

WORST = "robust (worst case)"  # the per-example AND of every column: every table's headline

PACKAGE = Path(__file__).resolve().parent.parent  # engine/: its git checkout, if any


def evaluation_dir(path: Path) -> tuple[Path, Path | None]:
    """Where a checkpoint's evaluations go: its run directory if it has one, else beside it."""
    for d in (path.parent, path.parent.parent):
        if (d / "events.jsonl").exists():
            return d / "eval", d
    return path.parent / "eval", None


def stamp() -> str:
    """A sortable time stamp with milliseconds, so two quick evaluations never collide."""
    return time.strftime("%Y%m%d-%H%M%S") + f"{time.time() % 1:.3f}"[1:]


def adv_file(evaluation: Path) -> Path:
    """Where `eval --save-adv` keeps an evaluation's inputs (engine/eval/adv_keep.py)."""
    return evaluation.with_name(evaluation.name.removesuffix(".json") + ".adv.safetensors")


def code_version() -> dict[str, Any]:
    """The engine version and, when the code is a git checkout, its commit and dirtiness."""
    out: dict[str, Any] = {"engine": __version__, "commit": None, "dirty": None}
    try:
        head = subprocess.run(
            ["git", "-C", str(PACKAGE), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        if head.returncode == 0:
            out["commit"] = head.stdout.strip()
            st = subprocess.run(
                ["git", "-C", str(PACKAGE), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=5,
            )
            out["dirty"] = bool(st.stdout.strip()) if st.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def common(columns: dict[str, dict[str, Any]], key: str) -> Any:
    """The value of `key` shared by every column that has it; None if they differ or none has it."""
    values = {json.dumps(p[key]) for p in columns.values() if key in p}
    return json.loads(values.pop()) if len(values) == 1 else None


def versions() -> dict[str, str | None]:
    """Versions of the libraries that produced a number (torch is already imported then)."""
    torch = sys.modules.get("torch")
    return {"torch": getattr(torch, "__version__", None)}


def write_json(path: Path, doc: dict[str, Any]) -> None:
    atomic_write_bytes(path, json.dumps(doc, indent=1).encode())


def list_evaluations(path: Path) -> list[dict[str, Any]]:
    """Summaries of the saved evaluations of this checkpoint, oldest first.

    They are found by where they live, the checkpoint's run directory (or the
    `eval/` folder beside a loose checkpoint), and told apart by the checkpoint's
    place in it (`best.safetensors`, `checkpoints/epoch-3.safetensors`): the path
    an evaluation recorded is absolute in newer files and relative to the folder
    it ran in in older ones, and a renamed or moved run changes it either way.
    Unreadable files are listed as such.
    """
    out_dir, run = evaluation_dir(path)
    if not out_dir.is_dir():
        return []
    me = _place(path, run)
    rows = []
    for f in sorted(out_dir.glob("*.json")):
        if f.name.endswith(".card.json"):  # an evaluation's model card (engine/eval/card.py)
            continue
        try:
            doc = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError):
            rows.append({"file": str(f), "error": "unreadable"})
            continue
        if not isinstance(doc, dict) or not isinstance(doc.get("checkpoint"), str):
            continue
        if Path(doc["checkpoint"]).parts[-len(me) :] == me:
            rows.append(_summary(f, doc))
    return rows


def _place(path: Path, run: Path | None) -> tuple[str, ...]:
    """A checkpoint's path inside its run directory (its name alone when it has no run)."""
    inside = path.parent.name == "checkpoints" and run is not None and run == path.parent.parent
    return (path.parent.name, path.name) if inside else (path.name,)


def _summary(f: Path, doc: dict[str, Any]) -> dict[str, Any]:
    """One saved evaluation's listing row; a field of the wrong type reads as missing.

    Saved evaluations are files a user may have edited or a crash may have cut:
    nothing here may raise on one of them.
    """

    def part(key: str, kind: type | tuple[type, ...]) -> Any:
        v = doc.get(key)
        return v if isinstance(v, kind) and not isinstance(v, bool) else None

    table = part("table", dict) or {}
    sanity = [c for c in part("sanity", list) or [] if isinstance(c, dict)]
    real = (int, float)

    def cell(key: str) -> float | None:
        v = table.get(key)
        return v if isinstance(v, real) and not isinstance(v, bool) else None

    return {
        "file": str(f),
        "kind": part("kind", str) or "suite",
        "suite": part("suite", str),
        "time": part("time", str),
        "n": part("n", int),
        "eps": part("eps", real),
        "norm": part("norm", str) if "norm" in doc else "linf",  # saved before norms: L-inf
        "seed": part("seed", int),
        "source": part("source", str),
        "defense": (part("defense", dict) or {}).get("name"),
        "clean": cell("clean"),
        "worst case": cell(WORST) if WORST in table else cell("worst case"),  # older files
        "warnings": sum(1 for c in sanity if c.get("status") == "WARN"),
        "skipped": sum(1 for c in sanity if c.get("status") == "SKIP"),
        "checks": len(sanity),
    }


def summary(f: Path, doc: dict[str, Any]) -> dict[str, Any]:
    """A saved evaluation's listing row (`_summary`), plus its dataset: never raises."""
    ds = doc.get("dataset")
    return {**_summary(f, doc), "dataset": ds if isinstance(ds, str) else None}


def read_suite(path: Path) -> dict[str, Any]:
    """A saved suite evaluation read as hostile input: a JSON object of kind "suite", or one line.

    The values inside are still unchecked: read them through `summary` or with
    type checks of your own.
    """
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WorkbenchError(f"{path}: evaluation file not found") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise WorkbenchError(f"{path}: not an evaluation file ({exc})") from None
    if not isinstance(doc, dict) or doc.get("kind", "suite") != "suite":
        raise WorkbenchError(f"{path}: key 'kind': not a suite evaluation (eval/<suite>-*.json)")
    if not isinstance(doc.get("table"), dict):
        raise WorkbenchError(f"{path}: key 'table': missing or not an object")
    return doc
