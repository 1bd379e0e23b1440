"""Safetensors checkpoints without torch: the format, a validated header read, atomic writes.

Tensors: `model.<key>`; resumable files add `optim.state.<i>.<key>`,
`sched.last_epoch` and `rng.*`. Metadata (str -> str): format, config, epoch,
metrics, method, arch, dataset, created, engine_version, torch_version, plus
kind ("full" | "weights"). Nothing is ever unpickled. Saving and loading
tensors is engine/checkpoint_io.py; this module imports no torch, so
`workbench inspect` and the app's inspector read headers without it.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any

from engine.spec.errors import CheckpointError

FORMAT = "workbench/1"
REQUIRED_META = (
    "format",
    "config",
    "epoch",
    "metrics",
    "method",
    "arch",
    "dataset",
    "created",
    "engine_version",
    "torch_version",
)
DTYPE_SIZES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}


SUMMARY_KEYS = (
    "format",
    "kind",
    "method",
    "arch",
    "head",
    "dataset",
    "defense",
    "splits",
    "epoch",
    "created",
    "engine_version",
    "torch_version",
    "device",
)


def numel(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def model_parameters(header: dict[str, dict[str, Any]]) -> int:
    """Parameter and buffer count of the `model.` tensors, from the header alone."""
    return sum(numel(info["shape"]) for name, info in header.items() if name.startswith("model."))


def read_header(path: str | Path) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Parse and validate a safetensors header without torch: (tensor table, metadata).

    Catches truncated files, foreign files and files that are not ours before
    anything tries to load them.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{path}: not a safetensors file (only {size} bytes)")
            (n,) = struct.unpack("<Q", head)
            if n > size - 8 or n > 100_000_000:
                raise CheckpointError(
                    f"{path}: truncated or not a safetensors file "
                    f"(header claims {n} bytes, file has {size})"
                )
            raw = fh.read(n)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint file not found") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise CheckpointError(f"{path}: not a safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: not a safetensors file (header is not an object)")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise CheckpointError(f"{path}: not a safetensors file (metadata is not text to text)")
    end = 0
    for name, info in header.items():
        try:
            begin, stop = info["data_offsets"]
            count = 1
            for d in info["shape"]:
                count *= int(d)
            if stop - begin != count * DTYPE_SIZES[info["dtype"]] or min(begin, count) < 0:
                raise ValueError
            end = max(end, int(stop))
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path}: tensor {name!r} has a malformed entry") from None
    if 8 + n + end != size:
        raise CheckpointError(
            f"{path}: truncated checkpoint (expected {8 + n + end} bytes, found {size})"
        )
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: key 'format': not a workbench checkpoint "
            f"(given {meta.get('format')!r}, expected {FORMAT!r})"
        )
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise CheckpointError(f"{path}: key '{missing[0]}': missing from the metadata")
    return header, meta


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write through a temp file in the same folder, fsync, rename: never a torn file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB pieces (what names a checkpoint or source)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
