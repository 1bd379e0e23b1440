"""A run asked for: the one place its `workbench run` command line is spelled, and its preflight.

Every way a run starts goes through `RunRequest`: the CLI parses into one,
the app's launch form fills one in, `--nproc` hands each rank one, and a
study member's job is one. `argv()` is the command line that asks for it,
so the flags are spelled here and nowhere else (the CLI declares them, and
`tests/test_run_request.py` parses this module's argv back with it).
`preflight()` is every check that needs no torch (preset, overrides, run
name, runs folder, the rule for an existing folder, `--nproc` against the
batch), so the form refuses what the run would refuse, in the same words;
`engine/train/session.py:prepare` adds the device and DDP checks.

It lives beside `runs.py` because the name and folder rules are there (and
`engine.spec` may not import `engine.records`, which imports it).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path

from engine.records.runs import check_name, check_runs_dir, default_name, is_placeholder
from engine.spec.catalog import resolve_preset
from engine.spec.config import PresetConfig
from engine.spec.errors import WorkbenchError
from engine.spec.preset_files import load_preset

MAX_NPROC = 256


def workbench_command(args: list[str], python: str | None = None) -> list[str]:
    """`workbench <args>` as a child process runs it: this interpreter, the package as module."""
    return [python or sys.executable, "-m", "workbench", *args]


@dataclass(frozen=True)
class RunRequest:
    """What `workbench run` is asked for, as typed (nothing resolved yet)."""

    preset: str | None = None  # a file or a bare name; None when resuming
    sets: tuple[str, ...] = ()  # KEY=VALUE overrides, in order
    name: str | None = None  # None or "": the preset's name and the time
    runs_dir: Path = Path("runs")
    resume: Path | None = None  # a run folder to continue
    device: str | None = None  # overrides train.device
    nproc: int = 1  # data-parallel processes on this machine

    def __post_init__(self) -> None:  # lists and strings in, so a request is hashable and exact
        object.__setattr__(self, "sets", tuple(self.sets))
        object.__setattr__(self, "runs_dir", Path(self.runs_dir))
        if self.resume is not None:
            object.__setattr__(self, "resume", Path(self.resume))

    def argv(self) -> list[str]:
        """The `workbench` arguments that ask for exactly this run (always headless)."""
        args = ["run"]
        if self.resume is None and self.preset is not None:
            args.append(self.preset)
        args.append("--headless")
        if self.resume is not None:
            args += ["--resume", str(self.resume)]
        else:
            if self.name:
                args += ["--name", self.name]
            args += ["--runs-dir", str(self.runs_dir)]
        for item in self.sets:
            args += ["--set", item]
        if self.device is not None:
            args += ["--device", self.device]
        if self.nproc != 1:
            args += ["--nproc", str(self.nproc)]
        return args

    def command(self, python: str | None = None) -> list[str]:
        """`argv()` as a child process: `python -m workbench run ...`."""
        return workbench_command(self.argv(), python)

    def preflight(self, new_run: bool = True) -> Preflight:
        """Load the preset with the overrides and check the name, the folder and `--nproc`;
        write nothing. Every refusal is one WorkbenchError line naming the file and key.

        `new_run=False` skips the rule for an existing folder (DDP ranks > 0, whose
        rank 0 may already have made it).
        """
        if not 1 <= self.nproc <= MAX_NPROC:
            raise WorkbenchError(
                f"--nproc {self.nproc}: give a number of processes from 1 to {MAX_NPROC}"
            )
        sets = [*self.sets] if self.device is None else [*self.sets, f"train.device={self.device}"]
        preset_path = None
        if self.resume is not None:
            resume = self.resume
            if (
                not (resume / "config.toml").is_file()
                or not (resume / "last.safetensors").is_file()
            ):
                raise WorkbenchError(
                    f"{resume}: not a resumable run (needs config.toml and last.safetensors)"
                )
            source = str(resume / "config.toml")
            cfg, run_dir = load_preset(source, sets), resume
        elif self.preset is None:
            raise WorkbenchError("run: give a PRESET (see `workbench presets`) or --resume RUN_DIR")
        else:
            preset_path = resolve_preset(self.preset)
            source = str(preset_path)
            cfg = load_preset(preset_path, sets)
            name = check_name(self.name) if self.name else default_name(cfg.name)
            run_dir = check_runs_dir(self.runs_dir) / name
            if new_run and run_dir.exists() and not is_placeholder(run_dir):
                raise WorkbenchError(
                    f"{run_dir}: a run with this name exists; "
                    f"pick another --name or --resume {run_dir}"
                )
        batch = cfg.data.batch_size
        if self.nproc > 1 and isinstance(batch, int) and batch < self.nproc:
            raise WorkbenchError(
                f"{source}: key 'data.batch_size': {batch} is the global batch; "
                f"it must be at least --nproc ({self.nproc})"
            )
        return Preflight(self, cfg, source, preset_path, run_dir)


@dataclass(frozen=True)
class Preflight:
    """A request that passed its preflight, with what the check resolved."""

    request: RunRequest
    cfg: PresetConfig
    source: str  # the preset file (or the resumed run's config.toml)
    preset_path: Path | None  # the preset file a bare name resolved to (new runs only)
    run_dir: Path

    def pinned(self) -> RunRequest:
        """The request with the preset file and run name this check chose, so another process
        (a rank, a detached run) starts the same run even if ./presets or the clock moved."""
        if self.request.resume is not None:
            return self.request
        return replace(self.request, preset=str(self.preset_path), name=self.run_dir.name)


@dataclass(frozen=True)
class EvalRequest:
    """A saved checkpoint's evaluation as a child process runs it (a study member's test)."""

    checkpoint: Path
    suite: str = "paper"
    samples: int = 0  # 0: the whole test split
    seed: int = 0
    batch_size: int | None = None  # None: auto
    device: str = "auto"
    resume: bool = False  # continue a killed evaluation (eval --resume)
    as_json: bool = False

    def argv(self) -> list[str]:
        args = ["eval", str(self.checkpoint), "--suite", self.suite]
        if self.samples:
            args += ["--samples", str(self.samples)]
        if self.seed:
            args += ["--seed", str(self.seed)]
        if self.batch_size is not None:
            args += ["--batch-size", str(self.batch_size)]
        if self.device != "auto":
            args += ["--device", self.device]
        return args + ["--resume"] * self.resume + ["--json"] * self.as_json

    def command(self, python: str | None = None) -> list[str]:
        return workbench_command(self.argv(), python)
