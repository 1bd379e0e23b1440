"""The model card beside every evaluation: RobustBench's fields, the evaluation's own numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.eval import WORST
from engine.eval.card import card_markdown, card_of, eps_text, forward_passes, model_card
from engine.eval.evaluate import evaluate_checkpoint
from engine.records.evidence import list_evaluations
from engine.spec.errors import WorkbenchError
from tests.test_evaluation import lenet_config, save_checkpoint, small_suite, wb

SUITE = 'name = "cardy"\n[[attack]]\nname = "PGD-3"\nkind = "pgd"\nsteps = 3\n'


@pytest.fixture(scope="module")
def carded(trained_lenet, tmp_path_factory):
    """A LeNet trained at eps "8/255", evaluated once: the evaluation and its card."""
    root = tmp_path_factory.mktemp("card")
    cfg = lenet_config(eps="8/255", step="2/255")
    ckpt_path = save_checkpoint(root / "run" / "best.safetensors", trained_lenet, cfg)
    doc = evaluate_checkpoint(ckpt_path, str(small_suite(root, SUITE)), samples=40, device="cpu")
    return ckpt_path, doc, json.loads(Path(doc["card"]).read_text())


def test_the_card_carries_the_evaluations_numbers_and_intervals(carded):
    ckpt_path, doc, card = carded
    saved = json.loads(Path(doc["saved"]).read_text())
    assert card["clean_acc"] == saved["table"]["clean"]
    assert card["robust_acc"] == saved["table"][WORST]
    assert card["clean_acc_ci95"] == saved["intervals"]["clean"]
    assert card["robust_acc_ci95"] == saved["intervals"][WORST]
    assert card["n_examples"] == saved["n"] == 40
    assert (card["dataset"], card["threat_model"], card["architecture"]) == (
        "mnist-5k",
        "Linf",
        "lenet",
    )
    assert card["eps"] == "8/255" and card["eps_value"] == 8 / 255  # as the preset wrote it
    assert card["number_forward_passes"] == 1 and card["additional_data"] is False
    assert card["external_model"] is False and card["autoattack_acc"] is None
    assert card["code_version"]["engine"] == saved["code"]["engine"]
    md = Path(doc["card"].removesuffix(".json") + ".md").read_text()
    assert "| threat model | Linf, eps = 8/255 |" in md
    assert f"{saved['table']['clean']:.2f}%" in md and "forward passes per prediction | 1" in md
    # the card does not list as an evaluation of the checkpoint
    assert [Path(r["file"]).name for r in list_evaluations(ckpt_path)] == [Path(doc["saved"]).name]


def test_an_evaluation_saved_before_cards_still_gets_the_same_card(carded, tmp_path):
    """Without the keys this change added (arch, num_classes) and the older missing intervals."""
    _, doc, card = carded
    old = json.loads(Path(doc["saved"]).read_text())
    for key in ("arch", "num_classes", "intervals", "interval_method", "norm"):
        old.pop(key)
    path = tmp_path / "eval" / "cardy-old.json"
    path.parent.mkdir()
    path.write_text(json.dumps(old))
    rebuilt = card_of(path)
    for key in ("clean_acc", "robust_acc", "n_examples", "eps", "threat_model", "architecture"):
        assert rebuilt[key] == card[key], key
    for key in ("clean_acc_ci95", "robust_acc_ci95"):  # recomputed from the per-example outcomes
        assert rebuilt[key] == pytest.approx(card[key], abs=1e-9)
    assert card_of(Path(doc["saved"])) == card  # a saved card is what `card` rebuilds


def test_card_command_prints_the_latest_card_or_one_line(carded, trained_lenet, tmp_path):
    ckpt_path, _, card = carded
    res = wb("card", str(ckpt_path), "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == card
    bare = save_checkpoint(tmp_path / "lone" / "best.safetensors", trained_lenet, lenet_config())
    for target in (bare, tmp_path / "nothing.json"):
        res = wb("card", str(target), cwd=tmp_path)
        assert res.returncode == 2 and res.stdout == "", res.stdout
        assert str(target) in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "lone" / "eval").exists()  # nothing written


def test_a_hostile_evaluation_file_is_one_line(tmp_path):
    cases = {"[1, 2]": "key 'kind'", '{"kind": "sweep"}': "key 'kind'", "{": "not an evaluation"}
    for text, why in cases.items():
        path = tmp_path / "eval.json"
        path.write_text(text)
        with pytest.raises(WorkbenchError, match=why):
            card_of(path)
    # wrong types inside a suite document read as missing, never raise
    odd = {"kind": "suite", "table": {"clean": "high"}, "n": "many", "per_example": 3}
    card = model_card(odd, tmp_path / "odd.json")
    assert card["clean_acc"] is None and card["n_examples"] is None
    assert "clean accuracy | not run" in card_markdown(card)


def test_eps_text_forward_passes_and_autoattack():
    assert [eps_text(e) for e in (8 / 255, 6 / 255, 0.3, 0.5, 2.0, 1 / 3)] == [
        "8/255",
        "6/255",
        "0.3",
        "0.5",
        "2",
        "1/3",
    ]
    assert forward_passes(None, 10) == 1
    assert forward_passes({"name": "apinet", "steps": 8}, 10) == 90  # 10 searches of 8 + scoring
    aa = {"kind": "autoattack", "version": "standard", "components": ["apgd-ce", "square"]}
    doc = {
        "kind": "suite",
        "n": 10,
        "table": {WORST: 40.0, "clean": 90.0, "AA: APGD-CE": 50.0, "AA: +Square": 45.0},
        "columns": {
            "AA: APGD-CE": {**aa, "component": "apgd-ce"},
            "AA: +Square": {**aa, "component": "square"},
        },
        "source_model": {"file": "theirs.pt"},
    }
    card = model_card(doc, Path("x.json"))
    assert card["autoattack_acc"] == 45.0 and card["autoattack_column"] == "AA: +Square"
    assert card["external_model"] is True and card["additional_data"] is None
    survivors = {**aa, "version": "custom", "from_survivors": True}  # the paper suite's APGD
    doc["columns"] = {
        "AA: APGD-CE": {**survivors, "component": "apgd-ce"},
        "AA: +Square": {**survivors, "component": "square"},
    }
    assert model_card(doc, Path("x.json"))["autoattack_acc"] is None
