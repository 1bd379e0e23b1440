"""Study: the studies under the runs directory, their members, progress, report and plot.

The report is the engine's (engine/study/report.py), rebuilt in a worker
thread every few seconds from the members' folders, so the table and the
plot update as members finish; the screen only lays it out. A study run on
SLURM also shows each member's job (id, the scheduler's state, node, elapsed
time: engine/study/cluster.py, as `workbench study status`), and `l` opens
the highlighted member's job log.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Label, Static
from textual_plotext import PlotextPlot

from engine.study import members as ms
from engine.study.report import pair_line
from workbench.tui.keys import keys
from workbench.tui.log_screen import LogScreen
from workbench.tui.report_key import write_report
from workbench.views import (
    STUDY_GROUP_COLUMNS,
    STUDY_MEMBER_COLUMNS,
    error_text,
    study_group_row,
    study_member_row,
)

REFRESH_S = 3.0
JOB_COLUMNS = ("job", "SLURM state", "node", "elapsed")


def studies(runs_dir: Path) -> list[str]:
    if not runs_dir.is_dir():
        return []
    return sorted(
        p.name for p in runs_dir.iterdir() if (p / ms.STUDY_DIR / ms.RESOLVED_FILE).is_file()
    )


def load_report(runs_dir: Path, name: str) -> dict[str, Any]:
    """The study's report from its members' folders now (the engine does the statistics),
    its member rows joined with their SLURM jobs when it ran on SLURM."""
    from engine.study import cluster
    from engine.study.report import report

    spec, members = ms.load_resolved(runs_dir, name)
    doc, states = report(spec, members, runs_dir)
    if cluster.load_jobs(runs_dir, name):
        jobs = {r["name"]: r for r in cluster.status_rows(runs_dir, name, states)}
        for row in doc["members"]:
            job = jobs.get(row["name"], {})
            row.update({k: job.get(k, "") for k in JOB_KEYS})
    return doc


JOB_KEYS = ("job_id", "job_state", "node", "elapsed", "log", "err_log")


class StudyScreen(Screen):
    KEYMAP = "study"
    BINDINGS = keys(KEYMAP)

    def __init__(self) -> None:
        super().__init__()
        self.current: str | None = None
        self.doc: dict[str, Any] | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="study"):
            with Vertical(id="study-left"):
                yield Label("Studies", classes="pane-title")
                yield DataTable(id="studies", cursor_type="row")
                yield Label("Members", classes="pane-title")
                yield DataTable(id="members", cursor_type="row", zebra_stripes=True)
            with Vertical(id="study-right"):
                yield Label("", id="progress")
                yield DataTable(id="groups", cursor_type="row")
                yield Static("", id="pairs")
                yield PlotextPlot(id="study-plot")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.title = "Studies"
        self.query_one("#studies", DataTable).add_columns("study")
        self.query_one("#members", DataTable).add_columns(*STUDY_MEMBER_COLUMNS, *JOB_COLUMNS)
        self.query_one("#groups", DataTable).add_columns(*STUDY_GROUP_COLUMNS)
        names = studies(self.app.runs_dir)
        table = self.query_one("#studies", DataTable)
        for n in names:
            table.add_row(n, key=n)
        if not names:
            self.query_one("#progress", Label).update(
                "no studies yet: run one with  workbench study studies/FILE.toml"
            )
            return
        self.current = names[0]
        self.action_refresh()
        self.set_interval(REFRESH_S, self.action_refresh)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "studies" and event.row_key.value != self.current:
            self.current = event.row_key.value
            self.action_refresh()

    def action_job_log(self) -> None:
        """The highlighted member's SLURM job log (stdout, then stderr where SLURM says why)."""
        table = self.query_one("#members", DataTable)
        if self.doc is None or not table.row_count:
            return
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        row = next((r for r in self.doc["members"] if r["name"] == key), None)
        if row is None or not row.get("log"):
            self.notify("no SLURM job recorded for this member (run locally?)", severity="warning")
            return
        self.app.push_screen(
            LogScreen(
                Path(row["run_dir"]),
                f"job {row['job_id']}",
                path=Path(row["log"]),
                extra=Path(row["err_log"]) if row.get("err_log") else None,
            )
        )

    def action_refresh(self) -> None:
        if self.current:
            self._load(self.current)

    def action_report(self) -> None:
        if self.current:
            write_report(self, self.app.runs_dir / self.current)
        else:
            self.notify("no study selected", severity="warning")

    @work(thread=True, exclusive=True, group="study")
    def _load(self, name: str) -> None:
        try:
            doc = load_report(self.app.runs_dir, name)
        except Exception as exc:  # a study's files are hostile input: say so, never crash
            self.app.call_from_thread(self._show_error, name, error_text(exc))
            return
        self.app.call_from_thread(self._show, name, doc)

    def _show_error(self, name: str, message: str) -> None:
        self.query_one("#progress", Label).update(f"{name}: [red]{escape(message)}[/]")

    def _show(self, name: str, doc: dict[str, Any]) -> None:
        if name != self.current:
            return
        self.doc = doc
        rows = doc["members"]
        count = {s: sum(1 for r in rows if r["status"] == s) for s in {r["status"] for r in rows}}
        done = count.get(ms.DONE, 0)
        parts = ", ".join(f"{v} {k}" for k, v in sorted(count.items()))
        self.query_one("#progress", Label).update(
            f"[b]{escape(name)}[/]: {done}/{len(rows)} done ({parts}) · {doc['metric']}"
        )
        members = self.query_one("#members", DataTable)
        members.clear()
        for r in rows:
            name, robust, status, epoch = study_member_row(r)
            job = [escape(r.get(k) or "-") for k in ("job_id", "job_state", "node", "elapsed")]
            members.add_row(name, robust, escape(status[:60]), epoch, *job, key=name)
        groups = self.query_one("#groups", DataTable)
        groups.clear()
        for g in doc["groups"]:
            groups.add_row(*(escape(c) for c in study_group_row(g)))
        lines = [escape(pair_line(p)) for p in doc["pairs"]] or ["[dim]no pair evaluated yet[/]"]
        self.query_one("#pairs", Static).update("\n".join(lines))
        self._plot(doc)

    def _plot(self, doc: dict[str, Any]) -> None:
        plt = self.query_one("#study-plot", PlotextPlot).plt
        plt.clear_data()
        plt.clear_figure()
        groups = [g for g in doc["groups"] if g["robust"]["k"] > 0]
        if groups:
            xs = list(range(1, len(groups) + 1))
            ys = [g["robust"]["mean"] for g in groups]
            half = [
                0.0 if g["robust"]["k"] < 2 else (g["robust"]["high"] - g["robust"]["low"]) / 2
                for g in groups
            ]
            plt.error(xs, ys, yerr=half, color="red")
            plt.scatter(xs, ys, color="red")
            plt.xticks(xs, [g["label"] for g in groups])
            plt.xlim(0.5, len(groups) + 0.5)
            lo = min(y - h for y, h in zip(ys, half, strict=True))
            hi = max(y + h for y, h in zip(ys, half, strict=True))
            pad = max(1.0, (hi - lo) * 0.15)
            plt.ylim(max(0.0, lo - pad), min(100.0, hi + pad))
        plt.title("robust (worst case) test %, mean over seeds, 95% t")
        self.query_one("#study-plot", PlotextPlot).refresh()
