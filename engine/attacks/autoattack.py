"""AutoAttack (Croce & Hein 2020) through the `pyautoattack` package, an optional extra.

The standard version is a cascade: APGD-CE, then targeted APGD, targeted FAB
and Square, each run only on the examples that survived the attacks before
it. We drive the package's own attacks one at a time so every example's fate
is recorded per component; the last column is AutoAttack's robust accuracy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, field_validator, model_validator
from torch import nn

from engine.attacks.base import AttackColumn, eval_mode, within_norm_cap
from engine.attacks.threat import ThreatModel, as_threat
from engine.spec.config import NonNegReal, Norm, PresetConfig
from engine.spec.errors import WorkbenchError
from engine.spec.registry import ATTACKS, NORMS

HINT = "it is a dependency of the workbench: reinstall it (pip install pyautoattack)"
COMPONENT_NAMES = {
    "apgd-ce": "APGD-CE",
    "apgd-dlr": "APGD-DLR",
    "apgd-t": "APGD-T",
    "fab": "FAB",
    "fab-t": "FAB-T",
    "square": "Square",
}
Component = Literal["apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square"]
COMPONENTS = {  # what each AutoAttack version runs, in order (pyautoattack's _set_version)
    "standard": ["apgd-ce", "apgd-t", "fab-t", "square"],
    "plus": ["apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"],
    "rand": ["apgd-ce", "apgd-dlr"],
}


def require() -> Any:
    """The package's AutoAttack class, or a one-line error naming the extra."""
    try:
        from pyautoattack import AutoAttack
    except ImportError:
        raise WorkbenchError(
            f"AutoAttack's attacks (the paper and autoattack suites) need pyautoattack; {HINT}"
        ) from None
    return AutoAttack


class _Collect(logging.Handler):
    """Keeps AutoAttack's own warnings (randomised defence, zero gradients) for the evidence."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if msg not in self.messages:
            self.messages.append(msg)


class AutoAttackCascade:
    """One suite entry that yields a column per component: `name: +COMPONENT` (cumulative).

    Sanity roles: the gradient components before Square are `gradient-aa`,
    Square is `square` (the gradient-free check), anything after it `late-aa`.
    """

    def __init__(
        self,
        name: str,
        threat: ThreatModel | float,  # a bare number is an L-inf eps
        version: str,
        seed: int,
        num_classes: int,
        *,
        target: str = "base",
        tuning: dict[str, Any] | None = None,
    ) -> None:
        require()
        self.name, self.threat, self.version = name, as_threat(threat), version
        self.eps = self.threat.eps
        self.seed, self.num_classes = seed, num_classes
        self.tuning = {k: v for k, v in (tuning or {}).items() if v is not None}
        self.components = list(self.tuning.pop("components", None) or COMPONENTS[version])
        # the examples it starts from: clean-correct ones, or those every column before left
        self.from_survivors = bool(self.tuning.pop("from_survivors", False))
        self.columns = [
            f"{name}: {'' if i == 0 else '+'}{COMPONENT_NAMES[c]}"
            for i, c in enumerate(self.components)
        ]
        self.roles: dict[str, str] = {}
        self.params: dict[str, dict[str, Any]] = {}
        late = False
        for col, comp in zip(self.columns, self.components, strict=True):
            self.roles[col] = (
                "late-aa" if late else ("square" if comp == "square" else "gradient-aa")
            )
            late = late or comp == "square"
            self.params[col] = {"kind": "autoattack", "component": comp, **self.settings()}
            self.params[col]["target"] = target
        self.flags: list[str] = []
        self.seconds: dict[str, float] = {}
        # `--save-adv`: handed (column, positions, inputs, fooled) per component
        self.keep: Callable[[str, torch.Tensor, torch.Tensor, torch.Tensor], None] | None = None

    def run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        alive: torch.Tensor,
        batch_size: int,
        progress: Callable[[str, int, int], None] | None = None,
        journal: Any = None,
    ) -> dict[str, torch.Tensor]:
        """Per column, which examples are still classified correctly after the cascade so far.

        `journal` (engine/eval/journal.py) saves each component's column as it
        finishes, and the components it already holds are not run again: the
        package seeds every component itself, so the rest of a resumed cascade
        is the one an uninterrupted run would have run.
        """
        with eval_mode(model):
            return self._run(model, x, y, alive, batch_size, progress, journal)

    resumable: ClassVar[bool] = True  # run_suite hands it the journal

    def _run(self, model, x, y, alive, batch_size, progress, journal) -> dict[str, torch.Tensor]:
        AutoAttack = require()
        aa = AutoAttack(
            model,
            norm=self.threat.geometry.autoattack,
            eps=self.eps,
            version=self.version,
            seed=self.seed,
            device=x.device,
        )
        default = self.threat.geometry.autoattack_targets  # as the package's version sets
        n_targets = max(1, min(self.tuning.get("target_classes", default), self.num_classes - 1))
        aa.apgd_targeted.n_target_classes = n_targets
        aa.fab.n_target_classes = n_targets
        if "iterations" in self.tuning:
            aa.apgd.n_iter = aa.apgd_targeted.n_iter = self.tuning["iterations"]
        if "restarts" in self.tuning:
            aa.apgd.n_restarts = self.tuning["restarts"]
        elif self.version == "custom":
            aa.apgd.n_restarts = 1  # as the standard version runs APGD-CE
        handler = _Collect()
        aa.logger.addHandler(handler)
        aa.logger.propagate = False
        alive = alive.clone().to(x.device)
        out: dict[str, torch.Tensor] = {}
        try:
            for comp, col in zip(self.components, self.columns, strict=True):
                saved = None if journal is None else journal.get(col)
                if saved is not None and saved.complete:
                    alive = saved.survived.to(x.device)
                    out[col] = alive.clone()
                    self.seconds[col] = saved.seconds
                    old = saved.extra.get("flags", [])
                    handler.messages += [m for m in old if m not in handler.messages]
                    continue
                t0 = time.perf_counter()
                idx = alive.nonzero().squeeze(1)
                if len(idx):
                    aa.attacks_to_run = [comp]
                    x_adv, y_adv = aa.run_standard_evaluation(x[idx], y[idx], batch_size=batch_size)
                    alive[idx[y_adv != y[idx]]] = False
                    if self.keep is not None:
                        self.keep(col, idx, x_adv, y_adv != y[idx])
                out[col] = alive.clone()
                self.seconds[col] = time.perf_counter() - t0
                if journal is not None:
                    flags = {"flags": list(handler.messages)}
                    journal.record(
                        col, alive, self.seconds[col], complete=True, device=x.device, extra=flags
                    )
                if progress is not None:
                    progress(col, len(x), len(x))
        finally:
            aa.logger.removeHandler(handler)
        self.flags = handler.messages
        return out

    def settings(self) -> dict[str, Any]:
        return {
            "eps": self.eps,
            "norm": self.threat.norm,
            "version": self.version,
            "components": self.components,
            **self.tuning,
            "seed": self.seed,
            "cumulative": True,
            "from_survivors": self.from_survivors,
        }


@ATTACKS.register("autoattack")
class AutoAttackColumn(AttackColumn):
    """Croce & Hein's AutoAttack at the checkpoint's eps and norm, one cumulative column per
    component (L1: without Square, which pyautoattack runs under L-inf and L2 only)."""

    kind: Literal["autoattack"]
    norm: Norm | None = None  # default: the checkpoint's attack.norm
    eps: NonNegReal | None = None
    version: Literal["standard", "plus", "rand", "custom"] = "standard"  # AutoAttack's versions
    # custom: which components, in order, and how hard (APGD's iterations and restarts, the
    # targeted attacks' number of target classes)
    components: list[Component] | None = None
    iterations: int | None = Field(None, ge=1, le=10_000)
    restarts: int | None = Field(None, ge=1, le=100)
    target_classes: int | None = Field(None, ge=1, le=99)
    # start from the examples every column before it left standing: its columns are then
    # cumulative over the whole suite, and it spends no queries on examples already broken
    from_survivors: bool = False

    per_example: ClassVar[bool] = False

    _fraction = field_validator("eps")(within_norm_cap)

    @model_validator(mode="after")
    def _custom_names_components(self) -> AutoAttackColumn:
        if (self.version == "custom") != (self.components is not None):
            raise ValueError("components are given exactly when version = 'custom'")
        return self

    @field_validator("source")
    @classmethod
    def _white_box(cls, source: str) -> str:
        if source != "self":
            raise ValueError("AutoAttack runs white-box only")
        return source

    def resolve(self, cfg: PresetConfig) -> dict[str, Any]:
        tuning = {
            "components": self.components,
            "iterations": self.iterations,
            "restarts": self.restarts,
            "target_classes": self.target_classes,
            "from_survivors": self.from_survivors or None,
        }
        norm = cfg.attack.norm if self.norm is None else self.norm
        components = self.components or COMPONENTS.get(self.version, [])
        geometry = NORMS.get(norm)
        if geometry.autoattack is None:
            raise WorkbenchError(
                f"column {self.name!r}: key 'norm': pyautoattack has no {norm!r} attacks"
            )
        lacking = [c for c in components if c in geometry.autoattack_lacks]
        if lacking:
            raise WorkbenchError(
                f"column {self.name!r}: key 'norm': {norm!r} with version {self.version!r} runs "
                f"{', '.join(lacking)}, which pyautoattack lacks for that norm; give version = "
                f"'custom' and components without {', '.join(repr(c) for c in lacking)}"
            )
        return {
            "eps": cfg.attack.eps if self.eps is None else self.eps,
            "norm": norm,
            "version": self.version,
            **{k: v for k, v in tuning.items() if v is not None},
        }

    @staticmethod
    def entry(
        name: str, params: dict[str, Any], seed: int, num_classes: int, target: str
    ) -> AutoAttackCascade:
        tuning = {k: v for k, v in params.items() if k not in ("eps", "norm", "version")}
        threat = ThreatModel(params.get("norm", "linf"), params["eps"])
        return AutoAttackCascade(
            name, threat, params["version"], seed, num_classes, target=target, tuning=tuning
        )
