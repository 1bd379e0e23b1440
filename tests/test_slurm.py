"""Studies on a real SLURM cluster (.ci/slurm-up: one node, accounting on); skipped without one.

Every member runs as a SLURM job through submitit, exactly as on a user's
cluster: the report equals the local executor's per example, the array limit
holds (sampled from squeue while the study runs), `scancel` makes a member
save and the next study resume it to the very weights of an uninterrupted
run, a failed member keeps its reason, and a 2-process member (srun, gloo)
follows the 1-process loss curve. Set WB_SLURM_CAPTURES=DIR to keep the
squeue samples and the reports side by side there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY_PRESET, cli_env, wb, write_preset
from tests.test_distributed import DDP_SETS, assert_same_run, events, step_losses, weights
from tests.test_distributed import train as train_local
from tests.test_study import STUDY

pytestmark = pytest.mark.slurm

# one CPU per member: two members fit the 2-CPU node, so a limit of 1 is the array's doing
SLURM = ["--executor", "slurm", "--slurm-cpus", "1", "--slurm-time", "30"]


def study(name: str) -> str:
    """tests/test_study.py's 2-arm x 2-seed study of tiny members, under another name."""
    return STUDY.replace('name = "mini"', f'name = "{name}"', 1)


def cluster_up() -> str:
    """Why no cluster is usable here ('' when one is)."""
    if not os.environ.get("SLURM_CONF"):
        return "no SLURM cluster: run .ci/slurm-up and export SLURM_CONF (docs/studies.md)"
    try:
        res = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"no SLURM cluster: sinfo: {exc}"
    if res.returncode != 0 or not {"idle", "mixed", "allocated"} & set(res.stdout.split()):
        return f"no SLURM cluster answers: sinfo says {res.stdout.strip() or res.stderr.strip()!r}"
    return ""


@pytest.fixture(scope="module", autouse=True)
def cluster():
    why = cluster_up()
    if why:
        pytest.skip(why)


def capture(name: str, text: str) -> None:
    folder = os.environ.get("WB_SLURM_CAPTURES")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / name).write_text(text, encoding="utf-8")


def tiny(root: Path, epochs: int = 1) -> None:
    """The tests' tiny synthetic preset, 256 examples, learning fast enough that seeds differ."""
    body = TINY_PRESET.replace("[train]\nepochs = 2", f"[train]\nepochs = {epochs}")
    body = body.replace("log_every = 2", "log_every = 1").replace("lr = 0.002", "lr = 0.01")
    body = body.replace("[data]\n", "[data]\ntrain_limit = 256\nval_size = 32\n", 1)
    write_preset(root / "tiny.toml", body.replace("[eval]\nsamples = 64", "[eval]\nsamples = 16"))


def squeue(job_name: str) -> list[tuple[str, str, str]]:
    res = subprocess.run(
        ["squeue", "-h", "-r", "-n", job_name, "-o", "%i|%T|%r"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return [tuple(line.split("|")) for line in res.stdout.splitlines() if line.count("|") == 2]


def report(root: Path, name: str) -> dict:
    res = wb("study", "report", name, "--json", cwd=root)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """The same 2-arm x 2-seed study run locally and through SLURM (array limit 1, squeue
    sampled twice a second while it runs)."""
    root = tmp_path_factory.mktemp("slurm-study")
    tiny(root)
    write_preset(root / "local.toml", study("viaslocal"))
    write_preset(root / "slurm.toml", study("viaslurm"))
    samples: list[tuple[float, list[tuple[str, str, str]]]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append((time.time(), squeue("wb-viaslurm")))
            done.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    res = wb("study", "slurm.toml", *SLURM, "--slurm-array-limit", "1", cwd=root, timeout=900)
    done.set()
    sampler.join()
    local = wb("study", "local.toml", "--jobs", "2", cwd=root, timeout=900)
    return root, res, local, samples


def test_a_study_through_slurm_reports_what_the_local_executor_reports(both):
    root, res, local, _ = both
    assert res.returncode == 0, res.stderr
    assert local.returncode == 0, local.stderr
    a, b = report(root, "viaslurm"), report(root, "viaslocal")
    capture("report-slurm.txt", res.stdout)
    capture("report-local.txt", local.stdout)
    assert len(a["members"]) == 4 and all(m["status"] == "done" for m in a["members"])
    for ma, mb in zip(a["members"], b["members"], strict=True):
        assert ma["name"] == mb["name"]
        for key in ("indices", "clean_outcomes", "robust_outcomes"):
            assert ma[key] == mb[key], (ma["name"], key)
    assert a["groups"] == b["groups"] and a["pairs"] == b["pairs"]
    # not a vacuous equality: the seeds' outcomes differ, so a mixed-up member would show
    s0, s1 = (m["robust_outcomes"] for m in a["members"][:2])
    assert s0 != s1


def test_the_array_limit_held_while_the_study_ran(both):
    root, res, _, samples = both
    assert res.returncode == 0, res.stderr
    running = [sum(1 for _, state, _ in rows if state == "RUNNING") for _, rows in samples]
    waited = {r for _, rows in samples for _, state, r in rows if state == "PENDING"}
    lines = [
        f"{time.strftime('%H:%M:%S', time.localtime(t))} "
        + (" ".join(f"{i}:{s}" + (f"({r})" if s == "PENDING" else "") for i, s, r in rows) or "-")
        for t, rows in samples
    ]
    capture("squeue-array-limit.txt", "\n".join(lines) + "\n")
    assert max(running) == 1, lines  # never two members at once, though two CPUs were free
    assert "JobArrayTaskLimit" in waited, lines  # SLURM held them back for the limit
    jobs = json.loads((root / "runs" / "viaslurm" / ".study" / "jobs.json").read_text())
    assert sorted(j["job_id"].split("_")[1] for j in jobs.values()) == ["0", "1", "2", "3"]


def test_study_status_lists_every_member_with_its_job(both):
    root, _, _, _ = both
    res = wb("study", "status", "viaslurm", "--json", cwd=root)
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    assert [r["name"] for r in rows] == ["madry__s0", "madry__s1", "weak__s0", "weak__s1"]
    host = subprocess.run(["hostname", "-s"], capture_output=True, text=True).stdout.strip()
    for r in rows:
        assert r["job_state"] == "COMPLETED" and r["node"] == host, r
        assert r["elapsed"].count(":") == 2 and r["elapsed"] != "00:00:00", r
        assert Path(r["log"]).is_file() and r["job_id"] in Path(r["log"]).name
    text = wb("study", "status", "viaslurm", cwd=root).stdout
    assert rows[0]["job_id"] in text and "COMPLETED" in text and rows[0]["log"] in text


def test_the_study_screen_shows_each_members_job_and_opens_its_log(both):
    import asyncio

    from tests.test_tui import wait_for
    from workbench.tui.app import WorkbenchApp
    from workbench.tui.log_screen import LogScreen
    from workbench.tui.study_screen import StudyScreen

    root, _, _, _ = both
    app = WorkbenchApp(root / "runs", [root])
    rows = json.loads(wb("study", "status", "viaslurm", "--json", cwd=root).stdout)

    async def scenario() -> None:
        async with app.run_test(size=(160, 40)) as pilot:
            await pilot.press("t")
            screen = app.screen
            assert isinstance(screen, StudyScreen)
            screen.current = "viaslurm"
            screen.action_refresh()
            await wait_for(pilot, lambda: (screen.doc or {}).get("study") == "viaslurm")
            table = screen.query_one("#members")
            cells = [str(c) for c in table.get_row_at(0)]
            assert rows[0]["job_id"] in cells and "COMPLETED" in cells, cells
            table.focus()
            await pilot.press("l")
            assert isinstance(app.screen, LogScreen)
            log = app.screen
            assert log.path == Path(rows[0]["log"])
            await wait_for(pilot, lambda: any("JobEnvironment(job_id=" in ln for ln in log.lines))

    asyncio.run(scenario())


def cut_study(root: Path, name: str) -> Path:
    write_preset(
        root / f"{name}.toml",
        f'name = "{name}"\nseeds = [0]\nsuite = "quick"\nsamples = 32\n'
        '[[arm]]\nname = "a"\npreset = "tiny.toml"\n',
    )
    return root / "runs" / name / "a__s0"


def wait_for_steps(events_file: Path, n: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = events_file.read_text().splitlines() if events_file.exists() else []
        if sum(1 for ln in lines if ln.startswith('{"type":"step",')) >= n:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    raise AssertionError(f"{events_file}: fewer than {n} steps in {timeout} s")


def model_weights(path: Path) -> dict[str, torch.Tensor]:
    from engine.checkpoint_io import load

    tensors, _ = load(path)
    return {k: v for k, v in tensors.items() if k.startswith("model.")}


def test_scancel_saves_the_member_and_the_next_study_resumes_it_exactly(tmp_path):
    tiny(tmp_path, epochs=4)  # 16 steps: scancel lands mid-run
    run = cut_study(tmp_path, "cut")
    cmd = [sys.executable, "-m", "workbench", "study", "cut.toml", *SLURM]
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    wait_for_steps(run / "events.jsonl", 2, proc)
    job = json.loads((tmp_path / "runs" / "cut" / ".study" / "jobs.json").read_text())["a__s0"]
    subprocess.run(["scancel", job["job_id"]], check=True, timeout=30)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr  # the study says: interrupted, run me again
    last = events(run)[-1]
    assert last["type"] == "run_finished" and last["status"] == "interrupted", last
    stopped_at = last["step"]
    assert 2 <= stopped_at < 16
    assert (run / "last.safetensors").is_file()
    status = json.loads(wb("study", "status", "cut", "--json", cwd=tmp_path).stdout)[0]
    assert status["status"] == "interrupted" and status["job_state"] == "CANCELLED", status
    res = wb("study", "cut.toml", *SLURM, cwd=tmp_path, timeout=900)
    assert res.returncode == 0, res.stderr
    started = [e for e in events(run) if e["type"] == "run_started"]
    assert [e["resumed"] for e in started] == [False, True]
    ref = wb(
        "run",
        "tiny.toml",
        "--headless",
        "--name",
        "ref",
        "--set",
        "train.seed=0",
        cwd=tmp_path,
        OMP_NUM_THREADS="1",  # the member's one CPU: the same float sums
    )
    assert ref.returncode == 0, ref.stderr
    a, b = (
        model_weights(run / "last.safetensors"),
        model_weights(tmp_path / "runs" / "ref" / "last.safetensors"),
    )
    assert a.keys() == b.keys() and a
    assert all(torch.equal(a[k], b[k]) for k in a), (
        "resumed weights differ from the uninterrupted run"
    )
    assert step_losses(run)[-1] == step_losses(tmp_path / "runs" / "ref")[-1]
    capture(
        "scancel-resume.txt",
        f"scancel {job['job_id']} at step {stopped_at} of 16; resumed by the next study; "
        f"{len(a)} weight tensors bit-identical to an uninterrupted local run "
        f"(final loss {step_losses(run)[-1][1]!r} both)\n",
    )


def test_study_cancel_lets_the_running_member_save_and_drops_the_pending_one(tmp_path):
    tiny(tmp_path, epochs=40)  # 160 steps: far from done when the cancel lands
    write_preset(
        tmp_path / "s.toml",
        'name = "stop"\nseeds = [0, 1]\nsuite = "quick"\nsamples = 32\n'
        '[[arm]]\nname = "a"\npreset = "tiny.toml"\n',
    )
    cmd = [sys.executable, "-m", "workbench", "study", "s.toml", *SLURM, "--slurm-array-limit", "1"]
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    first = tmp_path / "runs" / "stop" / "a__s0"
    wait_for_steps(first / "events.jsonl", 2, proc)
    res = wb("study", "cancel", "stop", cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr
    assert "cancelled 1 pending and stopped 1 running" in res.stderr, res.stderr
    assert "killed" not in res.stderr  # the running member saved before its job ended
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr
    last = events(first)[-1]
    assert last["type"] == "run_finished" and last["status"] == "interrupted"
    assert (first / "last.safetensors").is_file()
    assert not (tmp_path / "runs" / "stop" / "a__s1").exists()  # never started
    rows = json.loads(wb("study", "status", "stop", "--json", cwd=tmp_path).stdout)
    assert [(r["status"], r["job_state"]) for r in rows] == [
        ("interrupted", "COMPLETED"),  # it saved and its job ended by itself
        ("pending", "CANCELLED"),
    ], rows


def test_a_member_that_fails_keeps_its_reason_from_the_job_log(tmp_path):
    tiny(tmp_path)
    write_preset(
        tmp_path / "s.toml",
        'name = "bad"\nseeds = [0]\nsuite = "quick"\nsamples = 32\n'
        '[[arm]]\nname = "gpu"\npreset = "tiny.toml"\nset = { "train.device" = "cuda" }\n',
    )
    res = wb("study", "s.toml", *SLURM, cwd=tmp_path, timeout=600)
    assert res.returncode == 1, res.stderr
    (failed,) = report(tmp_path, "bad")["groups"][0]["failed"]
    assert "cuda" in failed["reason"].lower(), failed
    status = json.loads(wb("study", "status", "bad", "--json", cwd=tmp_path).stdout)[0]
    assert status["status"] == "failed" and status["reason"] == failed["reason"]
    assert failed["reason"] in Path(status["err_log"]).read_text()  # the job's own log says it


def test_a_two_process_member_follows_the_one_process_loss_curve(tmp_path):
    write_preset(tmp_path / "tiny.toml", TINY_PRESET)
    sets = [*DDP_SETS, "train.epochs=1"]
    body = 'name = "ddp"\nseeds = [3]\nsuite = "quick"\nsamples = 16\n[[arm]]\nname = "a"\n'
    body += (
        'preset = "tiny.toml"\nset = { '
        + ", ".join(
            f'"{k}" = {v if v[0].isdigit() or v in ("true", "false") else json.dumps(v)}'
            for k, v in (s.split("=", 1) for s in sets)
        )
        + " }\n"
    )
    write_preset(tmp_path / "s.toml", body)
    res = wb(
        "study", "s.toml", *SLURM, "--nproc", "2", cwd=tmp_path, timeout=900, OMP_NUM_THREADS="1"
    )
    assert res.returncode == 0, res.stderr
    two = tmp_path / "runs" / "ddp" / "a__s3"
    started = [e for e in events(two) if e["type"] == "run_started"]
    assert started[0]["distributed"]["world_size"] == 2
    assert started[0]["distributed"]["backend"] == "gloo"
    one = train_local(tmp_path, "one", 1, sets=[*DDP_SETS, "train.seed=3"])
    assert_same_run(one, two)
    assert set(weights(one)) == set(weights(two))


@pytest.mark.slow
def test_a_member_at_its_time_limit_saves_on_sigusr2_and_is_requeued_to_the_end(tmp_path):
    """--slurm-time 2 with the warning 60 s ahead: SIGUSR2 comes 60-90 s into each attempt
    (SLURM checks time limits every 30 s or so); the member saves, submitit requeues the same
    job with the member's resume, and the study ends with the weights of an uninterrupted run."""
    tiny(tmp_path, epochs=100)  # 400 steps, longer than one attempt's 60-90 s
    run = cut_study(tmp_path, "limit")
    opts = ["--executor", "slurm", "--slurm-cpus", "1", "--slurm-time", "2"]
    res = wb("study", "limit.toml", *opts, "--slurm-signal-delay", "60", cwd=tmp_path, timeout=1500)
    assert res.returncode == 0, res.stderr
    job = json.loads((tmp_path / "runs" / "limit" / ".study" / "jobs.json").read_text())["a__s0"]
    started = [e for e in events(run) if e["type"] == "run_started"]
    assert len(started) >= 2 and all(e["resumed"] for e in started[1:]), started
    finished = [e for e in events(run) if e["type"] == "run_finished"]
    assert [e["status"] for e in finished[:-1]] == ["interrupted"] * (len(finished) - 1)
    assert finished[-1]["status"] == "finished"
    log = Path(job["stderr"]).read_text()
    assert "Caught signal SIGUSR2" in log  # submitit's handler: checkpoint, then requeue
    acct = subprocess.run(
        ["sacct", "-n", "-P", "-X", "--duplicates", "-o", "JobID,State", "-j", job["job_id"]],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout.split()
    assert any(line.endswith("|REQUEUED") for line in acct), acct  # the same job id, requeued
    assert acct[-1].endswith("|COMPLETED"), acct
    ref = wb(
        *("run", "tiny.toml", "--headless", "--name", "ref", "--set", "train.seed=0"),
        cwd=tmp_path,
        OMP_NUM_THREADS="1",
    )
    assert ref.returncode == 0, ref.stderr
    a = model_weights(run / "last.safetensors")
    b = model_weights(tmp_path / "runs" / "ref" / "last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    capture(
        "time-limit.txt",
        f"job {job['job_id']}: {len(started)} attempts (sacct: {' '.join(acct)}); "
        f"stopped at steps {[e['step'] for e in finished[:-1]]}; final weights bit-identical "
        "to an uninterrupted local run\n",
    )
