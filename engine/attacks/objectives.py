"""What attackers maximise, per example: CE, the C&W margin, a KL, a class's likelihood.

Each is a function of the logits (the labels bound in), so the one PGD loop in
engine/attacks/pgd.py serves evaluation, TRADES and API-Net alike.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from engine.attacks.base import LossName

Objective = Callable[[torch.Tensor], torch.Tensor]  # logits -> per-example value to maximise


def cw_margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """z_y - max_{i != y} z_i, masking the true class with -inf (not a one-hot product)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], float("-inf")).amax(1)
    return true - other


def objective(
    logits: torch.Tensor,
    y: torch.Tensor,
    loss: LossName = "ce",
    kappa: float = 0.0,
    target: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-example quantity the attacker maximises.

    Untargeted: CE(z, y), or the C&W margin -relu(z_y - max_{i!=y} z_i + kappa).
    Targeted (towards `target`): -CE(z, t), or -relu(max_{i!=t} z_i - z_t + kappa).
    """
    if target is None:
        if loss == "ce":
            return F.cross_entropy(logits, y, reduction="none")
        return -torch.relu(cw_margin(logits, y) + kappa)
    if loss == "ce":
        return -F.cross_entropy(logits, target, reduction="none")
    return -torch.relu(-cw_margin(logits, target) + kappa)


def misclassification(
    y: torch.Tensor, loss: LossName = "ce", kappa: float = 0.0, target: torch.Tensor | None = None
) -> Objective:
    """The evaluation objective (CE or C&W, untargeted or towards `target`) for labels y."""
    return lambda logits: objective(logits, y, loss, kappa, target)


def kl_from(log_p_clean: torch.Tensor) -> Objective:
    """KL(p_clean || p(x')) per example: TRADES' inner maximisation."""
    return lambda logits: F.kl_div(
        F.log_softmax(logits, 1), log_p_clean, reduction="none", log_target=True
    ).sum(1)


def log_likelihood(c: torch.Tensor) -> Objective:
    """log p(c | z) per example: API-Net's anti-perturbation search towards class c."""
    return lambda logits: F.log_softmax(logits, 1).gather(1, c[:, None]).squeeze(1)


def fooled(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    """Whether the attack succeeded per example (misclassified, or hit its target)."""
    pred = logits.argmax(1)
    return pred == target if target is not None else pred != y
