"""Attack suites: named columns read from TOML (`presets/suites/*.toml` or any file).

A suite says which attacks form its columns; eps, step, restarts and kappa
default to the checkpoint's own threat model (its `[attack]` and `[eval]`
sections), so one suite serves MNIST at 0.3 and CIFAR at 8/255 alike.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from engine.config import NonNegReal, PresetConfig, Section, Unit
from engine.errors import ConfigError, WorkbenchError

SUITE_DIRS = (
    Path.cwd() / "presets" / "suites",
    Path(__file__).resolve().parent.parent / "presets" / "suites",
)


class ColumnSpec(Section):
    """One attack column. Unset numbers come from the checkpoint's config."""

    name: str = Field(min_length=1, max_length=40)  # "{steps}" is filled in
    kind: Literal["fgsm", "pgd", "autoattack"]
    steps: int | Literal["eval"] | None = None  # "eval": the checkpoint's eval.steps
    restarts: int | None = Field(None, ge=1, le=1000)
    step: Unit | None = None
    eps: Unit | None = None
    loss: Literal["ce", "cw"] = "ce"
    kappa: NonNegReal | None = None
    source: Literal["self", "substitute"] = "self"  # substitute: crafted on --source
    optional: bool = False  # skipped (not an error) when its --source is not given
    defended: bool = True  # attacked by transfer/BPDA/adaptive under an inference-time defence
    version: Literal["standard", "plus", "rand"] = "standard"  # AutoAttack's own versions


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
    attack: list[ColumnSpec] = Field(default_factory=list)
    sanity: SanitySpec = Field(default_factory=SanitySpec)


@dataclass
class Column:
    """A column resolved against a checkpoint: the numbers it will really use."""

    name: str
    kind: str
    params: dict[str, Any]
    source: str = "self"
    defended: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def iterative(self) -> bool:
        return self.kind == "pgd"


def builtin_suites() -> dict[str, Path]:
    """Suite name -> file, the project's folder first overridden by ./presets/suites."""
    found: dict[str, Path] = {}
    for d in reversed(SUITE_DIRS):
        if d.is_dir():
            for f in sorted(d.glob("*.toml")):
                found[f.stem] = f
    return found


def resolve_suite(arg: str) -> Path:
    """A suite file path, or a bare name of a built-in suite."""
    p = Path(arg)
    if p.suffix == ".toml" or p.parent != Path("."):
        if not p.is_file():
            raise WorkbenchError(f"--suite {arg}: suite file not found")
        return p
    known = builtin_suites()
    if arg not in known:
        raise WorkbenchError(f"--suite {arg!r}: unknown suite; known: {', '.join(sorted(known))}")
    return known[arg]


def load_suite(arg: str) -> SuiteSpec:
    """Read and validate a suite; every error names the file and the key."""
    path = resolve_suite(arg)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a valid TOML suite ({exc})") from None
    try:
        spec = SuiteSpec.model_validate(raw)
    except ValidationError as exc:
        e = exc.errors()[0]
        dotted = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "missing":
            msg = "required key is missing"
        else:
            msg = f"given {e.get('input')!r}: {e['msg'].removeprefix('Value error, ')}"
        raise ConfigError(f"{path}: key '{dotted}': {msg}") from None
    names = [c.name for c in spec.attack]
    for i, c in enumerate(spec.attack):
        if c.kind == "pgd" and c.steps is None:
            raise ConfigError(f"{path}: key 'attack.{i}.steps': required for kind 'pgd'")
        if c.kind == "autoattack" and c.source != "self":
            raise ConfigError(f"{path}: key 'attack.{i}.source': AutoAttack runs white-box only")
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: key 'attack': column names repeat ({', '.join(names)})")
    if spec.sanity.base is not None and spec.sanity.base not in names:
        raise ConfigError(f"{path}: key 'sanity.base': no column named {spec.sanity.base!r}")
    return spec


def resolve_columns(spec: SuiteSpec, cfg: PresetConfig, has_source: bool) -> list[Column]:
    """The suite's columns with every number filled in from the checkpoint's config.

    A column crafted on a substitute needs `--source`; an optional one is
    dropped without it, a required one is an error naming the suite.
    """
    a, ev = cfg.attack, cfg.eval
    cols: list[Column] = []
    for c in spec.attack:
        if c.source == "substitute" and not has_source:
            if c.optional:
                continue
            raise WorkbenchError(
                f"suite {spec.name!r}: column {c.name!r} is crafted on a substitute model: "
                "give its checkpoint with --source CKPT"
            )
        steps = ev.steps if c.steps == "eval" else c.steps
        params: dict[str, Any] = {"eps": a.eps if c.eps is None else c.eps}
        if c.kind == "fgsm":
            params.update(loss=c.loss)
        elif c.kind == "pgd":
            params.update(
                step=a.step if c.step is None else c.step,
                steps=steps,
                restarts=ev.restarts if c.restarts is None else c.restarts,
                loss=c.loss,
            )
        else:
            params.update(version=c.version)
        if c.loss == "cw" and c.kind != "autoattack":
            params["kappa"] = a.kappa if c.kappa is None else c.kappa
        name = c.name.format(steps=steps)
        cols.append(Column(name, c.kind, params, c.source, c.defended))
    if has_source and not any(col.source == "substitute" for col in cols):
        raise WorkbenchError(f"suite {spec.name!r} has no transfer column; --source is not used")
    return cols
