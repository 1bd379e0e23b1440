"""The `workbench` command line (typer): parsing and exit codes.

The engine does the work, `workbench/printing.py` prints it and
`workbench/views.py` decides what a table says. Every bad input ends in one
line and exit 2: a `WorkbenchError` becomes that line in `Commands.invoke`,
the one error boundary, and a usage error in `main`. A command imports what
only it runs (torch, scipy, pydantic, textual) inside itself, so `inspect`,
`runs` and `presets` start fast; tests/test_startup.py keeps it so.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from engine.records.checkpoint_header import model_parameters, numel, read_header
from engine.records.evidence import list_evaluations
from engine.records.run_diff import differing, run_config
from engine.records.runs import check_runs_dir, list_runs, listed_run_dir
from engine.spec.errors import WorkbenchError
from engine.spec.registry import DEFENSES
from workbench import (
    card_cmd,
    checkpoint_views,
    curves_cmd,
    model_cmd,
    printing,
    report_cmd,
    study_cmd,
)
from workbench.cli_polish import print_version
from workbench.model_cmd import (
    DatasetOpt,
    EpsOpt,
    ModelOpt,
    NormalizeOpt,
    NormOpt,
    StepOpt,
    StripOpt,
    WeightsOpt,
    _target,
    model_options,
)
from workbench.options import DeviceOpt, JsonOpt, RunsDirOpt, SamplesOpt, SetOpt
from workbench.printing import err, fail, out, print_json
from workbench.process import pin_malloc


class Commands(TyperGroup):
    """The commands, behind the CLI's one error boundary."""

    def invoke(self, ctx: Any) -> Any:
        """Run the command; a `WorkbenchError` from anywhere in it is one line and exit 2."""
        try:
            return super().invoke(ctx)
        except WorkbenchError as exc:
            raise fail(str(exc)) from None


app = typer.Typer(
    cls=Commands,
    add_completion=False,
    no_args_is_help=False,
    help="Adversarial-robustness workbench: train robust classifiers, attack them, watch runs.",
    pretty_exceptions_enable=False,
)
EXIT_CODES = {"finished": 0, "failed": 1, "interrupted": 130}  # and 2: bad input

WRAPS = ", ".join(d for d in DEFENSES if d != "none")  # the defences `eval --defense` takes


@app.callback(invoke_without_command=True)
def root(
    ctx: typer.Context,
    runs_dir: RunsDirOpt = Path("runs"),
    _version: Annotated[
        bool,
        typer.Option(
            "--version", callback=print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Bare `workbench` opens the Textual app over the runs directory."""
    if ctx.invoked_subcommand is None:
        from workbench.tui.app import WorkbenchApp

        check_runs_dir(runs_dir)
        tui = WorkbenchApp(runs_dir)
        tui.run()
        if tui.return_code:  # an uncaught exception: textual printed it; say where it is kept
            where = f"; its traceback is in {tui.crash_log}" if tui.crash_log else ""
            sys.stderr.write(f"workbench: the app stopped on an error{where}\n")
            raise typer.Exit(1)
        raise typer.Exit(0)


# ---------------------------------------------------------------- run


@app.command()
def run(
    *,  # typer passes every option by name
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
    from engine.records.run_request import RunRequest

    req = RunRequest(preset, tuple(sets or ()), name, runs_dir, resume, device, nproc)
    if nproc != 1:
        from workbench.multiproc import launch_request

        code = launch_request(req)  # the ranks' own exit codes, combined
    else:
        from workbench.headless import train_here

        code = EXIT_CODES[train_here(req, out, err).status]
    raise typer.Exit(code)


# ---------------------------------------------------------------- eval, sweep, ablate


@app.command("eval")
def eval_(
    *,  # typer passes every option by name
    checkpoint: Annotated[
        Path | None, typer.Argument(help="A .safetensors checkpoint (or give --model).")
    ] = None,
    suite: Annotated[
        str,
        typer.Option("--suite", help="quick, paper, autoattack, blackbox, or a suite TOML file."),
    ] = "paper",
    sets: SetOpt = None,
    samples: SamplesOpt = 0,
    as_json: JsonOpt = False,
    device: DeviceOpt = "auto",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random starts.")] = 0,
    defense: Annotated[
        str | None,
        typer.Option("--defense", help=f"Wrap the model: {WRAPS} (settings: defense.*)."),
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(
            "--source",
            help="The black-box (transfer) columns' substitute: a checkpoint, or a model as "
            "--model takes it (with --source-weights ...).",
        ),
    ] = None,
    source_weights: Annotated[
        Path | None, typer.Option("--source-weights", help="The --source model's weights.")
    ] = None,
    source_normalize: Annotated[
        str | None,
        typer.Option("--source-normalize", help="The --source model's input mean/std."),
    ] = None,
    source_strip_prefix: Annotated[
        list[str] | None,
        typer.Option("--source-strip-prefix", help="Remove this prefix from its weight keys."),
    ] = None,
    batch_size: Annotated[
        str, typer.Option("--batch-size", help="auto (largest that fits on a GPU) or a number.")
    ] = "auto",
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="Continue a killed evaluation with the same settings where it stopped."
        ),
    ] = False,
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    dataset: DatasetOpt = None,
    normalize: NormalizeOpt = None,
    strip_prefix: StripOpt = None,
    norm: NormOpt = "linf",
    eps: EpsOpt = None,
    step: StepOpt = None,
    save_adv: Annotated[
        bool,
        typer.Option("--save-adv", help="Keep each example's worst-case input (safetensors)."),
    ] = False,
    check_adv: Annotated[
        Path | None,
        typer.Option(
            "--check-adv", help="Re-score saved adversarial examples (eval/*.adv.safetensors)."
        ),
    ] = None,
) -> None:
    """Attack a checkpoint with a suite: per-attack and worst-case accuracy, sanity checks, JSON.

    With --model instead of a checkpoint it evaluates a model from outside the
    workbench; the evidence goes to eval/ beside --weights (or here).
    """
    if check_adv is not None:
        if sets or defense or source or save_adv or samples or model is not None:
            raise WorkbenchError(
                "--check-adv: takes the defence, settings and examples from the file; "
                "drop --set, --defense, --source, --samples, --save-adv and --model"
            )
        if checkpoint is None:
            raise WorkbenchError("--check-adv: give the CHECKPOINT the examples were made on")
        code = card_cmd.check_adv(
            checkpoint,
            check_adv,
            device=device,
            batch_size=_batch_size(batch_size),
            as_json=as_json,
        )
        raise typer.Exit(code)
    from engine.eval.evaluate import evaluate_checkpoint

    loaded, checkpoint = _target("eval", checkpoint, model, **model_options(locals()))
    substitute = model_cmd.substitute(
        source,
        weights=source_weights,
        normalize=source_normalize,
        strip_prefix=source_strip_prefix,
    )
    kw = {
        "sets": sets or [],
        "samples": samples,
        "device": device,
        "seed": seed,
        "defense": defense,
        "source": substitute,
        "batch_size": _batch_size(batch_size),
        "resume": resume,
        "save_adv": save_adv,
    }
    with printing.working(as_json) as progress:
        doc = evaluate_checkpoint(checkpoint, suite, **kw, loaded=loaded, progress=progress)
    if as_json:
        print_json({k: v for k, v in doc.items() if k not in LONG_FIELDS})
    else:
        printing.evaluation(doc)


LONG_FIELDS = ("per_example", "indices", "sanity_runs")  # they stay in the saved file


def _batch_size(text: str) -> int | None:
    if text == "auto":
        return None
    if not text.isdigit() or int(text) < 1:
        raise WorkbenchError(f"--batch-size {text!r}: give 'auto' or a positive whole number")
    return int(text)


app.command("sweep")(curves_cmd.sweep)
app.command("ablate")(curves_cmd.ablate)


@app.command()
def diff(
    a: Annotated[Path, typer.Argument(help="An evaluation (eval/<suite>-<time>.json).")],
    b: Annotated[Path, typer.Argument(help="The evaluation to compare it with.")],
    as_json: JsonOpt = False,
) -> None:
    """A minus B per column on their shared examples: difference, 95% interval, McNemar p."""
    from engine.eval.compare import compare

    doc = compare(a, b)
    if as_json:
        print_json(doc)
    else:
        printing.comparison(doc)


@app.command()
def doctor(device: DeviceOpt = "auto", as_json: JsonOpt = False) -> None:
    """Versions, devices, and a short smoke run of each fast-path option on this machine."""
    from engine.doctor import check

    with printing.working(as_json, "smoke-testing each fast-path option (up to 30 s each) ..."):
        doc = check(device)
    if as_json:
        print_json(doc)
    else:
        printing.doctor(doc)
    raise typer.Exit(1 if doc["failed_used"] else 0)


# ---------------------------------------------------------------- inspect, runs, presets


@app.command()
def inspect(
    checkpoint: Annotated[Path, typer.Argument(help="A .safetensors checkpoint.")],
    as_json: JsonOpt = False,
) -> None:
    """Metadata, config, metrics and the tensor table of a checkpoint (no torch needed)."""
    header, meta = read_header(checkpoint)
    evals = list_evaluations(checkpoint)
    if not as_json:
        printing.checkpoint(checkpoint, header, meta, evals)
        return
    tensors = [
        {"name": n, "dtype": i["dtype"], "shape": i["shape"], "numel": numel(i["shape"])}
        for n, i in sorted(header.items())
    ]
    print_json(
        {
            "path": str(checkpoint),
            "metadata": checkpoint_views.parsed_metadata(meta),
            "tensors": tensors,
            "model_parameters": model_parameters(header),
            "evaluations": evals,
        }
    )


@app.command()
def runs(
    runs_dir: RunsDirOpt = Path("runs"),
    as_json: JsonOpt = False,
    diff: Annotated[
        list[str] | None,
        typer.Option("--diff", help="Two or more runs (by name): the settings that differ."),
    ] = None,
    wide: Annotated[
        bool, typer.Option("--wide", help="Whole run names, however wide the terminal.")
    ] = False,
) -> None:
    """Runs under the runs directory with status, epoch and best robust accuracy."""
    if diff:
        root = check_runs_dir(runs_dir)
        configs = {n: run_config(listed_run_dir(root, n, "--diff")) for n in diff}
        if len(configs) < 2:
            raise WorkbenchError("--diff: name two or more runs")
        rows = differing(configs)
        if as_json:
            print_json([{"key": k, "values": dict(zip(configs, v, strict=True))} for k, v in rows])
        else:
            printing.config_diff(list(configs), rows)
        return
    infos = list_runs(check_runs_dir(runs_dir))
    if as_json:
        print_json([info.to_dict() for info in infos])
    else:
        printing.runs(runs_dir, infos, wide)


@app.command()
def presets() -> None:
    """The presets (yours in ./presets, then the built-ins) and the evaluation suites."""
    printing.presets()


app.command("study")(study_cmd.study)
app.command("card")(card_cmd.card)
app.command("import")(model_cmd.import_)
app.command("report")(report_cmd.report)
app.command("export")(report_cmd.export)


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
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
