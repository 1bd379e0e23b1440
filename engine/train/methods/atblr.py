"""ATBLR (Wan, Chen, Yang, ECCV 2020): adversarial training with bi-directional
likelihood regularisation over a Gaussian-mixture head.

    clean (Eq. 7):  CE(f(x), y) + lambda * L_lkd(x)
    adv   (Eq. 8):  CE(f(a), y) - lambda * L_lkd(a),   a = PGD-k(x)
    L_lkd (Eq. 6):  mean ||h(x) - mu_y||^2

Both halves in equal proportion: loss = (clean + adv) / 2, one forward over
the concatenated batch. The adversarial term is unbounded below; the
trainer's NaN/inf guard is what stops a run that runs away.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from engine.models import Classifier, GaussianHead
from engine.spec.config import MethodSection, NonNegReal, PresetConfig
from engine.spec.panels import FormField, Panels, Plot, Series
from engine.spec.registry import METHODS
from engine.train.methods.base import training_adversary


class AtblrConfig(MethodSection):
    name: Literal["atblr"]
    lam: NonNegReal = Field(0.1, alias="lambda")
    adv_cap: NonNegReal = 0.0  # 0: the paper's unbounded Eq. 8; c > 0: push stops at c * dim(h)
    panels = Panels(
        series=(
            Series("ce_clean"),
            Series("ce_adv"),
            Series("lkd_clean", "L_lkd clean"),
            Series("lkd_adv", "L_lkd adversarial"),
        ),
        plots=(Plot("L_lkd clean vs adversarial", ("lkd_clean", "lkd_adv")),),  # the paper's Fig. 3
        fields=(FormField("lambda", "lambda (L_lkd weight)"),),
    )

    def requirement(self, cfg: PresetConfig) -> tuple[str, str] | None:
        if cfg.model.head != "gaussian":
            return "model.head", (
                f"method 'atblr' needs the mixture head, given {cfg.model.head!r}, "
                "allowed: 'gaussian'"
            )
        return None


@METHODS.register("atblr")
class Atblr:
    config = AtblrConfig

    def __init__(self, cfg: PresetConfig) -> None:
        self.lam = cfg.method.lam
        self.adv_cap = cfg.method.adv_cap
        self.adversary = training_adversary(cfg.attack)

    def loss(self, model: Classifier, x: torch.Tensor, y: torch.Tensor):
        head = model.head
        if not isinstance(head, GaussianHead):
            raise TypeError("ATBLR needs the gaussian head (model.head = 'gaussian')")
        a = self.adversary(model, x, y)
        n = len(x)
        yy = torch.cat([y, y])
        logits, h = model.forward_features(torch.cat([x, a]), yy)
        ce_clean = F.cross_entropy(logits[:n], y)
        ce_adv = F.cross_entropy(logits[n:], y)
        lkd_clean = head.lkd(h[:n], y)
        d_adv = head.sq_distance_to(h[n:], y)
        lkd_adv = d_adv.mean()
        push = lkd_adv
        if self.adv_cap > 0:
            push = d_adv.clamp(max=self.adv_cap * h.shape[1]).mean()
        clean = ce_clean + self.lam * lkd_clean
        adv = ce_adv - self.lam * push
        loss = 0.5 * (clean + adv)
        parts = {
            "ce_clean": ce_clean.detach(),
            "ce_adv": ce_adv.detach(),
            "lkd_clean": lkd_clean.detach(),
            "lkd_adv": lkd_adv.detach(),
        }
        return loss, parts
