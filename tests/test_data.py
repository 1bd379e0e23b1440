"""Data: the bundled subset, the device-resident loader and the papers' augmentation."""

from __future__ import annotations

import pytest
import torch

from engine.data import Augment, TensorLoader, epoch_generator, load_dataset
from engine.errors import DataMissingError


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
    assert "nowhere" in msg and "data.root" in msg and "mnist-5k" in msg


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
