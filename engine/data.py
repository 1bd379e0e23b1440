"""Datasets as whole uint8 tensors (train and test), registered by name.

Each registered dataset says what models need to know about it (shape,
classes, channel statistics) without being loaded, how to load it, and how
large its validation split is (carved from train: engine/splits.py). Batching
is engine/loader.py.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.spec.errors import DataMissingError
from engine.spec.registry import DATASETS

OFFLINE_HINT = "or train offline on the bundled subset: --set data.dataset=mnist-5k"
ROOT_ENV = "WORKBENCH_DATA"  # overrides the default data folder


def data_root(root: str = "") -> Path:
    """Where datasets live: `data.root` if set, else $WORKBENCH_DATA, else the user's cache.

    The cache is $XDG_CACHE_HOME/workbench/data (~/.cache/workbench/data), so a
    run finds the files it downloaded before wherever it is started.
    """
    if root:
        return Path(root).expanduser()
    if os.environ.get(ROOT_ENV):
        return Path(os.environ[ROOT_ENV]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "workbench" / "data"


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset, known without loading it (used to build models).

    `mean`/`std` are per-channel statistics of the real training set. Models
    that want normalised input apply them inside themselves, because the
    threat model (eps, clipping to [0, 1]) lives in raw pixel space. None means
    the models see raw [0, 1] pixels, as the MNIST papers' nets do.
    """

    shape: tuple[int, int, int]
    num_classes: int
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None


@dataclass
class Dataset:
    """A whole dataset as uint8 NCHW images and int64 labels."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])  # type: ignore[return-value]


def _bundled_mnist5k(root: str, download: bool) -> Dataset:
    with resources.files("engine.assets").joinpath("mnist5k.npz").open("rb") as fh:
        arrays = np.load(fh, allow_pickle=False)
        parts = {k: torch.from_numpy(arrays[k].copy()) for k in arrays.files}
    return Dataset(
        "mnist-5k",
        parts["train_x"].unsqueeze(1),
        parts["train_y"].long(),
        parts["test_x"].unsqueeze(1),
        parts["test_y"].long(),
        10,
    )


def _fetch(name: str, where: Path, download: bool, make: Callable[[bool], Any]) -> tuple[Any, Any]:
    """torchvision's train and test sets (`make(train)`), its errors turned into one line.

    Missing files are downloaded into `where` unless `data.download = false`; a
    download that fails (offline, a proxy) names the folder, the key and the way out.
    """
    try:
        return make(True), make(False)
    except ImportError as exc:  # torchvision reads SVHN's .mat files with scipy
        raise DataMissingError(f"{name}: reading its files needs {exc.name} ({exc})") from None
    except (RuntimeError, OSError) as exc:
        reason = " ".join(str(exc).split())[:240]
        if download:
            raise DataMissingError(
                f"{name}: could not download it into {where} (key 'data.download'; {reason}); "
                f"offline? put the files there, {OFFLINE_HINT}"
            ) from None
        raise DataMissingError(
            f"{name}: files not found under {where} (key 'data.download' = false; {reason}); "
            f"put them there, or let it download, {OFFLINE_HINT}"
        ) from None


def _torchvision_mnist_like(cls_name: str, name: str) -> Callable[[str, bool], Dataset]:
    def load(root: str, download: bool) -> Dataset:
        import torchvision

        cls = getattr(torchvision.datasets, cls_name)
        train, test = _fetch(
            name,
            Path(root) / cls_name / "raw",
            download,
            lambda train: cls(root, train=train, download=download),
        )
        return Dataset(
            name,
            train.data.unsqueeze(1).contiguous(),
            train.targets.long(),
            test.data.unsqueeze(1).contiguous(),
            test.targets.long(),
            10,
        )

    return load


def _synthetic(root: str, download: bool) -> Dataset:
    """Ten separable 'digits': a class-specific bright bar plus noise, 28x28, fixed seed."""
    g = torch.Generator().manual_seed(1234)
    n_train, n_test = 512, 256

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % 10
        x = torch.rand(n, 1, 28, 28, generator=g) * 0.3
        for c in range(10):
            rows = slice(2 + 2 * c, 4 + 2 * c)
            x[y == c, :, rows, 4:24] += 0.6
        x = (x.clamp(0, 1) * 255).round().to(torch.uint8)
        return x, y

    tx, ty = make(n_train)
    vx, vy = make(n_test)
    return Dataset("synthetic", tx, ty, vx, vy, 10)


# Per-channel statistics of the real training sets (pixels in [0, 1]).
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100_STATS = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
SVHN_STATS = ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970))


def _torchvision_cifar(cls_name: str, name: str, folder: str) -> Callable[[str, bool], Dataset]:
    """CIFAR-10/100 from torchvision's python pickles, as uint8 NCHW (the files are NHWC)."""

    def load(root: str, download: bool) -> Dataset:
        import torchvision

        cls = getattr(torchvision.datasets, cls_name)
        train, test = _fetch(
            name,
            Path(root) / folder,
            download,
            lambda train: cls(root, train=train, download=download),
        )

        def nchw(arr: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).contiguous()

        return Dataset(
            name,
            nchw(train.data),
            torch.as_tensor(train.targets, dtype=torch.long),
            nchw(test.data),
            torch.as_tensor(test.targets, dtype=torch.long),
            len(train.classes),
        )

    return load


def _svhn(root: str, download: bool) -> Dataset:
    """SVHN's 'train' and 'test' splits (not 'extra'); torchvision maps label 10 to digit 0."""
    import torchvision

    train, test = _fetch(
        "svhn",
        Path(root),
        download,
        lambda train: torchvision.datasets.SVHN(
            root, split="train" if train else "test", download=download
        ),
    )
    return Dataset(
        "svhn",
        torch.from_numpy(np.ascontiguousarray(train.data)),  # already N x 3 x 32 x 32 uint8
        torch.from_numpy(train.labels.astype(np.int64)),
        torch.from_numpy(np.ascontiguousarray(test.data)),
        torch.from_numpy(test.labels.astype(np.int64)),
        10,
    )


def _synthetic_colour(name: str, num_classes: int, seed: int) -> Callable[[str, bool], Dataset]:
    """A small, seeded, learnable 3x32x32 stand-in for a colour dataset (tests, offline demos).

    Class c is a mean colour (one of ten hues) times an oriented grating (one of
    ten angles), plus noise: both cues survive flips, crops and global average
    pooling, so every architecture here can learn it in a few steps. With 100
    classes, hue and angle together name the class.
    """

    def load(root: str, download: bool) -> Dataset:
        g = torch.Generator().manual_seed(seed)
        n_train = max(512, 8 * num_classes)
        n_test = max(256, 4 * num_classes)
        ks = torch.arange(10, dtype=torch.float32)
        phase = torch.tensor([0.0, 2.0, 4.0]) * math.pi / 3
        hues = 0.5 + 0.35 * torch.cos(2 * math.pi * ks[:, None] / 10 + phase[None, :])  # 10 x 3
        angles = ks * math.pi / 10
        yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")

        def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
            y = torch.arange(n) % num_classes
            y = y[torch.randperm(n, generator=g)]  # any prefix mixes the classes
            hue = y % 10
            ang = (y // 10) % 10 if num_classes > 10 else y
            theta = angles[ang][:, None, None]
            grating = torch.cos(2 * math.pi / 6 * (xx * torch.cos(theta) + yy * torch.sin(theta)))
            x = hues[hue][:, :, None, None] * (1 + 0.4 * grating[:, None])
            x = x + 0.06 * torch.randn(n, 3, 32, 32, generator=g)
            return (x.clamp(0, 1) * 255).round().to(torch.uint8), y

        tx, ty = make(n_train)
        vx, vy = make(n_test)
        return Dataset(name, tx, ty, vx, vy, num_classes)

    return load


@dataclass(frozen=True)
class DatasetEntry:
    """A registered dataset: what models need to know about it, how to load it, and how
    many training examples its validation split takes (engine/splits.py)."""

    info: DatasetInfo
    load: Callable[[str, bool], Dataset]
    val_size: int


def register(
    name: str, info: DatasetInfo, load: Callable[[str, bool], Dataset], val_size: int = 1000
) -> None:
    DATASETS.register(name)(DatasetEntry(info, load, val_size))


register("mnist-5k", DatasetInfo((1, 28, 28), 10), _bundled_mnist5k, val_size=400)
register("mnist", DatasetInfo((1, 28, 28), 10), _torchvision_mnist_like("MNIST", "mnist"))
register(
    "fashion-mnist",
    DatasetInfo((1, 28, 28), 10),
    _torchvision_mnist_like("FashionMNIST", "fashion-mnist"),
)
register("synthetic", DatasetInfo((1, 28, 28), 10), _synthetic, val_size=64)
register(
    "cifar10",
    DatasetInfo((3, 32, 32), 10, *CIFAR10_STATS),
    _torchvision_cifar("CIFAR10", "cifar10", "cifar-10-batches-py"),
)
register(
    "cifar100",
    DatasetInfo((3, 32, 32), 100, *CIFAR100_STATS),
    _torchvision_cifar("CIFAR100", "cifar100", "cifar-100-python"),
)
register("svhn", DatasetInfo((3, 32, 32), 10, *SVHN_STATS), _svhn)
# the synthetic stand-ins carry their real counterpart's statistics, so a
# model built for one has exactly the normalisation of the real thing
for _name, _classes, _seed, _stats in (
    ("synthetic-cifar10", 10, 1010, CIFAR10_STATS),
    ("synthetic-cifar100", 100, 1100, CIFAR100_STATS),
    ("synthetic-svhn", 10, 2020, SVHN_STATS),
):
    register(
        _name,
        DatasetInfo((3, 32, 32), _classes, *_stats),
        _synthetic_colour(_name, _classes, _seed),
        val_size=max(64, _classes),  # at least one per class
    )


def dataset_info(name: str) -> DatasetInfo:
    """Shape, classes and statistics of a registered dataset, without loading it."""
    return DATASETS.get(name).info


def default_val_size(name: str) -> int:
    """How many training examples the dataset's validation split takes by default."""
    return DATASETS.get(name).val_size


def load_dataset(name: str, root: str = "", download: bool = False) -> Dataset:
    """Load a registered dataset as uint8 tensors from `data_root(root)` (downloading if asked)."""
    return DATASETS.get(name).load(str(data_root(root)), download)
