"""Evaluation researchers can trust: suites, per-example worst case, sanity checks, evidence."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from engine import checkpoint_io as ckpt
from engine.data import load_dataset
from engine.eval import WORST
from engine.eval.evaluate import evaluate_checkpoint, evaluate_model
from engine.eval.run import run_suite
from engine.eval.suites import load_suite, resolve_columns
from engine.spec.config import validate
from tests.conftest import ROOT

SMALL_SUITE = """
name = "small"
description = "the paper suite's shape at test cost"
[[attack]]
name = "FGSM"
kind = "fgsm"
[[attack]]
name = "PGD-10"
kind = "pgd"
steps = 10
[[attack]]
name = "CW-10"
kind = "pgd"
loss = "cw"
steps = 10
[sanity]
enabled = true
base = "PGD-10"
eps_fractions = [0.5]
"""


def lenet_config(eps: float = 0.1, step: float = 0.025, **sections):
    raw = {
        "name": "lenet-test",
        "data": {"dataset": "mnist-5k", "eval_batch_size": 500},
        "model": {"arch": "lenet", "head": "linear"},
        "attack": {"eps": eps, "step": step, "steps": 10},
        **sections,
    }
    return validate(raw)


def small_suite(tmp_path: Path, text: str = SMALL_SUITE) -> Path:
    p = tmp_path / "small.toml"
    p.write_text(text, encoding="utf-8")
    return p


def evaluate(model, cfg, suite_path, x, y, **kw):
    spec = load_suite(str(suite_path))
    cols = resolve_columns(spec, cfg, kw.get("source") is not None)
    return evaluate_model(spec, cols, model, x, y, 10, seed=0, **kw)


def statuses(checks) -> dict[str, str]:
    return {c.name: c.status for c in checks}


class RoundInput(nn.Module):
    """Gradient masking by quantising the input: torch.round has zero gradient everywhere."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(torch.round(x * 4) / 4)


class Saturated(nn.Module):
    """Gradient masking by a saturated softmax: CE's gradient underflows to exactly 0."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x) * 1e4


def test_worst_case_is_the_per_example_and_of_the_columns(trained_lenet, test_batch):
    from engine.attacks import build_attack

    x, y = test_batch[0][:200], test_batch[1][:200]
    attacks = {
        "FGSM": build_attack("fgsm", 0.08),
        "PGD": build_attack("pgd", 0.08, 0.04, 2),
        "CW": build_attack("pgd", 0.08, 0.04, 2, loss="cw"),
    }
    res = run_suite(trained_lenet, x, y, attacks, batch_size=64)
    cols = [res.correct[k] for k in ("clean", "FGSM", "PGD", "CW")]
    expected = cols[0] & cols[1] & cols[2] & cols[3]
    assert torch.equal(res.worst_case, expected)
    assert res.table()[WORST] == pytest.approx(100 * expected.float().mean().item())
    # the columns disagree per example, so the worst case is below every column: the
    # minimum of aggregate accuracies would overstate robustness
    assert res.table()[WORST] < min(res.accuracy(k) for k in ("FGSM", "PGD", "CW"))


def test_sanity_checks_pass_a_plainly_trained_model(trained_lenet, test_batch, tmp_path):
    x, y = test_batch[0][:200], test_batch[1][:200]
    ev = evaluate(trained_lenet, lenet_config(), small_suite(tmp_path), x, y)
    st = statuses(ev.checks)
    assert "WARN" not in st.values(), [c for c in ev.checks if c.status == "WARN"]
    assert st["eps = 1 drives accuracy to ~0"] == "PASS"
    assert st["accuracy never rises with eps"] == "PASS"
    assert st["iterative >= FGSM, per example"] == "PASS"
    assert 0 < ev.result.accuracy("PGD-10") < ev.result.accuracy("clean")


@pytest.mark.parametrize("mask", [RoundInput, Saturated])
def test_sanity_checks_flag_a_gradient_masked_model(trained_lenet, test_batch, tmp_path, mask):
    x, y = test_batch[0][:200], test_batch[1][:200]
    masked = mask(trained_lenet).eval()
    ev = evaluate(masked, lenet_config(), small_suite(tmp_path), x, y)
    st = statuses(ev.checks)
    assert st["eps = 1 drives accuracy to ~0"] == "WARN"
    warn = next(c for c in ev.checks if c.name == "eps = 1 drives accuracy to ~0")
    assert "gradient" in warn.advice
    # the masked model looks more robust under PGD than the plain model it wraps
    plain = evaluate(trained_lenet, lenet_config(), small_suite(tmp_path), x, y)
    assert ev.result.accuracy("PGD-10") > plain.result.accuracy("PGD-10") + 20


def save_checkpoint(path: Path, model: nn.Module, cfg) -> Path:
    meta = ckpt.base_metadata(cfg, 2, {}, "best")
    ckpt.save(path, ckpt.pack_model(model), meta)
    return path


@pytest.fixture(scope="module")
def lenet_ckpts(trained_lenet, mnist5k, tmp_path_factory):
    """The session's LeNet and an independently trained copy (other seed), as checkpoints."""
    from tests.conftest import train_lenet

    root = tmp_path_factory.mktemp("ckpts")
    cfg = lenet_config()
    target = save_checkpoint(root / "target" / "best.safetensors", trained_lenet, cfg)
    source = save_checkpoint(root / "source" / "best.safetensors", train_lenet(mnist5k, 1), cfg)
    return target, source


def wb(*args: str, cwd: Path, pre: str = "") -> subprocess.CompletedProcess:
    """The CLI in a subprocess; `pre` runs first (e.g. to hide an installed package)."""
    argv = ["workbench", *args]
    code = f"{pre}\nimport sys\nfrom workbench.cli import main\nsys.argv = {argv!r}\nmain()"
    env = {"PYTHONPATH": str(ROOT), "COLUMNS": "200", "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, env=env, timeout=300
    )


def evaluate_checkpoint_pair(tmp_path: Path) -> tuple[Path, Path]:
    """Two LeNets (seeds 0 and 1) evaluated by the small suite on the same 64 examples."""
    from tests.conftest import train_lenet

    data = load_dataset("mnist-5k")
    paths = []
    for seed in (0, 1):
        ckpt_path = save_checkpoint(
            tmp_path / f"m{seed}" / "best.safetensors", train_lenet(data, seed), lenet_config()
        )
        doc = evaluate_checkpoint(ckpt_path, str(small_suite(tmp_path)), samples=64, device="cpu")
        paths.append(Path(doc["saved"]))
    return paths[0], paths[1]


def test_eps_sweep_is_non_increasing_for_a_trained_model(lenet_ckpts, tmp_path):
    from engine.eval.sweep import eps_sweep

    target, _ = lenet_ckpts
    doc = eps_sweep([target], 0.2, 5, 10, samples=200, device="cpu", out_dir=tmp_path)
    acc = doc["curves"][0]["accuracy"]
    assert doc["eps"] == pytest.approx([0, 0.05, 0.1, 0.15, 0.2])
    assert all(b <= a for a, b in itertools.pairwise(acc)), acc
    assert acc[0] > 90 and acc[-1] < 5
    csv_rows = Path(doc["saved_csv"]).read_text().splitlines()
    assert csv_rows[0] == "eps,target,target lo95,target hi95" and len(csv_rows) == 6
    value, lo, hi = (float(v) for v in csv_rows[3].split(",")[1:])
    assert value == pytest.approx(acc[2], abs=1e-3) and lo <= value <= hi
    own = json.loads(Path(doc["curves"][0]["saved"]).read_text())
    assert len(own["per_example"]) == 5 and len(own["per_example"][2]) == 200


def test_loading_and_sweeping_read_a_checkpoint_header_once(lenet_ckpts, tmp_path, monkeypatch):
    from engine.eval import sweep
    from engine.records.checkpoint_header import read_header

    reads: list[Path] = []

    def counting(path):
        reads.append(Path(path))
        return read_header(path)

    monkeypatch.setattr(ckpt, "read_header", counting)
    monkeypatch.setattr(sweep, "read_header", counting)
    target, _ = lenet_ckpts
    ckpt.load_model(target)
    assert reads == [target]
    reads.clear()
    # no --eps-max: the header that gives the checkpoint's eps also builds its model
    doc = sweep.eps_sweep([target], None, 2, 1, samples=8, device="cpu", out_dir=tmp_path)
    assert reads == [target]
    assert doc["eps"] == pytest.approx([0.0, 2 * lenet_config().attack.eps])


def test_black_box_accuracy_is_at_least_white_box_on_the_same_examples(lenet_ckpts, tmp_path):
    target, source = lenet_ckpts
    suite = small_suite(
        tmp_path,
        """
name = "bb"
[[attack]]
name = "PGD-10"
kind = "pgd"
steps = 10
[[attack]]
name = "black-box PGD-10"
kind = "pgd"
steps = 10
source = "substitute"
""",
    )
    doc = evaluate_checkpoint(target, str(suite), samples=200, device="cpu", source=source)
    acc = doc["accuracy"]
    white, black = doc["per_example"]["PGD-10"], doc["per_example"]["black-box PGD-10"]
    assert acc["black-box PGD-10"] >= acc["PGD-10"]
    assert acc["black-box PGD-10"] < acc["clean"]  # the substitute's examples do transfer
    broken_only_by_transfer = sum(1 for w, b in zip(white, black, strict=True) if w and not b)
    assert broken_only_by_transfer <= 1
    check = next(c for c in doc["sanity"] if c["name"].startswith("white-box >= transfer"))
    assert check["status"] == "PASS"
    assert doc["source"] == str(source)


def test_same_seed_gives_the_same_numbers_and_evidence_is_complete(lenet_ckpts, tmp_path):
    target, _ = lenet_ckpts
    suite = small_suite(tmp_path)
    a = evaluate_checkpoint(target, str(suite), samples=64, device="cpu", seed=5)
    b = evaluate_checkpoint(target, str(suite), samples=64, device="cpu", seed=5)
    assert a["per_example"] == b["per_example"] and a["accuracy"] == b["accuracy"]
    assert a["saved"] != b["saved"]
    saved = json.loads(Path(a["saved"]).read_text())
    assert saved["seed"] == 5 and saved["indices"] == list(range(64))
    assert saved["columns"]["PGD-10"] == {
        "kind": "pgd",
        "eps": 0.1,
        "norm": "linf",  # every column records its threat model
        "step": 0.025,
        "steps": 10,
        "restarts": 1,
        "loss": "ce",
        "early_stop": True,  # broken examples leave the search (engine/attacks/pgd.py)
        "source": "self",
    }
    assert saved["columns"]["CW-10"]["kappa"] == 50.0 and saved["early_stop"] is True
    assert (saved["eps"], saved["step"], saved["restarts"]) == (0.1, 0.025, 1)  # all agree
    assert saved["norm"] == "linf"
    attack_seconds = sum(v for k, v in saved["seconds"].items() if k != "clean")
    attacked = len(saved["seconds"]) - 1
    assert saved["examples_per_s"] == pytest.approx(64 * attacked / attack_seconds)
    assert saved["seconds_total"] > attack_seconds  # the sanity runs are not in examples/s
    for col, acc in saved["accuracy"].items():  # a 95% interval on every number
        lo, hi = saved["intervals"][col]
        assert lo <= acc <= hi and hi - lo > 5  # 64 examples: several points wide
    assert saved["torch_version"] == torch.__version__ and saved["code"]["engine"]
    assert len(saved["per_example"]["CW-10"]) == 64
    assert {c["name"] for c in saved["sanity"]} >= {"eps = 1 drives accuracy to ~0"}
    res = wb("inspect", str(target), "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    listed = json.loads(res.stdout)["evaluations"]
    mine = [e for e in listed if e["file"] in (a["saved"], b["saved"])]
    assert len(mine) == 2 and all(e["suite"] == "small" and e["n"] == 64 for e in mine)
    assert mine[0]["clean"] == pytest.approx(a["accuracy"]["clean"])


def test_autoattack_suite_runs_on_a_tiny_model(lenet_ckpts):
    pytest.importorskip("pyautoattack")
    target, _ = lenet_ckpts
    doc = evaluate_checkpoint(
        target, "autoattack", sets=["attack.eps=0.05"], samples=16, device="cpu", seed=1
    )
    acc = doc["accuracy"]
    cascade = ["AA: APGD-CE", "AA: +APGD-T", "AA: +FAB-T", "AA: +Square"]
    assert list(acc)[:3] == [WORST, "clean", "PGD-40"] and list(acc)[3:7] == cascade
    assert all(acc[b] <= acc[a] for a, b in itertools.pairwise(cascade))
    assert acc["AA: +Square"] <= acc["PGD-40"] <= acc["clean"]
    assert 0 < acc["AA: +Square"] < acc["clean"]  # eps 0.05 leaves survivors for Square
    assert doc["columns"]["AA: +Square"]["component"] == "square"


def test_autoattack_without_the_extra_is_a_clear_exit_2(lenet_ckpts, tmp_path):
    target, _ = lenet_ckpts
    hide = "import sys; sys.modules['pyautoattack'] = None"
    res = wb("eval", str(target), "--suite", "autoattack", "--samples", "8", cwd=tmp_path, pre=hide)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert "pyautoattack" in res.stderr and "pip install pyautoattack" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_bad_suite_input_is_exit_2_naming_the_file_and_key(lenet_ckpts, tmp_path):
    target, _ = lenet_ckpts
    before = sorted(p.name for p in (target.parent).rglob("*"))
    bad = small_suite(
        tmp_path, 'name = "b"\n[[attack]]\nname = "P"\nkind = "pgd"\nsteps = 3\nstep = 9\n'
    )
    cases = {
        ("--suite", "nope"): "unknown suite",
        ("--suite", str(bad)): "key 'attack.0.step'",
        ("--suite", "blackbox"): "--source",
        ("--suite", "quick", "--batch-size", "0"): "--batch-size",
        ("--suite", "quick", "--source", str(tmp_path / "missing.safetensors")): "--source",
    }
    columns = (
        '[[attack]]\nname = "FGSM"\nkind = "fgsm"\n'
        '[[attack]]\nname = "P"\nkind = "pgd"\nsteps = 3\ndefended = false\n'
        '[[attack]]\nname = "T"\nkind = "pgd"\nsteps = 3\nsource = "substitute"\n'
    )
    for base, why in (
        ("FGSM", "a fgsm column"),
        ("P", "a pgd column that a defence skips"),
        ("T", "a transfer column"),
    ):
        text = f'name = "s"\n{columns}[sanity]\nenabled = true\nbase = "{base}"\n'
        path = tmp_path / f"base-{base}.toml"
        path.write_text(text)
        cases[("--suite", str(path))] = f"key 'sanity.base': '{base}' is {why}"
    for args, expected in cases.items():
        res = wb("eval", str(target), *args, "--samples", "8", cwd=tmp_path)
        assert res.returncode == 2, (args, res.stderr)
        assert expected in res.stderr and "Traceback" not in res.stderr, res.stderr
        if args[1] == str(bad):
            assert str(bad) in res.stderr
    assert sorted(p.name for p in (target.parent).rglob("*")) == before


def test_the_evidence_header_says_mixed_when_columns_override_the_threat_model(
    lenet_ckpts, tmp_path
):
    target, _ = lenet_ckpts
    suite = small_suite(
        tmp_path,
        'name = "two"\n[[attack]]\nname = "PGD-a"\nkind = "pgd"\nsteps = 2\n'
        '[[attack]]\nname = "PGD-b"\nkind = "pgd"\nsteps = 2\neps = 0.05\nstep = 0.01\n',
    )
    doc = evaluate_checkpoint(target, str(suite), samples=16, device="cpu")
    assert doc["columns"]["PGD-a"]["eps"] == 0.1 and doc["columns"]["PGD-b"]["eps"] == 0.05
    assert doc["eps"] is None and doc["step"] is None and doc["restarts"] == 1


def test_sweep_eps_max_follows_the_norms_cap(trained_lenet, tmp_path):
    """--eps-max beyond 1 is refused under L-inf (one line) and allowed under L2."""
    from engine.eval.sweep import eps_sweep
    from engine.spec.errors import WorkbenchError

    linf = save_checkpoint(tmp_path / "linf" / "best.safetensors", trained_lenet, lenet_config())
    with pytest.raises(WorkbenchError, match=r"--eps-max: 2 is beyond 1"):
        eps_sweep([linf], 2.0, 2, 1, samples=8, device="cpu", out_dir=tmp_path)
    cfg = lenet_config(attack={"norm": "l2", "eps": 1.5, "step": 0.5})
    l2 = save_checkpoint(tmp_path / "l2" / "best.safetensors", trained_lenet, cfg)
    doc = eps_sweep([l2], 3.0, 2, 1, samples=8, device="cpu", out_dir=tmp_path)
    assert doc["eps"] == pytest.approx([0.0, 3.0]) and doc["norm"] == "l2"
