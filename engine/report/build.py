"""`workbench report`: what a run, an evaluation, a sweep or a study becomes on paper.

The target is read and checked whole, and every figure rendered to bytes,
before anything is written: bad input (an unknown run, a folder that is a
file, a format not supported, a damaged evaluation) ends in one WorkbenchError
line with nothing on disk. Files are then written atomically into one folder:
the figures in each format asked for, `report.md` (a Markdown summary that
embeds them, with the table), and with `--latex` / `--markdown` the table as
`table.tex` (booktabs) / `table.md`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.records.checkpoint_header import atomic_write_bytes
from engine.records.evidence import WORST, list_evaluations, read_suite
from engine.records.runs import STUDY_MARK
from engine.report import style, tables
from engine.report.inputs import (
    _json,
    check_out,
    check_suite,
    check_sweep,
    checkpoint_label,
    locate,
    newest_sweep,
)
from engine.report.run_data import RunData, number, run_data
from engine.spec.errors import WorkbenchError
from engine.spec.registry import known_norm_label

REPORT_DIR = "report"  # inside a run folder, beside an evaluation (<stem>-report), in .study/


@dataclass
class Report:
    """A target read and drawn, not yet written."""

    kind: str  # run, evaluation, sweep, study
    name: str
    default_out: Path
    figures: dict[str, tuple[Any, str]] = field(default_factory=dict)  # name -> (fig, caption)
    table: tables.Table | None = None
    text: list[str] = field(default_factory=list)  # paragraphs of the summary
    palette: style.Palette = field(default_factory=style.Palette)


@dataclass
class Written:
    out: Path
    files: list[Path]


def _eval_row(doc: dict[str, Any], label: str) -> tables.Row:
    intervals = doc.get("intervals") or {}
    cells = {k: tables.cell(v, intervals.get(k)) for k, v in doc["table"].items()}
    return tables.Row(label, {k: c for k, c in cells.items() if c is not None})


def _eval_note(doc: dict[str, Any]) -> str:
    norm = known_norm_label(doc.get("norm"), str(doc.get("norm")))  # a file: hostile input
    return (
        f"the {doc.get('suite')} suite on n = {doc.get('n')} {doc.get('split', 'test')} examples "
        f"of {doc.get('dataset', '?')}, {norm} eps {doc.get('eps')}; the worst case is per example "
        "over every column"
    )


def _add_evaluation(rep: Report, doc: dict[str, Any], path: Path, label: str) -> None:
    from engine.report.eval_figures import columns_figure

    rep.figures["eval-columns"] = (
        columns_figure(doc, rep.palette, label),
        f"{label}: accuracy per attack and the per-example worst case (black), "
        f"{_eval_note(doc)}; whiskers: 95% Wilson intervals ({path.name}).",
    )
    rep.table = tables.Table(f"{label}.", [_eval_row(doc, label)], "95% Wilson", _eval_note(doc))
    worst = doc["table"].get(WORST)
    bounds = (doc.get("intervals") or {}).get(WORST)
    if worst is not None and bounds:
        rep.text.append(
            f"Worst case under the {doc.get('suite')} suite: {float(worst):.1f}% "
            f"[{float(bounds[0]):.1f}, {float(bounds[1]):.1f}] (n = {doc.get('n')}, 95% Wilson; "
            f"{path})."
        )


def _add_sweep(rep: Report, doc: dict[str, Any], path: Path) -> None:
    from engine.report.eval_figures import sweep_curves, sweep_figure

    n = doc.get("n")
    rep.figures["eps-sweep"] = (
        sweep_figure(doc, rep.palette),
        f"Accuracy under PGD-{doc.get('steps')} against eps (n = {n} test examples; bands: 95% "
        f"Wilson intervals; {path.name}).",
    )
    rows = []
    for c in sweep_curves(doc):
        pts = ", ".join(
            f"eps {float(e):.3g}: {float(a):.1f} [{float(b[0]):.1f}, {float(b[1]):.1f}]"
            for e, a, b in zip(doc["eps"], c["accuracy"], c["intervals"], strict=True)
        )
        rows.append(f"{c.get('label', 'model')} (n = {c.get('n', n)}): {pts}.")
    rep.text.extend(rows)


def run_report(path: Path) -> Report:
    from engine.report.run_figures import run_figures

    data = run_data(path)
    rep = Report("run", data.name, path / REPORT_DIR)
    rep.figures.update(run_figures(data, rep.palette))
    rep.text.append(_run_line(data))
    best = path / "best.safetensors"
    evals = [
        e
        for e in list_evaluations(best)
        if "error" not in e and e.get("kind") == "suite" and isinstance(e.get("file"), str)
    ]
    if evals:
        f = Path(evals[-1]["file"])
        doc = check_suite(read_suite(f), f)
        _add_evaluation(rep, doc, f, data.name)
    found = newest_sweep(path / "eval", best)
    if found:
        _add_sweep(rep, *found)
    if data.damage:
        more = f" (and {len(data.damage) - 1} more)" if len(data.damage) > 1 else ""
        rep.text.append(f"Skipped as damaged: {data.damage[0]}{more}.")
    return rep


def _run_line(data: RunData) -> str:
    s = data.state
    cfg = s.config
    method = (cfg.get("method") or {}).get("name", "?")
    line = f"Run {data.name}: {method} on {(cfg.get('data') or {}).get('dataset', '?')}, "
    line += f"{s.status}, {s.epoch} of {s.epochs_total} epochs."
    t = s.test or {}
    if number(t.get("robust_acc")) is not None and isinstance(t.get("robust_interval"), list):
        lo, hi = t["robust_interval"]
        ev, at = cfg.get("eval") or {}, cfg.get("attack") or {}
        line += (
            f" The checkpoint selected on validation (epoch {t.get('epoch')}), on the test split: "
            f"{t['robust_acc']:.1f}% [{lo:.1f}, {hi:.1f}] robust under PGD-{ev.get('steps')} at "
            f"eps {at.get('eps')} (n = {t.get('robust_n', t.get('n'))}, 95% Wilson)"
        )
        if number(t.get("clean_acc")) is not None and isinstance(t.get("clean_interval"), list):
            clo, chi = t["clean_interval"]
            line += f", {t['clean_acc']:.1f}% [{clo:.1f}, {chi:.1f}] clean"
        line += "."
    return line


def evaluation_report(path: Path) -> Report:
    doc = check_suite(read_suite(path), path)
    label = checkpoint_label(doc.get("checkpoint", path.stem))
    rep = Report("evaluation", label, path.with_name(path.stem + "-" + REPORT_DIR))
    _add_evaluation(rep, doc, path, label)
    found = newest_sweep(path.parent, Path(str(doc.get("checkpoint"))))
    if found:
        _add_sweep(rep, *found)
    return rep


def sweep_report(path: Path) -> Report:
    doc = check_sweep(_json(path), path)
    rep = Report("sweep", path.stem, path.with_name(path.stem + "-" + REPORT_DIR))
    _add_sweep(rep, doc, path)
    return rep


def study_report(kind: str, path: Path) -> Report:
    from engine.report import study_figures as sf

    if kind == "study":
        from engine.study import members as ms
        from engine.study import report as rp

        spec, members = ms.load_resolved(path.parent, path.name)
        doc, _ = rp.report(spec, members, path.parent)
        out = path / STUDY_MARK / REPORT_DIR
    else:
        doc = _json(path)
        if not isinstance(doc.get("groups"), list) or not isinstance(doc.get("pairs"), list):
            raise WorkbenchError(f"{path}: key 'groups': not a study report")
        out = path.with_name(path.stem + "-" + REPORT_DIR)
    name = str(doc.get("study", path.name))
    rep = Report("study", name, out)
    for g in doc["groups"]:
        rep.palette(g["arm"])  # colours in the arms' order, whatever figure comes first
    if any(g["evaluated"] for g in doc["groups"]):
        rep.figures["arms"] = (
            sf.arms_figure(doc, rep.palette),
            f"{name}: test accuracy per arm, mean over seeds (diamond) with its 95% Student-t "
            f"interval, and each seed (dots); {doc.get('metric', '')}.",
        )
    key = sf.grid_key(doc)
    if key:
        rep.figures["grid"] = (
            sf.grid_figure(doc, rep.palette, key),
            f"{name}: robust (solid) and clean (dashed) test accuracy against {key}, mean over "
            "seeds with 95% Student-t bands.",
        )
    if doc["pairs"]:
        rep.figures["paired"] = (
            sf.paired_figure(doc, rep.palette),
            f"{name}: paired differences in robust accuracy on the same test examples, mean over "
            "seeds with its 95% Student-t interval, and each seed's difference (dots).",
        )
    from engine.study.report import pair_line

    states = [str(m.get("status")) for m in doc.get("members") or []]
    counts = ", ".join(f"{states.count(s)} {s}" for s in dict.fromkeys(states))
    rep.text.append(f"Study {name}: {len(states)} members ({counts}); suite {doc.get('suite')}.")
    rep.text.extend(pair_line(p) for p in doc["pairs"])
    rep.table = study_table(doc, name)
    return rep


def study_table(doc: dict[str, Any], name: str) -> tables.Table:
    """One row per group: clean and the worst case as the report gives them, the other columns
    over the same members' saved evaluations (mean and t-interval over seeds)."""
    from engine.eval.stats import over_seeds

    rows, ns = [], set()
    for g in doc["groups"]:
        if not g["evaluated"]:
            continue
        per_col: dict[str, list[float]] = {}
        for m in doc.get("members") or []:
            if m.get("label") != g["label"] or "robust" not in m or not m.get("evaluation"):
                continue
            try:
                ev = read_suite(Path(m["evaluation"]))
            except WorkbenchError:
                continue  # the report counted it already; its columns are simply missing
            for col, v in ev["table"].items():
                if number(v) is not None and col not in ("clean", WORST):
                    per_col.setdefault(col, []).append(float(v))
        cells = {c: tables.seeds_cell(over_seeds(v).to_dict()) for c, v in per_col.items()}
        cells["clean"] = tables.seeds_cell(g["clean"])
        cells[WORST] = tables.seeds_cell(g["robust"])
        ns.update(g.get("n") or [])
        label = g["label"] + (f" ({g['evaluated']} seeds)" if g["evaluated"] != 1 else " (1 seed)")
        rows.append(tables.Row(label, {k: c for k, c in cells.items() if c is not None}))
    n = ", ".join(str(x) for x in sorted(ns)) or "?"
    note = f"the {doc.get('suite')} suite on n = {n} test examples per seed"
    return tables.Table(f"{name}: mean over seeds.", rows, "95% Student-t over seeds", note)


def load_report(target: str, runs_dir: Path) -> Report:
    """The target read, checked and drawn (call inside `style.styled()`); nothing written."""
    kind, path = locate(target, runs_dir)
    if kind == "run":
        return run_report(path)
    if kind == "evaluation":
        return evaluation_report(path)
    if kind == "sweep":
        return sweep_report(path)
    if kind == "study":
        return study_report(kind, path)
    try:  # a study report given as a file: anything in it may be wrong
        return study_report(kind, path)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise WorkbenchError(f"{path}: not a study report the workbench wrote ({exc!r})") from None


# ---------------------------------------------------------------- writing


def summary_markdown(rep: Report, embed: str | None, formats: tuple[str, ...]) -> str:
    """report.md: the text, each figure embedded (`embed` format) with its caption, the table."""
    lines = [f"# Report: {rep.name} ({rep.kind})", ""]
    for para in rep.text:
        lines += [para, ""]
    for i, (name, (_, caption)) in enumerate(rep.figures.items(), start=1):
        files = ", ".join(f"[{f}]({name}.{f})" for f in formats)
        if embed:
            lines.append(f"![Figure {i}: {name}]({name}.{embed})")
            lines.append("")
        lines += [f"*Figure {i}.* {caption} ({files})", ""]
    if rep.table is not None and rep.table.rows:
        lines += ["## Table", "", tables.markdown(rep.table)]
    return "\n".join(lines).rstrip() + "\n"


def make_report(
    target: str,
    *,
    runs_dir: Path = Path("runs"),
    out: Path | None = None,
    formats: tuple[str, ...] = ("png",),
    latex: bool = False,
    markdown: bool = False,
    require_table: bool = True,
) -> Written:
    """Read, draw and render everything, then write it all into one folder; return what.

    `require_table=False` (the app's key) writes the tables when there is one and leaves
    them out quietly otherwise; the CLI's `--latex` on a target with none is an error."""
    if out is not None:
        check_out(out)
    blobs: dict[str, bytes] = {}
    with style.styled():
        rep = load_report(target, runs_dir)
        try:
            no_table = rep.table is None or not rep.table.rows
            if (latex or markdown) and no_table and require_table:
                hint = {
                    "study": "no member is evaluated yet",
                    "run": f"first: workbench eval {rep.default_out.parent}/best.safetensors",
                }.get(rep.kind, "a sweep has no table of attacks")
                raise WorkbenchError(
                    f"report {target}: --latex/--markdown: no table to write ({hint})"
                )
            for name, (fig, _) in rep.figures.items():
                for fmt in formats:
                    blobs[f"{name}.{fmt}"] = style.render(fig, fmt)
        finally:
            for fig, _ in rep.figures.values():
                style.close(fig)
    dest = check_out(out if out is not None else rep.default_out)
    embed = next((f for f in ("png", "svg") if f in formats), None)
    blobs["report.md"] = summary_markdown(rep, embed, formats).encode()
    if rep.table is not None and rep.table.rows:
        label = style.slug(rep.name)
        if latex:
            blobs["table.tex"] = tables.latex(rep.table, label).encode()
        if markdown:
            blobs["table.md"] = tables.markdown(rep.table).encode()
    files = []
    for name, data in blobs.items():
        atomic_write_bytes(dest / name, data)
        files.append(dest / name)
    return Written(dest, files)
