"""The typed preset schema and its validation, with one-line errors.

Every error names the file (or the `--set` that caused it), the dotted key,
what was given and what is allowed, so a user never has to read a traceback.
Reading preset files, `extends` and `--set` are engine/spec/preset_files.py.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, ClassVar, Literal

import tomli_w
from pydantic import (
    AfterValidator,
    Field,
    SerializeAsAny,
    ValidationError,
)

from engine.spec.errors import ConfigError
from engine.spec.panels import Panels
from engine.spec.registry import ATTACKS, DATASETS, DEFENSES, METHODS, MODELS, NORMS, norm_names
from engine.spec.run_sections import (
    CheckpointConfig,
    DistributedConfig,
    EvalConfig,
    GuardConfig,
    LogConfig,
    OptimConfig,
    PerfConfig,
    ScheduleConfig,
    TrainConfig,
)
from engine.spec.sections import (  # the schema's names, importable from here as before
    BatchSize,
    NonNegReal,
    Section,
    Unit,
)
from engine.spec.sections import PosReal as PosReal
from engine.spec.sections import parse_fraction as parse_fraction


class DataConfig(Section):
    dataset: str = "mnist-5k"
    root: str = ""  # "": $WORKBENCH_DATA, else ~/.cache/workbench/data (engine/data.py)
    download: bool = True  # missing torchvision files are fetched into root
    batch_size: BatchSize = 128  # "auto": the largest that fits (resolved at start, recorded)
    eval_batch_size: int = Field(500, ge=1)
    augment: bool = False
    flip: bool = False
    crop_padding: int = Field(0, ge=0, le=16)
    pad_mode: Literal["zeros", "reflect"] = "zeros"
    train_limit: int | None = Field(None, ge=1)
    # the validation split carved from train (selection, per-epoch curves); None: the
    # dataset's size (mnist-5k 400, MNIST/CIFAR/SVHN 1000); its own seed, not train.seed
    val_size: int | None = Field(None, ge=1)
    val_seed: int = 0


class ModelConfig(Section):
    """The network. `factory` (with arch "external") is a model from outside the workbench
    (engine/models/factory.py); `mean`/`std` normalise its input inside the model."""

    arch: str = "madry_cnn"
    head: Literal["linear", "gaussian"] = "linear"
    margin: NonNegReal = 0.0
    factory: str | None = None  # "torchvision:NAME", "MODULE:FUNC" or "/abs/path.py:FUNC"
    mean: list[float] | None = None  # per channel, with `std`; None: as the arch does
    std: list[Annotated[float, Field(gt=0.0)]] | None = None


class MethodSection(Section):
    """Base of every method's `[method]` table; each method file declares its own subclass.

    `name` picks the class from the method registry (engine/spec/registry.py); the
    subclass adds the method's keys, so unknown keys are rejected per method.
    """

    name: str
    # what the faces show for the method's runs (engine/spec/panels.py); recorded in run_started
    panels: ClassVar[Panels] = Panels()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """A form field must be one of the method's own keys, as the preset spells it."""
        super().__pydantic_init_subclass__(**kwargs)
        keys = {f.alias or name for name, f in cls.model_fields.items()} - {"name"}
        for f in cls.panels.fields:
            if f.key not in keys:
                raise TypeError(f"{cls.__name__}.panels: form field {f.key!r} is not a key of it")

    # whether the method's adversary step can be scaled (the guard's action "lower_step")
    scalable_step: ClassVar[bool] = False

    def requirement(self, cfg: PresetConfig) -> tuple[str, str] | None:
        """A setting elsewhere in the preset this method needs: (dotted key, message), or None."""
        return None


def _known_norm(norm: str) -> str:
    if norm not in norm_names():
        raise ValueError(f"unknown norm; allowed: {', '.join(norm_names())}")
    return norm


# a norm is a file in engine/attacks/norms/ (its name is the key's value)
Norm = Annotated[str, AfterValidator(_known_norm)]
CW_KAPPA = 50.0  # the C&W confidence wherever none is given (presets, suites, attacks)


class AttackConfig(Section):
    """The training adversary and the run's threat model (engine/attacks/threat.py).

    `kind` is any registered per-example attack kind; eps and step are in the
    units of `norm` (an L-inf eps is a pixel fraction, at most 1; an L2 or L1
    eps may be larger: the cross-check refuses an L-inf eps or step beyond 1).
    """

    kind: str = "pgd"
    norm: Norm = "linf"
    eps: NonNegReal = 0.3
    step: NonNegReal = 0.01
    steps: int = Field(40, ge=0, le=100_000)
    restarts: int = Field(1, ge=1, le=1000)
    loss: Literal["ce", "cw"] = "ce"
    kappa: NonNegReal = CW_KAPPA
    random_start: bool = True


DefenseName = Literal[DEFENSES]  # "none", "apinet": see engine/spec/registry.py


class DefenseConfig(Section):
    """Inference-time defence. API-Net: eps_ap 12/255 MNIST/SVHN, 14/255 CIFAR, 8 steps."""

    name: DefenseName = "none"
    eps_ap: Unit = 12 / 255
    steps: int = Field(8, ge=0, le=10_000)
    step: Unit = 0.01
    start: Literal["zero", "noise"] = "zero"
    chunk: int = Field(4096, ge=1)
    adaptive_steps: int = Field(2, ge=1)  # inner steps unrolled by the adaptive attack
    eot: int = Field(1, ge=1)  # random starts averaged by the adaptive attack
    norm: Norm = "linf"  # the anti-perturbation's own ball (the paper's: L-inf)


class PresetConfig(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    description: str = ""
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    method: SerializeAsAny[MethodSection]  # the registered subclass; filled in by `validate`
    attack: AttackConfig = Field(default_factory=AttackConfig)
    defense: DefenseConfig = Field(default_factory=DefenseConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    perf: PerfConfig = Field(default_factory=PerfConfig)
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    guard: GuardConfig = Field(default_factory=GuardConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict with TOML-friendly keys (aliases such as `lambda`), no None values."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def _format_error(err: dict, raw: dict, origin: dict, default_source: str) -> str:
    loc = [str(p) for p in err["loc"]]
    dotted = ".".join(loc) or "(top level)"
    source = default_source
    for i in range(len(loc), 0, -1):
        key = ".".join(loc[:i])
        if key in origin:
            source = origin[key]
            break
    kind = err["type"]
    given = err.get("input")
    if kind == "extra_forbidden":
        section = ".".join(loc[:-1])
        allowed = _allowed_keys(section, raw)
        hint = f"; allowed keys: {', '.join(allowed)}" if allowed else ""
        return f"{source}: key '{dotted}': unknown key{hint}"
    if kind == "missing":
        return f"{source}: key '{dotted}': required key is missing"
    if kind == "unknown_name":
        return f"{source}: key '{dotted}': given {given!r}, allowed: {err['allowed']}"
    msg = err["msg"].removeprefix("Value error, ")
    return f"{source}: key '{dotted}': given {given!r}: {msg}"


def _allowed_keys(section: str, raw: dict) -> list[str]:
    model: Any = PresetConfig
    if section:
        head, *rest = section.split(".")
        field = PresetConfig.model_fields.get(head)
        if field is None or rest:
            return []
        if head == "method":
            table = raw.get("method")
            name = table.get("name", "standard") if isinstance(table, dict) else None
            model = METHODS.get(name).config if name in METHODS else None
        else:
            model = field.annotation
    if model is None or not hasattr(model, "model_fields"):
        return []
    return [f.alias or n for n, f in model.model_fields.items()]


def _validate_method(raw: dict[str, Any]) -> tuple[MethodSection, list[dict]]:
    """The `[method]` table through its registered class (the name picks the class).

    Returns the section (a bare placeholder when it does not validate) and the
    errors in pydantic's shape, located under `method`.
    """
    table = raw.get("method", {"name": "standard"})
    if not isinstance(table, dict):
        err = {"type": "dict_type", "loc": ("method",), "input": table, "msg": "expected a table"}
        return MethodSection.model_construct(name="standard"), [err]
    name = table.get("name")
    if name is None:
        return MethodSection.model_construct(name="standard"), [
            {"type": "missing", "loc": ("method", "name"), "input": table, "msg": "missing"}
        ]
    if not isinstance(name, str) or name not in METHODS:
        err = {"type": "unknown_name", "loc": ("method", "name"), "input": name}
        return MethodSection.model_construct(name="standard"), [
            {**err, "allowed": METHODS.allowed()}
        ]
    try:
        return METHODS.get(name).config.model_validate(table), []
    except ValidationError as exc:
        errs = [{**e, "loc": ("method", *e["loc"])} for e in exc.errors()]
        return MethodSection.model_construct(name=name), errs


def validate(
    raw: dict[str, Any], origin: dict | None = None, source: str = "preset"
) -> PresetConfig:
    """Validate a plain dict into a PresetConfig, raising ConfigError with one clear line."""
    origin = origin or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a table of sections, given {type(raw).__name__}")
    method, errs = _validate_method(raw)
    cfg = None
    try:
        cfg = PresetConfig.model_validate({**raw, "method": method})
    except ValidationError as exc:
        errs += list(exc.errors())
    if errs:
        order = list(PresetConfig.model_fields)  # report the first error in the file's order

        def rank(e: dict) -> int:
            loc = e["loc"]
            return order.index(loc[0]) if loc and loc[0] in order else -1

        errs.sort(key=rank)
        first = _format_error(errs[0], raw, origin, source)
        more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
        raise ConfigError(first + more) from None
    assert cfg is not None
    _cross_check(cfg, origin, source)
    return cfg


def _cross_check(cfg: PresetConfig, origin: dict, source: str) -> None:
    def where(key: str) -> str:
        return origin.get(key) or origin.get(key.split(".")[0]) or source

    needed = cfg.method.requirement(cfg)
    if needed is not None:
        key, message = needed
        raise ConfigError(f"{where(key)}: key '{key}': {message}")
    if cfg.model.margin > 0 and cfg.model.head != "gaussian":
        raise ConfigError(
            f"{where('model.margin')}: key 'model.margin': a margin needs model.head = 'gaussian'"
        )
    m = cfg.model
    if m.arch == "external" and m.factory is None:
        raise ConfigError(
            f"{where('model.arch')}: key 'model.arch': 'external' is a model from outside the "
            "workbench and needs model.factory (`workbench import` writes both)"
        )
    if m.factory is not None and m.arch != "external":
        raise ConfigError(f"{where('model.factory')}: key 'model.factory': needs arch 'external'")
    if (m.mean is None) != (m.std is None) or len(m.mean or ()) != len(m.std or ()):
        raise ConfigError(f"{where('model.mean')}: key 'model.mean': needs a std per mean")
    a = cfg.attack
    cap = NORMS.get(a.norm).eps_cap  # L-inf: a ball beyond 1 is the whole box already
    for key, value in (("attack.eps", a.eps), ("attack.step", a.step)):
        if cap is not None and value > cap:
            raise ConfigError(
                f"{where(key)}: key '{key}': given {value:g}: Input should be less than or "
                f"equal to {cap:g} (under attack.norm = {a.norm!r})"
            )
    if a.kind not in ATTACKS or not ATTACKS.get(a.kind).per_example:
        kinds = ", ".join(n for n, c in ATTACKS.items() if c.per_example)
        raise ConfigError(
            f"{where('attack.kind')}: key 'attack.kind': given {a.kind!r}, allowed: {kinds} "
            "(a training adversary crafts batch by batch)"
        )
    for key, value, registry in (
        ("data.dataset", cfg.data.dataset, DATASETS),
        ("model.arch", cfg.model.arch, MODELS),
    ):
        if value not in registry:
            raise ConfigError(
                f"{where(key)}: key '{key}': given {value!r}, allowed: {registry.allowed()}"
            )
    g = cfg.guard
    if g.enabled and g.action == "lower_step" and not cfg.method.scalable_step:
        raise ConfigError(
            f"{where('guard.action')}: key 'guard.action': 'lower_step' needs a method with a "
            f"step to lower (fast_at); {cfg.method.name!r} has none (use 'stop' or 'restore')"
        )
    if cap is not None and g.step is not None and g.step > cap:
        raise ConfigError(
            f"{where('guard.step')}: key 'guard.step': given {g.step:g}: Input should be less "
            f"than or equal to {cap:g} (under attack.norm = {a.norm!r})"
        )
    if cfg.schedule.kind == "multistep" and sorted(cfg.schedule.milestones) != list(
        cfg.schedule.milestones
    ):
        raise ConfigError(
            f"{where('schedule.milestones')}: key 'schedule.milestones': must be increasing"
        )
