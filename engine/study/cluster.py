"""A study's SLURM jobs: which job runs which member, what the scheduler says of it, cancelling.

Torch-free and submitit-free: `workbench study status` and the app read it
from any login node. The study records each member's job when it submits it
(`RUNS/<study>/.study/jobs.json`: job id, the job's stdout and stderr logs);
the states come from `sacct` (accounting, as real clusters have) and, where
accounting is off or slow to catch up, from `squeue`.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.records.checkpoint_header import atomic_write_bytes
from engine.spec.errors import WorkbenchError
from engine.study import members as ms

JOBS_FILE = "jobs.json"
# the states in which a job is over (sacct's and squeue's spellings)
FINISHED = {
    "BOOT_FAIL",
    "CANCELLED",
    "COMPLETED",
    "DEADLINE",
    "FAILED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "TIMEOUT",
}
CALL_TIMEOUT_S = 30


@dataclass
class JobRecord:
    """One member's job as submitted: its id (`123_4` in an array) and its logs."""

    member: str
    job_id: str
    stdout: str
    stderr: str
    submitted: float


@dataclass
class JobState:
    """What the scheduler says of a job now ('' where it says nothing)."""

    state: str = ""
    node: str = ""
    elapsed: str = ""
    reason: str = ""  # squeue's reason a job waits (Priority, JobArrayTaskLimit, ...)


def jobs_path(runs_dir: Path, study: str) -> Path:
    return ms.study_root(runs_dir, study) / ms.STUDY_DIR / JOBS_FILE


def save_jobs(runs_dir: Path, study: str, records: list[JobRecord]) -> None:
    """Add (or replace) members' job records, atomically."""
    all_ = load_jobs(runs_dir, study)
    all_.update({r.member: r for r in records})
    doc = {k: vars(r) for k, r in sorted(all_.items())}
    atomic_write_bytes(jobs_path(runs_dir, study), json.dumps(doc, indent=1).encode())


def load_jobs(runs_dir: Path, study: str) -> dict[str, JobRecord]:
    """The members' latest job records; a damaged file reads as none (it is advice, not state)."""
    path = jobs_path(runs_dir, study)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    out: dict[str, JobRecord] = {}
    if not isinstance(doc, dict):
        return out
    for k, v in doc.items():
        try:
            out[k] = JobRecord(
                str(v["member"]),
                str(v["job_id"]),
                str(v["stdout"]),
                str(v["stderr"]),
                float(v["submitted"]),
            )
        except (KeyError, TypeError, ValueError):
            continue
    return out


def _run(cmd: list[str]) -> str | None:
    """A SLURM client's stdout, or None when it is missing or refuses (no accounting, ...)."""
    try:
        res = subprocess.run(
            cmd, capture_output=True, text=True, timeout=CALL_TIMEOUT_S, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout if res.returncode == 0 else None


def expand_ids(job_id: str) -> list[str]:
    """`12_[3-5%2]` -> 12_3, 12_4, 12_5 (sacct and squeue fold pending array tasks so)."""
    m = re.fullmatch(r"(\d+)_\[([\d,\-]+)(?:%\d+)?\]", job_id)
    if not m:
        return [job_id]
    out = []
    for part in m.group(2).split(","):
        lo, _, hi = part.partition("-")
        out += [f"{m.group(1)}_{i}" for i in range(int(lo), int(hi or lo) + 1)]
    return out


def query(job_ids: list[str]) -> dict[str, JobState]:
    """The scheduler's view of these jobs: sacct first, squeue for what sacct lacks."""
    if not job_ids:
        return {}
    roots = sorted({j.split("_")[0] for j in job_ids})
    found: dict[str, JobState] = {}
    out = _run(
        ["sacct", "-n", "-P", "-X", "-o", "JobID,State,NodeList,Elapsed", "-j", ",".join(roots)]
    )
    for line in (out or "").splitlines():
        parts = line.split("|")
        if len(parts) != 4:
            continue
        jid, state, node, elapsed = parts
        state = state.split()[0] if state else ""  # "CANCELLED by 0"
        node = "" if node in ("None assigned", "(null)") else node
        for j in expand_ids(jid):
            found[j] = JobState(state, node, elapsed)  # a requeued job's last line wins
    out = _run(["squeue", "-h", "-r", "-o", "%i|%T|%N|%M|%r", "-j", ",".join(roots)])
    for line in (out or "").splitlines():
        parts = line.split("|")
        if len(parts) != 5:
            continue
        jid, state, node, elapsed, reason = parts
        for j in expand_ids(jid):  # squeue is current: it overrides accounting's lag
            old = found.get(j, JobState())
            wait = "" if reason == "None" else reason
            found[j] = JobState(state, node or old.node, elapsed, wait)
    return {j: found[j] for j in job_ids if j in found}


def log_tail(path: str | Path, lines: int = 1) -> str:
    """The last non-empty lines of a job's log (where a job that died says why), joined."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - 16384))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    kept = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " / ".join(kept[-lines:])[:300]


def status_rows(runs_dir: Path, study: str, states: list[ms.MemberState]) -> list[dict[str, Any]]:
    """One row per member: its state on disk beside its job's id, state, node, time and log."""
    records = load_jobs(runs_dir, study)
    live = query([r.job_id for r in records.values()])
    rows = []
    for s in states:
        rec = records.get(s.member.name)
        js = live.get(rec.job_id, JobState()) if rec else JobState()
        rows.append(
            {
                **s.to_dict(),
                "job_id": rec.job_id if rec else "",
                "job_state": js.state,
                "node": js.node,
                "elapsed": js.elapsed,
                "wait_reason": js.reason,
                "log": rec.stdout if rec else "",
                "err_log": rec.stderr if rec else "",
            }
        )
    return rows


def cancel(runs_dir: Path, study: str, wait_s: float = 300.0) -> dict[str, list[str]]:
    """Cancel a study's jobs so that every running member saves first.

    Pending array tasks are cancelled outright (nothing to save). Running ones
    get one SIGTERM in their job steps only (`scancel --signal=TERM`): the
    member's `workbench run` checkpoints and exits 130, its job then ends by
    itself. A job still running after `wait_s` is cancelled for good.
    """
    records = load_jobs(runs_dir, study)
    if not records:
        raise WorkbenchError(f"{jobs_path(runs_dir, study)}: no SLURM jobs recorded for {study!r}")
    ids = [r.job_id for r in records.values()]
    states = query(ids)
    pending = [j for j in ids if states.get(j, JobState()).state in ("PENDING", "REQUEUED")]
    running = [j for j in ids if states.get(j, JobState()).state in ("RUNNING", "CONFIGURING")]
    if pending:
        _run(["scancel", *pending])
    if running:
        _run(["scancel", "--signal=TERM", *running])
    deadline = time.monotonic() + wait_s
    left = running
    while left and time.monotonic() < deadline:
        time.sleep(1.0)
        now = query(left)
        left = [j for j in left if now.get(j, JobState()).state not in FINISHED | {""}]
    if left:
        _run(["scancel", *left])
    return {"pending": pending, "running": running, "forced": left}
