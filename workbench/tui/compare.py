"""Compare: one metric from several runs on one chart, each run in a stable colour."""

from __future__ import annotations

import zlib

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Header, Label, SelectionList
from textual_plotext import PlotextPlot

from engine.events import read_events
from engine.runs import list_runs
from workbench.series import RunSeries, downsample, ema
from workbench.tui.keys import keys
from workbench.tui.run_screen import PALETTE, finite

METRICS = ["robust_acc", "clean_acc", "loss", "lkd_clean", "lkd_adv", "lr"]


def colour_for(name: str) -> str:
    """The same run gets the same colour every time, whatever else is selected."""
    return PALETTE[zlib.crc32(name.encode()) % len(PALETTE)]


class CompareScreen(Screen):
    KEYMAP = "compare"
    BINDINGS = keys(KEYMAP)

    def __init__(self) -> None:
        super().__init__()
        self.metric = 0

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            yield SelectionList[str](id="pick")
            yield PlotextPlot(id="chart")
        yield Label("", id="legend")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.title = "Compare runs"
        pick = self.query_one("#pick", SelectionList)
        for i, r in enumerate(list_runs(self.app.runs_dir)):
            pick.add_option((f"[{colour_for(r.name)}]■[/] {r.name}", r.name, i < 3))
        self.draw()

    def on_selection_list_selected_changed(self) -> None:
        self.draw()

    def action_next_metric(self) -> None:
        self.metric = (self.metric + 1) % len(METRICS)
        self.draw()

    def draw(self) -> None:
        metric = METRICS[self.metric]
        plot = self.query_one("#chart", PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(f"{metric}  (m: next metric)")
        names = self.query_one("#pick", SelectionList).selected
        width = max(10, plot.size.width - 8)
        legend = []
        for name in names:
            s = RunSeries()
            path = self.app.runs_dir / name / "events.jsonl"
            for e in read_events(path) if path.exists() else []:
                s.add(e)
            if metric in ("robust_acc", "clean_acc"):
                xs, ys = finite([float(e) for e in s.state.epochs], getattr(s.state, metric))
                plt.xlabel("epoch")
            else:
                raw = (
                    s.loss
                    if metric == "loss"
                    else s.lr
                    if metric == "lr"
                    else s.parts.get(metric, [])
                )
                xs, ys = finite(s.step_x, raw)
                if metric != "lr":
                    ys = ema(ys)
                xs, ys = downsample(xs, ys, width)
                plt.xlabel("step")
            if xs:
                plt.plot(xs, ys, label=name, color=colour_for(name), marker="braille")
                legend.append(f"[{colour_for(name)}]■[/] {name}")
        self.query_one("#legend", Label).update("  ".join(legend) or "select runs on the left")
        plot.refresh()
