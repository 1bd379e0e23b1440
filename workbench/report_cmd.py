"""`workbench report` (figures, tables, a Markdown summary) and `workbench export` (TensorBoard,
CSV): parsing and printing only; the engine (engine/report/) reads, draws and writes.

matplotlib and torch are imported when a command runs, not when the CLI starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from engine.records.runs import check_runs_dir, listed_run_dir
from engine.spec.errors import WorkbenchError
from workbench.printing import out

RunsDirOpt = Annotated[Path, typer.Option("--runs-dir", help="Where runs live.")]


def report(
    *,  # typer passes every option by name
    target: Annotated[
        str,
        typer.Argument(help="A run (folder or name), a study (name), or EVAL.json / sweep JSON."),
    ],
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Folder for the report (default: RUN/report, beside EVAL.json)."
        ),
    ] = None,
    formats: Annotated[
        str, typer.Option("--format", help="Figure formats: png, svg, pdf, comma-separated.")
    ] = "png",
    latex: Annotated[
        bool, typer.Option("--latex", help="Also the table as booktabs LaTeX (table.tex).")
    ] = False,
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Also the table as Markdown (table.md).")
    ] = False,
    runs_dir: RunsDirOpt = Path("runs"),
) -> None:
    """Paper figures, tables and a Markdown summary of a run, an evaluation or a study."""
    from engine.report.build import make_report
    from engine.report.inputs import check_out, parse_formats

    fmts = parse_formats(formats)
    if out_dir is not None:
        check_out(out_dir)
    written = make_report(
        target,
        runs_dir=check_runs_dir(runs_dir),
        out=out_dir,
        formats=fmts,
        latex=latex,
        markdown=markdown,
    )
    out.print(f"wrote {len(written.files)} files to {written.out}/", highlight=False)
    for f in written.files:
        out.print(f"  {f.name}", highlight=False)


def export(
    *,  # typer passes every option by name
    runs: Annotated[list[str], typer.Argument(help="Runs: folders or names (study/member).")],
    tensorboard: Annotated[
        Path | None,
        typer.Option("--tensorboard", help="Folder for TensorBoard event files, one per run."),
    ] = None,
    csv_file: Annotated[
        Path | None, typer.Option("--csv", help="Long-form CSV: run, step, epoch, tag, value.")
    ] = None,
    runs_dir: RunsDirOpt = Path("runs"),
) -> None:
    """A run's scalars for TensorBoard (and W&B, which imports its files) or pandas."""
    if tensorboard is None and csv_file is None:
        raise WorkbenchError("export: give --tensorboard DIR, --csv FILE or both")
    if tensorboard is not None and tensorboard.exists() and not tensorboard.is_dir():
        raise WorkbenchError(f"--tensorboard {tensorboard}: is a file, not a folder")
    if csv_file is not None and csv_file.is_dir():
        raise WorkbenchError(f"--csv {csv_file}: is a folder, not a file")
    from engine.report.trackers import export_csv, export_runs, export_tensorboard

    root = check_runs_dir(runs_dir)
    dirs = [Path(r) if Path(r).exists() else listed_run_dir(root, r, "export") for r in runs]
    loaded = export_runs(dirs)
    if tensorboard is not None:
        written = export_tensorboard(loaded, tensorboard)
        out.print(
            f"wrote TensorBoard files of {len(written)} run(s) to {tensorboard}/ "
            f"(tensorboard --logdir {tensorboard})",
            highlight=False,
        )
    if csv_file is not None:
        export_csv(loaded, csv_file)
        out.print(f"wrote {csv_file}", highlight=False)
