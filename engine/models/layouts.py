"""Published checkpoints' layouts: `--model trades:smallcnn` names a registered arch and how
the keys of the checkpoint its authors published map onto it.

A layout's arch is an ordinary workbench arch (body + linear head), so a
checkpoint imported in that layout rebuilds from its config like any other,
with no code from the publishing repository. `rename` maps a published
state_dict key to the Classifier's: the first matching (published prefix,
our prefix) pair wins; every other key goes under `body.`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Layout:
    """One published layout: the arch it rebuilds as and where its keys go."""

    name: str  # as `--model` spells it: "trades:smallcnn"
    arch: str  # the registered arch
    prefixes: tuple[tuple[str, str], ...]  # (published prefix, our prefix); the rest: body.
    source: str  # where the published model code is

    def rename(self, key: str) -> str:
        for theirs, ours in self.prefixes:
            if key.startswith(theirs):
                return ours + key[len(theirs) :]
        return "body." + key


LAYOUTS: dict[str, Layout] = {}


def register_layout(layout: Layout) -> Layout:
    if layout.name in LAYOUTS and LAYOUTS[layout.name] != layout:
        raise ValueError(f"layout {layout.name!r} is registered twice")
    LAYOUTS[layout.name] = layout
    return layout
