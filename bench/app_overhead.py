"""Training throughput of a run watched by the Textual app over the same run alone.

Why: the app must never slow training down. It only tails `events.jsonl`, so
a watched run should train as fast as an unwatched one (target ratio >= 0.97).

How: the same headless job (the demo preset on mnist-5k, shortened) is started
as a detached `workbench run` process, alternately alone and with a second
process running the real app headless (`App.run(headless=True)`) attached to
it on the live run screen, redrawing as it would on a terminal. Throughput =
training samples / training seconds (epoch time minus its evaluation), read
from the run's own `epoch_end` events. Rounds alternate (alone, watched, ...)
and the medians are compared, all in one invocation.

    python bench/app_overhead.py                 # 2 rounds of 2-epoch jobs
    python bench/app_overhead.py --rounds 3 --epochs 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET = 0.97


def job(runs: Path, name: str, epochs: int) -> subprocess.Popen:
    from engine.records.run_request import RunRequest

    sets = (f"train.epochs={epochs}", "eval.samples=100", "eval.steps=5")
    req = RunRequest(str(ROOT / "presets" / "demo.toml"), sets, name, runs)
    return subprocess.Popen(req.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def throughput(run_dir: Path) -> float:
    events = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]
    size = next(e["train_size"] for e in events if e["type"] == "run_started")
    ends = [e for e in events if e["type"] == "epoch_end"]
    seconds = sum(e["seconds"] - e["eval_seconds"] for e in ends)
    return size * len(ends) / seconds


def watch(run_dir: Path) -> None:
    """The watcher process: the real app, headless, attached to one run until it ends."""
    from workbench.tui.app import WorkbenchApp
    from workbench.tui.run_screen import RunScreen

    app = WorkbenchApp(run_dir.parent)

    def attach() -> None:
        app.action_attach(run_dir)

        def check() -> None:
            screen = app.screen
            if isinstance(screen, RunScreen) and screen.series.status in (
                "finished",
                "failed",
                "interrupted",
            ):
                app.exit()

        app.set_interval(0.5, check)

    app.call_later(attach)
    app.run(headless=True, size=(120, 40))
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    (run_dir.parent / f"{run_dir.name}.watcher-cpu").write_text(
        str(usage.ru_utime + usage.ru_stime)
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--watch", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.watch:
        watch(args.watch)
        return
    runs = Path(tempfile.mkdtemp(prefix="app-overhead-"))
    alone, watched = [], []
    for r in range(args.rounds):
        for mode in ("alone", "watched"):
            name = f"{mode}-{r}"
            viewer = None
            if mode == "watched":  # the app is up first, as when you launch from it
                viewer = subprocess.Popen(
                    [sys.executable, __file__, "--watch", str(runs / name)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                time.sleep(3)
            proc = job(runs, name, args.epochs)
            proc.wait()
            if viewer is not None:
                viewer.wait(timeout=60)
            value = throughput(runs / name)
            (alone if mode == "alone" else watched).append(value)
            cpu = runs / f"{name}.watcher-cpu"
            note = f"  (app used {float(cpu.read_text()):.1f} CPU s)" if cpu.exists() else ""
            print(f"round {r + 1} {mode:8s} {value:8.1f} samples/s{note}", file=sys.stderr)
    a, w = statistics.median(alone), statistics.median(watched)
    ratio = w / a
    verdict = "met" if ratio >= TARGET else "NOT met"
    if args.json:
        print(json.dumps({"alone": alone, "watched": watched, "ratio": ratio, "target": TARGET}))
    else:
        print(f"alone   median {a:.1f} samples/s  {alone}")
        print(f"watched median {w:.1f} samples/s  {watched}")
        print(f"ratio watched/alone: {ratio:.3f}   (target >= {TARGET}: {verdict})")


if __name__ == "__main__":
    main()
