"""Early stop: PGD drops an example once an iterate fools the model, and loses nothing by it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine.attacks import PGD, ThreatModel
from engine.attacks.pgd import PGDColumn, _working_size
from engine.eval.entries import predict
from engine.eval.microbatch import micro_batched
from engine.eval.model_checks import draws_random
from engine.eval.plan import plan_suite
from engine.eval.run import run_suite
from engine.eval.suites import Column


class Counting(nn.Module):
    """A model that counts its forwards and the rows they carried."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net, self.calls, self.rows = net, 0, 0

    def forward(self, x):
        self.calls += 1
        self.rows += len(x)
        return self.net(x)


class AlwaysThree(nn.Module):
    """Class 3 ahead by about 10 logits on every input: any label but 3 is broken at once."""

    def forward(self, x):
        bias = torch.zeros(10)
        bias[3] = 10.0
        return x.flatten(1)[:, :10] + bias


def run(attack: PGD, model, x, y, seed=0, target=None):
    torch.manual_seed(seed)
    x_adv = attack(model, x, y, target=target)
    return x_adv, torch.get_rng_state()


@pytest.mark.parametrize(
    ("norm", "eps", "step", "loss"),
    [("linf", 0.1, 0.02, "ce"), ("l2", 1.5, 0.3, "cw"), ("l1", 8.0, 1.0, "ce")],
)
def test_outcomes_and_draws_equal_the_full_search(trained_lenet, test_batch, norm, eps, step, loss):
    """Same seed: every example broken by one is broken by the other, the generator ends in the
    same state, every input stays in its ball and [0, 1], and robust accuracy <= clean."""
    x, y = test_batch[0][:32], test_batch[1][:32]
    threat = ThreatModel(norm, eps)
    full, rng_full = run(PGD(threat, step, 4, 2, loss), trained_lenet, x, y)
    early, rng_early = run(PGD(threat, step, 4, 2, loss, early_stop=True), trained_lenet, x, y)
    ok_full = predict(trained_lenet, full) == y
    ok_early = predict(trained_lenet, early) == y
    assert torch.equal(ok_full, ok_early)
    assert torch.equal(rng_full, rng_early)  # the same draws: later batches see the same starts
    assert 0 < int(ok_early.sum()) < int((predict(trained_lenet, x) == y).sum())
    assert float(threat.size(early - x).max()) <= eps * (1 + 1e-5) + 1e-6
    assert float(early.min()) >= 0.0 and float(early.max()) <= 1.0


def test_nothing_broken_means_the_very_same_search(trained_lenet, test_batch):
    """On examples no iterate breaks, the early-stop search is the full one, bit for bit."""
    x, y = test_batch[0][:32], test_batch[1][:32]
    attack = PGD(0.02, 0.005, 4, random_start=False)
    survivors = predict(trained_lenet, attack(trained_lenet, x, y)) == y
    x, y = x[survivors], y[survivors]
    full = attack(trained_lenet, x, y)
    early = PGD(0.02, 0.005, 4, random_start=False, early_stop=True)(trained_lenet, x, y)
    assert len(y) > 12 and bool((predict(trained_lenet, full) == y).all())
    assert torch.equal(full, early)


def test_linear_model_same_outcomes_and_fooling_points(test_batch):
    """A linear model: early stop returns, per broken example, an iterate that fools it, and
    leaves the survivors exactly where the full search leaves them."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    x = test_batch[0][:64]
    y = predict(model, x)  # its own labels: every example starts correct
    full, _ = run(PGD(0.01, 0.002, 10), model, x, y)
    early, _ = run(PGD(0.01, 0.002, 10, early_stop=True), model, x, y)
    ok_full, ok_early = predict(model, full) == y, predict(model, early) == y
    assert torch.equal(ok_full, ok_early) and 10 < int(ok_full.sum()) < 54
    assert torch.allclose(full[ok_full], early[ok_full], atol=1e-6)
    assert (early - x).abs().max() <= 0.01 + 1e-6


def test_a_model_broken_at_the_start_costs_one_forward():
    x = torch.rand(32, 1, 28, 28)
    y = torch.zeros(32, dtype=torch.long)  # AlwaysThree says 3 everywhere
    counted = Counting(AlwaysThree())
    PGD(0.1, 0.01, 20, early_stop=True)(counted, x, y)
    assert (counted.calls, counted.rows) == (1, 32)
    counted = Counting(AlwaysThree())
    PGD(0.1, 0.01, 20)(counted, x, y)
    assert (counted.calls, counted.rows) == (21, 21 * 32)  # 20 steps and the last iterate


def test_broken_examples_leave_the_batch(trained_lenet, test_batch):
    """Forward rows fall as examples break; a restart searches only what the first left."""
    x, y = test_batch[0][:32], test_batch[1][:32]
    full, early = Counting(trained_lenet), Counting(trained_lenet)
    run(PGD(0.2, 0.05, 5, 2), full, x, y)
    run(PGD(0.2, 0.05, 5, 2, early_stop=True), early, x, y)
    assert full.rows == 2 * 6 * 32
    assert early.rows < full.rows / 2


def test_an_example_gets_the_same_outcome_alone_or_in_any_batch(trained_lenet, test_batch):
    """From the clean point (no random start) each example's search is its own: alone, or in a
    batch whose other examples break at other steps, it ends the same (up to float noise)."""
    x, y = test_batch[0][:16], test_batch[1][:16]
    attack = PGD(0.1, 0.025, 6, random_start=False, early_stop=True)
    together = attack(trained_lenet, x, y)
    reversed_ = attack(trained_lenet, x.flip(0), y.flip(0)).flip(0)
    ok = predict(trained_lenet, together) == y
    assert 0 < int(ok.sum()) < 16
    for i in range(0, 16, 3):
        alone = attack(trained_lenet, x[i : i + 1], y[i : i + 1])
        assert bool(predict(trained_lenet, alone)[0] == y[i]) == bool(ok[i])
        if ok[i]:  # a survivor went the whole way, the same way
            assert torch.allclose(alone[0], together[i], atol=1e-5)
    assert torch.equal(predict(trained_lenet, reversed_) == y, ok)


def test_targeted_early_stop_hits_the_target(trained_lenet, test_batch):
    x, y = test_batch[0][:24], test_batch[1][:24]
    target = (y + 1) % 10
    full, _ = run(PGD(0.3, 0.05, 8), trained_lenet, x, y, target=target)
    early, _ = run(PGD(0.3, 0.05, 8, early_stop=True), trained_lenet, x, y, target=target)
    hit_full = predict(trained_lenet, full) == target
    assert torch.equal(hit_full, predict(trained_lenet, early) == target) and hit_full.any()


def test_working_batch_sizes():
    assert [_working_size(n, 500, torch.device("cpu")) for n in (0, 1, 37, 500)] == [0, 1, 37, 500]
    cuda = torch.device("cuda")
    assert [_working_size(n, 500, cuda) for n in (1, 3, 5, 7, 37, 100, 499)] == [
        1,
        3,
        6,
        8,
        48,
        128,
        500,
    ]
    with pytest.raises(ValueError, match="keep_best"):
        PGD(0.1, 0.01, 5, keep_best=False, early_stop=True)


class Noisy(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x + 1e-3 * torch.randn_like(x))


def test_plan_turns_early_stop_off_where_the_verdict_is_not_the_judges(trained_lenet):
    """Suite columns stop early by default; a transfer column, a column built without the
    setting (saved before it) and a model that draws random numbers search every example."""
    params = PGDColumn.model_validate({"name": "P", "kind": "pgd", "steps": 5}).early_stop
    assert params is True
    p = {"eps": 0.1, "norm": "linf", "step": 0.02, "steps": 5, "restarts": 1, "loss": "ce"}
    cols = [
        Column("PGD", "pgd", {**p, "early_stop": True}),
        Column("old", "pgd", dict(p)),
        Column("bb", "pgd", {**p, "early_stop": True}, source="substitute"),
    ]
    plan = plan_suite(cols, trained_lenet, 10, source=trained_lenet)
    assert [plan.params[k].get("early_stop") for k in ("PGD", "old", "bb")] == [True, None, False]
    off = plan_suite(cols[:1], trained_lenet, 10, early_stop=False)
    assert off.params["PGD"]["early_stop"] is False
    x = torch.rand(4, 1, 28, 28)
    assert draws_random([trained_lenet], x) is False
    state = torch.get_rng_state()
    assert draws_random([trained_lenet, Noisy(trained_lenet)], x) is True
    assert torch.equal(state, torch.get_rng_state())  # the check draws nothing the run sees


def test_micro_batches_are_the_model_up_to_float_noise(trained_lenet, test_batch):
    """Sliced on the CPU, the logits and input gradients are the whole batch's (float noise
    aside), each forward carries at most the slice, and nothing is sliced on CUDA."""
    x, y = test_batch[0][:70], test_batch[1][:70]
    counted = Counting(trained_lenet)
    sliced = micro_batched(counted, torch.device("cpu"), 32)
    assert micro_batched(trained_lenet, torch.device("cuda"), 32) is trained_lenet
    assert micro_batched(sliced, torch.device("cpu"), 16) is sliced  # never sliced twice

    def logits_and_grad(model):
        xg = x.clone().requires_grad_(True)
        out = model(xg)
        (grad,) = torch.autograd.grad(F.cross_entropy(out, y, reduction="sum"), xg)
        return out.detach(), grad

    whole, sliced_out = logits_and_grad(trained_lenet), logits_and_grad(sliced)
    assert counted.calls == 3 and counted.rows == 70  # 32 + 32 + 6
    torch.testing.assert_close(sliced_out[0], whole[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sliced_out[1], whole[1], rtol=1e-4, atol=1e-6)


def test_a_suite_on_micro_batches_gives_the_same_outcomes(trained_lenet, test_batch):
    """The paper-style columns on slices of 24 and on the whole batch: the same per-example
    outcomes, and robust accuracy at most clean."""
    x, y = test_batch[0][:96], test_batch[1][:96]
    cols = [
        Column("PGD-10", "pgd", {"eps": 0.1, "step": 0.025, "steps": 10, "early_stop": True}),
        Column("CW-10", "pgd", {"eps": 0.1, "step": 0.025, "steps": 10, "loss": "cw"}),
    ]
    outcomes = []
    for piece in (None, 24):
        plan = plan_suite(cols, trained_lenet, 10, 0)
        res = run_suite(micro_batched(trained_lenet, x.device, piece), x, y, plan.entries, 96, 0)
        outcomes.append(res.correct)
    for name in ("clean", "PGD-10", "CW-10"):
        assert torch.equal(outcomes[0][name], outcomes[1][name]), name
    assert 0 < int(outcomes[1]["PGD-10"].sum()) < int(outcomes[1]["clean"].sum())
