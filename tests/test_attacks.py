"""Attacks: threat-model invariants, strength orderings and closed-form cases."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from engine.attacks import FGSM, PGD, cw_margin, eval_mode, objective
from engine.eval.entries import predict


def acc(model, x, y) -> float:
    return (predict(model, x) == y).float().mean().item()


@pytest.mark.parametrize(
    "attack",
    [
        FGSM(0.1),
        PGD(0.1, 0.02, 10),
        PGD(0.3, 0.1, 5, restarts=3),
        PGD(0.2, 0.05, 5, loss="cw", kappa=50.0),
        PGD(0.05, 0.01, 5, keep_best=False),
    ],
    ids=["fgsm", "pgd", "pgd-restarts", "cw", "pgd-last"],
)
def test_attack_stays_in_ball_and_box(trained_lenet, test_batch, attack):
    x, y = test_batch
    x_adv = attack(trained_lenet, x, y)
    assert x_adv.shape == x.shape
    assert (x_adv - x).abs().max().item() <= attack.eps + 1e-6
    assert x_adv.min().item() >= 0.0 and x_adv.max().item() <= 1.0


def test_targeted_attack_stays_in_ball_and_hits_targets(trained_lenet, test_batch):
    x, y = test_batch
    target = (y + 1) % 10
    x_adv = PGD(0.3, 0.02, 40)(trained_lenet, x, y, target=target)
    assert (x_adv - x).abs().max().item() <= 0.3 + 1e-6
    hit = (predict(trained_lenet, x_adv) == target).float().mean().item()
    assert hit > 0.5  # clean inputs are almost never predicted as y + 1


def test_strength_ordering_clean_fgsm_pgd(trained_lenet, test_batch):
    x, y = test_batch
    torch.manual_seed(0)
    clean = acc(trained_lenet, x, y)
    fgsm = acc(trained_lenet, FGSM(0.1)(trained_lenet, x, y), y)
    pgd = acc(trained_lenet, PGD(0.1, 0.01, 20)(trained_lenet, x, y), y)
    assert clean > 0.85
    assert clean >= fgsm >= pgd
    assert pgd < clean - 0.2  # an undefended model is not robust at 0.1


def test_accuracy_falls_with_eps_and_eps1_reaches_zero(trained_lenet, test_batch):
    x, y = test_batch
    accs = []
    for eps in (0.0, 0.05, 0.1, 0.2, 0.3, 1.0):
        torch.manual_seed(0)
        attack = PGD(eps, max(eps / 8, 1e-3), 20)
        accs.append(acc(trained_lenet, attack(trained_lenet, x, y), y))
    assert all(b <= a + 1e-9 for a, b in itertools.pairwise(accs)), accs
    assert accs[-1] <= 0.02, accs


class Linear2(nn.Module):
    """z = W x + b over flattened inputs: the optimal L-inf attack is known exactly."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(7)
        self.fc = nn.Linear(dim, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(2, dim, generator=g))
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(x.flatten(1))


def test_linear_model_matches_closed_form_optimum():
    torch.manual_seed(1)
    x = torch.rand(64, 1, 4, 4)
    model = Linear2(16)
    y = model(x).argmax(1)
    eps = 0.1
    w = model.fc.weight.detach()
    v = (w[y] - w[1 - y]).reshape(-1, 1, 4, 4)  # margin z_y - z_o = v . x + const
    # minimise v . x' over the box [x - eps, x + eps] intersected with [0, 1]
    optimum = torch.where(v > 0, (x - eps).clamp(min=0), (x + eps).clamp(max=1))
    optimum = torch.where(v == 0, x, optimum)

    def margin(z):
        logits = model(z)
        return (logits.gather(1, y[:, None]) - logits.gather(1, (1 - y)[:, None])).squeeze(1)

    best = margin(optimum)
    fgsm = FGSM(eps)(model, x, y)
    assert torch.allclose(fgsm, optimum, atol=1e-6)
    pgd = PGD(eps, 0.02, 50)(model, x, y)
    assert torch.allclose(margin(pgd), best, atol=1e-4)
    cw = PGD(eps, 0.02, 50, loss="cw", kappa=100.0)(model, x, y)
    assert torch.allclose(margin(cw), best, atol=1e-4)


def test_cw_margin_masks_true_class_with_minus_inf():
    logits = torch.tensor([[-5.0, -1.0, -3.0], [-2.0, -7.0, -4.0]])
    y = torch.tensor([1, 0])
    # with a one-hot product the masked true class would read 0 and win the max
    assert torch.equal(cw_margin(logits, y), torch.tensor([2.0, 2.0]))
    obj = objective(logits, y, "cw", kappa=50.0)
    assert torch.equal(obj, torch.tensor([-52.0, -52.0]))


def test_restarts_keep_per_example_worst_case(trained_lenet, test_batch):
    x, y = test_batch
    x, y = x[:200], y[:200]
    eps, step, steps, R = 0.08, 0.02, 3, 4
    gen = torch.Generator().manual_seed(11)
    singles = []
    for _ in range(R):
        x_r = PGD(eps, step, steps)(trained_lenet, x, y, generator=gen)
        with torch.no_grad():
            logits = trained_lenet(x_r)
        singles.append((objective(logits, y), logits.argmax(1) != y))
    gen = torch.Generator().manual_seed(11)
    x_all = PGD(eps, step, steps, restarts=R)(trained_lenet, x, y, generator=gen)
    with torch.no_grad():
        logits = trained_lenet(x_all)
    obj_all, fooled_all = objective(logits, y), logits.argmax(1) != y
    any_fooled = torch.stack([f for _, f in singles]).any(0)
    assert torch.equal(fooled_all, any_fooled)
    best_single = torch.stack([o for o, _ in singles]).amax(0)
    not_fooled = ~any_fooled
    assert (obj_all[not_fooled] >= best_single[not_fooled] - 1e-5).all()
    # the restarts must matter somewhere, or the test proves nothing
    assert any_fooled.sum() > singles[0][1].sum()


def test_attack_restores_each_module_mode():
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 3))
    model.train()
    model[2].eval()  # a deliberately mixed state
    before = [m.training for m in model.modules()]
    x, y = torch.rand(16, 4), torch.randint(0, 3, (16,))
    stats = model[1].running_mean.clone()
    PGD(0.1, 0.02, 3)(model, x, y)
    FGSM(0.1)(model, x, y)
    assert [m.training for m in model.modules()] == before
    assert torch.equal(model[1].running_mean, stats)  # BN ran in eval mode: stats untouched
    with eval_mode(model):
        assert not any(m.training for m in model.modules())
    assert [m.training for m in model.modules()] == before


def test_restarts_without_keeping_the_best_are_refused():
    with pytest.raises(ValueError, match="restarts > 1 needs keep_best"):
        PGD(0.1, 0.02, 5, restarts=3, keep_best=False)
    assert PGD(0.1, 0.02, 5, restarts=3).restarts == 3
