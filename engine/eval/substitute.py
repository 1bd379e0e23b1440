"""The black-box columns' substitute (`eval --source`): a checkpoint, or a model from outside
the workbench, and what names it in the evidence."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.checkpoint_io import load_model
from engine.eval.journal import digest
from engine.external.source import ModelSource
from engine.records.checkpoint_header import file_sha256
from engine.spec.config import PresetConfig
from engine.spec.errors import WorkbenchError


@dataclass
class Substitute:
    """The model a black-box column crafts on (`--source`): what names it in the evidence."""

    model: nn.Module
    name: str  # the checkpoint's path, or the --source model spec (and its weights)
    sha256: str  # the checkpoint file's, or the foreign model's record's
    external: dict[str, Any] | None  # a foreign model's record (factory, weights, SHA-256s)


def load_source(source: Path | ModelSource, cfg: PresetConfig, device: torch.device) -> Substitute:
    """The substitute of the black-box columns: a checkpoint, or a model from outside the
    workbench (its dataset is the target's); it must see the target's inputs and classes."""
    if isinstance(source, ModelSource):
        from engine.external.foreign import load_foreign  # torch models: only when asked

        try:
            foreign = load_foreign(replace(source, dataset=cfg.data.dataset))
        except WorkbenchError as exc:
            raise WorkbenchError(f"--source {source.spec}: {exc}") from None
        weights = "" if source.weights is None else f" ({source.weights})"
        model = foreign.model.to(device).eval()  # a substitute crafts as it predicts
        return Substitute(model, source.spec + weights, digest(foreign.external), foreign.external)
    try:
        scfg, model = load_model(source, None, device)
    except WorkbenchError as exc:
        raise WorkbenchError(f"--source: {exc}") from None
    if scfg.data.dataset != cfg.data.dataset:
        raise WorkbenchError(
            f"--source {source}: trained on {scfg.data.dataset!r}, the target on "
            f"{cfg.data.dataset!r}; a substitute must see the same inputs and classes"
        )
    return Substitute(model, str(source), file_sha256(source), None)
