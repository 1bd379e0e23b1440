"""The training loop: exact resume, graceful stop, NaN guard, events and checkpoints."""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import pytest
import torch

from engine import checkpoint_io as ckpt
from engine.data import load_dataset
from engine.records.events import EventWriter, read_events
from engine.spec.preset_files import load_preset
from engine.train.schedule import lr_at
from engine.train.trainer import Trainer


def make(cfg, run_dir: Path, stop=None) -> Trainer:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "checkpoints").mkdir(exist_ok=True)
    data = load_dataset(cfg.data.dataset)
    writer = EventWriter(run_dir / "events.jsonl")
    return Trainer(cfg, data, run_dir, writer, torch.device("cpu"), stop)


def weights(path: Path) -> dict[str, torch.Tensor]:
    tensors, _ = ckpt.load(path)
    return {k: v for k, v in tensors.items() if k.startswith(("model.", "optim."))}


def assert_same(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_at_epoch_boundary_equals_uninterrupted(tiny_preset, tmp_path):
    full = make(load_preset(tiny_preset), tmp_path / "full")
    assert full.run().status == "finished"
    first = make(load_preset(tiny_preset, ["train.epochs=1"]), tmp_path / "split")
    first.run()
    second = make(load_preset(tiny_preset), tmp_path / "split")
    second.resume(tmp_path / "split" / "last.safetensors")
    assert second.run().status == "finished"
    assert_same(
        weights(tmp_path / "full" / "last.safetensors"),
        weights(tmp_path / "split" / "last.safetensors"),
    )


def test_stop_mid_epoch_saves_and_resume_equals_uninterrupted(tiny_preset, tmp_path):
    sets = ["train.log_every=1", "data.augment=true", "data.flip=true", "data.crop_padding=2"]
    full = make(load_preset(tiny_preset, sets), tmp_path / "full")
    full.run()
    stop = threading.Event()
    t = make(load_preset(tiny_preset, sets), tmp_path / "cut", stop)
    t.writer.listeners.append(
        lambda e: stop.set() if e["type"] == "step" and e["step"] == 11 else None
    )
    out = t.run()
    assert out.status == "interrupted" and out.saved
    _, meta = ckpt.read_header(tmp_path / "cut" / "last.safetensors")
    per_epoch = len(t.train_loader)  # 448 training examples (512 less validation) / 64
    assert per_epoch == 7 and meta["epoch"] == "1"  # one full epoch, then 4 more steps
    events = read_events(tmp_path / "cut" / "events.jsonl")
    assert events[-1]["type"] == "run_finished" and events[-1]["status"] == "interrupted"
    t.writer.close()
    again = make(load_preset(tiny_preset, sets), tmp_path / "cut")
    again.resume(tmp_path / "cut" / "last.safetensors")
    assert again.state.step_in_epoch == 11 - per_epoch
    assert again.run().status == "finished"
    assert_same(
        weights(tmp_path / "full" / "last.safetensors"),
        weights(tmp_path / "cut" / "last.safetensors"),
    )


def test_nan_guard_stops_cleanly_and_keeps_last_good_checkpoint(tiny_preset, tmp_path):
    t = make(load_preset(tiny_preset, ["train.epochs=3"]), tmp_path / "nan")
    real_loss = t.method.loss
    saved: dict[str, bytes] = {}

    def poisoned(model, x, y):
        loss, parts = real_loss(model, x, y)
        if t.state.epoch >= 1:  # second epoch: the loss runs away
            if "last" not in saved:
                saved["last"] = (tmp_path / "nan" / "last.safetensors").read_bytes()
            return loss * float("nan"), parts
        return loss, parts

    t.method.loss = poisoned
    out = t.run()
    assert out.status == "failed"
    assert "non-finite" in out.error
    events = read_events(tmp_path / "nan" / "events.jsonl")
    assert events[-1]["type"] == "run_failed" and "non-finite" in events[-1]["error"]
    assert (tmp_path / "nan" / "last.safetensors").read_bytes() == saved["last"]
    for e in events:
        if e["type"] == "step":
            assert all(isinstance(v, float) and math.isfinite(v) for v in e["parts"].values())


def test_atblr_streams_both_likelihood_parts_and_writes_all_files(tiny_preset, tmp_path):
    cfg = load_preset(
        tiny_preset,
        ["method.name=atblr", "model.head=gaussian", "method.adv_cap=0.05", "train.epochs=3"],
    )
    t = make(cfg, tmp_path / "r")
    assert t.run().status == "finished"
    events = read_events(tmp_path / "r" / "events.jsonl")
    steps = [e for e in events if e["type"] == "step"]
    assert steps and all(
        {"lkd_clean", "lkd_adv", "ce_clean", "ce_adv"} <= set(e["parts"]) for e in steps
    )
    types = [e["type"] for e in events]
    assert types[0] == "run_started" and types[-1] == "run_finished"
    ends = [e for e in events if e["type"] == "epoch_end"]
    assert [e["epoch"] for e in ends] == [1, 2, 3]
    assert all(0 <= e["clean_acc"] <= 100 and 0 <= e["robust_acc"] <= e["clean_acc"] for e in ends)
    assert all("time" in e for e in events)
    ckpts = sorted(p.name for p in (tmp_path / "r" / "checkpoints").iterdir())
    assert ckpts == ["epoch-0002.safetensors", "epoch-0003.safetensors"]  # keep = 2
    _, best = ckpt.read_header(tmp_path / "r" / "best.safetensors")
    assert best["kind"] == "weights" and best["method"] == "atblr"
    best_acc = max(e["robust_acc"] for e in ends)
    assert float(best["metrics"].split('"best_robust_acc": ')[1].split(",")[0]) == best_acc


@pytest.mark.parametrize(
    ("sched", "epoch", "expected"),
    [
        (["schedule.kind=multistep", "schedule.milestones=[2, 3]"], 0.5, 0.002),
        (["schedule.kind=multistep", "schedule.milestones=[2, 3]"], 1.0, 0.0002),
        (["schedule.kind=multistep", "schedule.milestones=[2, 3]"], 2.2, 0.00002),
        (["schedule.kind=cosine", "train.epochs=4"], 2.0, 0.001),
        (["schedule.kind=constant"], 3.7, 0.002),
    ],
)
def test_learning_rate_schedules(tiny_preset, sched, epoch, expected):
    assert lr_at(load_preset(tiny_preset, sched), epoch) == pytest.approx(expected)


def test_resume_refuses_weights_only_and_malformed_checkpoints(tiny_preset, tmp_path):
    from engine.spec.errors import CheckpointError

    t = make(load_preset(tiny_preset, ["train.epochs=1"]), tmp_path / "r")
    t.run()
    again = make(load_preset(tiny_preset), tmp_path / "r")
    with pytest.raises(CheckpointError, match="weights-only"):
        again.resume(tmp_path / "r" / "best.safetensors")
    tensors, meta = ckpt.load(tmp_path / "r" / "last.safetensors")
    del meta["progress"]
    ckpt.save(tmp_path / "bad.safetensors", tensors, meta)
    with pytest.raises(CheckpointError, match="progress"):
        again.resume(tmp_path / "bad.safetensors")


def test_run_summary_follows_the_events_file_and_liveness(tiny_preset, tmp_path):
    import json as _json

    from engine.records.runs import run_info

    t = make(load_preset(tiny_preset, ["train.epochs=1"]), tmp_path / "r")
    t.run()
    t.writer.close()
    info = run_info(tmp_path / "r")
    assert info.status == "finished" and info.epoch == 1
    with open(tmp_path / "r" / "events.jsonl", "a") as fh:  # a resumed run, then killed
        fh.write(_json.dumps({"type": "run_started", "time": 1.0, "config": {}}) + "\n")
        end = {"type": "epoch_end", "time": 2.0, "epoch": 2, "robust_acc": 99.0}
        fh.write(_json.dumps({**end, "best_robust_acc": 99.0}) + "\n")
    info = run_info(tmp_path / "r")
    assert info.epoch == 2 and info.best_robust_acc == 99.0
    assert info.status == "stale"  # "running" in its events, but nobody holds the lock


def test_the_epoch_evaluation_is_the_packaged_suite_that_eval_suite_names(
    tiny_preset, tmp_path, monkeypatch
):
    stray = tmp_path / "presets" / "suites" / "quick.toml"  # a user's file must not change it
    stray.parent.mkdir(parents=True)
    stray.write_text('name = "quick"\n[[attack]]\nname = "FGSM"\nkind = "fgsm"\n')
    monkeypatch.chdir(tmp_path)
    quick = make(load_preset(tiny_preset), tmp_path / "q")
    assert quick.evaluation.plan.columns() == ["PGD-2"]
    paper = make(load_preset(tiny_preset, ["eval.suite=paper"]), tmp_path / "p")
    assert paper.evaluation.plan.columns() == ["FGSM", "PGD-40", "PGD-100", "CW-40", "CW-100"]
    m = paper.evaluation(0)
    assert m["split"] == "val" and m["clean_n"] == m["robust_n"] == 64  # synthetic: 64 held out
    assert 0 <= m["robust_acc"] <= m["clean_acc"] <= 100
    lo, hi = m["robust_interval"]
    assert lo <= m["robust_acc"] <= hi


def test_multistep_torch_convention_matches_multisteplr_and_paper_is_one_epoch_earlier(
    tiny_preset,
):
    sets = ["schedule.kind=multistep", "schedule.milestones=[2, 5]", "train.epochs=8"]
    torch_cfg = load_preset(tiny_preset, [*sets, "schedule.convention=torch"])
    paper_cfg = load_preset(tiny_preset, sets)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=torch_cfg.optim.lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[2, 5], gamma=0.1)
    reference = []
    for _ in range(8):  # the rate each epoch trains at, then the scheduler's step
        reference.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    ours = [lr_at(torch_cfg, e) for e in range(8)]
    assert ours == pytest.approx(reference)
    paper = [lr_at(paper_cfg, e) for e in range(8)]
    assert paper[:-1] == pytest.approx(reference[1:])  # paper: epoch m (1-based) is decayed


def test_the_test_split_never_reaches_training_or_selection(tiny_preset, tmp_path):
    from dataclasses import replace

    cfg = load_preset(tiny_preset, ["train.epochs=3"])
    data = load_dataset(cfg.data.dataset)
    g = torch.Generator().manual_seed(0)
    noise = replace(  # the test split replaced by noise with random labels
        data,
        test_x=torch.randint(0, 256, data.test_x.shape, dtype=torch.uint8, generator=g),
        test_y=torch.randint(0, 10, data.test_y.shape, generator=g),
    )
    runs = {}
    for name, d in (("real", data), ("noise", noise)):
        run = tmp_path / name
        (run / "checkpoints").mkdir(parents=True)
        t = Trainer(cfg, d, run, EventWriter(run / "events.jsonl"), torch.device("cpu"))
        assert t.run().status == "finished"
        t.writer.close()
        runs[name] = read_events(run / "events.jsonl")
    for kind in ("last", "best"):
        assert_same(
            weights(tmp_path / "real" / f"{kind}.safetensors"),
            weights(tmp_path / "noise" / f"{kind}.safetensors"),
        )

    def epochs(events):
        keep = ("epoch", "split", "clean_acc", "robust_acc", "best_robust_acc", "robust_n")
        return [{k: e[k] for k in keep} for e in events if e["type"] == "epoch_end"]

    assert epochs(runs["real"]) == epochs(runs["noise"])  # selected on validation alone
    assert all(e["split"] == "val" for e in epochs(runs["real"]))
    real, noisy = (r[-1]["test"] for r in (runs["real"], runs["noise"]))
    assert real["split"] == "test" and real["clean_n"] == len(data.test_y) == 256
    assert real["epoch"] == noisy["epoch"]  # the same checkpoint met the test split
    assert real["clean_acc"] > 50 and noisy["clean_acc"] < 25  # and only there it differs
    _, meta = ckpt.read_header(tmp_path / "real" / "best.safetensors")
    assert json.loads(meta["splits"]) == {"train": 448, "val": 64, "test": 256, "val_seed": 0}


def test_resume_refuses_a_checkpoint_split_otherwise(tiny_preset, tmp_path):
    from engine.spec.errors import CheckpointError

    t = make(load_preset(tiny_preset, ["train.epochs=1"]), tmp_path / "r")
    t.run()
    t.writer.close()
    other = make(load_preset(tiny_preset, ["data.val_size=32"]), tmp_path / "r")
    with pytest.raises(CheckpointError, match=r"key 'splits'.*data\.val_size"):
        other.resume(tmp_path / "r" / "last.safetensors")
    tensors, meta = ckpt.load(tmp_path / "r" / "last.safetensors")
    del meta["splits"]  # as a run started before validation splits
    ckpt.save(tmp_path / "old.safetensors", tensors, meta)
    again = make(load_preset(tiny_preset), tmp_path / "r")
    with pytest.raises(CheckpointError, match="before runs had a validation split"):
        again.resume(tmp_path / "old.safetensors")
