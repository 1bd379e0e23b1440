"""The headless face: a rich live view fed by the run's own events, and the final table.

It reads events only (as the TUI does), redraws at most four times a second,
and falls back to one plain line per epoch when stdout is not a terminal
(batch jobs, CI logs).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text


def fmt(value: Any, digits: int = 2) -> str:
    if isinstance(value, int | float):
        return f"{value:.{digits}f}"
    return "-" if value is None else str(value)


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class RunView:
    """Holds the latest state seen in the event stream and renders it on demand."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.lock = threading.Lock()
        self.cfg: dict[str, Any] = {}
        self.device = ""
        self.epochs = 0
        self.steps_per_epoch = 1
        self.start_step = 0
        self.t0 = time.time()
        self.step: dict[str, Any] = {}
        self.epoch_end: dict[str, Any] = {}
        self.last_parts: dict[str, float] = {}
        self.warnings: list[str] = []
        self.plain = not console.is_terminal

    # -- events in
    def on_event(self, e: dict[str, Any]) -> None:
        with self.lock:
            t = e["type"]
            if t == "run_started":
                self.cfg = e.get("config", {})
                self.device = e.get("device", "")
                self.epochs = self.cfg.get("train", {}).get("epochs", 0)
                self.steps_per_epoch = max(1, e.get("steps_per_epoch", 1))
                self.start_step = e.get("start_epoch", 0) * self.steps_per_epoch
                self.t0 = e["time"]
                if self.plain:
                    self.console.print(
                        f"run {self.cfg.get('name')} on {self.device}: "
                        f"{e.get('train_size')} train / {e.get('test_size')} test"
                    )
            elif t == "step":
                self.step = e
                self.last_parts = dict(e.get("parts", {}))
            elif t == "epoch_end":
                self.epoch_end = e
                if self.plain:
                    parts = " ".join(f"{k}={v:.4g}" for k, v in self.last_parts.items())
                    self.console.print(
                        f"epoch {e['epoch']}/{self.epochs}  clean {fmt(e.get('clean_acc'))}%  "
                        f"robust {fmt(e.get('robust_acc'))}%  {parts}  "
                        f"({fmt(e.get('seconds'), 1)} s)"
                    )
            elif t == "warning":
                self.warnings.append(e.get("message", ""))
                self.console.print(f"[yellow]warning:[/] {e.get('message', '')}")

    # -- rendering
    def __rich__(self) -> Group:
        with self.lock:
            return self._render()

    def _render(self) -> Group:
        s = self.step
        epoch = s.get("epoch", 1)
        batch, batches = s.get("batch", 0), s.get("batches", self.steps_per_epoch)
        total = max(1, self.epochs * self.steps_per_epoch)
        done = (epoch - 1) * self.steps_per_epoch + batch
        elapsed = time.time() - self.t0
        frac_run = (done - self.start_step) / max(1, total - self.start_step)
        eta = elapsed * (1 - frac_run) / frac_run if frac_run > 0 else None
        head = Text.assemble(
            (f"{self.cfg.get('name', '')}", "bold"),
            f"  {self.device}  ",
            f"epoch {epoch}/{self.epochs}  step {batch}/{batches}  ",
            f"{fmt(s.get('samples_per_s'), 0)} samples/s  lr {fmt(s.get('lr'), 5)}  ",
            f"elapsed {fmt_duration(elapsed)}  ETA {fmt_duration(eta)}",
        )
        bars = Table.grid(padding=(0, 1))
        bars.add_row(
            "run  ",
            ProgressBar(total=total, completed=done, width=50),
            f"{100 * done / total:5.1f}%",
        )
        bars.add_row(
            "epoch",
            ProgressBar(total=max(1, batches), completed=batch, width=50),
            f"{100 * batch / max(1, batches):5.1f}%",
        )
        parts = Table(box=None, show_header=True, header_style="bold")
        cols = {"loss": s.get("loss"), **self.last_parts}
        for k in cols:
            parts.add_column(k, justify="right")
        parts.add_row(*[fmt(v, 4) for v in cols.values()])
        e = self.epoch_end
        last = Text(
            f"last epoch {e.get('epoch', '-')}: clean {fmt(e.get('clean_acc'))}%  "
            f"robust {fmt(e.get('robust_acc'))}%  best robust {fmt(e.get('best_robust_acc'))}%"
            if e
            else "first epoch in progress"
        )
        return Group(head, bars, parts, last)


def follow(console: Console, view: RunView) -> Live | None:
    """A Live display refreshing the view 4x a second (None when not on a terminal)."""
    if view.plain:
        return None
    return Live(view, console=console, refresh_per_second=4, transient=False)


def final_table(
    outcome: Any, history: list[dict[str, Any]], last_parts: dict[str, float], cfg: dict[str, Any]
) -> Table:
    """The closing summary: accuracies, L_lkd, and where the checkpoints are."""
    last = history[-1] if history else {}
    steps = cfg.get("eval", {}).get("steps", 20)
    table = Table(title=f"{cfg.get('name')}: {outcome.status}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    table.add_row("epochs", str(last.get("epoch", 0)))
    defense = cfg.get("defense", {}).get("name", "none")
    robust = f"PGD-{steps}"
    clean = "clean accuracy (test)"
    if defense != "none":  # the trainer evaluates a defence on the eval subset, by transfer
        robust, clean = f"{defense}: transfer PGD-{steps}", f"{defense}: clean accuracy"
    table.add_row(clean, f"{fmt(last.get('clean_acc'))}%")
    table.add_row(f"{robust} accuracy", f"{fmt(last.get('robust_acc'))}%")
    best = outcome.final.get("best_robust_acc")
    table.add_row(f"best {robust} accuracy", f"{fmt(best)}%")
    for key, label in (("lkd_clean", "final L_lkd clean"), ("lkd_adv", "final L_lkd adversarial")):
        if key in last_parts:
            table.add_row(label, fmt(last_parts[key], 4))
    run_dir = outcome.run_dir
    for name in ("best.safetensors", "last.safetensors"):
        if (run_dir / name).exists():
            table.add_row(name.split(".")[0] + " checkpoint", str(run_dir / name))
    return table
