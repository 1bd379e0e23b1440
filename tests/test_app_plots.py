"""The live screen's plots and the help overlay as a user at 80x24 reads them (issue 27):
legends under the plots with each series' last raw value and "(EMA)" where smoothed, step
axes ticked at epoch boundaries, the final test numbers, help and palette in words."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.test_tui import screen_text
from workbench.tui.app import WorkbenchApp
from workbench.tui.help_screen import HelpScreen
from workbench.tui.home import HomeScreen
from workbench.tui.keys import KEYS
from workbench.tui.run_screen import RunScreen

PANELS = {
    "series": [{"key": "L_lkd", "label": "L_lkd", "smooth": True}],
    "plots": [{"title": "L_lkd per step", "keys": ["L_lkd"]}],
}
CONFIG = {"name": "legend", "method": {"name": "atblr"}, "train": {"epochs": 3}}
TEST = {
    "split": "test",
    "clean_acc": 11.75,
    "clean_n": 400,
    "clean_interval": [9.1, 15.0],
    "robust_acc": 47.5,
    "robust_n": 400,
    "robust_interval": [42.6, 52.4],
    "checkpoint": "runs/legend/best.safetensors",
    "epoch": 2,
}


def write_run(root: Path) -> Path:
    """A finished 3-epoch run of 20 steps an epoch, a step event every 10 steps; L_lkd rises
    to 2.64, so its EMA lags well below the last value."""
    run = root / "runs" / "legend"
    run.mkdir(parents=True)
    events: list[dict] = [
        {"type": "run_started", "time": 0.0, "config": CONFIG, "panels": PANELS}
        | {"steps_per_epoch": 20, "device": "cpu"}
    ]
    for i, step in enumerate(range(10, 61, 10)):
        parts = {"ce_clean": 1.0 + i / 10, "ce_adv": 2.0 + i / 10, "L_lkd": 1.0 + i * 0.328}
        events.append(
            {"type": "step", "time": float(step), "step": step, "epoch": 1 + (step - 1) // 20}
            | {"loss": 3.0 - i / 10, "parts": parts, "lr": 0.1, "samples_per_s": 100.0}
        )
        if step % 20 == 0:
            events.append(
                {"type": "epoch_end", "time": step + 0.5, "epoch": step // 20}
                | {"clean_acc": 10.0 + step / 20, "robust_acc": 40.0 + step / 10}
            )
    events.append({"type": "run_finished", "time": 70.0, "status": "finished", "test": TEST})
    (run / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return run


@pytest.fixture
def app(tmp_path, monkeypatch) -> WorkbenchApp:
    write_run(tmp_path)
    monkeypatch.chdir(tmp_path)
    return WorkbenchApp(Path("runs"), [])


def lines_of(plot) -> list[str]:
    return str(plot.render()).splitlines()


async def finished_screen(pilot, app: WorkbenchApp) -> RunScreen:
    app.action_attach(Path("runs/legend"))
    await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
    run = app.screen
    await wait_for(pilot, lambda: run.series.state.status == "finished")
    await wait_for(pilot, lambda: bool(run.query("#p-own-0")) and not run.dirty)
    await pilot.pause(0.5)
    return run


def test_legends_sit_under_the_plots_with_last_raw_values_and_ema_at_80_columns(app):
    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            run = await finished_screen(pilot, app)
            loss, own = run.query_one("#p-loss"), run.query_one("#p-own-0")
            loss_text, own_text = lines_of(loss), lines_of(own)
            # the titles are the titles, nothing squeezed in
            assert loss_text[0].strip() == "loss and parts"
            assert own_text[0].strip() == "L_lkd per step"
            legend = " ".join(loss_text[-2:])
            for entry in ("loss 2.5 (EMA)", "ce_clean 1.5 (EMA)", "ce_adv 2.5 (EMA)"):
                assert entry in legend, legend  # every series, ce_adv too, at 80 columns
            assert "■ L_lkd 2.64 (EMA)" in own_text[-1]  # the raw last value, not the EMA's
            acc = lines_of(run.query_one("#p-acc"))
            assert "clean 13" in acc[-1] and "robust 46" in acc[-1] and "EMA" not in acc[-1]
            await pilot.press("m")  # EMA off: the legend stops saying so
            await wait_for(pilot, lambda: not run.dirty)
            assert "(EMA)" not in lines_of(own)[-1] and "L_lkd 2.64" in lines_of(own)[-1]

    asyncio.run(scenario())


def test_step_axes_tick_at_epoch_boundaries(app):
    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            run = await finished_screen(pilot, app)
            text = lines_of(run.query_one("#p-loss"))
            axis = next(i for i, line in enumerate(text) if "└" in line)
            assert text[axis + 1].split() == ["20", "40", "60"]  # not 10 29 40 58

    asyncio.run(scenario())


def test_the_live_screen_shows_the_final_test_with_n_intervals_and_checkpoint(app):
    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            run = await finished_screen(pilot, app)
            label = run.query_one("#run-test")
            assert label.display
            text = str(label.content)
            for part in ("11.75%", "[9.1, 15.0]", "47.50%", "[42.6, 52.4]", "of 400"):
                assert part in text, text
            assert "best.safetensors" in text and "epoch 2" in text and "test split" in text

    asyncio.run(scenario())


def test_help_fits_80x24_names_each_group_once_and_never_scrolls_sideways(app):
    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen))
            await pilot.press("question_mark")
            await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
            await pilot.pause()
            help_ = app.screen
            titles = [str(w.content) for w in help_.query(".pane-title")]
            assert titles == ["[b]This screen[/]", "[b]Everywhere[/]"]  # once each
            for column in help_.query(".help-group"):
                assert column.region.bottom <= 24  # the global keys are in view too
            scroll = help_.query_one("#help-scroll")
            assert scroll.max_scroll_y == 0 and scroll.max_scroll_x == 0
            await pilot.press("end")
            await pilot.pause()
            assert scroll.scroll_x == 0
            shown = screen_text(app)
            assert "ctrl+p" in shown and "shift+tab" in shown and "Undo delete" in shown
            assert shown.count("This screen") == 1 and shown.count("Everywhere") == 1

    asyncio.run(scenario())


def test_palette_entries_read_as_words_with_their_key(app):
    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen))
            commands = list(app.get_system_commands(app.screen))
            titles = [c.title for c in commands]
            assert "Compare (c)" in titles and "Archive (v)" in titles and "Help (?)" in titles
            mine = [c for c in commands if c.title.endswith(")")]
            assert len(mine) >= len(KEYS["home"]) - 1  # every key but q
            assert not any(c.help.startswith("key ") for c in commands)

    asyncio.run(scenario())
