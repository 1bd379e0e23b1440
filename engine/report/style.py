"""How every report figure looks: a two-column paper's sizes and a colour-blind-safe palette.

matplotlib is imported here, lazily and with the headless Agg backend chosen
before pyplot exists, so a report renders over SSH and in a job, and the CLI
starts without it.
"""

from __future__ import annotations

import re
from typing import Any

# Okabe & Ito (2008), "Color Universal Design": distinguishable under the common colour
# blindnesses; black last. One colour per arm, in the order arms first appear.
OKABE_ITO = (
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#009E73",  # bluish green
    "#E69F00",  # orange
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#F0E442",  # yellow
    "#000000",
)
COLUMN_WIDTH = 3.3  # inches: one column of a two-column paper (IEEE, CVPR, ECCV, NeurIPS-ish)
HEIGHT = 2.2
DPI = 300  # a PNG at the column's width: 990 x 660 pixels
FORMATS = ("png", "svg", "pdf")

RC = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "lines.linewidth": 1.2,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "legend.frameon": False,
    "savefig.bbox": "standard",  # keep the stated size: a tight box would change the pixels
    "svg.fonttype": "none",  # text stays text in SVG
    "pdf.fonttype": 42,  # TrueType in PDF: journals refuse Type 3 fonts
}


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (selected before pyplot is first imported)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def styled() -> Any:
    """The report's rc settings as a context: a figure is built and saved inside it (text
    sizes are fixed when an artist is made)."""
    return pyplot().rc_context(RC)


def figure(width: float = COLUMN_WIDTH, height: float = HEIGHT) -> tuple[Any, Any]:
    """A new figure and axes at a column's width with a constrained layout (call it `styled`)."""
    return pyplot().subplots(figsize=(width, height), dpi=DPI, layout="constrained")


class Palette:
    """One colour per name (an arm, a series), the same in every figure of one report."""

    def __init__(self) -> None:
        self._given: dict[str, str] = {}

    def __call__(self, name: str) -> str:
        if name not in self._given:
            self._given[name] = OKABE_ITO[len(self._given) % len(OKABE_ITO)]
        return self._given[name]


def render(fig: Any, fmt: str) -> bytes:
    """The figure as a file's bytes (png, svg or pdf), at its own size and DPI; closes it."""
    import io

    plt = pyplot()
    buf = io.BytesIO()
    with plt.rc_context(RC):
        meta = {"Software": None} if fmt == "png" else {"Creator": None}
        if fmt == "svg":
            meta = {"Date": None}  # reproducible SVG
        fig.savefig(buf, format=fmt, dpi=DPI, metadata=meta)
    return buf.getvalue()


def close(fig: Any) -> None:
    pyplot().close(fig)


def slug(text: str) -> str:
    """A file-name-safe lower-case name: "L_lkd clean vs adversarial" -> "l_lkd-clean-vs-..."."""
    out = re.sub(r"[^A-Za-z0-9_]+", "-", text).strip("-").lower()
    return out or "figure"
