"""Every key of the app, screen by screen, in one table: one place to read them and keep
them consistent (escape and q go back everywhere, q quits on Home; the same letter does
the same thing on every screen that has it).

A screen takes its bindings with `BINDINGS = keys("home")` and names its table in
`KEYMAP`; the footer, the help overlay (`?`) and the command palette all read it.
"""

from __future__ import annotations

from textual.binding import Binding

BACK = ("q", "app.back", "Back")  # q (and escape) go back one screen everywhere
# keys that work but stay out of the footer, so it is never cut: ? and the palette list them
HIDDEN = {"tab", "shift+tab", "x", "t", "f1", "escape", "slash", "ctrl+q", "r"}
HIDDEN |= {"l", "R", "d", "u", "v", "f2", "o", "T"}  # the run lifecycle on Home
# per screen, so footers fit 80 columns
HIDDEN_ON = {"home": {"g"}, "inspect": {"G", "p"}, "run": {"p"}}

KEYS: dict[str, list[tuple[str, str, str]]] = {
    "app": [
        ("question_mark", "help", "Help"),
        ("f1", "help", "Help"),
        ("escape", "escape", "Back; on Home, clear the filter"),
        ("q", "back", "Back (quit on Home)"),
        ("ctrl+q", "quit", "Quit"),
        ("tab", "app.focus_next", "Next pane"),
        ("shift+tab", "app.focus_previous", "Previous pane"),
    ],
    "home": [
        ("n", "new_run", "New"),
        ("a", "attach", "Attach"),
        ("s", "stop", "Stop"),
        ("i", "inspect", "Inspect"),
        ("e", "evaluate", "Eval"),
        ("c", "compare", "Compare"),
        ("g", "gallery", "Gallery"),
        ("t", "app.studies", "Studies"),
        ("slash", "filter", "Filter"),
        ("l", "log", "Log"),
        ("R", "resume", "Resume"),
        ("d", "delete", "Delete (to trash)"),
        ("u", "undo", "Undo delete"),
        ("T", "trash", "Trash view"),
        ("v", "archive", "Archive"),
        ("f2", "rename", "Rename"),
        ("o", "note", "Note & tags"),
        ("r", "refresh", "Refresh"),
        ("q", "app.back", "Quit"),
    ],
    "run": [
        BACK,
        ("s", "stop", "Stop run"),
        ("l", "log", "Log"),
        ("m", "toggle_ema", "EMA smoothing"),
        ("i", "inspect", "Inspect best"),
        ("z", "maximise", "Zoom plot"),
        ("p", "report", "Write the run's report (figures, tables)"),
    ],
    "inspect": [
        BACK,
        ("e", "evaluate", "Evaluate (paper suite)"),
        ("k", "quick", "Quick eval"),
        ("g", "gallery", "Gallery"),
        ("G", "saved_adv", "Gallery of the saved adversarial examples (eval --save-adv)"),
        ("x", "cancel_eval", "Cancel evaluation"),
        ("slash", "filter", "Filter evaluations"),
        ("p", "report", "Write the selected evaluation's report (figures, tables)"),
    ],
    "compare": [
        BACK,
        ("m", "next_metric", "Next metric"),
        ("f", "config_diff", "Config diff"),
        ("w", "export", "Write CSV"),
    ],
    "gallery": [BACK, ("z", "zoom", "Full size / half size")],
    "study": [
        BACK,
        ("r", "refresh", "Refresh"),
        ("l", "job_log", "Job log"),
        ("p", "report", "Write report"),
    ],
    "trash": [BACK, ("u", "restore", "Restore"), ("d", "purge", "Delete for good")],
    "log": [BACK, ("slash", "search", "Search")],
    "launch": [("escape", "cancel", "Cancel"), ("ctrl+s", "start", "Start")],
}

KEY_NAMES = {"question_mark": "?", "escape": "esc", "slash": "/"}


def keys(screen: str) -> list[Binding]:
    """The bindings of one screen (the app's own quit key takes priority over a screen's)."""
    return [
        Binding(
            key,
            action,
            label,
            show=key not in HIDDEN | HIDDEN_ON.get(screen, set()),
            priority=key == "ctrl+q",
        )
        for key, action, label in KEYS[screen]
    ]


def help_rows(screen: str) -> list[tuple[str, str, str]]:
    """(group, key, what it does) for the help overlay: this screen's keys, then everywhere."""
    rows = [("This screen", KEY_NAMES.get(k, k), label) for k, _, label in KEYS.get(screen, [])]
    seen = {r[1] for r in rows}
    rows += [
        ("Everywhere", KEY_NAMES.get(k, k), label)
        for k, _, label in KEYS["app"]
        if KEY_NAMES.get(k, k) not in seen
    ]
    rows.append(("Everywhere", "ctrl+p", "Every action by name (palette)"))
    return rows
