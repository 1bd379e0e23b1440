"""Attacks with one call shape, `attack(model, x, y) -> x_adv`, one file per kind; every one
searches the ball of a threat model (engine/attacks/threat.py), which alone names norms.

Importing this package imports every attack file in it, and each registers its
suite column class under its `kind` (engine/spec/registry.py `ATTACKS`), so a new
attack is a new file here: suites, training adversaries and evidence pick it up.
"""

from __future__ import annotations

from engine.attacks.base import Attack, AttackColumn, LossName, ball, eval_mode
from engine.attacks.fgsm import FGSM
from engine.attacks.objectives import cw_margin, objective
from engine.attacks.pgd import PGD, ascend
from engine.attacks.threat import Ball, ThreatModel, as_threat
from engine.spec.config import CW_KAPPA
from engine.spec.registry import ATTACKS, import_submodules

import_submodules(__name__, __path__)


def build_attack(
    kind: str,
    threat: ThreatModel | float,
    step: float = 0.01,
    steps: int = 40,
    *,
    restarts: int = 1,
    loss: LossName = "ce",
    kappa: float = CW_KAPPA,
    random_start: bool = True,
    keep_best: bool = True,
) -> Attack:
    """A registered per-example attack in a threat model (training adversaries, the gallery).

    A bare number for `threat` is an L-inf eps.
    """
    t = as_threat(threat)
    params = {
        "eps": t.eps,
        "norm": t.norm,
        "step": step,
        "steps": steps,
        "restarts": restarts,
        "loss": loss,
        "kappa": kappa,
        "random_start": random_start,
        "keep_best": keep_best,
    }
    return ATTACKS.get(kind).build(params)


__all__ = [
    "ATTACKS",
    "FGSM",
    "PGD",
    "Attack",
    "AttackColumn",
    "Ball",
    "ThreatModel",
    "ascend",
    "ball",
    "build_attack",
    "cw_margin",
    "eval_mode",
    "objective",
]
