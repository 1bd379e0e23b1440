"""Every preset loads through the real loader, builds its model, and says what its paper says."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine import checkpoint_io as ckpt
from engine.data import DatasetInfo, dataset_info, load_dataset
from engine.eval.suites import load_suite
from engine.models import MODELS, build, build_model
from engine.records.events import read_events
from engine.spec import catalog
from engine.spec.preset_files import load_preset

PRESETS = sorted(catalog.BUILTIN_PRESETS.glob("*.toml"))

# Parameter counts with a 10-class linear head: the reference implementations'
# totals (kuangliu / API-Net ResNet-18 11.17M, He et al. ResNet-32 0.46M,
# TRADES WRN-34-10 46.16M, Madry's model.py 45.9M) and the MNIST nets' tests.
PARAMS_10 = {
    "resnet18": (11_173_962, 512),
    "preact_resnet18": (11_172_170, 512),
    "resnet32": (464_154, 64),
    "wrn32_10": (45_901_914, 640),
    "wrn34_10": (46_160_474, 640),
    "madry_cnn": (3_274_634, 1024),
    "smallcnn": (312_202, 200),
    "lenet": (61_706, 84),
    # published layouts (`workbench import`): the same networks in their authors' key names
    "trades_smallcnn": (312_202, 200),
    "apinet_resnet18": (11_173_962, 512),
}
SMALL = ("resnet32", "resnet18", "preact_resnet18")  # cheap enough for a real forward
COLOUR = ("resnet18", "preact_resnet18", "resnet32", "wrn32_10", "wrn34_10")


@pytest.fixture(autouse=True)
def one_thread():
    """Small convolutions on shared cores: a second OpenMP thread spins against other jobs
    (8 s a step instead of 0.2 s for ResNet-32 at batch 32 on a loaded 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def expected_params(arch: str, head: str, classes: int) -> int:
    n10, dim = PARAMS_10[arch]
    body = n10 - (dim * 10 + 10)
    return body + dim * classes + (classes if head == "linear" else 0)


def test_every_arch_has_a_known_parameter_count():
    builtin = {name for name, f in MODELS.items() if f.__module__.startswith("engine.")}
    assert builtin - {"external"} == set(
        PARAMS_10
    )  # "external": a factory's, any size  # tests/ may register more (test_registry.py)
    # published figures, to the precision they are quoted in
    assert round(PARAMS_10["resnet18"][0] / 1e6, 2) == 11.17
    assert round(PARAMS_10["resnet32"][0] / 1e6, 2) == 0.46
    assert round(PARAMS_10["wrn34_10"][0] / 1e6, 2) == 46.16


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_every_preset_loads_and_builds(path):
    cfg = load_preset(path)
    assert cfg.name == path.stem  # `workbench run NAME` and the run folder agree with the file
    info = dataset_info(cfg.data.dataset)
    with torch.device("meta"):  # shapes and counts without allocating WRN's 46M weights
        model = build(cfg)
        out = model(torch.empty(2, *info.shape))
    assert out.shape == (2, info.num_classes)
    n = sum(p.numel() for p in model.parameters())
    assert n == expected_params(cfg.model.arch, cfg.model.head, info.num_classes)
    assert not any("norm" in k for k in model.state_dict())  # statistics are not weights
    if info.mean is not None and cfg.model.arch in COLOUR:
        assert model.body.norm.mean.shape == (1, 3, 1, 1)


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_named_suites_and_init_checkpoints_point_at_real_things(path):
    cfg = load_preset(path)
    for suite in re.findall(r"--suite (\w+)", cfg.description):
        assert suite in {e.name for e in catalog.suites()}, f"{path.name}: no suite {suite!r}"
        load_suite(suite)
    init = getattr(cfg.method, "init_from", "")
    m = re.fullmatch(r"runs/(\w+)/best\.safetensors", init)
    if m:  # the fine-tune starts from another preset's run: same data, same network
        parent = load_preset(catalog.resolve_preset(m.group(1)))
        assert parent.method.name == "madry"
        assert (parent.data.dataset, parent.model.arch) == (cfg.data.dataset, cfg.model.arch)


def table(prefix: str) -> list:
    return [load_preset(p) for p in PRESETS if p.stem.startswith(prefix)]


def test_atblr_cifar_presets_follow_section_4_2():
    cfgs = [c for c in table("cifar1") if c.model.arch in ("resnet32", "wrn32_10")]
    rows = {(c.data.dataset, c.model.arch, c.method.name) for c in cfgs}
    # Tables 2 and 3: two datasets x two networks x natural / Madry / ATBLR
    assert rows == {
        (d, a, m)
        for d in ("cifar10", "cifar100")
        for a in ("resnet32", "wrn32_10")
        for m in ("standard", "madry", "atblr")
    }
    for c in cfgs:
        a = c.attack
        assert (a.kind, a.steps) == ("pgd", 10)
        assert math.isclose(a.eps, 8 / 255) and math.isclose(a.step, 2 / 255)
        assert (c.optim.name, c.optim.lr, c.data.batch_size, c.train.epochs) == (
            "adam",
            1e-3,
            128,
            200,
        )
        d = c.data
        assert (d.augment, d.flip, d.crop_padding, d.pad_mode) == (True, True, 4, "reflect")
        if c.method.name == "atblr":
            assert c.model.head == "gaussian" and c.method.lam == 0.02
            assert c.method.adv_cap == 0.02  # as the MNIST presets; documented in the file


def test_apinet_presets_follow_section_4_1():
    cfgs = [  # the paper's L-inf presets (cifar10_resnet18_madry_l2 is RobustBench's L2 one)
        c for c in table("cifar10_resnet18") + table("svhn_resnet18") if c.attack.norm == "linf"
    ]
    rows = {(c.data.dataset, c.method.name) for c in cfgs}
    assert rows == {
        (d, m) for d in ("cifar10", "svhn") for m in ("standard", "madry", "trades", "apinet")
    }
    for c in cfgs:
        a = c.attack
        assert (c.model.arch, a.steps, a.step) == ("resnet18", 7, 0.007)
        assert math.isclose(a.eps, 8 / 255)
        assert c.data.crop_padding == 4 and c.data.flip and c.data.pad_mode == "zeros"
        if c.method.name == "trades":
            assert c.method.beta == 6.0
        if c.method.name == "apinet":
            d = c.defense
            assert (d.name, d.steps, d.step) == ("apinet", 8, 0.007)
            eps_ap = {"cifar10": 14 / 255, "svhn": 12 / 255}[c.data.dataset]
            assert math.isclose(d.eps_ap, eps_ap)
            assert c.optim.lr == 0.001  # fine-tuning after both decays of the public code


@pytest.mark.parametrize("arch", SMALL)
def test_small_cifar_nets_normalise_inside_and_fit_cifar100(arch):
    info = dataset_info("cifar100")
    torch.manual_seed(0)
    model = build_model(arch, "gaussian", info.shape, 100, mean=info.mean, std=info.std).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (2, 100)
        mean = torch.tensor(info.mean).view(1, 3, 1, 1)
        std = torch.tensor(info.std).view(1, 3, 1, 1)
        norm = model.body.norm
        model.body.norm = nn.Identity()  # the same weights, fed pre-normalised pixels
        by_hand = model((x - mean) / std)
        model.body.norm = norm
    assert torch.allclose(out, by_hand, atol=1e-5)
    assert torch.allclose(norm.mean.flatten(), mean.flatten())
    assert torch.allclose(norm.std.flatten(), std.flatten())
    # a model built without statistics shares the state_dict keys but not the function
    bare = build_model(arch, "gaussian", info.shape, 100)
    bare.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert not torch.allclose(bare.eval()(x), out, atol=1e-4)


def test_wrn_depths_count_what_their_names_say():
    def convs(arch: str) -> tuple[int, int]:
        with torch.device("meta"):
            body, _ = MODELS.get(arch)(DatasetInfo((3, 32, 32), 10))
        ks = [m.kernel_size for m in body.modules() if isinstance(m, nn.Conv2d)]
        return sum(k == (3, 3) for k in ks), sum(k == (1, 1) for k in ks)

    assert convs("wrn32_10") == (31, 0)  # + FC = 32 weighted layers (Madry's model.py)
    assert convs("wrn34_10") == (31, 3)  # 6n + 4 with n = 5 counts the 1x1 shortcuts
    assert convs("resnet32") == (31, 0)  # He et al.'s ResNet-32, option A shortcuts
    assert convs("resnet18") == (17, 3)


def test_a_synthetic_cifar_net_learns_in_a_few_steps():
    data = load_dataset("synthetic-cifar10")
    info = dataset_info("synthetic-cifar10")
    torch.manual_seed(0)
    model = build_model("resnet32", "linear", info.shape, 10, mean=info.mean, std=info.std)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y = data.train_x.float() / 255, data.train_y
    losses = []
    for i in range(8):
        loss = F.cross_entropy(model(x[i * 32 : (i + 1) * 32]), y[i * 32 : (i + 1) * 32])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 2.0  # chance level, ln 10 = 2.3
    assert sum(losses[-3:]) / 3 < 0.7 * losses[0]


def test_a_real_cifar_preset_runs_end_to_end_on_synthetic_data(tmp_path):
    from engine.records.events import EventWriter
    from engine.train.trainer import Trainer

    overrides = [
        "data.dataset=synthetic-cifar10",
        "data.train_limit=64",
        "data.batch_size=32",
        "data.eval_batch_size=64",
        "attack.steps=1",
        "train.epochs=1",
        "train.log_every=1",
        "eval.samples=16",
        "eval.steps=1",
        "checkpoint.every=1",
    ]
    cfg = load_preset(catalog.resolve_preset("cifar10_resnet32_atblr"), overrides)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    writer = EventWriter(run / "events.jsonl")
    trainer = Trainer(cfg, load_dataset(cfg.data.dataset), run, writer, torch.device("cpu"))
    assert trainer.run().status == "finished"
    writer.close()
    steps = [e for e in read_events(run / "events.jsonl") if e["type"] == "step"]
    assert len(steps) == 2 and {"lkd_clean", "lkd_adv"} <= set(steps[0]["parts"])
    assert all(math.isfinite(e["loss"]) for e in steps)
    # the checkpoint reloads into a model built from its own config (normalisation included)
    tensors, meta = ckpt.load(run / "last.safetensors")
    fresh = build(meta["config"]).eval()
    ckpt.unpack_model(fresh, tensors, "last")
    trainer.model.eval()
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(fresh(x), trainer.model(x), atol=1e-5)


def test_the_madry_cnn_presets_train_in_fp32_and_the_smallcnn_ones_take_the_fast_path():
    """bf16 autocast left the Madry CNN at chance where fp32 learned (bench/README.md)."""
    for path in PRESETS:
        cfg = load_preset(path)
        if cfg.model.arch == "madry_cnn":
            assert cfg.perf.amp == "off", path.name
    assert load_preset(catalog.BUILTIN_PRESETS / "demo.toml").perf.amp == "auto"
    assert load_preset(catalog.BUILTIN_PRESETS / "mnist5k_madry.toml").perf.amp == "auto"
