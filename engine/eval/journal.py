"""An evaluation's progress on disk, so a killed one continues where it stopped (`--resume`).

After every batch of every column (and every AutoAttack component, which runs
its cascade over the whole set) the examples done so far, the seconds spent
and the random-number state are written atomically to one file beside the
evidence, `eval/.partial-<key>.safetensors` (tensors, with the rest as JSON in
its header: one file, so a kill can never leave halves that disagree). The key
hashes everything that decides the outcome: the checkpoint's SHA-256, the
suite's resolved columns, `--set`, the examples, the seed, the batch size, the
device type and the code and torch versions. A finished evaluation removes it.

A resumed column starts from the saved generator state, so its remaining
batches draw the very random numbers an uninterrupted run draws, and the
per-example outcomes come out identical.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from engine.records.checkpoint_header import atomic_write_bytes
from engine.spec.errors import WorkbenchError

FORMAT = "workbench-partial/1"
PREFIX = ".partial-"


def digest(value: Any) -> str:
    """The SHA-256 of a JSON value written with sorted keys."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class ColumnProgress:
    """One column's examples so far: which survived, the time spent, the generator after them."""

    survived: torch.Tensor  # bool, on the CPU, the first len(survived) examples
    seconds: float
    complete: bool
    extra: dict[str, Any] = field(default_factory=dict)  # the attack's own running state
    rng: torch.Tensor | None = None  # torch's CPU generator state after the last batch
    cuda_rng: torch.Tensor | None = None  # the device generator's, on CUDA

    def restore_rng(self, device: torch.device) -> None:
        """Put the generators back where the uninterrupted run had them after these batches."""
        if self.rng is not None:
            torch.set_rng_state(self.rng)
        if self.cuda_rng is not None and device.type == "cuda":
            torch.cuda.set_rng_state(self.cuda_rng, device)


class _Store:
    """The file and everything in it; shared by a journal and its scopes."""

    def __init__(self, path: Path, settings: dict[str, Any]) -> None:
        self.path, self.settings = path, settings
        self.columns: dict[str, ColumnProgress] = {}
        self.batch_size: int | None = None

    def write(self) -> None:
        tensors: dict[str, torch.Tensor] = {}
        meta: dict[str, Any] = {}
        for i, (key, c) in enumerate(self.columns.items()):  # tensors by position: names are free
            tensors[f"{i}.survived"] = c.survived.contiguous()
            for name in ("rng", "cuda_rng"):
                t = getattr(c, name)
                if t is not None and not c.complete:
                    tensors[f"{i}.{name}"] = t.contiguous()
            meta[key] = {"seconds": c.seconds, "complete": c.complete, "extra": c.extra}
        doc = {"settings": self.settings, "batch_size": self.batch_size, "columns": meta}
        atomic_write_bytes(self.path, save(tensors, {"format": FORMAT, "journal": json.dumps(doc)}))

    def read(self) -> None:
        try:
            with safe_open(str(self.path), "pt") as fh:
                header = fh.metadata() or {}
                tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
            if header.get("format") != FORMAT:
                raise ValueError(f"format {header.get('format')!r}, not {FORMAT!r}")
            doc = json.loads(header["journal"])
            self.batch_size = doc["batch_size"]
            if not isinstance(self.batch_size, int) or self.batch_size < 1:
                raise ValueError(f"batch_size {self.batch_size!r}")
            n = self.settings.get("samples")
            for i, (key, m) in enumerate(doc["columns"].items()):
                c = ColumnProgress(
                    tensors[f"{i}.survived"],
                    float(m["seconds"]),
                    bool(m["complete"]),
                    dict(m["extra"]),
                    tensors.get(f"{i}.rng"),
                    tensors.get(f"{i}.cuda_rng"),
                )
                if c.survived.dtype != torch.bool or c.survived.dim() != 1:
                    raise ValueError(f"column {key!r}: outcomes are not a vector of booleans")
                if isinstance(n, int) and len(c.survived) > n:
                    raise ValueError(f"column {key!r}: {len(c.survived)} outcomes of {n} examples")
                if any(t is not None and t.dtype != torch.uint8 for t in (c.rng, c.cuda_rng)):
                    raise ValueError(f"column {key!r}: a generator state is not bytes")
                self.columns[key] = c
        except (OSError, SafetensorError, ValueError, KeyError, TypeError) as exc:
            raise WorkbenchError(
                f"--resume: {self.path}: unreadable progress ({exc}); delete it or run without "
                "--resume to start afresh"
            ) from None


class Journal:
    """The progress of one evaluation; `scope(prefix)` gives the same file under a name prefix."""

    def __init__(self, store: _Store, prefix: str = "") -> None:
        self._store, self._prefix = store, prefix
        self.resumed: dict[str, Any] | None = None  # what a resume found, for the evidence

    @property
    def path(self) -> Path:
        return self._store.path

    @property
    def batch_size(self) -> int | None:
        """The batch the evaluation ran with (a resume must keep it: it decides the draws)."""
        return self._store.batch_size

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        self._store.batch_size = value

    def scope(self, prefix: str) -> Journal:
        return Journal(self._store, self._prefix + prefix + "/")

    def get(self, name: str) -> ColumnProgress | None:
        return self._store.columns.get(self._prefix + name)

    def record(
        self,
        name: str,
        survived: torch.Tensor,
        seconds: float,
        *,
        complete: bool,
        device: torch.device,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Save a column's progress now, with the generator state its next batch starts from."""
        cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        self._store.columns[self._prefix + name] = ColumnProgress(
            survived.detach().bool().cpu().clone(),  # AutoAttack goes on changing its own
            seconds,
            complete,
            extra or {},
            None if complete else torch.get_rng_state(),
            None if complete else cuda,
        )
        self._store.write()

    def remove(self) -> None:
        """The evaluation finished and its evidence is saved: the progress is no longer needed."""
        self._store.path.unlink(missing_ok=True)

    @classmethod
    def start(cls, out_dir: Path, settings: dict[str, Any], *, resume: bool) -> Journal:
        """The journal of an evaluation with these settings; with `resume`, its saved progress.

        Without `resume` the evaluation starts afresh (replacing the progress of
        an earlier one with the same settings at its first batch). With it, the
        saved progress is read; when there is none but this checkpoint has
        progress saved under other settings, the resume is refused, naming
        what differs, so nobody mixes two evaluations by mistake. Nothing is
        written here.
        """
        path = out_dir / f"{PREFIX}{digest(settings)[:16]}.safetensors"
        journal = cls(_Store(path, settings))
        if not resume:
            return journal
        if path.is_file():
            journal._store.read()
            if journal._store.settings != settings:  # pragma: no cover - a hash collision
                raise WorkbenchError(f"--resume: {path}: saved under other settings")
            cols = journal._store.columns
            journal.resumed = {
                "file": str(path),
                "columns": [k for k, c in cols.items() if c.complete],
                "partial": {k: len(c.survived) for k, c in cols.items() if not c.complete},
            }
            return journal
        mine = settings["checkpoint"]
        others = [(p, s) for p, s in _saved(out_dir) if s.get("checkpoint") == mine]
        if others:
            other, theirs = max(others, key=lambda ps: ps[0].stat().st_mtime)
            raise WorkbenchError(
                f"--resume: {other} holds progress of {settings['checkpoint']} under other "
                f"settings ({_differences(theirs, settings)}); repeat that command, or drop "
                "--resume to start afresh"
            )
        journal.resumed = {"file": None, "columns": [], "partial": {}}  # nothing to resume
        return journal


def _saved(out_dir: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Each readable progress file in `out_dir` with its settings (unreadable ones are skipped)."""
    for p in sorted(out_dir.glob(f"{PREFIX}*.safetensors")) if out_dir.is_dir() else []:
        try:
            with safe_open(str(p), "pt") as fh:
                settings = json.loads((fh.metadata() or {})["journal"])["settings"]
        except (OSError, SafetensorError, ValueError, KeyError, TypeError):
            continue
        if isinstance(settings, dict):
            yield p, settings


def _differences(saved: dict[str, Any], now: dict[str, Any]) -> str:
    """`key: then -> now` for each setting that differs (hashes shortened)."""

    def short(v: Any) -> str:
        text = json.dumps(v, default=str)
        return text[1:13] if isinstance(v, str) and len(v) == 64 else text

    keys = [k for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)]
    return "; ".join(f"{k}: {short(saved.get(k))} then, {short(now.get(k))} now" for k in keys)


def progress_of(path: Path) -> dict[str, tuple[int, bool]]:
    """Per column of a progress file: examples done and whether the column is complete."""
    with safe_open(str(path), "pt") as fh:
        cols = json.loads((fh.metadata() or {})["journal"])["columns"]
        return {
            k: (fh.get_slice(f"{i}.survived").get_shape()[0], bool(m["complete"]))
            for i, (k, m) in enumerate(cols.items())
        }
