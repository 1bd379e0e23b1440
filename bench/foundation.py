"""The foundation benchmark: both ratios of the foundation issue from one invocation.

1. our PGD throughput / torchattacks' PGD (same model, batch, eps, steps; target >= 1.2)
2. headless training throughput / a bare hand-written PGD-AT loop (target >= 0.97)

Each ratio is measured inside this one process, both sides interleaved; see
attack_throughput.py and train_throughput.py for the details and options.

    python bench/foundation.py            # about 3-4 minutes on 2 cores
    python bench/foundation.py --json
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import attack_throughput
import train_throughput


def run(module, argv: list[str]) -> dict:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = module.main([*argv, "--json"])
    if code != 0:
        raise SystemExit(code)
    return json.loads(buf.getvalue().strip().splitlines()[-1])


def main() -> None:
    as_json = "--json" in sys.argv[1:]
    attack = run(attack_throughput, [])
    train = run(train_throughput, [])
    if as_json:
        print(json.dumps({"attack": attack, "train": train}))
        return
    ra = attack["ratio"]
    rt = train["ratio"]
    print(f"PGD throughput, ours / torchattacks:      {ra:.3f}  (target >= 1.2)")
    print(f"training throughput, headless / bare loop: {rt:.3f}  (target >= 0.97)")


if __name__ == "__main__":
    main()
