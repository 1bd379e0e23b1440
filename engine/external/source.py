"""What `--model` and its options ask for, and the resolved config that describes it.

Torch-free parsing: the normalisation presets and "m1,m2,m3/s1,s2,s3", the
threat model's defaults per dataset, and the config an external model gets
(validated like a preset, its errors naming the option that caused them).
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any

from engine.spec.config import PresetConfig, parse_fraction, validate
from engine.spec.errors import ConfigError
from engine.spec.preset_files import with_overrides

# named statistics for --normalize (mean, std); cifar10 is what the workbench's data uses
NORMALIZE_PRESETS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "mnist": ((0.1307,), (0.3081,)),
}
# the option each config key comes from, so a validation error names the option
ORIGIN = {
    "data.dataset": "--dataset",
    "attack.norm": "--norm",
    "attack.eps": "--eps",
    "attack.step": "--step",
    "model.mean": "--normalize",
    "model.std": "--normalize",
}


@dataclass(frozen=True)
class ModelSource:
    """`--model SPEC [--weights FILE] --dataset NAME` and the options that go with it."""

    spec: str  # MODULE:FACTORY, path/to/net.py:FACTORY, torchvision:NAME or a layout
    dataset: str  # "" in an `eval --source` model: the target's, filled in when it loads
    _: KW_ONLY  # the options by name: nine values in a row are unreadable
    weights: Path | None = None
    normalize: str | None = None  # a preset name or "m1,m2,m3/s1,s2,s3"
    strip_prefix: tuple[str, ...] = ()
    norm: str = "linf"
    eps: str | None = None  # fractions allowed; None: the dataset's usual eps
    step: str | None = None
    sets: tuple[str, ...] = field(default=())

    def label(self) -> str:
        """A name for configs and files: the weights' stem, else the factory's name."""
        base = self.weights.stem if self.weights is not None else self.spec.rpartition(":")[2]
        return re.sub(r"[^A-Za-z0-9._-]", "-", base).strip("-.") or "model"


def parse_normalize(text: str | None) -> tuple[list[float], list[float]] | None:
    """(mean, std) from a preset name or "m1,m2,m3/s1,s2,s3"; None when not given."""
    if text is None:
        return None
    if text in NORMALIZE_PRESETS:
        mean, std = NORMALIZE_PRESETS[text]
        return list(mean), list(std)
    parts = text.split("/")
    names = ", ".join(NORMALIZE_PRESETS)
    try:
        if len(parts) != 2:
            raise ValueError
        mean, std = ([float(v) for v in p.split(",")] for p in parts)
    except ValueError:
        raise ConfigError(
            f"--normalize {text!r}: give a preset ({names}) or means/stds as 'm1,m2,m3/s1,s2,s3'"
        ) from None
    if len(mean) != len(std) or any(s <= 0 for s in std):
        raise ConfigError(f"--normalize {text!r}: one positive std per mean")
    return mean, std


def default_threat(channels: int, norm: str) -> tuple[Any, Any]:
    """The usual (eps, step) of a dataset when --eps is not given: MNIST-like 0.3, else 8/255."""
    if norm != "linf":
        raise ConfigError(f"--eps: give the eps of the {norm} threat model (no default)")
    return (0.3, 0.01) if channels == 1 else ("8/255", "2/255")


def external_config(
    source: ModelSource,
    *,
    arch: str,
    factory: str | None,
    channels: int,
) -> PresetConfig:
    """The resolved config of an external model: what an imported checkpoint carries."""
    stats = parse_normalize(source.normalize)
    eps, step = source.eps, source.step
    if eps is None:
        eps, default_step = default_threat(channels, source.norm)
        step = step if step is not None else default_step
    elif step is None:
        with contextlib.suppress(ValueError):  # validation below names --eps
            step = float(parse_fraction(eps)) / 4
    model: dict[str, Any] = {"arch": arch}
    if factory is not None:
        model["factory"] = factory
    if stats is not None:
        model["mean"], model["std"] = stats
    raw = {
        "name": f"imported-{source.label()}"[:100],
        "description": f"imported with --model {source.spec}",
        "data": {"dataset": source.dataset},
        "model": model,
        "method": {"name": "standard"},
        "attack": {"norm": source.norm, "eps": eps, "step": step},
    }
    cfg = validate(raw, dict(ORIGIN), "--model")
    return with_overrides(cfg, list(source.sets), "--set") if source.sets else cfg
