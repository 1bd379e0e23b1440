"""The trash (`T` on Home): runs `d` moved to RUNS/.trash, read from disk, so what was
trashed before a restart is listed and restored the same way; `d` here deletes for good."""

from __future__ import annotations

import time

from rich.markup import escape
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Label, Static

from engine.records import run_ops
from engine.spec.errors import WorkbenchError
from workbench.tui.dialogs import Confirm
from workbench.tui.keys import keys


class TrashScreen(Screen):
    KEYMAP = "trash"
    BINDINGS = keys(KEYMAP)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Label("Trash  [dim](u restore, d delete for good)[/]", classes="pane-title")
        yield DataTable(id="trash", cursor_type="row", zebra_stripes=True)
        yield Static("the trash is empty", id="trash-empty")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.title = "Trash"
        self.sub_title = str(self.app.runs_dir / run_ops.TRASH)
        self.query_one("#trash", DataTable).add_columns("run", "trashed")
        self.items: dict[str, run_ops.Trashed] = {}
        self.fill()
        self.query_one("#trash", DataTable).focus()

    def fill(self) -> None:
        """Read the trash folder again (a handful of entries: cheap on the UI thread)."""
        table = self.query_one("#trash", DataTable)
        table.clear()
        self.items = {str(t.path): t for t in run_ops.trashed(self.app.runs_dir)}
        for key, t in self.items.items():
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t.time))
            table.add_row(escape(t.name), when, key=key)
        self.query_one("#trash-empty").display = not self.items
        table.display = bool(self.items)

    def selected(self) -> run_ops.Trashed | None:
        table = self.query_one("#trash", DataTable)
        if not table.row_count:
            return None
        return self.items.get(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def action_restore(self) -> None:
        item = self.selected()
        if item is None:
            return
        try:
            run_ops.restore(self.app.runs_dir, item.path, item.name)
        except (WorkbenchError, OSError) as exc:
            self.notify(f"restore: {exc}", severity="error")
            return
        self.notify(f"restored {item.name}")
        self.fill()

    def action_purge(self) -> None:
        item = self.selected()
        if item is None:
            return

        def answered(yes: bool | None) -> None:
            if not yes:
                return
            try:
                run_ops.purge(self.app.runs_dir, item)
            except (WorkbenchError, OSError) as exc:
                self.notify(f"delete: {exc}", severity="error")
                return
            self.notify(f"deleted {item.name} for good")
            self.fill()

        self.app.push_screen(
            Confirm(f"Delete {item.name} for good? This cannot be undone."), answered
        )
