"""Intervals and paired tests against hand-computed and published values."""

from __future__ import annotations

import json
import math

import pytest

from engine.eval import WORST
from engine.eval.stats import intervals, paired, wilson
from tests.conftest import wb


def test_wilson_matches_the_formula_by_hand():
    z = 1.959963984540054  # the 97.5% normal quantile
    for k, n in ((81, 263), (0, 10), (10, 10), (643, 1000), (1, 2)):
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        lo, hi = wilson(k, n)
        assert lo == pytest.approx(100 * (centre - half), abs=1e-9)
        assert hi == pytest.approx(100 * (centre + half), abs=1e-9)
        assert 0 <= lo <= 100 * p <= hi <= 100


def table(both: int, a_only: int, b_only: int, neither: int) -> tuple[list[bool], list[bool]]:
    a = [True] * (both + a_only) + [False] * (b_only + neither)
    b = [True] * both + [False] * a_only + [True] * b_only + [False] * neither
    return a, b


@pytest.mark.parametrize(
    ("cells", "low", "high"),
    [  # Newcombe (1998), Statistics in Medicine 17:2635, Table II, method 10
        ((36, 12, 2, 0), 0.0569, 0.3404),
        ((18, 12, 2, 18), 0.0562, 0.3290),
        ((53, 0, 0, 1), -0.0729, 0.0729),
        ((0, 30, 0, 0), 0.8395, 1.0),
    ],
)
def test_paired_interval_matches_newcombes_published_examples(cells, low, high):
    r = paired(*table(*cells))
    n = sum(cells)
    assert r.n == n and r.diff == pytest.approx(100 * (cells[1] - cells[2]) / n)
    assert r.low == pytest.approx(100 * low, abs=0.01) and r.high == pytest.approx(
        100 * high, abs=0.01
    )


def test_mcnemar_is_the_exact_binomial_of_the_discordant_pairs():
    r = paired(*table(36, 12, 2, 0))
    # two-sided: 2 * P(X <= 2), X ~ Binomial(14, 1/2)
    assert r.p == pytest.approx(2 * (1 + 14 + 91) / 2**14)
    assert (r.a_only, r.b_only) == (12, 2)
    same = paired(*table(40, 0, 0, 10))
    assert same.p == 1.0 and same.diff == 0.0
    assert paired(*table(10, 5, 5, 10)).p == 1.0  # balanced discordance: no evidence


def test_every_column_and_the_worst_case_get_an_interval():
    out = intervals({"clean": [True, True, True, False], "PGD": [True, False, True, False]})
    assert out["clean"] == list(wilson(3, 4)) and out["PGD"] == list(wilson(2, 4))
    assert out[WORST] == list(wilson(2, 4))


def test_diff_pairs_two_saved_evaluations_example_by_example(tmp_path):
    from tests.test_evaluation import evaluate_checkpoint_pair

    a_path, b_path = evaluate_checkpoint_pair(tmp_path)
    res = wb("diff", str(a_path), str(b_path), "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    a, b = (json.loads(p.read_text()) for p in (a_path, b_path))
    assert doc["n"] == 64 and [r["column"] for r in doc["rows"]] == [
        *a["per_example"],
        WORST,
    ]
    for row in doc["rows"][:-1]:
        x, y = a["per_example"][row["column"]], b["per_example"][row["column"]]
        assert row["a_only"] == sum(1 for i, j in zip(x, y, strict=True) if i and not j)
        assert row["diff"] == pytest.approx(
            a["accuracy"][row["column"]] - b["accuracy"][row["column"]]
        )
        assert row["low"] <= row["diff"] <= row["high"] and 0 <= row["p"] <= 1
    own = json.loads(wb("diff", str(a_path), str(a_path), "--json", cwd=tmp_path).stdout)
    assert all(r["diff"] == 0 and r["p"] == 1.0 for r in own["rows"])
    text = wb("diff", str(a_path), str(b_path), cwd=tmp_path)
    assert "McNemar" in text.stdout and WORST in text.stdout
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**a, "dataset": "cifar10"}))
    res = wb("diff", str(a_path), str(bad), cwd=tmp_path)
    assert res.returncode == 2 and "key 'dataset'" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
