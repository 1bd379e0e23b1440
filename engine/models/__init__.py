"""Model registry: a preset names an arch and a head; `build(config)` makes the network."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from engine.models.classifier import Classifier
from engine.models.heads import GaussianHead, LinearHead, build_head
from engine.models.lenet import lenet
from engine.models.madry_cnn import madry_cnn
from engine.models.smallcnn import smallcnn

ARCHS: dict[str, Callable[[tuple[int, int, int]], tuple[nn.Module, int]]] = {
    "madry_cnn": madry_cnn,
    "smallcnn": smallcnn,
    "lenet": lenet,
}


def build_model(
    arch: str,
    head: str,
    in_shape: tuple[int, int, int],
    num_classes: int,
    margin: float = 0.0,
) -> Classifier:
    body, dim = ARCHS[arch](in_shape)
    return Classifier(body, build_head(head, dim, num_classes, margin), dim)


def build(config: Any) -> Classifier:
    """Build the network a resolved preset describes (a PresetConfig, dict or JSON string).

    With `safetensors.torch.load_file` this loads our checkpoints into plain
    PyTorch: strip the `model.` prefix and call `load_state_dict`.
    """
    from engine.config import PresetConfig, from_json, validate
    from engine.data import dataset_info

    if isinstance(config, str):
        config = from_json(config)
    elif isinstance(config, dict):
        config = validate(config)
    assert isinstance(config, PresetConfig)
    info = dataset_info(config.data.dataset)
    m = config.model
    return build_model(m.arch, m.head, info.shape, info.num_classes, m.margin)


__all__ = ["ARCHS", "Classifier", "GaussianHead", "LinearHead", "build", "build_model"]
