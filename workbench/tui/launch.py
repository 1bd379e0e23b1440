"""The launch form: the common overrides and free `--set`s, validated before anything starts.

Fields start empty with the preset's value as placeholder, so an empty field
visibly means "the preset's default" (or, after a launch of the same preset in
this session, with that launch's values). Start checks each field on its own
and lists every field's error at once, named by the form's labels, then runs the
request's preflight (engine/records/run_request.py), the checks `workbench run`
makes; the device is checked on this machine before a process is started. The
preflight speaks in `--set`/`--name` terms for the CLI: `form_error` translates.
"""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape
from textual.app import ComposeResult
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from engine.records.run_request import Preflight, RunRequest
from engine.records.runs import check_name, default_name
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
DEVICES = "auto, cpu, cuda or cuda:N (N: a GPU's index)"


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


def short_label(label: str) -> str:
    """A field's label without its hint: `eps (e.g. 8/255)` is `eps` in an error."""
    return label.split(" (")[0]


def form_error(message: str, labels: dict[str, str]) -> str:
    """A preflight's one line in the form's terms: `--set train.epochs=x: key
    'train.epochs': given 'x': ...` becomes `epochs: given 'x': ...` when a field has that
    key, `--name` becomes "run name", and a bad device says what a device can be."""
    for dotted, label in labels.items():
        for lead in (f"--set {dotted}=", f"key '{dotted}': "):
            if lead in message:
                reason = message.split(f"key '{dotted}': ", 1)[-1]
                if dotted == "train.device" and "pattern" in reason:
                    given = reason.split(": ", 1)[0]
                    reason = f"{given}: give {DEVICES}"
                return f"{label}: {reason}"
    if message.startswith("--name "):
        return "run name: " + message.removeprefix("--name ")
    if "pick another --name" in message:  # the folder exists
        return "run name: " + message.split("; pick another", 1)[0] + "; pick another name"
    return message


class LaunchScreen(ModalScreen[Preflight | None]):
    """Returns the run request, checked by its preflight, or None when cancelled."""

    KEYMAP = "launch"
    BINDINGS = keys(KEYMAP)

    def __init__(self, preset: Path, cfg: PresetConfig | None = None) -> None:
        super().__init__()
        self.preset = preset
        self.cfg = cfg if cfg is not None else load_preset(preset)
        self.errors: list[str] = []  # what the last start refused, one line a field

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
            yield Static("", id="launch-memory")
            yield Static("", id="launch-error")
            with Horizontal(id="launch-buttons"):
                yield Button("Start (ctrl+s)", variant="primary", id="start")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        """Fill in this preset's last launch in this session (the app keeps them)."""
        remembered = getattr(self.app, "form_memory", {}).get(str(self.preset), {})
        for widget in self.query(Input):
            if widget.id in remembered and widget.id != "name":
                widget.value = remembered[widget.id]
        memory = self.query_one("#launch-memory", Static)
        memory.display = any(v for k, v in remembered.items() if k != "name")
        memory.update("[dim]filled in from your last launch of this preset[/]")

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

    def field_errors(self) -> list[str]:
        """Each field checked alone (the preset with only that override), so every bad field
        is listed at once, not only the first the preflight meets."""
        labels = self.labels()
        errors = []
        name = self.query_one("#name", Input).value.strip()
        if name:
            try:
                check_name(name)
            except WorkbenchError as exc:
                errors.append(form_error(str(exc), labels))
        for widget in self.query(Input):
            value = widget.value.strip()
            if not (value and widget.id and widget.id.startswith("f-")):
                continue
            try:
                load_preset(self.preset, [f"{widget.name}={value}"])
            except WorkbenchError as exc:
                errors.append(form_error(str(exc), labels))
        for item in self.query_one("#more", Input).value.split():
            try:
                load_preset(self.preset, [item])
            except WorkbenchError as exc:
                errors.append(str(exc))  # this field is in --set terms itself
        return errors

    def labels(self) -> dict[str, str]:
        """--set key -> the label of the field that sets it."""
        return {dotted: short_label(label) for _, dotted, label, _ in fields(self.cfg)}

    def show_errors(self, errors: list[str]) -> None:
        self.errors = errors
        text = "\n".join(f"[red]{escape(e)}[/]" for e in errors)
        self.query_one("#launch-error", Static).update(text)

    def action_start(self) -> None:
        errors = self.field_errors()
        if errors:
            self.show_errors(errors)
            return
        name = self.query_one("#name", Input).value.strip()
        req = RunRequest(str(self.preset), tuple(self.overrides()), name, self.app.runs_dir)
        try:
            checked = req.preflight()  # the run's own checks: errors stay in the form
        except WorkbenchError as exc:
            self.show_errors([form_error(str(exc), self.labels())])
            return
        if checked.cfg.train.device.startswith("cuda"):  # a device this machine lacks
            from engine.devices import resolve_device

            try:
                resolve_device(checked.cfg.train.device, "device")
            except WorkbenchError as exc:
                self.show_errors([form_error(str(exc), self.labels())])
                return
        memory = getattr(self.app, "form_memory", None)
        if memory is not None:  # the next form for this preset starts from these values
            memory[str(self.preset)] = {str(w.id): w.value for w in self.query(Input) if w.id}
        self.dismiss(checked)
