"""The one projected gradient ascent of the workbench, and PGD-k as a suite column.

`ascend` is the loop every PGD here runs: evaluation and training PGD (CE or
C&W), TRADES' KL search, API-Net's anti-perturbation search and the unrolled
search the adaptive attack differentiates. Only the objective, the start and
the step direction differ, and those are arguments.

`PGD` adds what an attack needs on top: a uniform random start in the eps-ball
and, for evaluation, restarts that keep per example the worst case found (a
misclassifying point first, then the highest loss), never "the first restart
that worked on the batch".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from engine.attacks.base import AttackColumn, LossName, ball, eval_mode
from engine.attacks.objectives import Objective, fooled, misclassification, objective
from engine.spec.config import NonNegReal, PresetConfig, Unit
from engine.spec.registry import ATTACKS

Direction = Callable[[torch.Tensor], torch.Tensor]
Iterate = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None]


def sign(grad: torch.Tensor) -> torch.Tensor:
    """The L-inf steepest-ascent direction (in place: the gradient is the loop's own)."""
    return grad.sign_()


def max_normalised(grad: torch.Tensor) -> torch.Tensor:
    """grad / max|grad| per example: sign's direction where it is decisive, but differentiable."""
    scale = grad.abs().flatten(1).amax(1).clamp(min=1e-12)
    return grad / scale.view(-1, *([1] * (grad.dim() - 1)))


def ascend(
    model: nn.Module,
    start: torch.Tensor,
    lower: torch.Tensor,
    upper: torch.Tensor,
    objective: Objective,
    step: float,
    steps: int,
    *,
    direction: Direction = sign,
    create_graph: bool = False,
    on_iterate: Iterate | None = None,
) -> torch.Tensor:
    """`steps` times: x <- clip(x + step * direction(grad objective(model(x))), lower, upper).

    `on_iterate(x, logits, objective)` sees every iterate before its step (for
    keep-best bookkeeping). With `create_graph` the iterates keep their graph,
    so the result is differentiable with respect to whatever `start` came from
    (the adaptive attack's unrolled search); otherwise it is detached.
    """
    x = start
    for _ in range(steps):
        if not create_graph:
            x.requires_grad_(True)
        logits = model(x)
        obj = objective(logits)
        (grad,) = torch.autograd.grad(obj.sum(), x, create_graph=create_graph)
        if create_graph:
            x = torch.clamp(x + step * direction(grad), min=lower, max=upper)
            continue
        x = x.detach()
        if on_iterate is not None:
            on_iterate(x, logits.detach(), obj.detach())
        x = torch.clamp(x.add_(direction(grad), alpha=step), min=lower, max=upper)
    return x


def uniform_start(
    x: torch.Tensor,
    eps: float,
    lower: torch.Tensor,
    upper: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A uniformly random point of the eps-ball (inside [0, 1])."""
    noise = torch.empty_like(x).uniform_(-eps, eps, generator=generator)
    return torch.clamp(x + noise, min=lower, max=upper)


def offset_start(
    x: torch.Tensor, noise: torch.Tensor | None, lower: torch.Tensor, upper: torch.Tensor
) -> torch.Tensor:
    """x + noise projected into the ball (x itself when there is no noise)."""
    return x.clone() if noise is None else torch.clamp(x + noise, min=lower, max=upper)


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

    def __post_init__(self) -> None:
        if self.restarts > 1 and not self.keep_best:
            raise ValueError(
                "PGD: restarts > 1 needs keep_best=True (without it there is no per-example "
                "best to keep, and only one restart would run)"
            )

    def __call__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        x = x.detach()
        lower, upper = ball(x, self.eps)
        goal = misclassification(y, self.loss, self.kappa, target)
        with eval_mode(model):
            if not self.keep_best:
                start = self._start(x, lower, upper, generator)
                return ascend(model, start, lower, upper, goal, self.step, self.steps)
            best_x = x.clone()
            best = _Best(len(x), x.device)

            def track(x_adv: torch.Tensor, logits: torch.Tensor, obj: torch.Tensor) -> None:
                if self.scorer is not None:  # every iterate judged by the real classifier
                    with torch.no_grad():
                        logits = self.scorer(x_adv)
                    obj = objective(logits, y, self.loss, self.kappa, target)
                best.update(best_x, x_adv, obj, fooled(logits, y, target))

            for _ in range(self.restarts):
                start = self._start(x, lower, upper, generator)
                last = ascend(
                    model, start, lower, upper, goal, self.step, self.steps, on_iterate=track
                )
                with torch.no_grad():
                    logits = model(last) if self.scorer is None else None
                    obj = None if logits is None else goal(logits)
                track(last, logits, obj)  # type: ignore[arg-type]
            return best_x

    def _start(self, x, lower, upper, generator) -> torch.Tensor:
        if self.random_start and self.eps > 0:
            return uniform_start(x, self.eps, lower, upper, generator)
        return x.clone()


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


@ATTACKS.register("pgd")
class PGDColumn(AttackColumn):
    """PGD-k: `steps` sign steps of size `step` from a random start, `restarts` times."""

    kind: Literal["pgd"]
    steps: int | Literal["eval"]  # "eval": the checkpoint's eval.steps
    restarts: int | None = Field(None, ge=1, le=1000)  # default: the checkpoint's eval.restarts
    step: Unit | None = None  # default: the checkpoint's attack.step
    eps: Unit | None = None  # default: the checkpoint's attack.eps
    loss: LossName = "ce"
    kappa: NonNegReal | None = None  # C&W confidence; default: the checkpoint's attack.kappa

    def resolve(self, cfg: PresetConfig) -> dict[str, Any]:
        a, ev = cfg.attack, cfg.eval
        params: dict[str, Any] = {
            "eps": a.eps if self.eps is None else self.eps,
            "step": a.step if self.step is None else self.step,
            "steps": ev.steps if self.steps == "eval" else self.steps,
            "restarts": ev.restarts if self.restarts is None else self.restarts,
            "loss": self.loss,
        }
        if self.loss == "cw":
            params["kappa"] = a.kappa if self.kappa is None else self.kappa
        return params

    @classmethod
    def build(cls, params: dict[str, Any]) -> PGD:
        return PGD(
            params["eps"],
            params["step"],
            params["steps"],
            params.get("restarts", 1),
            params.get("loss", "ce"),
            params.get("kappa", 0.0) if params.get("loss") == "cw" else 0.0,
            params.get("random_start", True),
            params.get("keep_best", True),
        )
