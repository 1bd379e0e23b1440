"""Tables for papers in the seeds' shape: rows are methods (arms), columns clean, FGSM, PGD-40,
PGD-100, CW-40 and the worst case, each cell a mean with its 95% interval; as booktabs LaTeX
and as Markdown, from the same rows (torch-free, no matplotlib).

A single evaluation's cell is its accuracy with the Wilson interval it saved;
a study's is the mean over seeds with the Student-t interval, the very numbers
its report gives for clean and the worst case.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from engine.records.evidence import WORST

PAPER_COLUMNS = ("FGSM", "PGD-40", "PGD-100", "CW-40")  # the seeds' white-box columns
HEADERS = {"clean": "Clean", WORST: "Robust (worst case)"}


@dataclass(frozen=True)
class Cell:
    mean: float
    low: float | None = None  # None: no interval (one seed)
    high: float | None = None

    def text(self, latex: bool = False) -> str:
        if self.low is None or self.high is None:
            return f"{self.mean:.1f}"
        bounds = f"[{self.low:.1f}, {self.high:.1f}]"
        return (
            f"{self.mean:.1f} {{\\scriptsize {bounds}}}" if latex else f"{self.mean:.1f} {bounds}"
        )


@dataclass
class Row:
    label: str
    cells: dict[str, Cell] = field(default_factory=dict)
    note: str = ""  # n, seeds


@dataclass
class Table:
    title: str  # the caption's first sentence
    rows: list[Row]
    interval: str  # what the brackets are: "95% Wilson" or "95% Student-t over seeds"
    note: str = ""  # the rest of the caption: attack settings, n

    def columns(self) -> list[str]:
        """clean, the seeds' columns present, (else every other column present), worst case."""
        present: dict[str, None] = {}
        for r in self.rows:
            present.update(dict.fromkeys(r.cells))
        paper = [c for c in PAPER_COLUMNS if c in present]
        others = [c for c in present if c not in ("clean", WORST)]
        middle = paper or others
        return [c for c in ("clean", *middle, WORST) if c in present]


def cell(value: Any, bounds: Any = None) -> Cell | None:
    """A cell from a number and an optional [low, high]; None when the value is no number."""
    if not _num(value):
        return None
    if isinstance(bounds, list | tuple) and len(bounds) == 2 and all(_num(b) for b in bounds):
        return Cell(float(value), float(bounds[0]), float(bounds[1]))
    return Cell(float(value))


def seeds_cell(s: dict[str, Any]) -> Cell | None:
    """A cell from `stats.over_seeds(...).to_dict()`: mean and t-interval (none for 1 seed)."""
    if not _num(s.get("mean")):
        return None
    if _num(s.get("low")) and _num(s.get("high")):
        return Cell(float(s["mean"]), float(s["low"]), float(s["high"]))
    return Cell(float(s["mean"]))


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _header(col: str) -> str:
    return HEADERS.get(col, col)


LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def tex(text: str) -> str:
    return "".join(LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def latex(table: Table, label: str) -> str:
    """A booktabs `table*` (seven columns with intervals need both columns of a paper)."""
    cols = table.columns()
    lines = [
        "% written by `workbench report --latex`; needs \\usepackage{booktabs}",
        "\\begin{table*}[t]",
        "\\centering",
        f"\\caption{{{tex(table.title)} Accuracy (\\%) with {tex(table.interval)} intervals"
        + (f"; {tex(table.note)}" if table.note else "")
        + ".}",
        f"\\label{{tab:{label}}}",
        "\\begin{tabular}{l" + "r" * len(cols) + "}",
        "\\toprule",
        " & ".join(["Method", *(tex(_header(c)) for c in cols)]) + " \\\\",
        "\\midrule",
    ]
    for r in table.rows:
        cells = [r.cells[c].text(latex=True) if c in r.cells else "--" for c in cols]
        lines.append(" & ".join([tex(r.label), *cells]) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table*}", ""]
    return "\n".join(lines)


def markdown(table: Table) -> str:
    """The same rows as a Markdown (GitHub) table with its caption under it."""
    cols = table.columns()
    head = ["method", *(_header(c) for c in cols)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table.rows:
        cells = [r.cells[c].text() if c in r.cells else "--" for c in cols]
        lines.append("| " + " | ".join([r.label.replace("|", "\\|"), *cells]) + " |")
    caption = f"{table.title} Accuracy (%) with {table.interval} intervals"
    lines += ["", caption + (f"; {table.note}" if table.note else "") + ".", ""]
    return "\n".join(lines)
