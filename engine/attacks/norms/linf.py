"""L-inf: the box [-eps, eps]^d (the papers' threat model and the workbench's default).

Start uniform in the box; direction sign(g); projection clamp into
[max(x - eps, 0), min(x + eps, 1)], the exact projection onto the ball
intersected with [0, 1] (both are boxes). These are the very operations the
workbench ran before threat models existed, in the same order, drawing the
same random numbers, so L-inf results are bit-identical to those runs.
"""

from __future__ import annotations

from typing import Any

import torch

from engine.attacks.norms import Geometry, max_normalised
from engine.spec.registry import NORMS


@NORMS.register("linf")
class LInf(Geometry):
    eps_cap = 1.0  # a ball beyond 1 is the whole box already
    autoattack = "Linf"

    def unbounded_radius(self, dim: int) -> float:
        return 1.0

    def size(self, flat: torch.Tensor) -> torch.Tensor:
        return flat.abs().amax(1)

    def prepare(self, x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The ball's corners, computed once: every step clamps to them."""
        return (x - eps).clamp(min=0.0), (x + eps).clamp(max=1.0)

    def project(self, z: torch.Tensor, x: torch.Tensor, eps: float, cache: Any) -> torch.Tensor:
        lower, upper = cache
        return torch.clamp(z, min=lower, max=upper)

    def random_start(
        self, x: torch.Tensor, eps: float, cache: Any, generator: torch.Generator | None
    ) -> torch.Tensor:
        noise = torch.empty_like(x).uniform_(-eps, eps, generator=generator)
        return self.project(x + noise, x, eps, cache)

    def direction(self, grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return grad.sign_()

    def smooth_direction(self, grad: torch.Tensor) -> torch.Tensor:
        return max_normalised(grad)
