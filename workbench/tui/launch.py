"""The launch form: the common overrides and free `--set`s, validated before anything starts.

Fields start empty with the preset's value as placeholder, so an empty field
visibly means "the preset's default". Start runs the request's preflight
(engine/records/run_request.py), the checks `workbench run` makes, and shows
its one line; the device is checked on this machine before a process is started.
"""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape
from textual.app import ComposeResult
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from engine.records.run_request import Preflight, RunRequest
from engine.records.runs import default_name
from engine.spec.config import PresetConfig
from engine.spec.errors import WorkbenchError
from engine.spec.preset_files import load_preset
from workbench.tui.keys import keys

FIELDS = [  # (id, --set key, label); the method's own fields join after eps (`fields`)
    ("epochs", "train.epochs", "epochs"),
    ("batch", "data.batch_size", "batch size"),
    ("eps", "attack.eps", "eps (e.g. 8/255)"),
    ("device", "train.device", "device (auto, cpu, cuda:0)"),
]


def fields(c: PresetConfig) -> list[tuple[str, str, str, str]]:
    """(id, --set key, label, preset value) per field: the common ones, and after eps the
    `[method]` keys the preset's method declares as form fields (engine/spec/panels.py)."""
    values = {
        "epochs": str(c.train.epochs),
        "batch": str(c.data.batch_size),
        "eps": f"{c.attack.eps:g}",
        "device": c.train.device,
    }
    out = [(key, dotted, label, values[key]) for key, dotted, label in FIELDS]
    method = c.to_dict()["method"]
    own = [
        (f"method-{f.key}", f"method.{f.key}", f.label, str(method.get(f.key, "")))
        for f in c.method.panels.fields
    ]
    at = [key for key, *_ in out].index("eps") + 1
    return [*out[:at], *own, *out[at:]]


class LaunchScreen(ModalScreen[Preflight | None]):
    """Returns the run request, checked by its preflight, or None when cancelled."""

    KEYMAP = "launch"
    BINDINGS = keys(KEYMAP)

    def __init__(self, preset: Path, cfg: PresetConfig | None = None) -> None:
        super().__init__()
        self.preset = preset
        self.cfg = cfg if cfg is not None else load_preset(preset)

    def compose(self) -> ComposeResult:
        c = self.cfg
        with Vertical(id="launch"):
            shown = self.preset
            if shown.is_absolute() and shown.is_relative_to(Path.cwd()):
                shown = shown.relative_to(Path.cwd())
            yield Label(f"Start [b]{c.name}[/]  [dim]{shown}[/]")
            with Grid(id="launch-grid"):
                yield Label("run name")
                yield Input(default_name(c.name), id="name")
                for key, dotted, label, value in fields(c):
                    yield Label(label)
                    default = f"default: {value}" if value else ""
                    yield Input("", placeholder=default, id=f"f-{key}", name=dotted)
                yield Label("more --set")
                yield Input("", placeholder="KEY=VALUE ..., e.g. data.train_limit=1000", id="more")
            yield Static("", id="launch-error")
            with Horizontal(id="launch-buttons"):
                yield Button("Start (ctrl+s)", variant="primary", id="start")
                yield Button("Cancel (esc)", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "start":
            self.action_start()
        else:
            self.action_cancel()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_start()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def overrides(self) -> list[str]:
        sets = []
        for widget in self.query(Input):
            if widget.id and widget.id.startswith("f-") and widget.value.strip():
                sets.append(f"{widget.name}={widget.value.strip()}")
        sets += self.query_one("#more", Input).value.split()
        return sets

    def action_start(self) -> None:
        name = self.query_one("#name", Input).value.strip()
        req = RunRequest(str(self.preset), tuple(self.overrides()), name, self.app.runs_dir)
        try:
            checked = req.preflight()  # the run's own checks: errors stay in the form
            if checked.cfg.train.device.startswith("cuda"):  # a device this machine lacks
                from engine.devices import resolve_device

                resolve_device(checked.cfg.train.device, "device")
        except WorkbenchError as exc:
            self.query_one("#launch-error", Static).update(f"[red]{escape(str(exc))}[/]")
            return
        self.dismiss(checked)
