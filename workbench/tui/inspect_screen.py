"""Checkpoint inspector: metadata, config, metrics history, tensors, and evaluation."""

from __future__ import annotations

import json
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Label, ProgressBar, Static, TabbedContent

from engine.checkpoint import SUMMARY_KEYS, model_parameters, numel, read_header


class InspectScreen(Screen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("e", "evaluate", "Evaluate (paper suite)"),
        Binding("q", "quick", "Quick eval"),
        Binding("g", "gallery", "Gallery"),
    ]

    def __init__(self, path: Path, evaluate: bool = False, samples: int = 0) -> None:
        super().__init__()
        self.path = path
        self.start_eval = evaluate
        self.samples = samples
        self.header, self.meta = read_header(path)

    def compose(self) -> ComposeResult:
        yield Header()
        with TabbedContent("Summary", "Config", "Metrics", "Tensors", "Evaluate", id="tabs"):
            yield DataTable(id="meta", show_header=False)
            with VerticalScroll():
                yield Static(id="config")
            yield DataTable(id="history")
            yield DataTable(id="tensors")
            with VerticalScroll(id="eval-pane"):
                with Horizontal(id="eval-progress"):
                    yield Label("press e (paper suite) or q (quick)", id="eval-status")
                    yield ProgressBar(id="eval-bar")
                yield DataTable(id="eval-table")
        yield Footer()

    def on_mount(self) -> None:
        self.title = self.path.name
        self.sub_title = str(self.path.parent)
        meta = self.query_one("#meta", DataTable)
        meta.add_columns("key", "value")
        params = model_parameters(self.header)
        for k in SUMMARY_KEYS:
            if k in self.meta:
                meta.add_row(k, self.meta[k])
        meta.add_row("model parameters", f"{params:,}")
        metrics = _json(self.meta.get("metrics"))
        meta.add_row("best robust acc", str(metrics.get("best_robust_acc")))
        cfg = _json(self.meta.get("config"))
        meta.add_row(
            "eps / step",
            f"{cfg.get('attack', {}).get('eps')} / {cfg.get('attack', {}).get('step')}",
        )
        import tomli_w

        self.query_one("#config", Static).update(tomli_w.dumps(cfg) if cfg else "(none)")
        hist = self.query_one("#history", DataTable)
        hist.add_columns("epoch", "clean %", "robust %", "seconds", "train means")
        for rec in metrics.get("history", []):
            means = ", ".join(f"{k} {v:.4g}" for k, v in (rec.get("train") or {}).items())
            hist.add_row(
                str(rec.get("epoch")),
                _pct(rec.get("clean_acc")),
                _pct(rec.get("robust_acc")),
                f"{rec.get('seconds', 0):.1f}",
                means,
            )
        tens = self.query_one("#tensors", DataTable)
        tens.add_columns("tensor", "dtype", "shape", "numel")
        for name, info in sorted(self.header.items()):
            tens.add_row(
                name,
                info["dtype"],
                "x".join(map(str, info["shape"])) or "scalar",
                f"{numel(info['shape']):,}",
            )
        self.query_one("#eval-table", DataTable).add_columns("attack", "accuracy %", "seconds")
        if self.start_eval:
            self.action_evaluate()

    def action_evaluate(self, suite: str = "paper") -> None:
        self.query_one("#tabs", TabbedContent).active = "tab-5"
        self.query_one("#eval-table", DataTable).clear()
        self.query_one("#eval-status", Label).update(f"running the {suite} suite ...")
        self.run_eval(suite)

    def action_quick(self) -> None:
        self.action_evaluate("quick")

    def action_gallery(self) -> None:
        self.app.action_gallery(self.path)

    @work(thread=True, exclusive=True, group="eval")
    def run_eval(self, suite: str) -> None:
        """The attack suite runs in a worker; rows appear as each attack finishes."""
        from engine.errors import WorkbenchError
        from engine.evaluate import evaluate_checkpoint

        finished: list[str] = []

        def progress(name: str, done: int, total: int, n_attacks: int) -> None:
            self.app.call_from_thread(self._progress, name, done, total, n_attacks, finished)

        def on_result(name: str, acc: float, seconds: float) -> None:
            finished.append(name)
            self.app.call_from_thread(self._row, name, acc, seconds)

        try:
            doc = evaluate_checkpoint(
                self.path, suite, [], self.samples, "auto", 0, progress, on_result
            )
        except WorkbenchError as exc:
            self.app.call_from_thread(self._status, f"[red]{exc}[/]")
            return
        self.app.call_from_thread(self._done, doc)

    def _progress(
        self, name: str, done: int, total: int, n_attacks: int, finished: list[str]
    ) -> None:
        bar = self.query_one("#eval-bar", ProgressBar)
        attacks_done = max(0, len(finished) - 1)  # "clean" is not an attack
        bar.update(total=n_attacks * total, progress=attacks_done * total + done)
        self._status(f"{name}: {done}/{total}")

    def _row(self, name: str, acc: float, seconds: float) -> None:
        self.query_one("#eval-table", DataTable).add_row(name, f"{acc:.2f}", f"{seconds:.1f}")

    def _status(self, text: str) -> None:
        self.query_one("#eval-status", Label).update(text)

    def _done(self, doc: dict) -> None:
        table = self.query_one("#eval-table", DataTable)
        table.clear()
        for k, v in doc["accuracy"].items():
            secs = doc["seconds"].get(k)
            table.add_row(k, f"{v:.2f}", f"{secs:.1f}" if secs is not None else "")
        self._status(f"done: {doc['n']} examples, eps {doc['eps']:.4g}; saved {doc['saved']}")


def _json(text: str | None) -> dict:
    try:
        out = json.loads(text or "{}")
    except json.JSONDecodeError:
        return {}
    return out if isinstance(out, dict) else {}


def _pct(v: object) -> str:
    return f"{v:.2f}" if isinstance(v, int | float) else "-"
