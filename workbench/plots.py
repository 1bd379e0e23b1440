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
