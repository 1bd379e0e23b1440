"""`eval CKPT --check-adv FILE`: re-score saved adversarial examples and check their balls.

The file (engine/eval/adv_keep.py) is hostile input, opened and validated by
engine/eval/adv_file.py before anything is computed; a file that is not ours,
cut short, or written for another checkpoint or dataset is a `WorkbenchError`
(exit 2, one line). The checks themselves are a `Verdict` (exit 0 or 1):

* every input is the dataset's label for its index (a changed label fails);
* every input lies in [0, 1] and in the ball of the column that broke it,
  measured in float64 by the column's norm (`ThreatModel.size`) with a float
  tolerance of `REL_TOL * eps + ABS_TOL` (float32 projections round by about
  1e-7); inputs no column broke, or misclassified clean, must equal the clean
  image exactly;
* the classifier the evaluation judged with (the checkpoint, wrapped in the
  recorded defence) classifies every input as the evaluation found: wrong for
  each broken example, right for each survivor, so the re-scored accuracy is
  the saved one, example by example.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.attacks import ThreatModel
from engine.checkpoint_io import load_model
from engine.data import load_dataset
from engine.defenses.apinet import build_defense
from engine.devices import resolve_device
from engine.eval import stats
from engine.eval.adv_file import SavedAdv, read_adv
from engine.eval.adv_keep import CLEAN, NONE
from engine.eval.entries import predict
from engine.records.checkpoint_header import file_sha256
from engine.spec.config import DefenseConfig
from engine.spec.errors import WorkbenchError

REL_TOL, ABS_TOL = 1e-5, 1e-6  # how far past eps a float32 input may lie and still count as in
SHOWN = 5  # examples named per failed check


@dataclass
class Verdict:
    """What re-checking a file found: a line per check, and whether all of them held."""

    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures

    def check(self, name: str, held: bool, detail: str) -> None:
        self.lines.append(f"{'PASS' if held else 'FAIL'}  {name}: {detail}")
        if not held:
            self.failures.append(name)

    def skip(self, name: str, detail: str) -> None:
        self.lines.append(f"SKIP  {name}: {detail}")


@dataclass
class Opened:
    """A validated file with what judging it needs: the clean inputs and the classifier."""

    saved: SavedAdv
    x: torch.Tensor  # the clean test inputs, bit for bit as the evaluation attacked them
    truth: torch.Tensor  # the dataset's labels
    classifier: nn.Module  # the checkpoint, wrapped in the recorded defence
    defense: dict[str, Any] | None
    device: torch.device


def open_adv(checkpoint: Path, path: Path, device: str = "cpu") -> Opened:
    """`path` validated against `checkpoint` (same file, dataset and image shape), else exit 2."""
    saved = read_adv(path)
    claims = saved.meta
    if not checkpoint.is_file():
        raise WorkbenchError(f"{checkpoint}: checkpoint file not found")
    if file_sha256(checkpoint) != claims["sha256"]:
        raise WorkbenchError(
            f"{path}: key 'checkpoint_sha256': saved from another checkpoint "
            f"({claims['checkpoint']}), not {checkpoint}"
        )
    dev = resolve_device(device, f"--device {device}")
    cfg, model = load_model(checkpoint, None, dev)
    if claims["dataset"] != cfg.data.dataset or claims["split"] != "test":
        raise WorkbenchError(
            f"{path}: key 'dataset': {claims['dataset']!r} ({claims['split']}), but "
            f"{checkpoint} is a {cfg.data.dataset!r} model evaluated on its test split"
        )
    data = load_dataset(cfg.data.dataset, cfg.data.root, cfg.data.download)
    index = saved.index
    if int(index.min()) < 0 or int(index.max()) >= len(data.test_y):
        n_test = len(data.test_y)
        raise WorkbenchError(f"{path}: tensor 'index': outside the {n_test} test examples")
    if tuple(saved.adv.shape[1:]) != tuple(data.test_x.shape[1:]):
        raise WorkbenchError(
            f"{path}: tensor 'adv': images of shape {tuple(saved.adv.shape[1:])}, the dataset's "
            f"are {tuple(data.test_x.shape[1:])}"
        )
    defense = claims["defense"]
    cfg = cfg.model_copy(update={"defense": defense or DefenseConfig()})
    defended = build_defense(cfg, model, data.num_classes)
    return Opened(
        saved,
        data.test_x[index].float().div_(255.0),
        data.test_y[index],
        defended or model,
        None if defended is None else cfg.defense.model_dump(),
        dev,
    )


def check_adv(
    checkpoint: Path, path: Path, *, device: str = "auto", batch_size: int | None = None
) -> Verdict:
    """Re-score `path`'s inputs on `checkpoint` and check labels, balls and box (see module)."""
    o = open_adv(checkpoint, path, device)
    saved = o.saved
    v = Verdict()
    _labels(v, saved, o.truth)
    _balls(v, saved, o.x)
    if o.defense is not None and o.defense.get("start") == "noise":
        torch.manual_seed(0)  # a randomised defence: the outcomes are not promised to repeat
    bs = batch_size or saved.meta["batch_size"]
    pred = predict(o.classifier, saved.adv.to(o.device), bs).cpu()
    _outcomes(v, saved, pred == saved.label)
    _evidence(v, saved)
    v.report.update(file=str(path), checkpoint=str(checkpoint), batch_size=bs, defense=o.defense)
    return v


def _labels(v: Verdict, saved: SavedAdv, truth: torch.Tensor) -> None:
    wrong = (saved.label != truth).nonzero().squeeze(1).tolist()
    v.check(
        "labels",
        not wrong,
        "every label is the dataset's"
        if not wrong
        else f"{len(wrong)} differ from the dataset (test indices "
        f"{', '.join(str(int(saved.index[i])) for i in wrong[:SHOWN])})",
    )
    v.report["label_mismatches"] = len(wrong)


def _balls(v: Verdict, saved: SavedAdv, x: torch.Tensor) -> None:
    """In [0, 1], and within the breaking column's ball (exactly the clean image otherwise)."""
    adv = saved.adv.double()  # sizes in float64: only the attack's own rounding remains
    flat = adv.flatten(1)
    in_box = torch.isfinite(flat).all(1) & (flat >= 0).all(1) & (flat <= 1).all(1)
    outside_box = (~in_box).nonzero().squeeze(1).tolist()
    v.check(
        "box [0, 1]",
        not outside_box,
        "every input"
        if not outside_box
        else f"{len(outside_box)} outside (test indices "
        f"{', '.join(str(int(saved.index[i])) for i in outside_box[:SHOWN])})",
    )
    delta = adv - x.double()
    outside: list[int] = []
    worst = 0.0  # the largest size / eps of an attacked input
    for k in saved.column.unique().tolist():
        rows = (saved.column == k).nonzero().squeeze(1)
        if k in (NONE, CLEAN):
            moved = (delta[rows].flatten(1) != 0).any(1)
            outside += rows[moved].tolist()
            continue
        col = saved.columns[k]
        size = ThreatModel(col["norm"], col["eps"]).size(delta[rows])
        limit = col["eps"] * (1 + REL_TOL) + ABS_TOL
        bad = ~(size <= limit)  # NaN counts as outside
        outside += rows[bad].tolist()
        if col["eps"] > 0 and len(rows):
            worst = max(worst, float(size.max()) / col["eps"])
    outside.sort()
    v.check(
        "balls",
        not outside,
        (
            f"every input within its column's ball (largest size {worst:.6f} x eps; "
            f"tolerance {REL_TOL:g} x eps + {ABS_TOL:g}), unattacked ones equal to the clean image"
        )
        if not outside
        else f"{len(outside)} outside the ball of the column that broke them (test indices "
        f"{', '.join(str(int(saved.index[i])) for i in outside[:SHOWN])})",
    )
    v.report["outside_box"], v.report["outside_ball"] = len(outside_box), len(outside)


def _outcomes(v: Verdict, saved: SavedAdv, right: torch.Tensor) -> None:
    """The re-scored per-example outcomes against the saved ones, and the accuracy claimed."""
    expected = saved.column == NONE
    n, robust = saved.n, int(expected.sum())
    differ = (right != expected).nonzero().squeeze(1).tolist()
    lo, hi = stats.wilson(int(right.sum()), n)
    acc = 100.0 * int(right.sum()) / n
    claimed = saved.meta["accuracy"]
    consistent = saved.meta["robust"] == robust and abs(claimed - 100.0 * robust / n) < 1e-3
    v.check(
        "claimed accuracy",
        consistent,
        f"{claimed:.2f}% = {robust}/{n} survivors recorded"
        if consistent
        else f"the file claims {claimed:.4g}% ({saved.meta['robust']} robust) but its columns "
        f"say {robust}/{n}",
    )
    v.check(
        "re-scored outcomes",
        not differ,
        f"{acc:.1f}% [{lo:.1f}, {hi:.1f}] robust (worst case) of n = {n}, every example as saved"
        if not differ
        else f"{acc:.1f}% of n = {n} against {100.0 * robust / n:.1f}% saved; {len(differ)} "
        f"examples differ (test indices "
        f"{', '.join(str(int(saved.index[i])) for i in differ[:SHOWN])})",
    )
    v.report.update(
        n=n,
        saved_robust=robust,
        rescored_robust=int(right.sum()),
        accuracy=acc,
        interval=[lo, hi],
        outcome_mismatches=len(differ),
    )


def _evidence(v: Verdict, saved: SavedAdv) -> None:
    """The file against the evaluation saved beside it: the same examples, columns and balls
    (so eps cannot be loosened in the file alone) and the same per-example worst case."""
    from engine.records.evidence import read_suite

    path = saved.path.with_name(saved.path.name.removesuffix(".adv.safetensors") + ".json")
    if not path.is_file():
        v.skip("evidence", f"{path.name} is not beside the file; its own claims were checked")
        return
    try:
        doc = read_suite(path)
    except WorkbenchError as exc:
        v.skip("evidence", str(exc))
        return
    per_example, params = doc.get("per_example"), doc.get("columns")
    names = [c["name"] for c in saved.columns]
    problems = []
    if doc.get("indices") != saved.index.tolist():
        problems.append("other test examples")
    if not isinstance(per_example, dict) or list(per_example) != names:
        problems.append("other columns")
    elif any(not isinstance(o, list) or len(o) != saved.n for o in per_example.values()):
        problems.append("per-example outcomes of another length")
    else:
        first = [
            next((k for k, c in enumerate(names) if not per_example[c][i]), NONE)
            for i in range(saved.n)
        ]
        if first != saved.column.tolist():
            problems.append("another first breaking column for some examples")
    for c in saved.columns[1:]:
        p = params.get(c["name"]) if isinstance(params, dict) else None
        ball = (p.get("norm", "linf"), p.get("eps")) if isinstance(p, dict) else None
        if ball != (c["norm"], c["eps"]):
            problems.append(f"another ball for column {c['name']!r}")
            break
    v.check(
        "evidence",
        not problems,
        f"agrees with {path.name} (examples, columns and their balls, worst case per example)"
        if not problems
        else f"{path.name} records {', '.join(problems)}",
    )
