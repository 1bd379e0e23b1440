"""Models, the Gaussian-mixture head and the methods' losses against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine.models import Classifier, GaussianHead, build_model
from engine.spec.config import PresetConfig, validate
from engine.spec.errors import ConfigError
from engine.train.methods.atblr import Atblr
from engine.train.methods.trades import Trades, kl_batchmean


@pytest.mark.parametrize(
    ("arch", "params", "feat"),
    [("madry_cnn", 3_274_634, 1024), ("smallcnn", 312_202, 200), ("lenet", 61_706, 84)],
)
def test_architectures_match_their_papers(arch, params, feat):
    model = build_model(arch, "linear", (1, 28, 28), 10)
    assert sum(p.numel() for p in model.parameters()) == params
    logits, h = model.forward_features(torch.rand(3, 1, 28, 28))
    assert logits.shape == (3, 10) and h.shape == (3, feat)


def test_gaussian_head_has_as_many_parameters_as_a_bias_free_linear_layer():
    lin = build_model("madry_cnn", "linear", (1, 28, 28), 10)
    gm = build_model("madry_cnn", "gaussian", (1, 28, 28), 10)
    n_lin = sum(p.numel() for p in lin.parameters())
    n_gm = sum(p.numel() for p in gm.parameters())
    assert n_lin - n_gm == 10  # K x D means vs K x D weights + K biases


def test_gaussian_head_logits_and_margin_by_hand():
    head = GaussianHead(2, 3, margin=1.0)
    with torch.no_grad():
        head.means.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [3.0, 0.0]]))
    h = torch.tensor([[1.0, 2.0]])
    y = torch.tensor([1])
    # squared distances 5, 1, 8
    head.eval()
    assert torch.equal(head(h, y), torch.tensor([[-2.5, -0.5, -4.0]]))
    head.train()
    assert torch.equal(head(h, y), torch.tensor([[-2.5, -1.0, -4.0]]))  # d_y * (1 + alpha)
    assert torch.equal(head(h), torch.tensor([[-2.5, -0.5, -4.0]]))  # no labels, no margin
    assert head.lkd(torch.tensor([[1.0, 2.0], [3.0, 1.0]]), torch.tensor([1, 2])).item() == 1.0
    # softmax of the logits is the posterior of Eq. 4 (equal priors, identity covariance)
    dens = torch.tensor([math.exp(-0.5 * d) for d in (5.0, 1.0, 8.0)])
    head.eval()
    assert torch.allclose(head(h).softmax(1)[0], dens / dens.sum())


class ToyBody(nn.Module):
    def forward(self, x):
        return x.flatten(1)[:, :2] * 3.0


def preset(method: dict, attack: dict | None = None, head: str = "gaussian") -> PresetConfig:
    """A resolved preset around a method table: what every method is built from."""
    model = {"arch": "lenet", "head": head}
    return validate({"name": "t", "model": model, "method": method, "attack": attack or {}})


def toy_gm_model() -> Classifier:
    head = GaussianHead(2, 3)
    with torch.no_grad():
        head.means.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]]))
    return Classifier(ToyBody(), head, 2)


def test_atblr_loss_matches_equations_7_and_8():
    torch.manual_seed(0)
    model = toy_gm_model()
    x = torch.rand(4, 1, 2, 2)
    y = torch.tensor([0, 1, 2, 1])
    delta = torch.full_like(x, 0.05)
    method = Atblr(preset({"name": "atblr", "lambda": 0.3}))
    method.adversary = lambda m, xx, yy: (xx + delta).clamp(0, 1)  # a known adversary
    loss, parts = method.loss(model, x, y)

    a = (x + delta).clamp(0, 1)
    mu = model.head.means.detach()

    def by_hand(inp):
        h = inp.flatten(1)[:, :2] * 3.0
        d = ((h[:, None, :] - mu[None]) ** 2).sum(-1)
        ce = F.cross_entropy(-0.5 * d, y)
        lkd = d.gather(1, y[:, None]).mean()
        return ce, lkd

    ce_c, lkd_c = by_hand(x)
    ce_a, lkd_a = by_hand(a)
    expected = 0.5 * ((ce_c + 0.3 * lkd_c) + (ce_a - 0.3 * lkd_a))
    assert torch.allclose(loss, expected, atol=1e-6)
    assert torch.allclose(parts["lkd_clean"], lkd_c, atol=1e-6)
    assert torch.allclose(parts["lkd_adv"], lkd_a, atol=1e-6)
    assert torch.allclose(parts["ce_adv"], ce_a, atol=1e-6)


def test_atblr_adv_cap_stops_the_push_beyond_the_cap():
    model = toy_gm_model()
    x = torch.rand(4, 1, 2, 2)
    y = torch.tensor([0, 1, 2, 1])
    far = torch.full_like(x, 1.0)  # h(a) = (3, 3): squared distances 18, 8, 10, 8
    capped = Atblr(preset({"name": "atblr", "lambda": 1.0, "adv_cap": 2.0}))
    capped.adversary = lambda m, xx, yy: far
    free = Atblr(preset({"name": "atblr", "lambda": 1.0}))
    free.adversary = lambda m, xx, yy: far
    loss_c, parts_c = capped.loss(model, x, y)
    loss_f, parts_f = free.loss(model, x, y)
    # cap = 2 * dim(h) = 4 < every distance: the push is a constant, the logged L_lkd is not
    assert torch.equal(parts_c["lkd_adv"], parts_f["lkd_adv"])
    assert torch.allclose(loss_f - loss_c, -0.5 * (parts_f["lkd_adv"] - 4.0), atol=1e-6)
    model.zero_grad()
    loss_c.backward()
    grad_capped = model.head.means.grad.clone()
    model.zero_grad()
    capped.adversary = lambda m, xx, yy: xx  # same loss with a = x has the same clean grads
    assert grad_capped.abs().sum() > 0


def test_trades_kl_by_hand():
    torch.manual_seed(0)
    a, b = torch.randn(5, 4), torch.randn(5, 4)
    p, q = a.softmax(1), b.softmax(1)
    by_hand = (p * (p.log() - q.log())).sum(1).mean()
    assert torch.allclose(kl_batchmean(a, b), by_hand, atol=1e-6)


def test_trades_loss_is_ce_plus_beta_kl_and_adversary_stays_in_ball():
    torch.manual_seed(0)
    model = build_model("lenet", "linear", (1, 28, 28), 10)
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    method = Trades(
        preset({"name": "trades", "beta": 2.5}, {"eps": 0.1, "step": 0.02, "steps": 3}, "linear")
    )
    x_adv = method.adversary(model, x)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    torch.manual_seed(1)
    loss, parts = method.loss(model, x, y)
    assert torch.allclose(loss, parts["ce"] + 2.5 * parts["kl"], atol=1e-6)
    assert parts["kl"] >= 0


def test_mnist_nets_keep_their_keys_and_ignore_dataset_statistics():
    """Old checkpoints must keep loading: no normalisation module, the same state_dict keys."""
    torch.manual_seed(0)
    plain = build_model("madry_cnn", "linear", (1, 28, 28), 10)
    torch.manual_seed(0)
    given = build_model("madry_cnn", "linear", (1, 28, 28), 10, mean=(0.5,), std=(0.25,))
    keys = list(plain.state_dict())
    assert keys == [f"body.{i}.{p}" for i in (0, 3, 7) for p in ("weight", "bias")] + [
        "head.fc.weight",
        "head.fc.bias",
    ]
    assert keys == list(given.state_dict())
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(plain(x), given(x))


def test_cifar_net_features_feed_the_gaussian_head_and_statistics_follow_the_model():
    torch.manual_seed(0)
    model = build_model(
        "resnet32", "gaussian", (3, 32, 32), 100, mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2)
    )
    logits, h = model.eval().forward_features(torch.rand(2, 3, 32, 32))
    assert h.shape == (2, 64) and logits.shape == (2, 100)
    assert model.head.means.shape == (100, 64)
    assert (logits <= 0).all()  # -0.5 * squared distances
    model.double()  # buffers move with the model, so a float64 check needs no extra step
    assert model.body.norm.mean.dtype == torch.float64
    assert model(torch.rand(1, 3, 32, 32, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize(
    ("key", "value"),
    [("kind", "fgsm"), ("loss", "cw"), ("restarts", 2), ("random_start", False)],
)
def test_trades_refuses_adversary_settings_it_cannot_honour(key, value):
    with pytest.raises(ConfigError, match=rf"key 'attack\.{key}': method 'trades'"):
        preset({"name": "trades"}, {key: value}, "linear")
    assert preset({"name": "trades"}, {"steps": 3}, "linear").attack.steps == 3  # the rest is free
