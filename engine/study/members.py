"""Where a study keeps its members and what each one's folder says about it (torch-free).

A member is an ordinary run directory, `RUNS/<study>/<member>/`, so the runs
listing, the app and `inspect` read it as any run. Its state comes from that
folder alone, so a study re-run after an interruption continues from what is
on disk: a finished member with its test evaluation is skipped, a finished one
without it is only evaluated, an interrupted one resumes, a failed one stays
failed (with its reason) until its folder is removed.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.records.checkpoint_header import atomic_write_bytes
from engine.records.events import read_events
from engine.records.runs import (
    LAUNCH_PID,
    STUDY_MARK,
    is_locked,
    is_placeholder,
    run_info,
)
from engine.spec import catalog
from engine.spec.errors import WorkbenchError
from engine.study.spec import Member, StudySpec

STUDY_DIR = STUDY_MARK  # RUNS/<study>/.study: the study file as run, job logs, the report
STUDY_FILE = "study.toml"  # the study file as it was run
RESOLVED_FILE = "members.json"  # the study and its members with presets resolved to paths
REPORT_FILE = "report.json"

PENDING, RUNNING, EVALUATING, TRAINED, DONE, INTERRUPTED, FAILED = (
    "pending",
    "running",
    "evaluating",  # trained; its test evaluation is running now
    "trained",  # finished training, test evaluation missing
    "done",
    "interrupted",
    "failed",
)


def study_root(runs_dir: Path, name: str) -> Path:
    return runs_dir / name


def member_dir(runs_dir: Path, study: str, m: Member) -> Path:
    return study_root(runs_dir, study) / m.name


def result_path(runs_dir: Path, study: str, m: Member) -> Path:
    """What the member's job recorded about its last attempt (exit codes, failure reason)."""
    return study_root(runs_dir, study) / STUDY_DIR / "members" / f"{m.name}.json"


_EVAL_CACHE: dict[tuple[Path, str], tuple[tuple[tuple[str, int], ...], Path | None]] = {}


def evaluation_of(run_dir: Path, suite: str) -> Path | None:
    """The newest saved `suite` evaluation of the member's selected checkpoint, if any.

    Cached by the eval folder's file names and times: a study polls its members
    twice a second and an evaluation file holds every example's outcome.
    """
    files = sorted((run_dir / "eval").glob("*.json")) if (run_dir / "eval").is_dir() else []
    key = tuple((f.name, f.stat().st_mtime_ns) for f in files)
    hit = _EVAL_CACHE.get((run_dir, suite))
    if hit is not None and hit[0] == key:
        return hit[1]
    found = _evaluation_of(run_dir, suite, files)
    _EVAL_CACHE[(run_dir, suite)] = (key, found)
    return found


def _same_suite(doc: dict[str, Any], suite: str) -> bool:
    """Whether an evaluation ran the study's suite: by its name, or, for a study that names a
    suite file, by that file (an evaluation records the suite's own name and its file)."""
    if doc.get("suite") == suite:
        return True
    saved = doc.get("suite_file")
    if not isinstance(saved, str) or "\0" in saved:
        return False
    try:
        return Path(saved).resolve() == catalog.resolve_suite(suite).resolve()
    except (WorkbenchError, OSError):
        return False


def _evaluation_of(run_dir: Path, suite: str, files: list[Path]) -> Path | None:
    best = (run_dir / "best.safetensors").resolve()
    found = []
    for f in files:
        try:
            doc = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            continue
        if (
            isinstance(doc, dict)
            and doc.get("kind", "suite") == "suite"
            and _same_suite(doc, suite)
            and isinstance(doc.get("checkpoint"), str)
            and "\0" not in doc["checkpoint"]
            and Path(doc["checkpoint"]).resolve() == best
            and "per_example" in doc
        ):
            found.append(f)
    return found[-1] if found else None


@dataclass
class MemberState:
    member: Member
    status: str
    run_dir: Path
    epoch: int = 0
    epochs: int = 0
    reason: str = ""  # why it failed
    evaluation: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.member.name,
            "arm": self.member.arm,
            "label": self.member.label,
            "seed": self.member.seed,
            "status": self.status,
            "epoch": self.epoch,
            "epochs": self.epochs,
            "reason": self.reason,
            "run_dir": str(self.run_dir),
            "evaluation": None if self.evaluation is None else str(self.evaluation),
        }


def _failure(run_dir: Path) -> str:
    events = run_dir / "events.jsonl"
    for e in reversed(read_events(events) if events.exists() else []):
        if e["type"] == "run_failed":
            return str(e.get("error", "failed"))
    return ""


def member_state(runs_dir: Path, study: str, suite: str, m: Member) -> MemberState:
    d = member_dir(runs_dir, study, m)
    recorded: dict[str, Any] = {}
    rp = result_path(runs_dir, study, m)
    if rp.is_file():
        try:
            recorded = json.loads(rp.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            recorded = {}
        if not isinstance(recorded, dict):
            recorded = {}
        recorded = {k: v for k, v in recorded.items() if isinstance(v, str | int)}
    if m.fixed:
        return _fixed_state(m, d, suite, recorded)
    if not d.is_dir() or not (d / "events.jsonl").exists():
        placeholder = is_placeholder(d) or (not d.exists() and recorded.get("stage") == "job")
        if placeholder and recorded.get("status") == FAILED:
            return MemberState(m, FAILED, d, reason=recorded.get("reason", ""))
        live = d.is_dir() and is_locked(d)
        return MemberState(m, RUNNING if live else PENDING, d)
    info = run_info(d)
    st = MemberState(m, PENDING, d, info.epoch, info.epochs)
    if info.status == "running":
        st.status = RUNNING
    elif info.status == "damaged":  # never resumed or counted on a guess: the user looks first
        st.status, st.reason = FAILED, f"damaged: {info.damage}"
    elif info.status == "failed":
        st.status, st.reason = FAILED, _failure(d) or recorded.get("reason", "")
    elif info.status == "finished":
        st.evaluation = evaluation_of(d, suite)
        st.status = DONE if st.evaluation else EVALUATING if alive(d) else TRAINED
        if not st.evaluation and recorded.get("stage") == "eval" and recorded.get("exit"):
            st.status, st.reason = FAILED, recorded.get("reason", "evaluation failed")
    else:  # interrupted, or stale (the writer died)
        st.status = INTERRUPTED
        if recorded.get("stage") == "job":  # its job died: say how, the next study resumes it
            st.reason = recorded.get("reason", "")
    return st


def _fixed_state(m: Member, d: Path, suite: str, recorded: dict[str, Any]) -> MemberState:
    """A fixed model's member: pending until its job put the model in its folder as
    `best.safetensors` (copied or imported), then evaluated like any member's."""
    st = MemberState(m, PENDING, d)
    busy = d.is_dir() and alive(d)
    if recorded.get("status") == FAILED and d.is_dir() and not busy:  # rm the folder: retry
        st.status, st.reason = FAILED, str(recorded.get("reason", ""))
    elif (d / "best.safetensors").is_file():
        st.evaluation = evaluation_of(d, suite)
        st.status = DONE if st.evaluation else EVALUATING if busy else TRAINED
    elif busy:
        st.status = RUNNING
    return st


def record_job_end(
    runs_dir: Path, study: str, m: Member, job_id: str, status: str, reason: str
) -> None:
    """What a job that ended without a word from the member says (state, its log's last line)."""
    doc = {
        "member": m.name,
        "time": time.time(),
        "stage": "job",
        "job_id": job_id,
        "status": status,
        "reason": reason,
    }
    path = result_path(runs_dir, study, m)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps(doc, indent=1).encode())


def alive(run_dir: Path) -> bool:
    """Whether the process the member's job started last (run or eval) still runs."""
    try:
        pid = int((run_dir / LAUNCH_PID).read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    try:  # an exited child its parent has not reaped yet is a zombie: not alive
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            return not fh.read().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return True


def save_resolved(runs_dir: Path, spec: StudySpec, members: list[Member]) -> None:
    """Record the members as run, so the report and the app need no preset lookups later."""
    doc = {
        "spec": spec.model_dump(),
        "members": [
            {
                "arm": m.arm,
                "setting": [list(kv) for kv in m.setting],
                "seed": m.seed,
                "preset": m.preset,
                "sets": list(m.sets),
                "fixed": list(m.fixed),
            }
            for m in members
        ],
    }
    path = study_root(runs_dir, spec.name) / STUDY_DIR / RESOLVED_FILE
    atomic_write_bytes(path, json.dumps(doc, indent=1).encode())


def load_resolved(runs_dir: Path, name: str) -> tuple[StudySpec, list[Member]]:
    """A study that ran here, as it ran (whatever the current folder)."""
    path = study_root(runs_dir, name) / STUDY_DIR / RESOLVED_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        spec = StudySpec.model_validate(doc["spec"])
        members = [
            Member(
                d["arm"],
                tuple((k, v) for k, v in d["setting"]),
                d["seed"],
                d["preset"],
                tuple(d["sets"]),
                tuple(d.get("fixed", ())),  # studies recorded before fixed arms have none
            )
            for d in doc["members"]
        ]
    except FileNotFoundError:
        raise WorkbenchError(
            f"{study_root(runs_dir, name)}: no study called {name!r} here"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise WorkbenchError(f"{path}: not a study record ({exc})") from None
    return spec, members
