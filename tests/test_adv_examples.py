"""Saved adversarial examples (eval --save-adv) re-score exactly and lie in their balls;
--check-adv catches tampering (exit 1) and refuses files that are not ours (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from engine.attacks import ThreatModel
from engine.checkpoint_io import load_model
from engine.eval import WORST
from engine.eval.adv_check import check_adv, read_adv
from engine.eval.evaluate import evaluate_checkpoint
from engine.spec.config import validate
from engine.spec.errors import WorkbenchError
from tests.test_evaluation import lenet_config, save_checkpoint, small_suite, wb

SUITE = """
name = "advs"
[[attack]]
name = "FGSM"
kind = "fgsm"
[[attack]]
name = "PGD-5"
kind = "pgd"
steps = 5
"""
AUTOATTACK = """
[[attack]]
name = "AA"
kind = "autoattack"
version = "custom"
components = ["apgd-ce"]
iterations = 5
from_survivors = true
"""
THREATS = {"linf": (0.1, 0.025), "l2": (1.5, 0.4)}


_EVALUATED: dict[str, tuple] = {}


@pytest.fixture(scope="module", params=sorted(THREATS))
def saved(request, trained_lenet, tmp_path_factory):
    """A LeNet evaluated with --save-adv under L-inf (with an AutoAttack column) and L2."""
    return evaluated(request.param, trained_lenet, tmp_path_factory)


@pytest.fixture(scope="module")
def saved_linf(trained_lenet, tmp_path_factory):
    return evaluated("linf", trained_lenet, tmp_path_factory)


def evaluated(norm: str, trained_lenet, tmp_path_factory) -> tuple:
    if norm in _EVALUATED:
        return _EVALUATED[norm]
    eps, step = THREATS[norm]
    root = tmp_path_factory.mktemp(f"adv-{norm}")
    raw = lenet_config().model_dump()
    cfg = validate({**raw, "attack": {"norm": norm, "eps": eps, "step": step, "steps": 10}})
    ckpt_path = save_checkpoint(root / "run" / "best.safetensors", trained_lenet, cfg)
    text = SUITE + (AUTOATTACK if norm == "linf" else "")
    if norm == "linf":
        pytest.importorskip("pyautoattack")
    doc = evaluate_checkpoint(
        ckpt_path, str(small_suite(root, text)), samples=48, device="cpu", save_adv=True
    )
    _EVALUATED[norm] = (norm, eps, ckpt_path, doc, Path(doc["adv_examples"]["file"]))
    return _EVALUATED[norm]


def test_saved_examples_rescore_exactly_and_lie_in_their_balls(saved, mnist5k):
    norm, eps, ckpt_path, doc, adv_file = saved
    s = read_adv(adv_file)
    assert s.adv.dtype == torch.float32 and s.index.tolist() == doc["indices"]
    # the first column (in the suite's order) that broke each example, as the evaluation found
    names = list(doc["per_example"])
    first = [
        next((k for k, c in enumerate(names) if not doc["per_example"][c][i]), -1)
        for i in range(doc["n"])
    ]
    assert s.column.tolist() == first
    assert [c["name"] for c in s.columns] == names
    survivors = sum(1 for k in first if k == -1)
    assert 100.0 * survivors / doc["n"] == pytest.approx(doc["table"][WORST])
    attacked = [k for k in first if k > 0]
    assert len(attacked) >= 5  # a non-trivial file: several inputs fooled the model
    if norm == "linf":  # AutoAttack's inputs are kept too (it breaks some PGD-5 left)
        assert names.index("AA: APGD-CE") in first
    # independently of the checker: the model gets every attacked input wrong, and each lies
    # in its column's ball and in [0, 1]
    x = mnist5k.test_x[s.index].float() / 255.0
    _, model = load_model(ckpt_path)
    with torch.no_grad():
        pred = model(s.adv).argmax(1)
    rows, kept = s.column > 0, s.column == -1
    assert (pred[rows] != s.label[rows]).all() and (pred[kept] == s.label[kept]).all()
    size = ThreatModel(norm, eps).size((s.adv - x)[rows].double())
    assert float(size.max()) <= eps * (1 + 1e-5) and float(size.max()) > 0.5 * eps
    assert float(s.adv.min()) >= 0 and float(s.adv.max()) <= 1
    assert torch.equal(s.adv[s.column <= 0], x[s.column <= 0])
    verdict = check_adv(ckpt_path, adv_file, device="cpu")
    assert verdict.ok, verdict.lines
    assert any(line.startswith("PASS  evidence") for line in verdict.lines)
    assert verdict.report["rescored_robust"] == survivors
    assert verdict.report["outcome_mismatches"] == 0
    assert doc["adv_examples"]["rescored_mismatches"] == 0


def rewrite(src: Path, dst: Path, meta: dict | None = None, **changes: torch.Tensor) -> Path:
    """A copy of a saved-examples file with some tensors (and metadata keys) replaced, with
    its evaluation beside it."""
    with safe_open(str(src), framework="pt") as fh:
        old = fh.metadata()
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (not a dict)
    save_file({**tensors, **changes}, str(dst), metadata={**old, **(meta or {})})
    evaluation = src.with_name(src.name.removesuffix(".adv.safetensors") + ".json")
    dst.with_name(dst.name.removesuffix(".adv.safetensors") + ".json").write_bytes(
        evaluation.read_bytes()
    )
    return dst


def test_tampered_files_fail_the_check_with_exit_1(saved, tmp_path):
    norm, eps, ckpt_path, _, adv_file = saved
    s = read_adv(adv_file)
    k = int((s.column > 0).nonzero()[0])  # an attacked example
    moved = s.adv.clone()
    moved[k] = (moved[k] + (1.0 if norm == "linf" else eps)).clamp(0, 1)  # far past its ball
    relabelled = s.label.clone()
    relabelled[0] = (relabelled[0] + 1) % 10
    # every perturbation 1.5 times larger, and the file's own eps doubled to cover it: only
    # the evaluation beside the file tells
    loose = [{**c, "eps": 2 * c["eps"]} if c["name"] != "clean" else c for c in s.columns]
    x = read_clean(s)
    grown = (x + 1.5 * (s.adv - x)).clamp(0, 1).contiguous()
    cases = {
        "balls": rewrite(adv_file, tmp_path / "moved.adv.safetensors", adv=moved),
        "labels": rewrite(adv_file, tmp_path / "label.adv.safetensors", label=relabelled),
        "evidence": rewrite(
            adv_file,
            tmp_path / "loose.adv.safetensors",
            {"columns": json.dumps(loose)},
            adv=grown,
        ),
    }
    for failed, path in cases.items():
        verdict = check_adv(ckpt_path, path, device="cpu")
        assert not verdict.ok and failed in verdict.failures, verdict.lines
    verdict = check_adv(ckpt_path, cases["evidence"], device="cpu")
    assert "balls" not in verdict.failures, verdict.lines  # within the loosened balls


def read_clean(s) -> torch.Tensor:
    """The clean test images of a saved file, as the evaluation attacked them."""
    from engine.data import load_dataset

    return load_dataset("mnist-5k").test_x[s.index].float() / 255.0


def test_the_command_line_says_the_verdict_with_exit_0_or_1(saved_linf, tmp_path):
    _, _, ckpt_path, _, adv_file = saved_linf
    s = read_adv(adv_file)
    moved = s.adv.clone()
    moved[int((s.column > 0).nonzero()[0])] += 0.5
    tampered = rewrite(adv_file, tmp_path / "moved.adv.safetensors", adv=moved.clamp(0, 1))
    good = wb("eval", str(ckpt_path), "--check-adv", str(adv_file), "--device", "cpu", cwd=tmp_path)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "verdict: every check holds" in good.stdout
    bad = wb("eval", str(ckpt_path), "--check-adv", str(tampered), cwd=tmp_path)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "FAIL  balls" in bad.stdout and "verdict: FAILED (balls)" in bad.stdout
    assert "Traceback" not in bad.stderr


def test_files_that_are_not_ours_exit_2_with_one_line(saved_linf, trained_lenet, tmp_path):
    _, _, ckpt_path, _, adv_file = saved_linf
    data = adv_file.read_bytes()
    truncated = tmp_path / "cut.adv.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    text = tmp_path / "notes.adv.safetensors"
    text.write_text("not tensors at all\n")
    other = tmp_path / "other" / "best.safetensors"
    save_checkpoint(other, trained_lenet, lenet_config(0.2))
    s = read_adv(adv_file)
    small = s.adv[:, :, :14].contiguous()
    wrong_shape = rewrite(adv_file, tmp_path / "shape.adv.safetensors", adv=small)
    column = s.column.clone()
    column[0] = 99
    wrong_column = rewrite(adv_file, tmp_path / "col.adv.safetensors", column=column)
    cases = [
        (ckpt_path, truncated, "not a safetensors file"),
        (ckpt_path, text, "not a safetensors file"),
        (ckpt_path, ckpt_path, "key 'format'"),  # a checkpoint is safetensors, but not ours
        (other, adv_file, "key 'checkpoint_sha256'"),  # saved from another checkpoint
        (ckpt_path, wrong_shape, "tensor 'adv'"),
        (ckpt_path, wrong_column, "tensor 'column'"),
        (ckpt_path, tmp_path / "missing.adv.safetensors", "file not found"),
    ]
    for ckpt, path, why in cases:
        with pytest.raises(WorkbenchError) as info:
            check_adv(ckpt, path, device="cpu")
        message = str(info.value)
        assert why in message and str(path) in message and "\n" not in message, message
    for ckpt, path, why in cases[:2]:  # as the command line says it: one line, exit 2
        res = wb("eval", str(ckpt), "--check-adv", str(path), cwd=tmp_path)
        assert res.returncode == 2, (path, res.stdout, res.stderr)
        assert why in res.stderr and len(res.stderr.strip().splitlines()) == 1
        assert res.stdout == "" and "Traceback" not in res.stderr


def test_the_gallery_shows_the_saved_examples(saved_linf, tmp_path):
    import asyncio

    from engine.eval.gallery import saved_gallery
    from tests.conftest import wait_for
    from workbench.tui.app import WorkbenchApp
    from workbench.tui.gallery import GalleryScreen

    _, eps, ckpt_path, _, adv_file = saved_linf
    s = read_adv(adv_file)
    threat, rows = saved_gallery(ckpt_path, adv_file)
    assert (threat.norm, threat.eps) == ("linf", eps)
    broken = {int(s.label[i]) for i in (s.column > 0).nonzero().squeeze(1)}
    assert sorted(r.label for r in rows) == sorted(broken)  # one row per class an attack broke
    for r in rows:
        k = s.index.tolist().index(r.index)
        assert torch.equal(r.adv, s.adv[k]) and r.pred_adv != r.label  # the saved input, fooling
        assert r.column == s.columns[int(s.column[k])]["name"]

    async def scenario() -> None:
        app = WorkbenchApp(tmp_path / "runs")
        async with app.run_test(size=(120, 40)) as pilot:
            pilot.app.action_inspect(ckpt_path)
            await wait_for(pilot, lambda: pilot.app.screen.query("#evals"))
            await pilot.pause()
            await pilot.press("G")  # the inspector's key for the newest saved examples
            await wait_for(pilot, lambda: bool(getattr(pilot.app.screen, "rows", None)))
            screen = pilot.app.screen
            assert isinstance(screen, GalleryScreen) and screen.adv == adv_file
            assert [r.index for r in screen.rows] == [r.index for r in rows]

    asyncio.run(scenario())


def test_under_a_defence_the_defences_verdict_is_what_is_kept_and_rescored(saved_linf, tmp_path):
    """Transfer, BPDA and adaptive columns craft on stand-ins; the defence judges, and re-judges."""
    from engine.eval.card import card_of

    _, _, ckpt_path, _, _ = saved_linf
    text = 'name = "def"\n[[attack]]\nname = "PGD-4"\nkind = "pgd"\nsteps = 4\n'
    suite = small_suite(tmp_path, text)
    doc = evaluate_checkpoint(
        ckpt_path,
        str(suite),
        samples=6,
        device="cpu",
        defense="apinet",
        sets=["defense.steps=1"],
        save_adv=True,
    )
    adv_file = Path(doc["adv_examples"]["file"])
    s = read_adv(adv_file)
    names = [c["name"] for c in s.columns]
    assert names == ["clean", "transfer PGD-4", "BPDA PGD-4", "adaptive PGD-4"]
    assert (s.column > 0).any()  # inputs crafted on a stand-in, kept because the defence erred
    assert s.meta["defense"].name == "apinet" and s.meta["defense"].steps == 1
    verdict = check_adv(ckpt_path, adv_file, device="cpu")
    assert verdict.ok, verdict.lines
    assert verdict.report["defense"]["name"] == "apinet"
    assert 100.0 * verdict.report["rescored_robust"] / 6 == pytest.approx(doc["table"][WORST])
    card = card_of(Path(doc["saved"]))
    assert card["number_forward_passes"] == 10 * (1 + 1)  # 10 class searches of 1 step, scored
