"""What one study member's job runs: the `workbench` command line, nothing of the engine pickled.

`MemberJob` is a small picklable record of two command lines (train or
resume, then evaluate on the test split) that submitit ships to wherever the
job runs, local or SLURM. It runs them as child processes, appends their
output to the member's `output.log`, and records the outcome of the last
stage in `RUNS/<study>/.study/members/<member>.json` (exit code and, for a
failure, the last line the command printed), so the report can name why a
member failed.

Signals: on the local executor the child runs in its own session and the
study process alone sends it SIGTERM (one signal, so `workbench run` saves
and exits 130); the terminal's Ctrl-C reaches neither the child nor, as
SIGINT, this job. Under SLURM the child shares the job's session, so the
scheduler's SIGTERM reaches it directly, and the job forwards SIGUSR2 (the
time-limit warning submitit asks for), on which `workbench run` saves and stops.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.records.checkpoint_header import atomic_write_bytes
from engine.records.runs import LAUNCH_LOG, LAUNCH_PID


@dataclass
class MemberJob:
    """Train (or resume) a member, then evaluate its selected checkpoint on the test split."""

    name: str
    run_dir: str
    result: str  # where the outcome of the last stage is recorded
    run_argv: list[str] | None  # None: already trained, evaluate only
    eval_argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    own_session: bool = True  # local: the study process signals the child itself
    copy_from: str | None = None  # a fixed arm's checkpoint, copied in as best.safetensors

    def _stage(self, stage: str, argv: list[str]) -> tuple[int, str]:
        run_dir = Path(self.run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "120", **self.env}
        with open(run_dir / LAUNCH_LOG, "ab") as log:
            log.write(f"\n$ workbench {' '.join(argv[3:])}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=self.own_session,
                env=env,
            )
            (run_dir / LAUNCH_PID).write_text(str(proc.pid))
            # SLURM's time-limit warning: the member saves and stops (a re-run resumes it)
            signal.signal(signal.SIGUSR2, lambda signum, frame: proc.send_signal(signal.SIGUSR2))
            code = proc.wait()
        return code, _last_line(run_dir / LAUNCH_LOG)

    def _record(self, **doc: Any) -> dict[str, Any]:
        doc = {"member": self.name, "time": time.time(), **doc}
        path = Path(self.result)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, json.dumps(doc, indent=1).encode())
        return doc

    def __call__(self) -> dict[str, Any]:
        if self.own_session:  # Ctrl-C in the study's terminal: the study process handles it
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        if self.copy_from is not None:
            Path(self.run_dir).mkdir(parents=True, exist_ok=True)  # a failure is its folder's
            try:  # the member evaluates its own copy: the study's evidence stays in its folder
                data = Path(self.copy_from).read_bytes()
                atomic_write_bytes(Path(self.run_dir) / "best.safetensors", data)
            except OSError as exc:
                reason = f"{self.copy_from}: {exc.strerror or exc}"
                return self._record(stage="run", exit=2, status="failed", reason=reason)
        if self.run_argv is not None:
            code, last = self._stage("run", self.run_argv)
            if code != 0:
                status = "interrupted" if code == 130 else "failed"
                return self._record(stage="run", exit=code, status=status, reason=last)
        code, last = self._stage("eval", self.eval_argv)
        if code != 0:
            status = "interrupted" if code == 130 else "failed"
            return self._record(stage="eval", exit=code, status=status, reason=last)
        return self._record(stage="eval", exit=0, status="done", reason="")


def _last_line(log: Path) -> str:
    """The last non-empty line of a log (a `workbench` error is one line), at most 300 chars."""
    try:
        with open(log, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 8192))
            tail = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    lines = [ln.strip() for ln in tail.splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""
