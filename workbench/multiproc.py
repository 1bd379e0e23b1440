"""`workbench run --nproc N`: N ranks on this machine, as torchrun would start them.

Each rank is `python -m workbench run ...` with torchrun's environment
(MASTER_ADDR/PORT, RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE), so the
engine sees no difference between this and `torchrun --nproc-per-node N`. The
ranks run in their own session: a Ctrl-C or SIGTERM reaches them once, through
this process, as a graceful stop (rank 0 saves, all exit 130); a second one
aborts. If a rank dies, the others are given a moment to notice and then ended,
so a job never hangs on a dead peer.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import replace
from typing import Any

from engine.records.run_request import RunRequest
from engine.spec.errors import WorkbenchError
from engine.train import distributed, session

GRACE_S = 20.0  # after one rank fails, how long the others get before they are killed


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rank_env(rank: int, nproc: int, port: int, on_cuda: bool) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(nproc),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(nproc),
        GROUP_RANK="0",
    )
    if not on_cuda and "OMP_NUM_THREADS" not in os.environ:  # share the cores, as torchrun does
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    return env


def launch(cmd: list[str], nproc: int, on_cuda: bool) -> int:
    """Run `cmd` as ranks 0..nproc-1; the job's exit code (rank 0's unless it is 0)."""
    port = free_port()
    procs = [
        subprocess.Popen(cmd, env=rank_env(r, nproc, port, on_cuda), start_new_session=True)
        for r in range(nproc)
    ]

    def forward(signum: int, frame: Any) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        failed_at: float | None = None
        while any(p.poll() is None for p in procs):
            codes = [p.returncode for p in procs if p.returncode is not None]
            if failed_at is None and any(c not in (0, 130) for c in codes):
                failed_at = time.monotonic()
            if failed_at is not None and time.monotonic() - failed_at > GRACE_S:
                for p in procs:
                    if p.poll() is None:
                        p.kill()
            time.sleep(0.1)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    codes = [c if c >= 0 else 1 for c in (p.returncode for p in procs)]  # killed: failed
    if codes[0] != 0:
        return codes[0]
    return next((c for c in codes if c != 0), 0)


def launch_request(req: RunRequest) -> int:
    """`workbench run --nproc N`: check the run here, then start its N ranks on the same run."""
    if distributed.env_world().enabled:
        raise WorkbenchError("--nproc: already inside a distributed job (torchrun); drop --nproc")
    prep = session.prepare(req, req.nproc)
    rank = replace(prep.pinned(), nproc=1)  # one process each, the preset and name fixed here
    return launch(rank.command(), req.nproc, on_cuda=prep.device.type == "cuda")
