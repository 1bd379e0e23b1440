"""A run's output.log (or a study member's SLURM job log): wrapped, searchable (`/` narrows
to matching lines), refreshed live."""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Label, RichLog

from engine.records.runs import LAUNCH_LOG
from workbench.tui.filter_box import FilterBox
from workbench.tui.keys import keys

MAX_BYTES = 2_000_000  # the tail of a very long log


def read_tail(path: Path) -> list[str]:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - MAX_BYTES))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return text.replace("\r", "\n").splitlines()


class LogScreen(Screen):
    KEYMAP = "log"
    BINDINGS = keys(KEYMAP)

    def __init__(
        self, run_dir: Path, why: str = "", path: Path | None = None, extra: Path | None = None
    ) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.why = why
        self.path = path or run_dir / LAUNCH_LOG  # another log than the run's own (a job's)
        self.extra = extra  # a second file shown after the first (a job's stderr)
        self.lines: list[str] = []
        self.query_text = ""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Label("", id="log-about")
        yield FilterBox(placeholder="search (enter keeps it, esc clears)", id="log-search")
        yield RichLog(id="log-view", wrap=True, markup=True, highlight=False)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.title = f"{self.run_dir.name}: {self.path.name}"
        self.query_one("#log-view").focus()
        self._load()
        self.set_interval(2.0, self._load)

    @work(thread=True, exclusive=True, group="log")
    def _load(self) -> None:
        lines = read_tail(self.path)
        if self.extra is not None and self.extra.is_file():
            lines += [f"--- {self.extra.name}", *read_tail(self.extra)]
        missing = not self.path.is_file()
        self.app.call_from_thread(self._show, lines, missing)

    def _show(self, lines: list[str], missing: bool = False) -> None:
        if missing:  # say why it is empty rather than show an empty page
            why = (
                f"no {LAUNCH_LOG}: only runs started from this app keep their output here"
                if self.path.name == LAUNCH_LOG
                else f"no {self.path} yet (the job has not started)"
            )
            self.query_one("#log-about", Label).update(escape(why))
            return
        if lines == self.lines and not self._dirty:
            return
        self.lines, self._dirty = lines, False
        view = self.query_one("#log-view", RichLog)
        view.clear()
        q = self.query_text.lower()
        shown = [ln for ln in lines if q in ln.lower()] if q else lines
        for ln in shown:
            text = escape(ln)
            if q:
                i = ln.lower().find(q)
                text = escape(ln[:i]) + f"[reverse]{escape(ln[i : i + len(q)])}[/]"
                text += escape(ln[i + len(q) :])
            view.write(text)
        about = f"{len(shown)} of {len(lines)} lines" + (f" matching {q!r}" if q else "")
        if self.why:
            about = f"[red]{escape(self.why)}[/]  ·  {about}"
        self.query_one("#log-about", Label).update(about)

    _dirty = False

    def action_search(self) -> None:
        self.query_one("#log-search", FilterBox).open()

    def on_filter_box_cleared(self) -> None:
        self.query_one("#log-view").focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.query_text = event.value.strip()
        self._dirty = True
        self._show(self.lines)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_one("#log-view").focus()
