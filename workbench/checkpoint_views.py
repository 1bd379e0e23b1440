"""What a checkpoint's header shows, in `workbench inspect` and the app's inspector alike.

Its summary, its tensor table and its per-epoch history, as rows of strings.
A header is a file anyone can edit: every field is read as hostile input (a
history that is not a list, records that are not objects, text where a
number belongs all read as "-"), so neither face can be made to crash.
"""

from __future__ import annotations

import json
from typing import Any

from engine.records.checkpoint_header import SUMMARY_KEYS, model_parameters, numel
from workbench.views import accuracy, escape, num, short, threat

TENSOR_COLUMNS = ("tensor", "dtype", "shape", "numel")


def parsed_metadata(meta: dict[str, str]) -> dict[str, Any]:
    """Checkpoint metadata with its JSON fields decoded (others left as strings)."""
    parsed: dict[str, Any] = {}
    for k, v in meta.items():
        if k in ("config", "metrics", "optim", "progress", "defense", "external"):
            try:
                parsed[k] = json.loads(v)
                continue
            except (ValueError, RecursionError):  # not JSON, too deep, a 5000-digit number
                pass
        parsed[k] = v
    return parsed


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def checkpoint_rows(header: dict[str, Any], meta: dict[str, str]) -> list[tuple[str, str]]:
    """The summary of a checkpoint: what it is, how big, how robust, under which threat model."""
    parsed = parsed_metadata(meta)
    rows = [(k, meta[k]) for k in SUMMARY_KEYS if k in meta]
    rows.append(("model parameters", f"{model_parameters(header):,}"))
    metrics = _dict(parsed.get("metrics"))
    last = _dict(metrics.get("last"))
    attack = _dict(_dict(parsed.get("config")).get("attack"))
    rows.append(("best robust acc", num(metrics.get("best_robust_acc"))))
    rows.append(
        ("last clean / robust acc", f"{num(last.get('clean_acc'))} / {num(last.get('robust_acc'))}")
    )
    rows.append(("eps / step", f"{attack.get('eps')} / {attack.get('step')}"))
    norm = attack.get("norm", "linf")  # checkpoints made before norms are L-inf
    if norm != "linf":  # the L-inf summary reads as it always has
        rows.append(("threat model", threat(norm, attack.get("eps"))))
    if "external" in meta:  # imported from outside the workbench (`workbench import`)
        rows.extend(_external_rows(parsed.get("external")))
    return rows


def _external_rows(record: Any) -> list[tuple[str, str]]:
    """Where an imported model came from: its factory and its weights' file and SHA-256."""
    ext = _dict(record)

    def text(key: str) -> str:
        v = ext.get(key)
        return escape(str(v)) if isinstance(v, str | int | float) else "-"

    rows = [("imported from", text("factory")), ("source weights", text("weights"))]
    rows.append(("weights sha256", text("weights_sha256")))
    if isinstance(ext.get("factory_sha256"), str):
        rows.append(("factory sha256", text("factory_sha256")))
    return rows


def tensor_rows(header: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    return [
        (
            name,
            info["dtype"],
            "x".join(map(str, info["shape"])) or "scalar",
            f"{numel(info['shape']):,}",
        )
        for name, info in sorted(header.items())
    ]


def _epochs(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """The history's epoch records. A checkpoint header is a file anyone can edit: a history
    that is not a list, and records that are not objects, read as none."""
    history = metrics.get("history")
    return [r for r in history if isinstance(r, dict)] if isinstance(history, list) else []


def _train(record: dict[str, Any]) -> dict[str, Any]:
    train = record.get("train")
    return train if isinstance(train, dict) else {}


def _real(value: Any) -> float | int | None:
    """A number, or None for anything else (text, lists, booleans) in a hostile record."""
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _train_names(metrics: dict[str, Any]) -> list[str]:
    names: list[str] = []
    for rec in _epochs(metrics):
        for k in _train(rec):
            if k not in names:
                names.append(k)
    names.sort(key=lambda k: k != "loss")  # the total first: a narrow screen cuts the parts
    return names


def history_columns(metrics: dict[str, Any]) -> tuple[str, ...]:
    """The history table's header: one column per training mean (loss, ce_adv, lkd_clean ...),
    so none is cut off in a long "k v, k v" cell. Names are escaped: both faces read markup."""
    names = tuple(escape(k) for k in _train_names(metrics))
    return ("epoch", "clean % [95%]", "robust % [95%]", "s", *names)


def history_rows(metrics: dict[str, Any]) -> list[tuple[str, ...]]:
    """A checkpoint's per-epoch history under `history_columns`: the training means are the
    epoch's means, 4 significant digits, "-" where an epoch lacks one (or has no number)."""
    names = _train_names(metrics)
    rows = []
    for rec in _epochs(metrics):
        train = _train(rec)
        epoch, seconds = rec.get("epoch"), _real(rec.get("seconds", 0))
        rows.append(
            (
                str(epoch) if isinstance(epoch, int) and not isinstance(epoch, bool) else "-",
                _accuracy(rec, "clean"),
                _accuracy(rec, "robust"),
                num(seconds, 1),
                *(short(_real(train.get(k))) for k in names),
            )
        )
    return rows


def _accuracy(record: dict[str, Any], name: str) -> str:
    """`accuracy` of a record read as hostile: only numbers and a pair of numbers count."""
    bounds = record.get(f"{name}_interval")
    pair = (
        isinstance(bounds, list) and len(bounds) == 2 and all(_real(b) is not None for b in bounds)
    )
    clean = {
        f"{name}_acc": _real(record.get(f"{name}_acc")),
        f"{name}_interval": bounds if pair else None,
    }
    return accuracy(clean, name)
