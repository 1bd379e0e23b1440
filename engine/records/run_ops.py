"""What a user does to a run directory besides training it: trash (with undo), archive, rename,
and a note with tags (`read_note` is in engine/records/runs.py, which lists them). Torch-free.

Nothing here touches a live run: each operation refuses a run whose lock is
held. Trash and archive are moves inside the runs directory (`.trash/`,
`.archive/`), so undo restores the folder byte for byte.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from engine.records.checkpoint_header import atomic_write_bytes
from engine.records.runs import NOTES, check_name, is_locked
from engine.spec.errors import WorkbenchError

TRASH = ".trash"
ARCHIVE = ".archive"
TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")


def _own(name: str, what: str) -> None:
    """A study member (`study/member`) belongs to its study, which names and re-runs it."""
    if "/" in name:
        raise WorkbenchError(f"{name} is a study member: the study names it; cannot {what} it")


def _idle(run_dir: Path) -> Path:
    if not run_dir.is_dir():
        raise WorkbenchError(f"{run_dir}: no such run")
    if is_locked(run_dir):
        raise WorkbenchError(f"{run_dir.name} is running: stop it first")
    return run_dir


def trash(runs_dir: Path, name: str) -> Path:
    """Move a run to RUNS/.trash/<name>--<time>; returns where it went (for undo)."""
    src = _idle(runs_dir / name)
    dest = runs_dir / TRASH / f"{src.name}--{time.strftime('%Y%m%d-%H%M%S')}"
    dest.parent.mkdir(exist_ok=True)
    n = 1
    while dest.exists():
        dest = dest.with_name(f"{dest.name}-{n}")
        n += 1
    src.rename(dest)
    return dest


def restore(runs_dir: Path, trashed: Path, name: str) -> Path:
    """Undo `trash` (or `archive`): the folder back under its name, if that is still free."""
    dest = runs_dir / name
    if dest.exists():
        raise WorkbenchError(f"{dest}: a run with this name exists now; cannot restore over it")
    trashed.rename(dest)
    return dest


def archive(runs_dir: Path, name: str) -> Path:
    """Move a finished run out of the listing into RUNS/.archive/<name>."""
    _own(name, "archive")
    src = _idle(runs_dir / name)
    dest = runs_dir / ARCHIVE / src.name
    if dest.exists():
        raise WorkbenchError(f"{dest}: an archived run with this name exists")
    dest.parent.mkdir(exist_ok=True)
    src.rename(dest)
    return dest


def rename(runs_dir: Path, name: str, new: str) -> Path:
    """Rename a run's folder (its checkpoints and evaluations move with it)."""
    _own(name, "rename")
    src = _idle(runs_dir / name)
    dest = runs_dir / check_name(new)
    if dest.exists():
        raise WorkbenchError(f"{dest}: a run with this name exists")
    src.rename(dest)
    return dest


def write_note(run_dir: Path, note: str, tags: list[str]) -> None:
    """A note and tags for the run, kept in its folder (atomic, so never half-written)."""
    for t in tags:
        if not TAG_RE.match(t):
            raise WorkbenchError(f"tag {t!r}: letters, digits, '.', '_' and '-', at most 32")
    if not run_dir.is_dir():
        raise WorkbenchError(f"{run_dir}: no such run")
    doc = {"note": note.strip(), "tags": sorted(set(tags))}
    atomic_write_bytes(run_dir / NOTES, json.dumps(doc, indent=1).encode())
