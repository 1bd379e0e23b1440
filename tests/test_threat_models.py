"""Threat models beyond L-infinity: the closed form on a linear model, balls, training, errors."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
from torch import nn

from engine import checkpoint_io as ckpt
from engine.attacks import FGSM, PGD
from engine.attacks.norms.l1 import l1_ball_projection
from engine.attacks.threat import ThreatModel
from engine.defenses.apinet import AntiPerturbation, UnrolledAPINet
from engine.spec.catalog import resolve_preset
from engine.spec.errors import ConfigError, WorkbenchError
from engine.spec.preset_files import load_preset
from engine.train.methods.trades import Trades
from tests.conftest import wb, write_preset
from tests.test_trainer import assert_same, make, weights

NORMS = ("linf", "l2", "l1")
DUAL = {  # the dual norm of w: what the best attack in each ball takes off a linear margin
    "linf": lambda w: w.abs().sum(),
    "l2": lambda w: w.norm(),
    "l1": lambda w: w.abs().max(),
}


def linear_model(d: int) -> tuple[nn.Module, torch.Tensor]:
    """A two-class linear classifier on (1, 1, d) inputs and w = w_0 - w_1 (its margin's slope)."""
    torch.manual_seed(0)
    lin = nn.Linear(d, 2)
    return nn.Sequential(nn.Flatten(), lin), (lin.weight[0] - lin.weight[1]).detach()


@pytest.mark.parametrize("norm,eps", [("linf", 0.05), ("l2", 0.3), ("l1", 0.3)])
def test_pgd_and_fgsm_reach_the_closed_form_on_a_linear_model(norm, eps):
    d = 50  # L1 steps move max(1, 1% of d) = 1 coordinate: the exact steepest L1 step
    model, w = linear_model(d)
    x = torch.full((4, 1, d), 0.5)  # deep inside the box: no clamp is ever active
    y = torch.zeros(4, dtype=torch.long)
    threat = ThreatModel(norm, eps)
    margin = lambda z: (z.flatten(1) @ w) + (model[1].bias[0] - model[1].bias[1])  # noqa: E731
    best = eps * DUAL[norm](w)
    with torch.no_grad():
        m0 = margin(x)
    pgd = PGD(threat, eps / 4, 20, loss="cw", kappa=1e3, random_start=False)
    fgsm = FGSM(threat, loss="cw", kappa=1e3)
    for attack in (pgd, fgsm):
        x_adv = attack(model, x, y)
        with torch.no_grad():
            drop = m0 - margin(x_adv)
        assert torch.allclose(drop, best.expand_as(drop), rtol=1e-4), (norm, drop, best)
        assert (threat.size(x_adv - x) <= eps + 1e-6).all()


def test_the_closed_form_tells_the_norms_apart():
    """Each norm's optimum differs, so a step in the wrong norm would fail the test above."""
    _, w = linear_model(50)
    values = [float(DUAL[n](w)) for n in NORMS]
    assert len({round(v, 4) for v in values}) == 3


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.body = nn.Sequential(
            nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def images(n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Random images with saturated pixels (0 and 1), where the box clamp matters."""
    g = torch.Generator().manual_seed(2)
    x = torch.rand(n, 1, 8, 8, generator=g)
    x[x < 0.3] = 0.0
    x[x > 0.8] = 1.0
    return x, torch.randint(0, 10, (n,), generator=g)


EPS = {"linf": 0.1, "l2": 1.0, "l1": 4.0}
TOL = 1e-5  # the stated tolerance of the ball check (float32 rounding of the projection)


def inside(threat: ThreatModel, x_adv: torch.Tensor, x: torch.Tensor) -> None:
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    sizes = threat.size(x_adv - x)
    assert (sizes <= threat.eps + TOL).all(), (threat, sizes.max())


@pytest.mark.parametrize("norm", NORMS)
def test_every_attack_of_every_norm_stays_in_its_ball_and_the_box(norm):
    model, (x, y) = TinyNet(), images()
    threat = ThreatModel(norm, EPS[norm])
    gen = torch.Generator().manual_seed(0)
    ball = threat.around(x)
    inside(threat, ball.random_start(gen), x)
    for attack in (
        FGSM(threat),
        PGD(threat, threat.eps / 4, 10, restarts=2),
        PGD(threat, threat.eps / 4, 10, loss="cw", keep_best=False),
        PGD(threat, threat.eps, 5, random_start=False),
    ):
        inside(threat, attack(model, x, y), x)
    # API-Net's search in this norm, and the adaptive attacker's unrolled copy
    ap = AntiPerturbation(eps_ap=threat.eps, steps=3, step=threat.eps / 3, norm=norm)
    z = ap.search(model, x, 10)
    for c in range(10):
        inside(threat, z[:, c], x)
    unrolled = UnrolledAPINet(model, 10, ap, steps=2, eot=2)
    x_req = x.clone().requires_grad_(True)
    unrolled(x_req).sum().backward()
    assert x_req.grad is not None and torch.isfinite(x_req.grad).all()


@pytest.mark.parametrize("norm", NORMS)
def test_trades_search_stays_in_the_runs_ball(norm, tiny_preset):
    eps = EPS[norm]
    cfg = load_preset(
        tiny_preset,
        [
            "method.name=trades",
            f"attack.norm={norm}",
            f"attack.eps={eps}",
            f"attack.step={eps / 4}",
        ],
    )
    x, _ = images()
    x_adv = Trades(cfg).adversary(TinyNet(), x)
    inside(ThreatModel(norm, eps), x_adv, x)


def test_the_l1_projection_is_exact_and_keeps_points_inside():
    g = torch.Generator().manual_seed(0)
    delta = torch.randn(5, 30, generator=g)
    p = l1_ball_projection(delta, 2.0)
    assert torch.allclose(p.abs().sum(1), torch.full((5,), 2.0), atol=1e-5)
    small = delta / delta.abs().sum(1, keepdim=True)  # L1 norm 1: already inside
    assert torch.equal(l1_ball_projection(small, 2.0), small)
    # optimality: no random point of the ball is closer to delta than its projection
    for _ in range(20):
        q = l1_ball_projection(torch.randn(5, 30, generator=g) * 3, 2.0)
        assert ((delta - p).norm(dim=1) <= (delta - q).norm(dim=1) + 1e-5).all()


def test_random_starts_fill_the_ball_not_just_its_surface():
    x = torch.full((2000, 1, 2, 2), 0.5)
    for norm, eps in (("l2", 0.4), ("l1", 0.4)):
        threat = ThreatModel(norm, eps)
        sizes = threat.size(threat.around(x).random_start(torch.Generator()) - x)
        assert sizes.max() <= eps + TOL
        # uniform in a d = 4 ball: P(size <= eps / 2) = 2^-4 = 1/16
        frac = (sizes <= eps / 2).float().mean().item()
        assert 0.03 < frac < 0.1, (norm, frac)


def acc(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item() * 100


def test_l2_accuracy_falls_with_eps_and_an_unbounded_ball_breaks_everything(
    trained_lenet, test_batch
):
    x, y = test_batch
    x, y = x[:100], y[:100]
    accs = []
    for eps in (0.0, 0.5, 1.0, 2.0):
        threat = ThreatModel("l2", eps)
        accs.append(acc(trained_lenet, PGD(threat, eps / 4 + 1e-3, 10)(trained_lenet, x, y), y))
    assert all(b <= a + 0.5 for a, b in itertools.pairwise(accs)), accs
    assert accs[-1] < accs[0] - 20, accs  # eps 2 does real damage to a naturally trained net
    big = ThreatModel("l2", 1.0).unbounded(x[0].numel())
    assert big.eps == pytest.approx(math.sqrt(28 * 28))
    x_adv = PGD(big, big.eps / 5, 20)(trained_lenet, x, y)
    assert acc(trained_lenet, x_adv, y) <= 2.0


def test_an_l2_run_resumes_bit_identically(tiny_preset, tmp_path):
    sets = ["attack.norm=l2", "attack.eps=1.0", "attack.step=0.3"]
    full = make(load_preset(tiny_preset, sets), tmp_path / "full")
    assert full.run().status == "finished"
    first = make(load_preset(tiny_preset, [*sets, "train.epochs=1"]), tmp_path / "split")
    first.run()
    second = make(load_preset(tiny_preset, sets), tmp_path / "split")
    second.resume(tmp_path / "split" / "last.safetensors")
    assert second.run().status == "finished"
    assert_same(
        weights(tmp_path / "full" / "last.safetensors"),
        weights(tmp_path / "split" / "last.safetensors"),
    )
    # and the L2 adversary really trained something other than the L-inf one
    linf = make(load_preset(tiny_preset, ["attack.eps=0.1", "attack.step=0.05"]), tmp_path / "li")
    linf.run()
    a, b = (
        weights(tmp_path / "full" / "last.safetensors"),
        weights(tmp_path / "li" / "last.safetensors"),
    )
    assert any(not torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "sets,needles",
    [
        (["attack.norm=l3"], ["attack.norm", "'l3'"]),
        (["attack.eps=2"], ["attack.eps", "less than or equal to 1"]),  # L-inf eps beyond the box
        (["attack.kind=autoattack"], ["attack.kind", "'autoattack'", "pgd"]),
        (["attack.kind=nope"], ["attack.kind", "'nope'"]),
        (["defense.norm=l5"], ["defense.norm"]),
    ],
)
def test_bad_norm_settings_are_one_line_config_errors(tiny_preset, sets, needles):
    with pytest.raises(ConfigError) as info:
        load_preset(tiny_preset, sets)
    msg = str(info.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, msg


def test_an_l2_eps_beyond_one_is_allowed(tiny_preset):
    cfg = load_preset(tiny_preset, ["attack.norm=l2", "attack.eps=2.0", "attack.step=0.25"])
    assert cfg.attack.norm == "l2" and cfg.attack.eps == 2.0


def test_an_unsupported_combination_exits_2_naming_the_key(tiny_preset, tmp_path):
    suite = write_preset(
        tmp_path / "l1aa.toml",
        'name = "l1aa"\n[[attack]]\nname = "AA"\nkind = "autoattack"\nnorm = "l1"\n',
    )
    r = wb("run", str(tiny_preset), "--headless", "--set", "attack.norm=l7", cwd=tmp_path)
    assert r.returncode == 2 and "attack.norm" in r.stderr and "Traceback" not in r.stderr
    ckpt = tmp_path / "ck"
    r = wb(
        "run", str(tiny_preset), "--headless", "--set", "train.epochs=1", "--name", "ck",
        "--runs-dir", str(ckpt), cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = wb("eval", str(ckpt / "ck" / "best.safetensors"), "--suite", str(suite), cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "norm" in r.stderr and "square" in r.stderr.lower() and "Traceback" not in r.stderr


def test_the_l2_presets_use_their_published_radii():
    for name, eps in (
        ("mnist5k_madry_l2", 2.0),
        ("mnist5k_atblr_l2", 2.0),
        ("cifar10_resnet18_madry_l2", 0.5),
    ):
        cfg = load_preset(resolve_preset(name))
        assert (cfg.attack.norm, cfg.attack.eps) == ("l2", eps), name
    # ATBLR and Madry differ only in the method under L2, as the study compares them
    madry, atblr = (
        load_preset(resolve_preset("mnist5k_madry_l2")),
        load_preset(resolve_preset("mnist5k_atblr_l2")),
    )
    assert madry.attack == atblr.attack and madry.data == atblr.data
    assert (
        load_preset(resolve_preset("mnist5k_madry")).attack.norm == "linf"
    )  # the old presets are unchanged


def test_the_in_ball_sanity_check_catches_an_attack_that_leaves_its_ball():
    from engine.eval.sanity import PASS, WARN, InBall, in_ball_check

    model, (x, y) = TinyNet(), images()
    for norm in NORMS:
        threat = ThreatModel(norm, EPS[norm])
        good = InBall(PGD(threat, threat.eps / 4, 5), threat)
        good(model, x, y)
        assert in_ball_check({"good": good}).status == PASS
        # the same attack told a smaller ball than it searches: what a wrong projection does
        small = ThreatModel(norm, EPS[norm] / 2)
        bad = InBall(PGD(threat, threat.eps / 2, 5, random_start=False), small)
        bad(model, x, y)
        check = in_ball_check({"good": good, "bad": bad})
        assert check.status == WARN and "bad" in check.figure, check


def test_the_unbounded_check_names_its_radius_per_norm():
    from engine.eval.sanity import extra_checks

    curve = [(0.0, 90.0), (2.0, 40.0)]
    names = [
        c.name
        for c in extra_checks(
            curve,
            unbounded=0.0,
            unbounded_max=1.0,
            base=("PGD", 40.0),
            doubled_steps=("2x", 40.0),
            doubled_restarts=("2r", 40.0),
            n=100,
            tol_points=0.5,
            unbounded_eps=28.0,
        )
    ]
    assert "eps = 28 drives accuracy to ~0" in names


@pytest.mark.parametrize(
    "sets",
    [
        ["method.name=trades"],
        ["method.name=atblr", "model.head=gaussian"],
        ["method.name=standard"],
        ["attack.kind=fgsm"],
    ],
    ids=["trades", "atblr", "standard", "madry-fgsm"],
)
def test_every_method_trains_under_l2(tiny_preset, tmp_path, sets):
    cfg = load_preset(
        tiny_preset,
        [*sets, "attack.norm=l2", "attack.eps=1.0", "attack.step=0.3", "train.epochs=1"],
    )
    out = make(cfg, tmp_path / "run").run()
    assert out.status == "finished"
    saved = json.loads(ckpt.read_header(tmp_path / "run" / "last.safetensors")[1]["config"])
    assert saved["attack"]["norm"] == "l2"  # the checkpoint carries its threat model


def test_autoattack_columns_take_the_checkpoints_norm(tiny_preset):
    from engine.attacks.autoattack import AutoAttackColumn

    cfg = load_preset(tiny_preset, ["attack.norm=l2", "attack.eps=1.5", "attack.step=0.3"])
    col = AutoAttackColumn.model_validate(
        {"name": "AA", "kind": "autoattack", "version": "custom", "components": ["apgd-ce"]}
    )
    params = col.resolve(cfg)
    assert (params["norm"], params["eps"]) == ("l2", 1.5)
    casc = AutoAttackColumn.entry("AA", {**params, "iterations": 3}, 0, 10, "base")
    assert casc.threat == ThreatModel("l2", 1.5) and casc.settings()["norm"] == "l2"
    model, (x, y) = TinyNet(), images()
    alive = casc.run(model, x, y, torch.ones(len(y), dtype=torch.bool), 16)
    assert set(alive) == set(casc.columns)
    # a column may set its own norm; L1 with Square is refused naming the key
    own = AutoAttackColumn.model_validate({"name": "AA", "kind": "autoattack", "norm": "linf"})
    assert own.resolve(cfg)["norm"] == "linf"
    l1 = AutoAttackColumn.model_validate({"name": "AA", "kind": "autoattack", "norm": "l1"})
    with pytest.raises(WorkbenchError, match="key 'norm'"):
        l1.resolve(cfg)


def test_headers_name_the_threat_model(tiny_preset, tmp_path):
    sets = ["attack.norm=l2", "attack.eps=1.5", "attack.step=0.5", "train.epochs=1"]
    args = [f"--set={s}" for s in sets]
    r = wb(
        "run",
        str(tiny_preset),
        "--headless",
        *args,
        "--name",
        "l2",
        "--runs-dir",
        "r",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert "L2, eps 1.5" in r.stdout  # the headless final table
    best = tmp_path / "r" / "l2" / "best.safetensors"
    r = wb("inspect", str(best), cwd=tmp_path)
    assert r.returncode == 0 and "L2, eps 1.5" in r.stdout, r.stdout
    r = wb("eval", str(best), "--suite", "quick", "--samples", "16", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "quick suite, L2, eps 1.5" in r.stdout
    r = wb("eval", str(best), "--suite", "quick", "--samples", "16", "--json", cwd=tmp_path)
    doc = json.loads(r.stdout)
    assert (doc["norm"], doc["eps"]) == ("l2", 1.5)
    assert doc["columns"]["PGD-2"]["norm"] == "l2"


def test_a_new_norm_is_one_registered_geometry(tiny_preset):
    """A norm registered from outside the folder (as a new file in engine/attacks/norms/ would
    register itself) works in presets, headers and the searches with no other change: here
    L-inf's geometry under another name must give L-inf's very examples."""
    from engine.attacks.norms.linf import LInf
    from engine.spec.registry import NORMS as REGISTRY

    REGISTRY.register("lcopy")(type("LCopy", (LInf,), {}))
    try:
        cfg = load_preset(tiny_preset, ["attack.norm=lcopy", "attack.eps=0.1"])
        assert cfg.attack.norm == "lcopy" and ThreatModel("lcopy", 0.1).label == "lcopy, eps 0.1"
        with pytest.raises(ConfigError, match=r"attack\.eps"):  # L-inf's cap came with it
            load_preset(tiny_preset, ["attack.norm=lcopy", "attack.eps=2"])
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
        x, y = torch.rand(6, 1, 4, 4), torch.randint(0, 3, (6,))
        outs = []
        for norm in ("linf", "lcopy"):
            torch.manual_seed(1)
            outs.append(PGD(ThreatModel(norm, 0.1), 0.03, 5)(model, x, y))
        assert torch.equal(*outs)
    finally:
        del REGISTRY._entries["lcopy"]


def test_no_code_outside_the_norms_folder_names_a_norm_other_than_the_default():
    """The one-file rule, checked: outside engine/attacks/norms/, no engine or app code holds a
    norm's name as a value ("linf", the default for files made before norms, is allowed)."""
    import ast
    from pathlib import Path

    from engine.spec.registry import norm_names

    root = Path(__file__).resolve().parent.parent
    names = set(norm_names()) - {"linf"}
    found = []
    for path in [*root.glob("engine/**/*.py"), *root.glob("workbench/**/*.py")]:
        if "norms" in path.relative_to(root).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in names:
                found.append(f"{path.relative_to(root)}:{node.lineno} {node.value!r}")
    assert not found, found
