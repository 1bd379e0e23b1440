"""L2: the Euclidean ball (RobustBench's second leaderboard: CIFAR-10 at eps 0.5).

Start uniform in the ball (a Gaussian direction, radius eps * U^(1/d));
direction g / ||g||_2 (as torchattacks' PGDL2 and Madry-lab's robustness
library step); projection: rescale delta onto the ball, then clamp x + delta
into [0, 1]. Clamping moves each coordinate of delta towards 0 (x is in
[0, 1]), so no norm grows and the result stays in the ball; it is a point of
ball and box, but not always the Euclidean projection onto their intersection
(that needs an iterative solver; the two differ only where the rescaled point
leaves the box).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from engine.attacks.norms import Geometry, l2_normalised, per_example
from engine.spec.registry import NORMS


@NORMS.register("l2")
class L2(Geometry):
    autoattack = "L2"

    def unbounded_radius(self, dim: int) -> float:
        return math.sqrt(dim)

    def size(self, flat: torch.Tensor) -> torch.Tensor:
        return flat.norm(p=2, dim=1)

    def project(self, z: torch.Tensor, x: torch.Tensor, eps: float, cache: Any) -> torch.Tensor:
        delta = z - x
        n = delta.flatten(1).norm(dim=1)
        delta = delta * per_example((eps / n.clamp(min=1e-12)).clamp(max=1.0), delta)
        return torch.clamp(x + delta, 0.0, 1.0)

    def random_start(
        self, x: torch.Tensor, eps: float, cache: Any, generator: torch.Generator | None
    ) -> torch.Tensor:
        flat = x.flatten(1)
        g = torch.empty_like(flat).normal_(generator=generator)
        u = torch.empty(len(x), 1, device=x.device, dtype=x.dtype).uniform_(generator=generator)
        delta = l2_normalised(g) * eps * u.pow(1.0 / flat.shape[1])
        return torch.clamp(x + delta.view_as(x), 0.0, 1.0)

    def direction(self, grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return l2_normalised(grad)

    def smooth_direction(self, grad: torch.Tensor) -> torch.Tensor:
        return l2_normalised(grad)
