"""One file per norm: everything an attack does differently under L-inf, L2 or L1.

A norm is a `Geometry` registered by name in `NORMS` (`@NORMS.register("l2")`)
by the file of that name in this folder; the file's name is also how presets
spell it (`[attack] norm = "l2"`) and, through `engine.spec.registry.norm_label`,
how every header names it ("L2"). `engine/attacks/threat.py`'s `ThreatModel`
and `Ball` ask the geometry for the four things that depend on the norm, and
nothing else in the workbench branches on a norm's name:

* a random start inside the ball (`random_start`);
* the steepest-ascent direction of a gradient (`direction`), and a
  differentiable stand-in for it (`smooth_direction`, for the adaptive
  attacker's unrolled search);
* the projection back into the ball and the [0, 1] box (`project`);
* the size of a perturbation (`size`), and the radius of the ball that covers
  the whole box (`unbounded_radius`, the sanity check's "unbounded" attack).

Plus what the rest of the workbench needs to know about it: the largest
meaningful eps (`eps_cap`: 1 for L-inf, where a larger ball is the whole box
already), and how pyautoattack spells it and which of its components it lacks.

A new norm is one new file here: subclass `Geometry`, register it, done.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch

from engine.spec.registry import import_submodules


def per_example(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-example value shaped to broadcast over `like`'s other dimensions."""
    return v.view(-1, *([1] * (like.dim() - 1)))


def max_normalised(grad: torch.Tensor) -> torch.Tensor:
    """grad / max|grad| per example: sign's direction where it is decisive, but differentiable."""
    scale = grad.abs().flatten(1).amax(1).clamp(min=1e-12)
    return grad / scale.view(-1, *([1] * (grad.dim() - 1)))


def l2_normalised(grad: torch.Tensor) -> torch.Tensor:
    """grad / ||grad||_2 per example (a zero gradient stays zero)."""
    return grad / per_example(grad.flatten(1).norm(dim=1).clamp(min=1e-12), grad)


class Geometry(ABC):
    """What a norm decides: a subclass must give every abstract method; instances hold no state."""

    eps_cap: ClassVar[float | None] = None  # the largest eps that means anything (None: no cap)
    autoattack: ClassVar[str | None] = None  # pyautoattack's `norm=` spelling (None: not there)
    autoattack_lacks: ClassVar[tuple[str, ...]] = ()  # its components missing for this norm
    autoattack_targets: ClassVar[int] = 9  # target classes its standard version uses

    @abstractmethod
    def unbounded_radius(self, dim: int) -> float:
        """The radius of a ball that holds the whole box around any x in it."""

    @abstractmethod
    def size(self, flat: torch.Tensor) -> torch.Tensor:
        """||delta|| per example of a (batch, dim) delta."""

    def prepare(self, x: torch.Tensor, eps: float) -> Any:
        """What `project` reuses for every step around this batch (None: nothing)."""
        return None

    @abstractmethod
    def project(self, z: torch.Tensor, x: torch.Tensor, eps: float, cache: Any) -> torch.Tensor:
        """z moved into the eps-ball around x and into the [0, 1] box."""

    @abstractmethod
    def random_start(
        self, x: torch.Tensor, eps: float, cache: Any, generator: torch.Generator | None
    ) -> torch.Tensor:
        """A uniformly random point of the ball around x, moved into [0, 1]."""

    @abstractmethod
    def direction(self, grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The steepest-ascent step of unit size at x (may reuse `grad`'s storage)."""

    @abstractmethod
    def smooth_direction(self, grad: torch.Tensor) -> torch.Tensor:
        """A differentiable stand-in for `direction`."""


import_submodules(__name__, __path__)  # each norm's file registers it (defined above first)
