"""A foreign weights file as a state dict, without running any code from it.

Safetensors files are read as such; anything else goes through
`torch.load(weights_only=True)`, whose unpickler allows tensors and plain
containers only, so a file that needs arbitrary pickled code is refused before
any of it runs. A checkpoint dict that wraps its state dict under one of
`WRAPPERS` ("state_dict", "model_state_dict", "model", "net", "state") is
unwrapped (the first key present that holds tensors).
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from engine.spec.errors import WorkbenchError

WRAPPERS = ("state_dict", "model_state_dict", "model", "net", "state")


def _is_safetensors(path: Path) -> bool:
    """The safetensors layout: an 8-byte header length, then a JSON object."""
    with open(path, "rb") as fh:
        head = fh.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return (lines[0] if lines else type(exc).__name__)[:200]


def _refusal(exc: BaseException) -> str:
    """What the weights-only unpickler would not allow ("Unsupported global: posix.system")."""
    for line in str(exc).splitlines():
        if "WeightsUnpickler error:" in line:
            return " ".join(line.split("WeightsUnpickler error:", 1)[1].split())[:200]
    return "an object that is not a tensor or a plain container"


def _torch_load(path: Path) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pickle-protocol notes: not the user's business
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" not in str(exc):
            raise WorkbenchError(
                f"--weights {path}: not a PyTorch or safetensors weights file ({_first_line(exc)})"
            ) from None
        raise WorkbenchError(
            f"--weights {path}: refused, not run: it needs arbitrary pickled code to load "
            f"({_refusal(exc)}); torch.load(weights_only=True) loads only tensors and plain "
            "containers: save a plain state dict or safetensors"
        ) from None
    except Exception as exc:  # zip, pickle and key errors of a truncated or foreign file
        raise WorkbenchError(
            f"--weights {path}: not a PyTorch or safetensors weights file, or truncated "
            f"({type(exc).__name__}: {_first_line(exc)})"
        ) from None


def _tensors_only(obj: Mapping) -> bool:
    return len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def read_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], str | None]:
    """(state dict, the wrapper key it was found under or None); one-line errors."""
    if not path.is_file():
        raise WorkbenchError(f"--weights {path}: file not found")
    if _is_safetensors(path):
        try:
            state = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise WorkbenchError(
                f"--weights {path}: unreadable or truncated safetensors file ({_first_line(exc)})"
            ) from None
        if not state:
            raise WorkbenchError(f"--weights {path}: holds no tensors")
        return dict(state), None
    obj = _torch_load(path)
    if isinstance(obj, Mapping) and _tensors_only(obj):
        return dict(obj), None
    if isinstance(obj, Mapping):
        for key in WRAPPERS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and _tensors_only(inner):
                return dict(inner), key
        keys = ", ".join(repr(k) for k in list(obj)[:8])
        raise WorkbenchError(
            f"--weights {path}: a dict without a state dict (keys {keys}); a wrapped one must "
            f"sit under one of {', '.join(WRAPPERS)}"
        )
    raise WorkbenchError(
        f"--weights {path}: holds a {type(obj).__name__}, not a state dict of tensors"
    )


def strip_prefixes(
    state: dict[str, torch.Tensor], prefixes: Sequence[str]
) -> dict[str, torch.Tensor]:
    """Each key with each prefix removed where it starts with it, in the order given."""
    out = {}
    for key, value in state.items():
        for p in prefixes:
            if p and key.startswith(p):
                key = key[len(p) :]
        out[key] = value
    return out


def common_prefix(keys: Sequence[str]) -> str | None:
    """The first dotted component every key shares ("module."), for an error's hint."""
    firsts = {k.split(".", 1)[0] for k in keys if "." in k}
    if len(firsts) == 1 and all("." in k for k in keys):
        return firsts.pop() + "."
    return None
