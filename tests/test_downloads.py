"""The real download code, against a local HTTP server serving files in the datasets' formats.

torchvision's own mirror lists and checksums are pointed at 127.0.0.1 for the
duration of a test; nothing here touches the internet.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import pickle
import struct
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torchvision
from typer.testing import CliRunner

from engine.data import load_dataset
from engine.spec.errors import DataMissingError
from tests.conftest import write_preset
from workbench.cli import app


@pytest.fixture
def server(tmp_path) -> Iterator[tuple[str, Path]]:
    """A static file server on 127.0.0.1 for the folder it yields."""
    folder = tmp_path / "served"
    folder.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, *args) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", folder
    httpd.shutdown()
    httpd.server_close()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def idx(magic: int, array: np.ndarray) -> bytes:
    """The IDX format of the MNIST files: magic, dimensions (big-endian), then the bytes."""
    return struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()


def serve_mnist(folder: Path, n_train: int, n_test: int, monkeypatch, base: str) -> None:
    rng = np.random.default_rng(0)
    files = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        files[f"{split}-images-idx3-ubyte.gz"] = gzip.compress(
            idx(0x803, rng.integers(0, 256, (n, 28, 28)))
        )
        files[f"{split}-labels-idx1-ubyte.gz"] = gzip.compress(idx(0x801, np.arange(n) % 10))
    for name, data in files.items():
        (folder / name).write_bytes(data)
    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", [base])
    resources = [(name, md5(data)) for name, data in files.items()]
    monkeypatch.setattr(torchvision.datasets.MNIST, "resources", resources)


def test_mnist_downloads_into_the_data_root_then_loads_offline(server, tmp_path, monkeypatch):
    base, folder = server
    serve_mnist(folder, 30, 20, monkeypatch, base)
    root = tmp_path / "cache"
    data = load_dataset("mnist", str(root), download=True)
    assert data.train_x.shape == (30, 1, 28, 28) and data.test_x.shape == (20, 1, 28, 28)
    assert data.train_y.tolist() == [i % 10 for i in range(30)]
    assert (root / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file()
    for f in folder.iterdir():
        f.unlink()  # the server has nothing now: the files on disk are enough
    again = load_dataset("mnist", str(root), download=True)
    assert (again.train_x == data.train_x).all()


def test_cifar10_downloads_its_archive_and_reads_the_pickles(server, tmp_path, monkeypatch):
    base, folder = server
    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    members = {}
    for name, n in [*((f"data_batch_{i}", 4) for i in range(1, 6)), ("test_batch", 6)]:
        batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": list(range(n))}
        members[name] = pickle.dumps(batch)
    members["batches.meta"] = pickle.dumps({"label_names": [f"c{i}" for i in range(10)]})
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    archive = buf.getvalue()
    (folder / "cifar-10-python.tar.gz").write_bytes(archive)
    cls = torchvision.datasets.CIFAR10
    monkeypatch.setattr(cls, "url", base + "cifar-10-python.tar.gz")
    monkeypatch.setattr(cls, "tgz_md5", md5(archive))
    monkeypatch.setattr(
        cls,
        "train_list",
        [[f"data_batch_{i}", md5(members[f"data_batch_{i}"])] for i in range(1, 6)],
    )
    monkeypatch.setattr(cls, "test_list", [["test_batch", md5(members["test_batch"])]])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5(members["batches.meta"])})
    data = load_dataset("cifar10", str(tmp_path / "cache"), download=True)
    assert data.train_x.shape == (20, 3, 32, 32) and data.test_x.shape == (6, 3, 32, 32)
    assert data.num_classes == 10 and data.test_y.tolist() == list(range(6))


def test_offline_is_exit_2_naming_the_folder_the_key_and_the_bundled_set(tmp_path, monkeypatch):
    closed = "http://127.0.0.1:9/"  # the discard port: nothing listens there
    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", [closed])
    root = tmp_path / "cache"
    with pytest.raises(DataMissingError) as info:
        load_dataset("mnist", str(root), download=True)
    msg = str(info.value)
    assert "\n" not in msg and str(root / "MNIST" / "raw") in msg
    assert "data.download" in msg and "--set data.dataset=mnist-5k" in msg
    # and from the command line (in this process, so the mirror stays local): exit 2, one
    # line, nothing written in the runs folder
    monkeypatch.setattr(torchvision.datasets.FashionMNIST, "mirrors", [closed])
    write_preset(
        tmp_path / "full.toml",
        f'name = "full"\n[data]\ndataset = "fashion-mnist"\nroot = "{root}"\n',
    )
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["run", "full.toml", "--headless"])
    assert res.exit_code == 2, res.output
    assert "data.download" in res.output and "--set data.dataset=mnist-5k" in res.output
    assert not (tmp_path / "runs").exists()
