"""The threat model: a norm and a radius, and the searches' view of its ball.

Every search in the workbench (PGD, FGSM, TRADES' KL search, API-Net's
anti-perturbation search and its unrolled copy) asks a `ThreatModel` and the
`Ball` it draws around a batch for the things that depend on the norm: a random
start, the steepest-ascent direction, the projection into the ball and the
[0, 1] box, and the size of a perturbation. Both hand every such question to
the norm's `Geometry`, one file per norm in `engine/attacks/norms/` (where each
norm's choices are written down), so nothing here or in the attacks names a
norm: a new norm is a new file in that folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch

from engine.attacks.norms import Geometry
from engine.spec.registry import NORMS, threat_label


@dataclass(frozen=True)
class ThreatModel:
    """The set an attacker may move an input within: ||delta||_norm <= eps, x + delta in [0, 1]."""

    norm: str = "linf"
    eps: float = 0.3

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"norm {self.norm!r}: allowed {NORMS.allowed()}")

    @property
    def geometry(self) -> Geometry:
        """The norm's own operations (engine/attacks/norms/<norm>.py)."""
        return NORMS.get(self.norm)()

    @property
    def label(self) -> str:
        """How headers name it: "L2, eps 0.5"."""
        return threat_label(self.norm, self.eps)

    def scaled(self, eps: float) -> ThreatModel:
        """The same norm at another radius (the sanity curve, the sweep)."""
        return replace(self, eps=eps)

    def unbounded(self, dim: int) -> ThreatModel:
        """A ball that holds the whole box around any x in it: the box's diameter in this norm."""
        return self.scaled(self.geometry.unbounded_radius(dim))

    def size(self, delta: torch.Tensor) -> torch.Tensor:
        """||delta|| per example in this norm."""
        return self.geometry.size(delta.flatten(1))

    def around(self, x: torch.Tensor) -> Ball:
        """The ball around x (with whatever the norm precomputes for its steps)."""
        geometry = self.geometry
        return Ball(self, x, geometry, geometry.prepare(x, self.eps))

    def direction(self, grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The steepest-ascent step of unit size in this norm (may reuse `grad`'s storage)."""
        return self.geometry.direction(grad, x)

    def smooth_direction(self, grad: torch.Tensor) -> torch.Tensor:
        """A differentiable stand-in for `direction` (the unrolled search differentiates it)."""
        return self.geometry.smooth_direction(grad)


def as_threat(threat: ThreatModel | float) -> ThreatModel:
    """A threat model; a bare number is an L-inf eps (how attacks were built before norms)."""
    return threat if isinstance(threat, ThreatModel) else ThreatModel("linf", float(threat))


@dataclass
class Ball:
    """A threat model around one batch x: where a search may start, step and must stay."""

    threat: ThreatModel
    x: torch.Tensor
    geometry: Geometry = field(repr=False)
    cache: Any = field(default=None, repr=False)  # the norm's precomputation (L-inf: corners)

    def rows(self, index: torch.Tensor) -> Ball:
        """The ball around some of the examples (a search that dropped the others); the norm's
        precomputation is per example, so it is the same as this ball's rows."""
        return self.threat.around(self.x[index])

    def project(self, z: torch.Tensor) -> torch.Tensor:
        """z moved into the ball and the [0, 1] box (see the norm's file for how)."""
        return self.geometry.project(z, self.x, self.threat.eps, self.cache)

    def random_start(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """A uniformly random point of the ball, moved into [0, 1]."""
        return self.geometry.random_start(self.x, self.threat.eps, self.cache, generator)

    def offset(self, noise: torch.Tensor | None) -> torch.Tensor:
        """x + noise moved into the ball (x itself when there is no noise)."""
        if noise is None:
            return self.x.clone()
        return self.project(self.x + noise)

    def step(self, z: torch.Tensor, grad: torch.Tensor, size: float) -> torch.Tensor:
        """One ascent step from z (z's storage is reused): project(z + size * direction)."""
        return self.project(z.add_(self.geometry.direction(grad, z), alpha=size))

    def smooth_step(self, z: torch.Tensor, grad: torch.Tensor, size: float) -> torch.Tensor:
        """The differentiable step the unrolled search takes (z keeps its graph)."""
        return self.project(z + size * self.geometry.smooth_direction(grad))
