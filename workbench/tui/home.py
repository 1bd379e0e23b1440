"""Home: presets, runs with live status, and the selected run's checkpoints."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Label, Static
from textual.widgets.data_table import RowDoesNotExist

from engine.records import run_ops
from engine.records.runs import LAUNCH_LOG, RunInfo, is_locked, list_runs, read_note
from engine.spec.catalog import presets
from engine.spec.errors import WorkbenchError
from workbench.tui.dialogs import Confirm, Prompt
from workbench.tui.filter_box import FilterBox
from workbench.tui.keys import keys
from workbench.tui.launcher import launch_state, resume
from workbench.tui.log_screen import LogScreen
from workbench.tui.trash_screen import TrashScreen
from workbench.views import HOME_RUN_COLUMNS, error_text, fit, home_run_row, run_status

# status (up to "interrupted"), epoch, "best robust %": their widths, cell padding, scrollbar
NUMBERS_WIDTH = 11 + 5 + 13 + 3 * 2 + 2 + 1
NO_RUNS = "no runs yet: press n to start one"


def run_label(name: str, tags: list[str], room: int) -> str:
    """A run's name with its `#tags` after it in `room` characters: the name is what tells
    runs apart, so it keeps its room and the tags get what is left (cut with …)."""
    label = fit(name, room)
    rest = room - len(label)
    tail = "".join(f" #{t}" for t in tags)
    if not tail or rest < 3:
        return label
    return label + (tail if len(tail) <= rest else tail[: rest - 1] + "…")


def run_matches(text: str, info: RunInfo) -> bool:
    """The filter over what a run's row and detail pane show: name, #tags, note, status."""
    words = [info.name, info.method, info.note, info.status, info.phase]
    words += [f"#{t}" for t in info.tags]
    return not text or any(text.lower() in w.lower() for w in words)


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

    KEYMAP = "home"
    BINDINGS = keys(KEYMAP)

    def compose(self) -> ComposeResult:
        yield Header()
        yield FilterBox(placeholder="filter: names, #tags, notes, status (esc clears)", id="filter")
        with Horizontal(id="home"):
            with Vertical(id="left"):
                yield Label("Presets  [dim](n)[/]", classes="pane-title")
                yield DataTable(id="presets", cursor_type="row", zebra_stripes=True)
                yield Static("", id="preset-about")  # the highlighted preset's description
            with Vertical(id="right"):
                yield Label(
                    "Runs (val %)  [dim](a attach, s stop, c compare)[/]",
                    classes="pane-title",
                )
                yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
                yield Static(NO_RUNS, id="runs-empty")
                yield Static("", id="run-damage")  # why the highlighted run is damaged
                yield Static("", id="run-note")  # the highlighted run's note and tags
                yield Label(
                    "Checkpoints  [dim](i: inspect, e: evaluate, g: gallery)[/]",
                    classes="pane-title",
                )
                yield DataTable(id="ckpts", cursor_type="row")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.title = "Robustness workbench"
        self.sub_title = str(self.app.runs_dir)
        self.filter_text = ""
        self._presets = list(presets(dirs=self.app.preset_dirs))
        self.query_one("#presets", DataTable).add_columns("preset")
        self._fill_presets()
        self.query_one("#runs", DataTable).add_columns(*HOME_RUN_COLUMNS)
        self.query_one("#ckpts", DataTable).add_columns("checkpoint", "kind")
        self._runs: dict[str, RunInfo] = {}
        self._ckpt_for: str | None = None
        self.action_refresh()
        self.query_one("#presets", DataTable).focus()
        self.set_interval(1.0, self.action_refresh)

    # -- filter (/)
    def matches(self, *texts: str) -> bool:
        f = self.filter_text.lower()
        return not f or any(f in t.lower() for t in texts)

    def action_filter(self) -> None:
        self.query_one("#filter", FilterBox).open()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.filter_text = event.value.strip()
            self._fill_presets()
            self._last_rows = None
            self.action_refresh()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":  # to the runs if any match, else to the presets
            runs = self.query_one("#runs", DataTable)
            (runs if runs.row_count else self.query_one("#presets", DataTable)).focus()

    def on_filter_box_cleared(self) -> None:
        self.query_one("#presets", DataTable).focus()

    def clear_filter(self) -> None:
        """escape on Home (from anywhere on it): the filter goes, nothing else happens."""
        if self.query_one("#filter", FilterBox).clear_filter():
            self.query_one("#presets", DataTable).focus()

    def _fill_presets(self) -> None:
        table = self.query_one("#presets", DataTable)
        keep = self._key("presets")
        table.clear()
        room = max(8, table.size.width - 3) if table.size.width else 24
        for entry in self._presets:
            if self.matches(entry.name, entry.description):
                table.add_row(fit(entry.name, room), key=str(entry.path))
        if keep is not None:
            with contextlib.suppress(RowDoesNotExist):  # unless the filter hides it now
                table.move_cursor(row=table.get_row_index(keep))
        self._describe_preset()

    def on_resize(self) -> None:
        """Names are fitted to the panes' widths: refit them when the terminal changes."""
        self.call_after_refresh(self._refit)

    def _refit(self) -> None:
        self._fill_presets()
        self._last_rows = None
        self.action_refresh()

    def _describe_preset(self) -> None:
        key = self._key("presets")
        entry = next((e for e in self._presets if str(e.path) == key), None)
        about = self.query_one("#preset-about", Static)
        about.update(f"[b]{escape(entry.name)}[/]: {escape(entry.description)}" if entry else "")

    # -- data: read in a worker thread, applied on the UI thread (no I/O there)
    def action_refresh(self) -> None:
        self._scan(self.filter_text, self.selected_run())

    @work(thread=True, exclusive=True, group="home-scan")
    def _scan(self, text: str, selected: str | None) -> None:
        runs_dir = self.app.runs_dir

        try:
            infos = [r for r in list_runs(runs_dir) if run_matches(text, r)]
        except OSError as exc:  # the runs folder itself went away or cannot be listed
            self.app.call_from_thread(self.notify, error_text(exc), severity="error")
            return
        rows = [home_run_row(r) for r in infos]
        for name in starting_runs(runs_dir):
            state = launch_state(runs_dir / name)
            if not text or any(text.lower() in w.lower() for w in (name, state)):
                rows.append((name, state, "", "", "", ""))
        ckpts = self._checkpoint_files(selected) if selected else []
        self.app.call_from_thread(self._apply, infos, rows, selected, ckpts, text)

    def _apply(
        self,
        infos: list[RunInfo],
        rows: list[tuple[str, ...]],
        selected: str | None,
        ckpts: list[tuple[Path, str]],
        text: str = "",
    ) -> None:
        table = self.query_one("#runs", DataTable)
        keep = self.selected_run()
        fresh = [(r[0], *r[1:], *(i.tags for i in infos if i.name == r[0])) for r in rows]
        if fresh != getattr(self, "_last_rows", None):
            self._last_rows = fresh
            # the columns too: a column never narrows by itself, so after the terminal shrank
            # the old run names' width would push best robust % out of view
            table.clear(columns=True)
            table.add_columns(*HOME_RUN_COLUMNS)
            tags = {r.name: r.tags for r in infos}
            # the name gives way so the numbers after it (best robust first) stay in view
            room = max(12, (table.size.width or self.size.width - 28) - NUMBERS_WIDTH)
            for r in rows:
                label = run_label(r[0], tags.get(r[0], []), room)
                table.add_row(label, run_status(r[1]), *r[2:], key=r[0])
            if keep is not None and keep in {r[0] for r in rows}:
                table.move_cursor(row=table.get_row_index(keep))
        self._runs = {r.name: r for r in infos}
        empty = self.query_one("#runs-empty", Static)
        empty.update(f"no runs match {escape(repr(text))} (esc clears)" if text else NO_RUNS)
        empty.display = not rows
        table.display = bool(rows)
        self._show_damage()
        if selected == self.selected_run():
            self._show_checkpoints(selected, ckpts)
        else:  # the cursor moved (or the rows arrived): read the new run's files
            self._scan_checkpoints(self.selected_run())

    @work(thread=True, exclusive=True, group="home-ckpts")
    def _scan_checkpoints(self, name: str | None) -> None:
        files = self._checkpoint_files(name) if name else []
        self.app.call_from_thread(self._show_checkpoints, name, files)

    def _show_checkpoints(self, name: str | None, files: list[tuple[Path, str]]) -> None:
        ckpts = self.query_one("#ckpts", DataTable)
        sig = (name, [str(f) for f, _ in files])
        if sig == self._ckpt_for:
            return
        self._ckpt_for = sig  # type: ignore[assignment]
        ckpts.clear()
        for f, kind in files:
            if self.matches(f.name, kind) or self.matches(name or ""):
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
        if event.data_table.id == "presets":
            self._describe_preset()
        if event.data_table.id == "runs":
            self._show_damage()
            self._scan_checkpoints(self.selected_run())

    def _show_damage(self) -> None:
        """A damaged run says which file and line could not be read, under the runs; a run
        with a note shows its text there too (the list has room only for the tags)."""
        info = self._runs.get(self.selected_run() or "")
        box = self.query_one("#run-damage", Static)
        box.update(f"[b red]damaged:[/] {escape(info.damage)}" if info and info.damage else "")
        box.display = bool(info and info.damage)
        note = self.query_one("#run-note", Static)
        words = [*(f"#{t}" for t in info.tags), info.note] if info else []
        text = " ".join(w for w in words if w)
        note.update(f"[b]note:[/] {escape(text)}  [dim](o edits)[/]" if text else "")
        note.display = bool(text)

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
            self.app.push_screen(LogScreen(run_dir, f"{name} did not start"))
            return
        self.app.action_attach(run_dir)
        info = self._runs.get(name)
        if info is not None and info.status == "failed":  # why it failed, over its curves
            self.app.push_screen(LogScreen(run_dir, f"{name} failed"))

    def action_stop(self) -> None:
        name = self.selected_run()
        if name:  # the app asks, and only when the run is running
            self.app.action_stop(self.app.runs_dir / name)

    # -- the run lifecycle (engine/records/run_ops.py does the work; errors become notices)
    def _op(self, what: str, fn: Callable[[], object]) -> object | None:
        try:
            out = fn()
        except (WorkbenchError, OSError) as exc:
            self.notify(f"{what}: {exc}", severity="error")
            return None
        self._reload()
        return out

    def _reload(self) -> None:
        """Read the runs again now, redrawing every row (a rename or a note changed them)."""
        self._last_rows = None
        self.action_refresh()

    def action_log(self) -> None:
        name = self.selected_run()
        if name:
            self.app.push_screen(LogScreen(self.app.runs_dir / name))

    def action_resume(self) -> None:
        name = self.selected_run()
        info = self._runs.get(name or "")
        if info is None or info.status not in ("interrupted", "stale"):
            self.notify("resume: pick an interrupted run", severity="warning")
            return
        if self._op("resume", lambda: resume(self.app.runs_dir / info.name)):
            self.notify(f"resuming {info.name}")
            self.app.action_attach(self.app.runs_dir / info.name)

    def action_delete(self) -> None:
        """`d`: asks, then moves the run to the trash (`u` undoes, `T` lists the trash)."""
        name = self.selected_run()
        if not name:
            return
        if is_locked(self.app.runs_dir / name):  # refused anyway: say so without asking
            self.notify(f"delete: {name} is running: stop it first", severity="error")
            return

        def answered(yes: bool | None) -> None:
            if yes and self._op("delete", lambda: run_ops.trash(self.app.runs_dir, name)):
                self.notify(f"moved {name} to {run_ops.TRASH}/ (u: undo, T: the trash)")

        self.app.push_screen(
            Confirm(f"Delete {name}? It moves to {run_ops.TRASH}/ (u undoes)."), answered
        )

    def action_undo(self) -> None:
        """`u`: the most recently trashed run back, read from the trash folder on disk, so it
        works after a restart too."""
        items = run_ops.trashed(self.app.runs_dir)
        if not items:
            self.notify("nothing to undo: the trash is empty")
            return
        last = items[0]
        if self._op("undo", lambda: run_ops.restore(self.app.runs_dir, last.path, last.name)):
            self.notify(f"restored {last.name}")

    def action_trash(self) -> None:
        self.app.push_screen(TrashScreen())

    def action_archive(self) -> None:
        name = self.selected_run()
        if name and self._op("archive", lambda: run_ops.archive(self.app.runs_dir, name)):
            self.notify(f"archived {name} in {run_ops.ARCHIVE}/")

    def action_rename(self) -> None:
        name = self.selected_run()
        if not name:
            return

        def apply(new: str) -> None:  # raises to keep the dialog open with the reason
            if new.strip() and new.strip() != name:
                run_ops.rename(self.app.runs_dir, name, new.strip())

        def answered(new: str | None) -> None:
            if new is not None:
                self._reload()

        self.app.push_screen(Prompt(f"Rename {name} to:", name, apply=apply), answered)

    def action_note(self) -> None:
        name = self.selected_run()
        if not name:
            return
        run_dir = self.app.runs_dir / name
        note, tags = read_note(run_dir)
        text = " ".join([*(f"#{t}" for t in tags), note]).strip()

        def apply(value: str) -> None:  # a bad tag keeps the dialog open, saying why
            words = value.split()
            tags = [w[1:] for w in words if w.startswith("#") and len(w) > 1]
            note = " ".join(w for w in words if not w.startswith("#"))
            run_ops.write_note(run_dir, note, tags)

        def answered(value: str | None) -> None:
            if value is not None:
                self._reload()

        question = f"Note for {name} (#words are tags):"
        self.app.push_screen(Prompt(question, text, "#baseline seed 0 ...", apply), answered)

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
