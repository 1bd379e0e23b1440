"""The CUDA path, for the first machine with a GPU: `pytest -m cuda` (skipped without one).

Everything else in the suite runs on the CPU; these run the same parts on
`cuda:0`: the fast path (bf16, channels-last, cuDNN autotuning, compile), the
auto-batch probe, fp32 evaluation under bf16 training, DDP over NCCL at world
size 1, exact resume of the CUDA generator, a 1-epoch synthetic CIFAR run
through the command line, and `workbench doctor`.
"""

from __future__ import annotations

import json
import math
import socket
import threading
from pathlib import Path

import pytest
import torch

from engine import checkpoint_io as ckpt
from engine.data import load_dataset
from engine.records.events import EventWriter, read_events
from engine.spec.preset_files import load_preset
from engine.train import distributed, perf
from engine.train.distributed import SINGLE, World
from engine.train.trainer import Trainer
from tests.conftest import wb

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

DEV = torch.device("cuda", 0)
FAST = ["data.train_limit=192", "data.batch_size=32", "train.epochs=1", "train.device=cuda:0"]


def make(cfg, run_dir: Path, stop=None, world: World = SINGLE, device=DEV) -> Trainer:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "checkpoints").mkdir(exist_ok=True)
    writer = EventWriter(run_dir / "events.jsonl")
    data = load_dataset(cfg.data.dataset)
    return Trainer(cfg, data, run_dir, writer, device, stop or threading.Event(), world)


def steps(run_dir: Path) -> list[dict]:
    return [e for e in read_events(run_dir / "events.jsonl") if e["type"] == "step"]


def model_weights(path: Path) -> dict[str, torch.Tensor]:
    tensors, _ = ckpt.load(path)
    return {k: v for k, v in tensors.items() if k.startswith(("model.", "optim."))}


def test_amp_auto_is_bf16_on_a_bf16_gpu_and_every_option_takes_effect(tiny_preset, tmp_path):
    on = ["perf.amp=auto", "perf.channels_last=true", "perf.cudnn_benchmark=true"]
    t = make(load_preset(tiny_preset, [*FAST, *on]), tmp_path / "fast")
    info = t.fast.info
    native = torch.cuda.get_device_capability(DEV)[0] >= 8  # Ampere and later do bf16
    assert (perf.native_bf16(DEV) is not None) == native
    assert info["amp"] == ("bf16" if native else "off"), info["amp_reason"]
    assert info["channels_last"] is True and info["cudnn_benchmark"] is True
    assert info["deterministic"] is False  # train.deterministic governs CPU runs only
    assert all(p.device == DEV for p in t.model.parameters())
    assert t.run().status == "finished"
    fast = steps(tmp_path / "fast")
    assert fast and all(math.isfinite(e["loss"]) for e in fast)
    # memory stats are this run's, read without a sync, and the probe-free peak is sane
    assert all(0 < e["gpu_mem_mb"] <= e["gpu_peak_mb"] for e in fast)

    plain = make(load_preset(tiny_preset, [*FAST, "perf.amp=off"]), tmp_path / "plain")
    assert plain.run().status == "finished"
    ref = steps(tmp_path / "plain")
    # same seed, same batches: the curves agree up to bf16 rounding of the forward passes
    assert [e["step"] for e in fast] == [e["step"] for e in ref]
    assert fast[0]["loss"] == pytest.approx(ref[0]["loss"], rel=0.1)


def test_compile_takes_effect_on_cuda(tiny_preset, tmp_path):
    t = make(load_preset(tiny_preset, [*FAST, "perf.compile=true"]), tmp_path / "r")
    assert t.fast.info["compiled"] is True, t.fast.warnings
    assert t.run().status == "finished"
    assert all(math.isfinite(e["loss"]) for e in steps(tmp_path / "r"))


def test_auto_batch_probes_the_real_step_and_leaves_no_trace(tiny_preset, tmp_path):
    sets = ["train.epochs=1", "train.device=cuda:0", "perf.amp=auto"]
    auto = make(load_preset(tiny_preset, [*sets, "data.batch_size=auto"]), tmp_path / "auto")
    rng_cuda, rng_cpu = torch.cuda.get_rng_state(DEV), torch.get_rng_state()
    info = auto.fast.info
    n = len(auto.train_loader.y)
    batch = info["batch_size"]
    probes = info["batch_probe"]
    assert probes and all(p["fits"] for p in probes)  # a LeNet never fills a GPU
    assert all(0 < p["memory_share"] <= 0.9 for p in probes)
    assert batch == 1 << (n.bit_length() - 1)  # the largest power of two the data allows
    assert auto.cfg.data.batch_size == batch  # resolved into the run's config

    fixed = make(load_preset(tiny_preset, [*sets, f"data.batch_size={batch}"]), tmp_path / "f")
    # probing trained real steps, then put weights, optimiser and both generators back
    for (k, a), (_, b) in zip(
        auto.model.state_dict().items(), fixed.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), k
    assert not auto.optim.state
    assert torch.equal(rng_cuda, torch.cuda.get_rng_state(DEV))
    assert torch.equal(rng_cpu, torch.get_rng_state())


def test_bf16_training_never_touches_evaluation(tiny_preset, tmp_path):
    t = make(load_preset(tiny_preset, [*FAST, "perf.amp=bf16"]), tmp_path / "r")
    dtypes: list[torch.dtype] = []
    hook = t.model.head.register_forward_hook(lambda m, i, out: dtypes.append(out.dtype))
    assert t._train_epoch() is False
    assert dtypes and set(dtypes) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in t.model.parameters())
    dtypes.clear()
    m = t.evaluate()
    hook.remove()
    assert dtypes and set(dtypes) == {torch.float32}
    assert 0.0 <= m["robust_acc"] <= m["clean_acc"] <= 100.0


class OneRank(World):
    """A distributed world of one process: DDP and NCCL in the loop, nothing to compare across."""

    @property
    def enabled(self) -> bool:
        return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_over_nccl_at_world_size_1_trains_like_one_process(tiny_preset, tmp_path, monkeypatch):
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    sets = [*FAST, "perf.amp=off", "attack.random_start=false", "distributed.backend=nccl"]
    cfg = load_preset(tiny_preset, sets)
    world = OneRank(0, 1, 0, 1)
    dev = distributed.init(world, cfg.distributed, DEV)
    try:
        assert distributed.backend_name() == "nccl" and dev == DEV
        ddp = make(cfg, tmp_path / "ddp", world=world, device=dev)
        assert isinstance(ddp.train_model, distributed.TrainView)
        assert ddp.run().status == "finished"
    finally:
        distributed.shutdown()
    plain = make(cfg, tmp_path / "plain")
    assert plain.run().status == "finished"
    a, b = steps(tmp_path / "ddp"), steps(tmp_path / "plain")
    assert [e["step"] for e in a] == [e["step"] for e in b] and a
    for x, y in zip(a, b, strict=True):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-4, abs=1e-6), x["step"]
    wa = model_weights(tmp_path / "ddp" / "last.safetensors")
    wb_ = model_weights(tmp_path / "plain" / "last.safetensors")
    for k in wa:
        torch.testing.assert_close(wa[k], wb_[k], rtol=1e-4, atol=1e-6, msg=k)


def test_resume_restores_the_cuda_generator_and_continues_the_run(
    tiny_preset, tmp_path, monkeypatch
):
    """Random attack starts draw from the CUDA generator: resume must put it back exactly."""
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    sets = [*FAST, "perf.amp=off", "train.log_every=1", "train.epochs=2"]
    assert load_preset(tiny_preset, sets).attack.random_start
    full = make(load_preset(tiny_preset, sets), tmp_path / "full")
    assert full.run().status == "finished"

    stop = threading.Event()
    cut = make(load_preset(tiny_preset, sets), tmp_path / "cut", stop)
    cut.writer.listeners.append(lambda e: stop.set() if e.get("step") == 3 else None)
    assert cut.run().status == "interrupted"
    cut.writer.close()
    saved, meta = ckpt.load(tmp_path / "cut" / "last.safetensors")
    assert "rng.cuda" in saved and meta["device"] == "cuda:0"

    again = make(load_preset(tiny_preset, sets), tmp_path / "cut")
    torch.cuda.manual_seed_all(12345)  # whatever the generator holds now is overwritten
    again.resume(tmp_path / "cut" / "last.safetensors")
    assert torch.equal(torch.cuda.get_rng_state(DEV), saved["rng.cuda"])
    assert again.run().status == "finished"
    a = model_weights(tmp_path / "full" / "last.safetensors")
    b = model_weights(tmp_path / "cut" / "last.safetensors")
    for k in a:  # other random starts would move the weights by ~1e-3, far outside this
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-7, msg=k)


def test_one_epoch_of_synthetic_cifar_trains_and_evaluates_from_the_command_line(tmp_path):
    sets = [
        "data.dataset=synthetic-cifar10",
        "data.train_limit=1024",
        "train.epochs=1",
        "eval.samples=64",
    ]
    args = ["run", "cifar10_resnet18_madry", "--headless", "--name", "c", "--device", "cuda"]
    for s in sets:
        args += ["--set", s]
    res = wb(*args, cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr
    run = tmp_path / "runs" / "c"
    events = read_events(run / "events.jsonl")
    started = next(e for e in events if e["type"] == "run_started")
    assert started["device"] == "cuda:0"
    assert started["perf"]["amp"] == ("bf16" if perf.native_bf16(DEV) else "off")
    assert any(e["type"] == "run_finished" for e in events)
    ev = ["eval", str(run / "best.safetensors"), "--samples", "128", "--device", "cuda", "--json"]
    res = wb(*ev, cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["device"].startswith("cuda")


def test_doctor_passes_every_fast_path_option_on_this_gpu():
    from engine.doctor import check

    doc = check("cuda")
    assert doc["device"] == "cuda:0"
    assert doc["versions"]["cuda"] and doc["versions"]["cudnn"] and doc["versions"]["nccl"]
    gpu = next(d for d in doc["devices"] if d["device"] == "cuda:0")
    assert gpu["memory_gib"] > 0 and gpu["tf32"] is not None
    by = {r["option"]: r for r in doc["smoke"]}
    assert all(r["status"] == "PASS" for r in by.values()), by
    assert all(r["samples_per_s"] > 0 for r in by.values())
    assert doc["failed_used"] == []
