"""`workbench export`: TensorBoard files read back with TensorBoard's own reader, and the CSV
through the csv module, to the numbers and steps of events.jsonl; bad input to `report` and
`export` is one line, exit 2, and nothing written."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

from engine.records.events import EventWriter, read_events
from engine.report.trackers import TensorBoardSink, export_csv, export_runs, export_tensorboard
from tests.report_fixtures import SPE, fake_run


def accumulator(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def check_against_events(acc, events: list[dict]) -> None:
    """Every step's loss, parts and lr, and every epoch's accuracies, at the right step."""
    steps = [e for e in events if e["type"] == "step"]
    epochs = [e for e in events if e["type"] == "epoch_end"]

    def read(tag: str) -> tuple[list[int], list[float]]:
        got = acc.Scalars(tag)
        return [s.step for s in got], [s.value for s in got]

    assert read("train/loss") == (
        [e["step"] for e in steps],
        pytest.approx([e["loss"] for e in steps], rel=1e-6),
    )
    for part in ("ce", "foo", "bar"):
        assert read(f"train/{part}")[1] == pytest.approx(
            [e["parts"][part] for e in steps], rel=1e-6
        )
    assert read("train/lr")[1] == pytest.approx([e["lr"] for e in steps], rel=1e-6)
    at = [e["epoch"] * SPE for e in epochs]
    assert read("val/robust_acc") == (at, pytest.approx([e["robust_acc"] for e in epochs]))
    assert read("val/clean_acc_low") == (
        at,
        pytest.approx([e["clean_interval"][0] for e in epochs]),
    )


def hparams_of(acc) -> dict:
    """The HParams a run's file declares, as TensorBoard's hparams plugin reads them."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    start = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    return {k: getattr(v, v.WhichOneof("kind")) for k, v in start.hparams.items()}


def test_tensorboard_export_reads_back_to_the_events(tmp_path):
    run = fake_run(tmp_path / "runs")
    written = export_tensorboard(export_runs([run]), tmp_path / "tb")
    assert written == [tmp_path / "tb" / "fake"]
    acc = accumulator(written[0])
    check_against_events(acc, read_events(run / "events.jsonl"))
    tags = acc.Tags()
    assert {"train/loss", "train/foo", "val/robust_acc", "test/robust_acc", "epoch/loss"} <= set(
        tags["scalars"]
    )
    assert set(acc.PluginTagToContent("hparams")) == {
        "_hparams_/experiment",
        "_hparams_/session_start_info",
        "_hparams_/session_end_info",
    }
    hp = hparams_of(acc)
    assert hp["method.lambda"] == 0.25 and hp["method.name"] == "mystery"
    assert hp["schedule.milestones"] == "[2, 3]"
    # a second export replaces the first: still one file, the same numbers
    export_tensorboard(export_runs([run]), tmp_path / "tb")
    assert len(list((tmp_path / "tb" / "fake").iterdir())) == 1


def test_csv_round_trips_to_the_same_numbers(tmp_path):
    run = fake_run(tmp_path / "runs")
    other = fake_run(tmp_path / "runs", "other", damaged=False)
    export_csv(export_runs([run, other]), tmp_path / "s.csv")
    with open(tmp_path / "s.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["run", "step", "epoch", "tag", "value"]
    steps = [e for e in read_events(run / "events.jsonl") if e["type"] == "step"]
    loss = [r for r in rows if r["run"] == "fake" and r["tag"] == "train/loss"]
    assert [(int(r["step"]), int(r["epoch"]), float(r["value"])) for r in loss] == [
        (e["step"], e["epoch"], e["loss"]) for e in steps
    ]  # exactly: no float32 on the way
    test = [r for r in rows if r["run"] == "other" and r["tag"] == "test/robust_acc"]
    assert [(int(r["step"]), float(r["value"])) for r in test] == [(3 * SPE, 44.0)]


def test_live_sink_writes_what_the_export_writes(tmp_path):
    """The `[log] tensorboard` listener, fed as the trainer's writer feeds it."""
    src = fake_run(tmp_path / "runs", damaged=False)
    live = tmp_path / "live"
    live.mkdir()
    w = EventWriter(live / "events.jsonl")
    sink = TensorBoardSink(live)
    w.listeners.append(sink)
    for e in read_events(src / "events.jsonl"):
        w.emit(e.pop("type"), **{k: v for k, v in e.items() if k != "time"})
    sink.close()
    w.close()
    check_against_events(accumulator(live), read_events(live / "events.jsonl"))


@pytest.mark.slow  # a real run: about 5 s on an idle 2-core machine, minutes on a busy one
def test_log_tensorboard_writes_event_files_live_in_the_run_folder(tiny_preset, tmp_path):
    """`--set log.tensorboard=true`: a real (tiny) run leaves TensorBoard files beside its
    events, holding the same numbers."""
    import threading

    from engine.records.run_request import RunRequest
    from engine.train.session import run as train

    sets = ("train.epochs=1", "log.tensorboard=true", "train.log_every=1")
    req = RunRequest(str(tiny_preset), sets, "tb", tmp_path / "runs", None, "cpu", 1)
    assert train(req, threading.Event()).status == "finished"
    run = tmp_path / "runs" / "tb"
    assert len(list(run.glob("events.out.tfevents.*"))) == 1
    events = read_events(run / "events.jsonl")
    acc = accumulator(run)
    steps = [e for e in events if e["type"] == "step"]
    got = acc.Scalars("train/loss")
    assert [s.step for s in got] == [e["step"] for e in steps] and len(steps) > 1
    assert [s.value for s in got] == pytest.approx([e["loss"] for e in steps], rel=1e-6)
    val = next(e for e in events if e["type"] == "epoch_end")
    assert acc.Scalars("val/robust_acc")[0].value == pytest.approx(val["robust_acc"])
    assert hparams_of(acc)["log.tensorboard"] == "true"


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    from workbench import cli

    old = sys.argv
    sys.argv = ["workbench", *argv]
    try:
        with pytest.raises(SystemExit) as exc:
            cli.main()
    finally:
        sys.argv = old
    return exc.value.code, capsys.readouterr().err


def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    runs = tmp_path / "runs"
    run = fake_run(runs)
    (tmp_path / "afile").write_text("x")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "bad.json").write_text('{"kind": "suite", "table": {"clean": "high"}}')
    study = '{"kind": "study_report", "groups": [{"label": 1, "evaluated": 2}], "pairs": []}'
    (tmp_path / "study.json").write_text(study)
    cases = [
        (["report", "nope", "--runs-dir", str(runs)], "no such run"),
        (["report", str(tmp_path / "afile")], "not a run folder"),
        (["report", str(run), "--out", str(tmp_path / "afile")], "is a file"),
        (["report", str(run), "--format", "png,gif"], "unsupported gif"),
        (["report", str(tmp_path / "bad.json")], "table.clean"),
        (["report", str(tmp_path / "study.json")], "not a study report"),
        (["report", str(run), "--latex"], "no table to write"),
        (["report", "fake", "--runs-dir", str(tmp_path / "afile")], "is a file"),
        (
            ["export", "nope", "--csv", str(tmp_path / "x.csv"), "--runs-dir", str(runs)],
            "no such run",
        ),
        (["export", str(run), "--tensorboard", str(tmp_path / "afile")], "is a file"),
        (["export", str(run), "--csv", str(runs)], "is a folder"),
        (["export", str(run)], "--tensorboard"),
    ]
    before = files_under(tmp_path)
    for argv, words in cases:
        code, err = run_cli(argv, capsys)
        assert code == 2, (argv, err)
        assert len(err.strip().splitlines()) == 1 and words in err, (argv, err)
        assert files_under(tmp_path) == before, argv


def test_p_on_a_run_writes_its_report_and_says_where(tmp_path, monkeypatch):
    import asyncio

    from tests.conftest import wait_for
    from workbench.tui.app import WorkbenchApp
    from workbench.tui.run_screen import RunScreen

    fake_run(tmp_path / "runs", damaged=False)
    monkeypatch.chdir(tmp_path)
    app = WorkbenchApp(Path("runs"), [])
    said: list[str] = []

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            app.action_attach(Path("runs/fake"))
            await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
            screen = app.screen
            monkeypatch.setattr(screen, "notify", lambda text, **kw: said.append(str(text)))
            await pilot.press("p")
            await wait_for(pilot, lambda: any("report written" in s for s in said), timeout=120)

    asyncio.run(scenario())
    out = tmp_path / "runs" / "fake" / "report"
    assert said[-1] == f"report written to {Path('runs/fake/report')}/ (report.md, 4 figures)"
    assert {"report.md", "loss.png", "l_foo-clean-vs-adversarial.png"} <= {
        f.name for f in out.iterdir()
    }
