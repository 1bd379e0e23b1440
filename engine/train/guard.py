"""The catastrophic-overfitting guard: PGD on a fixed training subset, and when to give up.

Single-step adversarial training (fast_at) can lose all robustness to PGD
within an epoch while its FGSM loss still looks fine (Wong, Rice & Kolter,
ICLR 2020, Sec. 5: "catastrophic overfitting"); their code stops when PGD-5 on a
training batch falls 20 points below the previous epoch's. The guard does that
for any method (`[guard]`, engine/spec/config.py): every `every` steps or at
each epoch's end it measures robust accuracy under PGD-`steps` on the first
`samples` training examples, always from the same random starts (the curve
moves only with the model), and fires once that accuracy is more than `drop`
points below the best it has seen. `Guard.act` then does what `action` says
(stop, restore the guard's best weights, lower the method's step); when to
check and where its best weights are written is the trainer's
(engine/train/trainer.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine import checkpoint_io as ckpt
from engine.attacks import PGD, ThreatModel
from engine.eval.stats import wilson
from engine.records.events import EventWriter
from engine.spec.config import GuardConfig, PresetConfig


@dataclass
class GuardCheck:
    """One measurement and its verdict (the `guard` event carries these fields)."""

    step: int  # global step after which it was measured
    epochs: float  # the same point in epochs trained (fractional), the plots' x axis
    acc: float  # robust accuracy, percent
    n: int
    interval: list[float]  # 95% Wilson
    best_acc: float  # the best so far, this check included
    best_step: int
    improved: bool  # this check set a new best (its weights are the last good ones)
    fired: bool  # more than `drop` points below the best: catastrophic overfitting


@dataclass
class GuardState:
    """What the guard carries across a resume (in the checkpoint's progress)."""

    best_acc: float | None = None
    best_step: int | None = None
    step_scale: float = 1.0  # product of the "lower_step" factors applied so far
    fired: list[dict[str, Any]] | None = None  # every firing: step, acc, best_acc, action
    stopped: bool = False  # a firing ended training ("stop", "restore")

    @classmethod
    def from_json(cls, d: dict[str, Any] | None) -> GuardState:
        d = d or {}
        return cls(
            d.get("best_acc"),
            d.get("best_step"),
            float(d.get("step_scale", 1.0)),
            list(d.get("fired") or []),
            bool(d.get("stopped", False)),
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def judge(state: GuardState, acc: float, step: int, drop: float) -> tuple[bool, bool]:
    """(improved, fired) for a new accuracy; a new best updates `state`, a firing does not.

    Fires when acc < best - drop (strictly more than `drop` points below the best).
    """
    if state.best_acc is not None and acc < state.best_acc - drop:
        return False, True
    if state.best_acc is None or acc > state.best_acc:
        state.best_acc, state.best_step = acc, step
        return True, False
    return False, False


class Guard:
    """Measures PGD robust accuracy of a model on a fixed training subset and judges it."""

    def __init__(
        self,
        cfg: PresetConfig,
        x: torch.Tensor,
        y: torch.Tensor,
        device: torch.device,
        steps_per_epoch: int,
    ) -> None:
        g: GuardConfig = cfg.guard
        self.cfg = g
        n = min(g.samples, len(y))
        self.x = x[:n].to(device).float().div_(255.0)  # uint8 images, as the loaders hold them
        self.y = y[:n].to(device)
        eps = cfg.attack.eps
        step = g.step if g.step is not None else 2.5 * eps / g.steps  # Madry et al.'s rule
        self.attack = PGD(ThreatModel(cfg.attack.norm, eps), step, g.steps, 1, "ce")
        self.batch = cfg.data.eval_batch_size
        self.seed = cfg.train.seed
        self.device = device
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.state = GuardState()

    @property
    def label(self) -> str:
        """What the faces call it: "PGD-10 on 256 training examples"."""
        return f"PGD-{self.cfg.steps} on {len(self.y)} training examples"

    def due(self, global_step: int, epoch_end: bool) -> bool:
        """Whether to check after this step (`every` steps) or at this epoch's end."""
        if self.cfg.every == "epoch":
            return epoch_end
        return global_step % self.cfg.every == 0

    def measure(self, model: nn.Module) -> tuple[int, int]:
        """(correct, n) under the guard's PGD, from the same random starts every time.

        The caller's RNG is left untouched (the training batches and starts stay
        what they would be without the guard).
        """
        devices = [self.device] if self.device.type == "cuda" else []
        correct = 0
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed)
            for i in range(0, len(self.y), self.batch):
                x, y = self.x[i : i + self.batch], self.y[i : i + self.batch]
                x_adv = self.attack(model, x, y)
                with torch.no_grad():
                    was = model.training
                    model.eval()
                    correct += int((model(x_adv).argmax(1) == y).sum())
                    model.train(was)
        return correct, len(self.y)

    def check(self, model: nn.Module, global_step: int) -> GuardCheck:
        """Measure and judge; the state's best moves only when this check beats it."""
        correct, n = self.measure(model)
        acc = 100.0 * correct / n
        improved, fired = judge(self.state, acc, global_step, self.cfg.drop)
        return GuardCheck(
            step=global_step,
            epochs=global_step / self.steps_per_epoch,
            acc=acc,
            n=n,
            interval=list(wilson(correct, n)),
            best_acc=float(self.state.best_acc if self.state.best_acc is not None else acc),
            best_step=int(self.state.best_step if self.state.best_step is not None else 0),
            improved=improved,
            fired=fired,
        )

    def act(
        self, check: GuardCheck, model: nn.Module, method: Any, writer: EventWriter, good: Path
    ) -> bool:
        """Do `action` after `check` fired, with a `warning` saying what; True if training ends.

        `good` holds the weights of the guard's best check (the last good checkpoint).
        """
        action = self.cfg.action
        self.state.fired = [*(self.state.fired or []), {**asdict(check), "action": action}]
        what = (
            f"catastrophic overfitting: the guard's {self.label} fell to {check.acc:.1f}% "
            f"[{check.interval[0]:.1f}, {check.interval[1]:.1f}] at step {check.step}, "
            f"{check.best_acc - check.acc:.1f} points below its best {check.best_acc:.1f}% "
            f"(step {check.best_step}; guard.drop {self.cfg.drop:g})"
        )
        if action == "stop":
            done = (
                f"stopped (best.safetensors kept; {good.name} "
                f"holds step {check.best_step}'s weights)"
            )
        else:
            ckpt.unpack_model(model, ckpt.load_tensors(good), str(good))
            if action == "restore":
                done = f"restored step {check.best_step}'s weights ({good.name}) and stopped"
            else:
                new = method.scale_step(self.cfg.factor)
                self.state.step_scale *= self.cfg.factor
                done = (
                    f"restored step {check.best_step}'s weights and "
                    f"lowered method.step to {new:g} (x eps); training on"
                )
        ends = action != "lower_step"
        if ends:
            self.state.stopped = True
        writer.emit("warning", message=f"{what}; {done}")
        return ends

    def summary(self) -> dict[str, Any]:
        """What a finished run reports about its guard (run_finished's `guard`)."""
        return {"attack": self.label, "action": self.cfg.action, **self.state.to_json()}
