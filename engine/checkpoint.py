"""Safetensors checkpoints: atomic save, validated load, and a torch-free header read.

Tensors: `model.<key>`; resumable files add `optim.state.<i>.<key>`,
`sched.last_epoch` and `rng.*`. Metadata (str -> str): format, config, epoch,
metrics, method, arch, dataset, created, engine_version, torch_version, plus
kind ("full" | "weights"). Nothing is ever unpickled. `torch` is imported
lazily so `workbench inspect` works without it.
"""

from __future__ import annotations

import json
import os
import struct
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine import __version__
from engine.errors import CheckpointError

if TYPE_CHECKING:
    import torch

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
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{path}: not a safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: not a safetensors file (header is not an object)")
    meta = header.pop("__metadata__", None) or {}
    end = 0
    for name, info in header.items():
        try:
            begin, stop = info["data_offsets"]
            count = 1
            for d in info["shape"]:
                count *= int(d)
            if stop - begin != count * DTYPE_SIZES[info["dtype"]]:
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path}: tensor {name!r} has a malformed entry") from None
        end = max(end, stop)
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


def save(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """Atomically save tensors and metadata as one safetensors file."""
    from safetensors.torch import save as st_save

    path = Path(path)
    flat = {k: v.detach().to("cpu").contiguous() for k, v in sorted(tensors.items())}
    meta = {k: str(v) for k, v in sorted(metadata.items())}
    atomic_write_bytes(path, st_save(flat, metadata=meta))
    return path


def load(path: str | Path, device: str = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Validate the header, then load every tensor (no pickle involved)."""
    from safetensors.torch import load_file

    _, meta = read_header(path)
    try:
        tensors = load_file(str(path), device=device)
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"{path}: unreadable checkpoint ({exc})") from None
    return tensors, meta


# ------------------------------------------------------------ state packing


def base_metadata(config: Any, epoch: int, metrics: dict[str, Any], kind: str) -> dict[str, str]:
    import torch

    return {
        "format": FORMAT,
        "kind": kind,
        "config": config.to_json(),
        "epoch": str(epoch),
        "metrics": json.dumps(metrics, sort_keys=True),
        "method": config.method.name,
        "arch": config.model.arch,
        "head": config.model.head,
        "dataset": config.data.dataset,
        "defense": "none"
        if config.defense.name == "none"
        else json.dumps(config.defense.model_dump(), sort_keys=True),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "engine_version": __version__,
        "torch_version": torch.__version__,
    }


def pack_model(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {f"model.{k}": v for k, v in model.state_dict().items()}


def unpack_model(model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        bad = (result.missing_keys or result.unexpected_keys)[0]
        raise CheckpointError(
            f"{source}: tensor 'model.{bad}' does not match the architecture in its config"
        )


def pack_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], str]:
    """Optimizer state as tensors plus a JSON string for the non-tensor parts."""
    import torch

    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    extra: dict[str, Any] = {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.state.{idx}.{key}"] = value
            else:
                extra[f"{idx}.{key}"] = value
    groups = [
        {k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()}
        for g in sd["param_groups"]
    ]
    return tensors, json.dumps({"param_groups": groups, "extra": extra})


def unpack_optimizer(
    opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], blob: str
) -> None:
    info = json.loads(blob)
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim.state."):
            idx, key = name[len("optim.state.") :].split(".", 1)
            state.setdefault(int(idx), {})[key] = value
    for name, value in info["extra"].items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    groups = [
        {k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in info["param_groups"]
    ]
    opt.load_state_dict({"state": state, "param_groups": groups})


def pack_rng() -> dict[str, torch.Tensor]:
    import torch

    out = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            out[f"rng.cuda.{i}"] = s
    return out


def unpack_rng(tensors: dict[str, torch.Tensor]) -> None:
    import torch

    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"].to("cpu", torch.uint8))
    if torch.cuda.is_available():
        states = [
            tensors[f"rng.cuda.{i}"]
            for i in range(torch.cuda.device_count())
            if f"rng.cuda.{i}" in tensors
        ]
        if states and len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.to("cpu", torch.uint8) for s in states])
