"""`sweep` and `ablate`: accuracy as one setting grows, on checkpoints or a model from elsewhere.

Kept apart from workbench/cli.py, which registers them; like every command here
they import the engine only when run (start-up stays torch-free).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from engine.spec.errors import WorkbenchError
from workbench import printing, views
from workbench.model_cmd import (
    DatasetOpt,
    EpsOpt,
    ModelOpt,
    NormalizeOpt,
    NormOpt,
    StepOpt,
    StripOpt,
    WeightsOpt,
    _loaded_model,
    _target,
    model_options,
)
from workbench.options import DeviceOpt, JsonOpt, SamplesOpt, SetOpt
from workbench.printing import out, print_json


def _fraction(option: str, text: str, low: float, high: float, open_low: bool = False) -> float:
    """A number or fraction like 8/255 within [low, high] ((low, high] when `open_low`)."""
    from engine.spec.config import parse_fraction  # pydantic: the commands that take eps only

    try:
        value = float(parse_fraction(text))
    except ValueError:
        raise WorkbenchError(f"{option}: {text!r} is not a number or fraction") from None
    if value > high or value < low or (open_low and value == low):
        interval = f"({low:g}, {high:g}]" if open_low else f"[{low:g}, {high:g}]"
        raise WorkbenchError(f"{option}: {text!r} is outside {interval}")
    return value


def sweep(
    *,  # typer passes every option by name
    checkpoints: Annotated[
        list[Path] | None, typer.Argument(help="One or more checkpoints (and/or --model).")
    ] = None,
    eps_max: Annotated[
        str | None, typer.Option("--eps-max", help="Largest eps (fractions allowed; default 2x).")
    ] = None,
    points: Annotated[int, typer.Option("--points", help="Eps values from 0.", min=2)] = 9,
    steps: Annotated[int, typer.Option("--steps", help="PGD steps.", min=1)] = 40,
    samples: SamplesOpt = 0,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    device: DeviceOpt = "auto",
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Folder for the JSON and CSV (default: eval/).")
    ] = None,
    as_json: JsonOpt = False,
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    dataset: DatasetOpt = None,
    normalize: NormalizeOpt = None,
    strip_prefix: StripOpt = None,
    norm: NormOpt = "linf",
    eps: EpsOpt = None,
    step: StepOpt = None,
) -> None:
    """Accuracy under PGD-k as eps grows (API-Net Fig. 2): a terminal plot, JSON and CSV.

    --model (with its options, as for eval) adds a model from outside the
    workbench as the first curve.
    """
    from engine.eval.sweep import eps_sweep

    unbounded = float("inf")  # the checkpoint's norm caps it (L-inf: 1), checked by the sweep
    emax = None if eps_max is None else _fraction("--eps-max", eps_max, 0, unbounded, open_low=True)
    paths, loaded = list(checkpoints or []), None
    if model is not None:
        loaded, anchor = _loaded_model(model, **model_options(locals()))
        paths.insert(0, anchor)
    kw = {"samples": samples, "device": device, "seed": seed, "out_dir": out_dir}
    with printing.working(as_json) as progress:
        doc = eps_sweep(paths, emax, points, steps, **kw, progress=progress, loaded=loaded)
    if as_json:
        print_json(doc)
    else:
        printing.sweep(doc, steps)


def ablate(
    *,  # typer passes every option by name
    checkpoint: Annotated[
        Path | None, typer.Argument(help="A .safetensors checkpoint (or give --model).")
    ] = None,
    eps_ap: Annotated[
        str, typer.Option("--eps-ap", help="Comma-separated values, fractions allowed.")
    ] = "0,4/255,8/255,12/255,16/255",
    samples: SamplesOpt = 0,
    sets: SetOpt = None,
    as_json: JsonOpt = False,
    device: DeviceOpt = "auto",
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    dataset: DatasetOpt = None,
    normalize: NormalizeOpt = None,
    strip_prefix: StripOpt = None,
    norm: NormOpt = "linf",
    eps: EpsOpt = None,
    step: StepOpt = None,
) -> None:
    """The eps_ap ablation of API-Net (paper Table 5) on any checkpoint, or on --model."""
    from engine.eval.ablation import eps_ap_sweep

    loaded, checkpoint = _target("ablate", checkpoint, model, **model_options(locals()))

    def show(v: float, doc: dict) -> None:
        if not as_json:
            cols = "  ".join(f"{k} {views.num(a)}" for k, a in doc["accuracy"].items())
            out.print(f"eps_ap {v:.4f} ({v * 255:.1f}/255): {cols}", highlight=False)

    values = [_fraction("--eps-ap", part, 0, 1) for part in eps_ap.split(",")]
    summary = eps_ap_sweep(checkpoint, values, samples, device, 0, sets or [], show, loaded=loaded)
    if as_json:
        print_json(summary)
    else:
        out.print(f"saved {summary['saved']}")
