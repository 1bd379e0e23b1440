"""The Textual app, driven with Pilot: a real run launched from the form, and screen snapshots."""

from __future__ import annotations

import asyncio
import json
import math
import time
from pathlib import Path

import pytest
import torch

from engine import checkpoint_io as ckpt
from engine.eval import WORST
from engine.models import build
from engine.spec.preset_files import load_preset
from tests.conftest import TINY_PRESET, wait_for, write_preset
from workbench.tui.app import WorkbenchApp
from workbench.tui.compare import CompareScreen
from workbench.tui.home import HomeScreen
from workbench.tui.inspect_screen import InspectScreen
from workbench.tui.launch import LaunchScreen
from workbench.tui.run_screen import RunScreen

SIZES = [(100, 30), (80, 24)]


def test_launch_watch_stop_inspect_and_evaluate_a_real_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    presets = tmp_path / "presets"
    presets.mkdir()
    write_preset(presets / "tiny.toml", TINY_PRESET)
    app = WorkbenchApp(Path("runs"), [presets], eval_samples=64)

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            assert isinstance(app.screen, HomeScreen)
            await pilot.press("n")
            await wait_for(pilot, lambda: isinstance(app.screen, LaunchScreen))
            app.screen.query_one("#name").value = "from-form"
            app.screen.query_one("#f-epochs").value = "500"
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
            run = app.screen
            # real events from the detached process reach the plots and the progress bar
            await wait_for(pilot, lambda: len(run.series.state.epochs) >= 1 and run.series.loss)
            await wait_for(pilot, lambda: run.query_one("#bar").progress > 0 and not run.dirty)
            assert run.series.state.status == "running"
            assert all(math.isfinite(v) for v in run.series.loss)
            assert run.query_one("#bar").progress > 0
            assert run.query_one("#p-loss").plt is not None
            await pilot.press("s", "y")  # stop asks first on the live screen too
            await wait_for(pilot, lambda: run.series.state.status == "interrupted")
            await pilot.press("escape")
            home = app.screen
            assert isinstance(home, HomeScreen)
            home.action_refresh()
            runs = home.query_one("#runs")
            ckpts = home.query_one("#ckpts")
            await wait_for(
                pilot,
                lambda: (
                    runs.row_count == 1
                    and "interrupted" in str(runs.get_row("from-form")[1])
                    and ckpts.row_count >= 2
                ),
            )
            names = [ckpts.get_row_at(i)[0] for i in range(ckpts.row_count)]
            assert "best.safetensors" in names and "last.safetensors" in names
            home.action_inspect()
            await wait_for(pilot, lambda: isinstance(app.screen, InspectScreen))
            inspector = app.screen
            await pilot.press("k")  # the quick suite, in a worker
            table = inspector.query_one("#eval-table")

            def has_worst_case() -> bool:
                return any(table.get_row_at(i)[0] == WORST for i in range(table.row_count))

            await wait_for(pilot, has_worst_case)
            rows = {
                table.get_row_at(i)[0]: float(table.get_row_at(i)[1])
                for i in range(table.row_count)
            }
            assert set(rows) == {"clean", "PGD-2", WORST}
            assert rows[WORST] <= rows["PGD-2"] <= rows["clean"]

    asyncio.run(scenario())
    run_dir = tmp_path / "runs" / "from-form"
    last = json.loads((run_dir / "events.jsonl").read_text().splitlines()[-1])
    assert last["type"] == "eval_result"
    assert (run_dir / "output.log").exists()


# ------------------------------------------------------------------ snapshots


async def home_filled(pilot) -> None:
    """Home once its worker has listed both static runs and the first one's checkpoints."""
    home = pilot.app.screen
    await wait_for(pilot, lambda: isinstance(home, HomeScreen) and bool(home.query("#ckpts")))
    await wait_for(
        pilot,
        lambda: home.query_one("#runs").row_count == 2 and home.query_one("#ckpts").row_count > 0,
    )
    await pilot.pause()


async def open_compare(pilot):
    """Compare once its worker has read the selected runs' events."""
    pilot.app.action_compare()
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, CompareScreen))
    await wait_for(pilot, lambda: len(pilot.app.screen.series) == 2)
    await pilot.pause()
    return pilot.app.screen


def static_runs(root: Path) -> Path:
    """Two finished runs with fixed events and checkpoints, so screens render identically."""
    presets = root / "presets"
    presets.mkdir(parents=True, exist_ok=True)
    path = write_preset(presets / "tiny.toml", TINY_PRESET)
    for name, method, scale in (("alpha", "atblr", 1.0), ("beta", "madry", 1.3)):
        sets = ["method.name=atblr", "model.head=gaussian"] if method == "atblr" else []
        cfg = load_preset(path, [*sets, "train.epochs=3"])
        run = root / "runs" / name
        (run / "checkpoints").mkdir(parents=True, exist_ok=True)
        events = [
            {
                "type": "run_started",
                "time": 1000.0,
                "config": cfg.to_dict(),
                "panels": cfg.method.panels.to_json(),  # as the trainer records it
                "device": "cpu",
                "steps_per_epoch": 8,
                "train_size": 512,
                "test_size": 256,
            }
        ]
        for step in range(1, 25):
            parts = {"ce_adv": scale * 2.3 / (1 + step / 6)}
            if method == "atblr":
                parts.update(
                    {
                        "lkd_clean": 9.0 / (1 + step / 4),
                        "lkd_adv": 9.0 / (1 + step / 4) * (1 + step / 12),
                    }
                )
            events.append(
                {
                    "type": "step",
                    "time": 1000.0 + step,
                    "epoch": 1 + (step - 1) // 8,
                    "step": step,
                    "batch": 1 + (step - 1) % 8,
                    "batches": 8,
                    "loss": scale * 2.4 / (1 + step / 5),
                    "parts": parts,
                    "lr": 0.002,
                    "samples_per_s": 640.0,
                }
            )
            if step % 8 == 0:
                e = step // 8
                events.append(
                    {
                        "type": "epoch_end",
                        "time": 1000.0 + step,
                        "epoch": e,
                        "clean_acc": 60.0 + 10 * e / scale,
                        "robust_acc": 20.0 + 8 * e,
                        "best_robust_acc": 20.0 + 8 * e,
                        "seconds": 8.0,
                        "train": {"loss": 1.0 / e},
                    }
                )
        events.append({"type": "run_finished", "time": 1030.0, "status": "finished", "epoch": 3})
        (run / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
        (run / "config.toml").write_text(cfg.to_toml())
        torch.manual_seed(0)
        model = build(cfg)
        history = [
            {
                "epoch": e,
                "clean_acc": 60.0 + 10 * e,
                "robust_acc": 20.0 + 8 * e,
                "seconds": 8.0,
                "train": {"loss": 1.0 / e},
            }
            for e in (1, 2, 3)
        ]
        meta = ckpt.base_metadata(cfg, 3, {"best_robust_acc": 44.0, "history": history}, "weights")
        meta.update(created="2026-01-01T00:00:00+0000", torch_version="2.x", device="cpu")
        ckpt.save(run / "best.safetensors", ckpt.pack_model(model), meta)
    return root


def make_app(root: Path) -> WorkbenchApp:
    return WorkbenchApp(Path("runs"), [root / "presets"])


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot_home(snap_compare, static_dir, size):
    async def settle(pilot):
        await home_filled(pilot)

    assert snap_compare(make_app(static_dir), terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot_launch_form(snap_compare, static_dir, size):
    async def open_form(pilot):
        await home_filled(pilot)
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, LaunchScreen))
        await wait_for(pilot, lambda: bool(pilot.app.screen.query("#name")))
        for widget in pilot.app.screen.query("Input"):
            widget.cursor_blink = False  # a blinking cursor would make the snapshot flaky
        pilot.app.screen.query_one("#name").value = "tiny-run"
        await pilot.pause()

    assert snap_compare(make_app(static_dir), terminal_size=size, run_before=open_form)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot_run_screen(snap_compare, static_dir, size):
    async def attach(pilot):
        pilot.app.action_attach(Path("runs/alpha"))
        await wait_for(
            pilot,
            lambda: (
                getattr(pilot.app.screen, "series", None) is not None
                and pilot.app.screen.series.state.status == "finished"
            ),
        )
        await wait_for(pilot, lambda: not pilot.app.screen.dirty)  # the plots are drawn
        await pilot.pause()

    assert snap_compare(make_app(static_dir), terminal_size=size, run_before=attach)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot_inspector(snap_compare, static_dir, size):
    async def inspect(pilot):
        await open_inspector(pilot)

    assert snap_compare(make_app(static_dir), terminal_size=size, run_before=inspect)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot_compare(snap_compare, static_dir, size):
    async def compare(pilot):
        await open_compare(pilot)

    assert snap_compare(make_app(static_dir), terminal_size=size, run_before=compare)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot_gallery(snap_compare, static_dir, size):
    async def gallery(pilot):
        pilot.app.action_gallery(Path("runs/alpha/best.safetensors"))
        await wait_for(pilot, lambda: bool(getattr(pilot.app.screen, "rows", None)))
        await pilot.pause()

    assert snap_compare(make_app(static_dir), terminal_size=size, run_before=gallery)


# ------------------------------------------------------------------ evaluations in the inspector

ALPHA = Path("runs/alpha/best.safetensors")


async def open_inspector(pilot) -> InspectScreen:
    """The inspector on the alpha checkpoint, once it has composed and filled its tables."""
    pilot.app.action_inspect(ALPHA)
    await wait_for(
        pilot,
        lambda: isinstance(pilot.app.screen, InspectScreen) and pilot.app.screen.query("#evals"),
    )
    await pilot.pause()
    return pilot.app.screen


def cells(table, column: int) -> list[str]:
    return [str(table.get_row_at(i)[column]) for i in range(table.row_count)]


def test_inspector_lists_a_saved_evaluation_and_opens_it(static_dir):
    from engine.eval.evaluate import evaluate_checkpoint

    doc = evaluate_checkpoint(ALPHA, "quick", samples=20, device="cpu")
    clean = f"{doc['accuracy']['clean']:.2f}"
    app = WorkbenchApp(Path("runs"), [static_dir / "presets"], eval_samples=20)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_inspector(pilot)
            evals = screen.query_one("#evals")
            assert evals.row_count == 1
            row = evals.get_row_at(0)
            assert row[1:3] == ["quick", "20"] and row[5] == clean
            # the model checks pass (a deterministic forward, live gradients); the suite's own
            # checks are skipped at 20 examples; nothing warns
            assert "PASS" in row[6] and "SKIP" in row[6] and "WARN" not in row[6]
            assert "1 saved" in str(screen.query_one("#evals-hint").render())
            screen.query_one("#tabs").active = "tab-6"
            await pilot.pause()
            evals.focus()
            await pilot.press("enter")  # opens it in the Evaluate tab's widgets
            await pilot.pause()
            assert screen.query_one("#tabs").active == "tab-5"
            table = screen.query_one("#eval-table")
            assert cells(table, 0) == list(doc["accuracy"])
            assert cells(table, 1)[1] == clean  # clean comes second, after the headline
            assert Path(doc["saved"]).name in str(screen.query_one("#eval-sanity").render())

    asyncio.run(scenario())


def test_inspector_without_evaluations_shows_a_hint(static_dir):
    async def scenario() -> None:
        app = make_app(static_dir)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_inspector(pilot)
            assert screen.query_one("#evals").row_count == 0
            assert "no evaluations yet" in str(screen.query_one("#evals-hint").render())

    asyncio.run(scenario())


def test_blackbox_suite_without_a_source_reports_the_error_in_red(static_dir):
    app = WorkbenchApp(Path("runs"), [static_dir / "presets"], eval_samples=20)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_inspector(pilot)
            screen.query_one("#tabs").active = "tab-5"
            await pilot.pause()
            screen.query_one("#eval-suite").value = "blackbox"
            assert screen.query_one("#eval-source").value == ""
            await pilot.pause()
            assert "black-box" in str(screen.query_one("#eval-about").render())
            await pilot.click("#eval-run")
            status = screen.query_one("#eval-status")
            await wait_for(pilot, lambda: "--source" in str(status.content))
            assert str(status.content).startswith("[red]")
            assert "\n" not in str(status.render())  # one line
            assert not screen.running and not screen.query_one("#eval-run").disabled
            assert screen.query_one("#evals").row_count == 0  # nothing was saved
            assert isinstance(app.screen, InspectScreen)

    asyncio.run(scenario())


def test_quick_suite_from_the_inspector_adds_an_evaluation(static_dir):
    app = WorkbenchApp(Path("runs"), [static_dir / "presets"], eval_samples=20)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_inspector(pilot)
            evals = screen.query_one("#evals")
            assert evals.row_count == 0
            await pilot.press("k")
            assert screen.query_one("#eval-suite").value == "quick"
            await wait_for(pilot, lambda: evals.row_count == 1)
            assert not screen.running
            assert evals.get_row_at(0)[1:3] == ["quick", "20"]
            assert cells(screen.query_one("#eval-table"), 0) == [WORST, "clean", "PGD-2"]
            sanity = str(screen.query_one("#eval-sanity").render())
            evals = (static_dir / "runs/alpha/eval").glob("quick-*.json")
            saved = sorted(p for p in evals if ".card." not in p.name)  # not its model card
            assert len(saved) == 1 and saved[0].name in sanity
            assert "done" in str(screen.query_one("#eval-status").render())
            assert screen.query_one("#eval-bar").percentage == 1.0
            assert "1 saved" in str(screen.query_one("#evals-hint").render())

    asyncio.run(scenario())


def test_cancelling_an_evaluation_stops_its_worker_and_saves_nothing(static_dir):
    app = WorkbenchApp(Path("runs"), [static_dir / "presets"], eval_samples=0)
    batches: list[str] = []

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_inspector(pilot)
            original = screen._progress

            def progress(name: str, *a: object) -> None:
                batches.append(name)
                original(name, *a)
                if len(batches) == 1:  # x's action while the worker waits on its first batch
                    screen.action_cancel_eval()  # (early stop breaks this weak model in a blink)

            screen._progress = progress
            await pilot.press("e")  # the paper suite on the whole test split
            await wait_for(pilot, lambda: len(batches) >= 1)
            status = screen.query_one("#eval-status")
            await wait_for(pilot, lambda: "cancelled" in str(status.render()))
            await wait_for(pilot, lambda: not [w for w in app.workers if w.group == "eval"])
            assert not screen.running and not screen.query_one("#eval-run").disabled
            assert "PGD-100" not in batches  # it stopped early, not after the whole suite
            assert not list((static_dir / "runs/alpha/eval").glob("paper-*.json"))

    asyncio.run(scenario())


def test_resize_and_empty_state_do_not_crash(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = WorkbenchApp(Path("runs"), [tmp_path / "none"])

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            empty = app.screen.query_one("#runs-empty")
            assert empty.display and "press n" in str(empty.render())
            for size in ((40, 12), (160, 50), (80, 24)):
                await pilot.resize_terminal(*size)
                await pilot.pause()
            assert isinstance(app.screen, HomeScreen)

    asyncio.run(scenario())


def test_quitting_the_app_leaves_the_run_training_and_reopening_attaches(tmp_path, monkeypatch):
    from workbench.tui.launcher import run_pid, stop

    monkeypatch.chdir(tmp_path)
    presets = tmp_path / "presets"
    presets.mkdir()
    write_preset(presets / "tiny.toml", TINY_PRESET)
    events = tmp_path / "runs" / "detached" / "events.jsonl"

    async def start_and_quit() -> None:
        app = WorkbenchApp(Path("runs"), [presets])
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("n")
            app.screen.query_one("#name").value = "detached"
            app.screen.query_one("#f-epochs").value = "500"
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: events.exists() and '"step"' in events.read_text())
        # the app is gone here

    asyncio.run(start_and_quit())
    try:
        size = events.stat().st_size
        deadline = time.monotonic() + 60
        while events.stat().st_size == size and time.monotonic() < deadline:
            time.sleep(0.2)
        assert events.stat().st_size > size, "the run stopped when the app quit"
        assert run_pid(events.parent) is not None

        async def reopen() -> None:
            app = WorkbenchApp(Path("runs"), [presets])
            async with app.run_test(size=(100, 30)) as pilot:
                home = app.screen
                await wait_for(pilot, lambda: home.query_one("#runs").row_count == 1)
                status = str(home.query_one("#runs").get_row("detached")[1])
                assert any(p in status for p in ("training", "evaluating", "saving")), status
                await pilot.press("tab", "a")
                await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
                screen = app.screen
                await wait_for(pilot, lambda: len(screen.series.loss) > 0)
                assert screen.series.state.status == "running"

        asyncio.run(reopen())
    finally:
        stop(events.parent)
        deadline = time.monotonic() + 60
        while run_pid(events.parent) is not None and time.monotonic() < deadline:
            time.sleep(0.2)
    last = json.loads(events.read_text().splitlines()[-1])
    assert last["type"] == "run_finished" and last["status"] == "interrupted"


def test_a_launch_that_fails_validation_is_reported_not_left_starting(tmp_path, monkeypatch):
    from engine.records.run_request import RunRequest
    from workbench.tui.launcher import last_output, launch, launch_state

    monkeypatch.chdir(tmp_path)
    preset = write_preset(
        tmp_path / "bad.toml",
        TINY_PRESET.replace(
            'dataset = "synthetic"', 'dataset = "mnist"\nroot = "nodata"\ndownload = false'
        ),
    )
    launched = launch(RunRequest(str(preset), name="nodata", runs_dir=Path("runs")).preflight())
    deadline = time.monotonic() + 60
    while launch_state(launched.run_dir) == "starting" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert launch_state(launched.run_dir) == "failed"
    assert "mnist-5k" in last_output(launched.run_dir)
    assert not (launched.run_dir / "events.jsonl").exists()


def test_keys_help_tab_and_q_mean_the_same_everywhere(static_dir, monkeypatch):
    """? lists the screen's keys, Tab reaches the runs table, q goes back (quits on Home)."""
    from workbench.tui.help_screen import HelpScreen
    from workbench.tui.keys import KEYS

    monkeypatch.chdir(static_dir)
    app = WorkbenchApp(Path("runs"), [static_dir / "presets"])

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            home = app.screen
            assert isinstance(home, HomeScreen)
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            await pilot.pause()
            listed = screen_text(app)  # every key in view at 80x24, nothing to scroll to
            assert all(label in listed for _, _, label in KEYS["home"])
            assert "Every action by name (palette)" in listed
            await pilot.press("escape")
            assert app.screen is home
            assert app.focused is not None and app.focused.id == "presets"
            await pilot.press("tab")
            assert app.focused.id == "runs"
            await pilot.press("shift+tab")
            assert app.focused.id == "presets"
            runs = home.query_one("#runs")
            everything = runs.row_count
            await pilot.press("slash")
            await pilot.press(*"alph")  # the filter narrows the runs as you type
            await wait_for(pilot, lambda: runs.row_count == 1, timeout=10)
            assert everything > 1 and str(runs.get_row_at(0)[0]) == "alpha"
            assert home.query_one("#presets").row_count == 0
            await pilot.press("escape")
            await wait_for(pilot, lambda: runs.row_count == everything, timeout=10)
            assert home.query_one("#presets").row_count > 0
            await pilot.press("escape")  # a stray escape on Home never closes the app
            assert app.screen is home and app.is_running
            await pilot.press("t")
            await pilot.press("q")  # back, not quit
            assert app.screen is home and app.is_running
            await pilot.press("q")  # on Home: quit
            await wait_for(pilot, lambda: not app.is_running, timeout=10)

    asyncio.run(scenario())


def test_the_form_refuses_a_device_this_machine_lacks_and_a_bad_preset_does_not_crash(
    static_dir, monkeypatch
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    write_preset(static_dir / "presets" / "broken.toml", 'name = "broken"\n[train]\nepochz = 1\n')
    app = WorkbenchApp(Path("runs"), [static_dir / "presets"])

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            home = app.screen
            app.action_new_run(static_dir / "presets" / "broken.toml")  # unknown key: refused
            await wait_for(pilot, lambda: app._opening is None)  # the worker read it
            await pilot.pause()
            assert app.screen is home and app.is_running
            assert any("epochz" in n.message for n in app._notifications)
            app.action_new_run(static_dir / "presets" / "tiny.toml")
            await wait_for(pilot, lambda: isinstance(app.screen, LaunchScreen))
            form = app.screen
            await wait_for(pilot, lambda: bool(form.query("#f-epochs")))
            assert form.query_one("#f-epochs").value == ""  # empty means the preset's value
            assert "default: 2" in str(form.query_one("#f-epochs").placeholder)
            form.query_one("#f-device").value = "cuda:3"
            await pilot.press("ctrl+s")
            error = form.query_one("#launch-error")
            await wait_for(pilot, lambda: "CUDA is not available" in str(error.render()))
            assert app.screen is form  # still open, saying why
            form.query_one("#f-device").value = ""
            form.query_one("#more").value = "data.train_limitz=5"
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: "train_limitz" in str(error.render()))
            assert app.screen is form
            assert not list(Path("runs").glob("tiny-*"))  # nothing was launched

    asyncio.run(scenario())


def snapshot_tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_delete_then_undo_restores_a_run_byte_for_byte_and_rename_and_tags_work(static_dir):
    from workbench.tui.dialogs import Confirm, Prompt

    app = WorkbenchApp(Path("runs"), [static_dir / "presets"])
    alpha = static_dir / "runs" / "alpha"
    before = snapshot_tree(alpha)

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            home = app.screen
            runs = home.query_one("#runs")
            await wait_for(pilot, lambda: runs.row_count == 2)
            runs.move_cursor(row=runs.get_row_index("alpha"))
            await pilot.press("s")  # a finished run: nothing to stop, nothing to ask
            assert app.screen is home
            assert "alpha is not running" in [n.message for n in app._notifications]
            await pilot.press("d")  # delete asks first
            assert isinstance(app.screen, Confirm)
            await pilot.press("y")
            await wait_for(pilot, lambda: runs.row_count == 1)
            assert not alpha.exists() and list((static_dir / "runs" / ".trash").iterdir())
            await pilot.press("u")
            await wait_for(pilot, lambda: runs.row_count == 2)
            assert snapshot_tree(alpha) == before  # every file back, byte for byte
            runs.move_cursor(row=runs.get_row_index("alpha"))
            await pilot.press("o")
            assert isinstance(app.screen, Prompt)
            app.screen.query_one("#prompt").value = "#baseline first try"
            await pilot.press("enter")
            await wait_for(
                pilot,
                lambda: "#baseline" in str(runs.get_row_at(0)[0]) + str(runs.get_row_at(1)[0]),
            )
            assert json.loads((alpha / "notes.json").read_text()) == {
                "note": "first try",
                "tags": ["baseline"],
            }
            runs.move_cursor(row=runs.get_row_index("alpha"))
            await pilot.press("f2")
            app.screen.query_one("#prompt").value = "alpha-renamed"
            await pilot.press("enter")
            await wait_for(pilot, lambda: (static_dir / "runs" / "alpha-renamed").is_dir())
            assert not alpha.exists()

    asyncio.run(scenario())


def test_zoom_cycles_one_plot_at_a_time_and_ticks_match_the_data(static_dir):
    import plotext

    from workbench.tui.charts import draw

    plotext.clear_figure()
    draw(plotext, "acc", [("robust", [1.0, 2.0, 3.0], [4.6, 5.0, 6.0], "red")], True, 12, 60)
    text = plotext.build()
    assert "4.6" in text and "6" in text and "12.4" not in text  # ticks at the data's own range
    plotext.clear_figure()
    draw(plotext, "acc", [("clean", [1.0], [97.0], "blue")], True, 12, 60)
    assert "●" in plotext.build()  # a lone point is a visible dot

    app = WorkbenchApp(Path("runs"), [static_dir / "presets"])

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            app.action_attach(Path("runs/alpha"))
            await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
            screen = app.screen
            await wait_for(pilot, lambda: bool(screen.query("#p-own-0")))  # run_started read
            ids = ["p-loss", "p-own-0", "p-acc", "p-lr"]  # alpha's method's own plot: L_lkd

            def shown() -> list[str]:
                return [i for i in ids if screen.query_one(f"#{i}").display]

            assert shown() == ids
            for want in ids:
                await pilot.press("z")
                assert shown() == [want]
            await pilot.press("z")
            assert shown() == ids

    asyncio.run(scenario())


def screen_text(app: WorkbenchApp) -> str:
    """What the terminal shows, as plain text (from the screenshot's SVG text runs)."""
    import html
    import re

    svg = app.export_screenshot()
    text = html.unescape(" ".join(re.findall(r"<text [^>]*>(.*?)</text>", svg)))
    return text.replace("\xa0", " ")


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_home_always_shows_best_robust_accuracy_and_the_quit_key(static_dir, size):
    app = make_app(static_dir)

    async def scenario() -> None:
        async with app.run_test(size=size) as pilot:
            await home_filled(pilot)
            text = screen_text(app)
            assert "best robust %" in text and "44.00" in text
            assert "Quit" in text and "Help" in text

    asyncio.run(scenario())


def test_compare_shows_only_the_settings_that_differ_and_exports_every_point(static_dir):
    from engine.records.run_diff import differing

    configs = {
        "a": {"train": {"epochs": 3, "lr": 0.1}, "method": {"name": "atblr", "lambda": 0.1}},
        "b": {"train": {"epochs": 3, "lr": 0.2}, "method": {"name": "madry"}},
    }
    assert differing(configs) == [
        ("method.lambda", [0.1, "(unset)"]),
        ("method.name", ["atblr", "madry"]),
        ("train.lr", [0.1, 0.2]),
    ]
    assert differing({"a": configs["a"]}) == []  # one run: nothing to differ from

    app = make_app(static_dir)
    out = static_dir / "series.csv"

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await open_compare(pilot)
            await pilot.press("f")
            diff = screen.query_one("#diff")
            assert screen.query_one("#compare-view").current == "diff"
            keys = cells(diff, 0)
            assert "method.name" in keys and "model.head" in keys
            assert "train.epochs" not in keys and "data.dataset" not in keys  # the same in both
            row = diff.get_row_at(keys.index("method.name"))
            assert sorted(row[1:]) == ["atblr", "madry"]
            await pilot.press("f")
            assert screen.query_one("#compare-view").current == "chart"
            await pilot.press("m", "m")  # robust_acc -> clean_acc -> loss
            await pilot.press("w")
            app.screen.query_one("#prompt").value = str(out)
            await pilot.press("enter")
            await wait_for(pilot, lambda: out.exists())

    asyncio.run(scenario())
    import csv

    rows = list(csv.DictReader(out.open()))
    for name in ("alpha", "beta"):
        events = [
            json.loads(line)
            for line in (static_dir / "runs" / name / "events.jsonl").read_text().splitlines()
        ]
        losses = [e["loss"] for e in events if e["type"] == "step"]
        mine = [r for r in rows if r["run"] == name]
        assert [float(r["value"]) for r in mine] == losses  # every step, raw, not downsampled
        assert {r["metric"] for r in mine} == {"loss"} and {r["axis"] for r in mine} == {"step"}
        assert float(mine[0]["plotted_ema"]) == losses[0]  # the EMA the plot draws starts there


def test_the_filter_narrows_the_saved_evaluations(static_dir):
    from engine.eval.evaluate import evaluate_checkpoint

    evaluate_checkpoint(ALPHA, "quick", samples=8, device="cpu")
    doc = evaluate_checkpoint(ALPHA, "atblr_cifar", samples=4, device="cpu")
    app = make_app(static_dir)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_inspector(pilot)
            evals = screen.query_one("#evals")
            assert evals.row_count == 2
            await pilot.press("slash")
            assert screen.query_one("#tabs").active == "tab-6"
            await pilot.press(*"atblr")
            assert evals.row_count == 1 and cells(evals, 1) == ["atblr_cifar"]
            assert "1 of 2" in str(screen.query_one("#evals-hint").render())
            await pilot.press("escape")
            assert evals.row_count == 2
            assert doc["suite"] == "atblr_cifar"

    asyncio.run(scenario())


def test_full_size_gallery_keeps_every_pixel_column_and_metrics_has_a_column_per_mean(static_dir):
    from rich.console import Console

    from workbench.checkpoint_views import history_columns, history_rows

    metrics = {"history": [{"epoch": 1, "train": {"lkd_adv": 8.25, "loss": 1.5}}, {"epoch": 2}]}
    assert history_columns(metrics)[4:] == ("loss", "lkd_adv")  # the total first
    assert history_rows(metrics)[1][4:] == ("-", "-")  # an epoch without means says so
    app = make_app(static_dir)

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            pilot.app.action_gallery(ALPHA)
            await wait_for(pilot, lambda: bool(getattr(pilot.app.screen, "rows", None)))
            await pilot.press("z")
            await pilot.pause()
            gallery = pilot.app.screen.query_one("#gallery")
            width = int(gallery.styles.width.value)
            assert width > 100  # wider than the terminal: the pane scrolls instead
            console = Console(width=width, record=True)
            console.print(gallery.content)
            text = console.export_text()
            assert "…" not in text  # no image cut short
            rows = [line for line in text.splitlines() if "▀" in line]
            assert max(line.count("▀") + line.count("▄") for line in rows) >= 28 * 3

    asyncio.run(scenario())


def test_shared_formatting_never_calls_skipped_checks_a_pass_and_fits_names():
    from workbench.views import fit, num, sanity_summary, short

    assert sanity_summary({"checks": 3, "warnings": 0, "skipped": 3}) == "SKIP"
    assert sanity_summary({"checks": 3, "warnings": 1, "skipped": 2}) == "1 WARN"
    assert sanity_summary({"checks": 3, "warnings": 0, "skipped": 1}) == "PASS, 1 SKIP"
    assert sanity_summary({"checks": 2, "warnings": 0, "skipped": 0}) == "PASS"
    assert sanity_summary({"checks": 0}) == "-"
    assert num(5.999999865889549) == "6.00" and short(0.33333333) == "0.3333"
    assert num(None) == "-" and short(None) == "-"
    study = fit("atblr_vs_madry_mnist5k/atblr__s0", 16)
    assert len(study) == 16 and study.endswith("…/atblr__s0")
    a, b = fit("cifar100_resnet32_atblr", 19), fit("cifar10_resnet32_atblr", 19)
    assert a != b and a.startswith("cifar100_") and a.endswith("_atblr") and len(a) == 19
    assert fit("demo", 19) == "demo"


def test_a_study_member_can_be_trashed_and_restored_but_not_renamed_out_of_its_study(tmp_path):
    from engine.records import run_ops
    from engine.spec.errors import WorkbenchError

    member = tmp_path / "study1" / "m__s0"
    member.mkdir(parents=True)
    (member / "events.jsonl").write_text("{}\n")
    for op in (
        lambda: run_ops.rename(tmp_path, "study1/m__s0", "elsewhere"),
        lambda: run_ops.archive(tmp_path, "study1/m__s0"),
    ):
        with pytest.raises(WorkbenchError, match="study member"):
            op()
        assert member.is_dir() and not (tmp_path / "elsewhere").exists()
    where = run_ops.trash(tmp_path, "study1/m__s0")
    assert not member.exists() and where.parent == tmp_path / run_ops.TRASH
    run_ops.restore(tmp_path, where, "study1/m__s0")
    assert (member / "events.jsonl").read_text() == "{}\n"


def test_escape_in_a_filter_clears_it_and_stays_on_the_screen(static_dir):
    from workbench.tui.log_screen import LogScreen

    (static_dir / "runs" / "alpha" / "output.log").write_text("epoch 1 ok\nepoch 2 nan\nbye\n")
    app = make_app(static_dir)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            app.push_screen(LogScreen(Path("runs/alpha")))
            await wait_for(
                pilot, lambda: isinstance(app.screen, LogScreen) and app.screen.query("#log-about")
            )
            screen = app.screen
            about = screen.query_one("#log-about")
            await wait_for(pilot, lambda: "3 of 3" in str(about.render()))
            await pilot.press("slash", *"nan")
            await wait_for(pilot, lambda: "1 of 3" in str(about.render()))
            await pilot.press("escape")  # clears the search, does not leave the log
            await wait_for(pilot, lambda: "3 of 3" in str(about.render()))
            assert app.screen is screen and not screen.query_one("#log-search").display
            await pilot.press("escape")  # now it goes back
            await wait_for(pilot, lambda: app.screen is not screen)

    asyncio.run(scenario())
