"""A study's figures: robust and clean accuracy per arm with the t-interval over seeds, accuracy
against the grid value for a one-key grid (ATBLR's Fig. 4), and the paired differences.

From the study report (engine/study/report.py) alone. One colour per arm, the
same in every figure; artists carry their group's label as `gid`. Call inside
`style.styled()`.
"""

from __future__ import annotations

import math
from typing import Any

from engine.report import style


def _ok(v: Any) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


def _seeds_and_mean(
    ax: Any, y: float, seeds: list[float], s: dict[str, Any], colour: str, gid: str
) -> None:
    """One row: each seed's value as a faint dot, the mean with its t-interval as a bar."""
    ax.plot(seeds, [y] * len(seeds), "o", ms=2, color=colour, alpha=0.5, gid=f"{gid} seeds")
    err = [[s["mean"] - s["low"]], [s["high"] - s["mean"]]] if _ok(s["low"]) else None
    bars = ax.errorbar(s["mean"], y, xerr=err, fmt="D", ms=3.5, color=colour, capsize=2)
    bars.lines[0].set_gid(gid)  # the mean's marker (gid= would tag the caps too)


def arms_figure(doc: dict[str, Any], palette: style.Palette) -> Any:
    """Two panels (robust, clean): each group's mean over seeds, its 95% t-interval, its seeds."""
    groups = [g for g in doc["groups"] if g["evaluated"]]
    plt = style.pyplot()
    height = max(1.5, 0.3 * len(groups) + 0.8)
    fig, axes = plt.subplots(
        1, 2, figsize=(style.COLUMN_WIDTH, height), dpi=style.DPI, layout="constrained", sharey=True
    )
    members = doc.get("members") or []
    ys = list(range(len(groups)))[::-1]
    for ax, which, title in (
        (axes[0], "robust", "robust (worst case)"),
        (axes[1], "clean", "clean"),
    ):
        for y, g in zip(ys, groups, strict=True):
            s = g[which]
            colour = palette(g["arm"])
            seeds = [m[which] for m in members if m.get("label") == g["label"] and which in m]
            _seeds_and_mean(ax, y, seeds, s, colour, g["label"])
        ax.set_title(f"{title} (%)")
        ax.grid(axis="y", visible=False)
    axes[0].set_yticks(ys, [g["label"] for g in groups])
    axes[0].set_ylim(-0.6, len(groups) - 0.4)  # half a row of room above and below
    return fig


def grid_key(doc: dict[str, Any]) -> str | None:
    """The one grid key the study varies, when its groups vary exactly one (else None)."""
    keys = {k for g in doc["groups"] for k in (g.get("setting") or {})}
    if len(keys) != 1:
        return None
    key = next(iter(keys))
    values = {repr(g["setting"].get(key)) for g in doc["groups"] if key in (g.get("setting") or {})}
    return key if len(values) > 1 else None


def grid_figure(doc: dict[str, Any], palette: style.Palette, key: str) -> Any:
    """Robust (solid) and clean (dashed) accuracy against the grid value, per arm, 95% t-bands."""
    fig, ax = style.figure()
    arms = list(dict.fromkeys(g["arm"] for g in doc["groups"]))
    for arm in arms:
        rows = sorted(
            (
                g
                for g in doc["groups"]
                if g["arm"] == arm and key in g["setting"] and g["evaluated"]
            ),
            key=lambda g: g["setting"][key],
        )
        if not rows:
            continue
        x = [float(g["setting"][key]) for g in rows]
        colour = palette(arm)
        for which, ls in (("robust", "-"), ("clean", "--")):
            y = [g[which]["mean"] for g in rows]
            ax.plot(
                x,
                y,
                ls,
                marker="o",
                ms=2.5,
                color=colour,
                label=f"{arm} {which}",
                gid=f"{arm} {which}",
            )
            if all(_ok(g[which]["low"]) for g in rows):
                ax.fill_between(
                    x,
                    [g[which]["low"] for g in rows],
                    [g[which]["high"] for g in rows],
                    color=colour,
                    alpha=0.15,
                    lw=0,
                    gid=f"{arm} {which} band",
                )
    ax.set_xlabel(key.rsplit(".", 1)[-1])
    ax.set_ylabel("test accuracy (%)")
    if all(float(v) > 0 for g in doc["groups"] for k, v in g["setting"].items() if k == key):
        vals = sorted({float(g["setting"][key]) for g in doc["groups"] if key in g["setting"]})
        if vals[-1] / vals[0] >= 10:
            ax.set_xscale("log")
    ax.legend(loc="best")
    return fig


def paired_figure(doc: dict[str, Any], palette: style.Palette) -> Any:
    """Each pair's mean robust difference over seeds with its t-interval, and each seed's."""
    pairs = doc["pairs"]
    height = max(1.3, 0.3 * len(pairs) + 0.7)
    fig, ax = style.figure(height=height)
    ys = list(range(len(pairs)))[::-1]
    arm_of = {g["label"]: g["arm"] for g in doc["groups"]}
    for y, p in zip(ys, pairs, strict=True):
        colour = palette(arm_of.get(p["a"], p["a"]))
        seeds = [q["diff"] for q in p["per_seed"]]
        _seeds_and_mean(ax, y, seeds, p, colour, f"{p['a']} - {p['b']}")
    ax.axvline(0, color="#000000", lw=0.6)
    ax.set_yticks(ys, [f"{p['a']} - {p['b']}" for p in pairs])
    ax.set_ylim(-0.6, len(pairs) - 0.4)
    ax.set_xlabel("robust difference (points), 95% t over seeds")
    ax.grid(axis="y", visible=False)
    return fig
