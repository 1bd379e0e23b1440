"""Clean and robust accuracy with per-example bookkeeping, sanity checks and saved evidence.

An example counts as robust under an attack only if the model classifies it
correctly both clean and attacked; the suite's worst case is the per-example
AND over its columns, never the minimum of aggregate accuracies.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.attacks import Attack, build_attack, eval_mode
from engine.autoattack import AutoAttackCascade
from engine.config import PresetConfig
from engine.suites import Column, SuiteSpec, load_suite, resolve_columns

Entry = Attack | AutoAttackCascade


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Predicted labels in eval mode (the caller's mode is restored)."""
    with eval_mode(model):
        return torch.cat(
            [model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)]
        )


def column_attack(col: Column) -> Attack:
    """The FGSM or PGD a resolved column describes."""
    p = col.params
    if col.kind == "fgsm":
        return build_attack("fgsm", p["eps"], loss=p["loss"], kappa=p.get("kappa", 0.0))
    return build_attack(
        "pgd", p["eps"], p["step"], p["steps"], p["restarts"], p["loss"], p.get("kappa", 0.0)
    )


def suite_attacks(cfg: PresetConfig, suite: str) -> dict[str, Attack]:
    """A suite's white-box FGSM/PGD columns at the config's threat model (used in training)."""
    cols = resolve_columns(load_suite(suite), cfg, has_source=False)
    return {c.name: column_attack(c) for c in cols if c.kind != "autoattack" and c.source == "self"}


@dataclass
class Plan:
    """What a suite will run on one checkpoint: entries in order, each column's role and numbers."""

    entries: dict[str, Entry] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)

    def columns(self) -> list[str]:
        out: list[str] = []
        for name, e in self.entries.items():
            out += e.columns if isinstance(e, AutoAttackCascade) else [name]
        return out


def plan_suite(
    cols: list[Column],
    base: nn.Module,
    num_classes: int,
    seed: int = 0,
    defended: nn.Module | None = None,
    source: nn.Module | None = None,
    unrolled: nn.Module | None = None,
) -> Plan:
    """Turn resolved columns into callables, with the role each plays in the sanity checks.

    Without a defence every white-box column attacks `base`. With an
    inference-time defence each white-box column becomes three strategies,
    all judged by the full defence: transfer (crafted on `base`, z = x), BPDA
    (through the defence with dz/dx = I) and adaptive (through `unrolled`).
    Columns marked `source = "substitute"` are crafted on `source` (black-box).
    """
    from dataclasses import replace

    plan = Plan()
    for col in cols:
        if col.kind == "autoattack":
            target = base if defended is None else defended
            casc = AutoAttackCascade(
                col.name, col.params["eps"], col.params["version"], seed, num_classes
            )
            plan.entries[col.name] = casc
            late = False
            for cname, comp in zip(casc.columns, casc.components, strict=True):
                plan.roles[cname] = (
                    "late-aa" if late else ("square" if comp == "square" else "gradient-aa")
                )
                late = late or comp == "square"
                plan.params[cname] = {
                    "kind": "autoattack",
                    "component": comp,
                    **casc.params(),
                    "target": "base" if target is base else "defended (BPDA)",
                }
            continue
        atk = column_attack(col)
        info = {"kind": col.kind, **col.params, "source": col.source}
        if col.source == "substitute":
            plan.entries[col.name] = lambda m, x, y, atk=atk: atk(source, x, y)
            plan.roles[col.name] = "transfer"
            plan.params[col.name] = info
            continue
        if defended is None:
            plan.entries[col.name] = atk
            plan.roles[col.name] = "fgsm" if col.kind == "fgsm" else "white"
            plan.params[col.name] = info
            continue
        if not col.defended:
            continue
        adaptive = replace(atk, scorer=defended) if hasattr(atk, "scorer") else atk
        for strategy, fn, role in (
            ("transfer", lambda m, x, y, atk=atk: atk(base, x, y), "transfer"),
            ("BPDA", lambda m, x, y, atk=atk: atk(defended, x, y), "white"),
            ("adaptive", lambda m, x, y, atk=adaptive: atk(unrolled, x, y), "white"),
        ):
            name = f"{strategy} {col.name}"
            plan.entries[name] = fn
            plan.roles[name] = "fgsm" if col.kind == "fgsm" and role == "white" else role
            plan.params[name] = {**info, "strategy": strategy}
    return plan


def defended_attacks(
    cfg: PresetConfig, suite: str, base: nn.Module, defended: nn.Module, num_classes: int
) -> dict[str, Attack]:
    """The transfer/BPDA/adaptive entries of a suite against an inference-time defence."""
    plan = plan_suite(
        resolve_columns(load_suite(suite), cfg, False),
        base,
        num_classes,
        defended=defended,
        unrolled=_unrolled(cfg, base, num_classes),
    )
    return plan.entries  # type: ignore[return-value]


def _unrolled(cfg: PresetConfig, base: nn.Module, num_classes: int) -> nn.Module:
    from engine.defenses import AntiPerturbation, UnrolledAPINet

    d = cfg.defense
    ap = AntiPerturbation(d.eps_ap, d.steps, d.step, d.start, d.chunk)
    return UnrolledAPINet(base, num_classes, ap, d.adaptive_steps, d.eot)


@dataclass
class SuiteResult:
    """Per-example outcomes of a suite: `correct[name][i]` is True if example i survived."""

    n: int
    correct: dict[str, torch.Tensor] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def accuracy(self, name: str) -> float:
        return 100.0 * self.correct[name].float().mean().item() if self.n else float("nan")

    @property
    def worst_case(self) -> torch.Tensor:
        names = list(self.correct)
        out = self.correct[names[0]].clone()
        for name in names[1:]:
            out &= self.correct[name]
        return out

    def table(self) -> dict[str, float]:
        """Accuracy (%) per column, then `worst case` over the attack columns."""
        cols = {name: self.accuracy(name) for name in self.correct}
        if len(self.correct) > 1:
            cols["worst case"] = 100.0 * self.worst_case.float().mean().item()
        return cols

    def rates(self) -> dict[str, float]:
        """Attacked examples per second, per column."""
        return {k: self.n / s for k, s in self.seconds.items() if s > 0}


def run_suite(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attacks: dict[str, Entry],
    batch_size: int = 500,
    seed: int = 0,
    progress: Callable[[str, int, int], None] | None = None,
    on_result: Callable[[str, float, float], None] | None = None,
    clean: torch.Tensor | None = None,
) -> SuiteResult:
    """Clean accuracy, then every attack on every example, batch by batch.

    Each attack starts from `torch.manual_seed(seed)`, so a column does not
    depend on the ones before it. `progress(name, done, total)` is called
    after each batch and `on_result(name, accuracy, seconds)` after each
    column, for the faces.
    """
    result = SuiteResult(len(x))
    t0 = time.perf_counter()
    if clean is None:
        clean = predict(model, x, batch_size) == y
    result.correct["clean"] = clean.cpu()
    result.seconds["clean"] = time.perf_counter() - t0

    def done(name: str) -> None:
        if on_result is not None:
            on_result(name, result.accuracy(name), result.seconds[name])

    done("clean")
    for name, attack in attacks.items():
        torch.manual_seed(seed)
        t0 = time.perf_counter()
        if isinstance(attack, AutoAttackCascade):
            with eval_mode(model):
                outs = attack.run(model, x, y, clean, batch_size, progress)
            for col, alive in outs.items():
                result.correct[col] = (alive & clean).cpu()
                result.seconds[col] = attack.seconds.get(col, 0.0)
                done(col)
            continue
        survived = []
        for i in range(0, len(x), batch_size):
            xb, yb = x[i : i + batch_size], y[i : i + batch_size]
            x_adv = attack(model, xb, yb)
            survived.append(predict(model, x_adv, batch_size) == yb)
            if progress is not None:
                progress(name, min(i + batch_size, len(x)), len(x))
        result.correct[name] = (torch.cat(survived) & clean).cpu()
        result.seconds[name] = time.perf_counter() - t0
        done(name)
    return result


def load_checkpoint(
    path: Path, sets: list[str] | None = None, device: torch.device | str = "cpu"
) -> tuple[PresetConfig, nn.Module, Any]:
    """(resolved config with `--set` overrides, frozen model in eval mode on `device`, dataset).

    The weights are frozen (`requires_grad=False`): attacks need gradients
    with respect to the input only, and autograd then keeps no weight graph.
    """
    from engine import checkpoint as ckpt
    from engine import config as C
    from engine.data import load_dataset
    from engine.models import build

    _, meta = ckpt.read_header(path)
    cfg = C.from_json(meta["config"], f"{path}")
    cfg = C.with_overrides(cfg, sets, f"{path}") if sets else cfg
    tensors, _ = ckpt.load(path)
    model = build(cfg)
    ckpt.unpack_model(model, tensors, str(path))
    model.to(device).eval().requires_grad_(False)
    return cfg, model, load_dataset(cfg.data.dataset, cfg.data.root, cfg.data.download)


def load_source(path: Path, cfg: PresetConfig, device: torch.device) -> nn.Module:
    """The substitute model of a black-box column; it must share the target's data."""
    from engine.errors import WorkbenchError

    try:
        scfg, source, _ = load_checkpoint(path, None, device)
    except WorkbenchError as exc:
        raise WorkbenchError(f"--source: {exc}") from None
    if scfg.data.dataset != cfg.data.dataset:
        raise WorkbenchError(
            f"--source {path}: trained on {scfg.data.dataset!r}, the target on "
            f"{cfg.data.dataset!r}; a substitute must see the same inputs and classes"
        )
    return source


def pick_batch_size(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, requested: int | None, default: int
) -> int:
    """The evaluation batch: as asked, else on CUDA the largest power of two that fits.

    The probe runs one forward and input-gradient pass (an attack step) at
    growing sizes and stops at the first out-of-memory; on CPU memory is
    not the limit, so the config's `data.eval_batch_size` is used.
    """
    if requested:
        return min(requested, len(x))
    if x.device.type != "cuda":
        return min(default, len(x))
    import torch.nn.functional as F

    best, size = 0, 64
    while size <= min(len(x), 16384):
        try:
            xb = x[:size].clone().requires_grad_(True)
            with eval_mode(model):
                loss = F.cross_entropy(model(xb), y[:size])
            torch.autograd.grad(loss, xb)
            best = size
        except torch.OutOfMemoryError:
            break
        finally:
            torch.cuda.empty_cache()
        if size >= len(x):
            break
        size *= 2
    return max(best, 1) if best < len(x) else len(x)


def sanity_runs(
    spec: SuiteSpec,
    cols: list[Column],
    classifier: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    clean: torch.Tensor,
    base_acc: dict[str, float],
    batch_size: int,
    seed: int,
    progress: Callable[[str, int, int], None] | None,
    prefix: str = "",
) -> tuple[list, dict[str, Any]]:
    """The extra attacks the sanity checks need, all variants of the suite's base PGD column.

    Steps scale with eps (step * eps'/eps), so every point of the curve uses
    the same relative step as the suite's own column. For a defended model
    `classifier` is the full defence, so these are its BPDA attacks.
    """
    from engine import sanity

    base = next(
        (c for c in cols if c.name == spec.sanity.base),
        next(
            (
                c
                for c in cols
                if c.kind == "pgd" and c.source == "self" and c.params["loss"] == "ce"
            ),
            None,
        ),
    )
    if base is None:
        return [sanity.Check("extra sanity runs", sanity.SKIP, "no white-box PGD column")], {}
    p = base.params
    eps, step = p["eps"], p["step"]
    variants: dict[str, dict[str, Any]] = {}
    for f in spec.sanity.eps_fractions:
        if 0 < f < 1:
            variants[f"sanity eps {f * eps:.4g}"] = {**p, "eps": f * eps, "step": step * f}
    variants["sanity eps 1"] = {**p, "eps": 1.0, "step": step / eps if eps else step}
    steps2 = f"sanity {p['steps'] * 2} steps"
    restarts2 = f"sanity {p['restarts'] * 2} restarts"
    variants[steps2] = {**p, "steps": p["steps"] * 2}
    variants[restarts2] = {**p, "restarts": p["restarts"] * 2}
    entries = {
        k: build_attack(
            "pgd", v["eps"], v["step"], v["steps"], v["restarts"], v["loss"], v.get("kappa", 0.0)
        )
        for k, v in variants.items()
    }
    res = run_suite(classifier, x, y, entries, batch_size, seed, progress, clean=clean)
    acc = res.table()
    n = len(x)
    curve = [(0.0, acc["clean"])]
    curve += sorted(
        (v["eps"], acc[k])
        for k, v in variants.items()
        if k.startswith("sanity eps") and v["eps"] < eps
    )
    name = prefix + base.name
    curve.append((eps, base_acc[name]))
    checks = sanity.extra_checks(
        curve,
        acc["sanity eps 1"],
        spec.sanity.unbounded_max,
        (name, base_acc[name]),
        (f"{p['steps'] * 2} steps", acc[steps2]),
        (f"{p['restarts'] * 2} restarts", acc[restarts2]),
        n,
        spec.sanity.tolerance,
    )
    runs = {
        k: {
            "params": variants[k],
            "accuracy": acc[k],
            "seconds": res.seconds[k],
            "per_example": res.correct[k].int().tolist(),
        }
        for k in variants
    }
    return checks, {"base": name, "runs": runs}


@dataclass
class Evaluation:
    """A suite's outcome on one model: per-example results, the plan behind them, the checks."""

    result: SuiteResult
    plan: Plan
    checks: list[Any]
    sanity_runs: dict[str, Any]
    batch_size: int
    seconds: float


def evaluate_model(
    spec: SuiteSpec,
    cols: list[Column],
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    seed: int = 0,
    defended: nn.Module | None = None,
    unrolled: nn.Module | None = None,
    source: nn.Module | None = None,
    batch_size: int | None = None,
    default_batch: int = 500,
    progress: Callable[[str, int, int, int], None] | None = None,
    on_result: Callable[[str, float, float], None] | None = None,
) -> Evaluation:
    """Run a suite and its sanity checks on a model in memory (no files read or written)."""
    from engine import sanity

    classifier = model if defended is None else defended
    plan = plan_suite(cols, model, num_classes, seed, defended, source, unrolled)
    bs = pick_batch_size(classifier, x, y, batch_size, default_batch)
    extra_cols = (len(spec.sanity.eps_fractions) + 3) if spec.sanity.enabled else 0
    total_cols = len(plan.entries) + extra_cols

    def report(name: str, done: int, total: int) -> None:
        if progress is not None:
            progress(name, done, total, total_cols)

    t0 = time.perf_counter()
    result = run_suite(classifier, x, y, plan.entries, bs, seed, report, on_result)
    roles = {k: plan.roles[k] for k in result.correct if k in plan.roles}
    checks = sanity.per_example_checks(result.correct, roles, spec.sanity.tolerance)
    sanity_doc: dict[str, Any] = {}
    if spec.sanity.enabled:
        extra, sanity_doc = sanity_runs(
            spec,
            cols,
            classifier,
            x,
            y,
            result.correct["clean"].to(x.device),
            result.table(),
            bs,
            seed,
            report,
            "" if defended is None else "BPDA ",
        )
        checks = extra + checks
    for e in plan.entries.values():
        if isinstance(e, AutoAttackCascade):
            checks += [sanity.Check("AutoAttack's own checks", sanity.WARN, f) for f in e.flags]
    return Evaluation(result, plan, checks, sanity_doc, bs, time.perf_counter() - t0)


def evaluate_checkpoint(
    path: Path,
    suite: str = "paper",
    sets: list[str] | None = None,
    samples: int = 0,
    device: str = "auto",
    seed: int = 0,
    progress: Callable[[str, int, int, int], None] | None = None,
    on_result: Callable[[str, float, float], None] | None = None,
    defense: str | None = None,
    source: Path | None = None,
    batch_size: int | None = None,
) -> dict[str, Any]:
    """Load a checkpoint, run a suite (and its sanity checks), save the evidence, return it.

    `progress(name, done, total, n_columns)` is called as batches finish and
    `on_result(name, accuracy, seconds)` as each column finishes. `batch_size`
    None picks the largest that fits (see `pick_batch_size`).
    """
    from engine import sanity
    from engine.data import dataset_info
    from engine.defenses import build_defense
    from engine.events import EventWriter
    from engine.evidence import code_version, evaluation_dir, stamp, write_json
    from engine.suites import resolve_suite
    from engine.trainer import resolve_device

    spec = load_suite(suite)
    if defense is not None:
        sets = [f"defense.name={defense}", *(sets or [])]
    dev = resolve_device(device, f"--device {device}")
    cfg, model, data = load_checkpoint(path, sets, dev)
    cols = resolve_columns(spec, cfg, source is not None)
    src = load_source(source, cfg, dev) if source is not None else None
    n = min(samples or len(data.test_y), len(data.test_y))
    x = data.test_x[:n].to(dev).float().div_(255.0)
    y = data.test_y[:n].to(dev)
    n_cls = dataset_info(cfg.data.dataset).num_classes
    defended = build_defense(cfg, model, n_cls)
    ev = evaluate_model(
        spec,
        cols,
        model,
        x,
        y,
        n_cls,
        seed,
        defended=defended,
        unrolled=None if defended is None else _unrolled(cfg, model, n_cls),
        source=src,
        batch_size=batch_size,
        default_batch=cfg.data.eval_batch_size,
        progress=progress,
        on_result=on_result,
    )
    result, plan, checks, bs, elapsed = ev.result, ev.plan, ev.checks, ev.batch_size, ev.seconds
    table = result.table()
    out_dir, run_dir = evaluation_dir(path)
    out_path = out_dir / f"{spec.name}-{stamp()}.json"
    defense_doc = cfg.defense.model_dump() if defended is not None else None
    attacked = sum(1 for k in result.correct if k != "clean")
    doc = {
        "kind": "suite",
        "suite": spec.name,
        "suite_file": str(resolve_suite(suite)),
        "description": spec.description,
        "checkpoint": str(path),
        "source": None if source is None else str(source),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "n": n,
        "indices": list(range(n)),
        "dataset": cfg.data.dataset,
        "split": "test",
        "eps": cfg.attack.eps,
        "step": cfg.attack.step,
        "restarts": cfg.eval.restarts,
        "seed": seed,
        "device": str(dev),
        "batch_size": bs,
        "columns": plan.params,
        "accuracy": table,
        "table": table,
        "seconds": result.seconds,
        "examples_per_s": n * attacked / elapsed if elapsed > 0 else 0.0,
        "column_examples_per_s": result.rates(),
        "per_example": {k: v.int().tolist() for k, v in result.correct.items()},
        "sanity": [c.to_dict() for c in checks],
        "sanity_runs": ev.sanity_runs,
        "defense": defense_doc,
        "code": code_version(),
        "torch_version": torch.__version__,
        "python": platform.python_version(),
    }
    write_json(out_path, doc)
    doc["saved"] = str(out_path)
    if run_dir is not None:
        w = EventWriter(run_dir / "events.jsonl")
        w.emit(
            "eval_result",
            suite=spec.name,
            checkpoint=str(path),
            table=table,
            path=str(out_path),
            defense=defense_doc,
            warnings=sum(1 for c in checks if c.status == sanity.WARN),
        )
        w.close()
    return doc


def eps_ap_sweep(
    path: Path,
    values: list[float],
    samples: int = 0,
    device: str = "auto",
    seed: int = 0,
    sets: list[str] | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """API-Net Table 5: the quick defended suite at each eps_ap, saved as one JSON.

    eps_ap = 0 is the undefended base classifier (z_c = x), so the first row
    is the baseline every other row is compared with.
    """
    from engine.evidence import evaluation_dir, stamp, write_json

    rows = []
    for v in values:
        doc = evaluate_checkpoint(
            path,
            "quick",
            [*(sets or []), f"defense.eps_ap={v}"],
            samples,
            device,
            seed,
            defense="apinet",
        )
        rows.append({"eps_ap": v, "accuracy": doc["accuracy"], "saved": doc["saved"]})
        if progress is not None:
            progress(v, doc)
    out_dir, _ = evaluation_dir(path)
    out = out_dir / f"eps_ap-sweep-{stamp()}.json"
    summary = {
        "kind": "eps_ap-sweep",
        "checkpoint": str(path),
        "samples": samples,
        "seed": seed,
        "rows": rows,
    }
    write_json(out, summary)
    summary["saved"] = str(out)
    return summary
