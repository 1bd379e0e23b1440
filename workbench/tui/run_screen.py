"""The live run screen: curves, progress and the event log, fed by events.jsonl alone."""

from __future__ import annotations

import math
import time
from collections.abc import Collection
from pathlib import Path

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.containers import Grid, Horizontal
from textual.geometry import Size
from textual.screen import Screen
from textual.widgets import Footer, Header, Label, ProgressBar, RichLog
from textual.worker import get_current_worker
from textual_plotext import PlotextPlot

from engine.records.events import EventTail
from workbench.tui.charts import Entry, LegendPlot, draw, last_finite
from workbench.tui.keys import keys
from workbench.tui.launcher import last_output, launch_state, live_status
from workbench.tui.log_screen import LogScreen
from workbench.tui.report_key import write_report
from workbench.tui.series import (
    RunSeries,
    downsample,
    ema,
    smoothed,
    step_plots,
    step_values,
)
from workbench.views import duration, interval, num, run_status

PALETTE = ["cyan", "orange", "green", "magenta", "yellow", "red", "blue", "white"]


def finite(xs: list[float], ys: list[float | None]) -> tuple[list[float], list[float]]:
    pairs = [
        (x, float(y))
        for x, y in zip(xs, ys, strict=False)
        if isinstance(y, int | float) and math.isfinite(y)
    ]
    return [p[0] for p in pairs], [p[1] for p in pairs]


class RunScreen(Screen):
    """Attach to a run directory: works for runs started here, from a shell, or finished."""

    KEYMAP = "run"
    BINDINGS = keys(KEYMAP)

    def __init__(self, run_dir: Path, epochs: int = 0) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.epochs = epochs  # the preset's, shown until the run's own run_started arrives
        self.shown_status = "launching…"  # what the header says (launcher.live_status)
        self.series = RunSeries()
        self.smooth = True
        self.dirty = True
        self._logged = 0
        self._gpu = ""
        self.maximised: str | None = None
        self._drawn: list[Size] | None = None  # the plots' sizes when last drawn

    def compose(self) -> ComposeResult:
        yield Header()
        yield Label("", id="run-info")
        yield Label("", id="run-test")  # the final test, once the run has finished
        with Horizontal(id="run-progress"):
            yield ProgressBar(id="bar", show_eta=False)
            yield Label("", id="run-rate")
        with Grid(id="plots"):  # the method's own plots join before accuracy (`_arrange`)
            yield LegendPlot(id="p-loss")
            yield LegendPlot(id="p-acc")
            yield LegendPlot(id="p-lr")
        yield RichLog(id="log", markup=True, wrap=True, max_lines=500)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.title = self.run_dir.name
        self.sub_title = "live run"
        self.query_one("#run-test", Label).display = False
        self._layout()
        self.follow()
        self.set_interval(0.4, self.redraw)

    def on_resize(self) -> None:
        """The log wraps at the width it had when a line came: rewrite it at the new one."""
        self.query_one("#log", RichLog).clear()
        self._logged = 0
        self.dirty = True

    @work(thread=True, exclusive=True, group="follow")
    def follow(self) -> None:
        """Tail events.jsonl in a thread; hand batches of events to the UI thread."""
        worker = get_current_worker()
        tail = EventTail(self.run_dir / "events.jsonl")
        seen = 0  # damage reported so far
        while not worker.is_cancelled:
            events = tail.poll()
            damage, seen = [str(d) for d in tail.damage[seen:]], len(tail.damage)
            if events or damage:
                self.app.call_from_thread(self.ingest, events, damage)
            time.sleep(0.25)

    def ingest(self, events: list[dict], damage: list[str] | None = None) -> None:
        for reason in damage or []:
            self.series.note_damage(reason)
        for e in events:  # EventTail validated them
            self.series.add(e, checked=True)
        self._arrange()
        self.dirty = True

    def _arrange(self) -> None:
        """One plot widget per plot of the method's own (its `run_started` says which), in the
        grid before accuracy; a run's method never changes, so widgets are only ever added."""
        grid = self.query_one("#plots", Grid)
        have = len(grid.query(".own"))
        want = len(step_plots(self.series)) - 1
        if want <= have:
            return
        new = [LegendPlot(id=f"p-own-{i}", classes="own") for i in range(have, want)]
        for widget in new:
            widget.display = self.maximised is None
        grid.mount_all(new, before="#p-acc")
        self._layout()

    def _layout(self) -> None:
        """Two plots a row; an odd count gives the loss plot the whole top row."""
        grid = self.query_one("#plots", Grid)
        plots = list(grid.query(PlotextPlot))
        whole = self.maximised is None
        grid.styles.grid_size_rows = math.ceil(len(plots) / 2) if whole else 1
        plots[0].styles.column_span = 1 + len(plots) % 2 if whole else 1

    def _header(self) -> None:
        state = self.series.state
        done, total = state.progress()
        self.query_one("#bar", ProgressBar).update(total=total, progress=done)
        st = state.last_step
        now = time.time()
        phase = self.shown_status
        device = f"  on {state.device}" if state.device else ""
        info = (
            f"[b]{state.name or self.run_dir.name}[/]  {state.method}"
            f"{device}  {run_status(phase)}  "
            f"epoch {state.current_epoch()}/{state.epochs_total or self.epochs or '?'}"
            + ("  [b red]damaged[/] (see the log)" if state.damage else "")
        )
        self.query_one("#run-info", Label).update(info)
        test = self.query_one("#run-test", Label)
        test.display = state.test is not None
        if state.test is not None:
            test.update(test_line(state.test))
        rate = st.get("samples_per_s")
        left = state.eta(now)
        eta = "-" if left is None else duration(left)
        gpu = st.get("gpu_mem_mb")
        mem = f"  GPU {gpu:,.0f}/{st.get('gpu_peak_mb', gpu):,.0f} MiB" if gpu is not None else ""
        ago = state.since_last_event(now)
        last = "" if ago is None or state.status != "running" else f"  last event {ago:.0f} s ago"
        self.query_one("#run-rate", Label).update(
            " no process is writing it (l: its log)"
            if phase == "stale"
            else f" {rate:,.0f} samples/s  ETA {eta}{mem}{last}"
            if isinstance(rate, int | float)
            else f" waiting{last}"
        )

    # -- drawing (at most ~2.5 redraws a second, only when something changed)
    def redraw(self) -> None:
        if (
            self.series.state.status == "starting"
            and launch_state(self.run_dir) == "failed"
            and not (self.run_dir / "events.jsonl").exists()
        ):
            self.series.state.status = "failed"
            self.series.log.append(("bold red", f"did not start: {last_output(self.run_dir)}"))
            self.dirty = True
        self.shown_status = live_status(self.run_dir, self.series.state)  # a stat, rarely a lock
        self._header()  # every tick: the ETA counts down, "last event" counts up
        s = self.series
        log = self.query_one("#log", RichLog)
        for style, text in s.log[self._logged :]:
            log.write(f"[{style}]{text}[/]" if style else text)
        self._logged = len(s.log)
        sizes = [w.size for w in self.query(PlotextPlot) if w.display]
        if not self.dirty and sizes == self._drawn:
            return
        if not all(size.area for size in sizes):
            return  # a plot just mounted has no size yet: draw once the grid is laid out
        self.dirty = False
        self._drawn = sizes
        for i, plot in enumerate(step_plots(s)):
            wid = "#p-loss" if i == 0 else f"#p-own-{i - 1}"
            lines = {k: step_values(s, k) for k in plot.keys}
            smooth = {k for k in plot.keys if self.smooth and smoothed(s, k)}
            self._plot_simple(wid, plot.title, lines, smooth)
        self._plot_acc()
        self._plot_simple("#p-lr", "learning rate", {"lr": s.lr})

    def _width(self, wid: str) -> int:
        return max(10, self.query_one(wid).size.width - 8)

    def _plot_acc(self) -> None:
        s = self.series
        plot = self.query_one("#p-acc", LegendPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        xs = [float(e) for e in s.state.epochs]
        pairs = (("clean", s.state.clean_acc), ("robust", s.state.robust_acc))
        series = [(name, *finite(xs, ys), PALETTE[i]) for i, (name, ys) in enumerate(pairs)]
        st = s.state
        # the overfitting guard's checks, on the same epoch axis (engine/train/guard.py)
        if st.guard_x:
            series.append(("guard (train)", *finite(st.guard_x, st.guard_acc), PALETTE[2]))
        plot.entries = [Entry(name, colour, last_finite(ys)) for name, _, ys, colour in series]
        title = "validation accuracy %" + (", guard on training data" if st.guard_x else "")
        whole = all(float(x).is_integer() for x in st.guard_x)  # checks between epoch ends
        draw(plt, title, series, whole, plot.plot_rows(), plot.size.width)
        plot.refresh()

    def _plot_simple(
        self, wid: str, title: str, lines: dict[str, list[float]], smooth: Collection[str] = ()
    ) -> None:
        """Per-step series on one plot; those named in `smooth` through an EMA."""
        s = self.series
        plot = self.query_one(wid, LegendPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        width = self._width(wid)
        series, entries = [], []
        for i, (name, ys) in enumerate(lines.items()):
            fx, fy = finite(s.step_x, ys)
            colour = PALETTE[i % len(PALETTE)]
            entries.append(Entry(name, colour, last_finite(fy), name in smooth and bool(fy)))
            if name in smooth and fy:
                fy = ema(fy)
            fx, fy = downsample(fx, fy, width)
            series.append((name, fx, fy, colour))
        plot.entries = entries
        spe = s.state.steps_per_epoch if s.state.epochs_total else 0
        draw(plt, title, series, True, plot.plot_rows(), plot.size.width, spe)
        plot.refresh()

    def action_maximise(self) -> None:
        """z: one plot fills the grid, the next z the next plot, then all of them again."""
        order = [str(w.id) for w in self.query(PlotextPlot)]
        self.maximised = (
            None
            if self.maximised == order[-1]
            else (order[0] if self.maximised is None else order[order.index(self.maximised) + 1])
        )
        grid = self.query_one("#plots", Grid)
        grid.set_class(self.maximised is not None, "maximised")
        for wid in order:
            self.query_one(f"#{wid}", PlotextPlot).display = self.maximised in (None, wid)
        self._layout()
        self.dirty = True

    # -- actions
    def action_toggle_ema(self) -> None:
        self.smooth = not self.smooth
        self.dirty = True

    def action_stop(self) -> None:
        self.app.action_stop(self.run_dir)

    def action_log(self) -> None:
        self.app.push_screen(LogScreen(self.run_dir))

    def action_report(self) -> None:
        write_report(self, self.run_dir)

    def action_inspect(self) -> None:
        best = self.run_dir / "best.safetensors"
        if best.exists():
            self.app.action_inspect(best)
        else:
            self.notify("no best checkpoint yet")


def test_line(test: dict) -> str:
    """The final test of the selected checkpoint, as run_finished reported it: accuracies with
    their n and 95% intervals, the split, and which checkpoint (epoch) was tested."""

    def part(name: str) -> str:
        bounds = interval(test.get(f"{name}_interval"))
        n = test.get(f"{name}_n")
        size = f" of {n}" if isinstance(n, int) and not isinstance(n, bool) else ""
        return (
            f"{name} [b]{num(test.get(f'{name}_acc'))}%[/]"
            + (f" {bounds}" if bounds else "")
            + size
        )

    checkpoint = test.get("checkpoint")
    which = Path(checkpoint).name if isinstance(checkpoint, str) and checkpoint else "checkpoint"
    epoch = test.get("epoch")
    at = f", epoch {epoch}" if isinstance(epoch, int) and not isinstance(epoch, bool) else ""
    split = test.get("split") if isinstance(test.get("split"), str) else "test"
    head = escape(f"{split} split, {which}{at}")
    return f"[b]final test[/] ({head}): {part('clean')}  {part('robust')}"
