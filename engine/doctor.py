"""What this machine can do for a run: versions, devices, and a smoke run of each fast path.

`workbench doctor` prints it. Each fast-path option (bf16, channels-last,
torch.compile, cuDNN autotuning, batch_size = "auto") trains a small synthetic
Madry run for at most `SMOKE_S` seconds on the device, and passes when the run
trained and the option really took effect (the run's own `run_started` says
so). An option that does not apply to the device (cuDNN on a CPU) is skipped.
"""

from __future__ import annotations

import contextlib
import os
import platform
import tempfile
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from engine.data import load_dataset
from engine.devices import resolve_device
from engine.records.events import EventWriter, read_events
from engine.spec import catalog
from engine.spec.preset_files import load_preset
from engine.train.perf import native_bf16
from engine.train.trainer import Trainer

SMOKE_S = 30.0
SMOKE_ABOUT = f"synthetic Madry, at most {SMOKE_S:g} s each"  # what the smoke table's title says
SMOKE_PRESET = [  # mnist5k_madry, shrunk: synthetic digits, two PGD steps, a few batches
    "data.dataset=synthetic",
    "data.train_limit=512",
    "data.batch_size=64",
    "attack.steps=2",
    "eval.samples=64",
    "eval.steps=2",
    "train.epochs=1",
    "train.log_every=1",
    "perf.amp=off",
    "perf.channels_last=false",  # each option alone: "auto" would add NHWC to the bf16 row
]
OPTIONS = {  # option -> the --set that turns it on, and how run_started shows it worked
    "bf16": ("perf.amp=bf16", lambda p: p.get("autocast_dtype") == "bfloat16"),
    "channels-last": ("perf.channels_last=true", lambda p: bool(p.get("channels_last"))),
    "compile": ("perf.compile=true", lambda p: bool(p.get("compiled"))),
    "cudnn benchmark": ("perf.cudnn_benchmark=true", lambda p: bool(p.get("cudnn_benchmark"))),
    "auto batch": ("data.batch_size=auto", lambda p: "batch_probe" in p),
}
CUDA_ONLY = {"cudnn benchmark", "auto batch"}


def version_of(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, Any]:
    nccl = None
    if torch.cuda.is_available():
        with contextlib.suppress(Exception):
            nccl = ".".join(map(str, torch.cuda.nccl.version()))
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": version_of("torchvision"),
        "pyautoattack": version_of("pyautoattack"),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "nccl": nccl,
    }


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def devices() -> list[dict[str, Any]]:
    pages = os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 0
    page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 0
    out = [
        {
            "device": "cpu",
            "name": _cpu_name(),
            "threads": torch.get_num_threads(),
            "memory_gib": round(pages * page / 2**30, 1),
            "bf16": native_bf16(torch.device("cpu")),
            "tf32": None,
        }
    ]
    for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
        p = torch.cuda.get_device_properties(i)
        out.append(
            {
                "device": f"cuda:{i}",
                "name": p.name,
                "memory_gib": round(p.total_memory / 2**30, 1),
                "capability": f"{p.major}.{p.minor}",
                "bf16": native_bf16(torch.device("cuda", i)),
                "tf32": p.major >= 8,
            }
        )
    return out


def used_by_presets() -> set[str]:
    """The fast-path options some built-in preset turns on (their failure is exit 1)."""
    used: set[str] = set()
    for entry in catalog.presets(dirs=[catalog.BUILTIN_PRESETS]):
        cfg = load_preset(entry.path)
        if cfg.perf.amp != "off":
            used.add("bf16")  # "auto" means bf16 wherever the hardware has it
        if cfg.perf.channels_last is True or (
            cfg.perf.channels_last == "auto" and cfg.perf.amp != "off"
        ):
            used.add("channels-last")  # "auto": with bf16
        if cfg.perf.compile:
            used.add("compile")
        if cfg.perf.cudnn_benchmark:
            used.add("cudnn benchmark")
        if cfg.data.batch_size == "auto":
            used.add("auto batch")
    return used


def smoke(option: str | None, device: torch.device, seconds: float = SMOKE_S) -> dict[str, Any]:
    """A short synthetic run with `option` on (None: the plain fp32 run, for reference)."""
    name = option or "fp32 baseline"
    if option in CUDA_ONLY and device.type != "cuda":
        return {"option": name, "status": "SKIP", "why": "CUDA only", "samples_per_s": None}
    sets = [*SMOKE_PRESET, f"train.device={device}"]
    if option is not None:
        sets.append(OPTIONS[option][0])
    cfg = load_preset(catalog.resolve_preset("mnist5k_madry"), sets)
    stop = threading.Event()
    timer = threading.Timer(seconds, stop.set)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="workbench-doctor-") as tmp:
        run = Path(tmp)
        (run / "checkpoints").mkdir()
        writer = EventWriter(run / "events.jsonl")
        try:
            timer.start()
            trainer = Trainer(cfg, load_dataset("synthetic"), run, writer, device, stop)
            outcome = trainer.run()
        except Exception as exc:  # a smoke test reports, it does not crash
            return {
                "option": name,
                "status": "FAIL",
                "why": f"{type(exc).__name__}: {exc}".splitlines()[0][:200],
                "samples_per_s": None,
            }
        finally:
            timer.cancel()
            writer.close()
        events = read_events(run / "events.jsonl")
    steps = [e for e in events if e["type"] == "step"]
    info = next(e for e in events if e["type"] == "run_started")["perf"]
    rate = steps[-1]["samples_per_s"] if steps else None
    took = option is None or OPTIONS[option][1](info)
    ok = outcome.status in ("finished", "interrupted") and steps and took
    why = "" if ok else f"run {outcome.status}; option in effect: {took}; {outcome.error}"
    return {
        "option": name,
        "status": "PASS" if ok else "FAIL",
        "why": why.strip("; "),
        "samples_per_s": rate,
        "seconds": round(time.perf_counter() - t0, 1),
        "warnings": [e["message"] for e in events if e["type"] == "warning"],
    }


def check(device: str = "auto") -> dict[str, Any]:
    """Everything `workbench doctor` reports; `failed_used` is what makes it exit 1."""
    dev = resolve_device(device, f"--device {device}")
    runs = [smoke(None, dev), *(smoke(o, dev) for o in OPTIONS)]
    used = used_by_presets()
    failed = [r["option"] for r in runs if r["status"] == "FAIL" and r["option"] in used]
    return {
        "versions": versions(),
        "devices": devices(),
        "device": str(dev),
        "smoke": runs,
        "smoke_about": SMOKE_ABOUT,
        "used_by_presets": sorted(used),
        "failed_used": failed,
    }
