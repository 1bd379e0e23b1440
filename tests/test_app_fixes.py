"""The rough edges a new user's walk through the app found (at 100x30 and 80x24 over SSH):
each test here failed before its fix."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from pathlib import Path

from engine.eval import WORST
from engine.records import run_ops
from engine.records.evidence import list_evaluations
from tests.conftest import home_rows, wait_for, wb
from tests.test_tui import make_app
from workbench.tui.compare import CompareScreen
from workbench.tui.home import HomeScreen
from workbench.tui.inspect_screen import InspectScreen
from workbench.tui.log_screen import LogScreen
from workbench.tui.run_screen import PALETTE


def copy_run(root: Path, src: str, dest: str, seed: int | None = None, started: float = 0) -> None:
    """A copy of a static run under another name; `seed` changes its recorded config."""
    shutil.copytree(root / "runs" / src, root / "runs" / dest)
    path = root / "runs" / dest / "events.jsonl"
    events = [json.loads(line) for line in path.read_text().splitlines()]
    if seed is not None:
        events[0]["config"]["train"]["seed"] = seed
    events[0]["time"] = 1000.0 + started
    path.write_text("".join(json.dumps(e) + "\n" for e in events))


# ------------------------------------------------------------------ 2: the filter's text


async def type_and_check(pilot, box_id: str) -> None:
    box = pilot.app.screen.query_one(box_id)
    await wait_for(pilot, lambda: box.has_focus)
    await pilot.press("a", "l", "p")
    await pilot.pause()
    assert box.value == "alp"
    assert box.content_region.height >= 1, box.content_region  # a row for the text itself
    assert "alp" in "".join(str(line.text) for line in box.render_lines(box.region.reset_offset))


def test_the_filter_text_is_visible_while_typing_at_80x24(static_dir):
    app = make_app(static_dir)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await home_rows(pilot, 2)
            await pilot.press("slash")
            await type_and_check(pilot, "#filter")
            assert "alp" in app.export_screenshot()
            await pilot.press("escape")

            app.push_screen(LogScreen(Path("runs/alpha")))
            await wait_for(pilot, lambda: isinstance(app.screen, LogScreen))
            await pilot.pause()
            await pilot.press("slash")
            await type_and_check(pilot, "#log-search")
            await pilot.press("escape", "escape")

            app.action_inspect(Path("runs/alpha/best.safetensors"))
            await wait_for(pilot, lambda: isinstance(app.screen, InspectScreen))
            await pilot.pause()
            await pilot.press("slash")
            await type_and_check(pilot, "#evals-filter")

    asyncio.run(scenario())


# ------------------------------------------------------------------ 3: widths on resize

LONG = "a-run-with-a-name-far-longer-than-the-runs-pane-has-room-for-at-eighty-columns"


def test_home_refits_the_run_column_when_the_terminal_shrinks(static_dir):
    copy_run(static_dir, "alpha", LONG, started=5)
    app = make_app(static_dir)

    def visible_through_best_robust(home: HomeScreen) -> bool:
        table = home.query_one("#runs")
        widths = [c.get_render_width(table) for c in table.ordered_columns]
        return sum(widths[:4]) <= table.scrollable_content_region.width

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            home = await home_rows(pilot, 3)
            assert visible_through_best_robust(home)
            await pilot.resize_terminal(80, 24)
            await pilot.pause(0.5)
            home.action_refresh()  # `r`, as the walk pressed it
            await pilot.pause(0.5)
            table = home.query_one("#runs")
            assert table.ordered_columns[3].label.plain == "best robust %"
            assert visible_through_best_robust(home), [
                c.get_render_width(table) for c in table.ordered_columns
            ]
            narrow = len(str(table.get_row(LONG)[0]))
            await pilot.resize_terminal(100, 30)  # and back: the name has room again
            await wait_for(pilot, lambda: len(str(table.get_row(LONG)[0])) > narrow + 10)

    asyncio.run(scenario())


# ------------------------------------------------------------------ 4, 5: Compare

LEGEND = re.compile(r"\[(\w+)\]■\[/\] (\S+)")


def legend(screen: CompareScreen) -> dict[str, str]:
    """Run name -> the colour its legend entry has."""
    text = str(screen.query_one("#legend").content)
    return {name: colour for colour, name in LEGEND.findall(text)}


async def open_compare(pilot, n: int) -> CompareScreen:
    pilot.app.action_compare()
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, CompareScreen))
    screen = pilot.app.screen
    await wait_for(pilot, lambda: len(screen.series) == n and len(legend(screen)) == n)
    await pilot.pause()
    return screen


def test_compare_gives_selected_runs_distinct_colours_in_selection_order(static_dir):
    copy_run(static_dir, "alpha", "alpha-s1", seed=4)  # crc32 % 8 gave it alpha's colour
    for i in range(7):
        copy_run(static_dir, "beta", f"more{i}", started=-1 - i)  # listed last
    app = make_app(static_dir)

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await open_compare(pilot, 3)
            pick = screen.query_one("#pick")
            first = list(pick.selected)
            assert legend(screen) == dict(zip(first, PALETTE[:3], strict=True))
            # the list's own marks say the same
            options = [pick.get_option_at_index(i) for i in range(pick.option_count)]
            prompts = {o.value: str(o.prompt) for o in options}
            for name in first:
                assert f"[{legend(screen)[name]}]■" in prompts[name]
            pick.deselect(first[0])
            await wait_for(pilot, lambda: len(screen.series) == 2 and len(legend(screen)) == 2)
            assert legend(screen) == {first[1]: PALETTE[1], first[2]: PALETTE[2]}  # kept
            pick.select_all()
            await wait_for(pilot, lambda: len(legend(screen)) == 10)
            colours = legend(screen)
            assert colours[first[1]] == PALETTE[1] and colours[first[2]] == PALETTE[2]
            in_order = [colours[n] for n in pick.selected]
            assert len(set(in_order[:8])) == 8  # the first eight selected: eight colours

    asyncio.run(scenario())


def test_compare_settings_count_follows_the_selection(static_dir):
    copy_run(static_dir, "alpha", "alpha-s1", seed=4)
    app = make_app(static_dir)

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await open_compare(pilot, 3)
            await pilot.press("f")
            await pilot.pause()
            label = screen.query_one("#legend")
            table = screen.query_one("#diff")
            many = table.row_count
            assert f"{many} settings differ" in str(label.content)
            screen.query_one("#pick").deselect("beta")
            await wait_for(pilot, lambda: len(screen.series) == 2)
            await pilot.pause()
            assert table.row_count == 1 < many  # alpha and alpha-s1: only the seed
            assert str(label.content).startswith("1 setting"), label.content

    asyncio.run(scenario())


# ------------------------------------------------------------------ 6: evaluations by run


def evaluation(checkpoint: str, clean: float) -> dict:
    return {
        "kind": "suite",
        "suite": "quick",
        "checkpoint": checkpoint,
        "time": "2026-01-01T00:00:00+0000",
        "n": 20,
        "eps": 0.1,
        "table": {WORST: 10.0, "clean": clean},
        "accuracy": {WORST: 10.0, "clean": clean},
        "sanity": [],
    }


def saved_evaluations(root: Path) -> None:
    """runs/alpha/eval/: a new evaluation of best (absolute path), an older one (relative), and
    one of another checkpoint of the same run."""
    evals = root / "runs" / "alpha" / "eval"
    evals.mkdir()
    best = root / "runs" / "alpha" / "best.safetensors"
    docs = {
        "quick-1.json": evaluation(str(best.resolve()), 91.0),
        "quick-0.json": evaluation("runs/alpha/best.safetensors", 90.0),
        "quick-2.json": evaluation(
            str(best.resolve().parent / "checkpoints/epoch-2.safetensors"), 5
        ),
    }
    for name, doc in docs.items():
        (evals / name).write_text(json.dumps(doc))


def test_saved_evaluations_follow_their_run_through_a_rename(static_dir, tmp_path_factory):
    saved_evaluations(static_dir)
    assert len(list_evaluations(Path("runs/alpha/best.safetensors"))) == 2
    run_ops.rename(Path("runs"), "alpha", "renamed")
    best = Path("runs/renamed/best.safetensors")
    assert [r["clean"] for r in list_evaluations(best)] == [90.0, 91.0]
    # from another folder, by an absolute path: the older, relative record too
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    res = wb("inspect", str(best.resolve()), "--json", cwd=elsewhere)
    assert res.returncode == 0, res.stderr
    assert [r["clean"] for r in json.loads(res.stdout)["evaluations"]] == [90.0, 91.0]
    # an epoch checkpoint of the run has its own
    epoch = Path("runs/renamed/checkpoints/epoch-2.safetensors")
    shutil.copy(best, epoch)
    assert [r["clean"] for r in list_evaluations(epoch)] == [5]

    app = make_app(static_dir)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            app.action_inspect(best)
            await wait_for(pilot, lambda: isinstance(app.screen, InspectScreen))
            await wait_for(pilot, lambda: bool(app.screen.query("#evals")))
            await pilot.pause()
            assert app.screen.query_one("#evals").row_count == 2

    asyncio.run(scenario())


def test_a_loose_checkpoint_keeps_its_evaluations_when_its_folder_moves(static_dir):
    loose = static_dir / "loose"
    loose.mkdir()
    shutil.copy(static_dir / "runs/alpha/best.safetensors", loose / "model.safetensors")
    (loose / "eval").mkdir()
    doc = evaluation(str(loose / "model.safetensors"), 77.0)
    (loose / "eval" / "quick-0.json").write_text(json.dumps(doc))
    other = evaluation(str(loose / "other.safetensors"), 1.0)
    (loose / "eval" / "quick-1.json").write_text(json.dumps(other))
    (static_dir / "loose").rename(static_dir / "moved")
    rows = list_evaluations(static_dir / "moved" / "model.safetensors")
    assert [r["clean"] for r in rows] == [77.0]


# ------------------------------------------------------------------ 7: inspect's history


def test_inspect_text_shows_the_metrics_history(static_dir):
    res = wb("inspect", "runs/alpha/best.safetensors", cwd=static_dir)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "history" in out
    # epoch 2: clean 80.00, robust 36.00, loss 0.5 (nowhere else in the output)
    line = next(line for line in out.splitlines() if "36.00" in line)
    assert "80.00" in line and "0.5" in line


def hostile_checkpoint(root: Path, i: int, history: str) -> Path:
    """The static alpha checkpoint with its metrics' history replaced by this JSON text."""
    from engine import checkpoint_io as ckpt

    tensors, meta = ckpt.load(root / "runs/alpha/best.safetensors")
    meta["metrics"] = '{"best_robust_acc": 44.0, "history": ' + history + "}"
    return ckpt.save(root / f"hostile-{i}.safetensors", tensors, meta)


BAD_EPOCHS = [
    {"epoch": "[/bold]", "seconds": "slow", "train": [1, 2], "clean_acc": "[red]high"},
    {"epoch": 2, "seconds": None, "train": {"loss": "[/x]", "[/y]": 1.0, "ok": {"a": 1}}},
    {"epoch": 3, "clean_acc": 50.0, "clean_interval": "wide", "robust_acc": True},
    {"epoch": True, "clean_acc": 10**400, "seconds": 10**400, "train": {"loss": -(10**400)}},
]
HOSTILE_HISTORIES = {  # the history's JSON text -> the epochs the inspector lists
    '"not a list"': 0,
    '{"epoch": 1}': 0,
    '[1, null, "x", [2]]': 0,
    json.dumps(BAD_EPOCHS): 4,
    "[" + "9" * 5000 + "]": 0,  # more digits than Python reads: the metrics read as none
    "[" * 5000 + "]" * 5000: 0,  # deeper than the decoder goes
}


def test_a_hostile_history_neither_crashes_inspect_nor_the_inspector(static_dir):
    paths = {
        hostile_checkpoint(static_dir, i, text): rows
        for i, (text, rows) in enumerate(HOSTILE_HISTORIES.items())
    }
    for path in paths:
        res = wb("inspect", str(path), cwd=static_dir)
        assert res.returncode == 0 and "Traceback" not in res.stderr, (path, res.stderr)
        if paths[path]:
            assert "50.00" in res.stdout  # the one good number still shows
    app = make_app(static_dir)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            for path, rows in paths.items():
                app.action_inspect(path)
                await wait_for(pilot, lambda: isinstance(app.screen, InspectScreen))
                await wait_for(pilot, lambda: bool(app.screen.query("#history")))
                await pilot.pause()
                assert app.screen.query_one("#history").row_count == rows, path
                await pilot.press("escape")
                await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen))

    asyncio.run(scenario())


# ------------------------------------------------------------------ 8: Home's clean %


def test_home_shows_the_clean_accuracy_of_the_best_epoch(static_dir):
    run = static_dir / "runs" / "two"
    shutil.copytree(static_dir / "runs" / "alpha", run)
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    start, done = events[0], events[-1]
    start["time"] = 2000.0
    epochs = [
        {"type": "epoch_end", "time": 2001.0, "epoch": 1, "clean_acc": 11.75, "robust_acc": 47.5},
        {"type": "epoch_end", "time": 2002.0, "epoch": 2, "clean_acc": 9.5, "robust_acc": 40.0},
    ]
    epochs[0]["best_robust_acc"] = epochs[1]["best_robust_acc"] = 47.5
    (run / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in [start, *epochs, done]))
    app = make_app(static_dir)

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            home = await home_rows(pilot, 3)
            table = home.query_one("#runs")
            labels = [c.label.plain for c in table.ordered_columns]
            row = dict(zip(labels, map(str, table.get_row("two")), strict=True))
            assert row["best robust %"] == "47.50"
            clean = next(k for k in labels if k.startswith("clean"))
            assert "best" in clean  # the header says which epoch's
            assert row[clean] == "11.75"

    asyncio.run(scenario())
