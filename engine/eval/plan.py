"""A plan: what a suite runs on one checkpoint, as entries with their sanity roles and numbers.

Without a defence every white-box column attacks the model itself. With an
inference-time defence each white-box column runs once per strategy the caller
passes (engine/defenses/strategies.py), all judged by the full defence.
Columns marked `source = "substitute"` are crafted on another model (black-box).
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
) -> Plan:
    """Turn resolved columns into entries.

    `defended` is the inference-time defence around `base` (None: no defence);
    with one, every white-box column marked `defended` runs once per strategy in
    `strategies`, and the other white-box columns are left out.
    """
    plan = Plan()
    for col in cols:
        spec = col.spec
        if not spec.per_example:
            target = "base" if defended is None else "defended (BPDA)"
            plan.entries[col.name] = spec.entry(col.name, col.params, seed, num_classes, target)
            continue
        atk = spec.build(col.params)
        info = {"kind": col.kind, **col.params, "source": col.source}
        if col.source == "substitute":
            crafted = _on(source, atk)
            plan.entries[col.name] = Crafted(col.name, crafted, "transfer", info)
        elif defended is None:
            plan.entries[col.name] = Crafted(col.name, atk, spec.role, info)
        elif col.defended:
            for s in strategies:
                name = f"{s.name} {col.name}"
                role = s.role(spec.role)
                plan.entries[name] = Crafted(name, s.craft(atk), role, {**info, "strategy": s.name})
    return plan


def _on(model: nn.Module | None, attack: Attack) -> Attack:
    """The attack crafted on `model` (a substitute), whatever model it is handed."""
    return lambda m, x, y: attack(model, x, y)
