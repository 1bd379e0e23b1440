"""What the command line prints: rich tables built from the rows in workbench/views.py."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import tomli_w
import typer
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

from engine.records.runs import RunInfo
from engine.spec import catalog
from engine.spec.registry import known_norm_label
from workbench import checkpoint_views, views

out = Console()
err = Console(stderr=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one line and exit; a DDP rank > 0 exits silently (rank 0 says the same thing)."""
    if os.environ.get("RANK", "0") in ("", "0"):
        err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def table(
    title: str | None, columns: tuple[str, ...], rows: list[tuple[str, ...]], right: int = 99
) -> Table:
    """A rich table; columns from index `right` on are right-aligned (numbers)."""
    t = Table(title=title)
    for i, col in enumerate(columns):
        t.add_column(col, justify="right" if i >= right else "left")
    for row in rows:
        t.add_row(*row)
    return t


def print_json(doc: Any, indent: int = 2) -> None:
    """A command's --json answer: one document on stdout, nothing else there."""
    sys.stdout.write(json.dumps(doc, indent=indent) + "\n")


ColumnProgress = Callable[[str, int, int, int], None]  # (column, done, total, n_columns)


@contextmanager
def working(as_json: bool, status: str | None = None) -> Iterator[ColumnProgress | None]:
    """Show that the engine works, on stderr, unless --json asked for a bare document.

    Yields the `progress(name, done, total, n_columns)` callback the engine calls
    as batches finish, drawn as a transient bar over every column of a suite or
    sweep; with `status`, a spinner saying it instead (work that reports no
    progress), and None. Under --json it shows nothing and yields None.
    """
    if as_json:
        yield None
        return
    if status is not None:
        with err.status(status):
            yield None
        return
    from rich.progress import Progress  # only the commands that attack load it

    with Progress(console=err, transient=True) as bar:
        task = bar.add_task("loading", total=None)
        done_before: dict[str, int] = {}

        def progress(name: str, done: int, total: int, n_columns: int) -> None:
            done_before[name] = done
            bar.update(
                task, total=n_columns * total, description=name, completed=sum(done_before.values())
            )

        yield progress


def evaluation(doc: dict[str, Any]) -> None:
    """The suite's table (accuracy, seconds, examples/s per column), then the sanity list."""
    title = (
        f"{doc['checkpoint']} — {doc['suite']} suite, "
        f"{views.threat(doc.get('norm', 'linf'), doc['eps'])}, "
        f"{doc['n']} examples"
    )
    if views.paper_columns(doc):
        title += f"\n{views.paper_columns(doc)}"
    if doc.get("source"):
        title += f"\nblack-box columns crafted on {doc['source']}"
    if doc.get("defense"):
        d = doc["defense"]
        title += (
            f"\ndefence {d['name']}: eps_ap {d['eps_ap']:.4g}, {d['steps']} steps of "
            f"{d['step']:.4g}, {d['start']} start; adaptive: {d['adaptive_steps']} "
            f"inner steps, EOT {d['eot']}"
        )
    out.print(table(title, views.EVALUATION_COLUMNS, views.evaluation_rows(doc), right=1))
    for line in views.sanity_lines(doc):
        out.print(line, highlight=False)
    if doc.get("resumed"):
        out.print(views.resumed_line(doc["resumed"]), highlight=False)
    out.print(
        f"saved {doc['saved']}  (batch {doc['batch_size']}, "
        f"{doc['examples_per_s']:.0f} attacked examples/s)",
        highlight=False,
    )
    if doc.get("card"):
        out.print(f"model card {doc['card']} (and .md)", highlight=False)
    adv = doc.get("adv_examples")
    if adv:
        out.print(f"adversarial examples {adv['file']}", highlight=False)
        if adv["rescored_mismatches"]:
            out.print(
                f"[yellow]warning:[/] {adv['rescored_mismatches']} saved inputs re-score "
                "differently from the suite's outcome (float differences at the decision "
                "boundary); --check-adv will report them",
                highlight=False,
            )


def comparison(doc: dict[str, Any]) -> None:
    """A paired comparison of two evaluations, a row per column, then one line per caveat."""
    title = f"A = {doc['a']}\nB = {doc['b']}\n{doc['n']} shared {doc['dataset']} test examples"
    out.print(table(title, views.DIFF_COLUMNS, views.diff_rows(doc), right=1))
    out.print(f"[dim]{doc['method']}[/]", highlight=False)
    for note in doc["notes"]:
        out.print(f"[yellow]note:[/] {note}", highlight=False)


def sweep(doc: dict[str, Any], steps: int) -> None:
    """The curves as a terminal plot, then the same numbers as a table."""
    from workbench.plots import sweep_plot  # plotext: only the plots need it

    sys.stdout.write(sweep_plot(doc, colour=sys.stdout.isatty()) + "\n")
    sys.stdout.flush()
    rows = [
        (
            f"{e:.4g}",
            *(
                f"{views.num(c['accuracy'][i])} {views.interval(c['intervals'][i])}"
                for c in doc["curves"]
            ),
        )
        for i, e in enumerate(doc["eps"])
    ]
    labels = tuple(f"{c['label']} [95%]" for c in doc["curves"])
    norm = known_norm_label(doc.get("norm", "linf"), "?")
    title = f"accuracy % under {norm} PGD-{steps}, {doc['n']} examples"
    out.print(table(title, ("eps", *labels), rows, right=1))
    out.print(f"saved {doc['saved_json']} and {doc['saved_csv']}", highlight=False)


def checkpoint(
    path: Path, header: dict[str, Any], meta: dict[str, str], evals: list[dict[str, Any]]
) -> None:
    """A checkpoint's summary, config, per-epoch metrics, tensors and saved evaluations."""
    t = Table(title=f"{path}", show_header=False)
    t.add_column("key", style="bold")
    t.add_column("value")
    for row in checkpoint_views.checkpoint_rows(header, meta):
        t.add_row(*row)
    out.print(t)
    cfg = checkpoint_views.parsed_metadata(meta).get("config")
    if isinstance(cfg, dict):
        out.print("[bold]config[/]")
        # never wrapped mid-string, nor emoji codes replaced: valid TOML to copy
        out.print(tomli_w.dumps(cfg), highlight=False, markup=False, emoji=False, soft_wrap=True)
    metrics = checkpoint_views.parsed_metadata(meta).get("metrics")
    history = checkpoint_views.history_rows(metrics) if isinstance(metrics, dict) else []
    if history:
        columns = checkpoint_views.history_columns(metrics)
        out.print(table("metrics history (validation)", columns, history, right=1))
    out.print(
        table(
            "tensors",
            checkpoint_views.TENSOR_COLUMNS,
            checkpoint_views.tensor_rows(header),
            right=3,
        )
    )
    if not evals:
        out.print("no evaluations yet: `workbench eval CKPT --suite paper`")
        return
    rows = [(*views.saved_evaluation_row(e), e["file"]) for e in evals]
    out.print(table("evaluations", (*views.SAVED_EVALUATION_COLUMNS, "file"), rows))


def runs(runs_dir: Path, infos: list[RunInfo], wide: bool = False) -> None:
    """The runs table; `wide` (or output that is not a terminal) keeps every name whole, so
    the name to pass to `--diff` can be read and copied, however narrow the terminal."""
    if not infos:
        out.print(f"no runs under {runs_dir} yet: try `workbench run demo --headless`")
        return
    rows = [
        (row[0], views.run_status(row[1]), row[2], *views.with_intervals(row[3:5], info), row[5])
        for row, info in zip(map(views.run_row, infos), infos, strict=True)
    ]
    title = f"runs in {runs_dir} (accuracy on the validation split, 95% interval)"
    t = table(title, views.RUN_COLUMNS, rows)
    if not (wide or not out.is_terminal):
        out.print(t)
        return
    t.columns[0].no_wrap = True
    t.columns[0].min_width = max(len(row[0]) for row in rows)
    need = Measurement.get(out, out.options.update_width(10_000), t).maximum
    width = out.width
    out.width = max(width, need)  # `print(width=)` never goes past the console's own width
    try:
        out.print(t)
    finally:
        out.width = width


def config_diff(names: list[str], rows: list[tuple[str, list[Any]]]) -> None:
    if not rows:
        out.print(f"{', '.join(names)}: the same settings")
        return
    cells = [(k, *(v if isinstance(v, str) else repr(v) for v in vals)) for k, vals in rows]
    out.print(table(f"settings that differ ({len(rows)})", ("setting", *names), cells))


def presets() -> None:
    rows = [views.preset_row(e) for e in catalog.presets()]
    out.print(table("presets (workbench run NAME)", ("preset", "description"), rows))
    rows = [views.preset_row(e) for e in catalog.suites()]
    title = "evaluation suites (workbench eval --suite NAME or FILE)"
    out.print(table(title, ("suite", "description"), rows))


def doctor(doc: dict[str, Any]) -> None:
    """What `workbench doctor` found: versions, devices, the smoke runs, the verdict."""
    v = doc["versions"]
    out.print(", ".join(f"{k} {v[k] or '-'}" for k in v), highlight=False)
    rows = [
        (
            d["device"],
            d["name"],
            f"{d['memory_gib']} GiB",
            d["bf16"] or "no",
            "-" if d["tf32"] is None else ("yes" if d["tf32"] else "no"),
        )
        for d in doc["devices"]
    ]
    out.print(table("devices", ("device", "name", "memory", "native bf16", "TF32"), rows))
    style = {"PASS": "green", "FAIL": "bold red", "SKIP": "dim"}
    rows = [
        (
            r["option"],
            views.styled(r["status"], style[r["status"]]),
            views.num(r["samples_per_s"], 0),
            r.get("why") or "; ".join(r.get("warnings") or []),
        )
        for r in doc["smoke"]
    ]
    title = f"smoke runs on {doc['device']} ({doc['smoke_about']})"
    out.print(table(title, ("option", "status", "samples/s", "note"), rows))
    used = ", ".join(doc["used_by_presets"]) or "none"
    out.print(f"the built-in presets use: {used}", highlight=False)
    if doc["failed_used"]:
        err.print(f"[bold red]failing here and used by presets:[/] {', '.join(doc['failed_used'])}")
