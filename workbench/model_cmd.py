"""`workbench import` and the `--model` options eval, sweep and ablate share: a model from
outside the workbench (engine/external/), named on the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from engine.spec.errors import WorkbenchError
from workbench.printing import out, print_json

JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")]

# a model from outside the workbench (eval --model, import): engine/external/
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="MODULE:FACTORY, path/net.py:FACTORY, torchvision:NAME or a published layout "
        "(trades:smallcnn, apinet:resnet18): a model mapping [0, 1] NCHW images to logits.",
    ),
]
WeightsOpt = Annotated[
    Path | None,
    typer.Option("--weights", help="Its weights: safetensors or torch.load(weights_only=True)."),
]
DatasetOpt = Annotated[
    str | None, typer.Option("--dataset", help="The dataset it classifies (with --model).")
]
NormalizeOpt = Annotated[
    str | None,
    typer.Option(
        "--normalize",
        help="Input mean/std inside the model: cifar10, imagenet, mnist or m,m,m/s,s,s.",
    ),
]
StripOpt = Annotated[
    list[str] | None,
    typer.Option("--strip-prefix", help="Remove this prefix from weight keys (repeatable)."),
]
NormOpt = Annotated[str, typer.Option("--norm", help="Threat model norm (with --model).")]
EpsOpt = Annotated[
    str | None, typer.Option("--eps", help="Threat model eps, e.g. 8/255 (default: the dataset's).")
]
StepOpt = Annotated[str | None, typer.Option("--step", help="Attack step (default: eps/4).")]


MODEL_OPTIONS = ("weights", "dataset", "normalize", "strip_prefix", "norm", "eps", "step")


def model_options(values: dict[str, Any]) -> dict[str, Any]:
    """The `--model` options out of a command's parameters (`locals()`), by their names."""
    return {k: values[k] for k in MODEL_OPTIONS}


def _model_source(
    spec: str,
    *,
    weights: Path | None,
    dataset: str | None,
    normalize: str | None,
    strip_prefix: list[str] | None,
    norm: str,
    eps: str | None,
    step: str | None,
    sets: list[str] | None = None,
) -> Any:
    """The `ModelSource` the options describe (engine/external/source.py)."""
    from engine.external.source import ModelSource

    if dataset is None:
        raise WorkbenchError(f"--model {spec}: give --dataset NAME (the data it classifies)")
    return ModelSource(
        spec,
        dataset,
        weights=weights,
        normalize=normalize,
        strip_prefix=tuple(strip_prefix or ()),
        norm=norm,
        eps=eps,
        step=step,
        sets=tuple(sets or ()),
    )


def _loaded_model(spec: str, **options: Any) -> tuple[Any, Path]:
    """The --model in memory (an `evaluate.Loaded`) and the path that names its evidence:
    its weights file, else its name in this folder (eval/ goes beside either)."""
    from engine.eval.evaluate import Loaded
    from engine.external.foreign import load_foreign

    src = _model_source(spec, **options)
    foreign = load_foreign(src)
    anchor = src.weights if src.weights is not None else Path(src.label())
    return Loaded(foreign.cfg, foreign.model, foreign.external), anchor


def substitute(
    source: str | None,
    *,
    weights: Path | None,
    normalize: str | None,
    strip_prefix: list[str] | None,
) -> Any:
    """`--source`: a checkpoint file (a Path), a model spec with its options (a
    `ModelSource` whose dataset, left empty, is the target's), or None."""
    from engine.external.source import ModelSource

    given = [o for o, v in (("--source-weights", weights), ("--source-normalize", normalize),
                            ("--source-strip-prefix", strip_prefix)) if v]  # fmt: skip
    if source is None:
        if given:
            raise WorkbenchError(f"{given[0]}: goes with --source MODULE:FACTORY")
        return None
    if Path(source).is_file():
        if given:
            raise WorkbenchError(
                f"{given[0]}: goes with a --source model, not the checkpoint {source}"
            )
        return Path(source)
    if ":" not in source:
        raise WorkbenchError(
            f"--source {source}: no such checkpoint, and not a model (MODULE:FACTORY, "
            "path/net.py:FACTORY, torchvision:NAME or a published layout)"
        )
    return ModelSource(
        source,
        "",
        weights=weights,
        normalize=normalize,
        strip_prefix=tuple(strip_prefix or ()),
    )


def _target(
    command: str, checkpoint: Path | None, model: str | None, **options: Any
) -> tuple[Any, Path]:
    """A command's model: a CHECKPOINT or --model with its options (exactly one of them), as
    (the `Loaded` model or None, the path that names its evidence)."""
    if (checkpoint is None) == (model is None):
        raise WorkbenchError(
            f"{command}: give a CHECKPOINT or --model MODULE:FACTORY (one of them; see --help)"
        )
    if model is not None:
        return _loaded_model(model, **options)
    if any(options[k] for k in options if k != "norm") or options["norm"] != "linf":
        raise WorkbenchError(f"{command}: --weights, --dataset, --normalize ... go with --model")
    assert checkpoint is not None
    return None, checkpoint


def import_(
    *,  # typer passes every option by name
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    dataset: DatasetOpt = None,
    normalize: NormalizeOpt = None,
    strip_prefix: StripOpt = None,
    norm: NormOpt = "linf",
    eps: EpsOpt = None,
    step: StepOpt = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Its name: imported/<name>.safetensors.")
    ] = None,
    out_path: Annotated[
        Path | None, typer.Option("--out", help="The checkpoint file to write (.safetensors).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Import a model from outside the workbench as an ordinary checkpoint (then eval, diff ...)."""
    from engine.external.importer import default_output, import_model

    if model is None:
        raise WorkbenchError("import: give --model MODULE:FACTORY (and --weights, --dataset)")
    src = _model_source(model, **model_options(locals()))
    if name is not None and out_path is not None:
        raise WorkbenchError("import: give --name or --out, not both")
    path, foreign = import_model(src, out_path or default_output(src, name))
    doc = {"saved": str(path), "config": foreign.cfg.to_dict(), "external": foreign.external}
    if as_json:
        print_json(doc)
    else:
        out.print(f"imported {model} -> {path}", highlight=False)
        out.print(f"  evaluate it: workbench eval {path}", highlight=False)
