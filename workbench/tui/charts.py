"""How every plot in the app is drawn: the legend in headroom kept free above the data (never
over a curve), y ticks at the data's own lowest, middle and highest values, integer epochs,
and short series as visible points.
"""

from __future__ import annotations

import math
from typing import Any

SHORT = 3  # a series with fewer points is drawn as large dots, not a line


def tick(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.2e}"


def draw(
    plt: Any,
    title: str,
    series: list[tuple[str, list[float], list[float], str]],
    integer_x: bool = False,
    rows: int = 12,
    cols: int = 80,
) -> None:
    """Draw (name, xs, ys, colour) series on a cleared plotext figure `rows` x `cols`."""
    shown = [(n, xs, ys, c) for n, xs, ys, c in series if xs]
    canvas = max(1, rows - 5)  # title, frame, x axis and its labels take five rows
    inline = len(shown) > 1 and canvas < len(shown) + 3  # too small for a legend block
    if inline:  # the legend goes into the title row, named by colour, the title shortened
        legend = ", ".join(f"{n} {c}" for n, _, _, c in shown)
        room = max(8, cols - 4 - len(legend) - 2)
        title = (title if len(title) <= room else title[: room - 1] + "…") + ": " + legend
    plt.title(title[: max(8, cols - 4)])
    if not shown:
        return
    ys_all = [y for _, _, ys, _ in shown for y in ys if math.isfinite(y)]
    xs_all = [x for _, xs, _, _ in shown for x in xs]
    lo, hi = min(ys_all), max(ys_all)
    pad = (hi - lo) * 0.08 or max(abs(hi) * 0.05, 1e-3)
    # the legend takes one canvas row per series at the top: keep those rows free of data
    free = 0 if inline or len(shown) < 2 else len(shown)
    span = hi - lo + 2 * pad
    headroom = span * free / max(1, canvas - free)
    plt.ylim(lo - pad, hi + pad + headroom)
    mid = (lo + hi) / 2
    ticks = [lo, hi] if hi - lo < 1e-12 * max(1.0, abs(hi)) else [lo, mid, hi]
    plt.yticks(ticks, [tick(t) for t in ticks])
    x0, x1 = min(xs_all), max(xs_all)
    if x1 == x0:
        plt.xlim(x0 - 1, x1 + 1)
    if integer_x:
        distinct = sorted(set(xs_all))
        step = max(1, math.ceil(len(distinct) / 8))
        chosen = distinct[::step]
        plt.xticks(chosen, [str(int(x)) for x in chosen])
    for name, xs, ys, colour in shown:
        label = None if inline or len(shown) < 2 else name
        if len(xs) < SHORT:
            plt.scatter(xs, ys, color=colour, marker="●", label=label)
        else:
            plt.plot(xs, ys, color=colour, marker="braille", label=label)
