"""Home: presets, runs with live status, and the selected run's checkpoints."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Label, Static

from engine.catalog import presets
from engine.runs import LAUNCH_LOG, RunInfo, list_runs
from workbench.launcher import last_output, launch_state
from workbench.tui.keys import keys
from workbench.views import RUN_COLUMNS, run_row, run_status


def starting_runs(runs_dir: Path) -> list[str]:
    """Runs a launcher created that have not written events yet."""
    if not runs_dir.is_dir():
        return []
    return sorted(
        p.name
        for p in runs_dir.iterdir()
        if (p / LAUNCH_LOG).exists() and not (p / "events.jsonl").exists()
    )


class HomeScreen(Screen):
    """The start page: everything reachable by keys listed in the footer."""

    BINDINGS = keys("home")

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="home"):
            with Vertical(id="left"):
                yield Label("Presets  [dim](n: start)[/]", classes="pane-title")
                yield DataTable(id="presets", cursor_type="row", zebra_stripes=True)
            with Vertical(id="right"):
                yield Label(
                    "Runs (val %)  [dim](a attach, s stop, c compare)[/]",
                    classes="pane-title",
                )
                yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
                yield Static("no runs yet: press n to start one", id="runs-empty")
                yield Label(
                    "Checkpoints  [dim](i: inspect, e: evaluate, g: gallery)[/]",
                    classes="pane-title",
                )
                yield DataTable(id="ckpts", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Robustness workbench"
        self.sub_title = str(self.app.runs_dir)
        table = self.query_one("#presets", DataTable)
        table.add_columns("preset", "description")
        for entry in presets(dirs=self.app.preset_dirs):
            table.add_row(entry.name, entry.description, key=str(entry.path))
        runs = self.query_one("#runs", DataTable)
        runs.add_columns(*RUN_COLUMNS)
        self.query_one("#ckpts", DataTable).add_columns("checkpoint", "kind")
        self._runs: dict[str, RunInfo] = {}
        self._ckpt_for: str | None = None
        self.action_refresh()
        self.set_interval(1.0, self.action_refresh)

    # -- data
    def action_refresh(self) -> None:
        infos = list_runs(self.app.runs_dir)
        table = self.query_one("#runs", DataTable)
        keep = self.selected_run()
        rows = [run_row(r) for r in infos]
        rows += [
            (name, launch_state(self.app.runs_dir / name), "", "", "", "")
            for name in starting_runs(self.app.runs_dir)
        ]
        fresh = [(r[0], *r[1:]) for r in rows]
        if fresh != getattr(self, "_last_rows", None):
            self._last_rows = fresh
            table.clear()
            for r in rows:
                table.add_row(r[0], run_status(r[1]), *r[2:], key=r[0])
            if keep is not None and keep in {r[0] for r in rows}:
                table.move_cursor(row=table.get_row_index(keep))
        self._runs = {r.name: r for r in infos}
        self.query_one("#runs-empty").display = not rows
        table.display = bool(rows)
        self._fill_checkpoints()

    def _fill_checkpoints(self) -> None:
        name = self.selected_run()
        ckpts = self.query_one("#ckpts", DataTable)
        files = self._checkpoint_files(name) if name else []
        sig = (name, [str(f) for f, _ in files])
        if sig == self._ckpt_for:
            return
        self._ckpt_for = sig  # type: ignore[assignment]
        ckpts.clear()
        for f, kind in files:
            ckpts.add_row(f.name, kind, key=str(f))

    def _checkpoint_files(self, name: str) -> list[tuple[Path, str]]:
        d = self.app.runs_dir / name
        out = [
            (d / f, f.split(".")[0])
            for f in ("best.safetensors", "last.safetensors")
            if (d / f).exists()
        ]
        if (d / "checkpoints").is_dir():
            out += [(f, "epoch") for f in sorted((d / "checkpoints").glob("*.safetensors"))]
        return out

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "runs":
            self._fill_checkpoints()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "presets":
            self.action_new_run()
        elif event.data_table.id == "runs":
            self.action_attach()
        elif event.data_table.id == "ckpts":
            self.action_inspect()

    # -- selection helpers
    def _key(self, table_id: str) -> str | None:
        table = self.query_one(f"#{table_id}", DataTable)
        if table.row_count == 0:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    def selected_run(self) -> str | None:
        return self._key("runs")

    def selected_checkpoint(self) -> Path | None:
        key = self._key("ckpts")
        if key:
            return Path(key)
        name = self.selected_run()
        files = self._checkpoint_files(name) if name else []
        return files[0][0] if files else None

    # -- actions
    def action_new_run(self) -> None:
        key = self._key("presets")
        if key:
            self.app.action_new_run(Path(key))

    def action_attach(self) -> None:
        name = self.selected_run()
        if not name:
            return
        run_dir = self.app.runs_dir / name
        if not (run_dir / "events.jsonl").exists() and launch_state(run_dir) == "failed":
            self.notify(f"{name} did not start: {last_output(run_dir)}", severity="error")
            return
        self.app.action_attach(run_dir)

    def action_stop(self) -> None:
        name = self.selected_run()
        if name:
            self.app.action_stop(self.app.runs_dir / name)

    def action_inspect(self) -> None:
        path = self.selected_checkpoint()
        if path:
            self.app.action_inspect(path)
        else:
            self.notify("no checkpoint yet: a run saves one at the end of each epoch")

    def action_evaluate(self) -> None:
        path = self.selected_checkpoint()
        if path:
            self.app.action_inspect(path, evaluate=True)

    def action_gallery(self) -> None:
        path = self.selected_checkpoint()
        if path:
            self.app.action_gallery(path)

    def action_compare(self) -> None:
        self.app.action_compare()
