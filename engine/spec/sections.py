"""What every preset table shares: strict sections and the number parsers (fractions such as
8/255, batch sizes), so the schema's files can each hold one part of it."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


def parse_fraction(value: Any) -> Any:
    """Accept "8/255" (and "0.3") wherever a float goes; leave other values to pydantic."""
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"[-+]?\d+(\.\d*)?\s*/\s*\d+(\.\d*)?", text):
            num, den = (float(p) for p in text.split("/"))
            if den == 0:
                raise ValueError("fraction with a zero denominator")
            return num / den
        try:
            return float(text)
        except ValueError:
            raise ValueError("expected a number or a fraction like 8/255") from None
    return value


Unit = Annotated[float, BeforeValidator(parse_fraction), Field(ge=0.0, le=1.0)]
PosReal = Annotated[float, BeforeValidator(parse_fraction), Field(gt=0.0)]
NonNegReal = Annotated[float, BeforeValidator(parse_fraction), Field(ge=0.0)]


def parse_batch_size(value: Any) -> Any:
    """A positive integer or "auto" (the engine probes the largest batch that fits, engine/perf.py).

    Checked here, before the union, so an error names `data.batch_size` itself
    rather than one line per union member.
    """
    if value == "auto":
        return value
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ValueError('must be >= 1 (or "auto")')
        return value
    raise ValueError('expected a positive integer or "auto"')


BatchSize = Annotated[int | Literal["auto"], BeforeValidator(parse_batch_size)]


class Section(BaseModel):
    """Base for every table: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)
