"""Checkpoint inspector: metadata, config, metrics history, tensors, evaluation and its history.

The Evaluate tab runs any attack suite in a worker with live progress per
column; the Evaluations tab lists the evidence files already saved for this
checkpoint, and opening one shows it in the same widgets as a live run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomli_w
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.markup import escape
from textual.screen import Screen
from textual.widgets import (
    Button,
    DataTable,
    Footer,
    Header,
    Input,
    Label,
    ProgressBar,
    Select,
    Static,
    TabbedContent,
)
from textual.worker import get_current_worker

from engine.records.checkpoint_header import read_header
from engine.records.evidence import adv_file, list_evaluations
from engine.spec import catalog
from workbench.checkpoint_views import (
    TENSOR_COLUMNS,
    checkpoint_rows,
    history_columns,
    history_rows,
    parsed_metadata,
    tensor_rows,
)
from workbench.tui.filter_box import FilterBox
from workbench.tui.keys import keys
from workbench.tui.report_key import write_report
from workbench.views import (
    EVALUATION_COLUMNS,
    SAVED_EVALUATION_COLUMNS,
    eps,
    error_text,
    evaluation_rows,
    num,
    sanity_lines,
    saved_evaluation_row,
    threat,
)

EVALUATE_TAB, EVALUATIONS_TAB = "tab-5", "tab-6"


class EvalCancelled(Exception):
    """Raised in the worker at the next batch once its evaluation has been cancelled."""


class InspectScreen(Screen):
    KEYMAP = "inspect"
    BINDINGS = keys(KEYMAP)

    def __init__(self, path: Path, evaluate: bool = False, samples: int = 0) -> None:
        super().__init__()
        self.path = path
        self.start_eval = evaluate
        self.samples = samples
        self.running = False  # one evaluation at a time: their progress would interleave
        self.header, self.meta = read_header(path)
        self.suites = {e.name: e for e in catalog.suites()}

    def compose(self) -> ComposeResult:
        suites = sorted(self.suites)
        yield Header()
        with TabbedContent(
            "Summary", "Config", "Metrics", "Tensors", "Evaluate", "Evaluations", id="tabs"
        ):
            yield DataTable(id="meta", show_header=False)
            with VerticalScroll():
                yield Static(id="config")
            yield DataTable(id="history")
            yield DataTable(id="tensors")
            with VerticalScroll(id="eval-pane"):
                with Horizontal(id="eval-controls"):
                    yield Select(
                        [(name, name) for name in suites],
                        value="paper" if "paper" in suites else suites[0],
                        allow_blank=False,
                        compact=True,
                        id="eval-suite",
                    )
                    yield Input(
                        placeholder="source checkpoint for black-box columns (optional)",
                        compact=True,
                        id="eval-source",
                    )
                    yield Button("Run", id="eval-run", compact=True)
                yield Label(id="eval-about")
                yield Label(
                    "choose a suite and Run, or press e (paper) or k (quick)", id="eval-status"
                )
                yield ProgressBar(id="eval-bar")
                yield DataTable(id="eval-table")
                yield Static(id="eval-sanity")
            with Vertical(id="evals-pane"):
                yield Label(id="evals-hint")
                yield FilterBox(placeholder="filter evaluations (esc clears)", id="evals-filter")
                yield DataTable(id="evals", cursor_type="row")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.title = self.path.name
        self.sub_title = str(self.path.parent)
        meta = self.query_one("#meta", DataTable)
        meta.add_columns("key", "value")
        for key, value in checkpoint_rows(self.header, self.meta):
            meta.add_row(key, value)
        parsed = parsed_metadata(self.meta)
        cfg = parsed.get("config") if isinstance(parsed.get("config"), dict) else {}
        # escaped: TOML's [section] headers would otherwise be read as markup and vanish
        self.query_one("#config", Static).update(escape(tomli_w.dumps(cfg)) if cfg else "(none)")
        hist = self.query_one("#history", DataTable)
        metrics = parsed.get("metrics")
        metrics = metrics if isinstance(metrics, dict) else {}
        hist.add_columns(*history_columns(metrics))
        for row in history_rows(metrics):
            hist.add_row(*row)
        tens = self.query_one("#tensors", DataTable)
        tens.add_columns(*TENSOR_COLUMNS)
        for row in tensor_rows(self.header):
            tens.add_row(*row)
        self.query_one("#eval-table", DataTable).add_columns(*EVALUATION_COLUMNS)
        self.query_one("#evals", DataTable).add_columns(*SAVED_EVALUATION_COLUMNS)
        self.query_one("#eval-bar", ProgressBar).display = False  # shown while a suite runs
        self._describe(str(self.query_one("#eval-suite", Select).value))
        self.refresh_evaluations()
        if self.start_eval:
            self.action_evaluate()

    # -- starting an evaluation
    def action_evaluate(self, suite: str = "paper") -> None:
        """Run `suite` on this checkpoint (the e and q keys, and the Run button)."""
        if self.running:
            self.notify("an evaluation is already running", severity="warning")
            return
        self.query_one("#tabs", TabbedContent).active = EVALUATE_TAB
        self.query_one("#eval-suite", Select).value = suite  # the controls say what runs
        text = self.query_one("#eval-source", Input).value.strip()
        source = Path(text).expanduser() if text else None
        self.running = True
        self.query_one("#eval-run", Button).disabled = True
        self.query_one("#eval-table", DataTable).clear()
        self.query_one("#eval-sanity", Static).update("")
        bar = self.query_one("#eval-bar", ProgressBar)
        bar.update(total=None, progress=0)
        bar.display = True
        self._status(f"running the {suite} suite ... (x cancels)")
        self.run_eval(suite, source)

    def action_cancel_eval(self) -> None:
        """Stop the running evaluation at its next batch; nothing is saved for it.

        Leaving the screen or quitting the app cancels the worker the same way, so
        neither waits for a long suite to finish.
        """
        if self.running:
            self.workers.cancel_group(self, "eval")
            self._status("cancelling after the current batch ...")

    def action_quick(self) -> None:
        self.action_evaluate("quick")

    def action_gallery(self) -> None:
        self.app.action_gallery(self.path)

    def action_report(self) -> None:
        """The evaluation under the cursor in the Evaluations tab, else the newest one."""
        table = self.query_one("#evals", DataTable)
        file = None
        if table.row_count and table.display:
            file = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        saved = getattr(self, "_saved", [])
        file = file or (saved[0][0] if saved else None)
        if file is None:
            self.notify("no saved evaluation of this checkpoint yet", severity="warning")
            return
        write_report(self, Path(str(file)))

    def action_saved_adv(self) -> None:
        """The gallery of the newest evaluation of this checkpoint saved with --save-adv."""
        rows = list_evaluations(self.path)
        for row in sorted(rows, key=lambda r: (r.get("time") or "", r["file"]), reverse=True):
            adv = adv_file(Path(row["file"]))
            if adv.is_file():
                self.app.action_gallery(self.path, adv)
                return
        self.notify(
            "no saved adversarial examples: run workbench eval CKPT --save-adv", severity="warning"
        )

    @on(Button.Pressed, "#eval-run")
    def _run_pressed(self) -> None:
        self.action_evaluate(str(self.query_one("#eval-suite", Select).value))

    @on(Select.Changed, "#eval-suite")
    def _suite_changed(self, event: Select.Changed) -> None:
        self._describe(str(event.value))

    def _describe(self, suite: str) -> None:
        """The suite's own description, so the choice says what it will run."""
        entry = self.suites.get(suite)
        self.query_one("#eval-about", Label).update(escape(entry.description) if entry else "")

    @work(thread=True, exclusive=True, group="eval")
    def run_eval(self, suite: str, source: Path | None) -> None:
        """The suite runs in a worker; rows appear as each column finishes."""
        from engine.eval.evaluate import evaluate_checkpoint  # torch: only once a suite runs

        columns: list[str] = []  # in the order they start, to place each in the bar
        worker = get_current_worker()

        def progress(name: str, done: int, total: int, n_columns: int) -> None:
            if worker.is_cancelled:
                raise EvalCancelled
            if name not in columns:
                columns.append(name)
            self._later(self._progress, name, columns.index(name), done, total, n_columns)

        def on_result(name: str, acc: float, seconds: float) -> None:
            self._later(self._row, name, acc, seconds)

        try:
            doc = evaluate_checkpoint(
                self.path,
                suite,
                samples=self.samples,
                progress=progress,
                on_result=on_result,
                source=source,
            )
        except EvalCancelled:
            self._later(self._failed, "cancelled: nothing was saved", "yellow")
        except Exception as exc:  # a worker's exception would take the whole app down
            self._later(self._failed, error_text(exc))
        else:
            self._later(self._done, doc)

    def _later(self, fn: Callable[..., None], *args: Any) -> None:
        """Hand a worker's news to the UI thread; dropped once the screen has been closed."""

        def apply() -> None:
            if self.is_attached:
                fn(*args)

        self.app.call_from_thread(apply)

    def _progress(self, name: str, index: int, done: int, total: int, n_columns: int) -> None:
        bar = self.query_one("#eval-bar", ProgressBar)
        bar.update(total=n_columns * total, progress=index * total + done)
        self._status(f"{escape(name)}: {done}/{total}")

    def _row(self, name: str, acc: float, seconds: float) -> None:
        # the interval and examples/s arrive with the finished evaluation's document
        self.query_one("#eval-table", DataTable).add_row(name, num(acc), "", f"{seconds:.1f}", "")

    def _status(self, text: str) -> None:
        self.query_one("#eval-status", Label).update(text)

    def _failed(self, message: str, colour: str = "red") -> None:
        self.running = False
        self.query_one("#eval-run", Button).disabled = False
        self.query_one("#eval-bar", ProgressBar).display = False
        self._status(f"[{colour}]{escape(message)}[/]")

    def _done(self, doc: dict[str, Any]) -> None:
        self.running = False
        self.query_one("#eval-run", Button).disabled = False
        self._show(doc, f"saved {doc['saved']}")
        norm = doc.get("norm", "linf")
        at = f"eps {eps(doc['eps'])}" if norm == "linf" else threat(norm, doc["eps"])
        self._status(f"done: the {doc['suite']} suite, {doc['n']} examples, {at}")
        self.refresh_evaluations()

    def _show(self, doc: dict[str, Any], footnote: str) -> None:
        """One evaluation (live or saved): its accuracy table, then its sanity checks."""
        table = self.query_one("#eval-table", DataTable)
        table.clear()
        for row in evaluation_rows(doc):
            table.add_row(*row)
        lines = sanity_lines(doc, app=True) or ["[dim]no sanity checks in this suite[/]"]
        lines.append(f"[dim]{escape(footnote)}[/]")
        self.query_one("#eval-sanity", Static).update("\n".join(lines))

    # -- the saved evaluations
    def refresh_evaluations(self) -> None:
        """Re-read this checkpoint's evidence files, newest first (torch-free, so cheap)."""
        rows = list_evaluations(self.path)
        self._saved = [(row["file"], saved_evaluation_row(row)) for row in reversed(rows)]
        self._fill_evaluations()

    def _fill_evaluations(self) -> None:
        text = self.query_one("#evals-filter", FilterBox).value.strip().lower()
        shown = [
            (file, cells)
            for file, cells in self._saved
            if not text or any(text in c.lower() for c in (Path(file).name, *cells))
        ]
        table = self.query_one("#evals", DataTable)
        table.clear()
        for file, cells in shown:
            table.add_row(*cells, key=file)
        table.display = bool(shown)
        n = len(self._saved)
        hint = (
            "no evaluations yet: choose a suite and Run in the Evaluate tab"
            if not n
            else f"{len(shown)} of {n} saved match; Enter shows one in the Evaluate tab"
            if text
            else f"{n} saved; Enter shows one in the Evaluate tab (/ filters)"
        )
        self.query_one("#evals-hint", Label).update(hint)

    # -- filter (/): the saved evaluations, by suite, time, numbers or sanity
    def action_filter(self) -> None:
        self.query_one("#tabs", TabbedContent).active = EVALUATIONS_TAB
        self.query_one("#evals-filter", FilterBox).open()

    @on(Input.Changed, "#evals-filter")
    def _filter_changed(self) -> None:
        self._fill_evaluations()

    @on(Input.Submitted, "#evals-filter")
    def _filter_submitted(self) -> None:
        self.query_one("#evals", DataTable).focus()

    def on_filter_box_cleared(self) -> None:
        self.query_one("#evals", DataTable).focus()

    @on(DataTable.RowSelected, "#evals")
    def _evaluation_selected(self, event: DataTable.RowSelected) -> None:
        if self.running:
            self.notify("an evaluation is running; it shows here when done", severity="warning")
            return
        file = str(event.row_key.value)
        self.query_one("#tabs", TabbedContent).active = EVALUATE_TAB
        try:
            doc = json.loads(Path(file).read_text(encoding="utf-8"))
            if not isinstance(doc, dict) or not isinstance(doc.get("table"), dict):
                raise ValueError("not an evaluation")
        except (OSError, ValueError) as exc:
            self._status(f"[red]{escape(file)}: unreadable ({escape(str(exc))})[/]")
            return
        self.query_one("#eval-bar", ProgressBar).display = False
        suite = self.query_one("#eval-suite", Select)
        with suite.prevent(Select.Changed):  # the controls say what is shown
            if doc.get("suite") in self.suites:
                suite.value = doc["suite"]
        self._show(doc, file)
        self._status(
            f"saved: the {escape(str(doc.get('suite')))} suite, {doc.get('n')} examples, "
            f"{escape(str(doc.get('time')))}"
        )
