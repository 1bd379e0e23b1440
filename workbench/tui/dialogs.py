"""Small modal dialogs: a yes/no confirmation and a one-line prompt."""

from __future__ import annotations

from collections.abc import Callable

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from engine.spec.errors import WorkbenchError


class Confirm(ModalScreen[bool]):
    """`y` or enter confirms, `n` or escape declines."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("enter", "answer(True)", "Yes", show=False),
        Binding("n", "answer(False)", "No"),
        Binding("escape", "answer(False)", "No", show=False),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(escape(self.question))
            yield Label("[b]y[/] yes   [b]n[/] no")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class Prompt(ModalScreen[str | None]):
    """One line of text; enter returns it, escape returns None.

    With `apply`, enter first hands the text to it: if it raises (a name taken, a bad tag),
    the dialog stays open with the text and the reason, so a typo is fixed, not retyped.
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self,
        question: str,
        value: str = "",
        placeholder: str = "",
        apply: Callable[[str], object] | None = None,
    ) -> None:
        super().__init__()
        self.question, self.value, self.placeholder = question, value, placeholder
        self.apply = apply

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(escape(self.question))
            yield Input(self.value, placeholder=self.placeholder, id="prompt")
            yield Static("", id="prompt-error")
            yield Label("[dim]enter: save   esc: cancel[/]")

    def on_mount(self) -> None:
        self.query_one("#prompt-error").display = False

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if self.apply is not None:
            try:
                self.apply(event.value)
            except (WorkbenchError, OSError) as exc:
                error = self.query_one("#prompt-error", Static)
                error.update(f"[red]{escape(str(exc))}[/]")
                error.display = True
                return
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)
