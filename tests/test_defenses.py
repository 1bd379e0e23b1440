"""API-Net anti-perturbation inference against a plain per-class loop (the reference)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.attacks import PGD
from engine.defenses.apinet import AntiPerturbation, APINet, class_scores
from engine.eval.entries import predict


def loop_reference(model, x, ap: AntiPerturbation, num_classes: int, noise=None):
    """The public code's shape: one PGD per class, in a Python loop."""
    scores, zs = [], []
    model.eval()
    for c in range(num_classes):
        target = torch.full((len(x),), c)
        lower, upper = (x - ap.eps_ap).clamp(min=0), (x + ap.eps_ap).clamp(max=1)
        z = x.clone() if noise is None else torch.clamp(x + noise[:, c], min=lower, max=upper)
        for _ in range(ap.steps):
            z.requires_grad_(True)
            logp = F.log_softmax(model(z), 1).gather(1, target[:, None]).sum()
            (g,) = torch.autograd.grad(logp, z)
            z = torch.clamp(z.detach() + ap.step * g.sign(), min=lower, max=upper)
        with torch.no_grad():
            scores.append(F.log_softmax(model(z), 1)[:, c])
        zs.append(z)
    return torch.stack(scores, 1), torch.stack(zs, 1)


def test_batched_search_equals_the_per_class_loop(trained_lenet, test_batch):
    x = test_batch[0][:24]
    for start in ("zero", "noise"):
        ap = AntiPerturbation(eps_ap=12 / 255, steps=8, step=0.01, start=start, chunk=100)
        gen = torch.Generator().manual_seed(3)
        noise = ap.start_noise(torch.Size((24, 10, 1, 28, 28)), x.device, gen)
        z = ap.search(trained_lenet, x, 10, noise)
        with torch.no_grad():
            batched = class_scores(trained_lenet, z)
        ref_scores, ref_z = loop_reference(trained_lenet, x, ap, 10, noise)
        assert torch.allclose(z, ref_z, atol=1e-6)
        assert torch.allclose(batched, ref_scores, atol=1e-5)
        assert torch.equal(batched.argmax(1), ref_scores.argmax(1))


def test_eps_ap_zero_gives_exactly_the_base_predictions(trained_lenet, test_batch):
    x = test_batch[0][:100]
    for start in ("zero", "noise"):
        net = APINet(trained_lenet, 10, AntiPerturbation(eps_ap=0.0, start=start))
        with torch.no_grad():
            defended = net(x).argmax(1)
        assert torch.equal(defended, predict(trained_lenet, x))


def test_anti_perturbations_stay_in_their_ball_and_the_box(trained_lenet, test_batch):
    x = test_batch[0][:16]
    ap = AntiPerturbation(eps_ap=14 / 255, steps=8, step=0.01, start="noise")
    net = APINet(trained_lenet, 10, ap)
    z = net.purify(x)
    assert z.shape == (16, 10, 1, 28, 28)
    assert (z - x[:, None]).abs().max() <= ap.eps_ap + 1e-6
    assert z.min() >= 0 and z.max() <= 1
    # each z_c moved towards its class: log p(c | z_c) >= log p(c | x)
    with torch.no_grad():
        base = F.log_softmax(trained_lenet(x), 1)
        assert (class_scores(trained_lenet, z) >= base - 1e-4).float().mean() > 0.99


def test_bpda_gradient_reaches_the_input_and_attacks_stay_in_the_ball(trained_lenet, test_batch):
    x, y = test_batch[0][:32], test_batch[1][:32]
    net = APINet(trained_lenet, 10, AntiPerturbation(eps_ap=12 / 255, steps=2))
    x_in = x.clone().requires_grad_(True)
    F.cross_entropy(net(x_in), y).backward()
    assert x_in.grad is not None and x_in.grad.abs().sum() > 0
    x_adv = PGD(0.1, 0.02, 3)(net, x, y)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
