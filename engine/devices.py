"""Devices: which one a run uses, and how large a batch fits in its memory.

Shared by training (`batch_size = "auto"`, engine/train/perf.py) and evaluation
(`--batch-size auto`, engine/eval/run.py), so both detect out-of-memory and
search the batch the same way.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

import torch

from engine.spec.errors import WorkbenchError

HEADROOM = 0.9  # a probe "fits" only if its peak reserved memory stays under this share

Trial = Callable[[int], float | None]


def resolve_device(name: str, source: str = "device") -> torch.device:
    """`auto` picks CUDA when present; asking for CUDA on a machine without it is bad input."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise WorkbenchError(
                f"{source}: key 'train.device': given {name!r} but CUDA is not available here"
            )
        idx = int(name.split(":")[1]) if ":" in name else 0
        if idx >= torch.cuda.device_count():
            raise WorkbenchError(
                f"{source}: key 'train.device': given {name!r}, "
                f"this machine has {torch.cuda.device_count()} GPU(s)"
            )
        return torch.device("cuda", idx)  # always indexed: RNG state, memory stats, metadata
    return torch.device(name)


def is_oom(exc: BaseException) -> bool:
    """Out of device memory (CUDA raises torch.OutOfMemoryError; some paths a RuntimeError)."""
    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc)
    )


def release_memory(device: torch.device) -> None:
    """Hand cached blocks back so the next probe starts from a clean allocator."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


def search_batch_size(
    trial: Trial,
    limit: int,
    start: int = 32,
    headroom: float = HEADROOM,
    cleanup: Callable[[], None] = lambda: None,
    what: str = "key 'data.batch_size'",
) -> tuple[int, list[dict[str, Any]]]:
    """The largest power of two <= `limit` whose trial step fits, and the probe log.

    A batch fits when `trial(b)` returns without running out of memory and its
    peak memory share (when known) is at most `headroom`. Batches double from
    `start` until one does not fit or the next would exceed `limit`; if even
    `start` does not fit, they halve down to 1. Raises WorkbenchError (exit 2)
    when a batch of 1 does not fit. `cleanup` runs after every probe (frees device memory).
    """
    log: list[dict[str, Any]] = []

    def fits(b: int) -> bool:
        try:
            share = trial(b)
        except Exception as exc:
            if not is_oom(exc):
                raise
            log.append({"batch": b, "fits": False, "reason": "out of memory"})
            return False
        finally:
            cleanup()
        ok = share is None or share <= headroom
        entry: dict[str, Any] = {"batch": b, "fits": ok}
        if share is not None:
            entry["memory_share"] = round(share, 4)
        if not ok:
            entry["reason"] = f"peak memory above {headroom:.0%} of the device"
        log.append(entry)
        return ok

    limit = max(1, limit)
    b = 1 << (min(start, limit).bit_length() - 1)  # a power of two <= start and <= limit
    if not fits(b):
        while b > 1:
            b //= 2
            if fits(b):
                return b, log
        raise WorkbenchError(
            f"{what}: 'auto' found no batch that fits in device memory, "
            "not even 1; use a smaller model or another device"
        )
    while b * 2 <= limit and fits(b * 2):
        b *= 2
    return b, log
