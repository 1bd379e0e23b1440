"""Turn an event stream into plot series, and fit series to a widget's width.

Presentation only: the numbers come from the run's events; this file decides
what to draw (EMA smoothing for the eye, min/max buckets so a spike never
disappears when thousands of steps share a few dozen columns).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from engine.records.run_state import RunState
from engine.spec.panels import Plot
from workbench.views import guard_line, interval, num, short


def downsample(xs: list[float], ys: list[float], width: int) -> tuple[list[float], list[float]]:
    """Keep each bucket's min and max (in their order), so the envelope survives."""
    n = len(xs)
    if width <= 0 or n <= 2 * width:
        return list(xs), list(ys)
    out_x: list[float] = []
    out_y: list[float] = []
    for b in range(width):
        lo, hi = b * n // width, (b + 1) * n // width
        if lo >= hi:
            continue
        seg = range(lo, hi)
        i_min = min(seg, key=ys.__getitem__)
        i_max = max(seg, key=ys.__getitem__)
        for i in sorted({i_min, i_max}):
            out_x.append(xs[i])
            out_y.append(ys[i])
    return out_x, out_y


def ema(values: list[float], alpha: float = 0.1) -> list[float]:
    out: list[float] = []
    acc = None
    for v in values:
        acc = v if acc is None else alpha * v + (1 - alpha) * acc
        out.append(acc)
    return out


@dataclass
class RunSeries:
    """Everything the live screen draws: the run's state, plus per-step series and a log."""

    state: RunState = field(default_factory=RunState)
    step_x: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    parts: dict[str, list[float]] = field(default_factory=dict)
    lr: list[float] = field(default_factory=list)
    log: list[tuple[str, str]] = field(default_factory=list)  # (style, text)

    def note_damage(self, reason: str) -> None:
        """A line of the events file no reader could trust: kept in the state, shown in the log."""
        self.state.damage.append(reason)
        self._log_damage([reason])

    def _log_damage(self, reasons: list[str]) -> None:
        self.log.extend(("bold red", f"damaged: {reason}") for reason in reasons)

    def add(self, e: dict[str, Any], checked: bool = False) -> None:
        """One event; `checked` as in `RunState.apply` (read through `read_log`/`EventTail`)."""
        before = len(self.state.damage)
        if not self.state.apply(e, checked):  # wrong types, or a type this version does not know
            self._log_damage(self.state.damage[before:])
            return
        t = e.get("type")
        if t == "run_started":
            self.log.append(
                (
                    "bold",
                    f"started on {self.state.device}" + (" (resumed)" if e.get("resumed") else ""),
                )
            )
        elif t == "step":
            self.step_x.append(float(e.get("step", len(self.step_x))))
            self.loss.append(_num(e.get("loss")))
            for k, v in (e.get("parts") or {}).items():
                series = self.parts.setdefault(k, [])
                series.extend([float("nan")] * (len(self.step_x) - 1 - len(series)))
                series.append(_num(v))
            self.lr.append(_num(e.get("lr")))
        elif t == "epoch_end":
            means = " ".join(f"{k} {short(v)}" for k, v in (e.get("train") or {}).items())
            self.log.append(
                (
                    "",
                    f"epoch {e.get('epoch')}: val clean {_pct(e, 'clean')} "
                    f"robust {_pct(e, 'robust')}" + (f"; epoch means: {means}" if means else ""),
                )
            )
        elif t == "phase":
            self.log.append(("dim", f"{e.get('phase')} (epoch {e.get('epoch')})"))
        elif t == "checkpoint_saved":
            self.log.append(("dim", f"saved {e.get('kind', '')} {e.get('path', '')}"))
        elif t == "eval_result":
            table = e.get("table") or {}
            cells = ", ".join(f"{k} {short(v)}%" for k, v in table.items())
            self.log.append(("cyan", f"eval {e.get('suite')}: {cells or 'no table'}"))
        elif t == "guard":
            self.log.append(("yellow" if e.get("fired") else "dim", guard_line(e)))
        elif t == "warning":
            self.log.append(("yellow", f"warning: {e.get('message', '')}"))
        elif t == "run_finished":
            status = self.state.status
            self.log.append(("green" if status == "finished" else "yellow", f"run {status}"))
        elif t == "run_failed":
            self.log.append(("bold red", f"FAILED: {self.state.error}"))


EPOCH_METRICS = ("robust_acc", "clean_acc")  # per epoch (validation); the rest per step
LOSS_PLOT = "loss and parts"


def step_plots(s: RunSeries) -> list[Plot]:
    """The run's per-step plots: the loss with every part no plot of the method's own claims,
    then those plots, as the method declared them in `run_started` (engine/spec/panels.py). An
    older run declared nothing: every part it logged joins the loss."""
    own = s.state.panels.plots if s.state.panels else ()
    claimed = {k for p in own for k in p.keys}
    return [Plot(LOSS_PLOT, ("loss", *(k for k in s.parts if k not in claimed))), *own]


def own_series(s: RunSeries) -> list[str]:
    """The curves of the run's method's own plots (an older run: every part it logged)."""
    return [x.key for x in s.state.panels.own()] if s.state.panels else list(s.parts)


def compare_metrics(runs: Iterable[RunSeries]) -> list[str]:
    """What Compare cycles through: accuracies, loss, every selected run's own curves, lr."""
    fixed = [*EPOCH_METRICS, "loss", "lr"]
    own = dict.fromkeys(k for s in runs for k in own_series(s) if k not in fixed)
    return [*EPOCH_METRICS, "loss", *own, "lr"]


def smoothed(s: RunSeries, metric: str) -> bool:
    """Whether the plots draw a metric through an EMA: the loss and the parts its method does
    not declare otherwise; never the accuracies or the learning rate."""
    if metric in EPOCH_METRICS or metric == "lr":
        return False
    declared = s.state.panels.get(metric) if s.state.panels else None
    return declared is None or declared.smooth


def step_values(s: RunSeries, metric: str) -> list[float]:
    """One per-step series: the loss, the learning rate or a loss part (empty if never logged)."""
    return s.loss if metric == "loss" else s.lr if metric == "lr" else s.parts.get(metric, [])


def metric_series(s: RunSeries, metric: str) -> tuple[str, list[float], list[float]]:
    """(x axis name, xs, raw finite values) of one metric of one run, as Compare draws it."""
    if metric in EPOCH_METRICS:
        xs, ys = [float(e) for e in s.state.epochs], getattr(s.state, metric)
        axis = "epoch"
    else:
        xs, ys, axis = s.step_x, step_values(s, metric), "step"
    pairs = [
        (x, float(y))
        for x, y in zip(xs, ys, strict=False)
        if isinstance(y, int | float) and math.isfinite(y)
    ]
    return axis, [x for x, _ in pairs], [y for _, y in pairs]


def series_csv(runs: dict[str, RunSeries], metric: str) -> str:
    """The plotted series as long-form CSV: every point, the raw value and, where the plot
    smooths, the EMA it draws (the plot's downsampling is not applied: nothing is lost)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["run", "metric", "axis", "x", "value", "plotted_ema"])
    for name, s in runs.items():
        axis, xs, ys = metric_series(s, metric)
        smooth = ema(ys) if smoothed(s, metric) else [None] * len(ys)
        for x, y, e in zip(xs, ys, smooth, strict=True):
            w.writerow([name, metric, axis, f"{x:g}", repr(y), "" if e is None else repr(e)])
    return out.getvalue()


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _pct(e: dict[str, Any], name: str) -> str:
    value = e.get(f"{name}_acc")
    if not isinstance(value, int | float):
        return "-"
    bounds = interval(e.get(f"{name}_interval"))
    return f"{num(value)}%" + (f" {bounds}" if bounds else "")
