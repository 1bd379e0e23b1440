"""fast_at (FGSM from a random start), the cyclic rate, and the catastrophic-overfitting guard."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from rich.console import Console
from torch import nn

from engine import checkpoint_io as ckpt
from engine.attacks import ThreatModel
from engine.records.event_schema import problem
from engine.records.events import read_events
from engine.records.run_state import RunState
from engine.spec.errors import ConfigError
from engine.spec.preset_files import load_preset
from engine.train.guard import Guard, GuardState, judge
from engine.train.methods.base import build_method
from engine.train.schedule import lr_at
from tests.conftest import TINY_PRESET, wb, write_preset
from tests.test_trainer import make
from workbench.headless import RunView, final_table


def linear_model() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))


def batch(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    return torch.rand(n, 1, 28, 28, generator=g), torch.arange(n) % 10


def test_fast_at_is_one_fgsm_step_from_a_uniform_start_in_the_ball(tiny_preset):
    eps, ratio = 0.1, 1.25
    cfg = load_preset(tiny_preset, ["method.name=fast_at", f"attack.eps={eps}"])
    method = build_method(cfg)
    model, (x, y) = linear_model(), batch()
    calls = []
    model.register_forward_hook(lambda *a: calls.append(1))
    torch.manual_seed(7)
    x_adv = method.adversary(model, x, y)
    assert len(calls) == 1  # one forward: one gradient, no second step, no scoring pass

    # by hand: the uniform start moved into the ball and [0, 1], one signed step of 1.25 eps
    torch.manual_seed(7)
    lo, hi = (x - eps).clamp(min=0), (x + eps).clamp(max=1)
    x0 = torch.min(torch.max(x + torch.empty_like(x).uniform_(-eps, eps), lo), hi)
    w, b = model[1].weight.detach(), model[1].bias.detach()
    p = F.softmax(x0.flatten(1) @ w.T + b, 1)
    grad = ((p - F.one_hot(y, 10)) @ w).view_as(x)  # d CE / d x of a linear model
    expected = torch.min(torch.max(x0 + ratio * eps * grad.sign(), lo), hi)
    assert torch.allclose(x_adv, expected, atol=1e-6)
    assert (x_adv - x).abs().max() <= eps + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert not torch.allclose(x_adv, x0)  # a step was taken from the start


def test_fast_at_under_l2_stays_in_the_ball_and_the_box(tiny_preset):
    eps = 1.5
    cfg = load_preset(tiny_preset, ["method.name=fast_at", "attack.norm=l2", f"attack.eps={eps}"])
    model, (x, y) = linear_model(), batch()
    x_adv = build_method(cfg).adversary(model, x, y)
    sizes = ThreatModel("l2", eps).size(x_adv - x)
    assert (sizes <= eps * (1 + 1e-5)).all() and (sizes > 0.5 * eps).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1


def test_cyclic_rate_is_one_triangle_per_run(tiny_preset):
    cfg = load_preset(tiny_preset, ["schedule.kind=cyclic", "train.epochs=10", "schedule.peak=2/5"])
    base = cfg.optim.lr
    assert lr_at(cfg, 0.0) == 0.0 and lr_at(cfg, 10.0) == 0.0
    assert lr_at(cfg, 4.0) == pytest.approx(base)
    assert lr_at(cfg, 2.0) == pytest.approx(base / 2) and lr_at(cfg, 7.0) == pytest.approx(base / 2)


def test_the_guard_fires_only_on_a_drop_of_more_than_its_threshold():
    state, verdicts = GuardState(), []
    for step, acc in enumerate([10.0, 30.0, 50.0, 45.0, 30.0, 29.9, 60.0], 1):
        verdicts.append(judge(state, acc, step, drop=20.0))
    improved = [i for i, (imp, _) in enumerate(verdicts) if imp]
    fired = [i for i, (_, f) in enumerate(verdicts) if f]
    assert improved == [0, 1, 2, 6] and fired == [5]  # 30.0 is exactly 20 below: not fired
    assert (state.best_acc, state.best_step) == (60.0, 7)


def scripted_guard(monkeypatch, accs: list[int]) -> list[dict[str, torch.Tensor]]:
    """Guard.measure answers `accs` (correct of 64) in turn; returns the weights it saw."""
    seen: list[dict[str, torch.Tensor]] = []

    def measure(self, model):
        seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return accs[min(len(seen), len(accs)) - 1], 64

    monkeypatch.setattr(Guard, "measure", measure)
    return seen


def model_tensors(path) -> dict[str, torch.Tensor]:
    tensors, _ = ckpt.load(path)
    return {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}


GUARD_SETS = ["method.name=fast_at", "guard.enabled=true", "guard.every=1", "guard.samples=64"]
GUARD_SETS += ["eval.samples=16"]  # the validation PGD: only the guard matters here


@pytest.mark.parametrize("action", ["stop", "restore"])
def test_a_collapse_fires_the_guard_and_its_best_weights_are_kept_bit_exactly(
    tiny_preset, tmp_path, monkeypatch, action
):
    seen = scripted_guard(monkeypatch, [20, 40, 60, 10])  # collapse at the 4th check (step 4)
    cfg = load_preset(tiny_preset, [*GUARD_SETS, f"guard.action={action}"])
    run = tmp_path / "run"
    outcome = make(cfg, run).run()
    assert outcome.status == "finished" and len(seen) == 4  # training ended at the firing
    events = read_events(run / "events.jsonl")
    checks = [e for e in events if e["type"] == "guard"]
    assert [c["fired"] for c in checks] == [False, False, False, True]
    assert checks[-1]["acc"] == pytest.approx(100 * 10 / 64) and checks[-1]["best_step"] == 3
    warning = next(e["message"] for e in events if e["type"] == "warning")
    assert "catastrophic overfitting" in warning and "step 4" in warning
    good = seen[2]  # the weights the third (best) check measured
    kept = model_tensors(run / "guard.safetensors")
    assert kept.keys() == good.keys() and all(torch.equal(kept[k], good[k]) for k in good)
    assert json.loads(ckpt.load(run / "guard.safetensors")[1]["guard"])["step"] == 3
    last = model_tensors(run / "last.safetensors")
    restored = all(torch.equal(last[k], good[k]) for k in good)
    assert restored == (action == "restore")  # "stop" leaves the model as training left it
    assert (run / "best.safetensors").exists() and outcome.final["test"] is not None
    g = outcome.final["guard"]
    assert g["stopped"] and g["fired"][0]["step"] == 4 and g["fired"][0]["action"] == action
    assert [e["epoch"] for e in events if e["type"] == "epoch_end"] == [1]  # no epoch after


def test_lower_step_restores_the_best_weights_and_trains_on_with_a_smaller_step(
    tiny_preset, tmp_path, monkeypatch
):
    seen = scripted_guard(monkeypatch, [20, 40, 60, 10, 50])
    sets = [*GUARD_SETS, "guard.action=lower_step", "guard.factor=0.5", "train.epochs=1"]
    t = make(load_preset(tiny_preset, sets), tmp_path / "run")
    outcome = t.run()
    assert outcome.status == "finished" and t.method.step == pytest.approx(1.25 * 0.5)
    assert len(seen) == t.state.global_step > 4  # trained on after the firing
    after = seen[4]  # measured one step after the restore: a step away from the third check's
    assert any(not torch.equal(after[k], seen[2][k]) for k in after)
    state = json.loads(ckpt.load(tmp_path / "run" / "last.safetensors")[1]["progress"])["guard"]
    assert state["step_scale"] == 0.5 and not state["stopped"]


@pytest.mark.parametrize(
    ("sets", "key"),
    [
        (["guard.bogus=1"], "guard.bogus"),
        (["guard.drop=150"], "guard.drop"),
        (["guard.every=0"], "guard.every"),
        (["guard.action=pause"], "guard.action"),
        (["guard.enabled=true", "guard.action=lower_step"], "guard.action"),  # madry: no step
        (["schedule.peak=1.5"], "schedule.peak"),
    ],
)
def test_bad_guard_settings_are_refused_naming_the_key(tiny_preset, sets, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_preset(tiny_preset, sets)


def test_a_preset_with_a_bad_guard_key_exits_2_and_writes_nothing(tmp_path):
    write_preset(tmp_path / "bad.toml", TINY_PRESET + "[guard]\nenabled = true\nsteps_x = 3\n")
    res = wb("run", "bad.toml", "--headless", cwd=tmp_path, timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "guard.steps_x" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]


def test_guard_events_make_a_curve_and_bad_ones_are_damage():
    state = RunState()
    for step, acc, fired in ((7, 40.0, False), (14, 55.0, False), (21, 12.5, True)):
        e = {"type": "guard", "time": 1.0, "step": step, "epochs": step / 7, "acc": acc}
        assert problem({**e, "fired": fired}) is None
        state.apply({**e, "fired": fired})
    assert state.guard_x == [1.0, 2.0, 3.0] and state.guard_acc == [40.0, 55.0, 12.5]
    assert state.guard_fired["step"] == 21
    assert problem({"type": "guard", "time": 1.0, "step": 3, "acc": 150}) is not None
    assert problem({"type": "guard", "time": 1.0, "step": 3, "acc": None}) is not None


def test_the_headless_view_prints_the_guard_and_what_it_kept(tmp_path):
    console = Console(file=io.StringIO(), width=200)
    view = RunView(console)
    check = {"step": 58, "epochs": 2.0, "acc": 12.5, "n": 256, "interval": [8.9, 17.2]}
    check |= {"best_acc": 61.0, "best_step": 29, "fired": True, "attack": "PGD-10 on 256"}
    view.on_event({"type": "guard", "time": 1.0, **check})
    printed = console.file.getvalue()
    assert "guard at step 58: PGD-10 on 256 12.50% [8.9, 17.2] (best 61.00% at step 29)" in printed
    guard = {"attack": "PGD-10 on 256", "action": "stop", "best_acc": 61.0, "best_step": 29}
    guard["fired"] = [{**check, "action": "stop"}]
    outcome = SimpleNamespace(status="finished", run_dir=tmp_path, final={"guard": guard})
    out = Console(file=io.StringIO(), width=200)
    out.print(final_table(outcome, {}, {"name": "r"}))
    text = out.file.getvalue()
    assert "guard (PGD-10 on 256), best" in text and "61.00% (step 29)" in text
    assert "guard fired at step 58" in text and "best.safetensors kept" in text
