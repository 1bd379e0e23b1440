"""API-Net anti-perturbation inference (Dong et al., ECCV 2020, Eqs. 12-13).

For every class c, PGD finds Delta_c maximising log p(c | x + Delta) inside a
ball of radius eps_ap (its own norm, `defense.norm`: L-inf in the paper,
whatever norm the attacks on it use); z_c = clip(x + Delta_c, 0, 1) and the defence
predicts softmax_c[log p(c | z_c)]. The C searches run as one PGD over a
(B*C) batch, chunked to bound memory, with BatchNorm/Dropout in eval mode.

The returned scores are differentiable w.r.t. x in the BPDA sense
(dz_c/dx = I): z_c = x + stop_gradient(z_c - x). Attacking `APINet` with an
ordinary white-box attack is therefore the paper's BPDA attack; the transfer
and adaptive strategies are in engine/defenses/strategies.py.

Both searches are the workbench's one PGD (`engine.attacks.ascend`) with the
objective log p(c | z): the threat model's steps for the defence itself, and
its differentiable steps for the adaptive attacker's unrolled copy.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from engine.attacks import ThreatModel, ascend, eval_mode
from engine.attacks.objectives import log_likelihood
from engine.spec.config import Norm, PresetConfig

Start = Literal["zero", "noise"]


@dataclass
class AntiPerturbation:
    """Settings of the inner search; the paper's MNIST values are the defaults."""

    eps_ap: float = 12 / 255
    steps: int = 8
    step: float = 0.01
    start: Start = "zero"
    chunk: int = 4096  # examples (of the B*C batch) per PGD call
    norm: Norm = "linf"  # the search's own ball, whatever norm the attacks use

    @property
    def threat(self) -> ThreatModel:
        return ThreatModel(self.norm, self.eps_ap)

    def start_noise(
        self, shape: torch.Size, device: torch.device, generator: torch.Generator | None = None
    ) -> torch.Tensor | None:
        """The x + 0.001 * N(0, 1) start of the public code, drawn once for all classes."""
        if self.start != "noise":
            return None
        return 0.001 * torch.randn(shape, device=device, generator=generator)

    def search(
        self, model: nn.Module, x: torch.Tensor, num_classes: int, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """z_c for every example and class: a (B, C, *x.shape[1:]) tensor, no graph."""
        b = len(x)
        xr = x.detach().repeat_interleave(num_classes, 0)
        cr = torch.arange(num_classes, device=x.device).repeat(b)
        nr = None if noise is None else noise.reshape(b * num_classes, *x.shape[1:])
        out = torch.empty_like(xr)
        with eval_mode(model), torch.enable_grad():  # the search needs input gradients
            for i in range(0, len(xr), self.chunk):
                sl = slice(i, i + self.chunk)
                out[sl] = self._pgd(model, xr[sl], cr[sl], None if nr is None else nr[sl])
        return out.view(b, num_classes, *x.shape[1:])

    def _pgd(
        self, model: nn.Module, x: torch.Tensor, c: torch.Tensor, noise: torch.Tensor | None
    ) -> torch.Tensor:
        ball = self.threat.around(x)
        z = ball.offset(noise)
        return ascend(model, z, ball, log_likelihood(c), self.step, self.steps).detach()


def class_scores(model: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """log p(c | z_c) for z of shape (B, C, ...): the C scores of Eq. 12, shape (B, C)."""
    b, c = z.shape[:2]
    logp = F.log_softmax(model(z.reshape(b * c, *z.shape[2:])), 1).view(b, c, c)
    return logp.diagonal(dim1=1, dim2=2)


class APINet(nn.Module):
    """A trained classifier wrapped with anti-perturbation inference.

    forward(x) returns the C scores (use them as logits: softmax gives Eq. 12).
    Gradients reach x through f(z_c) as if dz_c/dx = I (BPDA), and reach the
    model's parameters through f(z_c) only, as API-Net training (Alg. 1) needs.
    """

    def __init__(self, model: nn.Module, num_classes: int, ap: AntiPerturbation) -> None:
        super().__init__()
        self.model = model
        self.num_classes = num_classes
        self.ap = ap

    def purify(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = self.ap.start_noise(
            torch.Size((len(x), self.num_classes, *x.shape[1:])), x.device, generator
        )
        return self.ap.search(self.model, x, self.num_classes, noise)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.purify(x)
        z = x[:, None] + (z - x[:, None]).detach()  # BPDA: identity backward through z
        with eval_mode(self.model) if not self.training else nullcontext():
            return class_scores(self.model, z)


class UnrolledAPINet(nn.Module):
    """The adaptive attacker's view of API-Net: the inner search unrolled and differentiated.

    The real inner step (sign(grad) under L-inf) has derivative zero, so the
    unrolled surrogate steps along the threat model's differentiable direction
    (grad / max|grad| under L-inf: same direction and size as sign where the
    gradient is decisive, but differentiable), keeps the
    graph of every inner step (create_graph), may use fewer inner steps than
    the defence, and averages the class scores over `eot` random starts
    (expectation over transformation). Use it only to compute gradients;
    score the resulting points with the real `APINet`.
    """

    def __init__(
        self, model: nn.Module, num_classes: int, ap: AntiPerturbation, steps: int = 2, eot: int = 1
    ) -> None:
        super().__init__()
        self.model = model
        self.num_classes = num_classes
        self.ap = ap
        self.steps = steps
        self.eot = eot

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, k = len(x), self.num_classes
        xr = x.repeat_interleave(k, 0)
        cr = torch.arange(k, device=x.device).repeat(b)
        ball = self.ap.threat.around(xr)
        total = 0.0
        for _ in range(self.eot):
            z = xr
            if self.ap.start == "noise" or self.eot > 1:
                z = ball.offset(0.001 * torch.randn_like(xr))
            goal = log_likelihood(cr)
            z = ascend(self.model, z, ball, goal, self.ap.step, self.steps, create_graph=True)
            total = total + goal(self.model(z)).view(b, k)
        return total / self.eot


def anti_perturbation(cfg: PresetConfig) -> AntiPerturbation:
    """The inner search a config's `[defense]` describes."""
    d = cfg.defense
    return AntiPerturbation(d.eps_ap, d.steps, d.step, d.start, d.chunk, d.norm)


def build_defense(cfg: PresetConfig, model: nn.Module, num_classes: int) -> APINet | None:
    """The defence a config names, wrapped around `model` (None when there is none)."""
    if cfg.defense.name == "none":
        return None
    return APINet(model, num_classes, anti_perturbation(cfg))


def unrolled(cfg: PresetConfig, model: nn.Module, num_classes: int) -> UnrolledAPINet:
    """The adaptive attacker's differentiable copy of the defence a config describes."""
    d = cfg.defense
    return UnrolledAPINet(model, num_classes, anti_perturbation(cfg), d.adaptive_steps, d.eot)
