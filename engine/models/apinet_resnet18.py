"""API-Net's CIFAR ResNet-18 as its public code lays it out, for `--model apinet:resnet18`.

The official code (github.com/dongxinshuai/API-Net, models/resnet.py) uses
kuangliu/pytorch-cifar's ResNet-18 (`conv1`, `bn1`, `layer1..4` of BasicBlocks
with `shortcut` projections, a full-spatial average pool, `linear`): the network
`resnet18` already is (engine/models/resnet.py), except that API-Net feeds it
[0, 1] images with no normalisation at all (its loaders only ToTensor), so this
arch normalises nothing. Its train_cifar.py saves `{"net": state_dict, "acc",
"epoch"}` of a DataParallel-wrapped net on CUDA: import with `--strip-prefix
module.`. `linear` is our head (`head.fc`).
"""

from __future__ import annotations

from torch import nn

from engine.data import DatasetInfo
from engine.models.layouts import Layout, register_layout
from engine.models.resnet import ResNet18Body
from engine.spec.registry import MODELS


@MODELS.register("apinet_resnet18")
def apinet_resnet18(info: DatasetInfo) -> tuple[nn.Module, int]:
    """The body and its feature size; inputs reach it as given (identity `norm`)."""
    return ResNet18Body(DatasetInfo(info.shape, info.num_classes)), 512


register_layout(
    Layout(
        name="apinet:resnet18",
        arch="apinet_resnet18",
        prefixes=(("linear.", "head.fc."),),
        source="API-Net's official code, models/resnet.py (kuangliu/pytorch-cifar's ResNet18)",
    )
)
