"""How uncertain an accuracy is, and whether two evaluations of the same examples differ.

* An accuracy of k correct out of n gets its 95% Wilson score interval
  (scipy's `binomtest(...).proportion_ci(method="wilson")`).
* Two evaluations of the same n examples (paired outcomes) give a difference
  in points with Newcombe's (1998) hybrid score interval for paired
  proportions, his method 10, built from the two Wilson intervals and the
  correlation of the outcomes; and an exact McNemar test, a two-sided
  binomial test of the b discordant pairs one way against the c the other.

Accuracies and their bounds are in percent (points), as every table shows them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from scipy.stats import binomtest

from engine.eval import WORST

LEVEL = 0.95
METHOD = "Wilson score 95%; paired: Newcombe (1998) method 10, exact McNemar"


def wilson(correct: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """The Wilson score interval of correct/n, in percent ((0, 100) when n is 0)."""
    if n == 0:
        return 0.0, 100.0
    ci = binomtest(int(correct), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return 100.0 * float(ci.low), 100.0 * float(ci.high)


@dataclass(frozen=True)
class Paired:
    """A minus B on the same n examples: difference, its interval, McNemar's p (points)."""

    n: int
    a: float  # accuracy of A, %
    b: float  # accuracy of B, %
    diff: float  # a - b, points
    low: float
    high: float
    p: float  # exact McNemar, two-sided
    a_only: int  # examples A gets right and B wrong
    b_only: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def paired(a: Sequence[bool], b: Sequence[bool], level: float = LEVEL) -> Paired:
    """Compare two per-example outcome lists of the same examples, in the same order."""
    if len(a) != len(b):
        raise ValueError(f"paired outcomes of different lengths ({len(a)} and {len(b)})")
    n = len(a)
    both = sum(1 for x, y in zip(a, b, strict=True) if x and y)
    a_only = sum(1 for x, y in zip(a, b, strict=True) if x and not y)
    b_only = sum(1 for x, y in zip(a, b, strict=True) if y and not x)
    neither = n - both - a_only - b_only
    if n == 0:
        return Paired(0, math.nan, math.nan, math.nan, -100.0, 100.0, 1.0, 0, 0)
    p1, p2 = (both + a_only) / n, (both + b_only) / n
    l1, u1 = (v / 100 for v in wilson(both + a_only, n, level))
    l2, u2 = (v / 100 for v in wilson(both + b_only, n, level))
    margins = (both + a_only) * (b_only + neither) * (both + b_only) * (a_only + neither)
    if margins == 0:
        phi = 0.0
    else:
        cross = both * neither - a_only * b_only
        cross = max(cross - n / 2, 0.0) if cross > 0 else cross  # Newcombe's correction
        phi = cross / math.sqrt(margins)
    d = p1 - p2
    below = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    above = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    discordant = a_only + b_only
    p = float(binomtest(a_only, discordant, 0.5).pvalue) if discordant else 1.0
    return Paired(
        n,
        100 * p1,
        100 * p2,
        100 * d,
        100 * max(-1.0, d - below),
        100 * min(1.0, d + above),
        min(1.0, p),
        a_only,
        b_only,
    )


def intervals(correct: dict[str, Sequence[bool]]) -> dict[str, list[float]]:
    """Every column's Wilson interval, and the worst case's (per-example AND of all columns)."""
    out = {k: list(wilson(sum(map(bool, v)), len(v))) for k, v in correct.items()}
    if len(correct) > 1:
        worst = [all(col) for col in zip(*correct.values(), strict=True)]
        out[WORST] = list(wilson(sum(worst), len(worst)))
    return out


@dataclass(frozen=True)
class OverSeeds:
    """The mean of k per-seed values (points) with its Student-t interval, and a t-test p."""

    k: int
    mean: float
    sd: float  # sample standard deviation (k - 1 in the denominator); nan for k = 1
    low: float  # nan when k < 2: one seed says nothing about the spread
    high: float
    p: float  # two-sided one-sample t-test of mean = 0 (for differences); nan for k < 2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def over_seeds(values: Sequence[float], level: float = LEVEL) -> OverSeeds:
    """Mean and t-interval over seeds: seeds are the replicates a method comparison needs."""
    from scipy.stats import t as student_t

    k = len(values)
    if k == 0:
        return OverSeeds(0, math.nan, math.nan, math.nan, math.nan, math.nan)
    mean = sum(values) / k
    if k < 2:
        return OverSeeds(1, mean, math.nan, math.nan, math.nan, math.nan)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (k - 1))
    half = float(student_t.ppf(0.5 + level / 2, k - 1)) * sd / math.sqrt(k)
    if sd == 0:
        p = 1.0 if mean == 0 else 0.0
    else:
        p = float(2 * student_t.sf(abs(mean) / (sd / math.sqrt(k)), k - 1))
    return OverSeeds(k, mean, sd, mean - half, mean + half, p)
