"""The torch-free commands start without the heavy libraries (bench/startup.py times them).

Each check runs in a fresh interpreter: `sys.modules` of this test process
already holds torch and scipy.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from engine.records.checkpoint_header import FORMAT, REQUIRED_META
from tests.conftest import cli_env

# what made `workbench inspect` take over a second: torch, scipy (the study report's
# statistics), numpy under both, the config's pydantic models, textual (the app); and
# matplotlib and tensorboard, which only `workbench report` and `export` need
HEAVY = ("torch", "scipy", "numpy", "engine.spec.config", "textual", "matplotlib", "tensorboard")


def loaded_after(code: str, cwd: Path) -> list[str]:
    """The HEAVY modules a fresh interpreter holds after running `code`."""
    probe = (
        f"{code}\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    res = subprocess.run(
        [sys.executable, "-c", probe], cwd=cwd, capture_output=True, text=True, env=cli_env()
    )
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.splitlines()[-1])


def test_importing_the_cli_loads_no_heavy_library(tmp_path):
    assert loaded_after("import workbench.cli", tmp_path) == []


def header_only_checkpoint(path: Path) -> Path:
    """A valid checkpoint of one tensor, written without torch."""
    meta = dict.fromkeys(REQUIRED_META, "0") | {"format": FORMAT, "config": "{}", "metrics": "{}"}
    header = {
        "__metadata__": meta,
        "model.w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
    }
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(8))
    return path


@pytest.mark.parametrize(
    "argv",
    [["inspect", "CKPT"], ["inspect", "CKPT", "--json"], ["runs"], ["runs", "--json"], ["presets"]],
)
def test_torch_free_commands_load_no_heavy_library(tmp_path, argv):
    ckpt = header_only_checkpoint(tmp_path / "c.safetensors")
    argv = [str(ckpt) if a == "CKPT" else a for a in argv]
    code = (
        "import contextlib, io\n"
        "from workbench.cli import app\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        f"    code = app({argv!r}, standalone_mode=False)\n"
        "assert code in (None, 0) and out.getvalue(), (code, out.getvalue())"
    )
    assert loaded_after(code, tmp_path) == []


def test_help_loads_no_heavy_library(tmp_path):
    code = (
        "import contextlib, io\n"
        "from workbench.cli import app\n"
        "for argv in (['--help'], ['diff', '--help'], ['study', '--help'], ['report', '--help'],"
        " ['export', '--help']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "        assert app(argv, standalone_mode=False) == 0\n"
        "    assert 'Usage' in out.getvalue()"
    )
    assert loaded_after(code, tmp_path) == []


def test_the_probe_sees_a_heavy_import(tmp_path):
    """The checks above would fail: a command that imports scipy is caught."""
    assert loaded_after("import workbench.cli, scipy.stats", tmp_path) == ["scipy", "numpy"]
