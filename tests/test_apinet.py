"""API-Net as a method and a defence: attack strategies, bookkeeping, fine-tuning."""

from __future__ import annotations

import json

import pytest
import torch

from engine import checkpoint_io as ckpt
from engine.defenses.apinet import AntiPerturbation, APINet
from engine.defenses.strategies import every_strategy
from engine.eval import WORST
from engine.eval.evaluate import evaluate_checkpoint
from engine.eval.plan import plan_suite
from engine.eval.run import run_suite
from engine.eval.suites import load_suite, resolve_columns
from engine.spec.errors import ConfigError
from engine.spec.preset_files import load_preset
from tests.test_trainer import make


def defended_entries(cfg, base, net):
    """The quick suite's transfer, BPDA and adaptive entries against `net`."""
    cols = resolve_columns(load_suite("quick"), cfg, False)
    strategies = every_strategy(cfg, base, net, 10)
    return plan_suite(cols, base, 10, defended=net, strategies=strategies).entries


@pytest.fixture
def defended(trained_lenet, tiny_preset):
    cfg = load_preset(
        tiny_preset,
        [
            "defense.name=apinet",
            "defense.steps=3",
            "attack.eps=0.1",
            "attack.step=0.02",
            "eval.steps=3",
        ],
    )
    net = APINet(trained_lenet, 10, AntiPerturbation(cfg.defense.eps_ap, 3, 0.01))
    return cfg, net


def test_every_strategy_stays_in_the_eps_ball_and_the_box(trained_lenet, test_batch, defended):
    cfg, net = defended
    x, y = test_batch[0][:12], test_batch[1][:12]
    entries = defended_entries(cfg, trained_lenet, net)
    assert set(entries) == {"transfer PGD-3", "BPDA PGD-3", "adaptive PGD-3"}
    for name, entry in entries.items():
        x_adv = entry.attack(net, x, y)
        assert (x_adv - x).abs().max() <= 0.1 + 1e-6, name
        assert x_adv.min() >= 0 and x_adv.max() <= 1, name


def test_worst_case_is_the_per_example_and_and_never_above_a_column(
    trained_lenet, test_batch, defended
):
    cfg, net = defended
    x, y = test_batch[0][:40], test_batch[1][:40]
    res = run_suite(net, x, y, defended_entries(cfg, trained_lenet, net), 40)
    table = res.table()
    cols = [k for k in table if k != WORST]
    assert len(cols) == 4 and all(table[WORST] <= table[c] for c in cols)
    anded = torch.stack([res.correct[c] for c in cols]).all(0)
    assert torch.equal(anded, res.worst_case)


def test_apinet_needs_its_defence_configured(tiny_preset):
    with pytest.raises(ConfigError, match=r"defense\.name"):
        load_preset(tiny_preset, ["method.name=apinet"])


def test_short_fine_tune_starts_from_its_init_and_names_the_defence(tiny_preset, tmp_path):
    base = make(load_preset(tiny_preset, ["train.epochs=1"]), tmp_path / "madry")
    assert base.run().status == "finished"
    init = tmp_path / "madry" / "best.safetensors"
    sets = [
        "method.name=apinet",
        f"method.init_from={init}",
        "defense.name=apinet",
        "defense.steps=2",
        "train.epochs=1",
        "eval.samples=32",
    ]
    t = make(load_preset(tiny_preset, sets), tmp_path / "api")
    # selection under the defence: the per-example worst of transfer and BPDA, on validation
    assert t.evaluation.plan.columns() == ["transfer PGD-2", "BPDA PGD-2"]
    assert t.evaluation.split == "val"
    start, _ = ckpt.load(init)
    for k, v in t.model.state_dict().items():
        assert torch.equal(v, start[f"model.{k}"]), k
    assert t.run().status == "finished"
    _, meta = ckpt.read_header(tmp_path / "api" / "best.safetensors")
    assert meta["method"] == "apinet"
    d = json.loads(meta["defense"])
    assert d["name"] == "apinet" and d["steps"] == 2 and d["eps_ap"] == pytest.approx(12 / 255)
    doc = evaluate_checkpoint(
        tmp_path / "api" / "best.safetensors", "quick", samples=16, device="cpu"
    )
    assert doc["defense"]["name"] == "apinet"
    assert {"transfer PGD-2", "BPDA PGD-2", "adaptive PGD-2", WORST} <= set(doc["accuracy"])
    from engine.eval.gallery import gallery

    _, rows = gallery(tmp_path / "api" / "best.safetensors", steps=2)
    assert len(rows) == 10
    for r in rows:  # the paper's Fig. 4 columns: z_c for the true and a wrong class
        assert r.z_true is not None and r.wrong != r.label
        for z in (r.z_true, r.z_wrong):
            assert (z - r.adv).abs().max() <= d["eps_ap"] + 1e-6
            assert 0 <= z.min() <= z.max() <= 1


def test_missing_init_checkpoint_is_bad_input(tiny_preset, tmp_path):
    sets = ["method.name=apinet", "method.init_from=nope.safetensors", "defense.name=apinet"]
    with pytest.raises(ckpt.CheckpointError, match=r"method\.init_from.*not found"):
        make(load_preset(tiny_preset, sets), tmp_path / "x")
