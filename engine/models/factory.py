"""Models from outside the workbench: a factory named `MODULE:FUNC`, `path/net.py:FUNC`
or `torchvision:NAME`, wrapped into the workbench's `Classifier` shape.

The factory is called with no arguments and must return an `nn.Module` that maps
[0, 1] NCHW images (after the optional normalisation) to logits. The whole
module becomes the classifier's body and the head is the identity, so its
state_dict keys are `body.<the module's own keys>`. `torchvision:NAME` builds
`torchvision.models.get_model(NAME, weights=None, num_classes=<the dataset's>)`:
no user code runs for it. A factory from a file runs that file, so a checkpoint
imported from one records the file's SHA-256 and refuses to rebuild when the
file changed (`check_factory_file`).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.data import DatasetInfo
from engine.models.classifier import Classifier
from engine.models.normalize import Normalize
from engine.records.checkpoint_header import file_sha256
from engine.spec.errors import CheckpointError, ConfigError
from engine.spec.registry import MODELS

TORCHVISION = "torchvision"


class IdentityHead(nn.Module):
    """The head of a foreign model: its body already ends in logits (`y` is ignored)."""

    def forward(self, h: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return h


@MODELS.register("external")
def external(info: DatasetInfo) -> tuple[nn.Module, int]:
    """Listed so configs may name it; the model itself comes from `model.factory`."""
    raise ConfigError("arch 'external' is built from model.factory (engine/models/factory.py)")


def split_spec(spec: str) -> tuple[str, str]:
    """("module or path", "callable") from MODULE:FUNC; one line naming --model otherwise."""
    where, sep, name = spec.rpartition(":")
    if not sep or not where or not name:
        raise ConfigError(f"--model {spec!r}: expected MODULE:FACTORY or path/to/file.py:FACTORY")
    return where, name


def is_file_spec(spec: str) -> bool:
    """A factory in a .py file (rather than an importable module or torchvision)."""
    where = spec.rpartition(":")[0]
    return where.endswith(".py") or "/" in where or "\\" in where


def _module_from_file(path: Path, spec: str) -> Any:
    if not path.is_file():
        raise ConfigError(f"--model {spec!r}: file {path} not found")
    name = f"_workbench_factory_{file_sha256(path)[:16]}"
    if name in sys.modules:
        return sys.modules[name]
    loader_spec = importlib.util.spec_from_file_location(name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise ConfigError(f"--model {spec!r}: {path} is not a Python file")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = module
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)  # its own imports (`from models.resnet import ...`) resolve
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ConfigError(f"--model {spec!r}: importing {path} raised {_one_line(exc)}") from None
    finally:
        sys.path.remove(folder)
    return module


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def resolve_factory(spec: str) -> Callable[[], Any]:
    """The callable a factory spec names (importing its module or file), or ConfigError."""
    where, name = split_spec(spec)
    if is_file_spec(spec):
        module = _module_from_file(Path(where), spec)
    else:
        here = str(Path.cwd())
        if here not in sys.path and "" not in sys.path:
            sys.path.append(here)  # a module in the current folder, as `python -m` would see it
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise ConfigError(f"--model {spec!r}: cannot import module {where!r} ({exc})") from None
        except Exception as exc:
            raise ConfigError(
                f"--model {spec!r}: importing {where!r} raised {_one_line(exc)}"
            ) from None
    factory = getattr(module, name, None)
    if not callable(factory):
        raise ConfigError(f"--model {spec!r}: {where} has no callable {name!r}")
    return factory


def call_factory(spec: str, num_classes: int) -> nn.Module:
    """The module a factory spec makes (torchvision's with the dataset's class count)."""
    where, name = split_spec(spec)
    if where == TORCHVISION:
        import torchvision

        try:
            net = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
        except Exception as exc:
            raise ConfigError(f"--model {spec!r}: torchvision says {_one_line(exc)}") from None
    else:
        factory = resolve_factory(spec)
        try:
            net = factory()
        except Exception as exc:
            raise ConfigError(f"--model {spec!r}: the factory raised {_one_line(exc)}") from None
    if not isinstance(net, nn.Module):
        raise ConfigError(
            f"--model {spec!r}: the factory returned {type(net).__name__}, not an nn.Module"
        )
    return net


def normalizer(
    info: DatasetInfo, mean: Sequence[float] | None, std: Sequence[float] | None
) -> Normalize | None:
    """The input normalisation a model description asks for (None: none added)."""
    if mean is None or std is None:
        return None
    if len(mean) != info.shape[0]:
        raise ConfigError(
            f"--normalize: {len(mean)} channel statistics for a dataset of {info.shape[0]} channels"
        )
    return Normalize(DatasetInfo(info.shape, info.num_classes, tuple(mean), tuple(std)))


def build_external(
    spec: str,
    info: DatasetInfo,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Classifier:
    """A foreign model as a Classifier: body = the factory's module, identity head."""
    net = call_factory(spec, info.num_classes)
    return Classifier(net, IdentityHead(), info.num_classes, normalizer(info, mean, std))


def check_factory_file(external: dict[str, Any] | None, source: str) -> None:
    """Refuse to rebuild an imported model whose factory file changed since its import."""
    if not isinstance(external, dict):
        return
    path, digest = external.get("factory_file"), external.get("factory_sha256")
    if not isinstance(path, str) or not isinstance(digest, str):
        return
    try:
        now = file_sha256(Path(path))
    except OSError:
        raise CheckpointError(
            f"{source}: key 'external': the model's factory file {path} is missing"
        ) from None
    if now != digest:
        raise CheckpointError(
            f"{source}: key 'external': the factory file {path} changed since the import "
            f"(sha256 {now[:12]}..., imported {digest[:12]}...); import it again"
        )
