"""Every key of the app, screen by screen, in one table: one place to read them and keep
them consistent (escape goes back everywhere; the same letter does the same thing).

A screen takes its bindings with `BINDINGS = keys("home")`; the footer and the
command palette show them from there.
"""

from __future__ import annotations

from textual.binding import Binding

BACK = ("escape", "app.pop_screen", "Back")
HIDDEN = {"tab", "x", "t"}  # keys that work but are not in the footer (t: in the palette)

KEYS: dict[str, list[tuple[str, str, str]]] = {
    "app": [("ctrl+q", "quit", "Quit"), ("q", "quit", "Quit")],
    "home": [
        ("n", "new_run", "New run"),
        ("a", "attach", "Attach"),
        ("s", "stop", "Stop"),
        ("i", "inspect", "Inspect"),
        ("e", "evaluate", "Evaluate"),
        ("c", "compare", "Compare"),
        ("g", "gallery", "Gallery"),
        ("t", "app.studies", "Studies"),
        ("r", "refresh", "Refresh"),
        ("tab", "focus_next", "Next pane"),
    ],
    "run": [
        BACK,
        ("s", "stop", "Stop run"),
        ("m", "toggle_ema", "EMA smoothing"),
        ("i", "inspect", "Inspect best"),
    ],
    "inspect": [
        BACK,
        ("e", "evaluate", "Evaluate (paper suite)"),
        ("q", "quick", "Quick eval"),
        ("g", "gallery", "Gallery"),
        ("x", "cancel_eval", "Cancel evaluation"),
    ],
    "compare": [BACK, ("m", "next_metric", "Next metric")],
    "gallery": [BACK, ("z", "zoom", "Full size / half size")],
    "study": [BACK, ("r", "refresh", "Refresh")],
    "launch": [("escape", "cancel", "Cancel"), ("ctrl+s", "start", "Start")],
}


def keys(screen: str) -> list[Binding]:
    """The bindings of one screen (the app's own quit keys take priority over a screen's)."""
    return [
        Binding(key, action, label, show=key not in HIDDEN, priority=key == "ctrl+q")
        for key, action, label in KEYS[screen]
    ]
