"""Runs, evaluations, sweeps and study reports written by hand for the report tests (no
training): every number is known, so a figure or a file can be checked against it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.records.events import EventWriter
from engine.records.evidence import WORST
from engine.spec.panels import Panels, Plot, Series

# A method the engine does not know, declaring its own plot: the report must draw it from
# the declaration alone (ATBLR's Fig. 3 comes the same way).
PANELS = Panels(
    series=(Series("ce"), Series("foo", "L_foo clean"), Series("bar", "L_foo adversarial")),
    plots=(Plot("L_foo clean vs adversarial", ("foo", "bar")),),
)
SPE = 4  # steps per epoch
CONFIG = {
    "name": "fake",
    "data": {"dataset": "mnist-5k"},
    "method": {"name": "mystery", "lambda": 0.25},
    "attack": {"eps": 0.3, "norm": "linf"},
    "eval": {"suite": "quick", "steps": 20},
    "train": {"epochs": 3, "seed": 7},
    "schedule": {"milestones": [2, 3]},
}


def fake_run(root: Path, name: str = "fake", damaged: bool = True) -> Path:
    """Three epochs of four steps, every step logged, a damaged line after the first epoch."""
    run = root / name
    run.mkdir(parents=True)
    w = EventWriter(run / "events.jsonl")
    w.emit(
        "run_started",
        config=CONFIG,
        panels=PANELS.to_json(),
        device="cpu",
        steps_per_epoch=SPE,
        start_epoch=0,
        train_size=100,
        val_size=40,
        test_size=50,
    )
    for epoch in (1, 2, 3):
        for b in range(1, SPE + 1):
            step = (epoch - 1) * SPE + b
            w.emit(
                "step",
                epoch=epoch,
                step=step,
                batch=b,
                batches=SPE,
                loss=2.0 / step,
                parts={"ce": 1.5 / step, "foo": 0.1 * step, "bar": 3.0 - 0.1 * step},
                lr=0.1 if epoch < 3 else 0.01,
                samples_per_s=100.0 + step,
            )
        w.emit(
            "epoch_end",
            epoch=epoch,
            train={"loss": 1.0 / epoch},
            split="val",
            clean_acc=80.0 + epoch,
            clean_n=40,
            clean_interval=[70.0 + epoch, 88.0 + epoch],
            robust_acc=30.0 + 5 * epoch,
            robust_n=40,
            robust_interval=[20.0 + 5 * epoch, 45.0 + 5 * epoch],
            seconds=1.5,
            lr=0.1,
            best_robust_acc=30.0 + 5 * epoch,
        )
        if epoch == 1 and damaged:
            w._fh.write('{"type": "step", "step": "not a number"\n')  # a damaged line
            w._fh.write("garbage\n")
    w.emit(
        "run_finished",
        status="finished",
        epoch=3,
        test={
            "split": "test",
            "epoch": 3,
            "clean_acc": 84.0,
            "clean_interval": [73.0, 91.0],
            "robust_acc": 44.0,
            "robust_interval": [31.0, 58.0],
            "n": 50,
            "clean_n": 50,
            "robust_n": 50,
        },
    )
    w.close()
    return run


COLUMNS = ("clean", "FGSM", "PGD-40", "PGD-100", "CW-40", "CW-100", "APGD", WORST)


def eval_doc(checkpoint: Path, table: dict[str, float], n: int = 200) -> dict[str, Any]:
    intervals = {k: [v - 3.0, v + 2.5] for k, v in table.items()}
    return {
        "kind": "suite",
        "suite": "paper",
        "checkpoint": str(checkpoint),
        "n": n,
        "dataset": "mnist-5k",
        "split": "test",
        "eps": 0.3,
        "norm": "linf",
        "table": table,
        "accuracy": table,
        "intervals": intervals,
    }


def write_json(path: Path, doc: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def sweep_doc(checkpoint: Path) -> dict[str, Any]:
    eps = [0.0, 0.1, 0.2, 0.3]
    acc = [95.0, 80.0, 50.5, 20.25]
    return {
        "kind": "eps-sweep",
        "checkpoint": str(checkpoint),
        "label": checkpoint.parent.name,
        "eps": eps,
        "steps": 40,
        "norm": "linf",
        "n": 200,
        "accuracy": acc,
        "intervals": [[a - 4.0, a + 3.0] for a in acc],
    }


def study_rows(tmp: Path, grid: bool = False) -> list[dict[str, Any]]:
    """Member rows as `engine.study.report.member_numbers` gives them, with evaluation files."""
    rows = []
    n = 10
    settings = [{"method.lambda": 0.1}, {"method.lambda": 1.0}] if grid else [{}]
    for arm, base in (("madry", 50.0), ("atblr", 40.0)):
        for setting in settings if arm == "atblr" or not grid else [{}]:
            bump = 10.0 * setting.get("method.lambda", 0.0)
            label = arm + (f"(lambda={setting['method.lambda']})" if setting else "")
            for seed in (0, 1, 2):
                robust_k = int((base + bump) / 10) + seed % 2  # correct out of 10
                robust = [1] * robust_k + [0] * (n - robust_k)
                clean = [1] * 9 + [0]
                name = f"{arm}__s{seed}" if not setting else f"{arm}__l{bump}__s{seed}"
                table = {
                    "clean": 90.0,
                    "FGSM": 70.0 + seed,
                    "PGD-40": 60.0 + seed,
                    "PGD-100": 58.0 + seed,
                    "CW-40": 62.0 + 2 * seed,
                    "CW-100": 61.0,
                    WORST: 10.0 * robust_k,
                }
                ev = write_json(tmp / name / "eval" / "paper.json", eval_doc(tmp / name, table, n))
                rows.append(
                    {
                        "name": name,
                        "arm": arm,
                        "label": label,
                        "seed": seed,
                        "status": "done",
                        "reason": "",
                        "setting": setting,
                        "evaluation": str(ev),
                        "n": n,
                        "indices": list(range(n)),
                        "clean": 90.0,
                        "robust": 10.0 * robust_k,
                        "clean_outcomes": clean,
                        "robust_outcomes": robust,
                    }
                )
    return rows
