"""A method declares what the faces show (engine/spec/panels.py); no face file names a method.

A method registered from this file alone, with a curve of its own, trains for
real; its run gets its own plot on the live screen, its curve in Compare and
in the headless view's tables, and its form field in the launch form, with no
face edited. A run recorded before the declaration existed draws generically.
"""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Literal

import pytest
import torch
import torch.nn.functional as F
from rich.console import Console
from torch import nn

from engine.models import build
from engine.records.events import read_events
from engine.spec.config import MethodSection, PresetConfig, Unit, validate
from engine.spec.panels import FormField, Panels, Plot, Series
from engine.spec.preset_files import load_preset
from engine.spec.registry import METHODS
from engine.train.methods.base import build_method
from tests.conftest import TINY_PRESET, write_preset
from tests.test_trainer import make
from tests.test_tui import screen_text, static_runs, wait_for
from workbench.headless import RunView, final_table
from workbench.tui.app import WorkbenchApp
from workbench.tui.compare import CompareScreen
from workbench.tui.launch import LaunchScreen
from workbench.tui.run_screen import RunScreen
from workbench.tui.series import RunSeries, compare_metrics, smoothed, step_plots

# ------------------------------------------------------------------ a method with its own curve

BENT = Panels(
    series=(Series("ce"), Series("bend_term", "bend term")),
    plots=(Plot("bend term per step", ("bend_term",)),),
    fields=(FormField("bend", "bend (the curve's weight)"),),
)


class CurvyConfig(MethodSection):
    name: Literal["curvy"]
    bend: Unit = 0.5
    panels = BENT


@METHODS.register("curvy")
class Curvy:
    """CE, and a logged term of its own (bend * CE^2) that only its own plot draws."""

    config = CurvyConfig

    def __init__(self, cfg: PresetConfig) -> None:
        self.bend = cfg.method.bend

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        ce = F.cross_entropy(model(x), y)
        return ce, {"ce": ce.detach(), "bend_term": self.bend * ce.detach() ** 2}


@pytest.fixture(scope="module")
def curvy_run(tmp_path_factory) -> tuple[Path, object]:
    """One real run of the test method, under runs/curvy, beside its preset."""
    root = tmp_path_factory.mktemp("curvy")
    presets = root / "presets"
    presets.mkdir()
    preset = write_preset(presets / "curvy.toml", TINY_PRESET.replace('"madry"', '"curvy"'))
    cfg = load_preset(preset, ["train.epochs=1", "data.train_limit=256"])
    outcome = make(cfg, root / "runs" / "curvy").run()
    assert outcome.status == "finished"
    return root, outcome


def test_the_run_records_what_its_method_declares(curvy_run):
    root, _ = curvy_run
    events = read_events(root / "runs" / "curvy" / "events.jsonl")
    started = events[0]
    assert started["type"] == "run_started"
    assert started["panels"] == BENT.to_json() and Panels.from_json(started["panels"]) == BENT
    json.dumps(started["panels"])  # plain JSON
    steps = [e for e in events if e["type"] == "step"]
    assert steps and all(set(e["parts"]) == {"ce", "bend_term"} for e in steps)


def test_the_live_screen_draws_the_methods_own_plot(curvy_run, monkeypatch):
    root, _ = curvy_run
    monkeypatch.chdir(root)
    app = WorkbenchApp(Path("runs"), [root / "presets"])

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            app.action_attach(Path("runs/curvy"))
            await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
            run = app.screen
            await wait_for(pilot, lambda: run.series.state.status == "finished")
            await wait_for(pilot, lambda: bool(run.query("#p-own-0")) and not run.dirty)
            await pilot.pause()
            ids = [w.id for w in run.query("#plots > *")]
            assert ids == ["p-loss", "p-own-0", "p-acc", "p-lr"]
            plots = step_plots(run.series)
            assert [p.title for p in plots] == ["loss and parts", "bend term per step"]
            assert plots[0].keys == ("loss", "ce") and plots[1].keys == ("bend_term",)
            text = screen_text(app)
            assert "bend term per step" in text and "loss and parts" in text
            assert "loss " in text and "(EMA)" in text  # the legend says which curves are smoothed
            assert len(run.series.parts["bend_term"]) == len(run.series.loss) > 0

    asyncio.run(scenario())


def test_compare_offers_the_methods_own_curve(curvy_run, monkeypatch):
    root, _ = curvy_run
    monkeypatch.chdir(root)
    app = WorkbenchApp(Path("runs"), [root / "presets"])

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            app.action_compare()
            await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen))
            screen = app.screen
            await wait_for(pilot, lambda: len(screen.series) == 1)
            assert screen.metrics() == ["robust_acc", "clean_acc", "loss", "bend_term", "lr"]
            await pilot.press("m", "m", "m")
            assert screen.metric == "bend_term"
            await pilot.pause()
            text = screen_text(app)
            assert "bend_term by step" in text and "curvy" in text
            assert "select runs on the left" not in text  # the curve was drawn

    asyncio.run(scenario())


def test_the_headless_view_shows_the_methods_own_curve(curvy_run):
    root, outcome = curvy_run
    out = io.StringIO()
    view = RunView(Console(file=out, width=200))
    for e in read_events(root / "runs" / "curvy" / "events.jsonl"):
        view.on_event(e)
    assert view.state.panels == BENT
    assert "bend_term=" in out.getvalue()  # the plain per-epoch line (not a terminal)
    live = Console(file=io.StringIO(), width=200)
    live.print(view)
    assert "bend_term" in live.file.getvalue()  # a column of the live parts table
    table = Console(file=io.StringIO(), width=200)
    table.print(final_table(outcome, view.last_parts, view.state.config, view.state.panels))
    text = table.file.getvalue()
    assert "bend term, last log window" in text
    assert "ce, last log window" not in text  # only the curves of the method's own plots
    bare = Console(file=io.StringIO(), width=200)
    bare.print(final_table(outcome, view.last_parts, view.state.config, None))
    assert "last log window" not in bare.file.getvalue()


def test_the_launch_form_offers_the_methods_declared_fields(curvy_run, monkeypatch):
    root, _ = curvy_run
    monkeypatch.chdir(root)
    app = WorkbenchApp(Path("runs"), [root / "presets"])

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await app.push_screen(LaunchScreen(root / "presets" / "curvy.toml"))
            await wait_for(pilot, lambda: bool(app.screen.query("#f-method-bend")))
            form = app.screen
            field = form.query_one("#f-method-bend")
            assert field.name == "method.bend" and field.placeholder == "default: 0.5"
            assert "bend (the curve's weight)" in screen_text(app)
            field.value = "0.25"
            assert "method.bend=0.25" in form.overrides()

    asyncio.run(scenario())


# ------------------------------------------------------------------ older runs and the declaration


def test_a_run_without_the_record_draws_every_part_with_the_loss(tmp_path, monkeypatch):
    static_runs(tmp_path)
    events = tmp_path / "runs" / "alpha" / "events.jsonl"  # an ATBLR run, as recorded before
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    del lines[0]["panels"]
    events.write_text("".join(json.dumps(e) + "\n" for e in lines))
    monkeypatch.chdir(tmp_path)
    app = WorkbenchApp(Path("runs"), [tmp_path / "presets"])

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            app.action_attach(Path("runs/alpha"))
            await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
            run = app.screen
            await wait_for(pilot, lambda: run.series.state.status == "finished")
            await wait_for(pilot, lambda: not run.dirty)
            await pilot.pause()
            assert run.series.state.panels is None
            assert [w.id for w in run.query("#plots > *")] == ["p-loss", "p-acc", "p-lr"]
            assert run.query_one("#p-loss").styles.column_span == 2  # the whole top row
            assert step_plots(run.series)[0].keys == ("loss", "ce_adv", "lkd_clean", "lkd_adv")
            assert "L_lkd" not in screen_text(app)

    asyncio.run(scenario())
    s = RunSeries()
    for e in lines:
        s.add(e)
    assert compare_metrics([s]) == [
        "robust_acc",
        "clean_acc",
        "loss",
        "ce_adv",
        "lkd_clean",
        "lkd_adv",
        "lr",
    ]
    assert smoothed(s, "lkd_adv") and smoothed(s, "loss") and not smoothed(s, "lr")


def test_a_malformed_record_is_no_record():
    assert Panels.from_json(None) is None and Panels.from_json("x") is None
    assert Panels.from_json({"plots": [{"title": "t", "keys": ["nope"]}]}) is None
    assert Panels.from_json({"series": [{"label": "no key"}]}) is None
    assert Panels.from_json({}) == Panels()


def test_a_declaration_names_only_what_the_method_has():
    with pytest.raises(ValueError, match="undeclared series"):
        Panels(series=(Series("a"),), plots=(Plot("p", ("a", "b")),))
    with pytest.raises(TypeError, match="not a key of it"):

        class Wrong(MethodSection):  # never registered
            name: Literal["wrong"]
            weight: Unit = 0.5
            panels = Panels(fields=(FormField("wieght", "weight"),))


BUILT_IN = [  # (method table, other settings it needs): every loss part must be declared
    ({"name": "standard"}, {}),
    ({"name": "madry"}, {}),
    ({"name": "madry", "clean_weight": 0.5}, {}),
    ({"name": "fast_at", "step": 1.25}, {}),
    ({"name": "trades", "beta": 2.0}, {}),
    ({"name": "atblr"}, {"model": {"arch": "lenet", "head": "gaussian"}}),
    ({"name": "apinet"}, {"defense": {"name": "apinet", "steps": 1}}),
]


@pytest.mark.parametrize(("method", "extra"), BUILT_IN, ids=lambda v: str(v))
def test_every_built_in_method_declares_the_parts_it_streams(method, extra):
    doc = {
        "name": "t",
        "model": {"arch": "lenet", "head": "linear"},
        "attack": {"eps": 0.1, "step": 0.05, "steps": 1},
        **extra,
        "method": method,
    }
    cfg = validate(doc)
    torch.manual_seed(0)
    model = build(cfg)
    x, y = torch.rand(4, 1, 28, 28), torch.randint(0, 10, (4,))
    _, parts = build_method(cfg).loss(model, x, y)
    declared = cfg.method.panels
    assert parts and set(parts) <= {s.key for s in declared.series}
