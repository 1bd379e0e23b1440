"""Command-line options more than one command takes, typed once for typer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a preset key, e.g. --set attack.eps=8/255 (repeatable)."),
]
RunsDirOpt = Annotated[Path, typer.Option("--runs-dir", help="Where runs live.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")]
SamplesOpt = Annotated[int, typer.Option("--samples", help="Test examples (0 = all).", min=0)]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
