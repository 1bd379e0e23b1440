"""Helpers shared by the benchmark scripts in this folder (not part of the package)."""

from __future__ import annotations

import argparse
import os


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
    """The same malloc set-up `workbench` itself uses (see workbench/process.py)."""
    from workbench.process import pin_malloc as pin

    return pin()


def add_common_args(p: argparse.ArgumentParser) -> None:
    """Options every benchmark here shares: seed, malloc pinning, JSON output."""
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--no-pin-malloc",
        dest="pin_malloc",
        action="store_false",
        help="keep glibc malloc's adaptive thresholds (by default they are pinned: see README)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object with the numbers on stdout (progress -> stderr)",
    )
