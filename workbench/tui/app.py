"""The Textual workbench: bare `workbench` opens this.

The app never touches a trainer: it launches detached `workbench run`
processes and reads their events and checkpoints, so quitting it (or losing
SSH) leaves every run going, and reopening it attaches again.
"""

from __future__ import annotations

import os
import tempfile
import time
import traceback
from collections.abc import Iterable
from functools import partial
from pathlib import Path

from textual import work
from textual.app import App, SystemCommand
from textual.screen import Screen

from engine.records.run_request import Preflight
from engine.spec.catalog import preset_dirs as preset_dirs_default
from engine.spec.config import PresetConfig
from engine.spec.preset_files import load_preset
from workbench.tui.compare import CompareScreen
from workbench.tui.dialogs import Confirm
from workbench.tui.gallery import GalleryScreen
from workbench.tui.help_screen import HelpScreen
from workbench.tui.home import HomeScreen
from workbench.tui.inspect_screen import InspectScreen
from workbench.tui.keys import KEY_NAMES, KEYS, keys
from workbench.tui.launch import LaunchScreen
from workbench.tui.launcher import launch, run_pid, stop
from workbench.tui.run_screen import RunScreen
from workbench.tui.study_screen import StudyScreen
from workbench.views import error_text

CSS = """
#home { height: 1fr; }
#left { width: 26; }  /* preset names up to 23 characters whole, longer ones fitted */
#right { width: 1fr; }
#preset-about { height: auto; max-height: 8; padding: 0 1; color: $text-muted; }
#preset-about { border-top: solid $primary; }
.pane-title { padding: 0 1; background: $boost; width: 100%; }
#presets, #runs { height: 1fr; }
#ckpts { height: 8; }
#runs-empty { padding: 1 2; color: $text-muted; height: 1fr; }
#run-damage { height: auto; max-height: 3; padding: 0 1; display: none; }
#run-note { height: auto; max-height: 3; padding: 0 1; display: none; color: $text-muted; }
#trash { height: 1fr; }
#trash-empty { padding: 1 2; color: $text-muted; height: 1fr; }
#run-info { padding: 0 1; }
#run-test { padding: 0 1; width: 100%; height: auto; }
#run-progress { height: 1; padding: 0 1; }
#bar { width: 1fr; }
#run-rate { width: auto; }
#plots { grid-size: 2 2; height: 1fr; min-height: 12; }
#plots.maximised { grid-size: 1 1; }
#log { height: 6; border-top: solid $primary; }
LaunchScreen { align: center middle; }
#launch { width: 72; height: auto; border: thick $primary; padding: 1 2; background: $surface; }
#launch-grid { grid-size: 2; grid-columns: 26 1fr; height: auto; grid-rows: 1; grid-gutter: 1 0; }
#launch-grid Input { border: none; height: 1; padding: 0 1; background: $boost; }
#launch-grid Input:focus { background: $primary 40%; }
#launch-error { height: auto; }
#launch-buttons { height: 3; align-horizontal: right; }
#pick { width: 34; }
#chart, #diff { width: 1fr; }
#compare-view { width: 1fr; }
#legend { height: 1; padding: 0 1; }
#eval-controls { height: 1; }
#eval-suite { width: 16; }
#eval-source { width: 1fr; margin: 0 1; }
#eval-about { color: $text-muted; padding: 0 1; width: 100%; }
#eval-status { padding: 0 1; width: 100%; }
#eval-bar { padding: 0 1; }
#eval-sanity { padding: 0 1; }
#evals-hint { padding: 0 1; color: $text-muted; }
#evals { height: 1fr; }
#study { height: 1fr; }
#study-left { width: 50%; }
#study-right { width: 50%; }
#studies { height: 6; }
#members { height: 1fr; }
#progress { padding: 0 1; width: 100%; }
#groups { height: auto; max-height: 10; }
#pairs { padding: 0 1; height: auto; }
#study-plot { height: 1fr; min-height: 10; }
HelpScreen, Confirm, Prompt { align: center middle; }
.dialog { width: 64; height: auto; border: thick $primary; padding: 0 1; }
.dialog { background: $surface; }
#prompt-error { height: auto; }
#log-about { padding: 0 1; width: 100%; }
#log-view { height: 1fr; }
#help { width: auto; max-width: 100%; height: auto; max-height: 100%; }
#help { border: thick $primary; padding: 0 1; background: $surface; }
#help-scroll { height: auto; width: auto; overflow-x: hidden; }
#help-keys { height: auto; width: auto; }
.help-group { width: auto; height: auto; margin-right: 2; }
"""


def write_crash_log(error: BaseException) -> Path | None:
    """The traceback in ~/.cache/workbench/crash-<time>.log (the temp folder if that fails)."""
    text = "".join(traceback.format_exception(error))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for folder in (Path.home() / ".cache" / "workbench", Path(tempfile.gettempdir())):
        path = folder / f"crash-{stamp}-{os.getpid()}.log"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError:
            continue
        return path
    return None


class WorkbenchApp(App):
    TITLE = "Robustness workbench"
    CSS = CSS
    BINDINGS = keys("app")

    def __init__(
        self,
        runs_dir: Path = Path("runs"),
        preset_dirs: list[Path] | None = None,
        eval_samples: int = 0,
    ) -> None:
        super().__init__()
        self.runs_dir = Path(runs_dir)
        self.preset_dirs = preset_dirs or preset_dirs_default()
        self.eval_samples = eval_samples
        self.crash_log: Path | None = None  # where an uncaught exception's traceback went
        # the launch form's last values per preset file, for this session: the next form
        # for that preset opens with them filled in (LaunchScreen writes it on a start)
        self.form_memory: dict[str, dict[str, str]] = {}

    def _handle_exception(self, error: Exception) -> None:
        """An uncaught exception still ends the app (return code 1), but leaves its traceback
        in a file whose path `workbench` prints, so a crash is never a silent exit 0."""
        if self.crash_log is None:
            self.crash_log = write_crash_log(error)
        super()._handle_exception(error)

    def on_mount(self) -> None:
        self._opening: Path | None = None  # the preset whose form is being opened
        self.push_screen(HomeScreen())
        self.set_timer(1.0, self._warm_up)  # after Home's first frames

    # -- actions reachable from every screen and the command palette
    def action_new_run(self, preset: Path) -> None:
        """Open the launch form; the preset is read in a worker (its first read imports torch,
        seconds on a cold start), with a notice until the form appears."""
        if self._opening is not None:
            return
        self._opening = preset
        self.set_timer(0.3, lambda: self._opening == preset and self.notify("opening form ..."))
        self._read_preset(preset)

    @work(thread=True, exclusive=True, group="preset")
    def _read_preset(self, preset: Path) -> None:
        try:
            cfg = load_preset(preset)
        except Exception as exc:  # a malformed preset in ./presets: say so, never crash
            self.call_from_thread(self._form_failed, error_text(exc))
        else:
            self.call_from_thread(self._open_form, preset, cfg)

    def _form_failed(self, message: str) -> None:
        self._opening = None
        self.notify(message, severity="error", timeout=10)

    def _open_form(self, preset: Path, cfg: PresetConfig) -> None:
        self._opening = None

        def started(checked: Preflight | None) -> None:
            if checked is None:
                return
            launched = launch(checked)
            self.notify(
                f"started {launched.name} (pid {launched.pid}); it keeps running if you quit"
            )
            for screen in self.screen_stack:  # a filter left on would hide the new run
                if isinstance(screen, HomeScreen):
                    screen.clear_filter()
            self.push_screen(RunScreen(launched.run_dir, epochs=checked.cfg.train.epochs))

        self.push_screen(LaunchScreen(preset, cfg), started)

    @work(thread=True, group="warm-up")
    def _warm_up(self) -> None:
        """Import the engine's registry (and torch) while the user looks at Home, so the first
        form, inspector or gallery opens without a pause. A failure here is left for the action
        that needs the engine to report."""
        try:
            from engine.spec import registry

            registry.METHODS.names()
        except Exception:  # reported where it matters, not by a warm-up
            pass

    def action_attach(self, run_dir: Path) -> None:
        self.push_screen(RunScreen(run_dir))

    def action_stop(self, run_dir: Path) -> None:
        """`s` on Home and on the live screen alike: asks first, and only for a run that a
        process is writing (anything else just says it is not running)."""
        if run_pid(run_dir) is None:
            self.notify(f"{run_dir.name} is not running", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if not yes:
                return
            if stop(run_dir):
                self.notify(f"stopping {run_dir.name}: it saves a checkpoint and exits")
            else:  # it ended while the question was open
                self.notify(f"{run_dir.name} is not running", severity="warning")

        self.push_screen(
            Confirm(f"Stop {run_dir.name}? It saves a checkpoint and exits."), answered
        )

    def action_inspect(self, path: Path, evaluate: bool = False) -> None:
        self.push_screen(InspectScreen(path, evaluate, self.eval_samples))

    def action_gallery(self, path: Path, adv: Path | None = None) -> None:
        self.push_screen(GalleryScreen(path, adv))

    def action_compare(self) -> None:
        self.push_screen(CompareScreen())

    def action_studies(self) -> None:
        self.push_screen(StudyScreen())

    def action_escape(self) -> None:
        """escape: back one screen; on Home it only clears the filter (q quits), so a stray
        escape never closes the app."""
        if isinstance(self.screen, HomeScreen) or len(self.screen_stack) <= 2:
            if isinstance(self.screen, HomeScreen):
                self.screen.clear_filter()
            return
        self.pop_screen()

    def action_back(self) -> None:
        """`q`: back one screen; on Home, quit."""
        if isinstance(self.screen, HomeScreen) or len(self.screen_stack) <= 2:
            self.exit()
        else:
            self.pop_screen()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(getattr(self.screen, "KEYMAP", "")))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Every key of the current screen, by name, then Textual's own commands."""
        keymap = getattr(screen, "KEYMAP", "")
        for key, action, label in KEYS.get(keymap, []):
            if action in ("app.back", "cancel"):
                continue
            target = self if action.startswith("app.") else screen
            name = action.removeprefix("app.")
            yield SystemCommand(
                f"{label} ({KEY_NAMES.get(key, key)})",  # reads as words, then the key
                f"the same as pressing {KEY_NAMES.get(key, key)} on this screen",
                partial(self.call_later, target.run_action, name),
            )
        yield SystemCommand("Help (?)", "Every key of this screen", self.action_help)
        yield from super().get_system_commands(screen)
