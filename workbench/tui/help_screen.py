"""The help overlay (`?` or F1): every key of the screen underneath, grouped, from keys.py."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label

from workbench.tui.keys import help_rows


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "dismiss", "Close"),
        Binding("q", "dismiss", "Close"),
        Binding("question_mark", "dismiss", "Close"),
        Binding("f1", "dismiss", "Close"),
    ]

    def __init__(self, keymap: str) -> None:
        super().__init__()
        self.keymap = keymap

    def compose(self) -> ComposeResult:
        with Vertical(id="help"):
            yield Label("[b]Keys[/]  [dim](esc, q or ? closes)[/]")
            yield DataTable(id="help-keys", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one("#help-keys", DataTable)
        table.add_columns("", "key", "does")
        for group, key, label in help_rows(self.keymap):
            table.add_row(group, key, label)
