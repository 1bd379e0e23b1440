"""The preset tables of how a run trains and keeps its work: optimiser, schedule, training,
speed, distributed, per-epoch evaluation, the overfitting guard, checkpoints and logging."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from engine.spec.sections import NonNegReal, PosReal, Section, Unit, parse_fraction


class OptimConfig(Section):
    name: Literal["sgd", "adam"] = "adam"
    lr: PosReal = 1e-3
    momentum: Unit = 0.9
    weight_decay: NonNegReal = 0.0
    nesterov: bool = False


class ScheduleConfig(Section):
    """The learning rate per epoch.

    `multistep` multiplies it by `gamma` at each milestone. With
    `convention = "paper"` (the default) milestone m is the first 1-based epoch
    trained at the lower rate, as the TRADES and Madry code write it
    (`if epoch >= m`); with "torch" it is the number of epochs completed
    before the decay, as `torch.optim.lr_scheduler.MultiStepLR` counts, which
    decays one epoch later for the same numbers.

    `cyclic` is the one-cycle triangle of Wong, Rice & Kolter (ICLR 2020): per
    iteration from 0 up to `optim.lr` at the fraction `peak` of the run, then
    down to 0 at its end (their CIFAR-10 code peaks at the middle, 0.5; their
    MNIST code at 2/5 of the epochs).
    """

    kind: Literal["constant", "multistep", "cosine", "cyclic"] = "constant"
    milestones: list[int] = Field(default_factory=list)
    gamma: PosReal = 0.1
    convention: Literal["paper", "torch"] = "paper"
    # cyclic: where the rate is highest, as a fraction of the run
    peak: Annotated[float, BeforeValidator(parse_fraction), Field(gt=0.0, lt=1.0)] = 0.5


class TrainConfig(Section):
    epochs: int = Field(1, ge=1, le=100_000)
    seed: int = 0
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    log_every: int = Field(10, ge=1)
    deterministic: bool = True


class PerfConfig(Section):
    """The fast path; what each run really used is in its `run_started` event (`perf`).

    `amp = "auto"` turns bf16 autocast on where the hardware does bf16 natively (CPUs
    with avx512_bf16 or AMX, CUDA devices with bf16) and leaves fp32 elsewhere; "off"
    keeps fp32 everywhere (bit-exact with the plain loop). Evaluation is always fp32.
    `channels_last = "auto"` is NHWC wherever the run trains in bf16 (1.9x on a
    bf16 SmallCNN epoch on an AMX CPU) and the plain layout otherwise.
    """

    amp: Literal["off", "bf16", "auto"] = "auto"  # bf16 autocast of the training step
    channels_last: bool | Literal["auto"] = "auto"  # NHWC model and inputs; auto: with bf16
    cudnn_benchmark: bool = False  # cuDNN autotuning (fixed shapes make it pay off)
    compile: bool = False  # torch.compile the model


class DistributedConfig(Section):
    """Multi-GPU / multi-node data parallelism (torchrun); ignored in a single process."""

    backend: Literal["auto", "nccl", "gloo"] = "auto"  # auto: nccl on CUDA, gloo on CPU
    sync_bn: bool = False  # SyncBatchNorm across ranks


class EvalConfig(Section):
    every: int = Field(1, ge=1)
    samples: int = Field(1000, ge=0)
    suite: Literal["quick", "paper"] = "quick"
    steps: int = Field(20, ge=1)
    restarts: int = Field(1, ge=1)


def parse_every(value: Any) -> Any:
    """ "epoch" or a positive whole number of steps, checked before the union (one clear line)."""
    if value == "epoch":
        return value
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ValueError('must be >= 1 steps (or "epoch")')
        return value
    raise ValueError('expected "epoch" or a positive number of steps')


class GuardConfig(Section):
    """The catastrophic-overfitting guard (engine/train/guard.py), usable by every method.

    Every `every` steps (or at each epoch's end) PGD-`steps` on a fixed subset of
    the first `samples` training examples; when that robust accuracy falls more
    than `drop` points below its best, the run emits a `warning` and does
    `action`: "stop" ends the run (best.safetensors, selected on validation, is
    kept; the weights of the guard's best check go to guard.safetensors),
    "restore" also puts those weights back into the model before the run's last
    checkpoints, "lower_step" puts them back, multiplies the method's step by
    `factor` and trains on. Wong, Rice & Kolter (ICLR 2020) stop when PGD-5 on
    one training batch falls 20 points below the previous epoch's.
    """

    enabled: bool = False
    every: Annotated[int | Literal["epoch"], BeforeValidator(parse_every)] = "epoch"
    samples: int = Field(256, ge=1, le=100_000)  # the first N examples of the training split
    steps: int = Field(10, ge=1, le=1000)  # PGD steps
    step: NonNegReal | None = None  # PGD step in the norm's units; None: 2.5 * eps / steps
    drop: float = Field(20.0, gt=0.0, le=100.0)  # points below the guard's best that fire it
    action: Literal["stop", "restore", "lower_step"] = "stop"
    factor: float = Field(0.5, gt=0.0, lt=1.0)  # lower_step: the step is multiplied by this


class CheckpointConfig(Section):
    every: int = Field(1, ge=1)
    keep: int = Field(3, ge=1)


class LogConfig(Section):
    """Where a run's scalars go besides `events.jsonl` (engine/report/trackers.py)."""

    tensorboard: bool = False  # also write TensorBoard event files into the run folder, live
