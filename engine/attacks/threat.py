"""The threat model: a norm and a radius, and everything an attack does differently per norm.

Every search in the workbench (PGD, FGSM, TRADES' KL search, API-Net's
anti-perturbation search and its unrolled copy) asks a `ThreatModel` for the
four things that depend on the norm, and nothing else names a norm:

* a random start inside the ball (`Ball.random_start`);
* the steepest-ascent direction of a gradient (`ThreatModel.direction`), and a
  differentiable stand-in for it (`ThreatModel.smooth_direction`, for the
  adaptive attacker's unrolled search);
* the projection back into the ball and the [0, 1] box (`Ball.project`);
* the size of a perturbation (`ThreatModel.size`), and the ball that covers the
  whole box (`ThreatModel.unbounded`, the sanity check's "unbounded" attack).

The choices, per norm:

L-inf: start uniform in the box [-eps, eps]^d; direction sign(g); projection
clamp into [max(x - eps, 0), min(x + eps, 1)], which is the exact projection
onto the ball intersected with [0, 1] (both are boxes). These are the very
operations the workbench ran before threat models existed, in the same order,
drawing the same random numbers, so L-inf results are bit-identical.

L2: start uniform in the ball (a Gaussian direction, radius eps * U^(1/d));
direction g / ||g||_2 (as torchattacks' PGDL2 and Madry-lab's robustness
library step); projection: rescale delta onto the ball, then clamp x + delta
into [0, 1]. Clamping moves each coordinate of delta towards 0 (x is in
[0, 1]), so no norm grows and the result stays in the ball; it is a point of
ball and box, but not always the Euclidean projection onto their
intersection (that needs an iterative solver; the two differ only where the
rescaled point leaves the box).

L1: start uniform in the ball (signs times (E_1..E_d) / (E_0 + ... + E_d)
with E_i ~ Exp(1), which is uniform in the cross-polytope); direction: the
sparse step of Tramer and Boneh's SLIDE (the signs of the top `L1_TOP`
fraction of |g|, at least one coordinate, each 1/k so the step has L1 norm 1),
leaving out coordinates already at the box edge that the gradient pushes out
of it; projection: Duchi et al.'s exact Euclidean projection onto the L1 ball,
then the clamp into [0, 1] (again only shrinking delta). APGD-L1 (Croce and
Hein 2021) adapts the sparsity k while it runs; we keep it fixed, which is
simpler and weaker: use AutoAttack's L1 columns for the strongest figure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from engine.spec.config import Norm
from engine.spec.registry import NORM_LABELS, threat_label

L1_TOP = 0.01  # the fraction of coordinates an L1 step moves (SLIDE's 99th percentile)


def _per_example(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-example value shaped to broadcast over `like`'s other dimensions."""
    return v.view(-1, *([1] * (like.dim() - 1)))


def max_normalised(grad: torch.Tensor) -> torch.Tensor:
    """grad / max|grad| per example: sign's direction where it is decisive, but differentiable."""
    scale = grad.abs().flatten(1).amax(1).clamp(min=1e-12)
    return grad / scale.view(-1, *([1] * (grad.dim() - 1)))


def l2_normalised(grad: torch.Tensor) -> torch.Tensor:
    """grad / ||grad||_2 per example (a zero gradient stays zero)."""
    return grad / _per_example(grad.flatten(1).norm(dim=1).clamp(min=1e-12), grad)


def l1_ball_projection(delta: torch.Tensor, eps: float) -> torch.Tensor:
    """The Euclidean projection of each example's delta onto the L1 ball of radius eps.

    Duchi, Shalev-Shwartz, Singer and Chandra (2008): soft-threshold |delta| by
    the theta that makes the L1 norm eps; examples already inside are unchanged.
    """
    flat = delta.flatten(1)
    a = flat.abs()
    inside = a.sum(1) <= eps
    u = a.sort(1, descending=True).values
    css = u.cumsum(1) - eps
    k = torch.arange(1, u.shape[1] + 1, device=u.device, dtype=u.dtype)
    rho = (u * k > css).to(u.dtype).cumsum(1).argmax(1, keepdim=True)  # last index it holds
    theta = (css.gather(1, rho) / (rho + 1).to(u.dtype)).clamp(min=0)
    shrunk = flat.sign() * (a - theta).clamp(min=0)
    return torch.where(inside[:, None], flat, shrunk).view_as(delta)


@dataclass(frozen=True)
class ThreatModel:
    """The set an attacker may move an input within: ||delta||_norm <= eps, x + delta in [0, 1]."""

    norm: Norm = "linf"
    eps: float = 0.3

    def __post_init__(self) -> None:
        if self.norm not in NORM_LABELS:
            raise ValueError(f"norm {self.norm!r}: allowed {', '.join(NORM_LABELS)}")

    @property
    def label(self) -> str:
        """How headers name it: "L2, eps 0.5"."""
        return threat_label(self.norm, self.eps)

    def scaled(self, eps: float) -> ThreatModel:
        """The same norm at another radius (the sanity curve, the sweep)."""
        return replace(self, eps=eps)

    def unbounded(self, dim: int) -> ThreatModel:
        """A ball that holds the whole box around any x in it: the box's diameter in this norm."""
        return self.scaled({"linf": 1.0, "l2": math.sqrt(dim), "l1": float(dim)}[self.norm])

    def size(self, delta: torch.Tensor) -> torch.Tensor:
        """||delta|| per example in this norm."""
        flat = delta.flatten(1)
        if self.norm == "linf":
            return flat.abs().amax(1)
        return flat.norm(p=2 if self.norm == "l2" else 1, dim=1)

    def around(self, x: torch.Tensor) -> Ball:
        """The ball around x (its L-inf corners computed once, as every step clamps to them)."""
        if self.norm == "linf":
            lower, upper = (x - self.eps).clamp(min=0.0), (x + self.eps).clamp(max=1.0)
            return Ball(self, x, lower, upper)
        return Ball(self, x)

    def direction(self, grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The steepest-ascent step of unit size in this norm (may reuse `grad`'s storage)."""
        if self.norm == "linf":
            return grad.sign_()
        if self.norm == "l2":
            return l2_normalised(grad)
        # L1: coordinates at the box edge that the gradient pushes outwards cannot move
        blocked = ((x <= 0) & (grad < 0)) | ((x >= 1) & (grad > 0))
        g = grad.masked_fill(blocked, 0).flatten(1)
        k = max(1, int(L1_TOP * g.shape[1]))
        top = g.abs().topk(k, dim=1)
        out = torch.zeros_like(g).scatter_(1, top.indices, 1.0 / k)
        return (out * g.sign()).view_as(grad)

    def smooth_direction(self, grad: torch.Tensor) -> torch.Tensor:
        """A differentiable stand-in for `direction` (the unrolled search differentiates it)."""
        if self.norm == "linf":
            return max_normalised(grad)
        if self.norm == "l2":
            return l2_normalised(grad)
        flat = grad.flatten(1)
        k = max(1, int(L1_TOP * flat.shape[1]))
        kth = flat.abs().topk(k, dim=1).values[:, -1:]
        kept = flat * (flat.abs() >= kth).to(flat.dtype)
        return (max_normalised(kept) / k).view_as(grad)


def as_threat(threat: ThreatModel | float) -> ThreatModel:
    """A threat model; a bare number is an L-inf eps (how attacks were built before norms)."""
    return threat if isinstance(threat, ThreatModel) else ThreatModel("linf", float(threat))


@dataclass
class Ball:
    """A threat model around one batch x: where a search may start, step and must stay."""

    threat: ThreatModel
    x: torch.Tensor
    lower: torch.Tensor | None = None  # L-inf only: the corners every step clamps to
    upper: torch.Tensor | None = None

    def project(self, z: torch.Tensor) -> torch.Tensor:
        """z moved into the ball and the [0, 1] box (see the module docstring per norm)."""
        t = self.threat
        if t.norm == "linf":
            return torch.clamp(z, min=self.lower, max=self.upper)
        delta = z - self.x
        if t.norm == "l2":
            n = delta.flatten(1).norm(dim=1)
            delta = delta * _per_example((t.eps / n.clamp(min=1e-12)).clamp(max=1.0), delta)
        else:
            delta = l1_ball_projection(delta, t.eps)
        return torch.clamp(self.x + delta, 0.0, 1.0)

    def random_start(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """A uniformly random point of the ball, moved into [0, 1]."""
        t, x = self.threat, self.x
        if t.norm == "linf":
            noise = torch.empty_like(x).uniform_(-t.eps, t.eps, generator=generator)
            return torch.clamp(x + noise, min=self.lower, max=self.upper)
        flat = x.flatten(1)
        d = flat.shape[1]
        if t.norm == "l2":
            g = torch.empty_like(flat).normal_(generator=generator)
            u = torch.empty(len(x), 1, device=x.device, dtype=x.dtype).uniform_(generator=generator)
            delta = l2_normalised(g) * t.eps * u.pow(1.0 / d)
        else:
            e = torch.empty(len(x), d + 1, device=x.device, dtype=x.dtype).exponential_(
                generator=generator
            )
            signs = torch.empty_like(flat).bernoulli_(0.5, generator=generator) * 2 - 1
            delta = signs * e[:, 1:] / e.sum(1, keepdim=True) * t.eps
        return torch.clamp(x + delta.view_as(x), 0.0, 1.0)

    def offset(self, noise: torch.Tensor | None) -> torch.Tensor:
        """x + noise moved into the ball (x itself when there is no noise)."""
        if noise is None:
            return self.x.clone()
        return self.project(self.x + noise)

    def step(self, z: torch.Tensor, grad: torch.Tensor, size: float) -> torch.Tensor:
        """One ascent step from z (z's storage is reused): project(z + size * direction)."""
        return self.project(z.add_(self.threat.direction(grad, z), alpha=size))

    def smooth_step(self, z: torch.Tensor, grad: torch.Tensor, size: float) -> torch.Tensor:
        """The differentiable step the unrolled search takes (z keeps its graph)."""
        return self.project(z + size * self.threat.smooth_direction(grad))
