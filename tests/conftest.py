"""Shared fixtures: a small model trained once per session on the bundled MNIST subset."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def mnist5k():
    from engine.data import load_dataset

    return load_dataset("mnist-5k")


def train_lenet(data, seed: int):
    """LeNet trained with plain CE for two epochs: ~95% clean, not robust."""
    from engine.loader import TensorLoader, epoch_generator
    from engine.models import build_model

    torch.manual_seed(seed)
    model = build_model("lenet", "linear", (1, 28, 28), 10)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    loader = TensorLoader(data.train_x, data.train_y, 64, torch.device("cpu"), shuffle=True)
    for epoch in range(2):
        for x, y in loader.epoch(epoch_generator(seed, epoch)):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    return model


@pytest.fixture(scope="session")
def trained_lenet(mnist5k):
    return train_lenet(mnist5k, 0)


@pytest.fixture(scope="session")
def test_batch(mnist5k):
    x = mnist5k.test_x[:300].float() / 255.0
    y = mnist5k.test_y[:300]
    return x, y


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a CLI subprocess: this checkout importable, wide tables."""
    return {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(ROOT), **extra}


def wb(*args: str, cwd: Path, timeout: int = 300, **env: str) -> subprocess.CompletedProcess:
    """`python -m workbench ARGS` as a user runs it; `env` adds variables."""
    return subprocess.run(
        [sys.executable, "-m", "workbench", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=cli_env(**env),
        timeout=timeout,
    )


def write_preset(path: Path, body: str) -> Path:
    path.write_text(body, encoding="utf-8")
    return path


TINY_PRESET = """
name = "tiny"
description = "synthetic smoke preset for tests"
[data]
dataset = "synthetic"
batch_size = 64
eval_batch_size = 256
[model]
arch = "lenet"
head = "linear"
[method]
name = "madry"
[attack]
eps = 0.1
step = 0.05
steps = 2
[optim]
name = "adam"
lr = 0.002
[train]
epochs = 2
seed = 3
log_every = 2
[eval]
samples = 64
steps = 2
[checkpoint]
every = 1
keep = 2
[perf]
amp = "off"       # fp32: the tests compare runs with each other and with plain loops
"""


@pytest.fixture
def tiny_preset(tmp_path):
    return write_preset(tmp_path / "tiny.toml", TINY_PRESET)


async def wait_for(pilot, condition, timeout: float = 90.0, poll: float = 0.2) -> None:
    """Let a Pilot-driven app run until `condition()` holds (an AssertionError after `timeout`)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the app")
        await pilot.pause(poll)


@pytest.fixture
def static_dir(tmp_path, monkeypatch):
    """A folder (the working directory) with the app tests' static runs and presets."""
    from tests.test_tui import static_runs

    static_runs(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


async def home_rows(pilot, n: int):
    """Home once its runs table lists `n` runs (the Home screen)."""
    from workbench.tui.home import HomeScreen

    home = pilot.app.screen
    await wait_for(pilot, lambda: isinstance(home, HomeScreen) and bool(home.query("#runs")))
    await wait_for(pilot, lambda: home.query_one("#runs").row_count == n)
    await pilot.pause()
    return home
