"""Checkpoints: bit-exact round trips, atomic writes, and refusal of bad files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from engine import checkpoint_io as ckpt
from engine.models import build
from engine.records.checkpoint_header import REQUIRED_META, atomic_write_bytes
from engine.spec.errors import CheckpointError
from engine.spec.preset_files import load_preset


@pytest.fixture
def saved(tiny_preset, tmp_path):
    cfg = load_preset(tiny_preset)
    torch.manual_seed(0)
    model = build(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.rand(4, 1, 28, 28)).sum().backward()
    opt.step()
    tensors = ckpt.pack_model(model)
    t_opt, blob = ckpt.pack_optimizer(opt)
    tensors.update(t_opt)
    tensors.update(ckpt.pack_rng())
    meta = ckpt.base_metadata(cfg, 3, {"best_robust_acc": 12.5}, "full")
    meta["optim"] = blob
    path = ckpt.save(tmp_path / "a.safetensors", tensors, meta)
    return path, cfg, model, opt, tensors, meta


def test_round_trip_is_bit_exact(saved, tmp_path):
    path, cfg, model, opt, tensors, meta = saved
    loaded, meta2 = ckpt.load(path)
    assert meta2 == meta
    assert set(loaded) == set(tensors)
    for k, v in tensors.items():
        assert loaded[k].dtype == v.dtype and torch.equal(loaded[k], v.cpu()), k
    again, meta3 = ckpt.load(ckpt.save(tmp_path / "b.safetensors", loaded, meta2))
    assert meta3 == meta and all(torch.equal(again[k], tensors[k].cpu()) for k in tensors)
    model2 = build(cfg)
    ckpt.unpack_model(model2, loaded, "x")
    opt2 = torch.optim.Adam(model2.parameters(), lr=1e-3)
    ckpt.unpack_optimizer(opt2, loaded, meta2["optim"])
    for (k1, v1), (k2, v2) in zip(
        model.state_dict().items(), model2.state_dict().items(), strict=True
    ):
        assert k1 == k2 and torch.equal(v1, v2)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["param_groups"] == s2["param_groups"]
    for i in s1["state"]:
        for key in s1["state"][i]:
            assert torch.equal(s1["state"][i][key], s2["state"][i][key])


def test_plain_pytorch_can_load_a_checkpoint(saved):
    from safetensors.torch import load_file

    from engine.models import build as build_model
    from engine.spec.preset_files import from_json

    path, _cfg, model, *_ = saved
    _header, meta = ckpt.read_header(path)
    fresh = build_model(from_json(meta["config"]))
    state = {
        k.removeprefix("model."): v
        for k, v in load_file(str(path)).items()
        if k.startswith("model.")
    }
    fresh.load_state_dict(state)
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(fresh.eval()(x), model.eval()(x))


def test_metadata_has_every_contract_key(saved):
    path = saved[0]
    _, meta = ckpt.read_header(path)
    for key in REQUIRED_META:
        assert key in meta
    assert meta["format"] == "workbench/1" and meta["epoch"] == "3"
    assert json.loads(meta["metrics"])["best_robust_acc"] == 12.5
    assert json.loads(meta["config"])["name"] == "tiny"


def test_truncated_foreign_and_missing_files_are_refused(saved, tmp_path):
    path = saved[0]
    data = path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[:-100])
    with pytest.raises(CheckpointError, match="truncated"):
        ckpt.load(cut)
    tiny = tmp_path / "tiny.safetensors"
    tiny.write_bytes(data[:5])
    with pytest.raises(CheckpointError, match="not a safetensors"):
        ckpt.read_header(tiny)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(3)}, str(foreign))
    with pytest.raises(CheckpointError, match=r"format.*not a workbench checkpoint"):
        ckpt.load(foreign)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(CheckpointError, match="header is not JSON"):
        ckpt.read_header(junk)
    with pytest.raises(CheckpointError, match="not found"):
        ckpt.read_header(tmp_path / "nope.safetensors")


def test_atomic_write_leaves_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "last.safetensors"
    atomic_write_bytes(target, b"old")

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["last.safetensors"]  # no temp left


def test_header_read_and_inspect_do_not_import_torch(saved):
    path = saved[0]
    commands = [
        ["inspect", str(path), "--json"],
        ["runs", "--runs-dir", str(path.parent)],
        ["presets"],
    ]
    code = (
        "import sys; from engine.records.checkpoint_header import read_header; "
        f"read_header({str(path)!r}); "
        "from workbench.cli import app; "
        f"[app(c, standalone_mode=False) for c in {commands!r}]; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert '"model_parameters"' in res.stdout and "mnist_atblr" in res.stdout
