"""The run lifecycle in the app, smoothed the way lazygit and k9s do it (issue 27, "Confusing"):
destructive keys ask, and only when they apply; the trash is on disk; the filter finds what a
row shows; the live screen never says something untrue. Each test failed before its change."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

from engine.records import run_ops
from engine.records.runs import LAUNCH_LOG, LAUNCH_PID, RunLock
from tests.conftest import home_rows, wait_for
from tests.test_tui import make_app
from workbench.tui.app import WorkbenchApp
from workbench.tui.dialogs import Confirm, Prompt
from workbench.tui.home import HomeScreen, run_label
from workbench.tui.launch import LaunchScreen
from workbench.tui.launcher import Launched
from workbench.tui.log_screen import LogScreen
from workbench.tui.run_screen import RunScreen
from workbench.tui.trash_screen import TrashScreen


async def select(pilot, home: HomeScreen, name: str) -> None:
    runs = home.query_one("#runs")
    runs.focus()
    runs.move_cursor(row=runs.get_row_index(name))
    await pilot.pause()


def messages(app: WorkbenchApp) -> list[str]:
    return [n.message for n in app._notifications]


def text(widget) -> str:
    return str(widget.render())


def copy_running(root: Path, src: str, dest: str) -> Path:
    """A copy of a finished static run whose events stop mid-run (no run_finished)."""
    events = (root / "runs" / src / "events.jsonl").read_text().splitlines()
    run = root / "runs" / dest
    run.mkdir()
    kept = [e for e in events if json.loads(e)["type"] != "run_finished"]
    (run / "events.jsonl").write_text("\n".join(kept) + "\n")
    return run


# ------------------------------------------------------------------ a: stop


def test_stop_asks_only_for_a_running_run_on_home_and_on_the_live_screen(static_dir, monkeypatch):
    stopped: list[str] = []
    monkeypatch.setattr("workbench.tui.app.stop", lambda d: stopped.append(d.name) or True)
    live = copy_running(static_dir, "alpha", "live")
    lock = RunLock(live).acquire()  # this process "writes" it: the lock is held
    app = make_app(static_dir)

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            home = await home_rows(pilot, 3)
            await select(pilot, home, "alpha")  # finished: nothing to ask about
            await pilot.press("s")
            await pilot.pause()
            assert app.screen is home
            assert "alpha is not running" in messages(app)
            await select(pilot, home, "live")
            await pilot.press("s")
            await wait_for(pilot, lambda: isinstance(app.screen, Confirm))
            await pilot.press("n")
            await wait_for(pilot, lambda: app.screen is home)
            assert stopped == []
            await pilot.press("s", "y")
            await wait_for(pilot, lambda: stopped == ["live"])

            app.action_attach(live)  # the live screen asks too
            await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
            await pilot.pause()
            await pilot.press("s")
            await wait_for(pilot, lambda: isinstance(app.screen, Confirm))
            assert stopped == ["live"]
            await pilot.press("y")
            await wait_for(pilot, lambda: stopped == ["live", "live"])
            assert isinstance(app.screen, RunScreen)

    try:
        asyncio.run(scenario())
    finally:
        lock.release()


# ------------------------------------------------------------------ b, d, g: filter, launch


def fake_launch(checked) -> Launched:
    """A launch whose process is this test: a folder with a live pid and no events yet."""
    run_dir = checked.run_dir
    run_dir.mkdir(parents=True)
    (run_dir / LAUNCH_LOG).write_text("")
    (run_dir / LAUNCH_PID).write_text(str(os.getpid()))
    return Launched(run_dir.name, run_dir, os.getpid(), run_dir / LAUNCH_LOG)


def test_filter_finds_tags_notes_and_status_and_a_launch_clears_it(static_dir, monkeypatch):
    monkeypatch.setattr("workbench.tui.app.launch", fake_launch)
    run_ops.write_note(static_dir / "runs" / "alpha", "lr sweep first try", ["baseline"])
    app = make_app(static_dir)

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            home = await home_rows(pilot, 2)
            runs = home.query_one("#runs")
            box = home.query_one("#filter")

            async def filtered(value: str, n: int) -> None:
                box.value = value
                await wait_for(pilot, lambda: runs.row_count == n and box.value == value)
                await pilot.pause(0.3)

            await pilot.press("slash")
            # each query changes the count, so a wait never passes on the last one's rows
            for query, n in (("#baseline", 1), ("finished", 2), ("sweep", 1), ("zzz", 0)):
                await filtered(query, n)  # a tag, the status, the note's text, nothing
                if n == 1:
                    assert str(runs.get_row_at(0)[0]).startswith("alpha")
            empty = home.query_one("#runs-empty")
            await wait_for(pilot, lambda: "no runs match 'zzz' (esc clears)" in text(empty))

            app.action_new_run(static_dir / "presets" / "tiny.toml")
            await wait_for(pilot, lambda: isinstance(app.screen, LaunchScreen))
            form = app.screen
            await wait_for(pilot, lambda: bool(form.query("#f-epochs")))
            form.query_one("#name").value = "fresh"
            form.query_one("#f-epochs").value = "7"
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
            run = app.screen
            info = run.query_one("#run-info")
            # true from the first frame: launching, the form's epochs, no unknown device
            await wait_for(pilot, lambda: "launching…" in text(info))
            assert "epoch 0/7" in text(info) and "on ?" not in text(info)
            assert "starting" not in text(info)
            assert box.value == "" and not box.display  # the filter went with the launch
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is home)
            await wait_for(pilot, lambda: runs.row_count == 3 and "fresh" in runs.rows)

            app.action_new_run(static_dir / "presets" / "tiny.toml")  # the form remembers
            await wait_for(pilot, lambda: isinstance(app.screen, LaunchScreen))
            again = app.screen
            await wait_for(pilot, lambda: bool(again.query("#f-epochs")))
            await pilot.pause()
            assert again.query_one("#f-epochs").value == "7"
            assert again.query_one("#name").value != "fresh"  # a new name, not the last one
            assert again.query_one("#launch-memory").display

    asyncio.run(scenario())


def test_a_notes_text_shows_in_the_detail_pane(static_dir):
    app = make_app(static_dir)

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            home = await home_rows(pilot, 2)
            await select(pilot, home, "alpha")
            await pilot.press("o")
            await wait_for(pilot, lambda: isinstance(app.screen, Prompt))
            app.screen.query_one("#prompt").value = "#baseline eps too large, redo"
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.screen is home)
            note = home.query_one("#run-note")
            await wait_for(pilot, lambda: "eps too large, redo" in text(note))
            assert note.display and "#baseline" in text(note)
            await select(pilot, home, "beta")  # a run without a note: the pane hides
            await wait_for(pilot, lambda: not note.display)

    asyncio.run(scenario())


# ------------------------------------------------------------------ c: delete, trash, undo


def test_delete_asks_and_the_trash_and_undo_survive_a_restart(static_dir):
    trash = static_dir / "runs" / run_ops.TRASH

    async def first() -> None:
        app = make_app(static_dir)
        async with app.run_test(size=(100, 30)) as pilot:
            home = await home_rows(pilot, 2)
            await select(pilot, home, "alpha")
            await pilot.press("d")
            await wait_for(pilot, lambda: isinstance(app.screen, Confirm))
            await pilot.press("n")
            await wait_for(pilot, lambda: app.screen is home)
            assert (static_dir / "runs" / "alpha").is_dir()  # declined: nothing moved
            await pilot.press("d", "y")
            await home_rows(pilot, 1)

    async def second() -> None:  # a new app: the undo comes from the trash folder
        app = make_app(static_dir)
        async with app.run_test(size=(100, 30)) as pilot:
            home = await home_rows(pilot, 1)
            await pilot.press("u")
            await home_rows(pilot, 2)
            assert (static_dir / "runs" / "alpha" / "events.jsonl").is_file()
            await select(pilot, home, "beta")
            await pilot.press("d", "y")
            await home_rows(pilot, 1)
            await pilot.press("T")
            await wait_for(pilot, lambda: isinstance(app.screen, TrashScreen))
            screen = app.screen
            table = screen.query_one("#trash")
            await wait_for(pilot, lambda: table.row_count == 1)
            assert str(table.get_row_at(0)[0]) == "beta"
            await pilot.press("u")  # restore
            await wait_for(pilot, lambda: table.row_count == 0)
            assert screen.query_one("#trash-empty").display
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is home)
            await home_rows(pilot, 2)
            await select(pilot, home, "beta")
            await pilot.press("d", "y")
            await home_rows(pilot, 1)
            await pilot.press("T")
            await wait_for(pilot, lambda: isinstance(app.screen, TrashScreen))
            table = app.screen.query_one("#trash")
            await wait_for(pilot, lambda: table.row_count == 1)
            await pilot.press("d")  # delete for good asks
            await wait_for(pilot, lambda: isinstance(app.screen, Confirm))
            await pilot.press("y")
            await wait_for(pilot, lambda: table.row_count == 0)
            assert not any(trash.iterdir())  # the folder and its sidecar are gone
            assert not (static_dir / "runs" / "beta").exists()

    asyncio.run(first())
    asyncio.run(second())


def test_the_trash_keeps_a_study_members_full_name_on_disk(tmp_path):
    member = tmp_path / "study1" / "m__s0"
    member.mkdir(parents=True)
    (member / "events.jsonl").write_text("{}\n")
    run_ops.trash(tmp_path, "study1/m__s0")
    (only,) = run_ops.trashed(tmp_path)
    assert only.name == "study1/m__s0" and abs(only.time - time.time()) < 60
    run_ops.restore(tmp_path, only.path, only.name)
    assert (member / "events.jsonl").read_text() == "{}\n"
    assert run_ops.trashed(tmp_path) == [] and not any((tmp_path / run_ops.TRASH).iterdir())


# ------------------------------------------------------------------ d: a stale run


def test_a_stale_run_says_stale_on_the_live_screen_and_its_log_opens(static_dir):
    ghost = copy_running(static_dir, "alpha", "ghost")  # running, but nobody holds its lock
    (ghost / LAUNCH_LOG).write_text("epoch 1 ok\nKilled\n")
    old = time.time() - 600
    os.utime(ghost / "events.jsonl", (old, old))
    app = make_app(static_dir)

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            home = await home_rows(pilot, 3)
            assert "stale" in str(home.query_one("#runs").get_row("ghost")[1])
            await select(pilot, home, "ghost")
            await pilot.press("a")
            await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
            run = app.screen
            await wait_for(pilot, lambda: "stale" in text(run.query_one("#run-info")))
            assert "waiting" not in text(run.query_one("#run-rate"))
            await pilot.press("l")
            await wait_for(pilot, lambda: isinstance(app.screen, LogScreen))
            about = app.screen.query_one("#log-about")
            await wait_for(pilot, lambda: "2 of 2 lines" in text(about))

    asyncio.run(scenario())


# ------------------------------------------------------------------ e: name before tags

NAME = "alpha-with-a-longish-name-s1"  # 28 characters: room for it at 100 columns


def test_home_keeps_the_name_whole_and_cuts_the_tags(static_dir):
    import shutil

    shutil.copytree(static_dir / "runs" / "alpha", static_dir / "runs" / NAME)
    tags = ["baseline", "seed0", "ablation", "important"]
    run_ops.write_note(static_dir / "runs" / NAME, "", tags)
    assert run_label(NAME, tags, 34) == NAME + " #bas…"
    assert run_label(NAME, tags, 29) == NAME  # no room for a tag: the name alone
    app = make_app(static_dir)

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            home = await home_rows(pilot, 3)
            cell = str(home.query_one("#runs").get_row(NAME)[0])
            assert cell.startswith(NAME + " #"), cell

    asyncio.run(scenario())


# ------------------------------------------------------------------ f: dialogs and the form


def test_a_rejected_rename_keeps_its_dialog_open_with_the_reason(static_dir):
    app = make_app(static_dir)

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            home = await home_rows(pilot, 2)
            await select(pilot, home, "alpha")
            await pilot.press("f2")
            await wait_for(pilot, lambda: isinstance(app.screen, Prompt))
            dialog = app.screen
            dialog.query_one("#prompt").value = "beta"  # taken
            await pilot.press("enter")
            await pilot.pause(0.3)
            assert app.screen is dialog
            error = dialog.query_one("#prompt-error")
            assert error.display and "exists" in text(error)
            assert dialog.query_one("#prompt").value == "beta"  # kept, to be fixed
            dialog.query_one("#prompt").value = "alpha-2"
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.screen is home)
            assert (static_dir / "runs" / "alpha-2").is_dir()

    asyncio.run(scenario())


def test_the_form_lists_every_field_error_in_its_own_terms(static_dir):
    app = make_app(static_dir)

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await home_rows(pilot, 2)
            app.action_new_run(static_dir / "presets" / "tiny.toml")
            await wait_for(pilot, lambda: isinstance(app.screen, LaunchScreen))
            form = app.screen
            await wait_for(pilot, lambda: bool(form.query("#f-epochs")))
            form.query_one("#name").value = "no spaces please"
            form.query_one("#f-epochs").value = "three"
            form.query_one("#f-device").value = "gpu"
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: bool(form.errors))
            assert app.screen is form
            assert len(form.errors) == 3, form.errors
            shown = text(form.query_one("#launch-error"))
            assert "run name:" in shown and "epochs: given 'three'" in shown
            assert "device: given 'gpu': give auto, cpu, cuda or cuda:N" in shown
            assert "--set" not in shown and "--name" not in shown and "^(" not in shown

    asyncio.run(scenario())
