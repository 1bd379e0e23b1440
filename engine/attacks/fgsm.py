"""FGSM (Goodfellow et al. 2015): one signed gradient step of size eps from the clean point."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from engine.attacks.base import AttackColumn, LossName
from engine.attacks.pgd import PGD
from engine.spec.config import NonNegReal, PresetConfig, Unit
from engine.spec.registry import ATTACKS


class FGSM(PGD):
    """x + eps * sign(grad), clipped to [0, 1]: PGD's one step of size eps from x itself."""

    def __init__(self, eps: float, loss: LossName = "ce", kappa: float = 0.0) -> None:
        super().__init__(eps, eps, 1, 1, loss, kappa, random_start=False, keep_best=False)


@ATTACKS.register("fgsm")
class FGSMColumn(AttackColumn):
    """FGSM at the checkpoint's eps (or its own), CE or C&W."""

    kind: Literal["fgsm"]
    eps: Unit | None = None
    loss: LossName = "ce"
    kappa: NonNegReal | None = None

    role: ClassVar[str] = "fgsm"

    def resolve(self, cfg: PresetConfig) -> dict[str, Any]:
        params: dict[str, Any] = {
            "eps": cfg.attack.eps if self.eps is None else self.eps,
            "loss": self.loss,
        }
        if self.loss == "cw":
            params["kappa"] = cfg.attack.kappa if self.kappa is None else self.kappa
        return params

    @classmethod
    def build(cls, params: dict[str, Any]) -> FGSM:
        kappa = params.get("kappa", 0.0) if params.get("loss") == "cw" else 0.0
        return FGSM(params["eps"], params.get("loss", "ce"), kappa)
