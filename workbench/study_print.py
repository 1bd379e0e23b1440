"""What `workbench study` prints: members changing state as they go, then the report."""

from __future__ import annotations

from typing import Any

from rich.markup import escape

from engine.study import members as ms
from engine.study.report import pair_line
from workbench import views
from workbench.plots import study_arms_plot, study_grid_plot
from workbench.printing import err, out, table


class Progress:
    """The `on_update` callback: one line per member whose state changed."""

    def __init__(self, study: str) -> None:
        self.study = study
        self.seen: dict[str, str] = {}

    def __call__(self, states: list[ms.MemberState]) -> None:
        done = sum(1 for s in states if s.status in (ms.DONE, ms.FAILED))
        for s in states:
            if self.seen.get(s.member.name) == s.status:
                continue
            self.seen[s.member.name] = s.status
            why = f": {s.reason}" if s.reason else ""
            err.print(
                f"[{done}/{len(states)}] {self.study}/{s.member.name} {s.status}{escape(why)}",
                highlight=False,
            )


def report(doc: dict[str, Any]) -> None:
    """The per-group table, the pair lines, the plots."""
    rows = []
    for g in doc["groups"]:
        cells = views.study_group_row(g)
        rows.append((*cells[:2], ",".join(map(str, g["n"])) or "-", *cells[2:]))
    cols = (*views.STUDY_GROUP_COLUMNS[:2], "n", *views.STUDY_GROUP_COLUMNS[2:])
    out.print(table(f"study {doc['study']}: test split, {doc['suite']} suite", cols, rows, 1))
    for g in doc["groups"]:
        for f in g["failed"]:
            out.print(f"  failed: {f['name']}: {escape(f['reason'] or 'no reason recorded')}")
    if doc["pairs"]:
        out.print("paired on the same test examples, robust (worst case):")
        for p in doc["pairs"]:
            out.print(f"  {escape(pair_line(p))}", highlight=False, soft_wrap=True)
    plot = study_arms_plot(doc)
    if plot:
        out.print(plot, highlight=False, markup=False)
    for g in study_grid_plot(doc):
        out.print(g, highlight=False, markup=False)


def status(study: str, rows: list[dict[str, Any]]) -> None:
    """`workbench study status NAME`: one line per member (logs whole, never cut)."""
    cells = [tuple(escape(c) for c in views.study_status_row(r)) for r in rows]
    title = f"study {study}: members and their SLURM jobs"
    out.print(table(title, views.STUDY_STATUS_COLUMNS, cells))
