"""Sanity checks of an evaluation (Carlini et al. 2019, "On Evaluating Adversarial Robustness").

Each check compares figures the suite already produced (per example where it
can) and says PASS, WARN or SKIP with the figure behind it. A WARN says what
the failure usually means, so a masked defence cannot pass unnoticed.
Tolerances are in accuracy points, never below one example.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from engine.attacks import Attack
from engine.attacks.pgd import PGDColumn, threat_of
from engine.attacks.threat import ThreatModel
from engine.eval.journal import Journal
from engine.eval.plan import full_search
from engine.eval.run import run_suite
from engine.eval.suites import Column, SuiteSpec, can_vary
from engine.spec.registry import norm_label

PASS, WARN, SKIP = "PASS", "WARN", "SKIP"


@dataclass
class Check:
    name: str
    status: str
    figure: str
    advice: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def tolerance(points: float, n: int) -> float:
    """The allowed slack: the configured points, or one example if that is more."""
    return max(points, 100.0 / n) if n else points


def _pct(mask: torch.Tensor) -> float:
    return 100.0 * mask.float().mean().item() if len(mask) else float("nan")


def _all(correct: dict[str, torch.Tensor], names: list[str]) -> torch.Tensor:
    out = correct[names[0]].clone()
    for name in names[1:]:
        out &= correct[name]
    return out


def per_example_checks(
    correct: dict[str, torch.Tensor], roles: dict[str, str], tol_points: float
) -> list[Check]:
    """Checks read off the suite's own columns.

    `roles[name]` is `fgsm`, `white` (an iterative white-box attack), `transfer`
    (crafted on another model), `gradient-aa` or `square` (AutoAttack components).
    """
    n = len(correct["clean"])
    tol = tolerance(tol_points, n)
    by = {r: [k for k, v in roles.items() if v == r] for r in set(roles.values())}
    white = by.get("white", [])

    def check(name: str, only: torch.Tensor | None, figure: str, advice: str, skip: str) -> Check:
        """PASS if the examples in `only` are within tolerance; SKIP if there is nothing to see."""
        if only is None:
            return Check(name, SKIP, skip)
        pts = _pct(only)
        ok = pts <= tol
        text = f"{figure.format(int(only.sum()))} ({pts:.2f} points, tolerance {tol:.2f})"
        return Check(name, PASS if ok else WARN, text, "" if ok else advice)

    clean = correct["clean"]
    fgsm = (
        ~correct[by["fgsm"][0]] & _all(correct, white) & clean if by.get("fgsm") and white else None
    )
    transfer = (
        ~_all(correct, by["transfer"]) & _all(correct, white) & clean
        if by.get("transfer") and white
        else None
    )
    square = (
        _all(correct, by["gradient-aa"]) & ~correct[by["square"][0]]
        if by.get("square") and by.get("gradient-aa")
        else None
    )
    return [
        check(
            "iterative >= FGSM, per example",
            fgsm,
            "{} examples broken by FGSM survive every iterative attack",
            "the loss is not smooth near the input: gradient masking, "
            "or the iterative attack's step is too small to leave a flat region",
            "needs an FGSM column",
        ),
        check(
            "white-box >= transfer, per example",
            transfer,
            "{} examples broken by a transfer attack survive every white-box attack",
            "the white-box gradients are less useful than another "
            "model's: the classifier masks its gradients (obfuscated, shattered or "
            "non-differentiable inference)",
            "no transfer column (give --source CKPT, or use --suite blackbox)",
        ),
        check(
            "Square (gradient-free) adds nothing",
            square,
            "Square broke {} examples that survived the gradient attacks",
            "a black-box attack beats the gradient attacks: the "
            "gradients are masked and the white-box numbers overstate robustness",
            "AutoAttack's Square is not in this suite (--suite autoattack)",
        ),
    ]


def extra_checks(
    curve: list[tuple[float, float]],
    *,
    unbounded: float,
    unbounded_max: float,
    base: tuple[str, float],
    doubled_steps: tuple[str, float],
    doubled_restarts: tuple[str, float],
    n: int,
    tol_points: float,
    unbounded_eps: float = 1.0,
) -> list[Check]:
    """Checks that need extra attack runs: the eps curve, the unbounded ball, doubled effort.

    `curve` is (eps, accuracy) from 0 up to the suite's eps, with the same
    attack scaled in step; `unbounded` is its accuracy at `unbounded_eps`, the
    radius of a ball that holds the whole box (1 under L-inf, sqrt(d) under L2,
    d under L1: `ThreatModel.unbounded`).
    """
    tol = tolerance(tol_points, n)
    checks: list[Check] = []
    u = unbounded_eps
    pts = [*curve, (u, unbounded)] if curve[-1][0] < u else curve
    rises = [(a, b) for a, b in itertools.pairwise(pts) if b[1] > a[1] + tol]
    figure = (
        " -> ".join(f"{acc:.1f}" for _, acc in pts)
        + " % at eps "
        + ", ".join(f"{e:.3g}" for e, _ in pts)
    )
    checks.append(
        Check(
            "accuracy never rises with eps",
            WARN if rises else PASS,
            figure,
            f"accuracy rose from eps {rises[0][0][0]:.3g} to {rises[0][1][0]:.3g}: a larger "
            "ball contains the smaller one, so the attack misses points it found before "
            "(gradient masking, or too few steps for the larger ball)"
            if rises
            else "",
        )
    )
    checks.append(
        Check(
            f"eps = {u:.4g} drives accuracy to ~0",
            PASS if unbounded <= unbounded_max else WARN,
            f"{unbounded:.2f}% at eps {u:.4g} (allowed {unbounded_max:.2f}%)",
            ""
            if unbounded <= unbounded_max
            else "an unbounded attack can turn any image into any other: the gradients do "
            "not lead anywhere (zero or obfuscated gradients, a saturated softmax, "
            "non-differentiable preprocessing)",
        )
    )
    for label, what, (name2, acc2) in (
        ("doubling steps", "steps", doubled_steps),
        ("doubling restarts", "restarts", doubled_restarts),
    ):
        delta = acc2 - base[1]
        if delta > tol:
            status, advice = (
                WARN,
                f"more {what} made the attack weaker: the loss surface is noisy or "
                "randomised (gradient masking, or a stochastic model needing EOT)",
            )
        elif delta < -tol:
            status, advice = (
                WARN,
                f"{base[0]} has not converged: more {what} lowered accuracy, so its figure "
                "overstates robustness (too few steps or restarts)",
            )
        else:
            status, advice = PASS, ""
        checks.append(
            Check(
                f"{label} moves accuracy by <= {tol:.2f}",
                status,
                f"{base[0]} {base[1]:.2f}% vs {name2} {acc2:.2f}% ({delta:+.2f} points)",
                advice,
            )
        )
    return checks


class InBall:
    """An attack that also measures how far its examples land outside their ball and [0, 1]."""

    def __init__(self, attack: Attack, threat: ThreatModel) -> None:
        self.attack, self.threat = attack, threat
        self.excess = 0.0  # the largest size beyond eps, in the norm's units
        self.box = 0.0  # the largest distance outside [0, 1]

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x_adv = self.attack(model, x, y)
        with torch.no_grad():
            size = float(self.threat.size(x_adv - x).max()) if len(x) else 0.0
            box = float(torch.max(-x_adv.min(), x_adv.max() - 1)) if len(x) else 0.0
        self.excess = max(self.excess, size - self.threat.eps)
        self.box = max(self.box, box)
        return x_adv

    def state(self) -> dict[str, float]:
        """What it measured so far, kept in a journal so a resumed run measures all batches."""
        return {"excess": self.excess, "box": self.box}

    def load_state(self, state: dict[str, float]) -> None:
        self.excess, self.box = float(state["excess"]), float(state["box"])


def ball_tolerance(eps: float) -> float:
    """The slack of the in-ball check: float32 rounding of a norm of up to eps."""
    return 1e-5 * max(1.0, eps) + 1e-6


def in_ball_check(runs: dict[str, InBall]) -> Check:
    """Every example the sanity runs crafted lies inside its ball and [0, 1] (within rounding)."""
    outside = {
        k: r
        for k, r in runs.items()
        if r.excess > ball_tolerance(r.threat.eps) or r.box > ball_tolerance(1.0)
    }
    worst = max(runs.values(), key=lambda r: r.excess / ball_tolerance(r.threat.eps))
    t = worst.threat
    figure = (
        f"largest {norm_label(t.norm)} size beyond eps: {max(worst.excess, 0.0):.2g} at {t.label} "
        f"(tolerance {ball_tolerance(t.eps):.2g}); largest step outside [0, 1]: "
        f"{max(r.box for r in runs.values()):.2g}"
    )
    if not outside:
        return Check("every example inside its ball and [0, 1]", PASS, figure)
    name = next(iter(outside))
    return Check(
        "every example inside its ball and [0, 1]",
        WARN,
        f"{name}: {figure}",
        "the attack leaves its threat model: its projection is wrong, so every number it "
        "gives is for a larger ball than the one reported",
    )


def sanity_runs(
    spec: SuiteSpec,
    cols: list[Column],
    classifier: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    clean: torch.Tensor,
    base_acc: dict[str, float],
    batch_size: int,
    seed: int,
    progress: Callable[[str, int, int], None] | None,
    prefix: str = "",
    journal: Journal | None = None,
    external: bool = False,  # a model from outside the workbench (eval --model, imported)
    early_stop: bool = True,  # False: every example to the last step, whatever the column says
) -> tuple[list[Check], dict[str, Any]]:
    """The extra attacks the sanity checks need, all variants of the suite's base PGD column.

    Steps scale with eps (step * eps'/eps), so every point of the curve uses
    the same relative step as the suite's own column. For a defended model
    `classifier` is the full defence, so these are its BPDA attacks. A
    `journal` keeps their progress batch by batch, as the suite's own. They
    stop attacking broken examples as the base column does (`early_stop`).
    """
    defended = bool(prefix)  # the suite ran against a defence: only its defended columns exist
    usable = [c for c in cols if can_vary(c.kind, c.source, c.defended or not defended)]
    named = [c for c in usable if c.name == spec.sanity.base]
    ce = [c for c in usable if c.params["loss"] == "ce"]
    base = (named or ce or [None])[0]
    if base is None:
        return [Check("extra sanity runs", SKIP, "no white-box PGD column")], {}
    p = base.params if early_stop else full_search(base.params)
    eps, step = p["eps"], p["step"]
    big = threat_of(p).unbounded(x[0].numel()).eps  # a ball holding the whole box
    variants: dict[str, dict[str, Any]] = {}
    for f in spec.sanity.eps_fractions:
        if 0 < f < 1:
            variants[f"sanity eps {f * eps:.4g}"] = {**p, "eps": f * eps, "step": step * f}
    unbounded = f"sanity eps {big:.4g}"
    variants[unbounded] = {**p, "eps": big, "step": step * big / eps if eps else step}
    steps2 = f"sanity {p['steps'] * 2} steps"
    restarts2 = f"sanity {p['restarts'] * 2} restarts"
    variants[steps2] = {**p, "steps": p["steps"] * 2}
    variants[restarts2] = {**p, "restarts": p["restarts"] * 2}
    entries = {k: InBall(PGDColumn.build(v), threat_of(v)) for k, v in variants.items()}
    res = run_suite(
        classifier, x, y, dict(entries), batch_size, seed, progress, clean=clean, journal=journal
    )
    acc = res.table()
    n = len(x)
    curve = [(0.0, acc["clean"])]
    curve += sorted(
        (v["eps"], acc[k])
        for k, v in variants.items()
        if k.startswith("sanity eps") and v["eps"] < eps and k != unbounded
    )
    name = prefix + base.name
    curve.append((eps, base_acc[name]))
    checks = extra_checks(
        curve,
        unbounded=acc[unbounded],
        unbounded_max=spec.sanity.unbounded_max,
        base=(name, base_acc[name]),
        doubled_steps=(f"{p['steps'] * 2} steps", acc[steps2]),
        doubled_restarts=(f"{p['restarts'] * 2} restarts", acc[restarts2]),
        n=n,
        tol_points=spec.sanity.tolerance,
        unbounded_eps=big,
    )
    checks.append(in_ball_check(entries))
    runs = {
        k: {
            "params": variants[k],
            "accuracy": acc[k],
            "seconds": res.seconds[k],
            "per_example": res.correct[k].int().tolist(),
        }
        for k in variants
    }
    return checks, {"base": name, "runs": runs}
