"""What one study member's job runs: the `workbench` command line, nothing of the engine pickled.

`MemberJob` is a small picklable record of two command lines (train or
resume, then evaluate on the test split) that submitit ships to wherever the
job runs, local or SLURM. It runs them as child processes, appends their
output to the member's `output.log`, and records the outcome of the last
stage in `RUNS/<study>/.study/members/<member>.json` (exit code and, for a
failure, the last line the command printed), so the report can name why a
member failed; under SLURM that line also goes to the job's stderr log.

Signals: on the local executor the child runs in its own session and the
study process alone sends it SIGTERM (one signal, so `workbench run` saves
and exits 130); the terminal's Ctrl-C reaches neither the child nor, as
SIGINT, this job. Under SLURM the scheduler signals every process of the
job's steps itself: `scancel`'s SIGTERM reaches the child once (submitit's
wrapper ignores it), and so does the time-limit warning SIGUSR2
(`--signal=USR2@N`), on which `workbench run` saves and stops. submitit then
calls `checkpoint`, which waits for the child to have saved and hands back
the job that continues the member (resume, or the evaluation with
`--resume`); submitit requeues the job with it (`scontrol requeue`), so the
member goes on in the same job id without the study's help.

A member of several processes (`ranks` > 1) is one SLURM job of that many
tasks: every task runs this job, and each `workbench run` joins the same DDP
world from SLURM's variables (engine/train/slurm_world.py). Rank 0 alone
keeps the member's log, evaluates and records the outcome.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.records.checkpoint_header import atomic_write_bytes
from engine.records.run_request import RunRequest
from engine.records.runs import LAUNCH_LOG, LAUNCH_PID, run_info

SAVE_WAIT_S = 300.0  # how long `checkpoint` waits for the child to save after SIGUSR2
# a stop, not a failure: `workbench run` saved and exited 130, or a signal ended the process
# after its run had ended or while it evaluated (an evaluation keeps its progress per batch)
STOPPED = {130, -signal.SIGTERM, -signal.SIGINT, -signal.SIGUSR2}


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
    ranks: int = 1  # SLURM tasks of this member (DDP over srun); rank 0 evaluates
    _child: Any = field(default=None, init=False, repr=False, compare=False)
    _stage_now: str = field(default="", init=False, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:  # a live child is never pickled
        return {**self.__dict__, "_child": None, "_stage_now": ""}

    @staticmethod
    def rank() -> int:
        try:
            return int(os.environ.get("SLURM_PROCID", "0"))
        except ValueError:
            return 0

    def _stage(self, stage: str, argv: list[str]) -> tuple[int, str]:
        run_dir = Path(self.run_dir)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "120", **self.env}
        if stage == "eval" or self.ranks <= 1:  # DDP comes from the step, never to eval
            env.pop("SLURM_STEP_NUM_TASKS", None)
        self._stage_now = stage
        if self.ranks > 1 and self.rank() > 0:  # rank 0 keeps the member's log and pid
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, env=env)
            self._child = proc
            return proc.wait(), ""
        run_dir.mkdir(parents=True, exist_ok=True)
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
            self._child = proc
            (run_dir / LAUNCH_PID).write_text(str(proc.pid))
            code = proc.wait()
        return code, _last_line(run_dir / LAUNCH_LOG)

    def _record(self, **doc: Any) -> dict[str, Any]:
        doc = {"member": self.name, "time": time.time(), **doc}
        if doc.get("status") == "failed" and not self.own_session:  # into the job's log too
            print(f"member {self.name} failed ({doc['stage']}): {doc['reason']}", file=sys.stderr)
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
            if self.ranks > 1 and self.rank() > 0:
                return {"member": self.name, "rank": self.rank(), "exit": code}
            if code != 0:
                status = "interrupted" if code in STOPPED else "failed"
                return self._record(stage="run", exit=code, status=status, reason=last)
        elif self.ranks > 1 and self.rank() > 0:
            return {"member": self.name, "rank": self.rank(), "exit": 0}
        code, last = self._stage("eval", self.eval_argv)
        if code != 0:
            status = "interrupted" if code in STOPPED else "failed"
            return self._record(stage="eval", exit=code, status=status, reason=last)
        return self._record(stage="eval", exit=0, status="done", reason="")

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """SLURM's warning before the time limit (or a preemption): the job that continues.

        Called by submitit on SIGUSR2, which SLURM sent the child too: wait until
        it has saved and exited, then return the member's next job (its
        resume, or its evaluation with --resume) for submitit to requeue.
        """
        from submitit.helpers import DelayedSubmission

        proc = self._child
        if proc is not None and self._stage_now == "run":
            proc.send_signal(signal.SIGUSR2)  # already sent by SLURM: harmless, stop is set
        elif proc is not None:
            proc.send_signal(signal.SIGTERM)  # an evaluation keeps its progress per batch
        deadline = time.monotonic() + SAVE_WAIT_S
        while proc is not None and _running(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        return DelayedSubmission(self.continuation())

    def continuation(self) -> MemberJob:
        """This member's job from where its folder says it stands now."""
        run_dir = Path(self.run_dir)
        python = self.eval_argv[0]
        eval_argv = [*self.eval_argv]
        if "--resume" not in eval_argv:
            eval_argv.append("--resume")
        run_argv: list[str] | None = self.run_argv
        copy_from = self.copy_from
        if self.copy_from is not None or (self.run_argv or [""] * 4)[3] == "import":
            if (run_dir / "best.safetensors").is_file():  # a fixed model already in place
                run_argv, copy_from = None, None
        elif (run_dir / "events.jsonl").is_file():
            if run_info(run_dir).status == "finished":
                run_argv = None
            elif (run_dir / "last.safetensors").is_file():
                run_argv = RunRequest(resume=run_dir).command(python)
        return MemberJob(
            self.name,
            self.run_dir,
            self.result,
            run_argv,
            eval_argv,
            dict(self.env),
            own_session=self.own_session,
            copy_from=copy_from,
            ranks=self.ranks,
        )


def _running(pid: int) -> bool:
    """Whether a child still runs (a zombie, exited but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            return not fh.read().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return False


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
