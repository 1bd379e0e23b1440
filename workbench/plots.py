"""Terminal plots for the command line (plotext), from documents the engine returns."""

from __future__ import annotations

from typing import Any

import plotext as plt


def sweep_plot(doc: dict[str, Any], width: int = 78, height: int = 20, colour: bool = True) -> str:
    """The curves as a terminal plot (plotext), for the CLI; plain text when `colour` is off."""
    plt.clear_figure()
    plt.plotsize(width, height)
    plt.theme("clear")
    for c in doc["curves"]:
        plt.plot(doc["eps"], c["accuracy"], label=c["label"], marker="braille")
    plt.xlabel("eps")
    plt.ylabel("accuracy %")
    plt.ylim(0, 100)
    plt.title(f"accuracy under PGD-{doc['steps']} ({doc['n']} examples)")
    text = plt.build()
    return text if colour else plt.uncolorize(text)


def _half_widths(o: dict[str, Any]) -> float:
    return 0.0 if o["k"] < 2 else (o["high"] - o["low"]) / 2


def study_arms_plot(doc: dict[str, Any], width: int = 78, height: int = 18) -> str | None:
    """Robust (worst-case) test accuracy per arm and setting, mean over seeds with 95% bars."""
    groups = [g for g in doc["groups"] if g["robust"]["k"] > 0]
    if not groups:
        return None
    plt.clear_figure()
    plt.plotsize(width, height)
    plt.theme("clear")
    xs = list(range(1, len(groups) + 1))
    ys = [g["robust"]["mean"] for g in groups]
    plt.error(xs, ys, yerr=[_half_widths(g["robust"]) for g in groups], color="red")
    plt.scatter(xs, ys, marker="dot", color="red")
    plt.xticks(xs, [g["label"] for g in groups])
    plt.xlim(0.5, len(groups) + 0.5)
    lo = min(g["robust"]["low"] if g["robust"]["k"] > 1 else g["robust"]["mean"] for g in groups)
    hi = max(g["robust"]["high"] if g["robust"]["k"] > 1 else g["robust"]["mean"] for g in groups)
    pad = max(1.0, (hi - lo) * 0.15)
    plt.ylim(max(0.0, lo - pad), min(100.0, hi + pad))
    plt.ylabel("robust %")
    plt.title(f"robust (worst case) test accuracy, mean over seeds, 95% t ({doc['suite']})")
    return plt.uncolorize(plt.build())


def study_grid_plot(doc: dict[str, Any], width: int = 78, height: int = 18) -> list[str]:
    """For each arm with a one-key numeric grid: clean and robust accuracy against the value."""
    out = []
    for arm in dict.fromkeys(g["arm"] for g in doc["groups"]):
        gs = [g for g in doc["groups"] if g["arm"] == arm and g["robust"]["k"] > 0]
        keys = {tuple(g["setting"]) for g in gs}
        if len(gs) < 2 or len(keys) != 1 or len(next(iter(keys))) != 1:
            continue
        key = next(iter(keys))[0]
        if not all(isinstance(g["setting"][key], int | float) for g in gs):
            continue
        gs.sort(key=lambda g: g["setting"][key])
        xs = [float(g["setting"][key]) for g in gs]
        plt.clear_figure()
        plt.plotsize(width, height)
        plt.theme("clear")
        for what, colour in (("clean", "blue"), ("robust", "red")):
            ys = [g[what]["mean"] for g in gs]
            plt.plot(xs, ys, label=what, color=colour, marker="braille")
            plt.error(xs, ys, yerr=[_half_widths(g[what]) for g in gs], color=colour)
        plt.xlabel(key)
        plt.ylabel("accuracy %")
        plt.title(f"{arm}: test accuracy against {key} (mean over seeds, 95% t)")
        out.append(plt.uncolorize(plt.build()))
    return out
