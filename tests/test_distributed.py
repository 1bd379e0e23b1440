"""Data-parallel training (DDP over gloo on the CPU): the same run whatever the world size.

The ranks are real processes started by `workbench run --nproc 2`, exactly as a
user starts them. Random attack starts are off: each rank draws its own, so
with them on the runs agree in distribution only (engine/distributed.py).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from engine.checkpoint_io import load
from engine.loader import Augment, TensorLoader, epoch_generator, shard_range
from tests.conftest import TINY_PRESET, cli_env, write_preset
from tests.conftest import wb as cli

# 500 examples in global batches of 63: shards of 32 + 31, and a last batch of 59 (30 + 29),
# so the per-rank loss weighting is exercised, not only the even case
DDP_SETS = [
    "attack.random_start=false",
    "data.val_size=12",  # 512 synthetic training examples: 500 train, 12 validation
    "data.train_limit=500",
    "data.batch_size=63",
    "train.log_every=1",
    "eval.samples=32",
    "optim.name=sgd",  # Adam divides by sqrt(v): it would magnify float rounding in tiny grads
    "optim.lr=0.05",
]
ATBLR_SETS = ["method.name=atblr", "method.lambda=0.1", "model.head=gaussian"]


def wb(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """The CLI with one thread per process: two ranks share the test machine's cores."""
    return cli(*args, cwd=cwd, timeout=timeout, OMP_NUM_THREADS="1")


def train(root: Path, name: str, epochs: int, *extra: str, sets: list[str]) -> Path:
    args = ["run", "tiny.toml", "--headless", "--name", name, "--set", f"train.epochs={epochs}"]
    for item in sets:
        args += ["--set", item]
    res = wb(*args, *extra, cwd=root)
    assert res.returncode == 0, res.stderr
    return root / "runs" / name


def resume(run: Path, epochs: int, *extra: str) -> None:
    args = ["run", "--resume", str(run), "--set", f"train.epochs={epochs}", *extra]
    res = wb(*args, cwd=run.parent.parent)
    assert res.returncode == 0, res.stderr


def events(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]


def step_losses(run: Path) -> list[tuple[int, float]]:
    return [(e["step"], e["loss"]) for e in events(run) if e["type"] == "step"]


def weights(run: Path) -> dict[str, torch.Tensor]:
    tensors, _ = load(run / "last.safetensors")
    return {k: v for k, v in tensors.items() if k.startswith("model.")}


def assert_same_run(a: Path, b: Path) -> None:
    la, lb = step_losses(a), step_losses(b)
    assert [s for s, _ in la] == [s for s, _ in lb]
    for (step, x), (_, y) in zip(la, lb, strict=True):
        assert abs(x - y) <= 1e-4 * max(1.0, abs(x)), (step, x, y)
    wa, wb_ = weights(a), weights(b)
    assert wa.keys() == wb_.keys() and wa
    for k in wa:
        # 16 SGD steps of sign-gradient PGD carry float rounding to ~1e-5 (weights ~0.1);
        # a wrong gradient scale or a skipped shard moves them by ~1e-2
        torch.testing.assert_close(wa[k], wb_[k], rtol=1e-3, atol=1e-4, msg=k)


@pytest.fixture(scope="module", params=["madry", "atblr"])
def runs(request, tmp_path_factory):
    """One method's runs: 1 process for 2 epochs, and 2 processes for 1 epoch then resumed."""
    root = tmp_path_factory.mktemp(f"ddp-{request.param}")
    write_preset(root / "tiny.toml", TINY_PRESET)
    sets = DDP_SETS + (ATBLR_SETS if request.param == "atblr" else [])
    one = train(root, "one", 2, sets=sets)
    two = train(root, "two", 1, "--nproc", "2", sets=sets)
    return root, sets, one, two


def test_two_processes_follow_the_one_process_loss_curve(runs):
    _, _, one, two = runs
    started = [e for e in events(two) if e["type"] == "run_started"]
    assert len(started) == 1 and started[0]["distributed"]["world_size"] == 2
    assert started[0]["distributed"]["backend"] == "gloo"
    assert events(one)[0]["distributed"]["world_size"] == 1
    first_epoch = [(s, v) for s, v in step_losses(one) if s <= 8]
    assert len(first_epoch) == 8  # ceil(500 / 63) global batches
    la = step_losses(two)
    assert [s for s, _ in la] == [s for s, _ in first_epoch]
    for (_, x), (_, y) in zip(first_epoch, la, strict=True):
        assert abs(x - y) <= 1e-4 * max(1.0, abs(x))
    e1 = next(e for e in events(one) if e["type"] == "epoch_end")
    e2 = next(e for e in events(two) if e["type"] == "epoch_end")
    assert (e1["clean_acc"], e1["robust_acc"]) == (e2["clean_acc"], e2["robust_acc"])


def test_only_rank_0_writes_and_checkpoints_hold_the_plain_module(runs):
    _, _, one, two = runs
    files = sorted(p.name for p in two.rglob("*") if p.is_file())
    assert files == sorted(p.name for p in one.rglob("*") if p.is_file() and "0002" not in p.name)
    assert set(weights(two)) == set(weights(one))  # no "module." or DDP prefixes
    lines = (two / "events.jsonl").read_text().splitlines()
    assert len(lines) == len(set(lines))  # one writer: no event twice


def test_a_two_process_checkpoint_resumes_in_one_process(runs):
    root, _, one, two = runs
    resumed = root / "runs" / "two-resumed"
    resumed.mkdir(parents=True)
    for p in two.rglob("*"):
        if p.is_file() and p.name != ".lock":
            dest = resumed / p.relative_to(two)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(p.read_bytes())
    resume(resumed, 2)
    assert_same_run(one, resumed)


def test_a_one_process_checkpoint_resumes_in_two_processes(runs):
    root, sets, one, _ = runs
    if "method.name=atblr" in sets:
        pytest.skip("one method is enough for this direction (the 2 -> 1 test covers both)")
    half = train(root, "half", 1, sets=sets)
    resume(half, 2, "--nproc", "2")
    assert_same_run(one, half)
    started = [e for e in events(half) if e["type"] == "run_started"]
    assert [e["distributed"]["world_size"] for e in started] == [1, 2]


def test_shards_partition_every_global_batch_with_its_augmentation():
    x = torch.randint(0, 256, (103, 1, 8, 8), dtype=torch.uint8)
    y = torch.arange(103) % 10
    aug = Augment(flip=True, padding=2, pad_mode="zeros")
    cpu = torch.device("cpu")
    whole = TensorLoader(x, y, 20, cpu, shuffle=True, augment=aug)
    parts = [TensorLoader(x, y, 20, cpu, True, aug, shard=(r, 3)) for r in range(3)]
    assert [len(p) for p in parts] == [len(whole)] * 3 == [6] * 3
    batches = list(whole.epoch(epoch_generator(5, 2)))
    shards = [list(p.epoch(epoch_generator(5, 2))) for p in parts]
    for b, (xb, yb) in enumerate(batches):
        torch.testing.assert_close(torch.cat([s[b][0] for s in shards]), xb, rtol=0, atol=0)
        assert torch.equal(torch.cat([s[b][1] for s in shards]), yb)
    assert [shard_range(0, 7, r, 3) for r in range(3)] == [(0, 3), (3, 5), (5, 7)]
    # a last global batch smaller than the world is dropped, not handed out empty
    assert len(TensorLoader(x[:42], y[:42], 20, cpu, shard=(0, 2))) == 3
    assert len(TensorLoader(x[:42], y[:42], 20, cpu, shard=(0, 3))) == 2


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--nproc", "0"], "--nproc 0"),
        (["--nproc", "2", "--set", "distributed.sync_bn=true"], "distributed.sync_bn"),
        (["--nproc", "2", "--set", "distributed.backend=nccl"], "distributed.backend"),
        (["--nproc", "4", "--set", "data.batch_size=3"], "data.batch_size"),
    ],
)
def test_bad_distributed_input_exits_2_and_writes_nothing(tmp_path, args, needle):
    write_preset(tmp_path / "tiny.toml", TINY_PRESET)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    res = wb("run", "tiny.toml", "--headless", *args, cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert needle in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_ctrl_c_stops_every_rank_after_rank_0_saved(tmp_path):
    write_preset(tmp_path / "tiny.toml", TINY_PRESET)
    env = cli_env(OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "workbench", "run", "tiny.toml", "--headless", "--name", "s"]
    cmd += ["--nproc", "2", "--set", "train.epochs=1000"]
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    log = tmp_path / "runs" / "s" / "events.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and '"epoch_end"' in log.read_text()):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    last = json.loads(log.read_text().splitlines()[-1])
    assert last["type"] == "run_finished" and last["status"] == "interrupted"
    _, meta = load(tmp_path / "runs" / "s" / "last.safetensors")
    assert meta["kind"] == "full" and json.loads(meta["progress"])["global_step"] == last["step"]
