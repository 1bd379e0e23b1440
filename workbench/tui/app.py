"""The Textual workbench: bare `workbench` opens this.

The app never touches a trainer: it launches detached `workbench run`
processes and reads their events and checkpoints, so quitting it (or losing
SSH) leaves every run going, and reopening it attaches again.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from textual.app import App, SystemCommand
from textual.screen import Screen

from engine.catalog import preset_dirs as preset_dirs_default
from workbench.launcher import launch, stop
from workbench.tui.compare import CompareScreen
from workbench.tui.gallery import GalleryScreen
from workbench.tui.home import HomeScreen
from workbench.tui.inspect_screen import InspectScreen
from workbench.tui.keys import keys
from workbench.tui.launch import LaunchScreen
from workbench.tui.run_screen import RunScreen
from workbench.tui.study_screen import StudyScreen

CSS = """
#home { height: 1fr; }
#left { width: 40%; }
#right { width: 60%; }
.pane-title { padding: 0 1; background: $boost; width: 100%; }
#presets, #runs { height: 1fr; }
#ckpts { height: 8; }
#runs-empty { padding: 1 2; color: $text-muted; height: 1fr; }
#run-info { padding: 0 1; }
#run-progress { height: 1; padding: 0 1; }
#bar { width: 1fr; }
#run-rate { width: auto; }
#plots { grid-size: 2 2; height: 1fr; min-height: 12; }
#log { height: 6; border-top: solid $primary; }
LaunchScreen { align: center middle; }
#launch { width: 72; height: auto; border: thick $primary; padding: 1 2; background: $surface; }
#launch-grid { grid-size: 2; grid-columns: 26 1fr; height: auto; grid-rows: 1; grid-gutter: 1 0; }
#launch-grid Input { border: none; height: 1; padding: 0 1; background: $boost; }
#launch-grid Input:focus { background: $primary 40%; }
#launch-error { height: auto; }
#launch-buttons { height: 3; align-horizontal: right; }
#pick { width: 34; }
#chart { width: 1fr; }
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
#study-left { width: 45%; }
#study-right { width: 55%; }
#studies { height: 6; }
#members { height: 1fr; }
#progress { padding: 0 1; width: 100%; }
#groups { height: auto; max-height: 10; }
#pairs { padding: 0 1; height: auto; }
#study-plot { height: 1fr; min-height: 10; }
"""


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

    def on_mount(self) -> None:
        self.push_screen(HomeScreen())

    # -- actions reachable from every screen and the command palette
    def action_new_run(self, preset: Path) -> None:
        def started(result: tuple[str, list[str]] | None) -> None:
            if result is None:
                return
            name, sets = result
            launched = launch(preset, name, self.runs_dir, sets)
            self.notify(f"started {name} (pid {launched.pid}); it keeps running if you quit")
            self.push_screen(RunScreen(launched.run_dir))

        self.push_screen(LaunchScreen(preset), started)

    def action_attach(self, run_dir: Path) -> None:
        self.push_screen(RunScreen(run_dir))

    def action_stop(self, run_dir: Path) -> None:
        if stop(run_dir):
            self.notify(f"stopping {run_dir.name}: it saves a checkpoint and exits")
        else:
            self.notify(f"{run_dir.name} is not running", severity="warning")

    def action_inspect(self, path: Path, evaluate: bool = False) -> None:
        self.push_screen(InspectScreen(path, evaluate, self.eval_samples))

    def action_gallery(self, path: Path) -> None:
        self.push_screen(GalleryScreen(path))

    def action_compare(self) -> None:
        self.push_screen(CompareScreen())

    def action_studies(self) -> None:
        self.push_screen(StudyScreen())

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        if isinstance(screen, HomeScreen):
            yield SystemCommand("New run", "Start the highlighted preset", screen.action_new_run)
            yield SystemCommand("Attach", "Watch the highlighted run live", screen.action_attach)
            yield SystemCommand("Studies", "Members, progress and report", self.action_studies)
            yield SystemCommand(
                "Stop run", "Checkpoint and stop the highlighted run", screen.action_stop
            )
            yield SystemCommand(
                "Inspect checkpoint", "Open the highlighted checkpoint", screen.action_inspect
            )
            yield SystemCommand(
                "Evaluate checkpoint", "Run the paper attack suite", screen.action_evaluate
            )
            yield SystemCommand("Gallery", "Clean vs adversarial images", screen.action_gallery)
            yield SystemCommand("Compare runs", "Overlay a metric", self.action_compare)
        elif isinstance(screen, RunScreen):
            yield SystemCommand("Stop run", "Checkpoint and stop this run", screen.action_stop)
            yield SystemCommand("Toggle EMA", "Smooth the loss curves", screen.action_toggle_ema)
        elif isinstance(screen, InspectScreen):
            yield SystemCommand("Evaluate (paper)", "Run the paper suite", screen.action_evaluate)
            yield SystemCommand("Evaluate (quick)", "Run the quick suite", screen.action_quick)
            yield SystemCommand("Gallery", "Clean vs adversarial images", screen.action_gallery)
