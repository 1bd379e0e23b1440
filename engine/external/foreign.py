"""A model from outside the workbench, in memory: built, checked against its dataset, loaded.

`load_foreign` turns a `ModelSource` into (config, model, record): the
resolved config an imported checkpoint carries, the model in eval mode, and
the `external` record (factory, weights file, SHA-256s, normalisation,
stripped prefixes) that the checkpoint's header and every evaluation of it
keep. Every check runs before anything is written: the dataset, the factory,
the model's output size against the dataset's classes, and the weights
against the model's keys and shapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.data import dataset_info
from engine.external.source import ModelSource, external_config, parse_normalize
from engine.external.weights import common_prefix, read_state_dict, strip_prefixes
from engine.models import build
from engine.models.factory import TORCHVISION, is_file_spec, split_spec
from engine.models.layouts import LAYOUTS
from engine.records.checkpoint_header import file_sha256
from engine.spec.config import PresetConfig
from engine.spec.errors import ConfigError, WorkbenchError
from engine.spec.registry import DATASETS

SHOWN = 4  # keys an error names


@dataclass
class Foreign:
    """An external model ready to evaluate or import."""

    cfg: PresetConfig
    model: nn.Module
    external: dict[str, Any]  # the header's `external` and the evaluation's `source_model`


def _resolve_spec(spec: str) -> tuple[str, str | None, str | None]:
    """(arch, factory, factory file) for a --model spec; a layout needs no factory."""
    if spec in LAYOUTS:
        return LAYOUTS[spec].arch, None, None
    where, name = split_spec(spec)
    if where == TORCHVISION:
        return "external", spec, None
    if is_file_spec(spec):
        path = Path(where).expanduser().resolve()
        if not path.is_file():
            raise ConfigError(f"--model {spec!r}: file {where} not found")
        return "external", f"{path}:{name}", str(path)
    return "external", spec, None


def _check_outputs(model: nn.Module, shape: tuple[int, int, int], classes: int, spec: str) -> None:
    """The model must map a batch of the dataset's images to one logit per class."""
    probe = torch.rand(2, *shape, generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad():
            out = model(probe)
    except Exception as exc:
        text = " ".join(str(exc).split())[:200]
        raise WorkbenchError(
            f"--model {spec!r}: its forward on a batch of {tuple(probe.shape)} images raised "
            f"{type(exc).__name__}: {text}"
        ) from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 2:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise WorkbenchError(
            f"--model {spec!r}: expected logits of shape (batch, classes), got {got}"
        )
    if out.shape[1] != classes:
        raise WorkbenchError(
            f"--model {spec!r}: the model has {out.shape[1]} outputs, the dataset {classes} "
            "classes (--dataset)"
        )


def _fit(model: nn.Module, state: dict[str, torch.Tensor], where: str, prefix: str | None) -> None:
    """Load `state` strictly; a mismatch names its first keys and a likely --strip-prefix."""
    want = model.state_dict()
    missing = [k for k in want if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in want]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in want.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected)):
            if keys:
                more = f" (+{len(keys) - SHOWN} more)" if len(keys) > SHOWN else ""
                parts.append(f"{label} keys {', '.join(keys[:SHOWN])}{more}")
        hint = f"; try --strip-prefix {prefix}" if prefix and missing and unexpected else ""
        raise WorkbenchError(f"{where}: does not fit the model: {'; '.join(parts)}{hint}")
    if shapes:
        more = f" (+{len(shapes) - SHOWN} more)" if len(shapes) > SHOWN else ""
        raise WorkbenchError(
            f"{where}: does not fit the model: shape mismatch {', '.join(shapes[:SHOWN])}{more}"
        )
    model.load_state_dict(state, strict=False)  # only num_batches_tracked may be left out


def load_foreign(source: ModelSource) -> Foreign:
    """Build, check and load the model `source` describes; nothing is written."""
    if source.dataset not in DATASETS:
        raise ConfigError(
            f"--dataset {source.dataset!r}: unknown dataset; allowed: {DATASETS.allowed()}"
        )
    info = dataset_info(source.dataset)
    arch, factory, factory_file = _resolve_spec(source.spec)
    cfg = external_config(source, arch=arch, factory=factory, channels=info.shape[0])
    model = build(cfg)
    was_training = [m for m in model.modules() if m.training]
    model.eval()
    _check_outputs(model, info.shape, info.num_classes, source.spec)
    for m in was_training:  # as the factory made it: the evaluation's checks say what they find
        m.train()
    wrapper = None
    if source.weights is not None:
        state, wrapper = read_state_dict(source.weights)
        state = strip_prefixes(state, source.strip_prefix)
        prefix = common_prefix(list(state))
        layout = LAYOUTS.get(source.spec)
        if layout is not None:
            state = {layout.rename(k): v for k, v in state.items()}
        elif factory is not None:
            state = {f"body.{k}": v for k, v in state.items()}
        _fit(model, state, f"--weights {source.weights}", prefix)
    model.requires_grad_(False)
    stats = parse_normalize(source.normalize)
    external = {
        "factory": source.spec,
        "layout": LAYOUTS[source.spec].source if source.spec in LAYOUTS else None,
        "factory_file": factory_file,
        "factory_sha256": file_sha256(factory_file) if factory_file else None,
        "weights": None if source.weights is None else source.weights.name,
        "weights_sha256": None if source.weights is None else file_sha256(source.weights),
        "wrapper_key": wrapper,
        "normalize": None if stats is None else {"mean": stats[0], "std": stats[1]},
        "normalize_given": source.normalize,
        "strip_prefix": list(source.strip_prefix),
    }
    return Foreign(cfg, model, external)
