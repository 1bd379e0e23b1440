"""A suite on one model: in memory (`evaluate_model`) or on a checkpoint, saving the evidence.

The plan (engine/eval/plan.py) says what runs, `run_suite` runs it, the sanity
checks read the outcome and run their extra attacks, and for a checkpoint the
whole record goes to `eval/<suite>-<time>.json` (engine/records/evidence.py).
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.checkpoint_io import external_record, load_model
from engine.data import dataset_info, load_dataset
from engine.defenses.apinet import build_defense
from engine.defenses.strategies import Strategy, every_strategy
from engine.devices import resolve_device
from engine.eval import adv_keep, card, model_checks, sanity, stats
from engine.eval.journal import Journal, digest
from engine.eval.microbatch import CPU_SLICE, micro_batched
from engine.eval.plan import Plan, plan_suite
from engine.eval.run import SuiteResult, pick_batch_size, run_suite
from engine.eval.substitute import Substitute, load_source
from engine.eval.suites import Column, SuiteSpec, load_suite, resolve_columns
from engine.external.source import ModelSource
from engine.records import evidence
from engine.records.checkpoint_header import file_sha256, read_header
from engine.records.events import EventWriter
from engine.spec.catalog import resolve_suite
from engine.spec.config import PresetConfig
from engine.spec.errors import WorkbenchError
from engine.spec.preset_files import with_overrides

ColumnProgress = Callable[[str, int, int, int], None]  # name, done, total, number of columns


@dataclass
class Evaluation:
    """A suite's outcome on one model: per-example results, the plan behind them, the checks."""

    result: SuiteResult
    plan: Plan
    checks: list[sanity.Check]
    sanity_runs: dict[str, Any]
    batch_size: int
    seconds: float  # everything: the suite, its sanity runs, the batch probe
    attack_seconds: float  # the suite's attack columns alone (what examples/s is of)
    adv: adv_keep.AdvExamples | None = None  # each example's worst-case input (--save-adv)


def evaluate_model(
    spec: SuiteSpec,
    cols: list[Column],
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    *,
    seed: int = 0,
    defended: nn.Module | None = None,
    strategies: Sequence[Strategy] = (),
    source: nn.Module | None = None,
    batch_size: int | None = None,
    default_batch: int = 500,
    progress: ColumnProgress | None = None,
    on_result: Callable[[str, float, float], None] | None = None,
    external: bool = False,
    save_adv: bool = False,
    journal: Journal | None = None,
    micro_batch: int | None = CPU_SLICE,
) -> Evaluation:
    """Run a suite and its sanity checks on a model in memory.

    `external`: the model comes from outside the workbench (`eval --model`, an
    imported checkpoint), so it is put in eval mode and every check of
    engine/eval/model_checks.py runs (else the two a workbench checkpoint can
    fail). `save_adv` keeps each example's worst-case adversarial input
    (engine/eval/adv_keep.py). `journal` saves the progress batch by batch and
    continues what it holds (engine/eval/journal.py); without one no file is
    read or written. PGD columns stop attacking an example once it is broken
    (their `early_stop`), unless the classifier or a strategy's surrogate draws
    random numbers (`model_checks.draws_random`). On the CPU the classifier
    runs on slices of `micro_batch` examples (engine/eval/microbatch.py; None:
    the whole batch at once).
    """
    classifier = model if defended is None else defended
    first = [model_checks.put_in_eval_mode(classifier)] if external else []
    # a model that draws random numbers would draw less as searches drop broken examples
    early_stop = not model_checks.draws_random(
        [classifier, *(s.surrogate for s in strategies)], x[:4]
    )
    plan = plan_suite(
        cols, model, num_classes, seed, defended, source, strategies, early_stop=early_stop
    )
    if journal is not None and journal.batch_size is not None:
        bs = journal.batch_size  # a resumed evaluation keeps its batches (and so its draws)
    else:
        bs = pick_batch_size(classifier, x, y, batch_size, default_batch)
    if journal is not None:
        journal.batch_size = bs
    first += model_checks.model_checks(classifier, x, y, external=external)
    extra_cols = (len(spec.sanity.eps_fractions) + 3) if spec.sanity.enabled else 0
    total_cols = len(plan.entries) + extra_cols

    def report(name: str, done: int, total: int) -> None:
        if progress is not None:
            progress(name, done, total, total_cols)

    classifier = micro_batched(classifier, x.device, micro_batch)
    t0 = time.perf_counter()
    keeper = adv_keep.attach(plan, x, y) if save_adv else None
    result = run_suite(
        classifier, x, y, plan.entries, bs, seed, report, on_result=on_result, journal=journal
    )
    adv = None if keeper is None else keeper.finish(result, plan.params, classifier, bs)
    roles = {k: r for k, r in plan.roles.items() if k in result.correct}
    checks = sanity.per_example_checks(result.correct, roles, spec.sanity.tolerance)
    sanity_doc: dict[str, Any] = {}
    if spec.sanity.enabled:
        extra, sanity_doc = sanity.sanity_runs(
            spec,
            cols,
            classifier,
            x,
            y,
            clean=result.correct["clean"].to(x.device),
            base_acc=result.table(),
            batch_size=bs,
            seed=seed,
            progress=report,
            prefix="" if defended is None else "BPDA ",
            journal=None if journal is None else journal.scope("sanity"),
            external=external,
            early_stop=early_stop,
        )
        checks = extra + checks
    checks = first + checks
    for e in plan.entries.values():
        for flag in getattr(e, "flags", []):
            checks.append(sanity.Check("AutoAttack's own checks", sanity.WARN, flag))
    attack_seconds = sum(v for k, v in result.seconds.items() if k != "clean")
    return Evaluation(
        result, plan, checks, sanity_doc, bs, time.perf_counter() - t0, attack_seconds, adv
    )


def eval_inputs(
    cfg: PresetConfig, samples: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `samples` test examples (0: all) of the checkpoint's dataset, on `device`."""
    data = load_dataset(cfg.data.dataset, cfg.data.root, cfg.data.download)
    n = min(samples or len(data.test_y), len(data.test_y))
    return data.test_x[:n].to(device).float().div_(255.0), data.test_y[:n].to(device)


@dataclass
class Loaded:
    """A model already in memory (`eval --model`): its config and its `external` record."""

    cfg: PresetConfig
    model: nn.Module
    external: dict[str, Any] | None


def evaluate_checkpoint(
    path: Path,
    suite: str = "paper",
    *,
    loaded: Loaded | None = None,
    sets: list[str] | None = None,
    samples: int = 0,
    device: str = "auto",
    seed: int = 0,
    progress: ColumnProgress | None = None,
    on_result: Callable[[str, float, float], None] | None = None,
    defense: str | None = None,
    source: Path | ModelSource | None = None,
    batch_size: int | None = None,
    resume: bool = False,
    save_adv: bool = False,
) -> dict[str, Any]:
    """Load a checkpoint, run a suite (and its sanity checks), save the evidence, return it.

    `progress(name, done, total, n_columns)` is called as batches finish and
    `on_result(name, accuracy, seconds)` as each column finishes. `batch_size`
    None picks the largest that fits (see `pick_batch_size`). With `loaded`
    (a model in memory, `eval --model`) `path` only says where the evidence goes
    and what it names; an imported checkpoint's `external` record comes from its
    header. Either way the document's `source_model` is that record (or None).
    Beside the evidence go its model card (engine/eval/card.py) and, with
    `save_adv`, the worst-case adversarial inputs (engine/eval/adv_keep.py).
    Progress is saved batch by batch beside the evidence; `resume` continues
    the saved progress of a killed evaluation with the same settings
    (engine/eval/journal.py). `source`, the black-box columns' substitute, is a
    checkpoint or a model from outside the workbench (`--source SPEC`).
    """
    spec = load_suite(suite)
    if defense is not None:
        sets = [f"defense.name={defense}", *(sets or [])]
    dev = resolve_device(device, f"--device {device}")
    if loaded is None:
        _, meta = read_header(path)
        record = external_record(meta, str(path))
        cfg, model = load_model(path, sets, dev, meta=meta)
    else:
        record = loaded.external
        cfg = with_overrides(loaded.cfg, sets, "--set") if sets else loaded.cfg
        model = loaded.model.to(dev).requires_grad_(False)  # eval mode: a model check
    cols = resolve_columns(spec, cfg, source is not None)
    sub = load_source(source, cfg, dev) if source is not None else None
    x, y = eval_inputs(cfg, samples, dev)
    n_cls = dataset_info(cfg.data.dataset).num_classes
    defended = build_defense(cfg, model, n_cls)
    out_dir, run_dir = evidence.evaluation_dir(path)
    if resume and save_adv:
        raise WorkbenchError(
            "--resume with --save-adv: the adversarial inputs of the batches before the kill "
            "were not kept; run without --resume to keep them all"
        )
    settings = identity(
        path, spec, cols, sets=sets, n=len(x), seed=seed, source=sub, batch_size=batch_size
    )
    if loaded is not None:  # a model in memory: its factory and weights (SHA-256s) name it
        settings["checkpoint_sha256"] = digest(record)
    journal = Journal.start(out_dir, {**settings, "device": dev.type}, resume=resume)
    ev = evaluate_model(
        spec,
        cols,
        model,
        x,
        y,
        n_cls,
        seed=seed,
        defended=defended,
        strategies=() if defended is None else every_strategy(cfg, model, defended, n_cls),
        source=None if sub is None else sub.model,
        batch_size=batch_size,
        default_batch=cfg.data.eval_batch_size,
        progress=progress,
        on_result=on_result,
        external=record is not None,
        save_adv=save_adv,
        journal=journal,
    )
    out_path = out_dir / f"{spec.name}-{evidence.stamp()}.json"
    doc = suite_document(
        ev,
        spec=spec,
        suite_arg=suite,
        path=path,
        source=sub,
        cfg=cfg,
        device=dev,
        seed=seed,
        defended=defended is not None,
        source_model=record,
    )
    doc["resumed"] = journal.resumed
    if ev.adv is not None:
        doc["adv_examples"] = {
            "file": str(adv_keep.adv_path(out_path)),
            "rescored_mismatches": ev.adv.mismatches,  # 0: every input re-scores as saved
        }
        adv_keep.save_adv(adv_keep.adv_path(out_path), ev.adv, {**doc, "saved": out_path}, path)
    evidence.write_json(out_path, doc)
    journal.remove()
    doc["saved"] = str(out_path)
    doc["card"] = card.write_card(out_path, doc)
    if run_dir is not None:
        w = EventWriter(run_dir / "events.jsonl")
        w.emit(
            "eval_result",
            suite=spec.name,
            checkpoint=str(path),
            table=doc["table"],
            path=str(out_path),
            defense=doc["defense"],
            warnings=sum(1 for c in ev.checks if c.status == sanity.WARN),
        )
        w.close()
    return doc


def identity(
    path: Path,
    spec: SuiteSpec,
    cols: list[Column],
    *,
    sets: list[str] | None,
    n: int,
    seed: int,
    source: Substitute | None,
    batch_size: int | None,
) -> dict[str, Any]:
    """What decides an evaluation's outcome: a resume must match it exactly (its journal key)."""
    code = evidence.code_version()
    columns = [[c.name, c.kind, c.params, c.source, c.defended] for c in cols]
    in_run = path.parent.name == "checkpoints"
    return {
        "checkpoint": f"checkpoints/{path.name}" if in_run else path.name,
        "checkpoint_sha256": file_sha256(path) if path.is_file() else None,
        "suite": spec.name,
        "suite_sha256": digest([columns, spec.sanity.model_dump()]),
        "sets": list(sets or []),
        "samples": n,
        "seed": seed,
        "source_sha256": None if source is None else source.sha256,
        "batch_size": batch_size or "auto",
        "code": f"{code['engine']} {code['commit']}",
        "torch": torch.__version__,
    }


def suite_document(
    ev: Evaluation,
    *,
    spec: SuiteSpec,
    suite_arg: str,
    path: Path,
    source: Substitute | None,
    cfg: PresetConfig,
    device: torch.device,
    seed: int,
    defended: bool,
    source_model: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything an evaluation did and found, per example, as the saved JSON holds it.

    `source_model`: where a model from outside the workbench came from (its
    `external` record: factory, weights file, SHA-256s), None for a trained one.
    """
    result = ev.result
    n = result.n
    table = result.table()
    attacked = sum(1 for k in result.correct if k != "clean")
    per_example = {k: v.tolist() for k, v in result.correct.items()}
    return {
        "kind": "suite",
        "suite": spec.name,
        "suite_file": str(resolve_suite(suite_arg)),
        "description": spec.description,
        "checkpoint": str(path),
        "source": None if source is None else source.name,
        "source_external": None if source is None else source.external,
        "source_model": source_model,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "n": n,
        "indices": list(range(n)),
        "dataset": cfg.data.dataset,
        "split": "test",
        "arch": cfg.model.arch,  # for the model card (engine/eval/card.py)
        "num_classes": dataset_info(cfg.data.dataset).num_classes,
        # the numbers every column shares (None where they differ: see "columns")
        "eps": evidence.common(ev.plan.params, "eps"),
        "norm": evidence.common(
            ev.plan.params, "norm"
        ),  # the threat model's; None if columns differ
        "step": evidence.common(ev.plan.params, "step"),
        "restarts": evidence.common(ev.plan.params, "restarts"),
        "early_stop": evidence.common(ev.plan.params, "early_stop"),
        "seed": seed,
        "device": str(device),
        "batch_size": ev.batch_size,
        "columns": ev.plan.params,
        "accuracy": table,
        "table": table,
        # 95% Wilson score, percent, per column (and the worst case)
        "intervals": stats.intervals(per_example),
        "interval_method": stats.METHOD,
        "seconds": result.seconds,
        "seconds_total": ev.seconds,  # the suite, its sanity runs, the batch probe
        "examples_per_s": n * attacked / ev.attack_seconds if ev.attack_seconds > 0 else 0.0,
        "column_examples_per_s": result.rates(),
        "per_example": {k: v.int().tolist() for k, v in result.correct.items()},
        "sanity": [c.to_dict() for c in ev.checks],
        "sanity_runs": ev.sanity_runs,
        "defense": cfg.defense.model_dump() if defended else None,
        "code": evidence.code_version(),
        "torch_version": evidence.versions()["torch"],
        "python": platform.python_version(),
    }
