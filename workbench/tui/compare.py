"""Compare: one metric from several runs on one chart, each selected run in a colour of its
own; the settings that differ between them (f); the plotted series as CSV (w).

Event files are read in a worker thread (cached by size and mtime), never on the UI thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import ContentSwitcher, DataTable, Footer, Header, Label, SelectionList
from textual_plotext import PlotextPlot

from engine.records.checkpoint_header import atomic_write_bytes
from engine.records.events import read_log
from engine.records.run_diff import differing
from engine.records.runs import list_runs
from workbench.tui.charts import Entry, draw, last_finite
from workbench.tui.dialogs import Prompt
from workbench.tui.keys import keys
from workbench.tui.run_screen import PALETTE
from workbench.tui.series import (
    RunSeries,
    compare_metrics,
    downsample,
    ema,
    metric_series,
    series_csv,
    smoothed,
)


def assign_colours(selected: list[str], kept: dict[str, str]) -> dict[str, str]:
    """A colour per selected run, in selection order: a run keeps its colour while it stays
    selected, a newly selected one takes the first colour no selected run has. Eight runs get
    eight colours (a name's hash gave two of the first three the same one); beyond that the
    palette repeats."""
    out = {n: kept[n] for n in selected if n in kept}
    for n in selected:
        if n not in out:
            used = set(out.values())
            free = [c for c in PALETTE if c not in used]
            out[n] = free[0] if free else PALETTE[len(out) % len(PALETTE)]
    return {n: out[n] for n in selected}


def cell(value: Any) -> str:
    return escape(value if isinstance(value, str) else repr(value))


class CompareScreen(Screen):
    KEYMAP = "compare"
    BINDINGS = keys(KEYMAP)

    def __init__(self) -> None:
        super().__init__()
        self.metric = "robust_acc"  # kept by name: the list changes with the selection
        self.series: dict[str, RunSeries] = {}  # the selected runs', in selection order
        self.colours: dict[str, str] = {}  # the selected runs' (assign_colours)
        self._cache: dict[str, tuple[tuple[int, float], RunSeries]] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            yield SelectionList[str](id="pick")
            with ContentSwitcher(initial="chart", id="compare-view"):
                yield PlotextPlot(id="chart")
                yield DataTable(id="diff", cursor_type="row", zebra_stripes=True)
        yield Label("", id="legend")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.title = "Compare runs"
        self.list_runs()

    @work(thread=True, exclusive=True, group="compare-list")
    def list_runs(self) -> None:
        try:
            names = [r.name for r in list_runs(self.app.runs_dir)]
        except OSError as exc:
            self.app.call_from_thread(self.notify, f"runs: {exc}", severity="error")
            names = []
        self.app.call_from_thread(self._fill, names)

    def _fill(self, names: list[str]) -> None:
        pick = self.query_one("#pick", SelectionList)
        for i, name in enumerate(names):
            pick.add_option((self._prompt(name), name, i < 3))
        self.reload()

    def on_selection_list_selected_changed(self) -> None:
        self.reload()

    def _prompt(self, name: str) -> str:
        """A run in the list: its colour's mark while selected, a blank before it otherwise."""
        colour = self.colours.get(name)
        return f"[{colour}]■[/] {escape(name)}" if colour else f"  {escape(name)}"

    def reload(self) -> None:
        pick = self.query_one("#pick", SelectionList)
        selected = list(pick.selected)
        before = self.colours
        self.colours = assign_colours(selected, before)
        for i in range(pick.option_count):
            name = pick.get_option_at_index(i).value
            if before.get(name) != self.colours.get(name):
                pick.replace_option_prompt_at_index(i, self._prompt(name))
        self.load(selected)

    @work(thread=True, exclusive=True, group="compare-load")
    def load(self, names: list[str]) -> None:
        loaded, failed = {}, []
        for name in names:
            try:
                loaded[name] = self._read(name)
            except Exception as exc:  # a worker reports, it never takes the app down
                failed.append(f"{name}: {exc}")
        self.app.call_from_thread(self._loaded, loaded, failed)

    def _read(self, name: str) -> RunSeries:
        path = self.app.runs_dir / name / "events.jsonl"
        try:
            st = path.stat()
        except OSError:
            return RunSeries()
        sig = (st.st_size, st.st_mtime)
        hit = self._cache.get(name)
        if hit and hit[0] == sig:
            return hit[1]
        s = RunSeries()
        log = read_log(path)
        for d in log.damage:
            s.note_damage(str(d))
        for e in log.events:
            s.add(e, checked=True)
        self._cache[name] = (sig, s)
        return s

    def _loaded(self, loaded: dict[str, RunSeries], failed: list[str]) -> None:
        for message in failed:
            self.notify(message, severity="error")
        self.series = loaded
        self.show_diff()  # first: the diff view's label counts this table's rows
        self.draw()

    # -- actions
    def metrics(self) -> list[str]:
        """Accuracies, loss and lr, plus the curves the selected runs' methods declared."""
        return compare_metrics(self.series.values())

    def action_next_metric(self) -> None:
        metrics = self.metrics()
        at = metrics.index(self.metric) if self.metric in metrics else -1
        self.metric = metrics[(at + 1) % len(metrics)]
        self.draw()

    def action_config_diff(self) -> None:
        """Switch the right pane between the chart and the settings that differ."""
        view = self.query_one("#compare-view", ContentSwitcher)
        view.current = "diff" if view.current == "chart" else "chart"
        self.draw()

    def action_export(self) -> None:
        metric = self.metric
        if not self.series:
            self.notify("select runs to export", severity="warning")
            return

        def answered(value: str | None) -> None:
            if value and value.strip():
                self.write_csv(Path(value.strip()).expanduser(), metric)

        self.app.push_screen(
            Prompt(f"Write the {metric} series to CSV:", f"compare-{metric}.csv"), answered
        )

    def write_csv(self, path: Path, metric: str) -> None:
        try:
            atomic_write_bytes(path, series_csv(self.series, metric).encode())
        except OSError as exc:
            self.notify(f"export: {exc}", severity="error")
            return
        self.notify(f"wrote {path} ({len(self.series)} runs, {metric})")

    # -- views
    def colour(self, name: str) -> str:
        """A loaded run's colour (one deselected since its load began keeps the first one)."""
        return self.colours.get(name, PALETTE[0])

    def show_diff(self) -> None:
        table = self.query_one("#diff", DataTable)
        table.clear(columns=True)
        names = list(self.series)
        rows = differing({n: self.series[n].state.config for n in names})
        table.add_columns("setting", *names)
        for key, values in rows:
            table.add_row(key, *(cell(v) for v in values))

    def draw(self) -> None:
        if self.series and self.metric not in self.metrics():
            self.metric = self.metrics()[0]  # none of the selected runs has that curve
        metric = self.metric
        if self.query_one("#compare-view", ContentSwitcher).current == "diff":
            n = self.query_one("#diff", DataTable).row_count
            what = (
                f"{n} setting{' differs' if n == 1 else 's differ'}"
                if len(self.series) > 1
                else "select two or more runs"
            )
            self.query_one("#legend", Label).update(f"{what}  (f: back to the chart)")
            return
        plot = self.query_one("#chart", PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        width = max(10, plot.size.width - 8)
        series, axis, legend = [], "epoch", []
        for name, s in self.series.items():
            axis, xs, ys = metric_series(s, metric)
            smooth = axis == "step" and smoothed(s, metric) and bool(ys)
            legend.append(Entry(name, self.colour(name), last_finite(ys), smooth).markup())
            if axis == "step":
                ys = ema(ys) if smooth else ys
                xs, ys = downsample(xs, ys, width)
            series.append((name, xs, ys, self.colour(name)))
        plt.xlabel(axis)
        title = f"{metric} by {axis}  (m: next metric)"
        # a step axis ticks at epoch boundaries when the runs share their epoch length
        lengths = {s.state.steps_per_epoch for s in self.series.values()}
        spe = lengths.pop() if axis == "step" and len(lengths) == 1 else 0
        draw(plt, title, series, True, plot.size.height, plot.size.width, spe)
        drawn = any(xs for _, xs, _, _ in series)
        self.query_one("#legend", Label).update(
            "  ".join(legend) if drawn else "select runs on the left"
        )
        plot.refresh()
