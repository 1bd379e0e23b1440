"""The `workbench` command line (typer). Every bad input ends in one line and exit 2.

Heavy modules (torch, the engine's math) are imported inside the commands
that need them, so `inspect`, `runs` and `presets` start fast and torch-free.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from engine.errors import WorkbenchError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=False,
    help="Adversarial-robustness workbench: train robust classifiers, attack them, watch runs.",
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

PRESET_DIRS = (Path.cwd() / "presets", Path(__file__).resolve().parent.parent / "presets")

SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a preset key, e.g. --set attack.eps=8/255 (repeatable)."),
]
RunsDirOpt = Annotated[Path, typer.Option("--runs-dir", help="Where runs live.")]


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one line and exit; a DDP rank > 0 exits silently (rank 0 says the same thing)."""
    if os.environ.get("RANK", "0") in ("", "0"):
        err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def resolve_preset(arg: str) -> Path:
    """A path, or a bare name found in ./presets or the project's presets folder."""
    p = Path(arg)
    if p.is_file():
        return p
    stem = p.name.removesuffix(".toml")
    for d in PRESET_DIRS:
        if (d / f"{stem}.toml").is_file() and p.parent == Path("."):
            return d / f"{stem}.toml"
    known = sorted({f.stem for d in PRESET_DIRS if d.is_dir() for f in d.glob("*.toml")})
    raise WorkbenchError(f"{arg}: preset file not found (known presets: {', '.join(known)})")


@app.callback(invoke_without_command=True)
def root(
    ctx: typer.Context,
    runs_dir: Annotated[Path, typer.Option("--runs-dir", help="Where runs live.")] = Path("runs"),
) -> None:
    """Bare `workbench` opens the Textual app over the runs directory."""
    if ctx.invoked_subcommand is None:
        from workbench.tui.app import WorkbenchApp

        WorkbenchApp(runs_dir).run()
        raise typer.Exit(0)


# ---------------------------------------------------------------- run


@app.command()
def run(
    preset: Annotated[str | None, typer.Argument(help="Preset file or name.")] = None,
    headless: Annotated[bool, typer.Option("--headless", help="Rich live view, no app.")] = False,
    sets: SetOpt = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Run name (default: preset-time).")
    ] = None,
    runs_dir: RunsDirOpt = Path("runs"),
    resume: Annotated[Path | None, typer.Option("--resume", help="Run dir to continue.")] = None,
    device: Annotated[
        str | None, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")
    ] = None,
    nproc: Annotated[
        int, typer.Option("--nproc", help="Data-parallel processes on this machine (DDP).")
    ] = 1,
) -> None:
    """Train a preset; writes runs/<name>/ with events and safetensors checkpoints."""
    req = RunRequest(preset, sets or [], name, runs_dir, resume, device)
    try:
        code = _launch_local(req, nproc) if nproc != 1 else _run(req)
    except WorkbenchError as exc:
        raise fail(str(exc)) from None
    raise typer.Exit(code)


@dataclass(frozen=True)
class RunRequest:
    """What `workbench run` was asked for, as typed: a launcher forwards it to its ranks."""

    preset: str | None
    sets: list[str]
    name: str | None
    runs_dir: Path
    resume: Path | None
    device: str | None


def _prepare(req: RunRequest, nproc: int, new_run: bool = True) -> tuple[Any, str, Path, Any]:
    """Load and check everything a run needs before anything is written.

    Returns (config, source, run dir, device). `new_run=False` skips the "name
    already taken" check (DDP ranks > 0, whose rank 0 may already have made the folder).
    """
    from engine import config as C
    from engine import distributed
    from engine.runs import check_name, default_name, is_placeholder
    from engine.trainer import resolve_device

    sets = req.sets if req.device is None else [*req.sets, f"train.device={req.device}"]
    resume = req.resume
    if resume is not None:
        if not (resume / "config.toml").is_file() or not (resume / "last.safetensors").is_file():
            raise WorkbenchError(
                f"{resume}: not a resumable run (needs config.toml and last.safetensors)"
            )
        source = str(resume / "config.toml")
        cfg, run_dir = C.load_preset(source, sets), resume
    elif req.preset is None:
        raise WorkbenchError("run: give a PRESET (see `workbench presets`) or --resume RUN_DIR")
    else:
        source = str(resolve_preset(req.preset))
        cfg = C.load_preset(source, sets)
        run_dir = req.runs_dir / (check_name(req.name) if req.name else default_name(cfg.name))
        if new_run and run_dir.exists() and not is_placeholder(run_dir):
            raise WorkbenchError(
                f"{run_dir}: a run with this name exists; pick another --name or --resume {run_dir}"
            )
    dev = resolve_device(cfg.train.device, f"--device {req.device}" if req.device else source)
    distributed.check(cfg.distributed, dev, nproc, source)
    return cfg, source, run_dir, dev


def _launch_local(req: RunRequest, nproc: int) -> int:
    """`--nproc N`: check the run here, then start N ranks with torchrun's environment."""
    from engine import distributed
    from workbench.multiproc import launch

    if not 2 <= nproc <= 256:
        raise WorkbenchError(f"--nproc {nproc}: give a number of processes from 1 to 256")
    if distributed.env_world().enabled:
        raise WorkbenchError("--nproc: already inside a distributed job (torchrun); drop --nproc")
    cfg, source, run_dir, dev = _prepare(req, nproc)
    batch = cfg.data.batch_size
    if isinstance(batch, int) and batch < nproc:
        raise WorkbenchError(
            f"{source}: key 'data.batch_size': {batch} is the global batch; "
            f"it must be at least --nproc ({nproc})"
        )
    args = ["run", "--headless", "--runs-dir", str(req.runs_dir)]
    if req.resume is not None:
        args += ["--resume", str(req.resume)]
    else:
        args += [str(resolve_preset(req.preset or "")), "--name", run_dir.name]
    for item in req.sets:
        args += ["--set", item]
    if req.device is not None:
        args += ["--device", req.device]
    return launch(args, nproc, on_cuda=dev.type == "cuda")


def _run(req: RunRequest) -> int:
    from engine import distributed
    from engine.checkpoint import atomic_write_bytes
    from engine.data import load_dataset
    from engine.events import EventWriter
    from engine.runs import RunLock, create_run_dir
    from engine.trainer import Trainer

    world = distributed.env_world()  # set by torchrun or --nproc; rank 0 of 1 otherwise
    cfg, _, run_dir, dev = _prepare(req, world.local_size, new_run=world.is_main)
    dev = distributed.init(world, cfg.distributed, dev)
    runs_dir, resume = req.runs_dir, req.resume
    try:
        if world.enabled and resume is None and req.name is None:  # one name: rank 0's
            run_dir = runs_dir / distributed.broadcast(run_dir.name, world)
        if cfg.data.download and not world.is_main:
            distributed.barrier(world)  # rank 0 downloads alone
        data = load_dataset(cfg.data.dataset, cfg.data.root, cfg.data.download)
        if cfg.data.download and world.is_main:
            distributed.barrier(world)
        stop = threading.Event()
        trainer = Trainer(cfg, data, run_dir, EventWriter(None), dev, stop, world)
        if not world.is_main:  # ranks > 0 write nothing: no folder, lock, config or events
            if resume is not None:
                trainer.resume(run_dir / "last.safetensors")
            return _drive(trainer, trainer.writer, stop, cfg, quiet=True)
        if resume is not None:
            lock = RunLock(run_dir).acquire()
            try:
                trainer.resume(run_dir / "last.safetensors")
            except BaseException:
                lock.release()
                raise
        else:
            run_dir = create_run_dir(runs_dir, run_dir.name)
            lock = RunLock(run_dir).acquire()
        writer = None
        try:
            atomic_write_bytes(run_dir / "config.toml", cfg.to_toml().encode())
            writer = trainer.writer = EventWriter(run_dir / "events.jsonl")
            return _drive(trainer, writer, stop, cfg)
        finally:
            if writer is not None:
                writer.close()
            lock.release()
    finally:
        distributed.shutdown()


def _drive(trainer: Any, writer: Any, stop: threading.Event, cfg: Any, quiet: bool = False) -> int:
    """Run the trainer under the live view, with Ctrl-C / SIGTERM as a graceful stop.

    `quiet`: a DDP rank > 0, which shows and prints nothing (rank 0 speaks for the job).
    """
    from workbench.headless import RunView, final_table, follow

    def on_signal(signum: int, frame: Any) -> None:
        if stop.is_set():  # a second Ctrl-C: stop now
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        stop.set()
        if not quiet:
            err.print("\nstopping: saving a checkpoint (Ctrl-C again to abort without saving)")

    old_int = signal.signal(signal.SIGINT, on_signal)
    old_term = signal.signal(signal.SIGTERM, on_signal)
    view = RunView(out)
    live = None
    if not quiet:
        writer.listeners.append(view.on_event)
        live = follow(out, view)
    try:
        if live is not None:
            with live:
                outcome = trainer.run()
        else:
            outcome = trainer.run()
    except KeyboardInterrupt:
        writer.emit("run_finished", status="interrupted", saved=False)
        if not quiet:
            err.print("aborted without a final checkpoint; last.safetensors is from the last epoch")
        return 130
    except Exception as exc:  # a crash: keep the last good checkpoint, log the traceback
        if quiet:
            err.print(f"rank {trainer.world.rank} failed: {type(exc).__name__}: {exc}")
            return 1
        log = trainer.run_dir / "crash.log"
        log.write_text(traceback.format_exc(), encoding="utf-8")
        writer.emit("run_failed", error=f"{type(exc).__name__}: {exc}", log=str(log))
        err.print(f"[bold red]run failed:[/] {type(exc).__name__}: {exc} (traceback in {log})")
        return 1
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
    if quiet:
        return outcome.exit_code
    out.print(final_table(outcome, trainer.state.history, view.last_parts, cfg.to_dict()))
    if outcome.status == "failed":
        err.print(f"[bold red]run failed:[/] {outcome.error}")
    elif outcome.status == "interrupted":
        err.print(f"interrupted; resume with: workbench run --resume {outcome.run_dir}")
    return outcome.exit_code


# ---------------------------------------------------------------- eval


@app.command("eval")
def eval_(
    checkpoint: Annotated[Path, typer.Argument(help="A .safetensors checkpoint.")],
    suite: Annotated[
        str,
        typer.Option("--suite", help="quick, paper, autoattack, blackbox, or a suite TOML file."),
    ] = "paper",
    sets: SetOpt = None,
    samples: Annotated[int, typer.Option("--samples", help="Test examples (0 = all).", min=0)] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
    device: Annotated[str, typer.Option("--device")] = "auto",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random starts.")] = 0,
    defense: Annotated[
        str | None, typer.Option("--defense", help="Wrap the model: apinet (settings: defense.*).")
    ] = None,
    source: Annotated[
        Path | None,
        typer.Option(
            "--source", help="Substitute checkpoint for the black-box (transfer) columns."
        ),
    ] = None,
    batch_size: Annotated[
        str, typer.Option("--batch-size", help="auto (largest that fits on a GPU) or a number.")
    ] = "auto",
) -> None:
    """Attack a checkpoint with a suite: per-attack and worst-case accuracy, sanity checks, JSON."""
    try:
        bs = _batch_size(batch_size)
        doc = _eval(
            checkpoint, suite, sets or [], samples, device, seed, as_json, defense, source, bs
        )
    except WorkbenchError as exc:
        raise fail(str(exc)) from None
    if as_json:
        sys.stdout.write(json.dumps(_public(doc), indent=2) + "\n")


def _batch_size(text: str) -> int | None:
    if text == "auto":
        return None
    if not text.isdigit() or int(text) < 1:
        raise WorkbenchError(f"--batch-size {text!r}: give 'auto' or a positive whole number")
    return int(text)


def _public(doc: dict[str, Any]) -> dict[str, Any]:
    """The evaluation without its long per-example lists (they stay in the saved file)."""
    return {k: v for k, v in doc.items() if k not in ("per_example", "indices", "sanity_runs")}


def _progress_bar(prog: Any) -> Any:
    task = prog.add_task("loading", total=None)
    done_before: dict[str, int] = {}

    def progress(name: str, done: int, total: int, n_columns: int) -> None:
        done_before[name] = done
        prog.update(
            task, total=n_columns * total, description=name, completed=sum(done_before.values())
        )

    return progress


def _eval(
    path: Path,
    suite: str,
    sets: list[str],
    samples: int,
    device: str,
    seed: int,
    quiet: bool,
    defense: str | None = None,
    source: Path | None = None,
    batch_size: int | None = None,
) -> dict[str, Any]:
    from engine.evaluate import evaluate_checkpoint

    kw = {"defense": defense, "source": source, "batch_size": batch_size}
    if quiet:
        doc = evaluate_checkpoint(path, suite, sets, samples, device, seed, **kw)
    else:
        from rich.progress import Progress

        with Progress(console=err, transient=True) as prog:
            doc = evaluate_checkpoint(
                path, suite, sets, samples, device, seed, _progress_bar(prog), **kw
            )
    if not quiet:
        print_evaluation(doc)
    return doc


def print_evaluation(doc: dict[str, Any]) -> None:
    """The suite's table (accuracy, seconds, examples/s per column), then the sanity list."""
    table, seconds, rates = doc["accuracy"], doc["seconds"], doc.get("column_examples_per_s", {})
    title = f"{doc['checkpoint']} — {doc['suite']} suite, eps {doc['eps']:.4g}, {doc['n']} examples"
    if doc.get("source"):
        title += f"\nblack-box columns crafted on {doc['source']}"
    if doc.get("defense"):
        d = doc["defense"]
        title += (
            f"\ndefence {d['name']}: eps_ap {d['eps_ap']:.4g}, {d['steps']} steps of "
            f"{d['step']:.4g}, {d['start']} start; adaptive: {d['adaptive_steps']} "
            f"inner steps, EOT {d['eot']}"
        )
    t = Table(title=title)
    t.add_column("attack")
    t.add_column("accuracy %", justify="right")
    t.add_column("seconds", justify="right")
    t.add_column("examples/s", justify="right")
    for k, v in table.items():
        t.add_row(
            k,
            f"{v:.2f}",
            f"{seconds[k]:.1f}" if k in seconds else "",
            f"{rates[k]:.0f}" if k in rates else "",
        )
    out.print(t)
    colour = {"PASS": "green", "WARN": "yellow", "SKIP": "dim"}
    for c in doc.get("sanity", []):
        out.print(
            f"[{colour.get(c['status'], 'white')}]{c['status']:4}[/] {c['name']}: {c['figure']}",
            highlight=False,
        )
        if c.get("advice"):
            out.print(f"      -> {c['advice']}", highlight=False)
    out.print(
        f"saved {doc['saved']}  (batch {doc['batch_size']}, "
        f"{doc['examples_per_s']:.0f} attacked examples/s)",
        highlight=False,
    )


@app.command()
def sweep(
    checkpoints: Annotated[list[Path], typer.Argument(help="One or more checkpoints.")],
    eps_max: Annotated[
        str | None, typer.Option("--eps-max", help="Largest eps (fractions allowed; default 2x).")
    ] = None,
    points: Annotated[int, typer.Option("--points", help="Eps values from 0.", min=2)] = 9,
    steps: Annotated[int, typer.Option("--steps", help="PGD steps.", min=1)] = 40,
    samples: Annotated[int, typer.Option("--samples", help="Test examples (0 = all).", min=0)] = 0,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    device: Annotated[str, typer.Option("--device")] = "auto",
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Folder for the JSON and CSV (default: eval/).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Accuracy under PGD-k as eps grows (API-Net Fig. 2): a terminal plot, JSON and CSV."""
    from engine.config import parse_fraction
    from engine.sweep import eps_sweep

    try:
        emax = None
        if eps_max is not None:
            try:
                emax = float(parse_fraction(eps_max))
            except ValueError:
                raise WorkbenchError(
                    f"--eps-max: {eps_max!r} is not a number or fraction"
                ) from None
            if not 0 < emax <= 1:
                raise WorkbenchError(f"--eps-max: {eps_max!r} is outside (0, 1]")
        if as_json:
            doc = eps_sweep(checkpoints, emax, points, steps, samples, device, seed, out_dir)
        else:
            from rich.progress import Progress

            with Progress(console=err, transient=True) as prog:
                doc = eps_sweep(
                    checkpoints,
                    emax,
                    points,
                    steps,
                    samples,
                    device,
                    seed,
                    out_dir,
                    _progress_bar(prog),
                )
    except WorkbenchError as exc:
        raise fail(str(exc)) from None
    if as_json:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    from engine.sweep import plot_text

    sys.stdout.write(plot_text(doc, colour=sys.stdout.isatty()) + "\n")
    sys.stdout.flush()
    t = Table(title=f"accuracy % under PGD-{steps}, {doc['n']} examples")
    t.add_column("eps")
    for c in doc["curves"]:
        t.add_column(c["label"], justify="right")
    for i, e in enumerate(doc["eps"]):
        t.add_row(f"{e:.4g}", *(f"{c['accuracy'][i]:.2f}" for c in doc["curves"]))
    out.print(t)
    out.print(f"saved {doc['saved_json']} and {doc['saved_csv']}", highlight=False)


@app.command()
def ablate(
    checkpoint: Annotated[Path, typer.Argument(help="A .safetensors checkpoint.")],
    eps_ap: Annotated[
        str, typer.Option("--eps-ap", help="Comma-separated values, fractions allowed.")
    ] = "0,4/255,8/255,12/255,16/255",
    samples: Annotated[int, typer.Option("--samples", help="Test examples (0 = all).", min=0)] = 0,
    sets: SetOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
    device: Annotated[str, typer.Option("--device")] = "auto",
) -> None:
    """The eps_ap ablation of API-Net (paper Table 5) on any checkpoint."""
    from engine.config import parse_fraction
    from engine.evaluate import eps_ap_sweep

    try:
        values = []
        for part in eps_ap.split(","):
            try:
                v = float(parse_fraction(part))
            except ValueError:
                raise WorkbenchError(f"--eps-ap: {part!r} is not a number or fraction") from None
            if not 0 <= v <= 1:
                raise WorkbenchError(f"--eps-ap: {part!r} is outside [0, 1]")
            values.append(v)

        def show(v: float, doc: dict) -> None:
            if not as_json:
                cols = "  ".join(f"{k} {a:.2f}" for k, a in doc["accuracy"].items())
                out.print(f"eps_ap {v:.4f} ({v * 255:.1f}/255): {cols}", highlight=False)

        summary = eps_ap_sweep(checkpoint, values, samples, device, 0, sets or [], show)
    except WorkbenchError as exc:
        raise fail(str(exc)) from None
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    else:
        out.print(f"saved {summary['saved']}")


# ---------------------------------------------------------------- inspect


@app.command()
def inspect(
    checkpoint: Annotated[Path, typer.Argument(help="A .safetensors checkpoint.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Metadata, config, metrics and the tensor table of a checkpoint (no torch needed)."""
    from engine.checkpoint import SUMMARY_KEYS, model_parameters, numel, read_header

    try:
        header, meta = read_header(checkpoint)
    except WorkbenchError as exc:
        raise fail(str(exc)) from None
    tensors = [
        {
            "name": name,
            "dtype": info["dtype"],
            "shape": info["shape"],
            "numel": numel(info["shape"]),
        }
        for name, info in sorted(header.items())
    ]
    params = model_parameters(header)
    parsed: dict[str, Any] = {}
    for k, v in meta.items():
        if k in ("config", "metrics", "optim", "progress", "defense"):
            try:
                parsed[k] = json.loads(v)
                continue
            except json.JSONDecodeError:
                pass
        parsed[k] = v
    from engine.evidence import list_evaluations

    evals = list_evaluations(checkpoint)
    doc = {
        "path": str(checkpoint),
        "metadata": parsed,
        "tensors": tensors,
        "model_parameters": params,
        "evaluations": evals,
    }
    if as_json:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    t = Table(title=f"{checkpoint}", show_header=False)
    t.add_column("key", style="bold")
    t.add_column("value")
    for k in SUMMARY_KEYS:
        if k in meta:
            t.add_row(k, meta[k])
    t.add_row("model parameters", f"{params:,}")
    metrics = parsed.get("metrics", {})
    if isinstance(metrics, dict):
        t.add_row("best robust acc", str(metrics.get("best_robust_acc")))
        last = metrics.get("last") or {}
        t.add_row("last clean / robust acc", f"{last.get('clean_acc')} / {last.get('robust_acc')}")
    out.print(t)
    cfg = parsed.get("config")
    if isinstance(cfg, dict):
        import tomli_w

        out.print("[bold]config[/]")
        out.print(tomli_w.dumps(cfg), highlight=False, markup=False)
    tt = Table(title="tensors")
    for col in ("name", "dtype", "shape", "numel"):
        tt.add_column(col, justify="right" if col == "numel" else "left")
    for row in tensors:
        tt.add_row(
            row["name"],
            row["dtype"],
            "x".join(map(str, row["shape"])) or "scalar",
            f"{row['numel']:,}",
        )
    out.print(tt)
    if not evals:
        out.print("no evaluations yet: `workbench eval CKPT --suite paper`")
        return
    et = Table(title="evaluations")
    for col in ("time", "suite", "n", "eps", "clean %", "worst case %", "sanity", "file"):
        et.add_column(col)
    for e in evals:
        if "error" in e:
            et.add_row("", "", "", "", "", "", "", f"{e['file']} (unreadable)")
            continue
        warn = f"{e['warnings']} WARN" if e["warnings"] else ("PASS" if e["checks"] else "-")
        et.add_row(
            str(e["time"] or ""),
            str(e["suite"]) + (f" +{e['defense']}" if e.get("defense") else ""),
            str(e["n"]),
            f"{e['eps']:.4g}" if isinstance(e["eps"], int | float) else "-",
            f"{e['clean']:.2f}" if isinstance(e["clean"], int | float) else "-",
            f"{e['worst case']:.2f}" if isinstance(e["worst case"], int | float) else "-",
            warn,
            e["file"],
        )
    out.print(et)


# ---------------------------------------------------------------- runs, presets


@app.command()
def runs(
    runs_dir: RunsDirOpt = Path("runs"),
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Runs under the runs directory with status, epoch and best robust accuracy."""
    from engine.runs import list_runs, runs_json

    infos = list_runs(runs_dir)
    if as_json:
        sys.stdout.write(runs_json(infos) + "\n")
        return
    if not infos:
        out.print(f"no runs under {runs_dir} yet: try `workbench run presets/demo.toml --headless`")
        return
    t = Table(title=f"runs in {runs_dir}")
    for col in ("name", "status", "method", "epoch", "clean %", "best robust %"):
        t.add_column(col)
    for r in infos:
        t.add_row(
            r.name,
            r.status,
            r.method,
            f"{r.epoch}/{r.epochs}",
            f"{r.last_clean_acc:.2f}" if r.last_clean_acc is not None else "-",
            f"{r.best_robust_acc:.2f}" if r.best_robust_acc is not None else "-",
        )
    out.print(t)


@app.command()
def presets() -> None:
    """Presets found in ./presets and in the project's presets folder."""
    import tomllib

    t = Table(title="presets")
    t.add_column("preset")
    t.add_column("description")
    seen = set()
    for d in PRESET_DIRS:
        for f in sorted(d.glob("*.toml")) if d.is_dir() else []:
            if f.stem in seen:
                continue
            seen.add(f.stem)
            try:
                desc = tomllib.loads(f.read_text(encoding="utf-8")).get("description", "")
            except (tomllib.TOMLDecodeError, OSError):
                desc = "(unreadable)"
            t.add_row(
                str(f.relative_to(Path.cwd())) if f.is_relative_to(Path.cwd()) else str(f), desc
            )
    out.print(t)
    from engine.suites import builtin_suites

    st = Table(title="evaluation suites (workbench eval --suite NAME or FILE)")
    st.add_column("suite")
    st.add_column("description")
    for name, f in builtin_suites().items():
        try:
            desc = tomllib.loads(f.read_text(encoding="utf-8")).get("description", "")
        except (tomllib.TOMLDecodeError, OSError):
            desc = "(unreadable)"
        st.add_row(name, desc)
    out.print(st)


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    from workbench.process import pin_malloc

    pin_malloc()
    # Typer vendors click in recent versions and imports it in older ones: take the
    # usage-error classes from the MRO of the BadParameter it exports either way.
    mro = {c.__name__: c for c in typer.BadParameter.__mro__}
    try:
        code = app(standalone_mode=False)
    except mro["UsageError"] as exc:  # unknown option or command, missing argument, bad value
        where = exc.ctx.command_path if exc.ctx is not None else "workbench"
        fail(f"{where}: {exc.format_message()} (see '{where} --help')")
        raise SystemExit(2) from None
    except mro["ClickException"] as exc:
        fail(exc.format_message(), exc.exit_code)
        raise SystemExit(exc.exit_code) from None
    except typer.Abort:  # end of input at a prompt
        raise SystemExit(1) from None
    raise SystemExit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
