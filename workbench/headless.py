"""The headless face: a run trained in this process under a rich live view, then its table.

The view reads events only (as the TUI does, through the same `RunState`),
redraws at most four times a second, and falls back to one plain line per
epoch when stdout is not a terminal (batch jobs, CI logs).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import nullcontext
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from engine.records.run_request import RunRequest
from engine.records.run_state import RunState
from engine.spec.panels import Panels
from engine.train import session
from engine.train.trainer import Outcome
from workbench.views import accuracy, duration, guard_line, interval, num, short, threat


class RunView:
    """Holds the run's state as its events arrive and renders it on demand."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.lock = threading.Lock()
        self.state = RunState()
        self.last_parts: dict[str, float] = {}
        self.warnings: list[str] = []
        self.plain = not console.is_terminal

    # -- events in
    def on_event(self, e: dict[str, Any]) -> None:
        with self.lock:
            self.state.apply(e)
            t, s = e["type"], self.state
            if t == "run_started" and self.plain:
                self.console.print(
                    f"run {s.name} on {s.device}: "
                    f"{e.get('train_size')} train / {e.get('test_size')} test"
                )
            elif t == "step":
                self.last_parts = dict(e.get("parts", {}))
            elif t == "epoch_end" and self.plain:
                means = e.get("train") or {}
                parts = " ".join(f"{k}={short(v)}" for k, v in means.items())
                self.console.print(
                    f"epoch {e['epoch']}/{s.epochs_total}  val clean {num(e.get('clean_acc'))}%  "
                    f"robust {num(e.get('robust_acc'))}%  epoch means: {parts}  "
                    f"({num(e.get('seconds'), 1)} s)"
                )
            elif t == "guard" and self.plain:
                self.console.print(guard_line(e), highlight=False)
            elif t == "warning":
                self.warnings.append(e.get("message", ""))
                self.console.print(f"[yellow]warning:[/] {e.get('message', '')}")

    # -- rendering
    def __rich__(self) -> Group:
        with self.lock:
            return self._render()

    def _render(self) -> Group:
        st = self.state
        s = st.last_step
        epoch = s.get("epoch", 1)
        batch, batches = s.get("batch", 0), s.get("batches", st.steps_per_epoch)
        done, total = st.progress()
        now = time.time()
        elapsed = now - st.resumed_at if st.resumed_at is not None else 0.0
        head = Text.assemble(
            (st.name, "bold"),
            f"  {st.device}  ",
            f"epoch {epoch}/{st.epochs_total}  step {batch}/{batches}  ",
            f"{num(s.get('samples_per_s'), 0)} samples/s  lr {num(s.get('lr'), 5)}  ",
            f"elapsed {duration(elapsed)}  ETA {duration(st.eta(now))}",
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
        parts.add_row(*[num(v, 4) for v in cols.values()])
        e = st.last_epoch
        last = Text(
            f"last epoch {e.get('epoch', '-')}, validation: clean {accuracy(e, 'clean', '%')}  "
            f"robust {accuracy(e, 'robust', '%')}  best robust {num(e.get('best_robust_acc'))}%"
            if e
            else "first epoch in progress"
        )
        if not st.guard_last:
            return Group(head, bars, parts, last)
        # the overfitting guard's newest check beside the validation numbers (engine/train/guard.py)
        return Group(head, bars, parts, last, Text(guard_line(st.guard_last)))


def follow(console: Console, view: RunView) -> Live | None:
    """A Live display refreshing the view 4x a second (None when not on a terminal)."""
    if view.plain:
        return None
    return Live(view, console=console, refresh_per_second=4, transient=False)


def final_table(
    outcome: Any, last_parts: dict[str, float], cfg: dict[str, Any], panels: Panels | None = None
) -> Table:
    """The closing summary: what was selected on validation, how it does on test, the last
    values of the curves the method plots of its own (`panels`, from its run_started), files."""
    history = outcome.final.get("history") or []
    last = history[-1] if history else {}
    steps = cfg.get("eval", {}).get("steps", 20)
    defense = cfg.get("defense", {}).get("name", "none")
    attack = cfg.get("attack", {})
    robust = f"PGD-{steps}"
    if attack.get("norm", "linf") != "linf":  # name a threat model other than the usual L-inf
        robust += f" ({threat(attack['norm'], attack.get('eps'))})"
    if defense != "none":  # the trainer attacks a defence by transfer and BPDA, worst of both
        robust = f"{defense} vs transfer/BPDA PGD-{steps}"
    table = Table(title=f"{cfg.get('name')}: {outcome.status}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value", justify="right", overflow="fold")
    table.add_row("epochs", str(last.get("epoch", 0)))
    val = f"validation ({last.get('robust_n', '?')})"
    table.add_row(
        f"validation ({last.get('clean_n', '?')}), last: clean", accuracy(last, "clean", "%")
    )
    table.add_row(f"{val}, last: {robust}", accuracy(last, "robust", "%"))
    test = outcome.final.get("test")
    best = num(outcome.final.get("best_robust_acc"))
    chosen = f" (epoch {test['epoch']}, selected)" if test else ""
    table.add_row(f"{val}, best: {robust}", f"{best}%{chosen}")
    if test:
        table.add_row(f"test ({test['clean_n']}), selected: clean", accuracy(test, "clean", "%"))
        table.add_row(
            f"test ({test['robust_n']}), selected: {robust}", accuracy(test, "robust", "%")
        )
    else:
        table.add_row("test", "not measured (the run did not finish)")
    guard = outcome.final.get("guard")
    if isinstance(guard, dict):
        for what, value in guard_rows(guard):
            table.add_row(what, value)
    for series in panels.own() if panels else ():
        if series.key in last_parts:
            table.add_row(f"{series.name}, last log window", num(last_parts[series.key], 4))
    run_dir = outcome.run_dir
    for name in ("best.safetensors", "last.safetensors"):
        if (run_dir / name).exists():
            table.add_row(name.split(".")[0] + " checkpoint", str(run_dir / name))
    return table


def guard_rows(guard: dict[str, Any]) -> list[tuple[str, str]]:
    """The final table's lines about the overfitting guard: its best check, and each firing
    with what the run did and kept."""
    attack = guard.get("attack", "PGD")
    best = f"{num(guard.get('best_acc'))}% (step {guard.get('best_step', '-')})"
    rows = [(f"guard ({attack}), best", best)]
    action = guard.get("action")
    kept = {
        "stop": "stopped; best.safetensors kept, guard.safetensors = its best step",
        "restore": "restored guard.safetensors (its best step) and stopped",
        "lower_step": "restored its best step's weights, lowered the step",
    }.get(str(action), str(action))
    for f in guard.get("fired") or []:
        rows.append(
            (
                f"guard fired at step {f.get('step', '-')}",
                f"{num(f.get('acc'))}% {interval(f.get('interval'))}: {kept}",
            )
        )
    return rows


def reading(outcome: Any, cfg: dict[str, Any]) -> list[str]:
    """One line that reads the final table, then the commands to try next."""
    test = outcome.final.get("test")
    if not test:
        return []
    eps = cfg.get("attack", {}).get("eps")
    norm = cfg.get("attack", {}).get("norm", "linf")
    at = f"eps {num(eps, 3)}" if norm == "linf" else threat(norm, eps)  # L-inf reads as before
    steps = cfg.get("eval", {}).get("steps", 20)
    best = outcome.run_dir / "best.safetensors"
    return [
        f"The checkpoint selected on validation (epoch {test['epoch']}) keeps "
        f"{accuracy(test, 'robust', '%')} of {test['robust_n']} test examples under PGD-{steps} "
        f"at {at} ({num(test['clean_acc'])}% clean). One attack is a lower "
        "bound on the damage: quote the paper suite's worst case.",
        f"Next: workbench eval {best} --suite paper   (the headline number, close to AutoAttack)",
        "      workbench   (the app: this run's curves, the inspector, the gallery)",
    ]


def train_here(req: RunRequest, out: Console, err: Console) -> Outcome:
    """Train a request in this process under the live view; Ctrl-C, SIGTERM, SIGUSR2 stop it.

    The first signal asks the run to checkpoint at its next step and exit; a
    second one aborts at once. A DDP rank > 0 shows and prints nothing but its
    own failure (rank 0 speaks for the job).
    """
    quiet = os.environ.get("RANK", "0") not in ("", "0")
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        if stop.is_set():  # a second Ctrl-C: stop now
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        stop.set()
        if not quiet:
            err.print("\nstopping: saving a checkpoint (Ctrl-C again to abort without saving)")

    view = RunView(out)
    live = None if quiet else follow(out, view)
    old_int = signal.signal(signal.SIGINT, on_signal)
    old_term = signal.signal(signal.SIGTERM, on_signal)
    # SLURM's warning before a time limit (submitit asks for SIGUSR2): save and stop, never abort
    old_usr2 = signal.signal(signal.SIGUSR2, lambda signum, frame: stop.set())
    try:
        outcome = session.run(
            req,
            stop,
            [] if quiet else [view.on_event],
            around_training=(lambda: live) if live is not None else nullcontext,
        )
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGUSR2, old_usr2)
    if quiet:
        if outcome.status == "failed":
            err.print(f"rank {os.environ.get('RANK')} failed: {outcome.error}")
    elif not outcome.saved:
        err.print("aborted without a final checkpoint; last.safetensors is from the last epoch")
    else:
        out.print(final_table(outcome, view.last_parts, view.state.config, view.state.panels))
        for line in reading(outcome, view.state.config):
            out.print(line, highlight=False, soft_wrap=True)
        if outcome.status == "failed":
            err.print(f"[bold red]run failed:[/] {escape(outcome.error)}")
        elif outcome.status == "interrupted":
            err.print(f"interrupted; resume with: workbench run --resume {outcome.run_dir}")
    return outcome
