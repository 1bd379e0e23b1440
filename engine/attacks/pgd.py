"""The one projected gradient ascent of the workbench, and PGD-k as a suite column.

`ascend` is the loop every PGD here runs: evaluation and training PGD (CE or
C&W), TRADES' KL search, API-Net's anti-perturbation search and the unrolled
search the adaptive attack differentiates. Only the objective, the start and
the step direction differ, and those are arguments.

Everything that depends on the norm (the start, the step direction, the
projection) comes from the threat model (engine/attacks/threat.py): nothing
here names a norm.

`PGD` adds what an attack needs on top: a uniform random start in the ball
and, for evaluation, restarts that keep per example the worst case found (a
misclassifying point first, then the highest loss), never "the first restart
that worked on the batch".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from typing import Any, Literal

import torch
from pydantic import Field, field_validator
from torch import nn

from engine.attacks.base import AttackColumn, LossName, eval_mode, within_norm_cap
from engine.attacks.objectives import Objective, fooled, misclassification, objective
from engine.attacks.threat import Ball, ThreatModel, as_threat
from engine.spec.config import CW_KAPPA, NonNegReal, Norm, PresetConfig
from engine.spec.registry import ATTACKS

Iterate = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None]


def ascend(
    model: nn.Module,
    start: torch.Tensor,
    ball: Ball,
    objective: Objective,
    step: float,
    steps: int,
    *,
    create_graph: bool = False,
    on_iterate: Iterate | None = None,
) -> torch.Tensor:
    """`steps` times: x <- ball.project(x + step * direction(grad objective(model(x)))).

    The direction is the ball's norm's steepest ascent. `on_iterate(x, logits,
    objective)` sees every iterate before its step (for keep-best
    bookkeeping). With `create_graph` the iterates keep their graph and step
    along the threat model's differentiable direction, so the result is
    differentiable with respect to whatever `start` came from (the adaptive
    attack's unrolled search); otherwise it is detached.
    """
    x = start
    for _ in range(steps):
        if not create_graph:
            x.requires_grad_(True)
        logits = model(x)
        obj = objective(logits)
        (grad,) = torch.autograd.grad(obj.sum(), x, create_graph=create_graph)
        if create_graph:
            x = ball.smooth_step(x, grad, step)
            continue
        x = x.detach()
        if on_iterate is not None:
            on_iterate(x, logits.detach(), obj.detach())
        x = ball.step(x, grad, step)
    return x


@dataclass
class PGD:
    """Projected gradient ascent with random start and per-example best over restarts.

    `keep_best=True` (evaluation) returns, per example, the strongest iterate
    seen over all steps and restarts; `keep_best=False` (training adversaries)
    returns the last iterate of a single restart, as Madry et al. do.
    """

    threat: ThreatModel  # a bare number is an L-inf eps
    step: float
    steps: int
    restarts: int = 1
    loss: LossName = "ce"
    kappa: float = CW_KAPPA  # C&W confidence (the CE loss ignores it)
    _: KW_ONLY
    random_start: bool = True
    keep_best: bool = True
    scorer: nn.Module | None = None  # judges iterates when `model` is only a gradient surrogate

    def __post_init__(self) -> None:
        self.threat = as_threat(self.threat)
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
        ball = self.threat.around(x)
        goal = misclassification(y, self.loss, self.kappa, target)
        with eval_mode(model):
            if not self.keep_best:
                return ascend(
                    model, self._start(ball, generator), ball, goal, self.step, self.steps
                )
            best_x = x.clone()
            best = _Best(len(x), x.device)

            def track(x_adv: torch.Tensor, logits: torch.Tensor, obj: torch.Tensor) -> None:
                if self.scorer is not None:  # every iterate judged by the real classifier
                    with torch.no_grad():
                        logits = self.scorer(x_adv)
                    obj = objective(logits, y, self.loss, self.kappa, target)
                best.update(best_x, x_adv, obj, fooled(logits, y, target))

            for _ in range(self.restarts):
                start = self._start(ball, generator)
                last = ascend(model, start, ball, goal, self.step, self.steps, on_iterate=track)
                with torch.no_grad():
                    logits = model(last) if self.scorer is None else None
                    obj = None if logits is None else goal(logits)
                track(last, logits, obj)  # type: ignore[arg-type]
            return best_x

    @property
    def eps(self) -> float:
        """The ball's radius, in its norm's units."""
        return self.threat.eps

    def _start(self, ball: Ball, generator: torch.Generator | None) -> torch.Tensor:
        if self.random_start and self.threat.eps > 0:
            return ball.random_start(generator)
        return ball.x.clone()


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
    """PGD-k: `steps` steepest-ascent steps of size `step` from a random start, `restarts` times."""

    kind: Literal["pgd"]
    steps: int | Literal["eval"]  # "eval": the checkpoint's eval.steps
    restarts: int | None = Field(None, ge=1, le=1000)  # default: the checkpoint's eval.restarts
    norm: Norm | None = None  # default: the checkpoint's attack.norm
    step: NonNegReal | None = None  # default: the checkpoint's attack.step
    eps: NonNegReal | None = None  # default: the checkpoint's attack.eps
    loss: LossName = "ce"
    kappa: NonNegReal | None = None  # C&W confidence; default: the checkpoint's attack.kappa

    _fraction = field_validator("step", "eps")(within_norm_cap)

    def resolve(self, cfg: PresetConfig) -> dict[str, Any]:
        a, ev = cfg.attack, cfg.eval
        params: dict[str, Any] = {
            "eps": a.eps if self.eps is None else self.eps,
            "norm": a.norm if self.norm is None else self.norm,
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
            threat_of(params),
            params["step"],
            params["steps"],
            params.get("restarts", 1),
            params.get("loss", "ce"),
            params.get("kappa", CW_KAPPA),
            random_start=params.get("random_start", True),
            keep_best=params.get("keep_best", True),
        )


def threat_of(params: dict[str, Any]) -> ThreatModel:
    """A resolved column's threat model (columns saved before norms existed are L-inf)."""
    return ThreatModel(params.get("norm", "linf"), params["eps"])
