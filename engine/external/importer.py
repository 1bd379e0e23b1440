"""`workbench import`: a foreign model as an ordinary workbench checkpoint.

The file is a `kind = "weights"` checkpoint like the trainer's `best.safetensors`:
`model.<key>` tensors and the usual metadata (its config rebuilds the model
through `engine.models.build`), plus `external`, the JSON record of where it
came from (factory, weights file, SHA-256s, normalisation, stripped prefixes),
which workbench-trained checkpoints never have. Everything is checked first
and the file is written atomically, so a refused import leaves nothing behind.
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.checkpoint_io import base_metadata, pack_model, save
from engine.external.foreign import Foreign, load_foreign
from engine.external.source import ModelSource
from engine.spec.errors import WorkbenchError

EXTERNAL_KEY = "external"  # the header key; absent on workbench-trained checkpoints


def default_output(source: ModelSource, name: str | None) -> Path:
    """imported/<name>.safetensors (name: --name, else the weights' stem or the factory)."""
    return Path("imported") / f"{name or source.label()}.safetensors"


def import_model(source: ModelSource, out: Path) -> tuple[Path, Foreign]:
    """Check and load the model, then write its checkpoint to `out` (never over a file)."""
    if out.exists():
        raise WorkbenchError(f"--out {out}: already exists; remove it or give another --out")
    if out.suffix != ".safetensors":
        raise WorkbenchError(f"--out {out}: a checkpoint file ends in .safetensors")
    foreign = load_foreign(source)
    meta = base_metadata(foreign.cfg, 0, {}, "weights")
    meta[EXTERNAL_KEY] = json.dumps(foreign.external, sort_keys=True)
    meta["device"] = "cpu"
    save(out, pack_model(foreign.model), meta)
    return out, foreign
