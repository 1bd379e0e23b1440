"""The GPU fast path: apply a preset's `[perf]` options and resolve `batch_size = "auto"`.

With `amp = "off"`, the other options off and an integer batch size, `setup`
changes nothing, so CPU runs are bit-exact with the plain loop. What each option does:

* `amp = "bf16"`: the training step's forward passes (the method loss, which
  includes the training adversary's inner PGD) run under bf16 autocast; the
  backward pass and the optimiser stay outside it and the weights stay fp32.
  bf16 has fp32's exponent range, so no GradScaler is needed. Evaluation
  (per-epoch and `workbench eval`) never autocasts: robustness numbers must not
  depend on amp. `amp = "auto"` (the default) is bf16 where the hardware does
  bf16 natively (a CPU with avx512_bf16 or AMX: 1.6x on a SmallCNN ATBLR epoch
  here; a CUDA device with bf16) and fp32 elsewhere; `run_started` says which and why.
* `channels_last`: the model's weights and every training batch in NHWC, the
  layout tensor cores and cuDNN prefer; values are unchanged up to float rounding.
* `cudnn_benchmark`: cuDNN autotuning. Only on CUDA; training shapes are fixed,
  so the one-off search pays for itself. `train.deterministic` only governs CPU
  runs (see engine/trainer.py), so asking for this on CUDA is honoured.
* `compile`: `torch.compile` of the model used by the training step (the
  eager model stays for evaluation and checkpoints, same parameters). The
  compile happens up front in one trial step; if it fails the run goes on eager
  and says so in a `warning` event.

`batch_size = "auto"` probes, on CUDA, the method's whole training step
(attack + loss + backward + optimiser step) on doubling batches from 32 until
one runs out of memory (or crosses `HEADROOM` of the device) or the training
set is exhausted, and keeps the largest power of two that fitted. Probes run on
the real model and optimiser inside `preserved_state`, which restores weights,
optimiser state and RNG afterwards: probing never changes the run. On CPU there
is no memory wall to find (and probing would take minutes), so "auto" means
`CPU_AUTO_BATCH` = 128 with a warning. The trainer writes the resolved number
back into the config, so config.toml, checkpoints and resume use it.

Nothing in the step synchronises with the host: see tests/test_perf.py.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from engine.devices import Trial, release_memory, search_batch_size
from engine.spec.config import PerfConfig

if TYPE_CHECKING:
    from engine.train.methods.base import Method

CPU_AUTO_BATCH = 128  # "auto" on CPU: a good size for the small CPU models, no probing
AUTO_START = 32  # first batch the CUDA probe tries

AMP_DTYPES: dict[str, torch.dtype | None] = {"off": None, "bf16": torch.bfloat16}


def native_bf16(device: torch.device) -> str | None:
    """Why this device does bf16 natively ("avx512_bf16", "AMX", "CUDA bf16"), or None."""
    if device.type == "cuda":  # this device's, not the current one's; emulated bf16 is slow
        with torch.cuda.device(device):
            native = torch.cuda.is_bf16_supported(including_emulation=False)
        return "CUDA bf16" if native else None
    if device.type == "cpu":
        cpu = torch.cpu
        if getattr(cpu, "_is_amx_tile_supported", lambda: False)():
            return "AMX"
        if getattr(cpu, "_is_avx512_bf16_supported", lambda: False)():
            return "avx512_bf16"
    return None


def resolve_amp(requested: str, device: torch.device) -> tuple[str, str]:
    """The amp a run uses ("off" or "bf16") and the reason, from what its preset asks."""
    if requested != "auto":
        return requested, f"perf.amp = {requested!r}"
    native = native_bf16(device)
    if native is None:
        return "off", f"auto: no native bf16 on this {device.type}"
    return "bf16", f"auto: native bf16 ({native})"


def resolve_channels_last(requested: bool | str, amp: str) -> bool:
    """NHWC as asked; "auto": with bf16, where it measured faster (1.9x on an AMX CPU).

    In fp32 on that CPU NHWC gained 1.2x, but "auto" keeps fp32 runs in the
    plain layout, bit-exact with the plain loop; `channels_last = true` asks for it.
    """
    if requested == "auto":
        return amp == "bf16"
    return bool(requested)


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """A 4-D image batch in NHWC memory order (other tensors unchanged)."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager[Any]:
    """bf16 autocast on `device`, or a no-op context when amp is off."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)


@contextmanager
def preserved_state(
    model: nn.Module, optim: torch.optim.Optimizer | None, device: torch.device
) -> Iterator[None]:
    """Run trial steps without a trace: weights, buffers, optimiser state, grads and RNG restored.

    The weight snapshot lives on the CPU so that it does not inflate the
    device memory a batch-size probe measures.
    """
    weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    opt_state = copy.deepcopy(optim.state_dict()) if optim is not None else None
    modes = [(m, m.training) for m in model.modules()]
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            model.load_state_dict(weights)  # in-place copies: memory format kept
            if optim is not None and opt_state is not None:
                optim.load_state_dict(opt_state)
                optim.zero_grad(set_to_none=True)
            model.zero_grad(set_to_none=True)
            for m, was_training in modes:
                m.training = was_training


def make_step_trial(
    model: nn.Module,
    method: Method,
    optim: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    device: torch.device,
    *,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> Trial:
    """trial(b): one full training step on the first b training images, as the trainer runs it.

    Returns the peak reserved share of device memory on CUDA (None elsewhere);
    raises torch.OutOfMemoryError when b does not fit. `x` is the uint8 train
    set (already on `device`). Call it inside `preserved_state`.
    """

    def trial(b: int) -> float | None:
        xb = x[:b].to(device).float().div_(255.0)
        yb = y[:b].to(device)
        if channels_last:
            xb = to_channels_last(xb)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        try:
            model.train()
            with autocast(device, amp_dtype):
                loss, _ = method.loss(model, xb, yb)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            del loss
            if device.type != "cuda":
                return None
            torch.cuda.synchronize(device)
            total = torch.cuda.get_device_properties(device).total_memory
            return torch.cuda.max_memory_reserved(device) / total
        finally:
            optim.zero_grad(set_to_none=True)
            del xb, yb

    return trial


@dataclass
class PerfSetup:
    """The effective fast-path settings of one run, as the training step uses them."""

    model: nn.Module  # what the training step calls (compiled, or the eager model itself)
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False
    batch_size: int = 128
    info: dict[str, Any] = field(default_factory=dict)  # for the run_started event
    warnings: list[str] = field(default_factory=list)  # emitted as warning events at the start

    def autocast(self, device: torch.device) -> AbstractContextManager[Any]:
        return autocast(device, self.amp_dtype)


def setup(
    perf: PerfConfig,
    *,
    requested_batch: int | str,
    model: nn.Module,
    method: Method,
    optim: torch.optim.Optimizer,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    device: torch.device,
    deterministic: bool = True,
    compile_fn: Callable[[nn.Module], nn.Module] | None = None,
) -> PerfSetup:
    """Apply `perf` to `model` (in place: memory format) and the process (cuDNN), resolve the batch.

    With every option off and an integer batch this only records the settings.
    `compile_fn` replaces torch.compile (tests use it to exercise the fallback).
    """
    is_cuda = device.type == "cuda"
    amp, amp_reason = resolve_amp(perf.amp, device)
    amp_dtype = AMP_DTYPES[amp]
    channels_last = resolve_channels_last(perf.channels_last, amp)
    out = PerfSetup(model, amp_dtype, channels_last)
    info: dict[str, Any] = {
        "amp": amp,
        "amp_requested": perf.amp,
        "amp_reason": amp_reason,
        "autocast_dtype": str(amp_dtype).removeprefix("torch.") if amp_dtype else None,
        "channels_last": channels_last,
        "channels_last_requested": perf.channels_last,
        "compile_requested": perf.compile,
        "compiled": False,
    }
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if is_cuda:
        if perf.cudnn_benchmark:
            torch.backends.cudnn.benchmark = True
        info["cudnn_benchmark"] = torch.backends.cudnn.benchmark
        info["cudnn_deterministic"] = torch.backends.cudnn.deterministic
        info["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
        info["tf32_cudnn"] = torch.backends.cudnn.allow_tf32
    else:
        info["cudnn_benchmark"] = False
        if perf.cudnn_benchmark:
            out.warnings.append("perf.cudnn_benchmark: ignored, the run is not on CUDA")
    if amp == "bf16" and native_bf16(device) is None:
        out.warnings.append(
            f"perf.amp = 'bf16' on a {device.type} without native bf16: autocast works here "
            "but is usually slower than fp32"
        )
    info["deterministic"] = deterministic and not is_cuda  # in effect: CPU runs only

    def trial_with(m: nn.Module) -> Trial:
        return make_step_trial(
            m,
            method,
            optim,
            train_x,
            train_y,
            device,
            amp_dtype=amp_dtype,
            channels_last=channels_last,
        )

    # -- batch size
    n = len(train_y)
    if requested_batch == "auto":
        if is_cuda:
            trial = trial_with(model)
            t0 = time.perf_counter()
            with preserved_state(model, optim, device):
                batch, probes = search_batch_size(
                    trial, n, AUTO_START, cleanup=lambda: release_memory(device)
                )
            release_memory(device)
            info["batch_probe"] = probes
            info["batch_probe_seconds"] = round(time.perf_counter() - t0, 3)
        else:
            batch = CPU_AUTO_BATCH
            out.warnings.append(
                f"data.batch_size = 'auto' on {device.type}: no device memory to probe, "
                f"using {CPU_AUTO_BATCH}"
            )
    else:
        batch = int(requested_batch)
    out.batch_size = batch
    if is_cuda:  # the probe's peak is not the run's: step events report the training peak
        torch.cuda.reset_peak_memory_stats(device)
    info["batch_size_requested"] = requested_batch
    info["batch_size"] = batch

    # -- compile (after probing: probing recompiles for every shape otherwise)
    if perf.compile:
        compiled, error, seconds = try_compile(
            model, trial_with, min(batch, n), device, optim, compile_fn
        )
        info["compile_seconds"] = round(seconds, 3)
        if error is None:
            out.model = compiled
            info["compiled"] = True
        else:
            info["compile_error"] = error
            out.warnings.append(
                f"perf.compile: torch.compile failed ({error}); training continues uncompiled"
            )
    out.info = info
    return out


def try_compile(
    model: nn.Module,
    trial_with: Callable[[nn.Module], Trial],
    batch: int,
    device: torch.device,
    optim: torch.optim.Optimizer,
    compile_fn: Callable[[nn.Module], nn.Module] | None = None,
) -> tuple[nn.Module, str | None, float]:
    """Compile `model` and run one trial step with it, so failures surface now, not mid-run.

    torch.compile is lazy: the graphs (train mode for the update, eval mode for
    the attack) are built on first use. The trial step runs inside
    `preserved_state`, so it leaves weights, optimiser and RNG as they were.
    Returns (model to train with, error text or None, seconds spent).
    """
    t0 = time.perf_counter()
    try:
        compiled = (compile_fn or torch.compile)(model)
        with preserved_state(model, optim, device):
            trial_with(compiled)(batch)
    except Exception as exc:  # any compiler failure: fall back to eager
        release_memory(device)
        msg = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        return model, msg, time.perf_counter() - t0
    release_memory(device)
    return compiled, None, time.perf_counter() - t0
