"""FGSM (Goodfellow et al. 2015): one steepest-ascent step of size eps from the clean point.

Under L-inf that is x + eps * sign(grad); under L2 it is the fast gradient
method, x + eps * grad / ||grad||_2; under L1 one sparse step of L1 size eps
(engine/attacks/threat.py).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import field_validator

from engine.attacks.base import AttackColumn, LossName, within_norm_cap
from engine.attacks.pgd import PGD, threat_of
from engine.attacks.threat import ThreatModel, as_threat
from engine.spec.config import CW_KAPPA, NonNegReal, Norm, PresetConfig
from engine.spec.registry import ATTACKS


class FGSM(PGD):
    """PGD's one step of size eps from x itself, projected into the ball and [0, 1]."""

    def __init__(
        self, threat: ThreatModel | float, loss: LossName = "ce", kappa: float = CW_KAPPA
    ) -> None:
        threat = as_threat(threat)
        super().__init__(threat, threat.eps, 1, 1, loss, kappa, random_start=False, keep_best=False)


@ATTACKS.register("fgsm")
class FGSMColumn(AttackColumn):
    """FGSM at the checkpoint's eps and norm (or its own), CE or C&W."""

    kind: Literal["fgsm"]
    norm: Norm | None = None
    eps: NonNegReal | None = None
    loss: LossName = "ce"
    kappa: NonNegReal | None = None

    role: ClassVar[str] = "fgsm"

    _fraction = field_validator("eps")(within_norm_cap)

    def resolve(self, cfg: PresetConfig) -> dict[str, Any]:
        params: dict[str, Any] = {
            "eps": cfg.attack.eps if self.eps is None else self.eps,
            "norm": cfg.attack.norm if self.norm is None else self.norm,
            "loss": self.loss,
        }
        if self.loss == "cw":
            params["kappa"] = cfg.attack.kappa if self.kappa is None else self.kappa
        return params

    @classmethod
    def build(cls, params: dict[str, Any]) -> FGSM:
        return FGSM(threat_of(params), params.get("loss", "ce"), params.get("kappa", CW_KAPPA))
