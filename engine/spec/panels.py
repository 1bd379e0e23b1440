"""What a method's runs show: the loss parts it streams, its own plots, its launch-form fields.

A method declares one `Panels` on its `[method]` config class (`MethodSection.panels`);
the trainer records it in the `run_started` event, and the faces (the live
screen, the headless view, Compare, the launch form) draw from that record, so
no face names a method and a finished run redraws without importing the engine's
torch parts. A run recorded before this existed has no record: `from_json`
returns None and the faces fall back to every loss part in the loss plot.

Torch-free and pydantic-free: plain frozen dataclasses and JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_ITEMS = 32  # series, plots or form fields one record may declare: any real method has few


@dataclass(frozen=True)
class Series:
    """One loss part as `step` events name it (`parts[key]`)."""

    key: str
    label: str = ""  # how a table names it ("L_lkd clean"); the key when empty
    smooth: bool = True  # drawn through an EMA: per-step values are noisy

    @property
    def name(self) -> str:
        return self.label or self.key


@dataclass(frozen=True)
class Plot:
    """One per-step plot of the method's own, beside loss, accuracy and learning rate."""

    title: str
    keys: tuple[str, ...]  # the series drawn in it, in legend order


@dataclass(frozen=True)
class FormField:
    """A `[method]` key the launch form offers as its own field."""

    key: str  # as the preset spells it (the alias: "lambda")
    label: str


@dataclass(frozen=True)
class Panels:
    """A method's declaration of what the faces show for its runs."""

    series: tuple[Series, ...] = ()  # every loss part it streams
    plots: tuple[Plot, ...] = ()  # its own plots; parts no plot claims join the loss plot
    fields: tuple[FormField, ...] = ()

    def __post_init__(self) -> None:
        known = {s.key for s in self.series}
        for plot in self.plots:
            missing = [k for k in plot.keys if k not in known]
            if missing:
                raise ValueError(f"plot {plot.title!r} draws undeclared series {missing}")

    def get(self, key: str) -> Series | None:
        return next((s for s in self.series if s.key == key), None)

    def own(self) -> list[Series]:
        """The series of the method's own plots, in order, each once: its own curves."""
        keys = dict.fromkeys(k for p in self.plots for k in p.keys)
        return [s for k in keys for s in self.series if s.key == k]

    def to_json(self) -> dict[str, Any]:
        """The `run_started` record: plain lists and dicts."""
        return {
            "series": [{"key": s.key, "label": s.label, "smooth": s.smooth} for s in self.series],
            "plots": [{"title": p.title, "keys": list(p.keys)} for p in self.plots],
            "fields": [{"key": f.key, "label": f.label} for f in self.fields],
        }

    @classmethod
    def from_json(cls, doc: Any) -> Panels | None:
        """The record back; None when absent (an older run) or not one (never raises)."""
        if not isinstance(doc, dict):
            return None
        sizes = [doc.get(k, []) for k in ("series", "plots", "fields")]
        if any(isinstance(v, list) and len(v) > MAX_ITEMS for v in sizes):
            return None  # an edited file asking for thousands of plot widgets
        try:
            return cls(
                series=tuple(
                    Series(str(s["key"]), str(s.get("label", "")), bool(s.get("smooth", True)))
                    for s in doc.get("series", [])
                ),
                plots=tuple(
                    Plot(str(p["title"]), tuple(str(k) for k in p["keys"]))
                    for p in doc.get("plots", [])
                ),
                fields=tuple(
                    FormField(str(f["key"]), str(f["label"])) for f in doc.get("fields", [])
                ),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            return None
