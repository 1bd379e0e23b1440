"""Checkpoints with torch: atomic save, validated load, state packing, and models from files.

The format and the torch-free header read are in engine/records/checkpoint_header.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from safetensors.torch import save as st_save
from torch import nn

from engine import __version__
from engine.models import build
from engine.models.factory import check_factory_file
from engine.records.checkpoint_header import FORMAT, atomic_write_bytes, read_header
from engine.spec.config import PresetConfig
from engine.spec.errors import CheckpointError
from engine.spec.preset_files import from_json, with_overrides


def save(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """Atomically save tensors and metadata as one safetensors file."""
    path = Path(path)
    flat = {k: v.detach().to("cpu").contiguous() for k, v in sorted(tensors.items())}
    meta = {k: str(v) for k, v in sorted(metadata.items())}
    atomic_write_bytes(path, st_save(flat, metadata=meta))
    return path


def load(path: str | Path, device: str = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Validate the header, then load every tensor (no pickle involved)."""
    _, meta = read_header(path)
    return load_tensors(path, device), meta


def load_tensors(path: str | Path, device: str = "cpu") -> dict[str, torch.Tensor]:
    """Every tensor of a file whose header `read_header` has already validated."""
    try:
        return load_file(str(path), device=device)
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"{path}: unreadable checkpoint ({exc})") from None


# ------------------------------------------------------------ state packing


def base_metadata(
    config: PresetConfig, epoch: int, metrics: dict[str, Any], kind: str
) -> dict[str, str]:
    """The metadata every checkpoint carries: its whole config, so a file rebuilds its model."""
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


def pack_model(model: nn.Module) -> dict[str, torch.Tensor]:
    return {f"model.{k}": v for k, v in model.state_dict().items()}


def unpack_model(model: nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        bad = (result.missing_keys or result.unexpected_keys)[0]
        raise CheckpointError(
            f"{source}: tensor 'model.{bad}' does not match the architecture in its config"
        )


def pack_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], str]:
    """Optimizer state as tensors plus a JSON string for the non-tensor parts."""
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


def pack_rng(device: torch.device | None = None) -> dict[str, torch.Tensor]:
    """The CPU generator's state and, on CUDA, the run's own device's (attack starts, dropout).

    Only the run's device: a run resumed on another index, or with another
    CUDA_VISIBLE_DEVICES, draws the same numbers (a list of every device's
    state would be skipped when the device count differs).
    """
    out = {"rng.torch": torch.get_rng_state()}
    if device is not None and device.type == "cuda":
        out["rng.cuda"] = torch.cuda.get_rng_state(device)
    return out


def unpack_rng(tensors: dict[str, torch.Tensor], device: torch.device | None = None) -> None:
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"].to("cpu", torch.uint8))
    if device is not None and device.type == "cuda" and "rng.cuda" in tensors:
        torch.cuda.set_rng_state(tensors["rng.cuda"].to("cpu", torch.uint8), device)


def load_model(
    path: Path,
    sets: list[str] | None = None,
    device: torch.device | str = "cpu",
    *,
    meta: dict[str, str] | None = None,
) -> tuple[PresetConfig, nn.Module]:
    """(resolved config with `--set` overrides, frozen model in eval mode on `device`).

    The weights are frozen (`requires_grad=False`): attacks need gradients
    with respect to the input only, and autograd then keeps no weight graph.
    A caller that has read the header already passes its `meta`, so the file's
    header is parsed once.
    """
    if meta is None:
        _, meta = read_header(path)
    cfg = from_json(meta["config"], f"{path}")
    cfg = with_overrides(cfg, sets, f"{path}") if sets else cfg
    check_factory_file(external_record(meta, str(path)), str(path))  # an imported model's own code
    tensors = load_tensors(path)
    model = build(cfg)
    unpack_model(model, tensors, str(path))
    model.to(device).eval().requires_grad_(False)
    return cfg, model


def external_record(meta: dict[str, str], source: str = "checkpoint") -> dict[str, Any] | None:
    """An imported checkpoint's `external` record (None: trained by the workbench)."""
    text = meta.get("external")
    if text is None:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        raise CheckpointError(f"{source}: key 'external': metadata is not valid JSON") from None
    if not isinstance(record, dict):
        raise CheckpointError(f"{source}: key 'external': metadata is not a JSON object")
    return record


def load_weights(model: nn.Module, path: str | Path, key: str) -> None:
    """Copy a checkpoint's model weights into `model`; errors name the preset key that asked."""
    try:
        tensors, _ = load(path)
        unpack_model(model, tensors, str(path))
    except CheckpointError as exc:
        raise CheckpointError(f"key {key!r}: {exc}") from None
