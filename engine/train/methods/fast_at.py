"""Fast adversarial training (Wong, Rice & Kolter, ICLR 2020, "Fast is better than free").

The inner maximiser is one FGSM step from a uniformly random point of the
threat model's ball: x0 ~ U(ball around x) moved into [0, 1], then
x_adv = project(x0 + alpha * direction(grad CE)), with alpha = `step` * eps.
The paper's step is alpha = 1.25 eps (10/255 at eps 8/255 on CIFAR-10; 0.375 at
eps 0.3 in its MNIST code); at 2 eps and beyond it reports catastrophic
overfitting (robustness to PGD collapses within an epoch), which the
`[guard]` block (engine/train/guard.py) watches for.

The ball, its random start, the steepest-ascent direction and the projection
come from the run's threat model (`[attack] norm`, `eps`), so L2 works through
its geometry like every other search. `[attack] step` and `steps` are not used
for training here; they stay the per-epoch validation PGD's step (its steps are
`eval.steps`). One difference from the paper's code: the gradient step is taken
with the model in eval mode, as every training adversary in the workbench is.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from engine.attacks import PGD, ThreatModel
from engine.spec.config import MethodSection, PosReal, PresetConfig
from engine.spec.panels import FormField, Panels, Series
from engine.spec.registry import METHODS
from engine.train.distributed import attack_model


class FastATConfig(MethodSection):
    name: Literal["fast_at"]
    step: PosReal = 1.25  # FGSM step as a multiple of eps (the paper: 1.25)
    panels = Panels(
        series=(Series("ce_adv"),),
        fields=(FormField("step", "step (x eps)"),),
    )
    scalable_step: ClassVar[bool] = True  # the guard's "lower_step" may scale it


def fgsm_from_random_start(threat: ThreatModel, alpha: float) -> PGD:
    """One step of size alpha from a uniform random start, last iterate: FGSM with random init."""
    return PGD(threat, alpha, 1, 1, "ce", random_start=True, keep_best=False)


@METHODS.register("fast_at")
class FastAT:
    config = FastATConfig

    def __init__(self, cfg: PresetConfig) -> None:
        self.threat = ThreatModel(cfg.attack.norm, cfg.attack.eps)
        self.step = cfg.method.step
        self.attack = fgsm_from_random_start(self.threat, self.step * self.threat.eps)

    def scale_step(self, factor: float) -> float:
        """Multiply the step (x eps) by `factor`; the new step (the guard's "lower_step")."""
        self.step *= factor
        self.attack = fgsm_from_random_start(self.threat, self.step * self.threat.eps)
        return self.step

    def adversary(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training examples: FGSM from a random start against the plain module."""
        return self.attack(attack_model(model), x, y)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        ce_adv = F.cross_entropy(model(self.adversary(model, x, y)), y)
        return ce_adv, {"ce_adv": ce_adv.detach()}
