"""L-infinity attacks with one call shape: `attack(model, x, y) -> x_adv`.

Conventions (REFERENCE.md): inputs in [0, 1], every iterate projected onto
the eps-ball and clipped to [0, 1]; BatchNorm and Dropout in eval mode while
crafting, the previous modes restored afterwards; restarts keep, per example,
the worst case found (a misclassifying point first, then the highest loss).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

LossName = Literal["ce", "cw"]


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode and restore each one's own flag afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, was_training in modes:
            m.training = was_training


def cw_margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """z_y - max_{i != y} z_i, masking the true class with -inf (not a one-hot product)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], float("-inf")).amax(1)
    return true - other


def objective(
    logits: torch.Tensor,
    y: torch.Tensor,
    loss: LossName = "ce",
    kappa: float = 0.0,
    target: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-example quantity the attacker maximises.

    Untargeted: CE(z, y), or the C&W margin -relu(z_y - max_{i!=y} z_i + kappa).
    Targeted (towards `target`): -CE(z, t), or -relu(max_{i!=t} z_i - z_t + kappa).
    """
    if target is None:
        if loss == "ce":
            return F.cross_entropy(logits, y, reduction="none")
        return -torch.relu(cw_margin(logits, y) + kappa)
    if loss == "ce":
        return -F.cross_entropy(logits, target, reduction="none")
    return -torch.relu(-cw_margin(logits, target) + kappa)


def _fooled(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    pred = logits.argmax(1)
    return pred == target if target is not None else pred != y


Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class FGSM:
    """x + eps * sign(grad), one step from the clean point (Goodfellow et al. 2015)."""

    eps: float
    loss: LossName = "ce"
    kappa: float = 0.0

    def __call__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None = None,
    ) -> torch.Tensor:
        with eval_mode(model):
            x_in = x.detach().clone().requires_grad_(True)
            obj = objective(model(x_in), y, self.loss, self.kappa, target).sum()
            (grad,) = torch.autograd.grad(obj, x_in)
        return (x + self.eps * grad.sign()).clamp_(0.0, 1.0).detach()


@dataclass
class PGD:
    """Projected gradient ascent with random start and per-example best over restarts.

    `keep_best=True` (evaluation) returns, per example, the strongest iterate
    seen over all steps and restarts; `keep_best=False` (training adversaries)
    returns the last iterate of a single restart, as Madry et al. do.
    """

    eps: float
    step: float
    steps: int
    restarts: int = 1
    loss: LossName = "ce"
    kappa: float = 0.0
    random_start: bool = True
    keep_best: bool = True
    scorer: nn.Module | None = None  # judges iterates when `model` is only a gradient surrogate

    def __call__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        x = x.detach()
        lower = (x - self.eps).clamp_(min=0.0)
        upper = (x + self.eps).clamp_(max=1.0)
        with eval_mode(model):
            if not self.keep_best:
                return self._run(model, x, y, target, lower, upper, generator, None)
            best_x = x.clone()
            best = _Best(len(x), x.device)
            for _ in range(self.restarts):
                self._run(model, x, y, target, lower, upper, generator, (best, best_x))
            return best_x

    def _run(self, model, x, y, target, lower, upper, generator, track):
        if self.random_start and self.eps > 0:
            noise = torch.empty_like(x).uniform_(-self.eps, self.eps, generator=generator)
            x_adv = torch.clamp(x + noise, min=lower, max=upper)
        else:
            x_adv = x.clone()
        for _ in range(self.steps):
            x_adv.requires_grad_(True)
            logits = model(x_adv)
            obj = objective(logits, y, self.loss, self.kappa, target)
            (grad,) = torch.autograd.grad(obj.sum(), x_adv)
            x_adv = x_adv.detach()
            if track is not None:
                self._track(track, x_adv, y, target, logits.detach(), obj.detach())
            x_adv = torch.clamp(x_adv.add_(grad.sign_(), alpha=self.step), min=lower, max=upper)
        if track is not None:
            with torch.no_grad():
                logits = model(x_adv) if self.scorer is None else None
                obj = (
                    None if logits is None else objective(logits, y, self.loss, self.kappa, target)
                )
            self._track(track, x_adv, y, target, logits, obj)
        return x_adv

    def _track(self, track, x_adv, y, target, logits, obj) -> None:
        if self.scorer is not None:  # every iterate judged by the real classifier
            with torch.no_grad():
                logits = self.scorer(x_adv)
            obj = objective(logits, y, self.loss, self.kappa, target)
        track[0].update(track[1], x_adv, obj, _fooled(logits, y, target))


class _Best:
    """Per-example record of the strongest point: fooled beats not fooled, then higher loss."""

    def __init__(self, n: int, device: torch.device) -> None:
        self.fooled = torch.zeros(n, dtype=torch.bool, device=device)
        self.obj = torch.full((n,), float("-inf"), device=device)

    def update(
        self, best_x: torch.Tensor, x: torch.Tensor, obj: torch.Tensor, fooled: torch.Tensor
    ) -> None:
        better = (fooled & ~self.fooled) | ((fooled == self.fooled) & (obj > self.obj))
        # torch.where, not best_x[better] = ...: a boolean-mask copy syncs with the host
        mask = better.view(-1, *([1] * (x.dim() - 1)))
        best_x.copy_(torch.where(mask, x, best_x))
        self.obj = torch.where(better, obj, self.obj)
        self.fooled = self.fooled | fooled


def build_attack(
    kind: str,
    eps: float,
    step: float = 0.01,
    steps: int = 40,
    restarts: int = 1,
    loss: LossName = "ce",
    kappa: float = 50.0,
    random_start: bool = True,
    keep_best: bool = True,
) -> Attack:
    """Registry entry point: the name a preset or suite uses -> a configured attack."""
    if kind == "fgsm":
        return FGSM(eps, loss, kappa if loss == "cw" else 0.0)
    if kind == "pgd":
        return PGD(
            eps,
            step,
            steps,
            restarts,
            loss,
            kappa if loss == "cw" else 0.0,
            random_start,
            keep_best,
        )
    raise ValueError(f"unknown attack {kind!r}")


ATTACKS = ("fgsm", "pgd")
