"""How every plot in the app is drawn: the legend under the plot (each series' swatch, name,
last raw value and "(EMA)" where the curve is smoothed), never in the title or over a curve;
y ticks at the data's own lowest, middle and highest values; x ticks at epoch boundaries on a
step axis, integer epochs on an epoch axis; short series as visible points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from rich.markup import escape
from rich.text import Text
from textual.app import RenderResult
from textual_plotext import PlotextPlot

SHORT = 3  # a series with fewer points is drawn as large dots, not a line


def tick(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.2e}"


@dataclass(frozen=True)
class Entry:
    """One series in a legend: what it is, its colour, its newest raw value, whether smoothed."""

    name: str
    colour: str
    last: float | None
    smoothed: bool = False

    def markup(self, colour: str | None = None) -> str:
        """Textual markup by default; `colour` overrides the swatch's (rich's names differ)."""
        value = "-" if self.last is None else tick(self.last)
        ema = " (EMA)" if self.smoothed else ""
        return f"[{colour or self.colour}]■[/] {escape(self.name)} {value}{ema}"


RICH_COLOURS = {"orange": "orange1"}  # plotext and Textual say orange; rich says orange1


def last_finite(ys: list[float]) -> float | None:
    """The newest finite value: what a legend reports (the raw one, not the EMA drawn)."""
    return next((float(y) for y in reversed(ys) if math.isfinite(y)), None)


def legend_lines(entries: list[Entry], width: int) -> list[Text]:
    """The entries packed into lines of `width`, never one split across two."""
    lines: list[Text] = []
    line = Text()
    for entry in entries:
        text = Text.from_markup(entry.markup(RICH_COLOURS.get(entry.colour, entry.colour)))
        if line and line.cell_len + 2 + text.cell_len > width:
            lines.append(line)
            line = Text()
        if line:
            line.append("  ")
        line.append_text(text)
    if line:
        lines.append(line)
    for line in lines:
        line.truncate(max(1, width), overflow="ellipsis")
    return lines


class LegendPlot(PlotextPlot):
    """A plotext plot with its legend on the rows under it, as many as the entries need."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.entries: list[Entry] = []

    def legend(self) -> list[Text]:
        """The legend's lines at the current width (the plot keeps at least four rows)."""
        lines = legend_lines(self.entries, self.size.width)
        return lines[: max(0, self.size.height - 4)]

    def plot_rows(self) -> int:
        return max(1, self.size.height - len(self.legend()))

    def render(self) -> RenderResult:
        """PlotextPlot's render at the height the legend leaves, then the legend."""
        width, rows = self.size.width, self.plot_rows()
        plt = self.plt
        plt.plotsize(width, rows)
        plt._set_size(width, rows)  # as PlotextPlot.render does (textual-plotext issue 5)
        plt.theme(self._get_plotext_theme_name(self.app.theme))
        out = Text.from_ansi(plt.build())
        out.rstrip()  # plotext ends its last row with a newline
        for line in self.legend():
            out.append("\n")
            out.append_text(line)
        return out


def draw(
    plt: Any,
    title: str,
    series: list[tuple[str, list[float], list[float], str]],
    integer_x: bool = False,
    rows: int = 12,
    cols: int = 80,
    steps_per_epoch: int = 0,
) -> None:
    """Draw (name, xs, ys, colour) series on a cleared plotext figure `rows` x `cols`; a step
    axis with `steps_per_epoch` gets its ticks at the epoch boundaries."""
    shown = [(n, xs, ys, c) for n, xs, ys, c in series if xs]
    plt.title(title if len(title) <= max(8, cols - 4) else title[: max(8, cols - 4) - 1] + "…")
    if not shown:
        return
    ys_all = [y for _, _, ys, _ in shown for y in ys if math.isfinite(y)]
    xs_all = [x for _, xs, _, _ in shown for x in xs]
    if not ys_all:
        return
    lo, hi = min(ys_all), max(ys_all)
    pad = (hi - lo) * 0.08 or max(abs(hi) * 0.05, 1e-3)
    plt.ylim(lo - pad, hi + pad)
    mid = (lo + hi) / 2
    ticks = [lo, hi] if hi - lo < 1e-12 * max(1.0, abs(hi)) else [lo, mid, hi]
    canvas = rows - 4  # title, frame and x tick labels take four rows
    if canvas < len(ticks):  # more ticks than rows: plotext would pick among them at random
        ticks = [hi] if canvas < 2 else [lo, hi]
    plt.yticks(ticks, [tick(t) for t in ticks])
    x0, x1 = min(xs_all), max(xs_all)
    if x1 == x0:
        plt.xlim(x0 - 1, x1 + 1)
    if steps_per_epoch > 0:
        chosen = epoch_ticks(x0, x1, steps_per_epoch)
        plt.xticks(chosen, [str(int(x)) for x in chosen])
    elif integer_x:
        distinct = sorted(set(xs_all))
        step = max(1, math.ceil(len(distinct) / 8))
        chosen = distinct[::step]
        plt.xticks(chosen, [str(int(x)) for x in chosen])
    for _, xs, ys, colour in shown:
        if len(xs) < SHORT:
            plt.scatter(xs, ys, color=colour, marker="●")
        else:
            plt.plot(xs, ys, color=colour, marker="braille")


def epoch_ticks(x0: float, x1: float, steps_per_epoch: int, most: int = 8) -> list[float]:
    """The epoch boundaries (multiples of steps_per_epoch) within [x0, x1], at most `most` of
    them; with fewer than two, the ends of the data too."""
    first, last = math.ceil(x0 / steps_per_epoch), math.floor(x1 / steps_per_epoch)
    bounds = [float(k * steps_per_epoch) for k in range(first, last + 1)]
    every = max(1, math.ceil(len(bounds) / most))
    chosen = bounds[::every]
    if len(chosen) < 2:
        chosen = sorted({float(int(x0)), *chosen, float(int(x1))})
    return chosen
