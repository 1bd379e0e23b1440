"""Names -> the things a preset or suite names: methods, attacks, norms, model archs, datasets.

Each entry is registered by the file that defines it (`@METHODS.register("atblr")`),
so a new method, attack, arch or dataset is one new file and nothing else. The
built-in files live in one package per registry; the first lookup imports that
package, which imports every module in it. Registering from anywhere else (a
test, a user's plug-in) works the same way, as long as it happens before the
name is used.

Torch-free: the packages are imported by name on first lookup, not here.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> entry table for one kind of thing, filled by the files that define them."""

    def __init__(self, kind: str, package: str) -> None:
        self.kind = kind  # "method", for messages
        self.package = package  # imported on first lookup: its modules register the built-ins
        self._entries: dict[str, T] = {}
        self._loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: `@REGISTRY.register("name")` over a class or function."""

        def add(entry: T) -> T:
            known = self._entries.get(name)
            if known is not None and known is not entry:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = entry
            return entry

        return add

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            importlib.import_module(self.package)

    def get(self, name: str) -> T:
        """The entry, or KeyError with the allowed names (callers turn it into a ConfigError)."""
        self._load()
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; allowed: {self.allowed()}") from None

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def allowed(self) -> str:
        return ", ".join(self.names())

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def items(self) -> Iterator[tuple[str, T]]:
        self._load()
        yield from sorted(self._entries.items())


def import_submodules(package: str, path: list[str]) -> None:
    """Import every module of a package (its `__path__`): how a new file registers itself."""
    for info in sorted(pkgutil.iter_modules(path), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")


METHODS: Registry[Any] = Registry("method", "engine.train.methods")
ATTACKS: Registry[Any] = Registry("attack", "engine.attacks")
MODELS: Registry[Any] = Registry("model", "engine.models")
DATASETS: Registry[Any] = Registry("dataset", "engine.data")

# What `defense.name` takes ("none" is no defence; engine/defenses/ has the rest). A fixed
# list, not a registry: the config validates the name, and the faces list the names
# without importing the config's pydantic models (`workbench eval --help`).
DEFENSES: tuple[str, ...] = ("none", "apinet")
NORMS: Registry[Any] = Registry("norm", "engine.attacks.norms")


@functools.cache
def _norm_files() -> frozenset[str]:
    folder = Path(__file__).resolve().parent.parent / "attacks" / "norms"
    return frozenset(
        m.name for m in pkgutil.iter_modules([str(folder)]) if not m.name.startswith("_")
    )


def norm_names() -> list[str]:
    """The norms a preset may name, without importing torch: one file each in
    engine/attacks/norms/ (listed, not imported), plus any registered elsewhere."""
    return sorted(_norm_files() | set(NORMS._entries))


def known_norm_label(norm: object, unknown: str) -> str:
    """A header's label for a norm read from a file (hostile: anything else is `unknown`)."""
    return norm_label(norm) if isinstance(norm, str) and norm in norm_names() else unknown


def norm_label(norm: str) -> str:
    """How headers name a norm, from its file's name: linf -> "L-inf", l2 -> "L2"."""
    if norm == "linf":
        return "L-inf"
    return "L" + norm[1:] if norm[:1] == "l" and norm[1:].isdigit() else norm


def threat_label(norm: str, eps: float) -> str:
    """How every header names a threat model: "L2, eps 0.5"."""
    return f"{norm_label(norm)}, eps {eps:.4g}"
