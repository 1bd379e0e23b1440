"""Clean and robust accuracy with per-example bookkeeping.

An example counts as robust under an attack only if the model classifies it
correctly both clean and attacked; the suite's worst case is the per-example
AND over its attacks, never the minimum of aggregate accuracies.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.attacks import Attack, build_attack
from engine.config import PresetConfig


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Predicted labels in eval mode (the caller's mode is restored)."""
    from engine.attacks import eval_mode

    with eval_mode(model):
        return torch.cat(
            [model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)]
        )


def suite_attacks(cfg: PresetConfig, suite: str) -> dict[str, Attack]:
    """The named attack columns, each at the config's eps and step (the paper's protocol)."""
    a, ev = cfg.attack, cfg.eval
    eps, step, r = a.eps, a.step, ev.restarts

    def pgd(steps: int, loss: str = "ce") -> Attack:
        return build_attack("pgd", eps, step, steps, r, loss, a.kappa)  # type: ignore[arg-type]

    if suite == "quick":
        return {f"PGD-{ev.steps}": pgd(ev.steps)}
    if suite == "paper":
        return {
            "FGSM": build_attack("fgsm", eps),
            "PGD-40": pgd(40),
            "PGD-100": pgd(100),
            "CW-40": pgd(40, "cw"),
            "CW-100": pgd(100, "cw"),
        }
    raise ValueError(f"unknown suite {suite!r}")


DEFENDED_COLUMNS = {"quick": None, "paper": ("PGD-40", "CW-40")}


def defended_attacks(
    cfg: PresetConfig, suite: str, base: nn.Module, defended: nn.Module, num_classes: int
) -> dict[str, Attack]:
    """Attacks on an inference-time defence, each classified by the full defence.

    transfer: the attack runs on the base model (the paper's forward-backward
    approximation, z = x); BPDA: through the full inference with dz/dx = I;
    adaptive: through the unrolled inner search (defense.adaptive_steps inner
    steps, defense.eot random starts), every iterate judged by the real defence.
    """
    from dataclasses import replace

    from engine.defenses import AntiPerturbation, UnrolledAPINet

    plain = suite_attacks(cfg, suite)
    keep = DEFENDED_COLUMNS[suite] or tuple(plain)
    d = cfg.defense
    ap = AntiPerturbation(d.eps_ap, d.steps, d.step, d.start, d.chunk)
    unrolled = UnrolledAPINet(base, num_classes, ap, d.adaptive_steps, d.eot)
    out: dict[str, Attack] = {}
    for name in keep:
        atk = plain[name]
        out[f"transfer {name}"] = lambda m, x, y, atk=atk: atk(base, x, y)
        out[f"BPDA {name}"] = lambda m, x, y, atk=atk: atk(defended, x, y)
        adaptive = replace(atk, scorer=defended) if hasattr(atk, "scorer") else atk
        out[f"adaptive {name}"] = lambda m, x, y, atk=adaptive: atk(unrolled, x, y)
    return out


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


def run_suite(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attacks: dict[str, Attack],
    batch_size: int = 500,
    seed: int = 0,
    progress: Any = None,
    on_result: Any = None,
) -> SuiteResult:
    """Clean accuracy, then every attack on every example, batch by batch.

    `progress(name, done, total)` is called after each batch and
    `on_result(name, accuracy, seconds)` after each column, for the faces.
    """
    result = SuiteResult(len(x))
    t0 = time.perf_counter()
    clean = predict(model, x, batch_size) == y
    result.correct["clean"] = clean.cpu()
    result.seconds["clean"] = time.perf_counter() - t0
    if on_result is not None:
        on_result("clean", result.accuracy("clean"), result.seconds["clean"])
    for name, attack in attacks.items():
        torch.manual_seed(seed)
        t0 = time.perf_counter()
        survived = []
        for i in range(0, len(x), batch_size):
            xb, yb = x[i : i + batch_size], y[i : i + batch_size]
            x_adv = attack(model, xb, yb)
            survived.append(predict(model, x_adv, batch_size) == yb)
            if progress is not None:
                progress(name, min(i + batch_size, len(x)), len(x))
        result.correct[name] = (torch.cat(survived) & clean).cpu()
        result.seconds[name] = time.perf_counter() - t0
        if on_result is not None:
            on_result(name, result.accuracy(name), result.seconds[name])
    return result


def save_result(
    path: Path, suite: str, result: SuiteResult, cfg: PresetConfig, extra: dict[str, Any]
) -> None:
    """Write the evidence of one evaluation: parameters, per-example outcomes, versions."""
    from engine import __version__
    from engine.checkpoint import atomic_write_bytes

    doc = {
        "suite": suite,
        "table": result.table(),
        "n": result.n,
        "eps": cfg.attack.eps,
        "step": cfg.attack.step,
        "restarts": cfg.eval.restarts,
        "seconds": result.seconds,
        "per_example": {k: v.int().tolist() for k, v in result.correct.items()},
        "engine_version": __version__,
        "torch_version": torch.__version__,
        **extra,
    }
    atomic_write_bytes(path, json.dumps(doc, indent=1).encode())


SUITES = ("quick", "paper")


def evaluation_dir(path: Path) -> tuple[Path, Path | None]:
    """Where a checkpoint's evaluations go: its run directory if it has one, else beside it."""
    for d in (path.parent, path.parent.parent):
        if (d / "events.jsonl").exists():
            return d / "eval", d
    return path.parent / "eval", None


def load_checkpoint(
    path: Path, sets: list[str] | None = None, device: torch.device | str = "cpu"
) -> tuple[PresetConfig, nn.Module, Any]:
    """(resolved config with `--set` overrides, model in eval mode on `device`, dataset)."""
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
    model.to(device).eval()
    return cfg, model, load_dataset(cfg.data.dataset, cfg.data.root, cfg.data.download)


def evaluate_checkpoint(
    path: Path,
    suite: str = "paper",
    sets: list[str] | None = None,
    samples: int = 0,
    device: str = "auto",
    seed: int = 0,
    progress: Any = None,
    on_result: Any = None,
    defense: str | None = None,
) -> dict[str, Any]:
    """Load a checkpoint, run a suite on its test split, save the evidence, return a summary.

    `progress(name, done, total, n_attacks)` is called as batches finish and
    `on_result(name, accuracy, seconds)` as each column finishes.
    """
    from engine.errors import WorkbenchError
    from engine.events import EventWriter
    from engine.trainer import resolve_device

    if suite not in SUITES:
        raise WorkbenchError(f"--suite {suite!r}: allowed: {', '.join(SUITES)}")
    if defense is not None:
        sets = [f"defense.name={defense}", *(sets or [])]
    dev = resolve_device(device, f"--device {device}")
    cfg, model, data = load_checkpoint(path, sets, dev)
    n = min(samples or len(data.test_y), len(data.test_y))
    x = data.test_x[:n].to(dev).float().div_(255.0)
    y = data.test_y[:n].to(dev)
    from engine.data import dataset_info
    from engine.defenses import build_defense

    defended = build_defense(cfg, model, dataset_info(cfg.data.dataset).num_classes)
    if defended is None:
        attacks, classifier = suite_attacks(cfg, suite), model
    else:
        n_cls = dataset_info(cfg.data.dataset).num_classes
        attacks = defended_attacks(cfg, suite, model, defended, n_cls)
        classifier = defended
    report = None
    if progress is not None:

        def report(name: str, done: int, total: int) -> None:
            progress(name, done, total, len(attacks))

    t0 = time.perf_counter()
    result = run_suite(classifier, x, y, attacks, cfg.data.eval_batch_size, seed, report, on_result)
    elapsed = time.perf_counter() - t0
    table = result.table()
    out_dir, run_dir = evaluation_dir(path)
    stamp = time.strftime("%Y%m%d-%H%M%S") + f"{time.time() % 1:.3f}"[1:]
    out_path = out_dir / f"{suite}-{stamp}.json"
    rate = n * len(attacks) / elapsed if elapsed > 0 else 0.0
    defense_doc = cfg.defense.model_dump() if defended is not None else None
    params = {
        "checkpoint": str(path),
        "seed": seed,
        "indices": [0, n],
        "device": str(dev),
        "examples_per_s": rate,
        "defense": defense_doc,
    }
    save_result(out_path, suite, result, cfg, params)
    if run_dir is not None:
        w = EventWriter(run_dir / "events.jsonl")
        w.emit(
            "eval_result",
            suite=suite,
            checkpoint=str(path),
            table=table,
            path=str(out_path),
            defense=defense_doc,
        )
        w.close()
    return {
        "checkpoint": str(path),
        "suite": suite,
        "n": n,
        "eps": cfg.attack.eps,
        "step": cfg.attack.step,
        "restarts": cfg.eval.restarts,
        "seed": seed,
        "accuracy": table,
        "seconds": result.seconds,
        "saved": str(out_path),
        "examples_per_s": rate,
        "defense": defense_doc,
        "torch_version": torch.__version__,
    }


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
    from engine.checkpoint import atomic_write_bytes

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
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = out_dir / f"eps_ap-sweep-{stamp}.json"
    summary = {"checkpoint": str(path), "samples": samples, "seed": seed, "rows": rows}
    atomic_write_bytes(out, json.dumps(summary, indent=1).encode())
    summary["saved"] = str(out)
    return summary
