"""Model registry: a preset names an arch and a head; `build(config)` makes the network.

Each arch file registers a builder with `@MODELS.register("name")`; importing
this package imports every file in it, so a new arch is a new file. A builder
takes the dataset's `DatasetInfo` (shape, classes, per-channel mean/std) and
returns (body, feature size): the body maps [0, 1] images to the deepest
features h(x), normalising inside itself where the arch wants it (the CIFAR /
SVHN nets); the MNIST nets see raw pixels, so their state_dict keys and
behaviour are what older checkpoints expect.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine.data import DatasetInfo, dataset_info
from engine.models.classifier import Classifier
from engine.models.factory import build_external, normalizer
from engine.models.heads import GaussianHead, LinearHead, build_head
from engine.models.normalize import Normalize
from engine.spec.config import PresetConfig, validate
from engine.spec.preset_files import from_json
from engine.spec.registry import MODELS, import_submodules

import_submodules(__name__, __path__)


def build_model(
    arch: str,
    head: str,
    in_shape: tuple[int, int, int],
    num_classes: int,
    margin: float = 0.0,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Classifier:
    """Body + head. Pass the dataset's mean/std (`build(config)` does) or get no normalisation."""
    stats = (None, None) if mean is None or std is None else (tuple(mean), tuple(std))
    info = DatasetInfo(in_shape, num_classes, *stats)
    body, dim = MODELS.get(arch)(info)
    return Classifier(body, build_head(head, dim, num_classes, margin), dim)


def build(config: Any) -> Classifier:
    """Build the network a resolved preset describes (a PresetConfig, dict or JSON string).

    With `safetensors.torch.load_file` this loads our checkpoints into plain
    PyTorch: strip the `model.` prefix and call `load_state_dict`. The input
    normalisation comes from the dataset named in the config, not the file.
    """
    if isinstance(config, str):
        config = from_json(config)
    elif isinstance(config, dict):
        config = validate(config)
    assert isinstance(config, PresetConfig)
    info = dataset_info(config.data.dataset)
    m = config.model
    if m.factory is not None:  # a model from outside the workbench (engine/models/factory.py)
        return build_external(m.factory, info, m.mean, m.std)
    model = build_model(
        m.arch, m.head, info.shape, info.num_classes, m.margin, mean=info.mean, std=info.std
    )
    model.normalize = normalizer(info, m.mean, m.std)  # an imported layout's statistics
    return model


__all__ = [
    "MODELS",
    "Classifier",
    "GaussianHead",
    "LinearHead",
    "Normalize",
    "build",
    "build_model",
]
