"""Checks a model from outside the workbench needs: each hand-made module trips its own."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine.eval import model_checks as mc
from engine.eval.evaluate import evaluate_model
from engine.eval.suites import load_suite, resolve_columns
from tests.test_evaluation import lenet_config, small_suite


class Wrap(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net


class AlwaysDropout(Wrap):
    """Dropout that eval mode cannot switch off (MC-dropout style): a stochastic model."""

    def forward(self, x):
        return self.net(F.dropout(x, 0.3, training=True))


class Softmax(Wrap):
    def forward(self, x):
        return self.net(x).softmax(1)


class Expects255(Wrap):
    """A model whose first step assumes pixels in [0, 255] (it divides by 255)."""

    def forward(self, x):
        return self.net(x / 255.0)


class ArgmaxOut(Wrap):
    """One-hot of the argmax: the right answers, and no gradient anywhere."""

    def forward(self, x):
        return F.one_hot(self.net(x).argmax(1), 10).float()


class Detached(Wrap):
    def forward(self, x):
        return self.net(x.detach())


def statuses(checks) -> dict[str, str]:
    return {c.name: c.status for c in checks}


@pytest.fixture(scope="module")
def batch(test_batch):
    return test_batch[0][:128], test_batch[1][:128]


def test_a_plain_model_passes_every_check(trained_lenet, batch):
    checks = mc.model_checks(trained_lenet, *batch, external=True)
    assert statuses(checks) == {
        "deterministic forward": "PASS",
        "outputs are logits": "PASS",
        "inputs in [0, 1]": "PASS",
        "input gradients are not zero": "PASS",
    }, checks


def test_a_stochastic_model_is_not_called_deterministic(trained_lenet, batch):
    before = torch.get_rng_state()
    check = mc.deterministic(AlwaysDropout(trained_lenet), *batch)
    assert check.status == "WARN" and "predictions changed" in check.figure
    assert "EoT" in check.advice
    torch.set_rng_state(before)
    mc.model_checks(AlwaysDropout(trained_lenet), *batch, external=True)
    assert torch.equal(torch.get_rng_state(), before)  # the checks leave the draws alone


def test_probabilities_are_not_logits(trained_lenet, batch):
    check = mc.outputs_logits(Softmax(trained_lenet), batch[0])
    assert check.status == "WARN" and "softmax" in check.advice
    assert mc.outputs_logits(trained_lenet, batch[0]).status == "PASS"


def test_a_model_expecting_0_255_is_flagged(trained_lenet, batch):
    check = mc.expects_unit_range(Expects255(trained_lenet), *batch)
    assert check.status == "WARN" and "[0, 255]" in check.advice, check
    plain = mc.expects_unit_range(trained_lenet, *batch)
    assert plain.status == "PASS" and "% in [0, 1] (as given)" in plain.figure


@pytest.mark.parametrize("masked", [ArgmaxOut, Detached])
def test_zero_input_gradients_are_flagged(trained_lenet, batch, masked):
    check = mc.gradients_flow(masked(trained_lenet), *batch)
    assert check.status == "WARN" and check.figure.startswith("128 of 128"), check
    assert "not differentiable" in check.advice


def test_external_evaluation_puts_the_model_in_eval_mode_and_runs_every_check(
    trained_lenet, batch, tmp_path
):
    suite = small_suite(tmp_path, 'name = "one"\n[[attack]]\nname = "FGSM"\nkind = "fgsm"\n')
    spec = load_suite(str(suite))
    cols = resolve_columns(spec, lenet_config(), False)
    model = nn.Sequential(trained_lenet, nn.Dropout(0.5)).train()
    ev = evaluate_model(spec, cols, model, *batch, 10, external=True)
    assert not model.training and not model[1].training  # left in eval mode
    first = ev.checks[0]
    assert first.name == "model in eval mode" and "1 of them dropout" in first.figure, first
    names = [c.name for c in ev.checks]
    assert names[:5] == [
        "model in eval mode",
        "deterministic forward",
        "outputs are logits",
        "inputs in [0, 1]",
        "input gradients are not zero",
    ]
    assert statuses(ev.checks)["deterministic forward"] == "PASS"  # eval mode: no dropout
    own = evaluate_model(spec, cols, trained_lenet, *batch, 10)  # a workbench model: two
    assert [c.name for c in own.checks][:2] == [
        "deterministic forward",
        "input gradients are not zero",
    ]
    assert "outputs are logits" not in {c.name for c in own.checks}
    trained_lenet.eval()
