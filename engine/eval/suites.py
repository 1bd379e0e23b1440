"""Attack suites: named columns read from TOML (the built-in suites or any file).

A suite says which attacks form its columns. Each `[[attack]]` is validated by
the column class its `kind` registered (engine/attacks/), and its unset
numbers (eps, step, restarts, kappa) default to the checkpoint's own threat
model, so one suite serves MNIST at 0.3 and CIFAR at 8/255 alike.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from engine.attacks import ATTACKS, AttackColumn
from engine.spec.catalog import builtin_suite, resolve_suite
from engine.spec.config import NonNegReal, PresetConfig, Section, Unit
from engine.spec.errors import ConfigError, WorkbenchError


class SanitySpec(Section):
    """Carlini et al. (2019) checks run after the suite; tolerances in accuracy points."""

    enabled: bool = False
    base: str | None = None  # the column doubled in steps and restarts (first PGD-CE if unset)
    eps_fractions: list[Unit] = Field(default_factory=lambda: [0.25, 0.5, 0.75])
    tolerance: NonNegReal = 0.5
    unbounded_max: NonNegReal = 1.0  # accuracy (%) allowed at eps = 1


class SuiteSpec(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    description: str = ""
    attack: list[AttackColumn] = Field(default_factory=list)  # each its kind's own class
    sanity: SanitySpec = Field(default_factory=SanitySpec)


@dataclass
class Column:
    """A column resolved against a checkpoint: the numbers it will really use."""

    name: str
    kind: str
    params: dict[str, Any]
    source: str = "self"
    defended: bool = True

    @property
    def spec(self) -> type[AttackColumn]:
        """The registered column class of this kind (what it can do, its sanity role)."""
        return ATTACKS.get(self.kind)


def can_vary(kind: str, source: str, defended: bool) -> bool:
    """Whether the sanity runs can vary a column: a white-box PGD on the model being judged."""
    return kind == "pgd" and source == "self" and defended


def _message(err: dict[str, Any], loc: tuple[Any, ...]) -> str:
    dotted = ".".join(str(p) for p in loc) or "(top level)"
    if err["type"] == "extra_forbidden":
        return f"key '{dotted}': unknown key"
    if err["type"] == "missing":
        return f"key '{dotted}': required key is missing"
    return f"key '{dotted}': given {err.get('input')!r}: {err['msg'].removeprefix('Value error, ')}"


def _columns(path: Path, raw: Any) -> list[AttackColumn]:
    """Each `[[attack]]` through the class its kind registered; errors name file and key."""
    if not isinstance(raw, list):
        raise ConfigError(f"{path}: key 'attack': expected [[attack]] tables")
    cols = []
    for i, table in enumerate(raw):
        kind = table.get("kind") if isinstance(table, dict) else None
        if kind is None:
            raise ConfigError(f"{path}: key 'attack.{i}.kind': required key is missing")
        if kind not in ATTACKS:
            raise ConfigError(
                f"{path}: key 'attack.{i}.kind': given {kind!r}, allowed: {ATTACKS.allowed()}"
            )
        try:
            cols.append(ATTACKS.get(kind).model_validate(table))
        except ValidationError as exc:
            e = exc.errors()[0]
            raise ConfigError(f"{path}: {_message(e, ('attack', i, *e['loc']))}") from None
    return cols


def read_suite(path: Path) -> SuiteSpec:
    """Read and validate a suite file; every error names the file and the key."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a valid TOML suite ({exc})") from None
    cols = _columns(path, raw.pop("attack", []))
    try:
        spec = SuiteSpec.model_validate({**raw, "attack": cols})
    except ValidationError as exc:
        e = exc.errors()[0]
        raise ConfigError(f"{path}: {_message(e, e['loc'])}") from None
    names = [c.name for c in spec.attack]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: key 'attack': column names repeat ({', '.join(names)})")
    if spec.sanity.base is not None:
        col = next((c for c in spec.attack if c.name == spec.sanity.base), None)
        if col is None:
            raise ConfigError(f"{path}: key 'sanity.base': no column named {spec.sanity.base!r}")
        if not can_vary(col.kind, col.source, col.defended):
            what = "a transfer" if col.source != "self" else f"a {col.kind}"
            what += " column" if col.defended else " column that a defence skips"
            raise ConfigError(
                f"{path}: key 'sanity.base': {col.name!r} is {what}; the sanity runs vary "
                "the eps, steps and restarts of a white-box PGD column (kind = 'pgd', "
                "source = 'self', defended = true)"
            )
    return spec


def load_suite(arg: str) -> SuiteSpec:
    """A suite by file path or bare name (./presets/suites, then the built-ins)."""
    return read_suite(resolve_suite(arg))


def training_suite(cfg: PresetConfig) -> SuiteSpec:
    """The built-in suite `eval.suite` names: what training evaluates every epoch."""
    return read_suite(builtin_suite(cfg.eval.suite))


def resolve_columns(spec: SuiteSpec, cfg: PresetConfig, has_source: bool) -> list[Column]:
    """The suite's columns with every number filled in from the checkpoint's config.

    A column crafted on a substitute needs `--source`; an optional one is
    dropped without it, a required one is an error naming the suite.
    """
    cols: list[Column] = []
    for c in spec.attack:
        if c.source == "substitute" and not has_source:
            if c.optional:
                continue
            raise WorkbenchError(
                f"suite {spec.name!r}: column {c.name!r} is crafted on a substitute model: "
                "give its checkpoint with --source CKPT"
            )
        params = c.resolve(cfg)
        if c.paper:
            params["paper"] = True
        cols.append(Column(c.title(params), c.kind, params, c.source, c.defended))
    if has_source and not any(col.source == "substitute" for col in cols):
        raise WorkbenchError(f"suite {spec.name!r} has no transfer column; --source is not used")
    return cols
