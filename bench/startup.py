"""Start-up time of the torch-free commands: `inspect`, `runs`, `presets`, `--help`.

Why: these are the commands a person types to look around (and the app's
inspector reads the same modules), so they should answer at once; torch and
scipy cost about a second to import and none of them needs either (target:
`inspect` and `runs` under 0.3 s).

How: each command runs as a fresh `python -m workbench ...` subprocess, in an
empty working folder, on a header-only checkpoint and a runs folder with one
finished run that this script writes (no torch needed). Rounds interleave the
commands (and, with `--compare DIR`, the same commands on another checkout of
the repository, e.g. a `git archive` of the base branch), so machine noise
hits every side alike; reported times are medians of wall time.

    python bench/startup.py                       # 15 rounds
    python bench/startup.py --compare /tmp/base   # this checkout vs another one
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from engine.records.run_request import workbench_command

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 0.3  # for inspect and runs
COMMANDS = {
    "inspect": ["inspect", "{ckpt}"],
    "runs": ["runs", "--runs-dir", "{runs}"],
    "presets": ["presets"],
    "--help": ["--help"],
    "diff --help": ["diff", "--help"],
}


def write_checkpoint(path: Path) -> None:
    """A valid workbench checkpoint of one float32 tensor, written with the stdlib."""
    config = {"name": "bench", "method": {"name": "standard"}, "model": {"arch": "smallcnn"}}
    meta = {
        "format": "workbench/1",
        "kind": "weights",
        "config": json.dumps(config),
        "epoch": "1",
        "metrics": json.dumps({"clean_acc": 90.0, "robust_acc": 40.0}),
        "method": "standard",
        "arch": "smallcnn",
        "dataset": "mnist-5k",
        "created": "2026-01-01T00:00:00",
        "engine_version": "0",
        "torch_version": "0",
    }
    data = bytes(4 * 10 * 84)
    header = {
        "__metadata__": meta,
        "model.head.fc.weight": {"dtype": "F32", "shape": [10, 84], "data_offsets": [0, len(data)]},
    }
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


def write_run(runs: Path) -> None:
    """A finished one-epoch run, as its events file describes it."""
    run = runs / "bench-run"
    run.mkdir(parents=True)
    t = time.time()
    cfg = {"name": "bench", "method": {"name": "standard"}, "train": {"epochs": 1}}
    acc = {"clean_acc": 90.0, "clean_n": 100, "clean_interval": [82.6, 94.5]}
    events = [
        {"type": "run_started", "time": t, "config": cfg},
        {"type": "epoch_end", "time": t + 1, "epoch": 1, "robust_acc": 40.0, **acc},
        {"type": "run_finished", "time": t + 2, "status": "finished", "epoch": 1},
    ]
    (run / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))


def time_once(argv: list[str], checkout: Path, cwd: Path) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one run; CPU time hardly moves with load."""
    env = {**os.environ, "PYTHONPATH": str(checkout), "COLUMNS": "120"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    res = subprocess.run(workbench_command(argv), cwd=cwd, env=env, capture_output=True)
    took = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed in {checkout}:\n{res.stderr.decode()}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return took, cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=15, help="timed runs of each command")
    p.add_argument("--compare", type=Path, help="another checkout to time the same way")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = p.parse_args()
    sides = {"this": ROOT} | ({"compare": args.compare.resolve()} if args.compare else {})
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ckpt = work / "bench.safetensors"
        write_checkpoint(ckpt)
        write_run(work / "runs")
        cwd = work / "cwd"  # no ./presets here: the listing is the built-ins only
        cwd.mkdir()
        argvs = {
            name: [a.format(ckpt=ckpt, runs=work / "runs") for a in argv]
            for name, argv in COMMANDS.items()
        }
        wall: dict[str, dict[str, list[float]]] = {s: {c: [] for c in argvs} for s in sides}
        cpu: dict[str, dict[str, list[float]]] = {s: {c: [] for c in argvs} for s in sides}
        for checkout in sides.values():  # warm-up: the file cache, the .pyc files
            for argv in argvs.values():
                time_once(argv, checkout, cwd)
        for r in range(args.rounds):
            order = list(sides.items())
            if r % 2:
                order.reverse()
            for name, argv in argvs.items():
                for side, checkout in order:
                    w, c = time_once(argv, checkout, cwd)
                    wall[side][name].append(w)
                    cpu[side][name].append(c)
            print(f"round {r + 1}/{args.rounds}", file=sys.stderr)
    med = {
        kind: {s: {c: statistics.median(v) for c, v in t.items()} for s, t in got.items()}
        for kind, got in (("wall_s", wall), ("cpu_s", cpu))
    }
    met = all(med["wall_s"]["this"][c] < TARGET_S for c in ("inspect", "runs"))
    if args.json:
        print(json.dumps({"median": med, "rounds": args.rounds, "target_met": met}))
        return
    print(f"medians of {args.rounds} runs of python -m workbench ..., seconds (wall / CPU)")
    print(f"{'command':<14}" + "".join(f"{s:>16}" for s in sides))
    for c in argvs:
        cells = (f"{med['wall_s'][s][c]:.3f} / {med['cpu_s'][s][c]:.3f}" for s in sides)
        print(f"{c:<14}" + "".join(f"{x:>16}" for x in cells))
    print(f"inspect and runs under {TARGET_S} s of wall time: {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
