"""An evaluation that survives a kill: progress saved per batch, `--resume` ends where an
uninterrupted run ends, per example (the random draws of every batch included)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from engine.eval.evaluate import evaluate_checkpoint, evaluate_model
from engine.eval.journal import Journal, progress_of
from engine.eval.suites import load_suite, resolve_columns
from tests.conftest import cli_env
from tests.test_evaluation import lenet_config, save_checkpoint, small_suite

SUITE = """
name = "resumable"
[[attack]]
name = "FGSM"
kind = "fgsm"
[[attack]]
name = "PGD-5"
kind = "pgd"
steps = 5
restarts = 2
[sanity]
enabled = true
base = "PGD-5"
eps_fractions = [0.5]
"""

AA_ONLY = """
name = "aa"
[[attack]]
name = "AA"
kind = "autoattack"
version = "custom"
components = ["apgd-ce", "apgd-t"]
iterations = 5
target_classes = 2
"""


class Killed(Exception):
    """Stands for a kill between two batches (the journal has saved the batch before)."""


def outcomes(ev) -> dict[str, list[int]]:
    out = {k: v.int().tolist() for k, v in ev.result.correct.items()}
    for k, run in ev.sanity_runs.get("runs", {}).items():
        out[k] = run["per_example"]
    return out


@pytest.mark.parametrize(
    ("where", "done", "aa"),
    [("PGD-5", 48, False), ("sanity 10 steps", 32, False), ("AA: APGD-CE", 64, True)],
)
def test_a_resumed_evaluation_equals_an_uninterrupted_one(
    trained_lenet, test_batch, tmp_path, where, done, aa
):
    if aa:
        pytest.importorskip("pyautoattack")
    x, y = test_batch[0][:64], test_batch[1][:64]
    suite = small_suite(tmp_path, AA_ONLY if aa else SUITE)
    spec = load_suite(str(suite))
    cols = resolve_columns(spec, lenet_config(), False)

    def run(**kw):
        return evaluate_model(spec, cols, trained_lenet, x, y, 10, seed=3, batch_size=16, **kw)

    whole = run()  # no journal: the numbers every evaluation gave before journals existed
    settings = {"checkpoint": "lenet", "seed": 3}

    def kill(name: str, d: int, total: int, n_cols: int) -> None:
        if name == where and d == done:
            raise Killed

    with pytest.raises(Killed):
        run(journal=Journal.start(tmp_path, settings, resume=False), progress=kill)
    journal = Journal.start(tmp_path, settings, resume=True)
    saved = progress_of(journal.path)
    assert saved["clean"] == (64, True)
    if where.startswith("sanity"):
        assert saved["sanity/" + where] == (done, False) and saved["PGD-5"] == (64, True)
    elif aa:
        assert saved[where] == (64, True) and "AA: +APGD-T" not in saved
    else:
        assert saved[where] == (done, False) and "sanity/sanity 10 steps" not in saved
    resumed = run(journal=journal)
    assert outcomes(resumed) == outcomes(whole)
    assert [(c.name, c.status, c.figure) for c in resumed.checks] == [
        (c.name, c.status, c.figure) for c in whole.checks
    ]  # the in-ball check's largest excess was kept across the kill too


def test_resuming_with_other_settings_is_refused_and_nothing_is_written(tmp_path):
    settings = {"checkpoint": "best.safetensors", "seed": 0, "samples": 64}
    first = Journal.start(tmp_path, settings, resume=False)
    first.record(
        "clean", torch.ones(64, dtype=torch.bool), 0.1, complete=True, device=torch.device("cpu")
    )
    before = sorted(tmp_path.iterdir())
    from engine.spec.errors import WorkbenchError

    with pytest.raises(WorkbenchError) as err:
        Journal.start(tmp_path, {**settings, "seed": 1}, resume=True)
    msg = str(err.value)
    assert "\n" not in msg and "seed: 0 then, 1 now" in msg and "samples" not in msg
    assert sorted(tmp_path.iterdir()) == before
    first.path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")  # a damaged file
    with pytest.raises(WorkbenchError, match="unreadable progress"):
        Journal.start(tmp_path, settings, resume=True)
    fresh = Journal.start(tmp_path, {**settings, "checkpoint": "other.safetensors"}, resume=True)
    assert fresh.resumed == {"file": None, "columns": [], "partial": {}}  # nothing to resume


def _partial_mid_column(eval_dir: Path, column: str, n: int) -> Path | None:
    for p in eval_dir.glob(".partial-*.safetensors"):
        try:
            done, complete = progress_of(p).get(column, (0, False))
        except Exception:
            continue
        if 0 < done < n and not complete:
            return p
    return None


def test_kill_9_in_the_middle_of_a_column_then_resume_equals_an_uninterrupted_run(
    trained_lenet, tmp_path
):
    suite = small_suite(
        tmp_path,
        'name = "k"\n[[attack]]\nname = "FGSM"\nkind = "fgsm"\n'
        '[[attack]]\nname = "PGD"\nkind = "pgd"\nsteps = 10\n',
    )
    ckpt = save_checkpoint(tmp_path / "run" / "best.safetensors", trained_lenet, lenet_config())
    args = ["eval", str(ckpt), "--suite", str(suite), "--samples", "96", "--batch-size", "8"]
    args += ["--device", "cpu", "--seed", "7", "--json"]
    env = cli_env(OMP_NUM_THREADS=str(torch.get_num_threads()))
    cmd = [sys.executable, "-m", "workbench", *args]
    victim = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    eval_dir = ckpt.parent / "eval"
    deadline = time.monotonic() + 120
    partial = None
    while partial is None and victim.poll() is None and time.monotonic() < deadline:
        partial = _partial_mid_column(eval_dir, "PGD", 96)
        time.sleep(0.01)
    assert partial is not None, victim.stderr.read() if victim.poll() is not None else "timeout"
    os.kill(victim.pid, signal.SIGKILL)
    assert victim.wait(30) == -signal.SIGKILL
    done, complete = progress_of(partial)["PGD"]
    assert 0 < done < 96 and not complete and progress_of(partial)["FGSM"] == (96, True)
    assert not list(eval_dir.glob("*.json"))  # no evidence from the killed run

    other = subprocess.run(
        [*cmd[:-1], "--seed", "8", "--resume"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert other.returncode == 2 and "seed: 7 then, 8 now" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1 and partial.exists()

    res = subprocess.run(
        [*cmd, "--resume"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr
    resumed = json.loads(Path(json.loads(res.stdout)["saved"]).read_text())
    assert (
        resumed["resumed"]["partial"] == {"PGD": done} and "FGSM" in resumed["resumed"]["columns"]
    )
    assert not partial.exists()  # removed once the evidence is saved

    # the same evaluation uninterrupted, in this process, on a copy of the checkpoint
    copy = tmp_path / "copy" / "best.safetensors"
    copy.parent.mkdir()
    shutil.copy(ckpt, copy)
    whole = evaluate_checkpoint(copy, str(suite), samples=96, device="cpu", seed=7, batch_size=8)
    assert whole["resumed"] is None
    assert resumed["per_example"] == whole["per_example"]
    assert resumed["accuracy"] == whole["accuracy"]
    assert 0 < resumed["accuracy"]["PGD"] < resumed["accuracy"]["FGSM"]  # a column worth checking
