"""The help overlay (`?` or F1): every key of the screen underneath, from keys.py, with the
keys that work everywhere beside them (not below: at 80x24 both stay in view)."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from workbench.tui.keys import help_rows


def key_table(rows: list[tuple[str, str]]) -> Table:
    """Key and what it does, two plain columns: nothing to scroll sideways."""
    table = Table.grid(padding=(0, 1))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for key, label in rows:
        table.add_row(escape(key), escape(label))
    return table


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
        rows = help_rows(self.keymap)
        groups = {g: [(k, label) for group, k, label in rows if group == g] for g, _, _ in rows}
        with Vertical(id="help"):
            yield Label("[b]Keys[/]  [dim](esc, q or ? closes)[/]")
            with VerticalScroll(id="help-scroll"), Horizontal(id="help-keys"):
                for i, (group, keys) in enumerate(groups.items()):
                    width = max(len(k) for k, _ in keys) + 1 + max(len(x) for _, x in keys)
                    with Vertical(classes="help-group") as column:
                        column.styles.width = max(width, len(group))
                        yield Label(f"[b]{escape(group)}[/]", classes="pane-title")
                        yield Static(key_table(keys), id=f"help-group-{i}")
