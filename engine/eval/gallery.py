"""Examples for the gallery: one test image per class, its adversarial version, predictions.

`gallery` crafts them now (PGD on the checkpoint); `saved_gallery` shows the
worst-case inputs an evaluation kept with `--save-adv` (engine/eval/adv_keep.py),
validated against the checkpoint as `--check-adv` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from engine.attacks import ThreatModel, build_attack
from engine.checkpoint_io import load_model
from engine.data import load_dataset
from engine.defenses.apinet import build_defense, class_scores
from engine.eval.entries import predict


@dataclass
class GalleryRow:
    label: int
    clean: torch.Tensor  # C x H x W in [0, 1]
    adv: torch.Tensor
    pred_clean: int
    pred_adv: int
    z_true: torch.Tensor | None = None  # API-Net's z_c for the true class (of x_adv)
    z_wrong: torch.Tensor | None = None  # and for the strongest wrong class
    wrong: int | None = None
    column: str | None = None  # saved examples: the suite column whose input this is
    index: int | None = None  # saved examples: the test example


def gallery(
    path: Path, steps: int = 20, device: str = "cpu", seed: int = 0
) -> tuple[ThreatModel, list[GalleryRow]]:
    """The first test example of every class, attacked by PGD in the checkpoint's threat model.

    The attack runs on the base model; with a defence configured, predictions
    are the defence's (a transfer attack) and each row carries API-Net's z_c
    for the true class and for the strongest wrong class (the paper's Fig. 4).
    """
    cfg, model = load_model(path, device=device)
    data = load_dataset(cfg.data.dataset, cfg.data.root, cfg.data.download)
    idx = [
        int((data.test_y == c).nonzero()[0])
        for c in range(data.num_classes)
        if (data.test_y == c).any()
    ]
    x = data.test_x[idx].to(device).float() / 255.0
    y = data.test_y[idx].to(device)
    a = cfg.attack
    threat = ThreatModel(a.norm, a.eps)
    torch.manual_seed(seed)
    x_adv = build_attack("pgd", threat, a.step, steps)(model, x, y)
    defended = build_defense(cfg, model, data.num_classes)
    classifier = defended or model
    pc, pa = predict(classifier, x), predict(classifier, x_adv)
    rows = [
        GalleryRow(int(y[i]), x[i].cpu(), x_adv[i].cpu(), int(pc[i]), int(pa[i]))
        for i in range(len(idx))
    ]
    if defended is not None:
        z = defended.purify(x_adv)
        with torch.no_grad():
            scores = class_scores(model, z)
        scores[torch.arange(len(y)), y] = float("-inf")
        wrong = scores.argmax(1)
        for i, row in enumerate(rows):
            row.z_true, row.z_wrong = z[i, y[i]].cpu(), z[i, wrong[i]].cpu()
            row.wrong = int(wrong[i])
    return threat, rows


def saved_gallery(
    path: Path, adv_file: Path, device: str = "cpu"
) -> tuple[ThreatModel | None, list[GalleryRow]]:
    """Per class, the first test example an attack column broke, from a `--save-adv` file.

    The threat model is the file's common one (None when its columns differ);
    predictions are the recorded classifier's (the defence, if one was evaluated).
    """
    from engine.eval.adv_check import open_adv  # the file is validated as --check-adv does

    o = open_adv(path, adv_file, device)
    s = o.saved
    picked: dict[int, int] = {}
    for i in (s.column > 0).nonzero().squeeze(1).tolist():
        picked.setdefault(int(s.label[i]), i)
    idx = [picked[c] for c in sorted(picked)]
    if not idx:
        return _common_threat(s.columns), []
    adv, x = s.adv[idx].to(o.device), o.x[idx].to(o.device)
    pc, pa = predict(o.classifier, x), predict(o.classifier, adv)
    rows = [
        GalleryRow(
            int(s.label[i]),
            x[j].cpu(),
            adv[j].cpu(),
            int(pc[j]),
            int(pa[j]),
            column=s.columns[int(s.column[i])]["name"],
            index=int(s.index[i]),
        )
        for j, i in enumerate(idx)
    ]
    return _common_threat(s.columns), rows


def _common_threat(columns: list[dict]) -> ThreatModel | None:
    """The one (norm, eps) every attack column of a saved file shares, if they do."""
    found = {(c["norm"], c["eps"]) for c in columns[1:]}
    return ThreatModel(*found.pop()) if len(found) == 1 else None
