"""Accuracy as eps grows (API-Net Fig. 2), for one or several checkpoints, in their norm.

Each point is PGD-k at that eps with the step scaled to keep the
checkpoint's own step/eps ratio, so the point at the checkpoint's eps is its
paper column. Accuracies are the raw per-eps figures (no carrying over of
smaller-eps successes), so a curve that rises is visible, not hidden.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from engine.checkpoint_io import external_record, load_model
from engine.data import dataset_info
from engine.defenses.apinet import build_defense
from engine.defenses.strategies import bpda, transfer
from engine.devices import resolve_device
from engine.eval.entries import predict
from engine.eval.evaluate import Loaded, eval_inputs
from engine.eval.microbatch import micro_batched
from engine.eval.plan import plan_suite
from engine.eval.run import run_suite
from engine.eval.stats import wilson
from engine.eval.suites import Column
from engine.records.checkpoint_header import atomic_write_bytes, read_header
from engine.records.evidence import code_version, evaluation_dir, stamp, write_json
from engine.spec.errors import WorkbenchError
from engine.spec.preset_files import from_json
from engine.spec.registry import NORMS


def eps_grid(eps_max: float, points: int) -> list[float]:
    """`points` evenly spaced values from 0 to eps_max inclusive."""
    return [eps_max * i / (points - 1) for i in range(points)]


def sweep_checkpoint(
    path: Path,
    eps_values: list[float],
    steps: int,
    samples: int,
    dev: torch.device,
    seed: int,
    progress: Callable[[str, int, int], None] | None = None,
    *,
    meta: dict[str, str] | None = None,
    loaded: Loaded | None = None,
) -> dict[str, Any]:
    """One checkpoint's curve with per-example outcomes.

    A defended checkpoint (inference-time defence) is attacked with the
    transfer and BPDA strategies and each point is their per-example worst case.
    `meta`: the checkpoint's header metadata, when the caller has read it already.
    `loaded`: a model in memory instead (`sweep --model`); `path` then names it.
    """
    if loaded is None:
        cfg, model = load_model(path, None, dev, meta=meta)
    else:
        cfg, model = loaded.cfg, loaded.model.to(dev).eval().requires_grad_(False)
    x, y = eval_inputs(cfg, samples, dev)
    n = len(y)
    n_cls = dataset_info(cfg.data.dataset).num_classes
    defended = build_defense(cfg, model, n_cls)
    classifier = micro_batched(model if defended is None else defended, dev)
    bs = min(cfg.data.eval_batch_size, n)
    clean = predict(classifier, x, bs) == y
    ratio = cfg.attack.step / cfg.attack.eps if cfg.attack.eps > 0 else 0.0
    accuracy, bounds, per_example = [], [], []
    for eps in eps_values:
        if eps == 0:
            ok = clean.cpu()
        else:
            params = {
                "eps": eps,
                "norm": cfg.attack.norm,
                "step": ratio * eps if ratio else eps / 4,
                "steps": steps,
                "restarts": cfg.eval.restarts,
                "loss": "ce",
            }
            col = Column(f"PGD-{steps} eps {eps:.4g}", "pgd", params)
            strategies = () if defended is None else (transfer(model), bpda(defended))
            plan = plan_suite([col], model, n_cls, seed, defended, strategies=strategies)
            res = run_suite(classifier, x, y, plan.entries, bs, seed, progress, clean=clean)
            ok = res.worst_case
        accuracy.append(100.0 * ok.float().mean().item())
        bounds.append(list(wilson(int(ok.sum()), len(ok))))
        per_example.append(ok.int().tolist())
    return {
        "checkpoint": str(path),
        "label": path.parent.name if path.parent.name != "checkpoints" else path.stem,
        "eps_checkpoint": cfg.attack.eps,
        "norm": cfg.attack.norm,
        "step_ratio": ratio,
        "defended": defended is not None,
        "strategy": "worst of transfer and BPDA" if defended is not None else "white-box",
        "n": n,
        "accuracy": accuracy,
        "intervals": bounds,  # 95% Wilson score, percent
        "per_example": per_example,
    }


def eps_sweep(
    paths: list[Path],
    eps_max: float | None = None,
    points: int = 9,
    steps: int = 40,
    *,
    samples: int = 0,
    device: str = "auto",
    seed: int = 0,
    out_dir: Path | None = None,
    progress: Callable[[str, int, int, int], None] | None = None,
    loaded: Loaded | None = None,
) -> dict[str, Any]:
    """Every checkpoint's curve on the same eps grid, saved as JSON and CSV.

    `loaded`: a model from outside the workbench (`sweep --model`), drawn first
    and named by `paths[0]` (its weights file), whose header is not read.

    Each checkpoint also gets its own `eval/sweep-<time>.json` with the
    per-example outcomes; the combined files go to `out_dir` (default: the
    first checkpoint's eval folder). `eps_max` None is twice the first
    checkpoint's eps (at most 1 under L-inf). Every checkpoint is attacked in
    its own norm, so they must share one.
    """
    if not paths:
        raise WorkbenchError("sweep: give at least one checkpoint")
    # each header read once, here (not the --model one: it has none)
    metas = [None if (i == 0 and loaded) else read_header(p)[1] for i, p in enumerate(paths)]
    attacks = [
        loaded.cfg.attack if m is None and loaded else from_json(m["config"], str(p)).attack
        for m, p in zip(metas, paths, strict=True)
    ]
    norms = sorted({a.norm for a in attacks})
    if len(norms) > 1:
        raise WorkbenchError(
            f"sweep: key 'attack.norm': the checkpoints use different norms ({', '.join(norms)}); "
            "sweep each norm's checkpoints apart"
        )
    cap = NORMS.get(attacks[0].norm).eps_cap
    if eps_max is None:
        eps_max = 2 * attacks[0].eps if cap is None else min(cap, 2 * attacks[0].eps)
        if eps_max <= 0:
            raise WorkbenchError(f"{paths[0]}: its eps is 0; give --eps-max")
    elif cap is not None and eps_max > cap:
        raise WorkbenchError(
            f"--eps-max: {eps_max:g} is beyond {cap:g}, the largest eps under "
            f"attack.norm = {attacks[0].norm!r}"
        )
    dev = resolve_device(device, f"--device {device}")
    grid = eps_grid(eps_max, points)
    total_cols = len(paths) * (points - 1)
    when = stamp()
    curves = []
    for i, path in enumerate(paths):

        def report(name: str, done: int, total: int, path: Path = path) -> None:
            if progress is not None:
                progress(f"{path.parent.name}/{path.name} {name}", done, total, total_cols)

        own_model = loaded if (i == 0 and loaded) else None
        curve = sweep_checkpoint(
            path, grid, steps, samples, dev, seed, report, meta=metas[i], loaded=own_model
        )
        ev_dir, _ = evaluation_dir(path)
        own = ev_dir / f"sweep-{when}.json"
        write_json(
            own,
            {
                "kind": "eps-sweep",
                "suite": f"sweep PGD-{steps}",
                "checkpoint": str(path),
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "eps": grid,
                "steps": steps,
                "seed": seed,
                "n": curve["n"],
                "indices": list(range(curve["n"])),
                "code": code_version(),
                "torch_version": torch.__version__,
                "source_model": own_model.external
                if own_model is not None
                else external_record(metas[i] or {}, str(path)),
                **curve,
            },
        )
        curve["saved"] = str(own)
        curves.append(curve)
    ns = {c["n"] for c in curves}
    doc = {
        "kind": "eps-sweep",
        "norm": norms[0],
        "eps": grid,
        "steps": steps,
        "seed": seed,
        "n": min(ns),
        "curves": [{k: v for k, v in c.items() if k != "per_example"} for c in curves],
    }
    dest = out_dir or evaluation_dir(paths[0])[0]
    json_path, csv_path = (dest / f"sweep-{when}-combined.{ext}" for ext in ("json", "csv"))
    write_json(json_path, doc)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["eps", *(f"{c['label']}{s}" for c in curves for s in ("", " lo95", " hi95"))])
    for i, e in enumerate(grid):
        cells = [f"{v:.4f}" for c in curves for v in (c["accuracy"][i], *c["intervals"][i])]
        w.writerow([f"{e:.6g}", *cells])
    atomic_write_bytes(csv_path, buf.getvalue().encode())
    doc["saved_json"], doc["saved_csv"] = str(json_path), str(csv_path)
    return doc
