"""Run a study's members through submitit, N at a time, and continue one that was interrupted.

The scheduling is submitit's: its local executor on this machine (the tests
use it), SLURM on a cluster (partition, time, GPUs and CPUs per member, and
the array's concurrency limit as options). Each job is a `MemberJob`: the
`workbench run` and `workbench eval` command lines. A stop (Ctrl-C, SIGTERM)
sends every running local member one SIGTERM, so each checkpoints and exits
130, waits for them, and returns "interrupted"; re-running the study then
skips finished members and resumes interrupted ones.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.records.run_request import EvalRequest, RunRequest, workbench_command
from engine.records.runs import LAUNCH_PID, is_locked
from engine.spec.errors import WorkbenchError
from engine.study import cluster
from engine.study import members as ms
from engine.study.jobs import MemberJob
from engine.study.spec import Member, StudySpec

POLL_S = 0.5
SLURM_POLL_S = 5.0  # how often the scheduler is asked about jobs that end without a result
STOP_WAIT_S = 600.0  # a member saving a checkpoint after SIGTERM takes seconds; wait this at most


@dataclass
class SlurmOptions:
    """What each member's job asks SLURM for (each maps to one sbatch option: docs/studies.md)."""

    partition: str = ""
    time_min: int = 240
    gpus_per_member: int = 0  # one process (task) per GPU
    cpus_per_member: int = 0  # per process; 0: submitit's default
    mem_gb: int = 0
    array_limit: int = 0  # at most this many members at once (0: --jobs)
    signal_delay_s: int = 120  # SIGUSR2 this long before the time limit: members save
    requeues: int = 20  # time-limit requeues per member before it is left interrupted


def tasks_per_member(slurm: SlurmOptions, nproc: int) -> int:
    """Processes of one member: one per GPU, else --nproc; both given, they must agree."""
    if slurm.gpus_per_member > 1 and nproc > 1 and slurm.gpus_per_member != nproc:
        raise WorkbenchError(
            f"--nproc {nproc} --slurm-gpus {slurm.gpus_per_member}: a member runs one process "
            "per GPU; give one of them, or the same number"
        )
    return max(slurm.gpus_per_member, nproc, 1)


def cpu_count() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def job_for(
    spec: StudySpec,
    m: Member,
    state: ms.MemberState,
    runs_dir: Path,
    threads: int,
    own: bool,
    nproc: int = 1,
) -> MemberJob:
    """The member's job from its state: a new run, a resume, or its evaluation alone.

    `own` (the local executor): `--nproc` starts the ranks itself; under SLURM
    (`own` False) the job is `nproc` tasks, each one rank.
    """
    root = ms.study_root(runs_dir, spec.name).resolve()
    run_dir = root / m.name
    local_nproc = nproc if own else 1
    copy_from, run_argv = None, None
    if m.fixed and state.status == ms.PENDING:  # a fixed model: copy or import it, no training
        if m.fixed[0] == "--checkpoint":
            copy_from = m.fixed[1]
        else:
            out = str(run_dir / "best.safetensors")
            run_argv = workbench_command(["import", *m.fixed, "--out", out])
    elif not m.fixed and state.status == ms.PENDING:
        run_argv = RunRequest(m.preset, m.sets, m.name, root, nproc=local_nproc).command()
    elif not m.fixed and state.status == ms.INTERRUPTED:
        run_argv = RunRequest(resume=run_dir, nproc=local_nproc).command()
    # otherwise trained (or a fixed model in place): evaluate only
    ev = EvalRequest(run_dir / "best.safetensors", spec.suite, spec.samples or 0)
    env = {"OMP_NUM_THREADS": str(threads)} if threads else {}
    return MemberJob(
        m.name,
        str(run_dir),
        str(ms.result_path(runs_dir, spec.name, m).resolve()),
        run_argv,
        ev.command(),
        env,
        own_session=own,
        copy_from=copy_from,
        ranks=1 if own or m.fixed else nproc,  # a fixed model's import and eval: one process
    )


def make_executor(
    kind: str, folder: Path, jobs: int, slurm: SlurmOptions, name: str, tasks: int = 1
) -> Any:
    import submitit

    if kind == "local":
        ex = submitit.LocalExecutor(folder=folder)
        ex.update_parameters(timeout_min=60 * 24 * 30)  # the study decides when to stop
        return ex
    if kind != "slurm":
        raise WorkbenchError(f"--executor {kind}: use local or slurm")
    ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=slurm.requeues)
    params: dict[str, Any] = {
        "time": slurm.time_min,
        "job_name": f"wb-{name}",
        "array_parallelism": slurm.array_limit or jobs,
        "signal_delay_s": slurm.signal_delay_s,  # SIGUSR2 before the time limit: members save
        "ntasks_per_node": tasks,
    }
    if slurm.partition:
        params["partition"] = slurm.partition
    if slurm.gpus_per_member:
        params["gpus_per_node"] = slurm.gpus_per_member
    if slurm.cpus_per_member:
        params["cpus_per_task"] = slurm.cpus_per_member
    if slurm.mem_gb:
        params["mem"] = f"{slurm.mem_gb}GB"
    ex.update_parameters(**params)
    return ex


def _pid_alive(run_dir: Path) -> int | None:
    """The pid of the member's live child process (run or eval), if any."""
    if not ms.alive(run_dir):
        return None
    try:
        return int((run_dir / LAUNCH_PID).read_text().strip())
    except (OSError, ValueError):
        return None


def run_study(
    spec: StudySpec,
    members: list[Member],
    runs_dir: Path,
    *,
    jobs: int = 1,
    executor: str = "local",
    slurm: SlurmOptions | None = None,
    nproc: int = 1,
    stop: threading.Event | None = None,
    on_update: Callable[[list[ms.MemberState]], None] = lambda states: None,
) -> str:
    """Bring every member to done or failed; "finished", or "interrupted" after a stop (or
    when a member's job was cancelled from outside, e.g. `scancel`: it saved and waits)."""
    stop = stop or threading.Event()
    slurm = slurm or SlurmOptions()
    root = ms.study_root(runs_dir, spec.name)
    folder = root / ms.STUDY_DIR / "jobs"
    local = executor == "local"
    tasks = tasks_per_member(slurm, nproc)
    folder.mkdir(parents=True, exist_ok=True)
    # local: the machine's cores shared among members; SLURM: what each process was given
    threads = max(1, cpu_count() // max(1, jobs * nproc)) if local else slurm.cpus_per_member
    ex = make_executor(executor, folder.resolve(), jobs, slurm, spec.name, tasks)

    def states() -> list[ms.MemberState]:
        return [ms.member_state(runs_dir, spec.name, spec.suite, m) for m in members]

    todo = [s for s in states() if s.status in (ms.PENDING, ms.INTERRUPTED, ms.TRAINED)]
    for s in todo:  # a crashed study can leave a placeholder with a dead launch.pid
        if (
            s.status == ms.PENDING
            and s.run_dir.is_dir()
            and not (s.run_dir / "events.jsonl").exists()
        ):
            shutil.rmtree(s.run_dir)
    running: dict[str, tuple[Any, ms.MemberState]] = {}
    on_update(states())
    if not local and todo:  # one SLURM array, its concurrency capped by array_parallelism
        with ex.batch():
            submitted = [
                (ex.submit(job_for(spec, s.member, s, runs_dir, threads, False, tasks)), s)
                for s in todo
            ]
        running = {s.member.name: (j, s) for j, s in submitted}
        cluster.save_jobs(
            runs_dir,
            spec.name,
            [
                cluster.JobRecord(
                    s.member.name, j.job_id, str(j.paths.stdout), str(j.paths.stderr), time.time()
                )
                for j, s in submitted
            ],
        )
        todo = []
    last_query = 0.0
    while (todo or running) and not stop.is_set():
        while local and todo and len(running) < jobs:
            s = todo.pop(0)
            job = ex.submit(job_for(spec, s.member, s, runs_dir, threads, True, nproc))
            running[s.member.name] = (job, s)
        ended = [k for k, (j, _) in running.items() if j.done()]
        if not local and time.monotonic() - last_query > SLURM_POLL_S:
            last_query = time.monotonic()
            ended += _ended_without_result(runs_dir, spec, running, set(ended))
        for k in ended:
            del running[k]
        on_update(states())  # cheap: run summaries are cached by the events file's size
        stop.wait(POLL_S)
    if not stop.is_set():
        final = states()
        on_update(final)
        return "interrupted" if any(s.status == ms.INTERRUPTED for s in final) else "finished"
    # Stopped. Local: end the jobs first (their children run in their own sessions and
    # live on), so no job starts another stage; then each live child gets one SIGTERM,
    # checkpoints and exits 130. SLURM: `cluster.cancel` signals the running members and
    # waits until they saved.
    if not local:  # pending tasks cancelled, running ones signalled and waited for
        cluster.cancel(runs_dir, spec.name, STOP_WAIT_S)
    for job, _ in running.values():
        job.cancel(check=False)
    if local:
        time.sleep(1.5)  # the controllers kill their jobs 1 s after the SIGINT
        deadline = time.monotonic() + STOP_WAIT_S
        signalled: set[int] = set()
        while time.monotonic() < deadline:
            alive = []
            for _, s in running.values():
                pid = _pid_alive(s.run_dir)
                if pid is not None and pid not in signalled:
                    os.kill(pid, signal.SIGTERM)
                    signalled.add(pid)
                if pid is not None or is_locked(s.run_dir):
                    alive.append(s)
            if not alive:
                break
            time.sleep(POLL_S)
    on_update(states())
    return "interrupted"


def _ended_without_result(
    runs_dir: Path, spec: StudySpec, running: dict[str, tuple[Any, ms.MemberState]], seen: set[str]
) -> list[str]:
    """Members whose SLURM job is over though its wrapper left no result (killed: out of
    memory, a node failure, a time limit past its requeues). Each keeps the job's state and
    the last line of its stderr log as its reason."""
    records = cluster.load_jobs(runs_dir, spec.name)
    live = cluster.query([j.job_id for k, (j, _) in running.items() if k not in seen])
    out = []
    for k, (job, s) in running.items():
        state = live.get(job.job_id)
        if k in seen or state is None or state.state not in cluster.FINISHED:
            continue
        if job.done():  # the result arrived meanwhile
            out.append(k)
            continue
        rec = records.get(k)
        why = cluster.log_tail(rec.stderr) if rec else ""
        failed = state.state not in ("COMPLETED", "CANCELLED", "PREEMPTED", "TIMEOUT")
        ms.record_job_end(
            runs_dir,
            spec.name,
            s.member,
            job.job_id,
            ms.FAILED if failed else ms.INTERRUPTED,
            f"SLURM {state.state}" + (f": {why}" if why else ""),
        )
        out.append(k)
    return out
