"""L1: the cross-polytope (sparse perturbations; Tramer & Boneh's and Croce & Hein's L1 threat).

Start uniform in the ball (signs times (E_1..E_d) / (E_0 + ... + E_d) with
E_i ~ Exp(1), which is uniform in the cross-polytope); direction: the sparse
step of Tramer and Boneh's SLIDE (the signs of the top `L1_TOP` fraction of
|g|, at least one coordinate, each 1/k so the step has L1 norm 1), leaving out
coordinates already at the box edge that the gradient pushes out of it;
projection: Duchi et al.'s exact Euclidean projection onto the L1 ball, then
the clamp into [0, 1] (again only shrinking delta). APGD-L1 (Croce and Hein
2021) adapts the sparsity k while it runs; we keep it fixed, which is simpler
and weaker: use AutoAttack's L1 columns for the strongest figure.
"""

from __future__ import annotations

from typing import Any

import torch

from engine.attacks.norms import Geometry, max_normalised
from engine.spec.registry import NORMS

L1_TOP = 0.01  # the fraction of coordinates an L1 step moves (SLIDE's 99th percentile)


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


@NORMS.register("l1")
class L1(Geometry):
    autoattack = "L1"
    autoattack_lacks = ("square",)  # pyautoattack's Square knows L-inf and L2 only
    autoattack_targets = 5  # as pyautoattack's standard version sets for L1

    def unbounded_radius(self, dim: int) -> float:
        return float(dim)

    def size(self, flat: torch.Tensor) -> torch.Tensor:
        return flat.norm(p=1, dim=1)

    def project(self, z: torch.Tensor, x: torch.Tensor, eps: float, cache: Any) -> torch.Tensor:
        return torch.clamp(x + l1_ball_projection(z - x, eps), 0.0, 1.0)

    def random_start(
        self, x: torch.Tensor, eps: float, cache: Any, generator: torch.Generator | None
    ) -> torch.Tensor:
        flat = x.flatten(1)
        d = flat.shape[1]
        e = torch.empty(len(x), d + 1, device=x.device, dtype=x.dtype).exponential_(
            generator=generator
        )
        signs = torch.empty_like(flat).bernoulli_(0.5, generator=generator) * 2 - 1
        delta = signs * e[:, 1:] / e.sum(1, keepdim=True) * eps
        return torch.clamp(x + delta.view_as(x), 0.0, 1.0)

    def direction(self, grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        # coordinates at the box edge that the gradient pushes outwards cannot move
        blocked = ((x <= 0) & (grad < 0)) | ((x >= 1) & (grad > 0))
        g = grad.masked_fill(blocked, 0).flatten(1)
        k = max(1, int(L1_TOP * g.shape[1]))
        top = g.abs().topk(k, dim=1)
        out = torch.zeros_like(g).scatter_(1, top.indices, 1.0 / k)
        return (out * g.sign()).view_as(grad)

    def smooth_direction(self, grad: torch.Tensor) -> torch.Tensor:
        flat = grad.flatten(1)
        k = max(1, int(L1_TOP * flat.shape[1]))
        kth = flat.abs().topk(k, dim=1).values[:, -1:]
        kept = flat * (flat.abs() >= kth).to(flat.dtype)
        return (max_normalised(kept) / k).view_as(grad)
