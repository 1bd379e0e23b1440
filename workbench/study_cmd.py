"""`workbench study STUDY.toml` runs a study; `study report NAME` prints its answer;
`study status NAME` lists its members beside their SLURM jobs; `study cancel NAME` stops them.

Parsing, signals and exit codes only: the engine (engine/study/) runs the
members and computes the report, workbench/study_print.py prints it. Both are
imported when a study command runs (the report needs scipy, the study file
pydantic), not when the CLI starts.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from engine.records.runs import check_runs_dir
from engine.spec.errors import WorkbenchError
from workbench.printing import err, fail, print_json


def study(
    *,  # typer passes every option by name
    target: Annotated[str, typer.Argument(help="A study file, or report, status or cancel.")],
    name: Annotated[
        str | None, typer.Argument(help="With report, status or cancel: the study's name.")
    ] = None,
    jobs: Annotated[int, typer.Option("--jobs", min=1, help="Members at once.")] = 1,
    runs_dir: Annotated[Path, typer.Option("--runs-dir", help="Where runs live.")] = Path("runs"),
    executor: Annotated[str, typer.Option("--executor", help="local or slurm.")] = "local",
    partition: Annotated[str, typer.Option("--slurm-partition")] = "",
    time_min: Annotated[int, typer.Option("--slurm-time", min=1, help="Minutes.")] = 240,
    gpus: Annotated[int, typer.Option("--slurm-gpus", min=0, help="GPUs per member.")] = 0,
    cpus: Annotated[int, typer.Option("--slurm-cpus", min=0, help="CPUs per member.")] = 0,
    mem_gb: Annotated[int, typer.Option("--slurm-mem-gb", min=0)] = 0,
    array_limit: Annotated[
        int, typer.Option("--slurm-array-limit", min=0, help="Members at once (default --jobs).")
    ] = 0,
    signal_delay: Annotated[
        int,
        typer.Option(
            "--slurm-signal-delay", min=1, help="Seconds of SIGUSR2 warning before the time limit."
        ),
    ] = 120,
    requeues: Annotated[
        int, typer.Option("--slurm-requeues", min=0, help="Time-limit requeues per member.")
    ] = 20,
    nproc: Annotated[
        int, typer.Option("--nproc", min=1, help="Processes per member (DDP; srun on SLURM).")
    ] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="report: one JSON document.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="report: one CSV row per member.")] = False,
) -> None:
    """Run a study of many members (arms x grid x seeds), or print a study's report."""
    from engine.study import members as ms
    from engine.study import report as rp
    from workbench import study_print

    runs_dir = check_runs_dir(runs_dir)
    if target in ("report", "status", "cancel"):
        if not name:
            raise WorkbenchError(f"study {target}: give the study's name (see 'workbench runs')")
        spec, members = ms.load_resolved(runs_dir, name)
        if target == "report":
            doc, _ = rp.report(spec, members, runs_dir)
            _emit(doc, as_json, as_csv)
        elif target == "status":
            _status(runs_dir, spec, members, as_json)
        else:
            _cancel(runs_dir, name)
        return
    if name is not None:
        raise WorkbenchError(f"study {target}: unexpected argument {name!r}")
    if executor not in ("local", "slurm"):
        raise WorkbenchError(f"--executor {executor}: use local or slurm")
    from engine.study.spec import load_study

    path = Path(target)
    spec, members = load_study(path)
    status = _run(path, spec, members, runs_dir, jobs, executor, locals())
    doc, _ = rp.report(spec, members, runs_dir)
    _save(runs_dir, spec.name, doc)
    if status == "interrupted":
        err.print(
            "study interrupted: every running member saved a checkpoint; run it again to go on"
        )
        raise typer.Exit(130)
    study_print.report(doc)
    failed = sum(len(g["failed"]) for g in doc["groups"])
    raise typer.Exit(1 if failed else 0)


def _status(runs_dir: Path, spec: Any, members: list[Any], as_json: bool) -> None:
    from engine.study import cluster
    from engine.study import members as ms
    from workbench import study_print

    states = [ms.member_state(runs_dir, spec.name, spec.suite, m) for m in members]
    rows = cluster.status_rows(runs_dir, spec.name, states)
    if as_json:
        print_json(rows, indent=1)
    else:
        study_print.status(spec.name, rows)


def _cancel(runs_dir: Path, name: str) -> None:
    from engine.study import cluster

    err.print(f"cancelling {name}: running members save a checkpoint first (it may take a moment)")
    done = cluster.cancel(runs_dir, name)
    err.print(
        f"cancelled {len(done['pending'])} pending and stopped {len(done['running'])} running "
        f"member jobs"
        + (f"; {len(done['forced'])} had to be killed" if done["forced"] else "")
        + "; run the study file again to resume them"
    )


def _emit(doc: dict[str, Any], as_json: bool, as_csv: bool) -> None:
    from engine.study import report as rp
    from workbench import study_print

    if as_json:
        print_json(doc, indent=1)  # as the study's saved report.json
    elif as_csv:
        sys.stdout.write(rp.to_csv(doc))
    else:
        study_print.report(doc)


def _save(runs_dir: Path, name: str, doc: dict[str, Any]) -> None:
    from engine.records.checkpoint_header import atomic_write_bytes
    from engine.study import members as ms

    path = ms.study_root(runs_dir, name) / ms.STUDY_DIR / ms.REPORT_FILE
    atomic_write_bytes(path, json.dumps(doc, indent=1).encode())


def _run(
    path: Path,
    spec: Any,
    members: list[Any],
    runs_dir: Path,
    jobs: int,
    executor: str,
    opts: dict[str, Any],
) -> str:
    """Record the study file beside its members, then run them until done or stopped."""
    from engine.records.checkpoint_header import atomic_write_bytes
    from engine.study import members as ms
    from engine.study.run import run_study, tasks_per_member
    from workbench import study_print

    root = ms.study_root(runs_dir, spec.name)
    saved = root / ms.STUDY_DIR / ms.STUDY_FILE
    text = path.read_bytes()
    if saved.is_file() and saved.read_bytes() != text:
        raise fail(
            f"{path}: key 'name': a different study called {spec.name!r} exists under {root}; "
            "rename this one or remove that folder"
        )
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise fail("study: needs submitit (pip install submitit)") from None
    if executor == "slurm":
        tasks_per_member(_slurm_options(opts), opts["nproc"])  # refused before anything is written
    saved.parent.mkdir(parents=True, exist_ok=True)
    # the study is read relative to its own folder: a user preset it names must resolve there
    atomic_write_bytes(saved, text)
    ms.save_resolved(runs_dir, spec, members)
    slurm = _slurm_options(opts)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        if not stop.is_set():
            err.print("stopping: each running member saves a checkpoint (it may take a moment)")
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return run_study(
            spec,
            members,
            runs_dir,
            jobs=jobs,
            executor=executor,
            slurm=slurm,
            nproc=opts["nproc"],
            stop=stop,
            on_update=study_print.Progress(spec.name),
        )
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _slurm_options(opts: dict[str, Any]) -> Any:
    from engine.study.run import SlurmOptions

    return SlurmOptions(
        opts["partition"],
        opts["time_min"],
        opts["gpus"],
        opts["cpus"],
        opts["mem_gb"],
        opts["array_limit"],
        opts["signal_delay"],
        opts["requeues"],
    )
