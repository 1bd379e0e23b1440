"""`eval --save-adv`: every example's worst-case adversarial input, kept losslessly.

Per example the file keeps the input that fooled the evaluated classifier in
the first column (in the suite's order) that broke it: the clean image itself
when the classifier got it wrong unattacked (column 0, "clean"), and the clean
image with column -1 when no column broke it. The evaluated classifier is the
one that judged every column (the defence itself under `--defense`), so a
transfer, black-box, BPDA or adaptive column's input counts exactly as the
suite counted it, whatever model crafted it; the sanity checks' extra runs are
not columns and keep nothing. Re-scoring every kept input with that classifier
(`predict` in the evaluation's batch size) gives back the worst case per
example; the file records whether it did when it was written.

Tensors (safetensors, float32 inputs, nothing rounded): `adv` (N, C, H, W),
`index` (into the test split), `label`, `column` (int64, N each). Metadata:
`format` = `workbench-adv/1`, `columns` (JSON: name, norm, eps per column; 0 is
"clean"), the common `norm` and `eps`, `dataset`, `split`, `n`, `robust`,
`accuracy`, `checkpoint` and its `checkpoint_sha256`, `defense`, `batch_size`,
`suite`, `seed`, `evaluation`, `rescored` (the re-score at save time) and
`engine_version`. `engine/eval/adv_check.py` reads it back as hostile input.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save
from torch import nn

from engine import __version__
from engine.eval.entries import predict
from engine.eval.plan import Plan
from engine.eval.run import SuiteResult
from engine.records import evidence
from engine.records.checkpoint_header import atomic_write_bytes, file_sha256
from engine.spec.errors import WorkbenchError

FORMAT = "workbench-adv/1"
NONE, CLEAN = -1, 0  # `column` values: no column broke it; misclassified unattacked


@dataclass
class AdvExamples:
    """The kept inputs of one evaluation, and what re-scoring them at once gave."""

    adv: torch.Tensor  # (N, C, H, W) float32, on the CPU
    label: torch.Tensor  # (N,) int64
    column: torch.Tensor  # (N,) int64: NONE, CLEAN or a column's place in `columns`
    columns: list[dict[str, Any]]  # name, norm, eps; [0] is "clean"
    batch_size: int
    rescored: torch.Tensor  # (N,) bool: the classifier on `adv` is right

    @property
    def survived(self) -> torch.Tensor:
        """What the suite found per example: no column broke it."""
        return self.column == NONE

    @property
    def mismatches(self) -> int:
        """Examples whose kept input re-scored differently from the suite's outcome."""
        return int((self.rescored != self.survived).sum())


class AdvKeeper:
    """Collects, per example, the first input that fooled the classifier (a `Keep` sink)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, names: list[str]) -> None:
        self.x, self.y = x, y
        self.adv = x.detach().float().cpu().clone()
        self.column = torch.full((len(x),), NONE, dtype=torch.int64)
        self.names = ["clean", *names]

    def __call__(
        self, name: str, positions: torch.Tensor, x_adv: torch.Tensor, fooled: torch.Tensor
    ) -> None:
        pos = positions.cpu()
        new = fooled.cpu() & (self.column[pos] == NONE)  # the first column to break it wins
        if bool(new.any()):
            take = pos[new]
            self.adv[take] = x_adv.detach()[new.to(x_adv.device)].float().cpu()
            self.column[take] = self.names.index(name)

    def finish(
        self,
        result: SuiteResult,
        params: dict[str, dict[str, Any]],
        classifier: nn.Module,
        batch_size: int,
    ) -> AdvExamples:
        """The kept inputs, checked against the suite's per-example outcomes and re-scored."""
        wrong = ~result.correct["clean"].cpu()
        self.adv[wrong] = self.x.detach().float().cpu()[wrong]
        self.column[wrong] = CLEAN
        expected = first_breaking(result, self.names)
        if not torch.equal(expected, self.column):
            bad = int((expected != self.column).nonzero()[0])
            raise RuntimeError(
                f"--save-adv: example {bad} was broken by column "
                f"{self.names[int(expected[bad])]!r}, but that column kept no input for it"
            )
        pred = predict(classifier, self.adv.to(self.x.device), batch_size).cpu()
        return AdvExamples(
            self.adv,
            self.y.detach().cpu().long(),
            self.column,
            [{"name": "clean", "norm": None, "eps": 0.0}, *column_threats(self.names[1:], params)],
            batch_size,
            pred == self.y.cpu(),
        )


def first_breaking(result: SuiteResult, names: list[str]) -> torch.Tensor:
    """Per example, the place in `names` of the first column it did not survive (NONE: none)."""
    out = torch.full((result.n,), NONE, dtype=torch.int64)
    for k, name in enumerate(names):
        broken = ~result.correct[name].cpu() & (out == NONE)
        out[broken] = k
    return out


def column_threats(names: list[str], params: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each column's ball (norm, eps), from the plan's resolved parameters."""
    out = []
    for name in names:
        p = params.get(name, {})
        if not isinstance(p.get("eps"), int | float):
            raise WorkbenchError(
                f"--save-adv: column {name!r} records no eps, so its inputs' ball cannot be checked"
            )
        out.append({"name": name, "norm": p.get("norm", "linf"), "eps": float(p["eps"])})
    return out


def attach(plan: Plan, x: torch.Tensor, y: torch.Tensor) -> AdvKeeper:
    """A keeper that every entry of `plan` hands its inputs to; refuses entries that cannot."""
    for name, entry in plan.entries.items():
        if not hasattr(entry, "keep"):
            raise WorkbenchError(
                f"--save-adv: column {name!r} ({type(entry).__name__}) does not hand over its "
                "adversarial inputs; run without --save-adv"
            )
    keeper = AdvKeeper(x, y, plan.columns())
    for entry in plan.entries.values():
        entry.keep = keeper  # type: ignore[attr-defined]
    return keeper


def adv_path(evaluation: Path) -> Path:
    """`eval/<suite>-<time>.adv.safetensors` beside `eval/<suite>-<time>.json`."""
    return evidence.adv_file(evaluation)


def save_adv(path: Path, adv: AdvExamples, doc: dict[str, Any], checkpoint: Path) -> None:
    """Write the kept inputs and what they claim, atomically (the evaluation `doc` names them)."""
    from engine.eval import WORST

    n = len(adv.adv)
    robust = int(adv.survived.sum())
    meta = {
        "format": FORMAT,
        "columns": json.dumps(adv.columns),
        "norm": json.dumps(doc.get("norm")),
        "eps": json.dumps(doc.get("eps")),
        "dataset": str(doc["dataset"]),
        "split": str(doc.get("split", "test")),
        "n": str(n),
        "robust": str(robust),
        "accuracy": json.dumps(doc["table"].get(WORST, doc["table"]["clean"])),
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": file_sha256(checkpoint),
        "defense": json.dumps(doc.get("defense")),
        "batch_size": str(adv.batch_size),
        "suite": str(doc["suite"]),
        "seed": str(doc["seed"]),
        "evaluation": Path(str(doc.get("saved", ""))).name,
        "rescored": json.dumps({"robust": int(adv.rescored.sum()), "mismatches": adv.mismatches}),
        "engine_version": __version__,
    }
    tensors = {
        "adv": adv.adv.contiguous(),
        "index": torch.tensor(doc["indices"], dtype=torch.int64),
        "label": adv.label.contiguous(),
        "column": adv.column.contiguous(),
    }
    atomic_write_bytes(path, save(tensors, metadata=meta))
