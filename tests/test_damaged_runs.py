"""A corpus of damaged runs: every reader lists them as damaged, with file and line, and none
of them (Home, the live screen, Compare, the Study screen, `runs`, `inspect`) falls over.

Events files, notes and saved evaluations are files a crashed writer or a user's editor left
behind: hostile input, read without trusting a single field.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.records.events import EventTail, read_log
from engine.records.run_state import RunState
from engine.records.runs import read_note, run_info
from tests.conftest import wait_for, wb
from workbench.tui.series import RunSeries

START = {
    "type": "run_started",
    "time": 100.0,
    "config": {"name": "tiny", "method": {"name": "standard"}, "train": {"epochs": 2}},
    "device": "cpu",
    "steps_per_epoch": 4,
    "start_epoch": 0,
}
STEP = {"type": "step", "time": 101.0, "epoch": 1, "step": 1, "loss": 2.3, "parts": {"ce": 2.3}}
EPOCH = {"type": "epoch_end", "time": 102.0, "epoch": 1, "clean_acc": 50.0, "robust_acc": 20.0}
DONE = {"type": "run_finished", "time": 103.0, "status": "finished", "epoch": 2}

# name -> (the damaged third line, words its reason must contain)
CORPUS: dict[str, tuple[str, str]] = {
    "wrong-types": ('{"type":"epoch_end","epoch":"three","clean_acc":"x"}', "epoch_end.epoch"),
    "huge-float-epoch": ('{"type":"epoch_end","epoch":1e308}', "epoch_end.epoch"),
    "huge-int-step": ('{"type":"step","epoch":1,"step":' + "9" * 40 + "}", "step.step"),
    "five-thousand-digits": ('{"type":"step","epoch":1,"step":' + "9" * 5000 + "}", "JSON"),
    "nan-accuracy": ('{"type":"epoch_end","epoch":1,"robust_acc":NaN}', "robust_acc"),
    "nan-string-accuracy": ('{"type":"epoch_end","epoch":1,"clean_acc":"nan"}', "clean_acc"),
    "accuracy-over-100": ('{"type":"epoch_end","epoch":1,"best_robust_acc":250}', "best_robust"),
    "missing-epoch": ('{"type":"epoch_end","clean_acc":50.0}', "has no epoch"),
    "missing-step": ('{"type":"step","epoch":1}', "has no step"),
    "bool-epoch": ('{"type":"epoch_end","epoch":true}', "epoch_end.epoch"),
    "interval-text": ('{"type":"epoch_end","epoch":1,"robust_interval":"wide"}', "interval"),
    "parts-list": ('{"type":"step","epoch":1,"step":2,"parts":[1,2]}', "step.parts"),
    "time-text": ('{"type":"warning","time":"noon","message":"x"}', "warning.time"),
    "config-list": ('{"type":"run_started","config":[1,2]}', "run_started.config"),
    "epochs-text": (
        '{"type":"run_started","config":{"train":{"epochs":"ten"}}}',
        "train.epochs",
    ),
    "method-text": ('{"type":"run_started","config":{"method":"atblr"}}', "method"),
    "status-object": ('{"type":"run_finished","status":{"a":1}}', "run_finished.status"),
    "table-list": ('{"type":"eval_result","table":[1,2]}', "eval_result.table"),
    "gpu-text": ('{"type":"step","epoch":1,"step":2,"gpu_mem_mb":"lots"}', "gpu_mem_mb"),
    "deep-nesting": ("[" * 100_000 + "]" * 100_000, "JSON"),
    "not-an-object": ("[1, 2, 3]", "JSON object"),
    "no-type": ('{"epoch": 1}', "no event type"),
    "garbage": ("this is not json at all", "JSON"),
}


def lines(*events: dict) -> str:
    return "".join(json.dumps(e) + "\n" for e in events)


def make_corpus(runs: Path) -> dict[str, Path]:
    """One run per damage, each a valid run but for its third line; plus the odd files."""
    made = {}
    for name, (bad, _) in CORPUS.items():
        d = runs / name
        d.mkdir(parents=True)
        (d / "events.jsonl").write_text(lines(START, STEP) + bad + "\n" + lines(EPOCH, DONE))
        made[name] = d
    binary = runs / "binary-bytes"
    binary.mkdir()
    (binary / "events.jsonl").write_bytes(
        lines(START, STEP).encode() + b"\xff\xfe\x00\x1c\r junk\n" + lines(EPOCH, DONE).encode()
    )
    made["binary-bytes"] = binary
    folder = runs / "events-is-a-folder"
    (folder / "events.jsonl").mkdir(parents=True)
    made["events-is-a-folder"] = folder
    return made


def test_every_damaged_line_is_named_by_file_and_line_and_the_rest_still_reads(tmp_path):
    made = make_corpus(tmp_path / "runs")
    for name, (_, words) in CORPUS.items():
        log = read_log(made[name] / "events.jsonl")
        assert [d.line for d in log.damage] == [3], name
        assert words in log.damage[0].reason, (name, log.damage[0].reason)
        assert [e["type"] for e in log.events] == [
            "run_started",
            "step",
            "epoch_end",
            "run_finished",
        ]
        info = run_info(made[name])
        assert info.status == "damaged", name
        assert f"{made[name] / 'events.jsonl'} line 3: " in info.damage
        assert info.epoch == 1 and info.best_robust_acc is None and info.last_clean_acc == 50.0
    binary = read_log(made["binary-bytes"] / "events.jsonl")
    assert [d.line for d in binary.damage] == [3] and len(binary.events) == 4
    folder = run_info(made["events-is-a-folder"])
    assert folder.status == "damaged" and "cannot be read" in folder.damage


def test_a_torn_last_line_and_an_unknown_event_type_are_not_damage(tmp_path):
    path = tmp_path / "events.jsonl"
    future = {"type": "from_a_newer_version", "time": 1.0, "epoch": "whatever"}
    path.write_text(lines(START, future, STEP) + '{"type":"step","epo')
    log = read_log(path)
    assert log.damage == [] and [e["type"] for e in log.events] == ["run_started", "step"]
    tail = EventTail(path)
    assert [e["type"] for e in tail.poll()] == ["run_started", "step"]
    with open(path, "a") as fh:  # the writer finishes the torn line, then a bad one comes
        fh.write('ch":1,"step":2}\n{"type":"epoch_end","epoch":"two"}\n')
    assert [e["step"] for e in tail.poll()] == [2]
    assert [(d.line, "epoch_end.epoch" in d.reason) for d in tail.damage] == [(5, True)]


def test_run_state_and_series_refuse_every_damaged_event_without_raising():
    for name, (bad, words) in CORPUS.items():
        try:
            event = json.loads(bad)
        except (ValueError, RecursionError):
            continue  # not JSON: the reader's business, tested above
        state = RunState()
        state.apply(START)
        assert state.apply(event) is False, name
        if isinstance(event, dict):
            assert words in state.damaged, (name, state.damaged)
        series = RunSeries()
        series.add(START)
        series.add(event)
        assert series.log[-1][1].startswith("damaged: "), name
        assert series.state.epochs == [] and series.step_x == []


def test_hostile_notes_read_as_no_note(tmp_path):
    for text in ('{"tags": 5}', "[1, 2]", '{"note": 3, "tags": ["ok", 7]}', "\x00\x01", "{"):
        (tmp_path / "notes.json").write_text(text)
        note, tags = read_note(tmp_path)
        assert isinstance(note, str) and all(isinstance(t, str) for t in tags)
    (tmp_path / "notes.json").write_text('{"note": 3, "tags": ["ok", 7]}')
    assert read_note(tmp_path) == ("", ["ok"])


def test_runs_lists_every_damaged_run_as_damaged_and_exits_0(tmp_path):
    make_corpus(tmp_path / "runs")
    res = wb("runs", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    listed = {r["name"]: r for r in json.loads(res.stdout)}
    assert set(listed) == {*CORPUS, "binary-bytes", "events-is-a-folder"}
    assert all(r["status"] == "damaged" and r["damage"] for r in listed.values())
    text = wb("runs", cwd=tmp_path)
    assert text.returncode == 0 and "Traceback" not in text.stderr
    assert text.stdout.count("damaged") >= len(listed)


def test_a_running_run_with_a_damaged_line_keeps_its_status(tmp_path):
    from engine.records.runs import RunLock

    d = tmp_path / "live"
    d.mkdir()
    (d / "events.jsonl").write_text(lines(START) + '{"type":"step","step":"x","epoch":1}\n')
    lock = RunLock(d).acquire()
    try:
        info = run_info(d)
    finally:
        lock.release()
    assert info.status == "running" and "line 2" in info.damage


def damaged_study(runs: Path) -> None:
    """A study whose members are damaged: one events file, one saved evaluation."""
    from engine.study import members as ms
    from engine.study.spec import Member, StudySpec

    spec = StudySpec(name="hurt", seeds=[0, 1], arm=[{"name": "a", "preset": "demo"}])
    members = [Member("a", (), s, "demo.toml", (f"train.seed={s}",)) for s in (0, 1)]
    ms.save_resolved(runs, spec, members)
    for m in members:
        d = ms.member_dir(runs, "hurt", m)
        d.mkdir(parents=True)
        events = [START, EPOCH, DONE] if m.seed == 1 else [START]
        bad = "" if m.seed == 1 else '{"type":"epoch_end","epoch":"x"}\n'
        (d / "events.jsonl").write_text(lines(*events) + bad)
        (d / "best.safetensors").write_bytes(b"")
    member1 = ms.member_dir(runs, "hurt", members[1])
    (member1 / "eval").mkdir()
    (member1 / "eval" / "paper-1.json").write_text(
        json.dumps(
            {
                "kind": "suite",
                "suite": "paper",
                "checkpoint": str(member1 / "best.safetensors"),
                "per_example": {"clean": "ones"},
                "n": 3,
                "indices": [0, 1, 2],
            }
        )
    )


def test_the_study_report_names_damaged_members_instead_of_failing(tmp_path):
    from engine.study import members as ms
    from engine.study.report import report

    damaged_study(tmp_path)
    spec, members = ms.load_resolved(tmp_path, "hurt")
    doc, _ = report(spec, members, tmp_path)
    rows = {r["seed"]: r for r in doc["members"]}
    assert rows[0]["status"] == ms.FAILED and "damaged: " in rows[0]["reason"]
    assert "line 2" in rows[0]["reason"]
    assert rows[1]["status"] == ms.FAILED and "per_example.clean" in rows[1]["reason"]


def test_inspect_lists_hostile_saved_evaluations_without_falling_over(tmp_path, static_ckpt):
    evals = static_ckpt.parent / "eval"
    evals.mkdir()
    me = str(static_ckpt)
    for i, doc in enumerate(
        [
            {"checkpoint": me, "table": [1, 2], "sanity": "all good", "defense": "apinet"},
            {"checkpoint": me, "table": {"clean": "high"}, "time": 5, "n": "many"},
            {"checkpoint": me, "sanity": [1, None, {"status": "WARN"}], "eps": [0.3]},
            {"checkpoint": 12},
            {"checkpoint": "bad\u0000path"},
        ]
    ):
        (evals / f"e{i}.json").write_text(json.dumps(doc))
    (evals / "torn.json").write_text('{"checkpoint": ')
    res = wb("inspect", str(static_ckpt), "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    saved = json.loads(res.stdout)["evaluations"]
    assert len(saved) == 4  # three of this checkpoint's, and the unreadable one
    assert sum(1 for r in saved if r.get("error") == "unreadable") == 1
    assert sorted(r.get("warnings", 0) for r in saved) == [0, 0, 0, 1]
    text = wb("inspect", str(static_ckpt), cwd=tmp_path)
    assert text.returncode == 0 and "Traceback" not in text.stderr


@pytest.fixture
def static_ckpt(tmp_path):
    """A real checkpoint of a tiny model in runs/ok/ (no training)."""
    import torch

    from engine import checkpoint_io as ckpt
    from engine.models import build
    from engine.spec.preset_files import load_preset
    from tests.conftest import TINY_PRESET, write_preset

    cfg = load_preset(write_preset(tmp_path / "tiny.toml", TINY_PRESET))
    run = tmp_path / "runs" / "ok"
    run.mkdir(parents=True)
    (run / "events.jsonl").write_text(lines(START, EPOCH, DONE))
    torch.manual_seed(0)
    meta = ckpt.base_metadata(cfg, 1, {"best_robust_acc": 20.0, "history": []}, "weights")
    meta.update(created="2026-01-01T00:00:00+0000", torch_version="2.x", device="cpu")
    return ckpt.save(run / "best.safetensors", ckpt.pack_model(build(cfg)), meta)


def test_hostile_checkpoint_headers_are_one_line_and_exit_2(tmp_path):
    def safetensors(header: object) -> bytes:
        raw = json.dumps(header).encode()
        return len(raw).to_bytes(8, "little") + raw

    cases = {
        "meta-list": {"__metadata__": [1, 2]},
        "meta-numbers": {"__metadata__": {"format": 1}},
        "offsets-text": {"t": {"dtype": "F32", "shape": [1], "data_offsets": ["0", "4"]}},
        "negative": {"t": {"dtype": "F32", "shape": [-1], "data_offsets": [4, 0]}},
    }
    for name, header in cases.items():
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(safetensors(header))
        res = wb("inspect", str(path), cwd=tmp_path)
        assert res.returncode == 2, (name, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr


# -- the app over the corpus


def test_the_app_opens_every_damaged_run_on_every_screen(tmp_path, monkeypatch):
    import asyncio

    from workbench.tui.app import WorkbenchApp
    from workbench.tui.compare import CompareScreen
    from workbench.tui.home import HomeScreen
    from workbench.tui.run_screen import RunScreen
    from workbench.tui.study_screen import StudyScreen

    monkeypatch.chdir(tmp_path)
    made = make_corpus(tmp_path / "runs")
    damaged_study(tmp_path / "runs")
    (made["wrong-types"] / "notes.json").write_text('{"tags": 5, "note": [1]}')
    app = WorkbenchApp(Path("runs"))

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            home = app.screen
            assert isinstance(home, HomeScreen)
            table = home.query_one("#runs")
            await wait_for(pilot, lambda: table.row_count >= len(made), 30.0, 0.1)
            await wait_for(pilot, lambda: home.query_one("#run-damage").display, 30.0, 0.1)
            shown = str(home.query_one("#run-damage").render())
            assert "damaged:" in shown and "line" in shown
            for name, run_dir in made.items():
                app.action_attach(run_dir)
                await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), 30.0, 0.1)
                screen = app.screen
                await wait_for(pilot, lambda s=screen: s.series.state.damage, 10.0, 0.1)
                await pilot.pause(0.5)  # a few redraws of the plots and the header
                assert any(t.startswith("damaged: ") for _, t in screen.series.log), name
                app.pop_screen()
            app.push_screen(CompareScreen())
            await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen), 30.0, 0.1)
            compare = app.screen
            await wait_for(pilot, lambda: compare.series, 30.0, 0.1)
            for key in ("m", "m", "f", "f"):  # another metric, then the settings that differ
                await pilot.press(key)
            await pilot.pause(0.3)
            app.pop_screen()
            app.push_screen(StudyScreen())
            await wait_for(pilot, lambda: isinstance(app.screen, StudyScreen), 30.0, 0.1)
            study = app.screen
            await wait_for(pilot, lambda: study.doc is not None, 30.0, 0.1)
            assert {r["status"] for r in study.doc["members"]} == {"failed"}
            assert study.query_one("#members").row_count == 2

    asyncio.run(scenario())
    assert app.return_code in (None, 0)


def test_an_uncaught_error_in_the_app_exits_1_and_leaves_its_traceback(tmp_path, monkeypatch):
    import asyncio

    from workbench.tui.app import WorkbenchApp
    from workbench.tui.home import HomeScreen

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))

    def broken(self) -> None:
        raise RuntimeError("a bug no file should be able to cause")

    monkeypatch.setattr(HomeScreen, "action_refresh", broken)
    app = WorkbenchApp(Path("runs"))

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause(0.5)

    with pytest.raises(RuntimeError):
        asyncio.run(scenario())
    assert app.return_code == 1
    assert app.crash_log is not None and app.crash_log.parent == tmp_path / ".cache" / "workbench"
    assert "RuntimeError: a bug no file" in app.crash_log.read_text()

    from typer.testing import CliRunner

    from workbench.cli import app as cli

    def crashed_run(self) -> None:  # the app's loop, ending as a crash ends it
        self._return_code = 1
        self.crash_log = tmp_path / "crash.log"

    monkeypatch.setattr(WorkbenchApp, "run", crashed_run)
    res = CliRunner().invoke(cli, ["--runs-dir", str(tmp_path / "runs")])
    assert res.exit_code == 1
    assert f"its traceback is in {tmp_path / 'crash.log'}" in res.output


def test_a_panels_record_asking_for_thousands_of_plots_reads_as_none():
    series = [{"key": f"k{i}"} for i in range(5000)]
    plots = [{"title": f"p{i}", "keys": [f"k{i}"]} for i in range(5000)]
    state = RunState()
    assert state.apply({**START, "panels": {"series": series, "plots": plots}})
    assert state.panels is None and state.status == "running"
    state.apply({**START, "panels": {"series": series[:2], "plots": plots[:2]}})
    assert state.panels is not None and len(state.panels.plots) == 2


def test_a_hostile_trash_sidecar_cannot_send_a_restore_outside_the_runs_folder(tmp_path):
    """The trash's sidecar names where undo puts a run back: a name that leaves RUNS is ignored
    when listing, and refused (one line, nothing moved) when given to restore."""
    import pytest

    from engine.records import run_ops
    from engine.spec.errors import WorkbenchError

    runs = tmp_path / "runs"
    (runs / "alpha").mkdir(parents=True)
    where = run_ops.trash(runs, "alpha")
    (where.parent / f"{where.name}.json").write_text('{"name": "../../escaped", "time": 1}')
    (item,) = run_ops.trashed(runs)
    assert item.name == "alpha" and item.time == 1.0  # the folder's own name, not the sidecar's
    for hostile in ("../../escaped", "/tmp/escaped", "a/b/c", "study/../x"):
        with pytest.raises(WorkbenchError, match="name"):
            run_ops.restore(runs, item.path, hostile)
    assert item.path.is_dir() and not (tmp_path / "escaped").exists()
    assert run_ops.restore(runs, item.path, item.name) == runs / "alpha"
