"""Models from outside the workbench: `eval --model`, `workbench import`, published layouts.

The model `--model` evaluates is defined in this file (`make_net`): the factory
spec is this file's path, as a user names their own `net.py:make`.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from typer.testing import CliRunner

from workbench import cli

HERE = Path(__file__).resolve()


class TinyNet(nn.Module):
    """A user's own MNIST classifier, in module names the workbench has never seen."""

    def __init__(self, classes: int = 10, width: int = 4) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, width, 5, stride=2), nn.ReLU())
        self.out = nn.Linear(width * 12 * 12, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(x).flatten(1))


def make_net() -> nn.Module:
    return TinyNet()


def make_seven() -> nn.Module:
    return TinyNet(classes=7)


def make_wide() -> nn.Module:
    return TinyNet(width=6)


def make_raising() -> nn.Module:
    raise RuntimeError("this factory wants a GPU")


def spec(name: str = "make_net") -> str:
    return f"{HERE}:{name}"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: a second thread only adds contention on a busy machine (10x slower here)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def invoke(*args: str):
    return CliRunner().invoke(cli.app, [str(a) for a in args])


@pytest.fixture(scope="module")
def tiny_weights(mnist5k, tmp_path_factory) -> Path:
    """TinyNet trained for one pass over 2,000 digits (~90% clean), saved as safetensors."""
    torch.manual_seed(0)
    net = make_net()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    x, y = mnist5k.train_x[:2000].float() / 255, mnist5k.train_y[:2000]
    for i in range(0, 2000, 50):
        loss = nn.functional.cross_entropy(net(x[i : i + 50]), y[i : i + 50])
        opt.zero_grad()
        loss.backward()
        opt.step()
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_file(net.state_dict(), str(path))
    return path


def reference(weights: Path) -> nn.Module:
    from safetensors.torch import load_file

    net = make_net()
    net.load_state_dict(load_file(str(weights)))
    return net.eval()


def saved(res) -> dict:
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


def test_a_model_from_this_file_evaluates_as_imported(tiny_weights, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    common = ("--suite", "quick", "--set", "eval.steps=5", "--samples", "32", "--device", "cpu")
    common = (*common, "--json")
    model = ("--model", spec(), "--weights", tiny_weights, "--dataset", "mnist-5k")
    direct = saved(invoke("eval", *model, *common))
    out = tmp_path / "tiny.safetensors"
    res = invoke("import", *model, "--out", out)
    assert res.exit_code == 0 and out.is_file(), res.output
    imported = saved(invoke("eval", out, *common))

    a = json.loads(Path(direct["saved"]).read_text())
    b = json.loads(Path(imported["saved"]).read_text())
    assert a["per_example"] == b["per_example"]  # the same outcome on every example
    assert a["table"] == b["table"] and a["n"] == b["n"] == 32
    clean = a["per_example"]["clean"]
    assert 16 < sum(clean) < 32  # a real classifier: right on most, wrong on some
    assert a["eps"] == b["eps"] == 0.3  # MNIST's usual threat model when --eps is not given
    for doc in (a, b):
        src = doc["source_model"]
        assert src["factory"] == spec() and src["weights"] == "tiny.safetensors"
        assert (
            src["weights_sha256"]
            == __import__("hashlib").sha256(tiny_weights.read_bytes()).hexdigest()
        )
        assert src["factory_sha256"] == __import__("hashlib").sha256(HERE.read_bytes()).hexdigest()
    # eval --model keeps its evidence beside the weights
    assert Path(direct["saved"]).parent == tiny_weights.parent / "eval"


@pytest.fixture(scope="module")
def imported(tiny_weights, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("imported") / "tiny.safetensors"
    res = invoke(
        "import", "--model", spec(), "--weights", tiny_weights, "--dataset", "mnist-5k",
        "--eps", "0.2", "--out", out,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    return out


def lenet_checkpoint(data, path: Path) -> Path:
    """A workbench LeNet trained briefly (plain CE, 40 steps) and saved as the trainer does."""
    from engine.checkpoint_io import base_metadata, pack_model, save
    from engine.models import build
    from engine.spec.config import validate

    cfg = validate({"name": "lenet", "data": {"dataset": "mnist-5k"}, "model": {"arch": "lenet"}})
    torch.manual_seed(1)
    model = build(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    x, y = data.train_x[:2000].float() / 255, data.train_y[:2000]
    for i in range(0, 2000, 50):
        loss = nn.functional.cross_entropy(model(x[i : i + 50]), y[i : i + 50])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return save(path, pack_model(model.eval()), base_metadata(cfg, 1, {}, "weights"))


def test_an_imported_checkpoint_inspects_diffs_and_sweeps_like_any_other(
    imported, tiny_weights, mnist5k, tmp_path
):
    from engine.checkpoint_io import load_model
    from engine.eval.evaluate import evaluate_checkpoint
    from engine.eval.sweep import eps_sweep
    from engine.records.checkpoint_header import read_header

    head = saved(invoke("inspect", imported, "--json"))
    ext = head["metadata"]["external"]
    assert ext["weights"] == "tiny.safetensors" and ext["strip_prefix"] == []
    assert head["metadata"]["arch"] == "external"
    assert "imported from" in invoke("inspect", imported).output
    from workbench.checkpoint_views import checkpoint_rows  # the app's inspector shows these

    rows = dict(checkpoint_rows(*read_header(imported)))
    assert rows["imported from"] == spec() and rows["arch"] == "external"
    assert rows["weights sha256"] == ext["weights_sha256"]

    # a workbench-trained checkpoint has no `external`
    ours = lenet_checkpoint(mnist5k, tmp_path / "lenet" / "best.safetensors")
    assert "external" not in read_header(ours)[1]

    kw = {"sets": ["eval.steps=3"], "samples": 32, "device": "cpu"}
    a = evaluate_checkpoint(imported, "quick", **kw)
    b = evaluate_checkpoint(ours, "quick", **kw)
    assert a["source_model"]["weights"] == "tiny.safetensors" and b["source_model"] is None
    doc = saved(invoke("diff", a["saved"], b["saved"], "--json"))
    assert doc["n"] == 32 and [r["column"] for r in doc["rows"]][:2] == ["clean", "PGD-3"]
    clean = doc["rows"][0]
    pa, pb = a["per_example"]["clean"], b["per_example"]["clean"]
    assert clean["a_only"] == sum(1 for u, v in zip(pa, pb, strict=True) if u and not v)
    assert clean["b_only"] == sum(1 for u, v in zip(pa, pb, strict=True) if v and not u)

    # the sweep's eps = 0 point is the reference module's own clean accuracy
    _, model = load_model(imported)
    from engine.data import load_dataset

    data = load_dataset("mnist-5k")
    x, y = data.test_x[:40].float() / 255, data.test_y[:40]
    ref = reference(tiny_weights)
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))
        want = (ref(x).argmax(1) == y).float().mean().item() * 100
    sw = eps_sweep([imported], 0.2, 3, 5, samples=40, device="cpu", out_dir=tmp_path / "sw")
    acc = sw["curves"][0]["accuracy"]
    assert acc[0] == pytest.approx(want) and acc[-1] <= acc[0]


def test_sweep_takes_a_model_from_outside_beside_its_imported_checkpoint(
    imported, tiny_weights, tmp_path
):
    model = ("--model", spec(), "--weights", tiny_weights, "--dataset", "mnist-5k", "--eps", "0.2")
    opts = ("--points", "3", "--steps", "4", "--samples", "24", "--device", "cpu")
    doc = saved(invoke("sweep", imported, *model, *opts, "--out", tmp_path, "--json"))
    foreign, ours = doc["curves"]  # --model first, then the checkpoints given
    assert foreign["checkpoint"] == str(tiny_weights) and ours["checkpoint"] == str(imported)
    assert doc["eps"] == pytest.approx([0, 0.2, 0.4])  # eps-max: twice the model's eps
    assert foreign["accuracy"] == ours["accuracy"] and foreign["n"] == 24
    a, b = (json.loads(Path(c["saved"]).read_text()) for c in (foreign, ours))
    assert a["per_example"] == b["per_example"]
    assert a["source_model"]["weights_sha256"] == b["source_model"]["weights_sha256"]


def test_ablate_takes_a_model_from_outside_as_its_imported_checkpoint(imported, tiny_weights):
    """API-Net's eps_ap ablation over --model equals the same over the imported checkpoint."""
    model = ("--model", spec(), "--weights", tiny_weights, "--dataset", "mnist-5k", "--eps", "0.2")
    opts = ("--eps-ap", "0,8/255", "--samples", "8", "--set", "defense.steps=1")
    opts = (*opts, "--set", "eval.steps=2", "--device", "cpu", "--json")
    foreign = json.loads(invoke("ablate", *model, *opts).output)
    ours = json.loads(invoke("ablate", imported, *opts).output)
    assert [r["eps_ap"] for r in foreign["rows"]] == pytest.approx([0, 8 / 255])
    assert [r["accuracy"] for r in foreign["rows"]] == [r["accuracy"] for r in ours["rows"]]
    both = invoke("ablate", imported, *model, *opts)
    assert both.exit_code == 2 and "one of them" in both.output


def test_a_module_factory_and_a_file_that_imports_its_neighbours_work(tiny_weights, tmp_path):
    from engine.checkpoint_io import load_model

    repo = tmp_path / "their_repo"
    (repo / "models").mkdir(parents=True)
    (repo / "models" / "__init__.py").write_text("")
    (repo / "models" / "tiny.py").write_text(HERE.read_text())
    (repo / "build.py").write_text("from models.tiny import make_net\n")  # a repository's style
    x = torch.rand(4, 1, 28, 28)
    ref = reference(tiny_weights)
    for i, model in enumerate(("tests.test_external_models:make_net", f"{repo}/build.py:make_net")):
        out = tmp_path / f"m{i}.safetensors"
        res = invoke("import", "--model", model, "--weights", tiny_weights,
                     "--dataset", "mnist-5k", "--out", out)  # fmt: skip
        assert res.exit_code == 0, res.output
        cfg, net = load_model(out)
        assert cfg.model.factory.endswith(":make_net")
        with torch.no_grad():
            assert torch.equal(net(x), ref(x))


def trades_reference() -> nn.Module:
    """TRADES' SmallCNN written here with the module names of its public models/small_cnn.py."""

    class SmallCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            relu = nn.ReLU(True)
            self.feature_extractor = nn.Sequential(
                OrderedDict(
                    [
                        ("conv1", nn.Conv2d(1, 32, 3)),
                        ("relu1", relu),
                        ("conv2", nn.Conv2d(32, 32, 3)),
                        ("relu2", relu),
                        ("maxpool1", nn.MaxPool2d(2, 2)),
                        ("conv3", nn.Conv2d(32, 64, 3)),
                        ("relu3", relu),
                        ("conv4", nn.Conv2d(64, 64, 3)),
                        ("relu4", relu),
                        ("maxpool2", nn.MaxPool2d(2, 2)),
                    ]
                )
            )
            self.classifier = nn.Sequential(
                OrderedDict(
                    [
                        ("fc1", nn.Linear(64 * 4 * 4, 200)),
                        ("relu1", relu),
                        ("drop", nn.Dropout(0.5)),
                        ("fc2", nn.Linear(200, 200)),
                        ("relu2", relu),
                        ("fc3", nn.Linear(200, 10)),
                    ]
                )
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.classifier(self.feature_extractor(x).view(-1, 64 * 4 * 4))

    torch.manual_seed(7)
    return SmallCNN().eval()


@pytest.mark.parametrize("wrapped", [False, True], ids=["state-dict", "wrapped-module"])
def test_a_trades_layout_state_dict_imports_with_bit_identical_logits(wrapped, mnist5k, tmp_path):
    from engine.checkpoint_io import load_model

    ref = trades_reference()
    state = ref.state_dict()
    weights = tmp_path / "model-nn-epoch100.pt"  # TRADES ships a plain torch.save file
    if wrapped:  # a DataParallel checkpoint dict, as many repositories save them
        torch.save({"epoch": 100, "state_dict": {f"module.{k}": v for k, v in state.items()}},
                   weights)  # fmt: skip
    else:
        torch.save(state, weights)
    out = tmp_path / "trades.safetensors"
    strip = ("--strip-prefix", "module.") if wrapped else ()
    res = invoke("import", "--model", "trades:smallcnn", "--weights", weights,
                 "--dataset", "mnist-5k", *strip, "--out", out)  # fmt: skip
    assert res.exit_code == 0, res.output
    cfg, model = load_model(out)
    assert cfg.model.arch == "trades_smallcnn" and cfg.model.factory is None
    assert sum(p.numel() for p in model.parameters()) == 312_202  # the same as `smallcnn`
    x = mnist5k.test_x[:64].float() / 255
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))
    assert sorted(k for k in model.state_dict() if k.startswith("head")) == [
        "head.fc.bias",
        "head.fc.weight",
    ]


def apinet_reference() -> nn.Module:
    """API-Net's ResNet18 written here from its public models/resnet.py: module names, a
    full-spatial average pool, `linear`, and no input normalisation (its loaders only
    ToTensor)."""

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.shortcut = nn.Sequential()
            if stride != 1 or cin != cout:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
                )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = torch.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            out += self.shortcut(x)
            return torch.relu(out)

    class ResNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            cin, stages = 64, []
            for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
                stages.append(nn.Sequential(Block(cin, planes, stride), Block(planes, planes, 1)))
                cin = planes
            self.layer1, self.layer2, self.layer3, self.layer4 = stages
            self.linear = nn.Linear(512, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = torch.relu(self.bn1(self.conv1(x)))
            out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
            out = F.avg_pool2d(out, out.shape[-1])
            return self.linear(out.view(out.size(0), -1))

    torch.manual_seed(11)
    net = ResNet()
    for m in net.modules():  # running statistics that are not the identity, as trained ones
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def test_an_apinet_checkpoint_as_its_code_saves_it_imports_with_its_logits(tmp_path):
    from engine.checkpoint_io import load_model

    ref = apinet_reference()
    # train_cifar.py saves {'net': net.state_dict(), 'acc': acc, 'epoch': epoch} of a
    # DataParallel-wrapped net on CUDA, so every key starts with "module."
    weights = tmp_path / "ResNet18.pth"
    torch.save({"net": {f"module.{k}": v for k, v in ref.state_dict().items()},
                "acc": 0.43, "epoch": 89}, weights)  # fmt: skip
    out = tmp_path / "apinet.safetensors"
    res = invoke("import", "--model", "apinet:resnet18", "--weights", weights,
                 "--dataset", "cifar10", "--strip-prefix", "module.", "--out", out)  # fmt: skip
    assert res.exit_code == 0, res.output
    cfg, model = load_model(out)
    assert cfg.model.arch == "apinet_resnet18" and cfg.model.mean is None
    assert sum(p.numel() for p in model.parameters()) == 11_173_962  # the same as `resnet18`
    assert torch.equal(model.head.fc.weight, ref.linear.weight)
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), ref(x), atol=1e-5, rtol=0)
        assert torch.equal(model(x).argmax(1), ref(x).argmax(1))

    normed = tmp_path / "apinet-normalised.safetensors"  # a model trained on standardised input
    res = invoke("import", "--model", "apinet:resnet18", "--weights", weights,
                 "--dataset", "cifar10", "--strip-prefix", "module.", "--normalize", "cifar10",
                 "--out", normed)  # fmt: skip
    assert res.exit_code == 0, res.output
    cfg, model = load_model(normed)
    mean, std = torch.tensor(cfg.model.mean), torch.tensor(cfg.model.std)
    assert cfg.model.mean == pytest.approx([0.4914, 0.4822, 0.4465])
    with torch.no_grad():  # the normalisation happens inside the imported model: eps in pixels
        want = ref((x - mean[:, None, None]) / std[:, None, None])
        assert torch.allclose(model(x), want, atol=1e-5, rtol=0)


def test_torchvision_names_import(tmp_path):
    from engine.checkpoint_io import load_model

    tv = tmp_path / "tv.safetensors"
    res = invoke("import", "--model", "torchvision:resnet18", "--dataset", "cifar10", "--out", tv)
    assert res.exit_code == 0, res.output
    cfg, model = load_model(tv)
    assert cfg.model.factory == "torchvision:resnet18"
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)  # num_classes from the dataset


def test_a_pickle_with_code_is_refused_and_never_run(tiny_weights, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "PWNED"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = tmp_path / "evil.pt"
    torch.save({"weight": Payload()}, evil)
    for cmd in ("import", "eval"):
        res = invoke(cmd, "--model", spec(), "--weights", evil, "--dataset", "mnist-5k")
        assert res.exit_code == 2, res.output
        assert res.output.strip().count("\n") == 0 and "refused" in res.output
        assert "evil.pt" in res.output and "arbitrary pickled code" in res.output
        assert not marker.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.pt"]  # nothing written


def truncated(src: Path, dest: Path) -> Path:
    dest.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    return dest


BAD = {
    "unknown module": (["--model", "no_such_module_xyz:make"], "cannot import module"),
    "unknown factory": (["--model", f"{HERE}:make_nothing"], "no callable 'make_nothing'"),
    "factory raises": (["--model", spec("make_raising")], "wants a GPU"),
    "missing and unexpected keys": (["--weights", "{other}"], "missing keys body.features.0"),
    "shape mismatch": (["--model", spec("make_wide")], "shape mismatch body.features.0.weight"),
    "classes": (["--model", spec("make_seven")], "7 outputs, the dataset 10 classes"),
    "eps": (["--eps", "2"], "--eps"),
    "negative eps": (["--eps", "-1/255"], "--eps"),
    "truncated safetensors": (["--weights", "{trunc_st}"], "truncated"),
    "truncated torch file": (["--weights", "{trunc_pt}"], "truncated"),
    "foreign file": (["--weights", "{foreign}"], "not a PyTorch or safetensors"),
    "unknown dataset": (["--dataset", "imagenet-1k"], "unknown dataset"),
    "bad normalize": (["--normalize", "0.5/0"], "--normalize"),
    "torchvision name": (["--model", "torchvision:resnet_nope"], "torchvision"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
@pytest.mark.parametrize("cmd", ["import", "eval"])
def test_every_bad_option_is_one_line_exit_2_and_writes_nothing(
    case, cmd, tiny_weights, tmp_path, monkeypatch
):
    work = tmp_path / "work"
    work.mkdir()
    files = {
        "other": tmp_path / "other.safetensors",
        "trunc_st": truncated(tiny_weights, tmp_path / "cut.safetensors"),
        "trunc_pt": tmp_path / "cut.pt",
        "foreign": tmp_path / "notes.pt",
    }
    save_file({"conv.weight": torch.zeros(2)}, str(files["other"]))
    torch.save(reference(tiny_weights).state_dict(), tmp_path / "full.pt")
    truncated(tmp_path / "full.pt", files["trunc_pt"])
    files["foreign"].write_text("these are not weights\n")
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(tiny_weights.read_bytes())
    before = sorted(p.name for p in tmp_path.rglob("*"))

    opts = {"--model": spec(), "--weights": str(weights), "--dataset": "mnist-5k"}
    extra, expected = BAD[case]
    for key, value in zip(extra[::2], extra[1::2], strict=True):
        opts[key] = value.format(**{k: str(v) for k, v in files.items()})
    args = [a for kv in opts.items() for a in kv]
    monkeypatch.chdir(work)
    res = invoke(cmd, *args, "--samples", "8") if cmd == "eval" else invoke(cmd, *args)
    assert res.exit_code == 2, res.output
    assert res.output.strip().count("\n") == 0, res.output
    assert expected in res.output
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written anywhere


def test_an_imported_model_whose_factory_file_changed_is_refused(tiny_weights, tmp_path):
    net = tmp_path / "net.py"
    net.write_text(HERE.read_text())
    out = tmp_path / "tiny.safetensors"
    res = invoke("import", "--model", f"{net}:make_net", "--weights", tiny_weights,
                 "--dataset", "mnist-5k", "--out", out)  # fmt: skip
    assert res.exit_code == 0, res.output
    with net.open("a") as fh:
        fh.write("\nmake_net = make_wide\n")
    res = invoke("eval", out, "--samples", "8")
    assert res.exit_code == 2 and "changed since the import" in res.output
    assert not (tmp_path / "eval").exists()
    os.remove(net)
    res = invoke("eval", out, "--samples", "8")
    assert res.exit_code == 2 and "is missing" in res.output


@pytest.mark.parametrize(
    ("model", "key"),
    [
        ({"arch": "external"}, "model.arch"),
        ({"arch": "lenet", "factory": "torchvision:resnet18"}, "model.factory"),
        ({"arch": "lenet", "mean": [0.1]}, "model.mean"),
        ({"arch": "lenet", "mean": [0.1, 0.2], "std": [0.3]}, "model.mean"),
    ],
)
def test_a_config_refuses_half_a_foreign_model_description(model, key):
    from engine.spec.config import validate
    from engine.spec.errors import ConfigError

    with pytest.raises(ConfigError, match=f"key '{key}'"):
        validate({"name": "x", "model": model})


def test_a_model_from_outside_is_a_substitute_as_its_imported_checkpoint(
    imported, tiny_weights, mnist5k, tmp_path
):
    """`eval --source SPEC --source-weights W` crafts the transfer columns on the same model
    as `--source` of its imported checkpoint: the same outcome on every example."""
    target = lenet_checkpoint(mnist5k, tmp_path / "lenet" / "best.safetensors")
    suite = tmp_path / "transfer.toml"
    suite.write_text(
        'name = "transfer"\n[[attack]]\nname = "T-FGSM"\nkind = "fgsm"\nsource = "substitute"\n'
        '[[attack]]\nname = "T-PGD"\nkind = "pgd"\nsteps = 3\nsource = "substitute"\n'
        "[sanity]\nenabled = false\n"
    )
    common = (target, "--suite", suite, "--samples", "32", "--device", "cpu", "--json")
    by_ckpt = saved(invoke("eval", *common, "--source", imported))
    foreign = ("--source", spec(), "--source-weights", tiny_weights)
    by_spec = saved(invoke("eval", *common, *foreign))
    a, b = (json.loads(Path(d["saved"]).read_text()) for d in (by_ckpt, by_spec))
    assert a["per_example"] == b["per_example"] and a["table"] == b["table"]
    assert sum(a["per_example"]["T-PGD"]) < sum(a["per_example"]["clean"])  # transfer bites
    assert b["source"] == f"{spec()} ({tiny_weights})" and a["source"] == str(imported)
    sha = __import__("hashlib").sha256(tiny_weights.read_bytes()).hexdigest()
    assert b["source_external"]["weights_sha256"] == sha and a["source_external"] is None

    before = sorted(p.name for p in target.parent.rglob("*"))
    for args, why in (
        (("--source-weights", tiny_weights), "--source-weights: goes with --source"),
        (("--source", imported, "--source-weights", tiny_weights), "not the checkpoint"),
        (("--source", tmp_path / "nope"), "no such checkpoint"),
        (("--source", spec("make_seven"), "--source-weights", tiny_weights), "--source "),
    ):
        res = invoke("eval", *common, *args)
        assert res.exit_code == 2 and why in res.output, (args, res.output)
        assert len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output
    assert sorted(p.name for p in target.parent.rglob("*")) == before


def test_the_app_inspects_and_evaluates_an_imported_checkpoint(imported, tmp_path, monkeypatch):
    """The app's inspector on an imported checkpoint: its provenance rows, then `k` (the quick
    suite) evaluates it in the app, the saved evidence naming the foreign model."""
    import asyncio

    from tests.conftest import wait_for
    from workbench.tui.app import WorkbenchApp
    from workbench.tui.inspect_screen import InspectScreen

    monkeypatch.chdir(tmp_path)
    app = WorkbenchApp(Path("runs"), [tmp_path], eval_samples=20)

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            app.action_inspect(imported)
            await wait_for(
                pilot, lambda: isinstance(app.screen, InspectScreen) and app.screen.query("#evals")
            )
            await pilot.pause()
            screen = app.screen
            meta = screen.query_one("#meta")
            rows = {str(meta.get_row_at(i)[0]): str(meta.get_row_at(i)[1]) for i in
                    range(meta.row_count)}  # fmt: skip
            assert rows["imported from"] == spec() and rows["arch"] == "external"
            evals = screen.query_one("#evals")
            before = evals.row_count
            await pilot.press("k")
            await wait_for(pilot, lambda: evals.row_count == before + 1, timeout=120)
            rows = [evals.get_row_at(i)[1:3] for i in range(evals.row_count)]
            assert ["quick", "20"] in rows  # other tests left their evaluations beside it

    asyncio.run(scenario())
    saved = [p for p in (imported.parent / "eval").glob("quick-*.json") if ".card." not in p.name]
    (doc,) = [d for d in map(json.loads, map(Path.read_text, saved)) if d["n"] == 20]  # the app's
    assert doc["source_model"]["factory"] == spec()
