"""The CLI's small courtesies: `--version`, flags without a type in `--help`, whole run names
for `--diff`, and a config `inspect` prints that parses as TOML at any width."""

from __future__ import annotations

import io
import json
import tomllib
from pathlib import Path

from rich.console import Console

from tests.conftest import TINY_PRESET, wb, write_preset

LONG = "demo-20261202-153012-a-rather-long-descriptive-name-for-this-run"


def listed_runs(root: Path, *names: str) -> None:
    for name in names:
        run = root / "runs" / name
        run.mkdir(parents=True)
        config = {"name": name, "method": {"name": "atblr"}, "train": {"epochs": 2}}
        (run / "events.jsonl").write_text(
            json.dumps({"type": "run_started", "time": 1.0, "config": config}) + "\n"
        )


def test_version_prints_the_version_and_exits_0(tmp_path):
    from workbench.cli_polish import version

    res = wb("--version", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"workbench {version()}" and version() != "unknown"


def test_help_shows_no_type_after_a_flag(tmp_path):
    for args in (("--help",), ("runs", "--help"), ("run", "--help")):
        res = wb(*args, cwd=tmp_path, COLUMNS="100")
        assert res.returncode == 0, res.stderr
        assert "<bool>" not in res.stdout, args
        assert "--help" in res.stdout
    assert "<path>" in res.stdout  # an option that takes a value still names its type


def test_runs_shows_whole_names_when_piped_and_with_wide_on_a_narrow_terminal(
    tmp_path, monkeypatch
):
    listed_runs(tmp_path, LONG, "short")
    piped = wb("runs", cwd=tmp_path, COLUMNS="80")
    assert piped.returncode == 0 and LONG in piped.stdout

    from engine.records.runs import list_runs
    from workbench import printing

    def terminal(wide: bool) -> str:
        screen = io.StringIO()
        monkeypatch.setattr(printing, "out", Console(file=screen, width=80, force_terminal=True))
        printing.runs(tmp_path / "runs", list_runs(tmp_path / "runs"), wide)
        return screen.getvalue()

    assert LONG not in terminal(False)  # an 80-column terminal still fits the table to it
    assert LONG in terminal(True)


def test_inspect_prints_a_config_that_parses_as_toml_at_80_columns(tmp_path):
    from engine import checkpoint_io as ckpt
    from engine.models import build
    from engine.spec.preset_files import load_preset

    name = ("a-name-long-enough-to-be-cut-at-eighty-columns-" * 3)[:100]  # the longest allowed
    preset = TINY_PRESET.replace('name = "tiny"', f'name = "{name}"')
    assert name in preset
    cfg = load_preset(write_preset(tmp_path / "tiny.toml", preset))
    meta = ckpt.base_metadata(cfg, 1, {"best_robust_acc": 20.0, "history": []}, "weights")
    meta.update(created="2026-01-01T00:00:00+0000", torch_version="2.x", device="cpu")
    path = ckpt.save(tmp_path / "best.safetensors", ckpt.pack_model(build(cfg)), meta)
    res = wb("inspect", str(path), cwd=tmp_path, COLUMNS="80")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    start = lines.index("config") + 1
    end = next(i for i in range(start, len(lines)) if lines[i].strip() == "tensors")
    section = "\n".join(lines[start:end])
    assert tomllib.loads(section)["name"] == name
