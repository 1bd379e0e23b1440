"""Checks of the model itself, before its numbers mean anything: lines of the sanity block.

A model from outside the workbench (`evaluate_model(..., external=True)`) may
have been left in training mode, may be stochastic, may end in a softmax, may
expect inputs in another range than [0, 1], or may not be differentiable at
all; each of these silently turns an attack's figure into an overstatement.
AutoAttack checks the same things (its `flags_doc.md`). Each check runs on one
batch of clean test examples, with the random generators forked, so it changes
no number of the evaluation itself.

For every model, the workbench's own included, the two checks that a trained
checkpoint can fail run (a stochastic defence, gradients masked by training):
two forwards and one backward pass of one batch. The other three hold by
construction for a workbench checkpoint (the evaluation always runs in eval
mode, every head outputs logits, the data pipeline feeds [0, 1], the range the
model was trained on), so they run only for a model from outside.
"""

from __future__ import annotations

from collections import Counter

import torch
import torch.nn.functional as F
from torch import nn

from engine.attacks import eval_mode
from engine.eval.sanity import PASS, WARN, Check
from engine.eval.stats import paired

BATCH = 128  # examples the checks look at
EOT = (
    "a single forward is one sample of it: attack the expectation over its randomness (EoT; "
    "the API-Net defence's adaptive strategy has `defense.eot`), and expect accuracy to vary "
    "between runs"
)


MODAL = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._NormBase)  # act otherwise in train


def put_in_eval_mode(model: nn.Module) -> Check:
    """Put `model` in eval mode for good, and say which modules were training before."""
    training = [m for m in model.modules() if m.training]
    modal = Counter(type(m).__name__ for m in training if isinstance(m, MODAL))
    model.eval()
    if not training:
        return Check("model in eval mode", PASS, "it was already in eval mode")
    kinds = ", ".join(f"{k} x{v}" if v > 1 else k for k, v in modal.most_common())
    return Check(
        "model in eval mode",
        PASS,
        f"{len(training)} modules were in training mode, "
        + (
            f"{sum(modal.values())} of them dropout or normalisation ({kinds})"
            if modal
            else "none of them dropout or normalisation"
        )
        + ": put in eval mode for the whole evaluation",
    )


def deterministic(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Check:
    """The same batch forwarded twice must give the same outputs (AutoAttack's criterion:
    the largest L2 distance of the L2-normalised outputs above 1e-4, or a changed prediction)."""
    with torch.no_grad(), eval_mode(model):
        a, b = model(x).float(), model(x).float()
    na = a / (a.norm(dim=1, keepdim=True) + 1e-10)
    nb = b / (b.norm(dim=1, keepdim=True) + 1e-10)
    diff = float((na - nb).norm(dim=1).max()) if len(x) else 0.0
    flips = int((a.argmax(1) != b.argmax(1)).sum())
    figure = (
        f"two forwards of the same {len(x)} examples: largest difference {diff:.2g} "
        f"(normalised outputs), {flips} predictions changed"
    )
    if diff <= 1e-4 and flips == 0:
        return Check("deterministic forward", PASS, figure)
    return Check("deterministic forward", WARN, figure, "the model is stochastic: " + EOT)


def outputs_logits(model: nn.Module, x: torch.Tensor) -> Check:
    """Outputs whose rows are non-negative and sum to 1 are probabilities, not logits."""
    with torch.no_grad(), eval_mode(model):
        out = model(x).float()
    sums = out.sum(1)
    probs = bool(out.min() >= -1e-5) and bool((sums - 1).abs().max() <= 1e-4)
    figure = (
        f"outputs in [{float(out.min()):.3g}, {float(out.max()):.3g}], row sums in "
        f"[{float(sums.min()):.3g}, {float(sums.max()):.3g}]"
    )
    if not probs:
        return Check("outputs are logits", PASS, figure)
    return Check(
        "outputs are logits",
        WARN,
        figure + ": every row is a probability distribution",
        "the model ends in a softmax: cross-entropy and margin losses on probabilities "
        "saturate and their gradients vanish, so the attacks are weaker than they should be; "
        "remove the final softmax (log-probabilities are fine)",
    )


RANGES = {  # the conventions a model may have been trained on, from our [0, 1] inputs
    "[0, 255]": lambda x: x * 255.0,
    "[-1, 1]": lambda x: x * 2.0 - 1.0,
    "standardised": lambda x: (
        (x - x.mean((0, 2, 3), keepdim=True)) / (x.std((0, 2, 3), keepdim=True) + 1e-8)
    ),
}
GAP = 10.0  # points an alternative range must win by, on top of a paired interval above 0


def expects_unit_range(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Check:
    """Clean accuracy on x in [0, 1] against the same images in the ranges models often expect.

    A model is accurate on the inputs it was trained on. If the same images
    mapped to [0, 255], [-1, 1] or standardised per channel are classified
    far better (by more than `GAP` points, with the paired 95% interval of the
    difference above 0), the model expects that range, and an eps measured in
    [0, 1] means something else to it. A model whose accuracy does not change
    with the range (e.g. a ReLU net without biases) cannot be told apart, and
    passes.
    """
    with torch.no_grad(), eval_mode(model):
        given = (model(x).argmax(1) == y).tolist()
        alt = {k: (model(f(x)).argmax(1) == y).tolist() for k, f in RANGES.items()}
    acc = 100.0 * sum(given) / max(1, len(given))
    figure = f"clean accuracy on {len(x)} examples: {acc:.1f}% in [0, 1] (as given); " + ", ".join(
        f"{100.0 * sum(v) / max(1, len(v)):.1f}% {k}" for k, v in alt.items()
    )
    better = [k for k, v in alt.items() if (p := paired(v, given)).low > 0 and p.diff > GAP]
    if not better:
        return Check("inputs in [0, 1]", PASS, figure)
    return Check(
        "inputs in [0, 1]",
        WARN,
        figure,
        f"the model classifies the images far better {better[0]}: it expects that range "
        "(its normalisation assumes it), so eps in [0, 1] units is not the ball it is "
        "attacked in; wrap it to map [0, 1] to what it expects (`--normalize`)",
    )


def gradients_flow(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Check:
    """Examples whose input gradient is exactly zero (AutoAttack's zero-gradient flag).

    Two losses: the logit margin (true class minus the best other), zero only
    where the model is flat in its input (a detach, an argmax, quantisation);
    and cross-entropy, also zero where the softmax saturates.
    """
    zero = {}
    for name in ("margin", "cross-entropy"):
        xg = x.clone().requires_grad_(True)
        with eval_mode(model), torch.enable_grad():
            out = model(xg).float()
            if name == "margin":
                others = out.masked_fill(F.one_hot(y, out.shape[1]).bool(), float("-inf"))
                loss = (out.gather(1, y[:, None]).squeeze(1) - others.amax(1)).sum()
            else:
                loss = F.cross_entropy(out, y, reduction="sum")
            if loss.requires_grad:
                (g,) = torch.autograd.grad(loss, xg, allow_unused=True)
            else:
                g = None
        g = torch.zeros_like(x) if g is None else g
        zero[name] = int((g.flatten(1).abs().sum(1) == 0).sum())
    figure = (
        f"{zero['margin']} of {len(x)} clean examples have an all-zero input gradient of the "
        f"logit margin, {zero['cross-entropy']} of cross-entropy"
    )
    if not any(zero.values()):
        return Check("input gradients are not zero", PASS, figure)
    cause = (
        "the model is not differentiable in its input there (a detach, an argmax, rounding)"
        if zero["margin"]
        else "the softmax saturates (logits scaled up)"
    )
    return Check(
        "input gradients are not zero",
        WARN,
        figure,
        f"gradient masking: {cause}, so gradient attacks cannot move; their figures overstate "
        "robustness (look at the transfer and Square columns, or use BPDA)",
    )


def draws_random(models: list[nn.Module], x: torch.Tensor) -> bool:
    """Whether a forward of any of `models` (a classifier, an attack's surrogate) on `x` takes
    numbers from torch's global generators.

    An attack that drops broken examples from its batch (`early_stop`) draws
    its random starts as before, but such a model would draw less as the
    batch shrinks, moving every later draw; the evaluation then searches every
    example to the last step. Run with the generators forked, with input
    gradients on (an unrolled surrogate differentiates its input).
    """
    devices = [x.device] if x.device.type == "cuda" else []
    for model in models:
        with torch.random.fork_rng(devices=devices), eval_mode(model), torch.enable_grad():
            before = _generators(x.device)
            model(x.detach().clone().requires_grad_(True))
            if not all(
                torch.equal(a, b) for a, b in zip(before, _generators(x.device), strict=True)
            ):
                return True
    return False


def _generators(device: torch.device) -> list[torch.Tensor]:
    states = [torch.get_rng_state()]
    if device.type == "cuda":
        states.append(torch.cuda.get_rng_state(device))
    return states


def model_checks(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, external: bool
) -> list[Check]:
    """The checks of the model on the first `BATCH` examples (all five when `external`).

    Run with the random generators forked: a stochastic model's draws here
    leave the evaluation's own draws (and so a resumed run's) untouched.
    """
    xb, yb = x[:BATCH], y[:BATCH]
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        checks = [deterministic(model, xb, yb)]
        if external:
            checks += [outputs_logits(model, xb), expects_unit_range(model, xb, yb)]
        checks.append(gradients_flow(model, xb, yb))
    return checks
