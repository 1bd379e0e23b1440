"""Start runs as detached processes and stop them gracefully.

A run launched from the app is `workbench run PRESET --headless` in its own
process session (setsid), with stdout and stderr going to
`runs/<name>/output.log`, so quitting the app or losing the SSH connection
leaves it training. Stopping sends SIGINT to the pid the run wrote into its
lock file: the run checkpoints and exits 130.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from engine.records.run_request import Preflight, RunRequest
from engine.records.run_state import RunState
from engine.records.runs import LAUNCH_LOG, LAUNCH_PID, is_locked, is_placeholder
from engine.spec.errors import WorkbenchError


@dataclass
class Launched:
    name: str
    run_dir: Path
    pid: int
    log: Path


def launch(checked: Preflight, python: str | None = None) -> Launched:
    """Spawn a checked run detached (the form ran its preflight); returns at once, the run
    writes its own events. A folder an earlier launch left without a run is reused, as
    `workbench run` itself would."""
    run_dir = checked.run_dir
    run_dir.mkdir(parents=True, exist_ok=is_placeholder(run_dir))
    return _spawn(checked.pinned().command(python), run_dir, "wb")


def resume(run_dir: Path, python: str | None = None) -> Launched:
    """Continue an interrupted run detached (`workbench run --resume`), output appended."""
    if is_locked(run_dir):
        raise WorkbenchError(f"{run_dir.name} is running already")
    if not (run_dir / "last.safetensors").is_file():
        raise WorkbenchError(f"{run_dir.name}: no last.safetensors to resume from")
    return _spawn(RunRequest(resume=run_dir).command(python), run_dir, "ab")


def _spawn(cmd: list[str], run_dir: Path, mode: str) -> Launched:
    log = run_dir / LAUNCH_LOG
    with open(log, mode) as fh:
        proc = subprocess.Popen(
            cmd,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "120"},
        )
    (run_dir / LAUNCH_PID).write_text(str(proc.pid))
    # reap it when it ends, so a finished run is not left a zombie while the app lives
    threading.Thread(target=proc.wait, daemon=True, name=f"reap-{proc.pid}").start()
    return Launched(run_dir.name, run_dir, proc.pid, log)


def launch_state(run_dir: Path) -> str:
    """For a folder with no events yet: 'starting' while its process lives, else 'failed'."""
    try:
        pid = int((run_dir / LAUNCH_PID).read_text().strip())
    except (OSError, ValueError):
        return "failed"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "failed"
    except PermissionError:
        return "starting"
    try:  # a child that already exited but was not reaped by us is a zombie: failed
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            if fh.read().split(") ", 1)[1].startswith("Z"):
                return "failed"
    except (OSError, IndexError):
        pass
    return "starting"


QUIET_S = 5.0  # an events file written this recently still has a writer, lock or not


def live_status(run_dir: Path, state: RunState) -> str:
    """What the live screen says a run is doing: "launching…" until its first events, its
    phase while a process holds its lock, and "stale" (as Home says) once no process does:
    the writer died without a last word, so "starting" or "running" would wait forever."""
    if state.status not in ("starting", "running"):
        return state.status
    events = run_dir / "events.jsonl"
    try:
        quiet = time.time() - events.stat().st_mtime > QUIET_S
    except OSError:  # no events yet: launching while the launcher's process lives
        return "launching…"
    if quiet and not is_locked(run_dir) and launch_state(run_dir) != "starting":
        return "stale"
    if state.status == "starting":
        return "launching…"
    return state.phase or state.status


def last_output(run_dir: Path, lines: int = 3) -> str:
    """The end of a launched run's output (where its one-line error is)."""
    try:
        text = (run_dir / LAUNCH_LOG).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return " ".join(line.strip() for line in text.strip().splitlines()[-lines:])


def run_pid(run_dir: Path) -> int | None:
    """The pid of the process writing a run, if one holds its lock."""
    lock = run_dir / ".lock"
    if not is_locked(run_dir):
        return None
    try:
        return int(lock.read_text().strip())
    except (OSError, ValueError):
        return None


def stop(run_dir: Path) -> bool:
    """Ask a live run to checkpoint and exit (SIGINT); False if nothing was running."""
    pid = run_pid(run_dir)
    if pid is None:
        return False
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        return False
    return True
