"""Helpers shared by the benchmark scripts in this folder (not part of the package)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# glibc mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3


def cpu_count() -> int:
    """CPUs this process may run on (the affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def minor_faults() -> int:
    """Minor page faults of this process so far (0 where getrusage is missing)."""
    try:
        import resource
    except ImportError:
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def pin_malloc() -> bool:
    """Fix glibc malloc's mmap and trim thresholds; True if it took effect.

    By default glibc adjusts both as a program runs, so whether the ~10 MB
    activation buffers of a CPU training step are recycled or handed back to
    the OS and faulted in again (millions of minor page faults per epoch, a
    10-20% slowdown on a small VM) depends on the allocation history. Fixed
    thresholds (mmap above 32 MB, trim above 1 GB) make that the same for every
    side of a comparison. A no-op off glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, 32 << 20)) and bool(mallopt(M_TRIM_THRESHOLD, 1 << 30))
