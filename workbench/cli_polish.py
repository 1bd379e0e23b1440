"""Small touches to how the CLI presents itself: a flag's help without a type, `--version`.

Kept apart from cli.py so the commands stay about what they do.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

import typer
from typer.core import TyperOption

_type_of = getattr(TyperOption, "display_type_rich", None)  # absent in other typer versions


def _flag_has_no_type(self: TyperOption, ctx: Any) -> str | None:
    """A flag takes no value, so its help shows none (Typer prints `--help <bool>`)."""
    return None if self.is_flag or _type_of is None else _type_of(self, ctx)


if _type_of is not None:
    TyperOption.display_type_rich = _flag_has_no_type  # type: ignore[method-assign]


def version() -> str:
    """The installed package's version; "unknown" when run from a bare checkout."""
    try:
        return importlib.metadata.version("robustness-workbench")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def print_version(wanted: bool) -> None:
    """`--version`: say it and stop before anything else runs (an eager option's callback)."""
    if wanted:
        typer.echo(f"workbench {version()}")
        raise typer.Exit(0)
