"""`workbench card` and `workbench eval CKPT --check-adv FILE`: parsing, printing, exit codes.

The engine builds the card (engine/eval/card.py) and re-checks saved
adversarial examples (engine/eval/adv_check.py); both are imported when the
command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from workbench.printing import out, print_json


def card(
    target: Annotated[
        Path, typer.Argument(help="A checkpoint (its latest evaluation) or an eval/*.json file.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="The card's JSON.")] = False,
) -> None:
    """The model card of an evaluation: RobustBench's fields, intervals, provenance."""
    from engine.eval.card import card_markdown, card_of

    doc = card_of(target)
    if as_json:
        print_json(doc)
    else:
        out.print(card_markdown(doc), end="", highlight=False, markup=False, soft_wrap=True)


def check_adv(
    checkpoint: Path, file: Path, *, device: str, batch_size: int | None, as_json: bool
) -> int:
    """Re-score saved adversarial examples on `checkpoint`: print the verdict, return 0 or 1."""
    from engine.eval.adv_check import check_adv as run_check

    verdict = run_check(checkpoint, file, device=device, batch_size=batch_size)
    if as_json:
        print_json({**verdict.report, "checks": verdict.lines, "ok": verdict.ok})
    else:
        out.print(f"{file} on {checkpoint}:", highlight=False, markup=False, soft_wrap=True)
        d = verdict.report.get("defense")
        if d:
            out.print(
                f"  judged by the checkpoint inside the defence it was evaluated with: {d['name']}"
                f", eps_ap {d['eps_ap']:.4g}, {d['steps']} steps, {d['start']} start",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
        for line in verdict.lines:
            out.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)
        out.print(
            "verdict: every check holds"
            if verdict.ok
            else f"verdict: FAILED ({', '.join(verdict.failures)})",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    return 0 if verdict.ok else 1
