"""Reading a saved adversarial-examples file (`--save-adv`) as the hostile input it is.

It is opened as safetensors only (no pickle, no code), and its tensors'
names, dtypes and shapes and every metadata key are validated before anything
is computed: a file that is not ours or is cut short is a `WorkbenchError`
(exit 2, one line). engine/eval/adv_check.py then re-scores what it holds.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from engine.eval.adv_keep import FORMAT, NONE
from engine.spec.config import DefenseConfig
from engine.spec.errors import WorkbenchError
from engine.spec.registry import NORMS

TENSORS = {"adv": ("F32", 4), "index": ("I64", 1), "label": ("I64", 1), "column": ("I64", 1)}


@dataclass
class SavedAdv:
    """A validated file of saved adversarial examples: its tensors and what it claims."""

    path: Path
    adv: torch.Tensor
    index: torch.Tensor
    label: torch.Tensor
    column: torch.Tensor
    columns: list[dict[str, Any]]
    meta: dict[str, Any]

    @property
    def n(self) -> int:
        return len(self.adv)


def read_adv(path: Path) -> SavedAdv:
    """Open and validate a saved-examples file; anything wrong with it is one line (exit 2)."""
    from safetensors import safe_open  # the only way in: no pickle, no code

    def bad(why: str) -> WorkbenchError:
        return WorkbenchError(f"{path}: {why}")

    if not path.is_file():
        raise bad("file not found" if not path.exists() else "not a file")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            if meta.get("format") != FORMAT:
                raise bad(
                    f"key 'format': not a file of saved adversarial examples (given "
                    f"{meta.get('format')!r}, expected {FORMAT!r}; eval --save-adv writes them)"
                )
            names = set(fh.keys())
            if names != set(TENSORS):
                raise bad(f"tensors {sorted(names)}: expected {sorted(TENSORS)}")
            for name, (dtype, dims) in TENSORS.items():
                sl = fh.get_slice(name)
                if sl.get_dtype() != dtype or len(sl.get_shape()) != dims:
                    raise bad(
                        f"tensor {name!r}: {sl.get_dtype()} of shape {sl.get_shape()}, "
                        f"expected {dtype} with {dims} dimensions"
                    )
            tensors = {name: fh.get_tensor(name) for name in TENSORS}
    except WorkbenchError:
        raise
    except Exception as exc:  # safetensors' own parser: truncated, foreign, malformed
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise bad(f"not a safetensors file of saved adversarial examples ({first})") from None
    n = len(tensors["adv"])
    if n == 0 or any(len(tensors[k]) != n for k in TENSORS):
        raise bad("tensors: 'adv', 'index', 'label' and 'column' must have the same length > 0")
    claims = _claims(meta, bad)
    columns = claims["columns"]
    col = tensors["column"]
    if int(col.min()) < NONE or int(col.max()) >= len(columns):
        raise bad(f"tensor 'column': values must lie in [-1, {len(columns) - 1}]")
    if claims["n"] != n:
        raise bad(f"key 'n': {claims['n']}, but the tensors hold {n} examples")
    return SavedAdv(path, tensors["adv"], tensors["index"], tensors["label"], col, columns, claims)


def _claims(meta: dict[str, str], bad: Any) -> dict[str, Any]:
    """The metadata's keys, each parsed and type-checked."""

    def key(name: str) -> str:
        if name not in meta:
            raise bad(f"key {name!r}: missing from the metadata")
        return meta[name]

    def as_json(name: str) -> Any:
        try:
            return json.loads(key(name))
        except (ValueError, RecursionError):
            raise bad(f"key {name!r}: not JSON") from None

    def as_int(name: str) -> int:
        text = key(name)
        if not text.isdigit():
            raise bad(f"key {name!r}: {text[:40]!r} is not a whole number")
        return int(text)

    columns = as_json("columns")
    if not isinstance(columns, list) or not columns:
        raise bad("key 'columns': expected a list of columns")
    for c in columns[1:]:
        ok = (
            isinstance(c, dict)
            and isinstance(c.get("name"), str)
            and c.get("norm") in NORMS
            and isinstance(c.get("eps"), int | float)
            and not isinstance(c.get("eps"), bool)
            and math.isfinite(c["eps"])
            and c["eps"] >= 0
        )
        if not ok:
            raise bad(f"key 'columns': {str(c)[:80]} is not a column (name, norm, eps >= 0)")
    defense = as_json("defense")
    if defense is not None:
        try:
            defense = DefenseConfig.model_validate(defense)
        except Exception as exc:
            raise bad(f"key 'defense': not a defence ({str(exc).splitlines()[0]})") from None
    accuracy = as_json("accuracy")
    if not isinstance(accuracy, int | float) or isinstance(accuracy, bool):
        raise bad("key 'accuracy': not a number")
    return {
        "columns": columns,
        "defense": defense,
        "accuracy": float(accuracy),
        "n": as_int("n"),
        "robust": as_int("robust"),
        "batch_size": max(1, as_int("batch_size")),
        "dataset": key("dataset"),
        "split": key("split"),
        "sha256": key("checkpoint_sha256"),
        "checkpoint": key("checkpoint"),
        "norm": meta.get("norm"),
        "eps": meta.get("eps"),
    }
