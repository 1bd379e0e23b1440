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

With `early_stop` (every suite column's default) an example leaves the working
batch as soon as an iterate fools the model decisively (by more than
`DECISIVE` of its logit scale, so that floating-point noise in the final
judgement cannot undo it); that iterate is what it returns for the example.
The random starts are still drawn for the whole batch, in the same order, so
the generator draws what the full search draws, and the examples still
attacked follow their full-search trajectories up to floating-point noise:
whether an example is broken does not depend on which others share its batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from typing import Any, Literal

import torch
from pydantic import Field, field_validator
from torch import nn

from engine.attacks.base import AttackColumn, LossName, eval_mode, within_norm_cap
from engine.attacks.objectives import (
    Objective,
    cw_margin,
    fooled,
    misclassification,
    objective,
)
from engine.attacks.threat import Ball, ThreatModel, as_threat
from engine.spec.config import CW_KAPPA, NonNegReal, Norm, PresetConfig
from engine.spec.registry import ATTACKS

Iterate = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None]

# An iterate stops the search for its example when it fools the model by more than this
# fraction of the example's largest |logit| (at least 1): far above float32 noise (and TF32's),
# far below what one step moves a logit. A closer call keeps the example in the search.
DECISIVE = 1e-2


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
    `early_stop=True` (with `keep_best`) stops attacking an example once an
    iterate fools the model decisively and returns that iterate for it (see
    the module's docstring); only valid when `model` (or `scorer`) is the
    classifier that judges the result.
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
    early_stop: bool = False  # drop an example from the search once an iterate fools it
    scorer: nn.Module | None = None  # judges iterates when `model` is only a gradient surrogate

    def __post_init__(self) -> None:
        self.threat = as_threat(self.threat)
        if self.restarts > 1 and not self.keep_best:
            raise ValueError(
                "PGD: restarts > 1 needs keep_best=True (without it there is no per-example "
                "best to keep, and only one restart would run)"
            )
        if self.early_stop and not self.keep_best:
            raise ValueError("PGD: early_stop needs keep_best=True (it keeps the fooling iterate)")

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
            if self.early_stop:
                self._search_dropping(model, ball, y, target, generator, best_x, best)
                return best_x

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

    def _search_dropping(
        self,
        model: nn.Module,
        ball: Ball,
        y: torch.Tensor,
        target: torch.Tensor | None,
        generator: torch.Generator | None,
        best_x: torch.Tensor,
        best: _Best,
    ) -> None:
        """The keep-best search, leaving out each example once an iterate fooled it decisively.

        Per restart the start is drawn for the whole batch (the full search's
        draws) and the examples not yet decisively fooled take their rows of
        it. Each step judges the working batch, records it in `best` (only the
        examples still searched), and drops the decided ones
        (`_working_size`: on CUDA some ride along, unrecorded, so the batch
        takes few distinct shapes).
        """
        n = len(y)
        done = torch.zeros(n, dtype=torch.bool, device=y.device)
        for _ in range(self.restarts):
            start = self._start(ball, generator)  # drawn for every example, as the full search
            rows = (~done).nonzero().squeeze(1)
            if len(rows) == 0:
                continue  # every start is still drawn: the generator ends where it would
            work = _Working(self, ball, rows, start[rows], y, target)
            for k in range(self.steps + 1):  # the steps, then the last iterate judged
                last, grad = k == self.steps, None
                if not last:
                    work.x.requires_grad_(True)
                    logits = model(work.x)
                    obj = work.goal(logits)
                    (grad,) = torch.autograd.grad(obj.sum(), work.x)
                    work.x, logits, obj = work.x.detach(), logits.detach(), obj.detach()
                if self.scorer is not None:  # every iterate judged by the real classifier
                    with torch.no_grad():
                        logits = self.scorer(work.x)
                    obj = objective(logits, work.y, self.loss, self.kappa, work.target)
                elif last:
                    with torch.no_grad():
                        logits = model(work.x)
                    obj = work.goal(logits)
                hit = fooled(logits, work.y, work.target)
                best.update_rows(best_x, work.rows, work.x, obj, hit, work.live)
                decided = work.live & decisive(logits, work.y, work.target)
                done.index_copy_(0, work.rows, done[work.rows] | decided)
                if last or not work.drop(decided, grad):
                    break
                work.x = work.ball.step(work.x, work.grad, self.step)


def decisive(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    """Fooled by more than `DECISIVE` of the largest |logit| (at least 1), per example."""
    margin = -cw_margin(logits, y) if target is None else cw_margin(logits, target)
    return margin > DECISIVE * logits.detach().abs().amax(1).clamp(min=1.0)


def _working_size(live: int, current: int, device: torch.device) -> int:
    """How many rows the working batch keeps for `live` examples still searched.

    On the CPU exactly those. On CUDA the smallest size 2^k or 3 * 2^(k-1) that
    holds them (never more than now): a handful of batch shapes, so cuDNN's
    autotuner and the caching allocator do not see a new shape every step.
    """
    if device.type != "cuda" or live == 0:
        return live
    size = 1
    while size < live:  # the power of two that holds them, or three quarters of it
        size *= 2
    if size // 4 * 3 >= live:
        size = size // 4 * 3
    return min(size, current)


class _Working:
    """The examples a restart still searches: their rows, iterates, ball, labels and objective."""

    def __init__(
        self,
        pgd: PGD,
        ball: Ball,
        rows: torch.Tensor,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
    ) -> None:
        self.pgd, self.full_ball, self.full_y, self.full_target = pgd, ball, y, target
        self.x = x
        self.grad: torch.Tensor | None = None
        self._select(rows, torch.ones(len(rows), dtype=torch.bool, device=rows.device))

    def _select(self, rows: torch.Tensor, live: torch.Tensor) -> None:
        self.rows, self.live = rows, live
        self.ball = self.full_ball.rows(rows)
        self.y = self.full_y[rows]
        self.target = None if self.full_target is None else self.full_target[rows]
        self.goal = misclassification(self.y, self.pgd.loss, self.pgd.kappa, self.target)

    def drop(self, decided: torch.Tensor, grad: torch.Tensor | None) -> bool:
        """Take `decided` out of the search; False when nothing is left to search."""
        self.live = self.live & ~decided
        self.grad = grad
        live = int(self.live.sum())  # one host sync per step
        if live == 0:
            return False
        size = _working_size(live, len(self.rows), self.x.device)
        if size < len(self.rows):
            riders = (~self.live).cumsum(0) <= size - live  # the first dropped rows ride along
            keep = self.live | (~self.live & riders)
            self.x = self.x[keep]
            self.grad = None if grad is None else grad[keep]
            self._select(self.rows[keep], self.live[keep])
        return True


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

    def update_rows(
        self,
        best_x: torch.Tensor,
        rows: torch.Tensor,
        x: torch.Tensor,
        obj: torch.Tensor,
        fooled: torch.Tensor,
        live: torch.Tensor,
    ) -> None:
        """`update` for the examples at `rows` (x holds their iterates); rows not `live` ride
        along in the working batch only and are left as they are."""
        was_fooled, was_obj = self.fooled[rows], self.obj[rows]
        fooled = fooled & live
        better = live & ((fooled & ~was_fooled) | ((fooled == was_fooled) & (obj > was_obj)))
        mask = better.view(-1, *([1] * (x.dim() - 1)))
        best_x.index_copy_(0, rows, torch.where(mask, x, best_x[rows]))
        self.obj.index_copy_(0, rows, torch.where(better, obj, was_obj))
        self.fooled.index_copy_(0, rows, was_fooled | fooled)


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
    early_stop: bool = True  # stop attacking an example once an iterate fools the model

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
        params["early_stop"] = self.early_stop
        return params

    @classmethod
    def build(cls, params: dict[str, Any]) -> PGD:
        """The attack; `early_stop` only where the params say so (columns saved before it
        existed, and training adversaries, search every example to the last step)."""
        return PGD(
            threat_of(params),
            params["step"],
            params["steps"],
            params.get("restarts", 1),
            params.get("loss", "ce"),
            params.get("kappa", CW_KAPPA),
            random_start=params.get("random_start", True),
            keep_best=params.get("keep_best", True),
            early_stop=params.get("early_stop", False),
        )


def threat_of(params: dict[str, Any]) -> ThreatModel:
    """A resolved column's threat model (columns saved before norms existed are L-inf)."""
    return ThreatModel(params.get("norm", "linf"), params["eps"])
