"""Presets and suites come from the package wherever one stands; ./presets adds and overrides."""

from __future__ import annotations

import pytest

from engine.records.run_state import RunState
from engine.spec import catalog
from engine.spec.errors import WorkbenchError
from engine.spec.preset_files import load_preset
from tests.conftest import TINY_PRESET, wb, write_preset


def test_bare_names_reach_the_packaged_presets_from_any_folder(tmp_path):
    path = catalog.resolve_preset("mnist_atblr", cwd=tmp_path)
    assert path == catalog.BUILTIN_PRESETS / "mnist_atblr.toml" and path.is_file()
    assert catalog.resolve_preset("mnist_atblr.toml", cwd=tmp_path) == path
    assert load_preset(path).method.name == "atblr"
    with pytest.raises(WorkbenchError, match=r"nope: preset file not found.*mnist_atblr"):
        catalog.resolve_preset("nope", cwd=tmp_path)


def test_a_users_presets_folder_adds_and_overrides(tmp_path):
    mine = tmp_path / "presets"
    mine.mkdir()
    write_preset(mine / "demo.toml", TINY_PRESET.replace('name = "tiny"', 'name = "demo"'))
    write_preset(mine / "tiny.toml", TINY_PRESET)
    found = {e.name: e for e in catalog.presets(tmp_path)}
    assert found["demo"].path == mine / "demo.toml" and not found["demo"].builtin
    assert found["tiny"].path == mine / "tiny.toml"
    assert found["mnist_madry"].builtin  # the rest still come from the package
    assert catalog.resolve_preset("demo", cwd=tmp_path) == mine / "demo.toml"


def test_extends_falls_back_to_a_builtin_preset(tmp_path):
    child = write_preset(
        tmp_path / "mine.toml", 'name = "mine"\nextends = "demo.toml"\n[train]\nepochs = 1\n'
    )
    cfg = load_preset(child)
    assert cfg.train.epochs == 1 and cfg.method.name == "atblr"  # the rest from demo's chain


def test_training_suites_are_the_packaged_ones_whatever_is_in_the_folder(tmp_path):
    (tmp_path / "presets" / "suites").mkdir(parents=True)
    stray = tmp_path / "presets" / "suites" / "quick.toml"
    stray.write_text('name = "quick"\n[[attack]]\nname = "FGSM"\nkind = "fgsm"\n')
    assert catalog.resolve_suite("quick", cwd=tmp_path) == stray  # `eval --suite quick` sees it
    assert catalog.builtin_suite("quick") == catalog.BUILTIN_SUITES / "quick.toml"
    with pytest.raises(WorkbenchError, match=r"eval\.suite"):
        catalog.builtin_suite("nope")


def test_workbench_run_takes_a_bare_preset_name(tmp_path):
    res = wb(
        "run",
        "mnist5k_madry",
        "--headless",
        "--name",
        "bare",
        *("--set", "data.dataset=synthetic", "--set", "train.epochs=1"),
        *("--set", "attack.steps=1", "--set", "eval.samples=16", "--set", "eval.steps=1"),
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    config = (tmp_path / "runs" / "bare" / "config.toml").read_text()
    assert 'name = "mnist5k_madry"' in config and 'dataset = "synthetic"' in config


def test_run_state_reads_status_progress_and_eta_from_events():
    s = RunState()
    assert s.status == "starting" and s.eta(0.0) is None
    cfg = {"name": "r", "method": {"name": "madry"}, "train": {"epochs": 4}}
    s.apply({"type": "run_started", "time": 100.0, "config": cfg, "steps_per_epoch": 10})
    s.apply({"type": "step", "time": 110.0, "step": 5, "epoch": 1, "batch": 5})
    assert (s.status, s.name, s.method, s.epochs_total) == ("running", "r", "madry", 4)
    assert s.progress() == (5, 40)
    assert s.eta(110.0) == pytest.approx(35 * 2.0)  # 5 steps took 10 s: 35 left at 2 s each
    end = {"type": "epoch_end", "time": 120.0, "epoch": 1, "clean_acc": 80.0, "robust_acc": 40.0}
    s.apply({**end, "best_robust_acc": 40.0})
    s.apply({**end, "epoch": 2, "robust_acc": 30.0, "clean_acc": None, "best_robust_acc": 40.0})
    assert s.best_robust_acc == 40.0 and s.last_clean_acc == 80.0  # what the trainer carried
    assert s.epochs == [1, 2] and s.robust_acc == [40.0, 30.0]
    # resumed at epoch 2: the pace counts this process's steps only
    restart = {"type": "run_started", "time": 500.0, "config": cfg, "steps_per_epoch": 10}
    s.apply({**restart, "start_epoch": 2})
    assert s.started == 100.0 and s.progress() == (20, 40)  # no step yet since the restart
    s.apply({"type": "step", "time": 510.0, "step": 25})
    assert s.eta(510.0) == pytest.approx(15 * 2.0)
    s.apply({"type": "run_failed", "time": 511.0, "error": "non-finite loss"})
    assert s.status == "failed" and s.error == "non-finite loss" and s.eta(512.0) is None
