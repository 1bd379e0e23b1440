"""Run directories: safe names, creation, a lock per live run, and listing with status."""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from engine.records.events import EventLog, read_log
from engine.records.run_state import RunState
from engine.spec.errors import WorkbenchError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def check_name(name: str, key: str = "--name") -> str:
    """Refuse names that could escape the runs directory or confuse a shell."""
    if not NAME_RE.match(name) or ".." in name:
        raise WorkbenchError(
            f"{key} {name!r}: a run name uses letters, digits, '.', '_' and '-' only, "
            "starts with a letter or digit and contains no '..'"
        )
    return name


def check_runs_dir(runs_dir: str | Path) -> Path:
    """The runs folder, which may not exist yet but must not be something else."""
    path = Path(runs_dir)
    if path.exists() and not path.is_dir():
        raise WorkbenchError(f"--runs-dir {path}: is a file, not a folder for runs")
    return path


def default_name(preset_name: str) -> str:
    return f"{preset_name}-{time.strftime('%Y%m%d-%H%M%S')}"


def run_dir_for(runs_dir: str | Path, name: str) -> Path:
    return Path(runs_dir) / check_name(name)


def listed_run_dir(runs_dir: str | Path, name: str, key: str) -> Path:
    """A run named as the listing names it: `name`, or `<study>/<member>` for a study's."""
    parts = name.split("/")
    if len(parts) > 2:
        raise WorkbenchError(f"{key} {name!r}: a run is `name` or `study/member`")
    return Path(runs_dir).joinpath(*(check_name(part, key) for part in parts))


LAUNCH_LOG = "output.log"
LAUNCH_PID = "launch.pid"


def is_placeholder(path: Path) -> bool:
    """A folder a launcher made for a run that has not started yet (log and pid only)."""
    return path.is_dir() and {p.name for p in path.iterdir()} <= {LAUNCH_LOG, LAUNCH_PID}


def create_run_dir(runs_dir: str | Path, name: str) -> Path:
    """Make runs/<name>/ (and checkpoints/); refuse to reuse an existing run's folder."""
    path = run_dir_for(runs_dir, name)
    if path.exists() and not is_placeholder(path):
        raise WorkbenchError(
            f"{path}: a run with this name exists; pick another --name or --resume {path}"
        )
    path.mkdir(parents=True, exist_ok=True)
    (path / "checkpoints").mkdir()
    return path


class RunLock:
    """An exclusive flock on runs/<name>/.lock held while a process writes the run."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / ".lock"
        self._fh: IO[str] | None = None

    def acquire(self) -> RunLock:
        fh = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise WorkbenchError(
                f"{self.path.parent}: another process is writing this run"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def is_locked(run_dir: Path) -> bool:
    lock = run_dir / ".lock"
    if not lock.is_file():
        return False
    try:
        with open(lock, "a+", encoding="utf-8") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fh, fcntl.LOCK_UN)
    except OSError:  # a lock we cannot open is no live writer's
        return False
    return False


@dataclass
class RunInfo:
    name: str
    path: str
    status: str  # running | finished | failed | interrupted | stale | damaged
    preset: str
    method: str
    epoch: int
    epochs: int
    best_robust_acc: float | None  # validation, as every epoch_end reports it
    last_clean_acc: float | None
    started: float | None
    best_robust_interval: list[float] | None = None  # 95% Wilson
    last_clean_interval: list[float] | None = None
    phase: str = ""  # while running: training, evaluating, saving, testing (see run_state.py)
    note: str = ""  # the user's note and tags (engine/records/run_ops.py keeps them in notes.json)
    tags: list[str] = field(default_factory=list)
    damage: str = ""  # the first line of events.jsonl no reader could trust (file, line, why)
    best_clean_acc: float | None = None  # the epoch's that set best_robust_acc (Home shows it)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_SUMMARY_CACHE: dict[Path, tuple[tuple[int, int], RunInfo]] = {}


def run_info(run_dir: Path) -> RunInfo:
    """Summarise a run from its events alone (the same stream every face reads).

    The summary of an unchanged events file is reused (keyed by mtime and
    size), so a face polling many long runs every second does not re-read
    megabytes of events on the machine that trains; only liveness is re-checked.
    """
    path = run_dir / "events.jsonl"
    try:
        st = path.stat()
        key = (st.st_mtime_ns, st.st_size)
    except FileNotFoundError:
        key = (0, 0)
    hit = _SUMMARY_CACHE.get(run_dir)
    info = hit[1] if hit is not None and hit[0] == key else _summarise(run_dir)
    _SUMMARY_CACHE[run_dir] = (key, info)
    note, tags = read_note(run_dir)
    if note or tags:
        info = replace(info, note=note, tags=tags)
    if info.status == "running" and not is_locked(run_dir):
        # the writer died without a last word; its last phase is no longer what it does
        info = replace(info, status="stale", phase="")
    if info.damage and info.status != "running":  # a live run keeps its status; damage shows
        info = replace(info, status="damaged")
    return info


NOTES = "notes.json"  # {"note": str, "tags": [str, ...]}: written by engine/records/run_ops.py


def read_note(run_dir: Path) -> tuple[str, list[str]]:
    """The user's note and tags for a run ("" and [] when it has none or they are unreadable)."""
    path = run_dir / NOTES
    if not path.is_file():
        return "", []
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return "", []
    if not isinstance(doc, dict):
        return "", []
    note, tags = doc.get("note", ""), doc.get("tags", [])
    return (
        note if isinstance(note, str) else "",
        [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else [],
    )


def _summarise(run_dir: Path) -> RunInfo:
    state = RunState()
    events = run_dir / "events.jsonl"
    log = read_log(events) if events.exists() else EventLog()
    for e in log.events:
        state.apply(e, checked=True)
    state.damage[:0] = [str(d) for d in log.damage]
    status = "stale" if state.status == "starting" else state.status  # no run_started at all
    return RunInfo(
        run_dir.name,
        str(run_dir),
        status,
        state.name,
        state.method,
        state.current_epoch(),
        state.epochs_total,
        state.best_robust_acc,
        state.last_clean_acc,
        state.started,
        state.best_robust_interval,
        state.last_clean_interval,
        state.phase if status == "running" else "",
        damage=state.damaged,
        best_clean_acc=_best_clean(state),
    )


def _best_clean(state: RunState) -> float | None:
    """The clean accuracy of the epoch the best checkpoint is from: the first to reach the
    best robust accuracy (the trainer keeps a new best only when it is higher)."""
    best = state.best_robust_acc
    if best is None:
        return None
    for robust, clean in zip(state.robust_acc, state.clean_acc, strict=True):
        if robust == best:
            return clean
    return None


STUDY_MARK = ".study"  # RUNS/<study>/.study: the folder holds a study's members (engine/study)


def list_runs(runs_dir: str | Path) -> list[RunInfo]:
    """Every run, and every study member as `<study>/<member>`, newest first."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    dirs = [p for p in root.iterdir() if p.is_dir() and (p / "events.jsonl").exists()]
    infos = [run_info(p) for p in dirs]
    for study in (p for p in root.iterdir() if (p / STUDY_MARK).is_dir()):
        for m in study.iterdir():
            if m.is_dir() and (m / "events.jsonl").exists():
                infos.append(replace(run_info(m), name=f"{study.name}/{m.name}"))
    return sorted(infos, key=lambda r: r.started or 0.0, reverse=True)
