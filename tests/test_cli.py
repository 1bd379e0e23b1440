"""The command line as a user meets it: exit codes, one-line errors, nothing half-written."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.eval import WORST
from engine.records.checkpoint_header import REQUIRED_META
from tests.conftest import ROOT, TINY_PRESET, cli_env, wb, write_preset


def snapshot(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One finished tiny run shared by the read-only CLI tests."""
    root = tmp_path_factory.mktemp("cli")
    write_preset(root / "tiny.toml", TINY_PRESET)
    res = wb("run", "tiny.toml", "--headless", "--name", "t1", cwd=root)
    assert res.returncode == 0, res.stderr
    return root, res


def test_run_leaves_the_contracted_run_directory(finished_run):
    root, res = finished_run
    run = root / "runs" / "t1"
    for name in ("config.toml", "events.jsonl", "last.safetensors", "best.safetensors"):
        assert (run / name).is_file(), name
    assert "best checkpoint" in res.stdout and "test (256), selected: PGD-2" in res.stdout
    assert "validation (64), best: PGD-2" in res.stdout
    assert "keeps" in res.stdout and "of 256 test examples under PGD-2" in res.stdout
    assert "Next: workbench eval runs/t1/best.safetensors --suite paper" in res.stdout
    lines = (run / "events.jsonl").read_text().splitlines()
    assert all(json.loads(line)["type"] for line in lines)
    assert 'name = "tiny"' in (run / "config.toml").read_text()


def test_inspect_json_has_the_contract_metadata(finished_run):
    root, _ = finished_run
    res = wb("inspect", "runs/t1/best.safetensors", "--json", cwd=root)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    meta = doc["metadata"]
    for key in REQUIRED_META:
        assert key in meta, key
    assert meta["format"] == "workbench/1" and meta["config"]["name"] == "tiny"
    assert doc["model_parameters"] == 61_706
    assert any(
        t["name"] == "model.head.fc.weight" and t["shape"] == [10, 84] for t in doc["tensors"]
    )


def test_eval_json_prints_the_six_columns_and_saves_evidence(finished_run):
    root, _ = finished_run
    res = wb("eval", "runs/t1/best.safetensors", "--json", "--samples", "40", cwd=root)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    acc = doc["accuracy"]
    cols = ["clean", "FGSM", "PGD-40", "PGD-100", "CW-40", "CW-100"]
    assert list(acc)[:7] == [WORST, *cols]  # the headline first, then the papers' columns
    assert acc[WORST] <= min(acc[c] for c in cols)
    assert acc["PGD-100"] <= acc["clean"] and acc["FGSM"] <= acc["clean"]
    saved = json.loads((root / doc["saved"]).read_text())
    assert saved["n"] == 40 and len(saved["per_example"]["PGD-40"]) == 40
    events = (root / "runs" / "t1" / "events.jsonl").read_text()
    assert '"eval_result"' in events


def test_runs_and_presets_list_what_exists(finished_run):
    root, _ = finished_run
    res = wb("runs", "--json", cwd=root)
    runs = json.loads(res.stdout)
    assert runs[0]["name"] == "t1" and runs[0]["status"] == "finished"
    assert runs[0]["epoch"] == 2 and runs[0]["best_robust_acc"] is not None
    res = wb("presets", cwd=ROOT)
    assert "mnist_atblr" in res.stdout and "demo" in res.stdout


def test_runs_diff_names_only_the_settings_that_differ(finished_run, tmp_path):
    import shutil

    root, _ = finished_run
    runs = tmp_path / "runs"
    shutil.copytree(root / "runs" / "t1", runs / "t1")
    member = runs / "study1" / "m1"  # a study member, named as the listing names it
    member.mkdir(parents=True)
    (runs / "study1" / ".study").mkdir()
    lines = (runs / "t1" / "events.jsonl").read_text().splitlines(True)
    first = json.loads(lines[0])
    assert first["type"] == "run_started"
    first["config"]["train"]["lr"] = 123.0
    first["config"]["train"]["seed"] = 7
    (member / "events.jsonl").write_text(json.dumps(first) + "\n" + "".join(lines[1:]))
    res = wb(
        "runs",
        "--runs-dir",
        str(runs),
        "--diff",
        "t1",
        "--diff",
        "study1/m1",
        "--json",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert [d["key"] for d in doc] == ["train.lr", "train.seed"]
    assert doc[0]["values"]["study1/m1"] == 123.0 and doc[0]["values"]["t1"] != 123.0
    shutil.copytree(runs / "t1", runs / "t1copy")
    res = wb("runs", "--runs-dir", str(runs), "--diff", "t1", "--diff", "t1copy", cwd=tmp_path)
    assert res.returncode == 0 and "the same settings" in res.stdout
    for bad in (
        ["--diff", "t1"],
        ["--diff", "../t1", "--diff", "t1"],
        ["--diff", "t1", "--diff", "x"],
    ):
        res = wb("runs", "--runs-dir", str(runs), *bad, cwd=tmp_path)
        assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert "Traceback" not in res.stderr


BAD = {
    "unknown key": ("[attack]\n", "[attack]\nepsilon = 0.3\n", "attack.epsilon"),
    "wrong type": ("steps = 2\n", 'steps = "two"\n', "attack.steps"),
    "negative eps": ("eps = 0.1\n", "eps = -1\n", "attack.eps"),
    "missing data": (
        'dataset = "synthetic"',
        'dataset = "mnist"\nroot = "nodata"\ndownload = false',
        "mnist-5k",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_presets_exit_2_with_one_line_and_no_files(tmp_path, case):
    old, new, needle = BAD[case]
    write_preset(tmp_path / "bad.toml", TINY_PRESET.replace(old, new, 1))
    before = snapshot(tmp_path)
    res = wb("run", "bad.toml", "--headless", cwd=tmp_path)
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "bad.toml" in res.stderr or "nodata" in res.stderr
    assert needle in res.stderr and "Traceback" not in res.stderr
    assert snapshot(tmp_path) == before


def test_missing_preset_and_unsafe_name_exit_2(tmp_path):
    write_preset(tmp_path / "tiny.toml", TINY_PRESET)
    before = snapshot(tmp_path)
    res = wb("run", "nope.toml", "--headless", cwd=tmp_path)
    assert res.returncode == 2 and "nope.toml" in res.stderr and "not found" in res.stderr
    res = wb("run", "tiny.toml", "--headless", "--name", "../x", cwd=tmp_path)
    assert res.returncode == 2 and "--name" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    res = wb("run", "tiny.toml", "--set", "attack.eps=7", cwd=tmp_path)
    assert res.returncode == 2 and "--set attack.eps=7" in res.stderr
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("eval", "--bogus", "x.safetensors"), "No such option: --bogus"),
        (("evl",), "No such command 'evl'"),
        (("eval",), "give a CHECKPOINT or --model"),
        (("eval", "x.safetensors", "--samples", "-1"), "'--samples'"),
        (("run", "tiny.toml", "--nproc", "two"), "'--nproc'"),
    ],
)
def test_command_line_mistakes_exit_2_with_one_line(tmp_path, args, needle):
    res = wb(*args, cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert needle in res.stderr and "--help" in res.stderr and res.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_truncated_checkpoint_exits_2_for_eval_and_inspect(finished_run, tmp_path):
    root, _ = finished_run
    data = (root / "runs" / "t1" / "best.safetensors").read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    before = snapshot(tmp_path)
    for cmd in (["inspect", str(cut)], ["eval", str(cut)], ["inspect", str(cut), "--json"]):
        res = wb(*cmd, cwd=tmp_path)
        assert res.returncode == 2, cmd
        assert "truncated" in res.stderr and str(cut) in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1 and res.stdout == ""
    assert snapshot(tmp_path) == before


def test_ctrl_c_saves_a_checkpoint_and_exits_130(tmp_path):
    write_preset(tmp_path / "tiny.toml", TINY_PRESET)
    env = cli_env()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "workbench",
            "run",
            "tiny.toml",
            "--headless",
            "--name",
            "s",
            "--set",
            "train.epochs=1000",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    events = tmp_path / "runs" / "s" / "events.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:
        if events.exists() and '"epoch_end"' in events.read_text():
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    last = json.loads(events.read_text().splitlines()[-1])
    assert last["type"] == "run_finished" and last["status"] == "interrupted"
    assert (tmp_path / "runs" / "s" / "last.safetensors").is_file()
    res = wb("runs", "--json", cwd=tmp_path)
    assert json.loads(res.stdout)[0]["status"] == "interrupted"


def test_ablate_sweeps_eps_ap_and_zero_is_the_base_model(finished_run):
    root, _ = finished_run
    res = wb(
        "ablate",
        "runs/t1/best.safetensors",
        "--eps-ap",
        "0,12/255",
        "--samples",
        "16",
        "--json",
        "--set",
        "defense.steps=2",
        cwd=root,
    )
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert [r["eps_ap"] for r in doc["rows"]] == [0.0, pytest.approx(12 / 255)]
    base = wb(
        "eval",
        "runs/t1/best.safetensors",
        "--suite",
        "quick",
        "--samples",
        "16",
        "--json",
        cwd=root,
    )
    assert doc["rows"][0]["accuracy"]["clean"] == json.loads(base.stdout)["accuracy"]["clean"]
    bad = wb("ablate", "runs/t1/best.safetensors", "--eps-ap", "0,abc", cwd=root)
    assert bad.returncode == 2 and "--eps-ap" in bad.stderr


def test_a_runs_dir_that_is_a_file_is_exit_2_before_any_work(tmp_path):
    write_preset(tmp_path / "tiny.toml", TINY_PRESET)
    (tmp_path / "runs").write_text("not a folder")
    before = snapshot(tmp_path)
    for args in (["run", "tiny.toml", "--headless"], ["runs"], []):
        res = wb(*args, "--runs-dir", "runs", cwd=tmp_path)
        assert res.returncode == 2, (args, res.stderr)
        assert "--runs-dir runs: is a file" in res.stderr and "Traceback" not in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
    assert snapshot(tmp_path) == before


BOUNDARY = """
import sys
import workbench.cli as cli
from engine.spec.errors import CheckpointError

def deep(path):  # an engine call deep inside a command
    raise {raised}

cli.read_header = deep
sys.argv = ["workbench", "inspect", "x.safetensors"]
cli.main()
"""


@pytest.mark.parametrize(
    "raised, env, code, stderr",
    [
        ("CheckpointError('x.safetensors: bad thing')", {}, 2, "error: x.safetensors: bad thing\n"),
        ("CheckpointError('bad thing')", {"RANK": "1"}, 2, ""),  # rank 0 says it for the job
        ("KeyboardInterrupt()", {}, 130, ""),
    ],
)
def test_the_error_boundary_turns_a_workbench_error_into_one_line(
    tmp_path, raised, env, code, stderr
):
    res = subprocess.run(
        [sys.executable, "-c", BOUNDARY.format(raised=raised)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=cli_env(**env),
    )
    assert (res.returncode, res.stderr, res.stdout) == (code, stderr, "")


def test_the_error_boundary_leaves_bugs_their_traceback(tmp_path):
    res = subprocess.run(
        [sys.executable, "-c", BOUNDARY.format(raised="RuntimeError('a bug')")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=cli_env(),
    )
    assert res.returncode == 1
    assert "Traceback" in res.stderr and res.stderr.endswith("RuntimeError: a bug\n")


def test_the_error_boundary_holds_inside_the_app_object(tmp_path):
    """Tests and tools call `app` without `main`: the boundary is in the app itself."""
    from workbench.cli import app

    assert app(["inspect", str(tmp_path / "none.safetensors")], standalone_mode=False) == 2
    assert app(["runs", "--runs-dir", str(tmp_path), "--diff", "a"], standalone_mode=False) == 2
