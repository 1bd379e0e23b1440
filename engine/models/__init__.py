"""Model registry: a preset names an arch and a head; `build(config)` makes the network.

An arch builder takes the input shape and the dataset's per-channel mean/std
and returns (body, feature size): the body maps [0, 1] images to the deepest
features h(x), normalising inside itself where the arch wants it (the CIFAR /
SVHN nets); the MNIST nets ignore the statistics and see raw pixels, so their
state_dict keys and behaviour are what older checkpoints expect.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from engine.models.classifier import Classifier
from engine.models.heads import GaussianHead, LinearHead, build_head
from engine.models.lenet import lenet
from engine.models.madry_cnn import madry_cnn
from engine.models.madry_resnet import resnet32, wrn32_10
from engine.models.normalize import Normalize
from engine.models.preact_resnet import preact_resnet18
from engine.models.resnet import resnet18
from engine.models.smallcnn import smallcnn
from engine.models.wide_resnet import wrn34_10

ArchBuilder = Callable[..., tuple[nn.Module, int]]

ARCHS: dict[str, ArchBuilder] = {
    "madry_cnn": madry_cnn,
    "smallcnn": smallcnn,
    "lenet": lenet,
    "resnet18": resnet18,  # API-Net Tables 1-2 (CIFAR-10, SVHN)
    "preact_resnet18": preact_resnet18,
    "resnet32": resnet32,  # ATBLR Tables 2-3
    "wrn32_10": wrn32_10,  # ATBLR Tables 2-3, "WideResNet-32"
    "wrn34_10": wrn34_10,  # TRADES, Madry
}


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
    body, dim = ARCHS[arch](in_shape, mean=mean, std=std)
    return Classifier(body, build_head(head, dim, num_classes, margin), dim)


def build(config: Any) -> Classifier:
    """Build the network a resolved preset describes (a PresetConfig, dict or JSON string).

    With `safetensors.torch.load_file` this loads our checkpoints into plain
    PyTorch: strip the `model.` prefix and call `load_state_dict`. The input
    normalisation comes from the dataset named in the config, not the file.
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
    return build_model(
        m.arch, m.head, info.shape, info.num_classes, m.margin, mean=info.mean, std=info.std
    )


__all__ = [
    "ARCHS",
    "Classifier",
    "GaussianHead",
    "LinearHead",
    "Normalize",
    "build",
    "build_model",
]
