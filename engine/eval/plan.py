"""A plan: what a suite runs on one checkpoint, as entries with their sanity roles and numbers.

Without a defence every white-box column attacks the model itself. With an
inference-time defence each white-box column runs once per strategy the caller
passes (engine/defenses/strategies.py), all judged by the full defence.
Columns marked `source = "substitute"` are crafted on another model (black-box).

A column may stop attacking an example once it is broken (`early_stop`, engine/
attacks/pgd.py) only where the attack's own verdict on an iterate is the
classifier's that judges the column: on the model itself, on the defence (BPDA)
or with the defence scoring every iterate (adaptive). A transfer or black-box
column crafts on another model, whose verdict is not the judge's, so it runs
every example to its last step (its evidence says `early_stop: false`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from engine.attacks import Attack
from engine.defenses.strategies import Strategy
from engine.eval.entries import Crafted, Entry
from engine.eval.suites import Column


@dataclass
class Plan:
    """The entries of a suite in order, with each column's sanity role and parameters."""

    entries: dict[str, Entry] = field(default_factory=dict)

    def columns(self) -> list[str]:
        return [c for e in self.entries.values() for c in e.columns]

    @property
    def roles(self) -> dict[str, str]:
        return {k: v for e in self.entries.values() for k, v in e.roles.items()}

    @property
    def params(self) -> dict[str, dict[str, Any]]:
        return {k: v for e in self.entries.values() for k, v in e.params.items()}


def plan_suite(
    cols: list[Column],
    base: nn.Module,
    num_classes: int,
    seed: int = 0,
    defended: nn.Module | None = None,
    source: nn.Module | None = None,
    strategies: Sequence[Strategy] = (),
    *,
    early_stop: bool = True,
) -> Plan:
    """Turn resolved columns into entries.

    `defended` is the inference-time defence around `base` (None: no defence);
    with one, every white-box column marked `defended` runs once per strategy in
    `strategies`, and the other white-box columns are left out. `early_stop`
    False runs every column to its last step whatever its own setting says (a
    classifier that draws random numbers: see `evaluate_model`).
    """
    plan = Plan()
    for col in cols:
        spec = col.spec
        if not spec.per_example:
            target = "base" if defended is None else "defended (BPDA)"
            plan.entries[col.name] = spec.entry(col.name, col.params, seed, num_classes, target)
            continue
        params = col.params if early_stop else full_search(col.params)
        if col.source == "substitute":  # crafted on another model: its verdict is not the judge's
            p = full_search(params)
            info = {"kind": col.kind, **p, "source": col.source}
            plan.entries[col.name] = Crafted(col.name, _on(source, spec.build(p)), "transfer", info)
        elif defended is None:
            info = {"kind": col.kind, **params, "source": col.source}
            plan.entries[col.name] = Crafted(col.name, spec.build(params), spec.role, info)
        elif col.defended:
            for s in strategies:
                name = f"{s.name} {col.name}"
                judged = s.scorer is not None or s.surrogate is defended  # the defence's verdict
                p = params if judged else full_search(params)
                info = {"kind": col.kind, **p, "source": col.source, "strategy": s.name}
                plan.entries[name] = Crafted(name, s.craft(spec.build(p)), s.role(spec.role), info)
    return plan


def full_search(params: dict[str, Any]) -> dict[str, Any]:
    """A column's params with `early_stop` off (where it has the setting at all)."""
    return {**params, "early_stop": False} if params.get("early_stop") else params


def _on(model: nn.Module | None, attack: Attack) -> Attack:
    """The attack crafted on `model` (a substitute), whatever model it is handed."""
    return lambda m, x, y: attack(model, x, y)
