"""A method, an attack and an arch registered from this file alone, used by name like built-ins.

Nothing in engine/ is edited for them: the preset schema, the suite schema,
the trainer, the evaluation and the evidence pick them up from the registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine.attacks import AttackColumn, ball
from engine.data import DatasetInfo
from engine.eval.evaluate import evaluate_model
from engine.eval.suites import read_suite, resolve_columns
from engine.records.events import read_events
from engine.spec.config import MethodSection, PresetConfig, Unit
from engine.spec.errors import ConfigError
from engine.spec.preset_files import load_preset
from engine.spec.registry import ATTACKS, METHODS, MODELS
from engine.train.methods.base import training_adversary
from tests.test_trainer import make

# ------------------------------------------------------------------ a method


class HalfwayConfig(MethodSection):
    name: Literal["halfway"]
    weight: Unit = 0.5  # share of the adversarial CE


@METHODS.register("halfway")
class Halfway:
    """(1 - w) * CE(x) + w * CE(PGD(x)): a toy method, one class and one config."""

    config = HalfwayConfig

    def __init__(self, cfg: PresetConfig) -> None:
        self.w = cfg.method.weight
        self.adversary = training_adversary(cfg.attack)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        a = self.adversary(model, x, y)
        ce_clean = F.cross_entropy(model(x), y)
        ce_adv = F.cross_entropy(model(a), y)
        loss = (1 - self.w) * ce_clean + self.w * ce_adv
        return loss, {"ce_halfway": ce_adv.detach()}


# ------------------------------------------------------------------ an arch


@MODELS.register("tiny_mlp")
def tiny_mlp(info: DatasetInfo) -> tuple[nn.Module, int]:
    c, h, w = info.shape
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, 32), nn.ReLU()), 32


# ------------------------------------------------------------------ an attack


@dataclass
class SignNoise:
    """x + eps * a random sign per pixel: a deliberately weak, gradient-free attack."""

    eps: float

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        lower, upper = ball(x, self.eps)
        noise = torch.randint(0, 2, x.shape, dtype=x.dtype) * 2 - 1
        return torch.clamp(x + self.eps * noise, min=lower, max=upper)


@ATTACKS.register("sign_noise")
class SignNoiseColumn(AttackColumn):
    kind: Literal["sign_noise"]
    eps: Unit | None = None

    def resolve(self, cfg: PresetConfig) -> dict[str, Any]:
        return {"eps": cfg.attack.eps if self.eps is None else self.eps}

    @classmethod
    def build(cls, params: dict[str, Any]) -> SignNoise:
        return SignNoise(params["eps"])


# ------------------------------------------------------------------ the proof


def test_a_method_and_an_arch_from_a_test_file_train_like_built_ins(tiny_preset, tmp_path):
    sets = ["method.name=halfway", "method.weight=0.25", "model.arch=tiny_mlp", "train.epochs=1"]
    cfg = load_preset(tiny_preset, sets)
    assert cfg.method.weight == 0.25 and cfg.to_dict()["method"] == {
        "name": "halfway",
        "weight": 0.25,
    }
    t = make(cfg, tmp_path / "r")
    assert t.run().status == "finished"
    events = read_events(tmp_path / "r" / "events.jsonl")
    steps = [e for e in events if e["type"] == "step"]
    assert steps and all(set(e["parts"]) == {"ce_halfway"} for e in steps)
    assert sum(p.numel() for p in t.model.parameters()) == 28 * 28 * 32 + 32 + 32 * 10 + 10


def test_a_registered_methods_keys_are_checked_and_listed(tiny_preset):
    with pytest.raises(ConfigError, match=r"method\.wieght.*allowed keys: name, weight"):
        load_preset(tiny_preset, ["method.name=halfway", "method.wieght=0.3"])
    with pytest.raises(ConfigError, match=r"method\.weight.*less than or equal to 1"):
        load_preset(tiny_preset, ["method.name=halfway", "method.weight=3"])
    with pytest.raises(ConfigError, match=r"method\.name.*halfway"):  # listed among the allowed
        load_preset(tiny_preset, ["method.name=nonesuch"])


def test_an_attack_from_a_test_file_is_a_suite_column(
    tiny_preset, tmp_path, trained_lenet, test_batch
):
    suite = tmp_path / "noise.toml"
    suite.write_text(
        'name = "noise"\n'
        '[[attack]]\nname = "noise"\nkind = "sign_noise"\n'
        '[[attack]]\nname = "PGD-{steps}"\nkind = "pgd"\nsteps = 10\n'
    )
    cfg = load_preset(tiny_preset, ["attack.eps=0.1", "attack.step=0.025"])
    spec = read_suite(suite)
    cols = resolve_columns(spec, cfg, False)
    assert [c.name for c in cols] == ["noise", "PGD-10"] and cols[0].params == {"eps": 0.1}
    x, y = test_batch[0][:200], test_batch[1][:200]
    torch.manual_seed(0)
    ev = evaluate_model(spec, cols, trained_lenet, x, y, 10)
    acc = ev.result.table()
    assert acc["PGD-10"] < acc["noise"] <= acc["clean"]  # random signs are a weak attack
    assert ev.plan.params["noise"] == {"kind": "sign_noise", "eps": 0.1, "source": "self"}
    assert ev.plan.roles["noise"] == "white"
    with pytest.raises(ConfigError, match=r"attack\.0\.eps"):
        bad = tmp_path / "bad.toml"
        bad.write_text('name = "b"\n[[attack]]\nname = "n"\nkind = "sign_noise"\neps = 3\n')
        read_suite(bad)
