"""The fast path ([perf], batch_size = "auto"): off means bit-exact, on means close, no host syncs.

Everything here runs on the CPU: the CUDA-only parts (cuDNN autotuning, the
memory probe's OOM) are exercised through injected stand-ins.
"""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from engine import checkpoint_io as ckpt
from engine import devices
from engine.data import load_dataset
from engine.loader import TensorLoader, epoch_generator
from engine.models import build
from engine.records.events import EventWriter, read_events
from engine.spec.errors import ConfigError, WorkbenchError
from engine.spec.preset_files import load_preset
from engine.splits import split
from engine.train import perf
from engine.train.methods.base import build_method
from engine.train.schedule import build_optimizer
from engine.train.trainer import Trainer
from tests.conftest import TINY_PRESET, write_preset

CPU = torch.device("cpu")


def make(cfg, run_dir: Path) -> Trainer:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "checkpoints").mkdir(exist_ok=True)
    writer = EventWriter(run_dir / "events.jsonl")
    return Trainer(cfg, load_dataset(cfg.data.dataset), run_dir, writer, CPU, threading.Event())


def train_one_epoch(t: Trainer) -> dict[str, torch.Tensor]:
    assert t._train_epoch() is False
    return {k: v.detach().clone() for k, v in t.model.state_dict().items()}


FAST = ["data.train_limit=96", "data.batch_size=32", "train.epochs=1"]


# ------------------------------------------------------------ defaults and options


def test_default_perf_is_bit_identical_to_the_plain_loop(tiny_preset, tmp_path):
    """With [perf] off the trainer's step is exactly the loop it was before the fast path."""
    sets = [*FAST, "data.augment=true", "data.flip=true", "data.crop_padding=2"]
    cfg = load_preset(tiny_preset, [*sets, "perf.amp=off", "perf.channels_last=false"])
    t = make(cfg, tmp_path / "r")
    assert t.fast.model is t.model and t.fast.amp_dtype is None and not t.fast.channels_last
    ours = train_one_epoch(t)

    ref_cfg = load_preset(tiny_preset, sets)
    torch.manual_seed(ref_cfg.train.seed)
    model = build(ref_cfg)
    method, optim = build_method(ref_cfg), build_optimizer(ref_cfg, model)
    data = load_dataset(ref_cfg.data.dataset)
    train = split(data).train[:96]  # the run's training split (validation held out), limited
    loader = TensorLoader(
        data.train_x[train],
        data.train_y[train],
        32,
        CPU,
        shuffle=True,
        augment=t.train_loader.augment,
    )
    for x, y in loader.epoch(epoch_generator(ref_cfg.train.seed, 0)):
        model.train()
        loss, _ = method.loss(model, x, y)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
    for k, v in model.state_dict().items():
        assert torch.equal(ours[k], v), k


@pytest.mark.parametrize("method", ["standard", "madry"])
def test_channels_last_matches_default_within_float_tolerance(tiny_preset, tmp_path, method):
    base = load_preset(tiny_preset, [*FAST, f"method.name={method}"])
    cl = load_preset(tiny_preset, [*FAST, f"method.name={method}", "perf.channels_last=true"])
    a = train_one_epoch(make(base, tmp_path / "a"))
    t = make(cl, tmp_path / "b")
    conv = next(m for m in t.model.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    seen: list[bool] = []
    hook = conv.register_forward_pre_hook(
        lambda m, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    b = train_one_epoch(t)
    hook.remove()
    assert seen and all(seen)  # the batches (and the attack's iterates) arrive as NHWC
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-3, atol=1e-4, msg=k)


def test_bf16_autocast_covers_training_forwards_but_never_evaluation(tiny_preset, tmp_path):
    """amp on CPU is allowed (bf16 autocast); evaluation runs in fp32 all the same."""
    t = make(load_preset(tiny_preset, [*FAST, "perf.amp=bf16"]), tmp_path / "r")
    assert t.fast.info["autocast_dtype"] == "bfloat16"
    slow_here = perf.native_bf16(CPU) is None  # bf16 without native support: said so
    assert any("perf.amp" in w for w in t.fast.warnings) == slow_here
    dtypes: list[torch.dtype] = []
    head = t.model.head
    hook = head.register_forward_hook(lambda m, i, out: dtypes.append(out.dtype))
    train_one_epoch(t)
    assert dtypes and set(dtypes) == {torch.bfloat16}  # PGD steps and the update
    assert all(p.dtype == torch.float32 for p in t.model.parameters())
    dtypes.clear()
    m = t.evaluate()
    clean, robust = m["clean_acc"], m["robust_acc"]
    hook.remove()
    assert dtypes and set(dtypes) == {torch.float32}
    assert 0.0 <= robust <= clean <= 100.0


def test_run_started_records_effective_settings_and_cpu_auto_batch(tiny_preset, tmp_path):
    cfg = load_preset(
        tiny_preset,
        [
            "data.train_limit=128",
            "data.batch_size=auto",
            "train.epochs=1",
            "perf.cudnn_benchmark=true",
        ],
    )
    t = make(cfg, tmp_path / "r")
    assert t.fast.batch_size == perf.CPU_AUTO_BATCH == 128
    assert t.cfg.data.batch_size == 128  # resolved: config.toml and checkpoints record it
    assert cfg.data.batch_size == "auto"  # the caller's config is left as it was
    assert t.run().status == "finished"
    events = read_events(tmp_path / "r" / "events.jsonl")
    started = events[0]
    assert started["type"] == "run_started"
    info = started["perf"]
    assert info["batch_size_requested"] == "auto" and info["batch_size"] == 128
    assert info["amp"] == "off" and info["autocast_dtype"] is None
    assert info["compiled"] is False and info["cudnn_benchmark"] is False
    assert started["config"]["data"]["batch_size"] == 128
    assert started["config"]["perf"]["cudnn_benchmark"] is True  # asked for, recorded
    warnings = [e["message"] for e in events if e["type"] == "warning"]
    assert any("batch_size = 'auto'" in w and "128" in w for w in warnings)
    assert any("cudnn_benchmark" in w for w in warnings)
    _, meta = ckpt.read_header(tmp_path / "r" / "last.safetensors")
    resumed_cfg = load_preset(write_preset(tmp_path / "c.toml", t.cfg.to_toml()))
    assert resumed_cfg.data.batch_size == 128 and '"batch_size": 128' in meta["config"]


def test_compile_failure_falls_back_to_eager_with_a_warning(tiny_preset, tmp_path):
    cfg = load_preset(tiny_preset, FAST)
    model = build(cfg)
    method, optim = build_method(cfg), build_optimizer(cfg, model)
    data = load_dataset(cfg.data.dataset)
    before = {k: v.clone() for k, v in model.state_dict().items()}

    class Broken(nn.Module):  # compiles "fine", fails on first use, as inductor errors do
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("backend compiler failed\nlong traceback")

    cfg.perf.compile = True
    inputs = {"model": model, "method": method, "optim": optim, "device": CPU}
    train = {"train_x": data.train_x, "train_y": data.train_y}
    fast = perf.setup(cfg.perf, requested_batch=32, **inputs, **train, compile_fn=Broken)
    assert fast.model is model and fast.info["compiled"] is False
    assert "backend compiler failed" in fast.info["compile_error"]
    assert any("perf.compile" in w and "uncompiled" in w for w in fast.warnings)
    ok = perf.setup(cfg.perf, requested_batch=32, **inputs, **train, compile_fn=lambda m: m)
    assert ok.info["compiled"] is True
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # the trial steps left no trace


# ------------------------------------------------------------ batch_size = "auto"


def oom_above(n: int, calls: list[int]):
    def trial(b: int) -> float | None:
        calls.append(b)
        if b > n:
            raise torch.OutOfMemoryError(f"CUDA out of memory trying batch {b}")
        return None

    return trial


def test_auto_batch_search_keeps_the_largest_power_of_two_that_fits():
    calls: list[int] = []
    assert devices.search_batch_size(oom_above(300, calls), limit=50_000)[0] == 256
    assert calls == [32, 64, 128, 256, 512]
    calls.clear()
    b, log = devices.search_batch_size(oom_above(10**9, calls), limit=100)  # train set caps it
    assert b == 64 and calls == [32, 64] and all(e["fits"] for e in log)
    calls.clear()
    assert devices.search_batch_size(oom_above(20, calls), limit=50_000)[0] == 16
    assert calls == [32, 16]
    assert devices.search_batch_size(oom_above(10**9, []), limit=5)[0] == 4
    with pytest.raises(WorkbenchError, match=r"data\.batch_size.*not even 1"):
        devices.search_batch_size(oom_above(0, []), limit=1000)


def test_auto_batch_search_keeps_headroom_and_reraises_other_errors():
    shares = {32: 0.2, 64: 0.4, 128: 0.8, 256: 0.95}
    cleaned: list[int] = []
    b, log = devices.search_batch_size(
        lambda n: shares[n], limit=10_000, cleanup=lambda: cleaned.append(1)
    )
    assert b == 128 and log[-1] == {
        "batch": 256,
        "fits": False,
        "memory_share": 0.95,
        "reason": "peak memory above 90% of the device",
    }
    assert len(cleaned) == 4  # memory freed after every probe

    def broken(b: int) -> float:
        raise ValueError("a bug, not a memory limit")

    with pytest.raises(ValueError, match="a bug"):
        devices.search_batch_size(broken, limit=100)


def test_probing_real_steps_leaves_weights_optimizer_and_rng_untouched(tiny_preset):
    cfg = load_preset(tiny_preset, ["optim.name=sgd", "optim.momentum=0.9"])
    torch.manual_seed(0)
    model = build(cfg)
    method, optim = build_method(cfg), build_optimizer(cfg, model)
    data = load_dataset(cfg.data.dataset)
    x, y = data.train_x[:64].float() / 255, data.train_y[:64]
    F = torch.nn.functional
    optim.zero_grad()
    F.cross_entropy(model(x), y).backward()
    optim.step()  # a momentum buffer exists: its state must survive too
    before = {k: v.clone() for k, v in model.state_dict().items()}
    buf = {id(p): s["momentum_buffer"].clone() for p, s in optim.state.items()}
    model.eval()
    rng = torch.get_rng_state()
    trial = perf.make_step_trial(model, method, optim, data.train_x, data.train_y, CPU)
    with perf.preserved_state(model, optim, CPU):
        b, log = devices.search_batch_size(trial, limit=128)
        changed = any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert b == 128 and [e["batch"] for e in log] == [32, 64, 128]
    assert changed  # the probes really trained...
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # ...and were undone
    assert {id(p): s["momentum_buffer"] for p, s in optim.state.items()}.keys() == buf.keys()
    for p, s in optim.state.items():
        assert torch.equal(s["momentum_buffer"], buf[id(p)])
    assert all(p.grad is None for p in model.parameters())
    assert not model.training and torch.equal(torch.get_rng_state(), rng)


# ------------------------------------------------------------ no host sync inside the step

SYNC_OPS = {"aten::_local_scalar_dense", "aten::nonzero", "aten::masked_select", "aten::is_nonzero"}
MASK_OPS = {"aten::index", "aten::index_put", "aten::index_put_", "aten::_index_put_impl_"}


def _bool_index(args) -> bool:
    return any(
        isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8)
        for a in args
        if isinstance(a, list | tuple)
        for i in a
    )


class SyncCounter(TorchDispatchMode):
    """Counts what would make a CUDA step wait for the host: scalar reads, data-dependent shapes.

    Sees the ops under autograd (backward included), which patching Tensor
    methods alone would miss (C++ `.item()`, boolean-mask indexing).
    """

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.active = True
        self.what: list[str] = []

    def hit(self, what: str) -> None:
        if self.active:
            self.count += 1
            self.what.append(what)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name
        if name in SYNC_OPS or (name in MASK_OPS and _bool_index(args)):
            self.hit(name)
        return func(*args, **(kwargs or {}))


METHOD_SETS = {
    "standard": ["method.name=standard"],
    "madry": ["method.name=madry"],
    "madry-restarts": ["method.name=madry", "attack.restarts=2"],
    "trades": ["method.name=trades"],
    "atblr": ["method.name=atblr", "model.head=gaussian"],
    "apinet": ["method.name=apinet", "defense.name=apinet", "defense.steps=1"],
}


@pytest.mark.parametrize("name", list(METHOD_SETS))
def test_no_host_sync_inside_training_steps(tiny_preset, tmp_path, monkeypatch, name):
    sets = [
        *METHOD_SETS[name],
        "data.train_limit=80",
        "data.batch_size=16",  # 5 steps
        "train.log_every=2",  # logs after steps 2, 4 and 5 (end of epoch)
        "attack.steps=1",  # the dispatch-mode counter makes every op slow; one PGD step will do
        "data.augment=true",
        "data.flip=true",
        "data.crop_padding=2",
    ]
    t = make(load_preset(tiny_preset, sets), tmp_path / "r")
    counter = SyncCounter()
    for attr in ("item", "tolist", "__bool__", "cpu", "numpy"):
        real = getattr(torch.Tensor, attr)

        def patched(self, *a, _real=real, _attr=attr, **k):
            counter.hit(f"Tensor.{_attr}")
            return _real(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, attr, patched)

    # torch.optim reads its step counter with .item(), but that tensor lives on the CPU
    # (unless capturable), so it is no device sync: the optimiser step is not counted.
    real_step = t.optim.step

    def optim_step(*a, **k):
        counter.active = False
        try:
            return real_step(*a, **k)
        finally:
            counter.active = True

    t.optim.step = optim_step
    marks: list[int] = []
    real_loss = t.method.loss

    def loss(model, x, y):
        marks.append(counter.count)
        return real_loss(model, x, y)

    t.method.loss = loss
    with counter:
        train_one_epoch(t)
    marks.append(counter.count)
    per_step = [b - a for a, b in itertools.pairwise(marks)]
    assert len(per_step) == 5
    logging = {2, 4, 5}
    quiet = {s: n for s, n in enumerate(per_step, 1) if s not in logging}
    assert all(n == 0 for n in quiet.values()), (quiet, counter.what)
    assert all(per_step[s - 1] > 0 for s in logging)  # the counter does see the logging read


# ------------------------------------------------------------ config errors


@pytest.mark.parametrize(
    ("edit", "needles"),
    [
        (('amp = "off"', 'amp = "fp8"'), ["tiny.toml", "perf.amp", "'fp8'"]),
        (("batch_size = 64\n", 'batch_size = "big"\n'), ["tiny.toml", "data.batch_size", "auto"]),
        (("batch_size = 64\n", "batch_size = 0\n"), ["tiny.toml", "data.batch_size", ">= 1"]),
        (("[perf]\n", "[perf]\nturbo = true\n"), ["perf.turbo", "unknown", "compile"]),
    ],
)
def test_bad_perf_and_batch_values_name_the_key(tmp_path, edit, needles):
    path = write_preset(tmp_path / "tiny.toml", TINY_PRESET.replace(*edit, 1))
    with pytest.raises(ConfigError) as info:
        load_preset(path)
    msg = str(info.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, msg


def test_auto_batch_is_accepted_from_presets_and_overrides(tiny_preset, tmp_path):
    assert load_preset(tiny_preset, ["data.batch_size=auto"]).data.batch_size == "auto"
    path = write_preset(
        tmp_path / "a.toml", TINY_PRESET.replace("batch_size = 64", 'batch_size = "auto"')
    )
    assert load_preset(path).data.batch_size == "auto"


def test_amp_auto_is_bf16_where_the_hardware_has_it_and_recorded(
    tiny_preset, tmp_path, monkeypatch
):
    native = perf.native_bf16(CPU)
    amp, reason = perf.resolve_amp("auto", CPU)
    assert (amp == "bf16") == (native is not None) and reason.startswith("auto")
    assert perf.resolve_amp("off", CPU) == ("off", "perf.amp = 'off'")
    monkeypatch.setattr(perf, "native_bf16", lambda device: None)
    assert perf.resolve_amp("auto", CPU) == ("off", "auto: no native bf16 on this cpu")
    monkeypatch.setattr(perf, "native_bf16", lambda device: "AMX")
    t = make(load_preset(tiny_preset, [*FAST, "perf.amp=auto"]), tmp_path / "r")
    assert t.fast.amp_dtype == torch.bfloat16 and not t.fast.warnings
    assert t.run().status == "finished"
    info = read_events(tmp_path / "r" / "events.jsonl")[0]["perf"]
    assert (info["amp_requested"], info["amp"], info["amp_reason"]) == (
        "auto",
        "bf16",
        "auto: native bf16 (AMX)",
    )
    assert (info["channels_last_requested"], info["channels_last"]) == ("auto", True)


def test_channels_last_auto_follows_bf16_and_an_explicit_value_wins(tiny_preset, tmp_path):
    """NHWC measured faster with bf16; fp32 runs keep the plain layout unless asked."""
    assert perf.resolve_channels_last("auto", "bf16") is True
    assert perf.resolve_channels_last("auto", "off") is False
    assert perf.resolve_channels_last(False, "bf16") is False
    assert perf.resolve_channels_last(True, "off") is True
    fp32 = make(load_preset(tiny_preset, FAST), tmp_path / "a")  # amp off, channels auto
    assert fp32.fast.channels_last is False and fp32.fast.info["channels_last"] is False
    conv = [m for m in fp32.model.modules() if isinstance(m, nn.Conv2d)][-1]  # C_in > 1
    assert not conv.weight.is_contiguous(memory_format=torch.channels_last)
    bf16 = make(load_preset(tiny_preset, [*FAST, "perf.amp=bf16"]), tmp_path / "b")
    conv = [m for m in bf16.model.modules() if isinstance(m, nn.Conv2d)][-1]
    assert bf16.fast.channels_last and conv.weight.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(WorkbenchError, match="channels_last"):
        load_preset(tiny_preset, ["perf.channels_last='sometimes'"])


def test_a_bf16_run_resumed_mid_epoch_equals_the_uninterrupted_one(tiny_preset, tmp_path):
    from tests.test_trainer import assert_same, weights
    from tests.test_trainer import make as make_stoppable

    sets = [*FAST, "perf.amp=bf16", "train.log_every=1", "train.epochs=2"]
    full = make(load_preset(tiny_preset, sets), tmp_path / "full")
    assert full.run().status == "finished"
    stop = threading.Event()
    cut = make_stoppable(load_preset(tiny_preset, sets), tmp_path / "cut", stop)
    cut.writer.listeners.append(lambda e: stop.set() if e.get("step") == 3 else None)
    assert cut.run().status == "interrupted"
    cut.writer.close()
    again = make(load_preset(tiny_preset, sets), tmp_path / "cut")
    again.resume(tmp_path / "cut" / "last.safetensors")
    assert again.run().status == "finished"
    assert_same(
        weights(tmp_path / "full" / "last.safetensors"),
        weights(tmp_path / "cut" / "last.safetensors"),
    )
