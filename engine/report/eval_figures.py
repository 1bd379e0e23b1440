"""An evaluation's figures: every column's accuracy and the worst case with their 95% Wilson
intervals, and accuracy against eps (API-Net's Fig. 2) with interval bands.

Bars carry their column's name as `gid` and sweep lines their checkpoint's
label, so a test can compare the drawing with the saved document. Call inside
`style.styled()`.
"""

from __future__ import annotations

from typing import Any

from engine.records.evidence import WORST
from engine.report import style
from engine.spec.registry import known_norm_label


def columns_figure(doc: dict[str, Any], palette: style.Palette, name: str) -> Any:
    """Horizontal bars, one per column in the suite's order, the worst case last and dark."""
    table = doc["table"]
    intervals = doc.get("intervals") or {}
    names = list(table)
    if WORST in names:  # the headline last, at the bottom
        names = [n for n in names if n != WORST] + [WORST]
    height = max(1.4, 0.28 * len(names) + 0.6)
    fig, ax = style.figure(height=height)
    ys = list(range(len(names)))[::-1]
    colour = palette(name)
    for y, col in zip(ys, names, strict=True):
        acc = float(table[col])
        lo, hi = intervals.get(col, (acc, acc))
        ax.barh(y, acc, color="#000000" if col == WORST else colour, height=0.65, gid=col)
        ax.errorbar(
            acc, y, xerr=[[acc - lo], [hi - acc]], fmt="none", ecolor="#555555", lw=0.8, capsize=2
        )
        ax.text(min(hi + 1.5, 101), y, f"{acc:.1f}", va="center", fontsize=6)
    ax.set_yticks(ys, names)
    ax.set_xlim(0, 108)
    ax.set_xlabel(f"accuracy (%), n = {doc.get('n', '?')}, 95% Wilson")
    ax.grid(axis="y", visible=False)
    return fig


def sweep_figure(doc: dict[str, Any], palette: style.Palette) -> Any:
    """Accuracy under PGD-k against eps, one line per curve, each with its 95% band."""
    fig, ax = style.figure()
    eps = [float(e) for e in doc["eps"]]
    for curve in sweep_curves(doc):
        label = str(curve.get("label", "model"))
        colour = palette(label)
        acc = [float(a) for a in curve["accuracy"]]
        ax.plot(eps, acc, marker="o", ms=2.5, color=colour, label=label, gid=label)
        bounds = curve.get("intervals") or []
        if len(bounds) == len(eps):
            ax.fill_between(
                eps,
                [float(b[0]) for b in bounds],
                [float(b[1]) for b in bounds],
                color=colour,
                alpha=0.2,
                lw=0,
                gid=f"{label} band",
            )
    norm = known_norm_label(doc.get("norm"), str(doc.get("norm")))  # a file: hostile input
    ax.set_xlabel(f"eps ({norm})")
    ax.set_ylabel(f"accuracy under PGD-{doc.get('steps', '?')} (%)")
    ax.set_ylim(0, 100)
    if len(sweep_curves(doc)) > 1:
        ax.legend(loc="best")
    return fig


def sweep_curves(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """A sweep's curves: a combined file's list, or a per-checkpoint file as one curve."""
    if isinstance(doc.get("curves"), list):
        return doc["curves"]
    return [doc]
