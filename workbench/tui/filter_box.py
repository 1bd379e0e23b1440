"""The `/` filter line every list screen shares: hidden until opened, narrowing as you type;
escape clears and hides it (and goes no further, so it never also leaves the screen)."""

from __future__ import annotations

from textual import events
from textual.message import Message
from textual.widgets import Input


class FilterBox(Input):
    # one row, and no border even when focused: Input's focused border is a row above and
    # one below, which on a one-row box left no room for the text being typed
    DEFAULT_CSS = """
    FilterBox { display: none; height: 1; border: none; padding: 0 1; }
    FilterBox:focus, FilterBox.-invalid, FilterBox.-invalid:focus { border: none; }
    """

    class Cleared(Message):
        """Escape emptied and hid the box: the screen puts the focus back on its list."""

    def open(self) -> None:
        self.display = True
        self.focus()

    def clear_filter(self) -> bool:
        """Empty and hide the box; False when there was nothing to clear."""
        if not (self.value or self.display):
            return False
        self.value = ""
        self.display = False
        return True

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "escape":
            event.stop()
            event.prevent_default()
            self.clear_filter()
            self.post_message(self.Cleared())
            return
        await super()._on_key(event)
