"""The per-epoch evaluation of a run, built from its config alone.

Clean accuracy on the whole test split, and robust accuracy on its first
`eval.samples` examples: the per-example worst case of the white-box columns
of the built-in suite `eval.suite` (never a user's file, so nothing on disk can
change a run's metric). With an inference-time defence both are the defended
classifier's, on the eval subset, and the columns run as transfer attacks
(cheap enough for every epoch; `workbench eval --defense` runs the others).
"""

from __future__ import annotations

import torch
from torch import nn

from engine.config import PresetConfig
from engine.data import Dataset
from engine.defenses.apinet import build_defense
from engine.defenses.strategies import transfer
from engine.eval.plan import Plan, plan_suite
from engine.eval.run import run_suite
from engine.eval.suites import resolve_columns, training_suite


class EpochEvaluation:
    """Clean and robust accuracy of the model being trained, at the end of an epoch."""

    def __init__(
        self, cfg: PresetConfig, model: nn.Module, data: Dataset, device: torch.device
    ) -> None:
        self.cfg, self.model, self.device = cfg, model, device
        n_eval = cfg.eval.samples or len(data.test_y)
        self.test_x = data.test_x.to(device).float().div_(255.0)
        self.test_y = data.test_y.to(device)
        self.eval_x, self.eval_y = self.test_x[:n_eval], self.test_y[:n_eval]
        self.defended = build_defense(cfg, model, data.num_classes)
        cols = [c for c in resolve_columns(training_suite(cfg), cfg, False) if c.spec.per_example]
        strategies = () if self.defended is None else (transfer(model),)
        self.plan: Plan = plan_suite(
            cols, model, data.num_classes, cfg.train.seed, self.defended, strategies=strategies
        )

    def __call__(self, epoch: int) -> tuple[float, float]:
        """(clean %, robust %) after `epoch` epochs; the training RNG is left untouched."""
        cfg, bs = self.cfg, self.cfg.data.eval_batch_size
        seed = cfg.train.seed + epoch
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            if self.defended is not None:
                res = run_suite(
                    self.defended, self.eval_x, self.eval_y, self.plan.entries, bs, seed
                )
                return res.accuracy("clean"), 100.0 * res.worst_case.float().mean().item()
            clean = run_suite(self.model, self.test_x, self.test_y, {}, bs).accuracy("clean")
            res = run_suite(self.model, self.eval_x, self.eval_y, self.plan.entries, bs, seed)
        return clean, 100.0 * res.worst_case.float().mean().item()

    @property
    def size(self) -> int:
        return len(self.eval_y)
