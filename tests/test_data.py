"""Data: the bundled subset, the device-resident loader and the papers' augmentation."""

from __future__ import annotations

import pytest
import torch

from engine.data import load_dataset
from engine.loader import Augment, TensorLoader, epoch_generator
from engine.spec.errors import DataMissingError


def test_bundled_subset_is_real_stratified_and_shuffled(mnist5k):
    assert mnist5k.train_x.shape == (4000, 1, 28, 28) and mnist5k.test_x.shape == (1000, 1, 28, 28)
    assert mnist5k.train_x.dtype == torch.uint8
    assert mnist5k.train_y.bincount().tolist() == [400] * 10
    assert mnist5k.test_y.bincount().tolist() == [100] * 10
    # any prefix used for evaluation (eval.samples, --samples) must mix the classes
    assert len(mnist5k.test_y[:50].unique()) == 10
    # real digits: mostly black background, some saturated strokes
    frac_zero = (mnist5k.test_x == 0).float().mean().item()
    assert 0.7 < frac_zero < 0.9 and mnist5k.test_x.max().item() == 255


def test_missing_torchvision_data_says_where_and_offers_the_bundled_set(tmp_path):
    with pytest.raises(DataMissingError) as info:
        load_dataset("mnist", str(tmp_path / "nowhere"), download=False)
    msg = str(info.value)
    assert "nowhere" in msg and "data.download" in msg and "mnist-5k" in msg


def test_loader_covers_every_example_once_and_replays_from_any_batch(mnist5k):
    x, y = mnist5k.train_x[:300], mnist5k.train_y[:300]
    loader = TensorLoader(x, y, 64, torch.device("cpu"), shuffle=True)
    batches = list(loader.epoch(epoch_generator(5, 2)))
    assert len(batches) == len(loader) == 5
    seen = torch.cat([b[1] for b in batches])
    assert sorted(seen.tolist()) == sorted(y.tolist())
    assert all(b[0].min() >= 0.0 and b[0].max() <= 1.0 for b in batches)
    tail = list(loader.epoch(epoch_generator(5, 2), start=3))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches[3:], tail, strict=True))
    other = next(iter(loader.epoch(epoch_generator(5, 3))))
    assert not torch.equal(other[1], batches[0][1])  # another epoch, another order


def test_augmentation_is_a_shifted_or_mirrored_copy_with_zero_padding():
    x = torch.arange(2 * 6 * 6, dtype=torch.uint8).reshape(2, 1, 6, 6) + 1
    loader = TensorLoader(
        x, torch.tensor([0, 1]), 2, torch.device("cpu"), augment=Augment(flip=True, padding=2)
    )
    src = x.float() / 255
    for epoch in range(20):
        ((out, _),) = list(loader.epoch(epoch_generator(0, epoch)))
        assert out.shape == src.shape
        for i in range(2):
            padded = torch.nn.functional.pad(src[i], (2, 2, 2, 2))
            candidates = [padded, padded.flip(-1)]
            found = any(
                torch.equal(out[i], c[:, r : r + 6, s : s + 6])
                for c in candidates
                for r in range(5)
                for s in range(5)
            )
            assert found


@pytest.mark.parametrize(
    ("name", "classes", "n_train"),
    [("synthetic-cifar10", 10, 512), ("synthetic-cifar100", 100, 800), ("synthetic-svhn", 10, 512)],
)
def test_synthetic_colour_sets_are_small_seeded_balanced_and_carry_real_statistics(
    name, classes, n_train
):
    from engine.data import dataset_info

    data = load_dataset(name)
    assert data.train_x.shape == (n_train, 3, 32, 32) and data.train_x.dtype == torch.uint8
    assert data.test_x.shape[1:] == (3, 32, 32) and data.num_classes == classes
    counts = data.train_y.bincount(minlength=classes)
    assert counts.min() >= n_train // classes and counts.max() <= n_train // classes + 1
    assert data.train_y.min() == 0 and data.train_y.max() == classes - 1
    if classes == 10:  # evaluation uses a prefix of the test split: it must mix the classes
        assert len(data.test_y[:50].unique()) == 10
    again = load_dataset(name)  # offline and seeded: the same bytes every time
    assert torch.equal(again.train_x, data.train_x) and torch.equal(again.test_y, data.test_y)
    info = dataset_info(name)
    real = dataset_info(name.removeprefix("synthetic-"))
    assert info.shape == real.shape == (3, 32, 32) and info.num_classes == real.num_classes
    assert (info.mean, info.std) == (real.mean, real.std) and len(info.mean) == 3


def test_synthetic_classes_differ_by_colour_and_pattern_not_by_noise():
    data = load_dataset("synthetic-cifar10")
    x = data.train_x.float() / 255
    colour = torch.stack([x[data.train_y == c].mean((0, 2, 3)) for c in range(10)])  # 10 x 3
    gaps = torch.cdist(colour, colour) + torch.eye(10)
    assert gaps.min() > 0.05  # every pair of classes has a visibly different mean colour


@pytest.mark.parametrize(
    ("name", "folder"),
    [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python"), ("svhn", "")],
)
def test_missing_colour_data_names_the_key_and_the_folder(tmp_path, name, folder):
    root = tmp_path / "nowhere"
    with pytest.raises(DataMissingError) as info:
        load_dataset(name, str(root), download=False)
    msg = str(info.value)
    assert "\n" not in msg and "data.download" in msg and "mnist-5k" in msg
    assert str(root / folder).rstrip("/") in msg


def test_cifar_arrays_become_uint8_nchw_with_long_labels(monkeypatch):
    """torchvision stores CIFAR as N x H x W x C; the loader must hand out N x C x H x W."""
    import numpy as np
    import torchvision

    class FakeCIFAR10:
        classes = [str(i) for i in range(10)]

        def __init__(self, root, train, download):
            n = 6 if train else 4
            self.data = np.arange(n * 32 * 32 * 3, dtype=np.uint32).reshape(n, 32, 32, 3) % 251
            self.data = self.data.astype(np.uint8)
            self.targets = list(range(n))

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    data = load_dataset("cifar10", "unused")
    raw = FakeCIFAR10("", True, False).data
    assert data.train_x.shape == (6, 3, 32, 32) and data.test_x.shape == (4, 3, 32, 32)
    assert data.train_x.dtype == torch.uint8 and data.train_y.dtype == torch.long
    assert data.train_x[2, 1, 5, 7].item() == raw[2, 5, 7, 1]  # channel moved, pixels kept
    assert data.train_y.tolist() == list(range(6)) and data.num_classes == 10


def test_reflection_padding_crops_come_from_the_mirrored_border():
    x = torch.arange(4 * 4, dtype=torch.uint8).reshape(1, 1, 4, 4) + 1
    loader = TensorLoader(
        x, torch.tensor([0]), 1, torch.device("cpu"), augment=Augment(padding=2, pad_mode="reflect")
    )
    padded = torch.nn.functional.pad(x.float() / 255, (2, 2, 2, 2), mode="reflect")[0]
    seen = set()
    for epoch in range(30):
        ((out, _),) = list(loader.epoch(epoch_generator(1, epoch)))
        hits = [
            (r, s)
            for r in range(5)
            for s in range(5)
            if torch.equal(out[0], padded[:, r : r + 4, s : s + 4])
        ]
        assert hits
        seen.update(hits)
        assert (out > 0).all()  # reflection never brings in the zeros of constant padding
    assert len(seen) > 5


def test_the_validation_split_is_stratified_seeded_and_disjoint(mnist5k):
    from engine.splits import split, stratified

    s = split(mnist5k)
    assert (len(s.train), len(s.val), s.test_size) == (3600, 400, 1000)  # mnist-5k's split
    assert set(s.train.tolist()).isdisjoint(s.val.tolist())
    assert sorted(s.train.tolist() + s.val.tolist()) == list(range(4000))
    counts = torch.bincount(mnist5k.train_y[s.val], minlength=10)
    assert counts.tolist() == [40] * 10  # 400 per class in train: 40 each held out
    again = split(mnist5k)
    assert torch.equal(again.val, s.val)  # the same examples for every run (train.seed aside)
    other = split(mnist5k, seed=1)
    assert not torch.equal(other.val, s.val) and len(other.val) == 400
    y = torch.tensor([0] * 7 + [1] * 3)  # shares by largest remainder add up exactly
    keep, drawn = stratified(y, 4, seed=0)  # shares 2.8 and 1.2: the larger remainder rounds up
    assert len(drawn) == 4 and torch.bincount(y[drawn]).tolist() == [3, 1]
    assert len(keep) == 6
