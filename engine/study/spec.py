"""A study file: arms (a preset plus overrides, optionally a grid), seeds, and the test suite.

Read and checked whole before anything runs: unknown keys, wrong types, a
preset that does not resolve, an override its preset refuses, a grid that is
empty, two members with one name; each ends as one line naming the file and
the key (exit 2), with nothing written.
"""

from __future__ import annotations

import itertools
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from engine.records.runs import NAME_RE
from engine.spec import catalog
from engine.spec.errors import WorkbenchError
from engine.spec.preset_files import load_preset

Scalar = bool | int | float | str


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def _name(v: str) -> str:
    if not NAME_RE.match(v) or ".." in v or "__" in v:
        raise ValueError(
            f"{v!r}: use letters, digits, '.', '_' and '-', no '..' or '__', "
            "starting with a letter or digit"
        )
    return v


MODEL_KEYS = ("weights", "dataset", "normalize", "strip_prefix", "norm", "eps", "step")


class Arm(_Strict):
    """A preset trained per seed, or a fixed model evaluated as it is: a `checkpoint` (ours or
    imported) or a `model` from outside the workbench with `eval --model`'s options."""

    name: str
    preset: str | None = None
    set: dict[str, Scalar] = Field(default_factory=dict)  # dotted key -> value, like --set
    grid: dict[str, list[Scalar]] = Field(default_factory=dict)  # dotted key -> values to try
    checkpoint: str | None = None  # a fixed model: evaluated once, paired with every seed
    model: str | None = None  # a fixed model as `--model` takes it, with the keys below
    weights: str | None = None
    dataset: str | None = None
    normalize: str | None = None
    strip_prefix: list[str] = Field(default_factory=list)
    norm: str | None = None
    eps: str | float | None = None  # fractions allowed, as "8/255"
    step: str | float | None = None

    _check_name = field_validator("name")(lambda cls, v: _name(v))

    @model_validator(mode="after")
    def _one_source(self) -> Arm:
        given = [k for k in ("preset", "checkpoint", "model") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of preset, checkpoint and model")
        if self.preset is None and (self.set or self.grid):
            raise ValueError("set and grid go with a preset: a fixed model is not trained")
        extra = [k for k in MODEL_KEYS if getattr(self, k) not in (None, [])]
        if self.model is None and extra:
            raise ValueError(f"{extra[0]} goes with model")
        if self.model is not None and self.dataset is None:
            raise ValueError("a model needs its dataset")
        return self

    def fixed_source(self, base: Path) -> tuple[str, ...]:
        """A fixed arm's model as `workbench import` options (paths made absolute against
        the study's folder), or ("--checkpoint", path) for a checkpoint; () for a preset."""
        if self.checkpoint is not None:
            return ("--checkpoint", str((base / self.checkpoint).expanduser().resolve()))
        if self.model is None:
            return ()
        out = ["--model", self.model, "--dataset", str(self.dataset)]
        if self.weights is not None:
            out += ["--weights", str((base / self.weights).expanduser().resolve())]
        for key in ("normalize", "norm", "eps", "step"):
            if getattr(self, key) is not None:
                out += [f"--{key}", str(getattr(self, key))]
        for prefix in self.strip_prefix:
            out += ["--strip-prefix", prefix]
        return tuple(out)

    @field_validator("grid")
    @classmethod
    def _nonempty(cls, v: dict[str, list[Scalar]]) -> dict[str, list[Scalar]]:
        for key, values in v.items():
            if not values:
                raise ValueError(f"{key!r}: give at least one value")
            if len(set(map(repr, values))) != len(values):
                raise ValueError(f"{key!r}: a value is repeated")
        return v


class StudySpec(_Strict):
    name: str
    description: str = ""
    seeds: list[int] = Field(min_length=1)
    suite: str = "paper"  # evaluates every member on the test split when it finishes
    samples: int | None = Field(None, ge=1)  # test examples the suite uses (default: all)
    arm: list[Arm] = Field(min_length=1)

    _check_name = field_validator("name")(lambda cls, v: _name(v))

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v) or any(s < 0 for s in v):
            raise ValueError("seeds must be distinct and >= 0")
        return v


def toml_value(value: Scalar) -> str:
    """A value as the right-hand side of `--set KEY=VALUE` (strings quoted)."""
    return tomli_w.dumps({"v": value}).split("=", 1)[1].strip()


def short(key: str) -> str:
    return key.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class Member:
    """One run of the study: an arm at one grid setting and one seed, or a fixed model (no
    seed: evaluated once, its outcomes paired with every seed of the other arms)."""

    arm: str
    setting: tuple[tuple[str, Scalar], ...]  # the grid point, (dotted key, value) pairs
    seed: int | None  # None: a fixed model
    preset: str  # the arm's preset argument, resolved to a file path ("" for a fixed model)
    sets: tuple[str, ...]  # every --set, the arm's, the grid point's and the seed
    fixed: tuple[str, ...] = ()  # a fixed model: `Arm.fixed_source`

    @property
    def label(self) -> str:
        """The arm and setting as the report reads it: `atblr(lambda=0.1)`."""
        if not self.setting:
            return self.arm
        return f"{self.arm}(" + ", ".join(f"{short(k)}={v}" for k, v in self.setting) + ")"

    @property
    def name(self) -> str:
        """The run directory's name: `atblr__lambda-0.1__s0`; a fixed model's is its arm's."""
        seed = [] if self.seed is None else [f"s{self.seed}"]
        return "__".join([self.arm, *(f"{short(k)}-{v}" for k, v in self.setting), *seed])


def members(spec: StudySpec, cwd: Path | None = None) -> list[Member]:
    """Every member, arm by arm, grid point by grid point, seed by seed."""
    out: list[Member] = []
    for arm in spec.arm:
        if arm.preset is None:
            out.append(Member(arm.name, (), None, "", (), arm.fixed_source(cwd or Path.cwd())))
            continue
        preset = str(catalog.resolve_preset(arm.preset, cwd))
        base = tuple(f"{k}={toml_value(v)}" for k, v in arm.set.items())
        keys = list(arm.grid)
        for values in itertools.product(*(arm.grid[k] for k in keys)):
            setting = tuple(zip(keys, values, strict=True))
            grid_sets = tuple(f"{k}={toml_value(v)}" for k, v in setting)
            for seed in spec.seeds:
                sets = (*base, *grid_sets, f"train.seed={seed}")
                out.append(Member(arm.name, setting, seed, preset, sets))
    return out


def _where(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_study(path: Path, cwd: Path | None = None) -> tuple[StudySpec, list[Member]]:
    """The study and its members, every member's preset and overrides checked."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WorkbenchError(f"{path}: study file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkbenchError(f"{path}: not a readable text file ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise WorkbenchError(f"{path}: not valid TOML ({exc})") from None
    try:
        spec = StudySpec.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        raise WorkbenchError(f"{path}: key '{_where(err['loc'])}': {msg}") from None
    names = [a.name for a in spec.arm]
    if len(set(names)) != len(names):
        raise WorkbenchError(f"{path}: key 'arm.name': two arms are called the same")
    try:
        catalog.resolve_suite(spec.suite, cwd)
    except WorkbenchError as exc:
        raise WorkbenchError(f"{path}: key 'suite': {exc}") from None
    out: list[Member] = []
    for i, arm in enumerate(spec.arm):
        try:
            arm_members = members(spec.model_copy(update={"arm": [arm]}), cwd)
        except WorkbenchError as exc:
            raise WorkbenchError(f"{path}: key 'arm[{i}].preset': {exc}") from None
        for m in arm_members:
            if m.fixed:
                _check_fixed(path, i, m.fixed)
                continue
            try:
                load_preset(m.preset, list(m.sets))
            except WorkbenchError as exc:
                raise WorkbenchError(f"{path}: arm {arm.name!r}: {exc}") from None
        out += arm_members
    return spec, out


def _check_fixed(path: Path, i: int, fixed: tuple[str, ...]) -> None:
    """A fixed arm's files exist before anything runs (the model itself is built by its job,
    whose failure the report names)."""
    opts = dict(zip(fixed[::2], fixed[1::2], strict=True))
    for option, key in (("--checkpoint", "checkpoint"), ("--weights", "weights")):
        if option in opts and not Path(opts[option]).is_file():
            raise WorkbenchError(f"{path}: key 'arm[{i}].{key}': {opts[option]}: file not found")
