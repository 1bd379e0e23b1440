"""Studies: many members through submitit's local executor, resumable, and one honest report."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
import tomllib
from math import comb
from pathlib import Path

import pytest

from engine.study import report as rp
from tests.conftest import TINY_PRESET, cli_env, wb, write_preset

STUDY = """
name = "mini"
seeds = [0, 1]
suite = "quick"
samples = 64
[[arm]]
name = "madry"
preset = "tiny.toml"
[[arm]]
name = "weak"
preset = "tiny.toml"
set = { "attack.steps" = 1 }
"""


def tiny(root: Path, extra: str = "") -> None:
    body = TINY_PRESET.replace("[train]\nepochs = 2", "[train]\nepochs = 1")
    body = body.replace("[data]\n", "[data]\ntrain_limit = 128\n", 1)
    write_preset(root / "tiny.toml", body + extra)


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    tiny(root)
    write_preset(root / "s.toml", STUDY)
    res = wb("study", "s.toml", "--jobs", "2", cwd=root)
    return root, res


def test_a_two_arm_two_seed_study_runs_end_to_end(done):
    root, res = done
    assert res.returncode == 0, res.stderr
    study = root / "runs" / "mini"
    names = sorted(p.name for p in study.iterdir() if not p.name.startswith("."))
    assert names == ["madry__s0", "madry__s1", "weak__s0", "weak__s1"]
    for n in names:  # ordinary run directories, each with its test evaluation
        assert (study / n / "best.safetensors").is_file()
        assert list((study / n / "eval").glob("quick-*.json"))
        cfg = tomllib.loads((study / n / "config.toml").read_text())
        assert cfg["train"]["seed"] == int(n[-1])  # the study's seed reached the member
    assert tomllib.loads((study / "weak__s0" / "config.toml").read_text())["attack"]["steps"] == 1
    listing = json.loads(wb("runs", "--json", cwd=root).stdout)
    assert {"mini/madry__s0", "mini/weak__s1"} <= {r["name"] for r in listing}
    assert "madry - weak" in res.stdout or "weak - madry" in res.stdout


def test_the_report_holds_every_member_and_is_rebuilt_from_its_json(done):
    root, _ = done
    res = wb("study", "report", "mini", "--json", cwd=root)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert [g["label"] for g in doc["groups"]] == ["madry", "weak"]
    assert all(g["evaluated"] == 2 and g["n"] == [64] for g in doc["groups"])
    assert len(doc["members"]) == 4 and all(len(m["robust_outcomes"]) == 64 for m in doc["members"])
    (pair,) = doc["pairs"]
    assert (pair["a"], pair["b"], pair["k"]) == ("weak", "madry", 2)
    assert rp.rebuild(doc) == doc
    saved = json.loads((root / "runs" / "mini" / ".study" / "report.json").read_text())
    assert saved["groups"] == doc["groups"]
    csv = wb("study", "report", "mini", "--csv", cwd=root).stdout.strip().splitlines()
    assert len(csv) == 5 and csv[0].startswith("member,arm,setting,seed,status")


def test_rerunning_a_finished_study_skips_every_member(done):
    root, _ = done
    study = root / "runs" / "mini"
    before = {p.name: (p / "events.jsonl").stat().st_mtime_ns for p in study.glob("*__s*")}
    res = wb("study", "s.toml", cwd=root)
    assert res.returncode == 0, res.stderr
    after = {p.name: (p / "events.jsonl").stat().st_mtime_ns for p in study.glob("*__s*")}
    assert before == after
    evaluations = [
        p for p in (study / "madry__s0" / "eval").glob("*.json") if ".card." not in p.name
    ]
    assert len(evaluations) == 1  # not evaluated again (a model card sits beside it)


def test_ctrl_c_checkpoints_running_members_and_a_rerun_resumes_them(tmp_path):
    long = TINY_PRESET.replace("[train]\nepochs = 2", "[train]\nepochs = 60")
    long = long.replace("[data]\n", "[data]\ntrain_limit = 128\n", 1)
    write_preset(tmp_path / "tiny.toml", long.replace("log_every = 2", "log_every = 1"))
    write_preset(
        tmp_path / "s.toml",
        'name = "cut"\nseeds = [0]\nsuite = "quick"\nsamples = 32\n'
        '[[arm]]\nname = "a"\npreset = "tiny.toml"\n',
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench", "study", "s.toml"],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    events = tmp_path / "runs" / "cut" / "a__s0" / "events.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (events.exists() and '"step"' in events.read_text()):
        time.sleep(0.2)
    assert events.exists(), "the member never started"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 130, stderr
    assert (events.parent / "last.safetensors").is_file()
    last = json.loads(events.read_text().splitlines()[-1])
    assert last["type"] == "run_finished" and last["status"] == "interrupted"
    assert not list((events.parent / "eval").glob("*.json"))  # stopped before its evaluation
    res = wb("study", "s.toml", cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr
    started = [
        json.loads(line)
        for line in events.read_text().splitlines()
        if json.loads(line)["type"] == "run_started"
    ]
    assert len(started) == 2 and started[1]["resumed"] is True
    assert list((events.parent / "eval").glob("quick-*.json"))


def test_a_member_stopped_by_the_nan_guard_is_reported_failed_with_its_reason(tmp_path):
    tiny(tmp_path)
    write_preset(
        tmp_path / "s.toml",
        'name = "nan"\nseeds = [0]\nsuite = "quick"\nsamples = 32\n'
        '[[arm]]\nname = "ok"\npreset = "tiny.toml"\n'
        '[[arm]]\nname = "boom"\npreset = "tiny.toml"\nset = { "optim.lr" = 1e30 }\n',
    )
    res = wb("study", "s.toml", cwd=tmp_path)
    assert res.returncode == 1, res.stderr
    doc = json.loads(wb("study", "report", "nan", "--json", cwd=tmp_path).stdout)
    boom = next(g for g in doc["groups"] if g["label"] == "boom")
    assert boom["evaluated"] == 0 and len(boom["failed"]) == 1
    assert "non-finite" in boom["failed"][0]["reason"]
    ok = next(g for g in doc["groups"] if g["label"] == "ok")
    assert ok["evaluated"] == 1 and not ok["failed"]
    assert "failed: boom__s0" in res.stdout


# ------------------------------------------------------------------ statistics


def row(label: str, seed: int, robust: list[int], clean: list[int] | None = None) -> dict:
    clean = clean or [1] * len(robust)
    return {
        "name": f"{label}__s{seed}",
        "arm": label,
        "label": label,
        "seed": seed,
        "setting": {},
        "status": "done",
        "reason": "",
        "n": len(robust),
        "indices": list(range(len(robust))),
        "clean": 100.0 * sum(clean) / len(clean),
        "robust": 100.0 * sum(robust) / len(robust),
        "clean_outcomes": clean,
        "robust_outcomes": robust,
    }


def mcnemar(b: int, c: int) -> float:
    n, k = b + c, min(b, c)
    return min(1.0, 2 * sum(comb(n, i) for i in range(k + 1)) / 2**n)


def test_report_statistics_match_hand_computed_values():
    # 20 examples; per seed the A and B outcomes differ on a known number of examples
    a_only = [4, 6, 2]  # examples A gets right and B wrong, per seed
    b_only = [1, 1, 2]
    rows = []
    for s in range(3):
        base = [1] * 10 + [0] * 10
        a = base.copy()
        b = base.copy()
        for i in range(a_only[s]):
            a[10 + i] = 1  # A right, B wrong
        for i in range(b_only[s]):
            b[10 + 9 - i] = 1  # B right, A wrong
        rows += [row("madry", s, b), row("atblr", s, a)]
    doc = rp.build({"name": "t", "suite": "quick"}, rows)
    (pair,) = doc["pairs"]
    assert (pair["a"], pair["b"]) == ("atblr", "madry")
    diffs = [100 * (x - y) / 20 for x, y in zip(a_only, b_only, strict=True)]  # 15, 25, 0
    assert [p["diff"] for p in pair["per_seed"]] == pytest.approx(diffs)
    for p, x, y in zip(pair["per_seed"], a_only, b_only, strict=True):
        assert p["p"] == pytest.approx(mcnemar(x, y))
    mean = sum(diffs) / 3
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 2)
    t975 = 4.302652729911275  # Student t, 2 degrees of freedom, 97.5%
    assert pair["mean"] == pytest.approx(mean)
    assert pair["low"] == pytest.approx(mean - t975 * sd / math.sqrt(3))
    assert pair["high"] == pytest.approx(mean + t975 * sd / math.sqrt(3))
    t_stat = mean / (sd / math.sqrt(3))
    # two degrees of freedom: the two-sided p of a t statistic is 1 - |t| / sqrt(t^2 + 2)
    assert pair["p"] == pytest.approx(1 - abs(t_stat) / math.sqrt(t_stat**2 + 2))
    assert pair["p"] == pytest.approx(0.2079, abs=1e-4)
    g = next(g for g in doc["groups"] if g["label"] == "atblr")
    robust = [100 * (10 + x) / 20 for x in a_only]
    assert g["robust"]["mean"] == pytest.approx(sum(robust) / 3)
    line = rp.pair_line(pair)
    assert line.startswith("atblr - madry = +13.3 pts [") and "p = 0.21" in line


def test_one_seed_gives_no_interval_rather_than_a_made_up_one():
    doc = rp.build({"name": "t", "suite": "quick"}, [row("a", 0, [1, 0]), row("b", 0, [0, 0])])
    g = doc["groups"][0]
    assert g["robust"]["k"] == 1 and math.isnan(g["robust"]["low"])
    assert "no interval" in rp.pair_line(doc["pairs"][0])


def make_linear():
    """A model from outside the workbench for a fixed arm: one linear layer, fixed weights."""
    import torch
    from torch import nn

    torch.manual_seed(5)
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))


FIXED = """
name = "fixed"
seeds = [0, 1]
suite = "quick"
samples = 64
[[arm]]
name = "ours"
checkpoint = "runs/mini/madry__s0/best.safetensors"
[[arm]]
name = "foreign"
model = "{here}:make_linear"
dataset = "synthetic"
eps = "1/10"
step = 0.05
"""


def test_fixed_model_arms_are_evaluated_once_as_they_are(done):
    """A checkpoint arm evaluates its copy exactly as its own member did; a `model` arm is
    imported (no training); each is one member, no seed; they pair once."""
    root, _ = done
    write_preset(root / "f.toml", FIXED.format(here=Path(__file__).resolve()))
    # its own runs folder: the app's study screen opens the newest study of `runs`
    res = wb("study", "f.toml", "--jobs", "2", "--runs-dir", "runs-fixed", cwd=root)
    assert res.returncode == 0, res.stderr
    study = root / "runs-fixed" / "fixed"
    assert sorted(p.name for p in study.iterdir() if not p.name.startswith(".")) == [
        "foreign",
        "ours",
    ]
    original = root / "runs" / "mini" / "madry__s0" / "best.safetensors"
    copy = study / "ours" / "best.safetensors"
    assert copy.read_bytes() == original.read_bytes()
    assert not (study / "ours" / "events.jsonl").exists()  # nothing was trained

    def outcomes(run: Path) -> dict:
        (path,) = [p for p in (run / "eval").glob("quick-*.json") if ".card." not in p.name]
        return json.loads(path.read_text())["per_example"]

    assert outcomes(study / "ours") == outcomes(original.parent)
    report = ("study", "report", "fixed", "--runs-dir", "runs-fixed")
    doc = json.loads(wb(*report, "--json", cwd=root).stdout)
    assert [(g["label"], g["fixed"], g["evaluated"]) for g in doc["groups"]] == [
        ("ours", True, 1),
        ("foreign", True, 1),
    ]
    (pair,) = doc["pairs"]
    assert pair["seeds"] == [None] and pair["k"] == 1  # two fixed models: one comparison
    foreign = next(m for m in doc["members"] if m["arm"] == "foreign")
    assert foreign["seed"] is None and foreign["n"] == 64
    from engine.records.checkpoint_header import read_header

    meta = read_header(study / "foreign" / "best.safetensors")[1]
    assert json.loads(meta["external"])["factory"].endswith("test_study.py:make_linear")
    assert "fixed" in wb(*report, cwd=root).stdout


def test_a_fixed_model_pairs_with_every_seed_of_a_trained_arm():
    fixed = {**row("published", 0, [1, 1, 0, 0]), "seed": None, "name": "published"}
    rows = [fixed, row("atblr", 0, [1, 1, 1, 0]), row("atblr", 1, [1, 0, 0, 0])]
    doc = rp.build({"name": "t", "suite": "quick"}, rows)
    (pair,) = doc["pairs"]
    assert (pair["a"], pair["b"], pair["seeds"]) == ("atblr", "published", [0, 1])
    assert [p["diff"] for p in pair["per_seed"]] == pytest.approx([25.0, -25.0])
    g = next(g for g in doc["groups"] if g["label"] == "published")
    assert g["fixed"] and g["robust"]["mean"] == 50.0
    assert "s0 +25.0" in rp.pair_line(pair) and "s1 -25.0" in rp.pair_line(pair)


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "body, needle",
    [
        ("colour = 'red'\n" + STUDY, "key 'colour': unknown key"),
        (STUDY + "colour = 'red'\n", "key 'arm[1].colour': unknown key"),
        (STUDY.replace("seeds = [0, 1]", 'seeds = "0"'), "key 'seeds'"),
        (STUDY.replace("seeds = [0, 1]", "seeds = [1, 1]"), "key 'seeds'"),
        (STUDY.replace('preset = "tiny.toml"', 'preset = "nope"', 1), "key 'arm[0].preset'"),
        (STUDY.replace('"attack.steps" = 1', '"attack.stepz" = 1'), "attack.stepz"),
        (STUDY.replace('set = { "attack.steps" = 1 }', 'grid = { "method.lambda" = [] }'), "grid"),
        (STUDY.replace('name = "weak"', 'name = "madry"'), "key 'arm.name'"),
        (STUDY.replace('name = "mini"', 'name = "../up"'), "key 'name'"),
        (STUDY.replace('suite = "quick"', 'suite = "nosuch"'), "key 'suite'"),
        ("name = [", "not valid TOML"),
        (
            STUDY + '[[arm]]\nname = "x"\npreset = "tiny.toml"\ncheckpoint = "a.safetensors"\n',
            "key 'arm[2]': give exactly one of preset, checkpoint and model",
        ),
        (
            STUDY + '[[arm]]\nname = "x"\ncheckpoint = "nope.safetensors"\n',
            "key 'arm[2].checkpoint': ",
        ),
        (
            STUDY + '[[arm]]\nname = "x"\ncheckpoint = "t.safetensors"\nset = { "a.b" = 1 }\n',
            "set and grid go with a preset",
        ),
        (
            STUDY + '[[arm]]\nname = "x"\nmodel = "torchvision:resnet18"\n',
            "a model needs its dataset",
        ),
        (
            STUDY + '[[arm]]\nname = "x"\npreset = "tiny.toml"\nweights = "w.pt"\n',
            "weights goes with model",
        ),
    ],
)
def test_bad_study_files_exit_2_with_one_line_and_write_nothing(tmp_path, body, needle):
    tiny(tmp_path)
    write_preset(tmp_path / "s.toml", body)
    res = wb("study", "s.toml", cwd=tmp_path)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "s.toml" in lines[0] and needle in lines[0], res.stderr
    assert not (tmp_path / "runs").exists()


def test_the_study_screen_shows_members_report_and_plot(done):
    import asyncio

    from tests.test_tui import wait_for
    from workbench.tui.app import WorkbenchApp
    from workbench.tui.study_screen import StudyScreen

    root, _ = done
    app = WorkbenchApp(root / "runs", [root])

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("t")  # from Home
            assert isinstance(app.screen, StudyScreen)
            screen = app.screen
            await wait_for(pilot, lambda: screen.doc is not None)
            assert screen.query_one("#members").row_count == 4
            assert screen.query_one("#groups").row_count == 2
            pairs = str(screen.query_one("#pairs").render())
            assert "weak - madry" in pairs and "pts" in pairs
            assert "4/4 done" in str(screen.query_one("#progress").render())
            await pilot.press("escape")
            assert not isinstance(app.screen, StudyScreen)

    asyncio.run(scenario())


def test_a_study_that_names_a_suite_file_finds_its_members_evaluations(tmp_path, monkeypatch):
    """An evaluation records its suite's own name; a study may give the suite as a file."""
    from engine.study import members as ms

    monkeypatch.chdir(tmp_path)
    suite = tmp_path / "suites" / "mine.toml"
    suite.parent.mkdir()
    suite.write_text('name = "four-columns"\n[[attack]]\nname = "FGSM"\nkind = "fgsm"\n')
    run = tmp_path / "m"
    (run / "eval").mkdir(parents=True)
    (run / "best.safetensors").write_bytes(b"")
    doc = {"kind": "suite", "suite": "four-columns", "suite_file": "suites/mine.toml",
           "checkpoint": str(run / "best.safetensors"), "per_example": {"clean": [1]}}  # fmt: skip
    (run / "eval" / "four-columns-1.json").write_text(json.dumps(doc))
    assert ms.evaluation_of(run, "suites/mine.toml") == run / "eval" / "four-columns-1.json"
    assert ms.evaluation_of(run, str(suite)) is not None  # the same file, absolute
    other = tmp_path / "suites" / "other.toml"
    other.write_text('name = "other"\n[[attack]]\nname = "FGSM"\nkind = "fgsm"\n')
    assert ms.evaluation_of(run, str(other)) is None and ms.evaluation_of(run, "quick") is None
