"""A run's figures from its events: loss parts, the method's own plots (ATBLR's Fig. 3: L_lkd
of clean against adversarial batches), validation accuracy with its 95% bands, learning rate.

What to draw comes from what the method declared it streams (`Panels` in the
`run_started` event), never from the method's name: a new method's own plots
appear here as they appear in the app. Every line carries its series key as
`gid`, so a test can check the figure holds exactly the events' numbers.
Call inside `style.styled()`.
"""

from __future__ import annotations

from typing import Any

from engine.report import style
from engine.report.run_data import RunData

LOSS = "loss"


def loss_keys(data: RunData) -> list[str]:
    """The loss and every part no plot of the method's own claims (an older run: every part)."""
    claimed = {k for p in data.panels.plots for k in p.keys} if data.panels else set()
    return [LOSS, *(k for k in data.series_keys() if k not in claimed)]


def label(data: RunData, key: str) -> str:
    declared = data.panels.get(key) if data.panels else None
    return declared.name if declared else key


def _lines(data: RunData, keys: list[str], palette: style.Palette, ylabel: str) -> Any:
    fig, ax = style.figure()
    for key in keys:
        c = data.curve(key)
        if c.x:
            ax.plot(c.x, c.y, color=palette(key), label=label(data, key), gid=key, lw=0.9)
    ax.set_xlabel("iteration")
    ax.set_ylabel(ylabel)
    if len(keys) > 1:
        ax.legend(loc="best")
    return fig


def run_figures(data: RunData, palette: style.Palette) -> dict[str, tuple[Any, str]]:
    """name -> (figure, caption), in the order a report shows them."""
    out: dict[str, tuple[Any, str]] = {}
    if data.steps:
        out["loss"] = (
            _lines(data, loss_keys(data), palette, "training loss"),
            f"{data.name}: the training loss and its parts per logged iteration.",
        )
        for plot in data.panels.plots if data.panels else ():
            if any(data.curve(k).x for k in plot.keys):
                out[style.slug(plot.title)] = (
                    _lines(data, list(plot.keys), palette, plot.title),
                    f"{data.name}: {plot.title} per logged iteration (the method's own plot).",
                )
    points = data.epoch_points()
    if any(p.clean is not None or p.robust is not None for p in points):
        out["accuracy"] = (accuracy_figure(data, palette), _accuracy_caption(data))
    if data.curve("lr").x:
        fig = _lines(data, ["lr"], palette, "learning rate")
        out["lr"] = (fig, f"{data.name}: the learning rate per logged iteration.")
    return out


def accuracy_figure(data: RunData, palette: style.Palette) -> Any:
    """Validation clean and robust accuracy per epoch, each with its 95% Wilson band."""
    fig, ax = style.figure()
    points = data.epoch_points()
    for which, name in (("clean", "clean"), ("robust", "robust")):
        rows = [p for p in points if getattr(p, which) is not None]
        if not rows:
            continue
        x = [p.epoch for p in rows]
        y = [getattr(p, which) for p in rows]
        colour = palette(f"{which}_acc")
        ax.plot(x, y, marker="o", ms=2.5, color=colour, label=name, gid=f"{which}_acc")
        banded = [p for p in rows if getattr(p, f"{which}_interval") is not None]
        if banded:
            ax.fill_between(
                [p.epoch for p in banded],
                [getattr(p, f"{which}_interval")[0] for p in banded],
                [getattr(p, f"{which}_interval")[1] for p in banded],
                color=colour,
                alpha=0.2,
                lw=0,
                gid=f"{which}_acc_band",
            )
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (%)")
    ax.legend(loc="best")
    return fig


def _accuracy_caption(data: RunData) -> str:
    ev = data.state.config.get("eval") or {}
    attack = data.state.config.get("attack") or {}
    last = data.state.last_epoch
    n = f"n = {last.get('clean_n')} clean, {last.get('robust_n')} robust" if last else ""
    return (
        f"{data.name}: validation accuracy per epoch, clean and under the "
        f"{ev.get('suite', 'quick')} suite's PGD-{ev.get('steps', '?')} at eps "
        f"{attack.get('eps', '?')} ({n}); bands: 95% Wilson intervals."
    )
