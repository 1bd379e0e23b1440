"""Scalars for the trackers people already use: TensorBoard event files (W&B imports them) and
a long-form CSV (run, step, epoch, tag, value) for pandas.

Both come from `scalars.ScalarStream`, so the export, the live sink and the
CSV hold the same numbers under the same tags. TensorBoard files are written
with torch's `SummaryWriter` (scalars as TensorBoard's own `simple_value`,
float32), and a run's resolved config as TensorBoard's HParams (the HParams
dashboard lists runs by their settings and their validation and test accuracy).
"""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path
from typing import Any

from engine.records.checkpoint_header import atomic_write_bytes
from engine.records.events import read_log
from engine.report.run_data import EVENTS
from engine.report.scalars import HPARAM_METRICS, ScalarStream, hparams, scalars
from engine.spec.errors import WorkbenchError

TFEVENTS = "events.out.tfevents."  # what TensorBoard's own writers name their files


class TensorBoardSink:
    """An event listener (`EventWriter.listeners`) that mirrors a run's scalars into TensorBoard
    event files in `log_dir` as they are written: `[log] tensorboard = true`."""

    def __init__(self, log_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir), flush_secs=30)
        self.stream = ScalarStream()

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("type") == "run_started" and isinstance(event.get("config"), dict):
            write_hparams(self.writer, event["config"])
        for s in self.stream.feed(event):
            self.writer.add_scalar(s.tag, s.value, s.step, walltime=s.time)
        if event.get("type") in ("epoch_end", "run_finished", "run_failed"):
            self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def write_hparams(writer: Any, config: dict[str, Any]) -> None:
    """The config as TensorBoard's HParams, in the run's own file (not a sub-run, as
    `SummaryWriter.add_hparams` would make), its metrics the scalars of HPARAM_METRICS."""
    from torch.utils.tensorboard.summary import hparams as hparams_summary

    exp, ssi, sei = hparams_summary(hparams(config), dict.fromkeys(HPARAM_METRICS, 0.0))
    for summary in (exp, ssi, sei):
        writer.file_writer.add_summary(summary)


def export_runs(run_dirs: list[Path]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Every run's name and valid events (damaged lines skipped), each run checked first."""
    out = []
    names: set[str] = set()
    for d in run_dirs:
        if not d.is_dir():
            raise WorkbenchError(
                f"{d}: {'is a file, not a run folder' if d.exists() else 'no such run'}"
            )
        if not (d / EVENTS).is_file():
            raise WorkbenchError(f"{d}: not a run folder (no {EVENTS})")
        name = d.resolve().name
        if d.resolve().parent.joinpath(".study").is_dir():
            name = f"{d.resolve().parent.name}__{name}"  # a study member: study__member
        if name in names:
            raise WorkbenchError(f"{d}: two runs named {name!r}; export them apart")
        names.add(name)
        out.append((name, read_log(d / EVENTS).events))
    return out


def export_tensorboard(runs: list[tuple[str, list[dict[str, Any]]]], out: Path) -> list[Path]:
    """One sub-folder per run under `out` with one event file; an earlier export's files
    there are replaced (a folder holding anything else is refused, before anything is written)."""
    if out.exists() and not out.is_dir():
        raise WorkbenchError(f"--tensorboard {out}: is a file, not a folder")
    for name, _ in runs:
        d = out / name
        if d.exists() and (
            not d.is_dir() or any(not f.name.startswith(TFEVENTS) for f in d.iterdir())
        ):
            raise WorkbenchError(
                f"--tensorboard {out}: {d} exists and holds other files than event files"
            )
    from torch.utils.tensorboard import SummaryWriter

    written = []
    for name, events in runs:
        final = out / name
        tmp = out / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        writer = SummaryWriter(log_dir=str(tmp))
        stream = ScalarStream()
        for e in events:
            if e["type"] == "run_started" and isinstance(e.get("config"), dict):
                write_hparams(writer, e["config"])
            for s in stream.feed(e):
                writer.add_scalar(s.tag, s.value, s.step, walltime=s.time)
        writer.close()
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        written.append(final)
    return written


CSV_HEADER = ("run", "step", "epoch", "tag", "value")


def csv_text(runs: list[tuple[str, list[dict[str, Any]]]]) -> str:
    """Long form, one scalar a row; values as Python writes floats (round-trip exact)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_HEADER)
    for name, events in runs:
        for s in scalars(events):
            w.writerow([name, s.step, s.epoch, s.tag, repr(s.value)])
    return buf.getvalue()


def export_csv(runs: list[tuple[str, list[dict[str, Any]]]], path: Path) -> Path:
    if path.is_dir():
        raise WorkbenchError(f"--csv {path}: is a folder, not a file")
    atomic_write_bytes(path, csv_text(runs).encode())
    return path
