"""One launch request: its command line parses back to itself, its preflight is the run's."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.records.run_request import EvalRequest, Preflight, RunRequest
from engine.spec.errors import WorkbenchError
from tests.conftest import ROOT, TINY_PRESET, wait_for, write_preset
from workbench import cli

REQUESTS = [
    RunRequest("tiny.toml"),
    RunRequest(
        "presets/a b.toml",
        ("attack.eps=8/255", "train.epochs=3", "data.root=with space"),
        "n1",
        Path("/tmp/elsewhere"),
        device="cuda:1",
        nproc=2,
    ),
    RunRequest(resume=Path("runs/half"), sets=("train.epochs=4",), device="cpu"),
    RunRequest(resume=Path("runs/half"), nproc=3),
]


def parsed(argv: list[str], monkeypatch) -> RunRequest:
    """What the real `workbench` command line makes of argv (training replaced by a catch)."""
    import workbench.headless
    import workbench.multiproc

    seen: list[RunRequest] = []

    class Done:
        status = "finished"

    def catch(req: RunRequest, *rest: object) -> object:
        seen.append(req)
        return Done() if rest else 0

    monkeypatch.setattr(workbench.headless, "train_here", catch)
    monkeypatch.setattr(workbench.multiproc, "launch_request", catch)
    res = CliRunner().invoke(cli.app, argv)
    assert res.exit_code == 0, res.output
    assert len(seen) == 1
    return seen[0]


@pytest.mark.parametrize("req", REQUESTS, ids=range(len(REQUESTS)))
def test_the_command_line_parses_back_to_the_same_request(req, monkeypatch):
    argv = req.argv()
    assert argv[0] == "run" and "--headless" in argv
    assert parsed(argv, monkeypatch) == req
    assert req.command("py") == ["py", "-m", "workbench", *argv]


def test_the_eval_command_line_reaches_eval(monkeypatch):
    import engine.eval.evaluate

    seen = []

    def catch(checkpoint, suite, sets, samples, *rest, **kw):
        seen.append((checkpoint, suite, samples))
        extra.append(kw)
        raise WorkbenchError("caught")

    extra: list[dict] = []

    monkeypatch.setattr(engine.eval.evaluate, "evaluate_checkpoint", catch)
    res = CliRunner().invoke(cli.app, EvalRequest(Path("r/best.safetensors"), "quick", 64).argv())
    assert res.exit_code == 2 and seen[-1] == (Path("r/best.safetensors"), "quick", 64)
    res = CliRunner().invoke(cli.app, EvalRequest(Path("b.safetensors")).argv())
    assert res.exit_code == 2 and seen[-1] == (Path("b.safetensors"), "paper", 0)
    full = EvalRequest(
        Path("c.safetensors"), seed=3, batch_size=20, device="cpu", resume=True, as_json=True
    )
    res = CliRunner().invoke(cli.app, full.argv())
    assert res.exit_code == 2 and seen[-1] == (Path("c.safetensors"), "paper", 0)
    kw = extra[-1]
    assert (kw["seed"], kw["batch_size"], kw["device"], kw["resume"]) == (3, 20, "cpu", True)


@pytest.fixture
def here(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    write_preset(tmp_path / "tiny.toml", TINY_PRESET)
    return tmp_path


def refusal(req: RunRequest, new_run: bool = True) -> str:
    with pytest.raises(WorkbenchError) as exc:
        req.preflight(new_run)
    message = str(exc.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("req", "needles"),
    [
        (RunRequest("tiny.toml", name="../x"), ("--name", "'../x'")),
        (RunRequest("tiny.toml", name="a/b"), ("--name", "'a/b'")),
        (RunRequest("tiny.toml", ("train.epochz=1",)), ("train.epochz", "allowed keys")),
        (RunRequest("bad.toml"), ("bad.toml", "train.epochz")),
        (RunRequest("nope.toml"), ("nope.toml", "not found")),
        (RunRequest(), ("give a PRESET",)),
        (RunRequest("tiny.toml", runs_dir=Path("tiny.toml")), ("--runs-dir", "is a file")),
        (RunRequest("tiny.toml", nproc=0), ("--nproc 0",)),
        (RunRequest("tiny.toml", nproc=257), ("--nproc 257",)),
        (RunRequest("tiny.toml", ("data.batch_size=3",), nproc=4), ("tiny.toml", "batch_size")),
        (RunRequest(resume=Path("runs/none")), ("runs/none", "not a resumable run")),
    ],
)
def test_preflight_refuses_with_one_line_naming_the_file_and_key(here, req, needles):
    write_preset(here / "bad.toml", TINY_PRESET.replace("epochs = 2", "epochz = 2"))
    message = refusal(req)
    for needle in needles:
        assert needle in message, message
    assert not (here / "runs").exists()  # nothing written


def test_an_existing_run_is_refused_but_a_launchers_placeholder_is_reused(here):
    taken = here / "runs" / "taken"
    taken.mkdir(parents=True)
    (taken / "events.jsonl").write_text("")
    message = refusal(RunRequest("tiny.toml", name="taken"))
    assert "runs/taken: a run with this name exists" in message and "--resume" in message
    rank = RunRequest("tiny.toml", name="taken").preflight(new_run=False)  # a DDP rank > 0
    assert rank.run_dir == Path("runs/taken")
    waiting = here / "runs" / "waiting"  # a launch that failed before its run began
    waiting.mkdir()
    (waiting / "output.log").write_text("no data\n")
    (waiting / "launch.pid").write_text("1")
    assert RunRequest("tiny.toml", name="waiting").preflight().run_dir == Path("runs/waiting")


def test_preflight_resolves_the_preset_and_name_and_pins_them_for_another_process(here):
    req = RunRequest("tiny.toml", ("train.epochs=5",), runs_dir=Path("out"), nproc=2)
    checked = req.preflight()
    assert checked.cfg.train.epochs == 5 and checked.preset_path == Path("tiny.toml")
    assert checked.run_dir.parent == Path("out") and checked.run_dir.name.startswith("tiny-")
    pinned = checked.pinned()
    assert pinned.name == checked.run_dir.name and pinned.preset == "tiny.toml"
    assert pinned.sets == req.sets and pinned.nproc == 2
    assert pinned.preflight().run_dir == checked.run_dir  # the same run, whenever it starts
    bare = RunRequest("demo").preflight()  # a bare name pins to the file it resolved to
    assert Path(bare.pinned().preset).is_file() and bare.pinned().preset.endswith("demo.toml")


def test_session_prepare_runs_the_same_preflight(here, monkeypatch):
    from engine.train import session

    calls = []
    real = RunRequest.preflight

    def spy(self: RunRequest, new_run: bool = True) -> Preflight:
        calls.append((self, new_run))
        return real(self, new_run)

    monkeypatch.setattr(RunRequest, "preflight", spy)
    req = RunRequest("tiny.toml", name="p", device="cpu")
    prep = session.prepare(req, new_run=False)
    assert calls == [(req, False)] and prep.device.type == "cpu" and prep.run_dir.name == "p"
    with pytest.raises(WorkbenchError, match="--name"):
        session.prepare(RunRequest("tiny.toml", name="../p"))


RUN_FLAGS = {"--headless", "--set", "--name", "--runs-dir", "--resume", "--device", "--nproc"}


def argv_literals(path: Path) -> list[str]:
    """Places in a module that put a run flag, or `-m workbench`, into a list or tuple."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.List | ast.Tuple):
            continue
        words = [e.value for e in node.elts if isinstance(e, ast.Constant)]
        first = node.elts[0] if node.elts else None
        other_command = (  # `["runs", "--runs-dir", d]` spells another command's flags
            isinstance(first, ast.Constant) and first.value not in ("run", *RUN_FLAGS)
        )
        if (RUN_FLAGS & set(words) and not other_command) or (
            "-m" in words and "workbench" in words
        ):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_only_the_request_builds_a_run_command_line():
    own = ROOT / "engine" / "records" / "run_request.py"
    assert argv_literals(own)  # the scan finds the one place that does
    sources = [
        p for d in ("engine", "workbench", "bench", "scripts") for p in (ROOT / d).rglob("*.py")
    ]
    assert len(sources) > 50
    offenders = [hit for p in sources if p != own for hit in argv_literals(p)]
    assert offenders == []


def test_the_form_refuses_what_the_run_would_and_launches_the_checked_request(here, monkeypatch):
    import workbench.tui.app as app_module
    from workbench.tui.app import WorkbenchApp
    from workbench.tui.launch import LaunchScreen

    presets = here / "presets"
    presets.mkdir()
    write_preset(presets / "tiny.toml", TINY_PRESET)
    taken = here / "runs" / "taken"
    taken.mkdir(parents=True)
    (taken / "config.toml").write_text("")
    launched: list[Preflight] = []

    class Started:
        name, pid, run_dir = "x", 0, taken

    monkeypatch.setattr(app_module, "launch", lambda checked: launched.append(checked) or Started)
    monkeypatch.setattr(app_module, "RunScreen", lambda run_dir, **_: app_module.Screen())
    app = WorkbenchApp(Path("runs"), [presets])

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            app.action_new_run(presets / "tiny.toml")
            await wait_for(pilot, lambda: isinstance(app.screen, LaunchScreen))
            form = app.screen
            await wait_for(pilot, lambda: bool(form.query("#f-epochs")))
            error = form.query_one("#launch-error")
            for name, needle in (("taken", "a run with this name exists"), ("../x", "run name")):
                form.query_one("#name").value = name
                await pilot.press("ctrl+s")
                await wait_for(pilot, lambda n=needle: n in str(error.render()))
                assert app.screen is form and not launched
            form.query_one("#name").value = "fresh"
            form.query_one("#f-epochs").value = "7"
            form.query_one("#more").value = "attack.steps=1"
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: bool(launched))

    asyncio.run(scenario())
    (checked,) = launched
    assert checked.run_dir == Path("runs") / "fresh"
    assert checked.cfg.train.epochs == 7 and checked.cfg.attack.steps == 1
    assert checked.pinned() == RunRequest(
        str(presets / "tiny.toml"), ("train.epochs=7", "attack.steps=1"), "fresh", Path("runs")
    )
