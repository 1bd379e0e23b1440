"""How a run measures itself: the per-epoch evaluation on validation, and the final test.

Clean accuracy on the whole split, and robust accuracy on its first
`eval.samples` examples: the per-example worst case of the white-box columns
of the built-in suite `eval.suite` (never a user's file, so nothing on disk can
change a run's metric). With an inference-time defence both are the defended
classifier's, on those examples, and each column runs as a transfer and as a
BPDA attack (the per-example worst case of the two selects the checkpoint;
`workbench eval --defense` adds the adaptive attack).

Every epoch measures the validation split (engine/splits.py) and selects on
it; only the finished run's selected checkpoint meets the test split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.checkpoint_io import load_model
from engine.data import Dataset
from engine.defenses.apinet import build_defense
from engine.defenses.strategies import bpda, transfer
from engine.eval.microbatch import micro_batched
from engine.eval.plan import plan_suite
from engine.eval.run import SuiteResult, run_suite
from engine.eval.stats import wilson
from engine.eval.suites import resolve_columns, training_suite
from engine.records.checkpoint_header import read_header
from engine.spec.config import PresetConfig


class SplitEvaluation:
    """Clean and robust accuracy (with n and 95% intervals) of a model on one split."""

    def __init__(
        self,
        cfg: PresetConfig,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        num_classes: int,
        device: torch.device,
        *,
        split: str,
        samples: int | None = None,
    ) -> None:
        self.cfg, self.model, self.device, self.split = cfg, model, device, split
        n_robust = min(len(y), samples or cfg.eval.samples or len(y))
        self.x = x.to(device).float().div_(255.0)
        self.y = y.to(device)
        self.robust_x, self.robust_y = self.x[:n_robust], self.y[:n_robust]
        self.defended = build_defense(cfg, model, num_classes)
        cols = [c for c in resolve_columns(training_suite(cfg), cfg, False) if c.spec.per_example]
        strategies = () if self.defended is None else (transfer(model), bpda(self.defended))
        self.plan = plan_suite(
            cols, model, num_classes, cfg.train.seed, self.defended, strategies=strategies
        )

    def __call__(self, seed: int) -> dict[str, Any]:
        """The accuracies; the caller's RNG is left untouched."""
        bs = self.cfg.data.eval_batch_size
        x, y, entries = self.robust_x, self.robust_y, self.plan.entries
        model = micro_batched(self.model, self.device)  # on the CPU, cache-sized slices
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            if self.defended is not None:  # inference costs C searches: the subset alone
                res = run_suite(micro_batched(self.defended, self.device), x, y, entries, bs, seed)
                clean = res.correct["clean"]
            else:
                clean = run_suite(model, self.x, self.y, {}, bs).correct["clean"]
                res = run_suite(model, x, y, entries, bs, seed)
        return {"split": self.split, **measure("clean", clean), **measure("robust", res)}

    @property
    def size(self) -> int:
        return len(self.robust_y)


def measure(name: str, outcome: torch.Tensor | SuiteResult) -> dict[str, Any]:
    """`<name>_acc` (%), `<name>_n` and `<name>_interval` (95% Wilson) of per-example outcomes."""
    ok = outcome.worst_case if isinstance(outcome, SuiteResult) else outcome
    k, n = int(ok.sum()), len(ok)
    return {
        f"{name}_acc": 100.0 * k / n if n else float("nan"),
        f"{name}_n": n,
        f"{name}_interval": list(wilson(k, n)),
    }


def test_checkpoint(path: Path, data: Dataset, device: torch.device, seed: int) -> dict[str, Any]:
    """A checkpoint (a finished run's selected one) measured on the whole test split."""
    _, meta = read_header(path)
    cfg, model = load_model(path, None, device, meta=meta)
    n = len(data.test_y)
    test = SplitEvaluation(
        cfg, model, data.test_x, data.test_y, data.num_classes, device, split="test", samples=n
    )
    return {**test(seed), "checkpoint": str(path), "epoch": int(meta["epoch"])}
