"""Where presets and suites are found: the ones shipped inside the package, then the user's.

The built-in presets and attack suites are package data (`engine/presets/`,
`engine/presets/suites/`), so an installed workbench finds them wherever it
runs. A `./presets` folder in the working directory adds the user's own files
and overrides a built-in of the same name, for the CLI and the app alike.
Training never looks there: its per-epoch suite is always the built-in one
(see `builtin_suite`), so a stray file cannot change a run's metric.

Torch-free, so `workbench presets` and the app's home screen start fast.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from engine.spec.errors import WorkbenchError

BUILTIN_PRESETS = Path(str(resources.files("engine").joinpath("presets")))
BUILTIN_SUITES = BUILTIN_PRESETS / "suites"


@dataclass(frozen=True)
class Entry:
    """One preset or suite file: its name (the file stem), path and description."""

    name: str
    path: Path
    description: str
    builtin: bool


def user_presets(cwd: Path | None = None) -> Path:
    return (cwd or Path.cwd()) / "presets"


def _describe(path: Path) -> str:
    try:
        return str(tomllib.loads(path.read_text(encoding="utf-8")).get("description", ""))
    except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError):
        return "(unreadable)"


def _scan(dirs: list[tuple[Path, bool]]) -> list[Entry]:
    """Files of the folders in order of precedence; the first of each name wins."""
    seen: dict[str, Entry] = {}
    for folder, builtin in dirs:
        for f in sorted(folder.glob("*.toml")) if folder.is_dir() else []:
            if f.stem not in seen:
                seen[f.stem] = Entry(f.stem, f, _describe(f), builtin)
    return sorted(seen.values(), key=lambda e: e.name)


def preset_dirs(cwd: Path | None = None) -> list[Path]:
    """Where presets are looked for, in order of precedence: ./presets, then the built-ins."""
    return [user_presets(cwd), BUILTIN_PRESETS]


def presets(cwd: Path | None = None, dirs: list[Path] | None = None) -> list[Entry]:
    """Every preset a bare name can reach (or the presets of `dirs`, first of a name wins)."""
    folders = preset_dirs(cwd) if dirs is None else dirs
    return _scan([(d, d == BUILTIN_PRESETS) for d in folders])


def suites(cwd: Path | None = None) -> list[Entry]:
    """Every suite a bare name can reach: ./presets/suites first, then the built-ins."""
    return _scan([(user_presets(cwd) / "suites", False), (BUILTIN_SUITES, True)])


def resolve_preset(arg: str, cwd: Path | None = None) -> Path:
    """A preset file path, or a bare name (`mnist_atblr` or `mnist_atblr.toml`)."""
    p = Path(arg)
    if p.is_file():
        return p
    if p.parent == Path("."):
        stem = p.name.removesuffix(".toml")
        for e in presets(cwd):
            if e.name == stem:
                return e.path
    known = ", ".join(e.name for e in presets(cwd))
    raise WorkbenchError(f"{arg}: preset file not found (known presets: {known})")


def resolve_suite(arg: str, cwd: Path | None = None) -> Path:
    """A suite file path, or a bare name of a suite."""
    p = Path(arg)
    if p.suffix == ".toml" or p.parent != Path("."):
        if not p.is_file():
            raise WorkbenchError(f"--suite {arg}: suite file not found")
        return p
    found = {e.name: e.path for e in suites(cwd)}
    if arg not in found:
        raise WorkbenchError(f"--suite {arg!r}: unknown suite; known: {', '.join(sorted(found))}")
    return found[arg]


def builtin_suite(name: str) -> Path:
    """A suite shipped with the package, never a user's file (training's per-epoch suite)."""
    path = BUILTIN_SUITES / f"{name}.toml"
    if not path.is_file():
        raise WorkbenchError(f"key 'eval.suite': no built-in suite {name!r}")
    return path


def parent_preset(name: str, child: Path) -> Path | None:
    """The file an `extends = "name"` means: beside the child, else a built-in of that name."""
    p = Path(name)
    beside = p if p.is_absolute() else child.parent / p
    if beside.is_file():
        return beside
    builtin = BUILTIN_PRESETS / p.name
    return builtin if p.parent == Path(".") and builtin.is_file() else None
