"""What a user does to a run directory besides training it: trash (with undo), archive, rename,
and a note with tags (`read_note` is in engine/records/runs.py, which lists them). Torch-free.

Nothing here touches a live run: each operation refuses a run whose lock is
held. Trash and archive are moves inside the runs directory (`.trash/`,
`.archive/`), so undo restores the folder byte for byte. Each trashed folder
has a sidecar `.trash/<entry>.json` with the run's name and when it went, so
the trash (and undo) is read from disk and survives a restart of the app.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import time
from dataclasses import dataclass
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
    """Move a run to RUNS/.trash/<name>--<time>; returns where it went (for undo). The
    sidecar beside it keeps the full name, which a study member's folder name lacks."""
    src = _idle(runs_dir / name)
    now = time.time()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    dest = runs_dir / TRASH / f"{src.name}--{stamp}"
    dest.parent.mkdir(exist_ok=True)
    n = 1
    while dest.exists() or _sidecar(dest).exists():
        dest = dest.with_name(f"{dest.name}-{n}")
        n += 1
    src.rename(dest)
    atomic_write_bytes(_sidecar(dest), json.dumps({"name": name, "time": now}).encode())
    return dest


def _sidecar(trashed: Path) -> Path:
    return trashed.with_name(trashed.name + ".json")


@dataclass(frozen=True)
class Trashed:
    """A run in RUNS/.trash: where it is, the name it had, and when it went there."""

    path: Path
    name: str
    time: float


def _restorable(name: str, key: str) -> str:
    """A name a trashed run may go back under: a run or `study/member`, never outside RUNS."""
    parts = name.split("/")
    if len(parts) > 2:
        raise WorkbenchError(f"{key} {name!r}: not a run name (a run, or study/member)")
    for part in parts:
        check_name(part, key)
    return name


def _read_trashed(entry: Path) -> Trashed:
    """One trash entry; one without a readable sidecar (trashed before sidecars, or edited)
    falls back to the name before `--` and the folder's own time."""
    name, when = entry.name.rpartition("--")[0] or entry.name, None
    try:
        doc = json.loads(_sidecar(entry).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        doc = None
    if isinstance(doc, dict):
        given = doc.get("name")
        # the sidecar is a file anyone can edit: a name that leaves RUNS is ignored
        with contextlib.suppress(WorkbenchError):
            name = _restorable(given, "name") if isinstance(given, str) else name
        if isinstance(doc.get("time"), int | float) and not isinstance(doc["time"], bool):
            when = float(doc["time"])
    if when is None:
        try:
            when = entry.stat().st_mtime
        except OSError:
            when = 0.0
    return Trashed(entry, name, when)


def trashed(runs_dir: Path) -> list[Trashed]:
    """Everything in RUNS/.trash, the most recently trashed first (undo takes that one)."""
    try:
        entries = [p for p in (runs_dir / TRASH).iterdir() if p.is_dir()]
    except OSError:  # no trash yet, or unreadable: nothing to list
        return []
    return sorted(map(_read_trashed, entries), key=lambda t: (t.time, t.path.name), reverse=True)


def purge(runs_dir: Path, item: Trashed) -> None:
    """Delete a trashed run for good (only ever something directly inside RUNS/.trash)."""
    if item.path.resolve().parent != (runs_dir / TRASH).resolve():
        raise WorkbenchError(f"{item.path}: not in {runs_dir / TRASH}; not deleting it")
    shutil.rmtree(item.path)
    _sidecar(item.path).unlink(missing_ok=True)


def restore(runs_dir: Path, trashed: Path, name: str) -> Path:
    """Undo `trash` (or `archive`): the folder back under its name, if that is still free."""
    dest = runs_dir / _restorable(name, f"{trashed}: name")
    if dest.exists():
        raise WorkbenchError(f"{dest}: a run with this name exists now; cannot restore over it")
    dest.parent.mkdir(parents=True, exist_ok=True)  # a study member whose study went too
    trashed.rename(dest)
    _sidecar(trashed).unlink(missing_ok=True)
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
