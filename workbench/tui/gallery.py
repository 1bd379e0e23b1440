"""Gallery: clean inputs, adversarial versions and perturbations, one row per class.

Crafted now by PGD-20, or (`adv`) the worst-case inputs an evaluation saved
with `eval --save-adv`, opened from the inspector (key G).
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import ScrollableContainer
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from workbench.tui.images import half_blocks, shrink
from workbench.tui.keys import keys
from workbench.views import error_text, threat


class GalleryScreen(Screen):
    KEYMAP = "gallery"
    BINDINGS = keys(KEYMAP)

    def __init__(self, path: Path, adv: Path | None = None) -> None:
        super().__init__()
        self.path = path
        self.adv = adv
        self.rows: list = []
        self.eps: float | None = 0.0
        self.norm: str | None = "linf"
        self.full = False

    def compose(self) -> ComposeResult:
        yield Header()
        with ScrollableContainer(id="gallery-pane"):  # full size scrolls sideways when wider
            yield Static("computing adversarial examples ...", id="gallery")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.title = f"Gallery: {self.path.name}"
        if self.adv is not None:
            self.title += f" (saved: {self.adv.name})"
        self.compute()

    @work(thread=True, exclusive=True)
    def compute(self) -> None:
        from engine.eval.gallery import gallery, saved_gallery  # torch: once the screen opens

        try:
            if self.adv is None:
                threat, rows = gallery(self.path)
            else:
                threat, rows = saved_gallery(self.path, self.adv)
        except Exception as exc:  # a worker reports, it never takes the app down
            self.app.call_from_thread(
                self.query_one("#gallery", Static).update, f"[red]{escape(error_text(exc))}[/]"
            )
            return
        norm, eps = (None, None) if threat is None else (threat.norm, threat.eps)
        self.app.call_from_thread(self.show, norm, eps, rows)

    def show(self, norm: str | None, eps: float | None, rows: list) -> None:
        self.norm, self.eps, self.rows = norm, eps, rows
        if not rows and self.adv is not None:
            self.query_one("#gallery", Static).update("no attack column broke any example here")
        self.render_rows()

    def action_zoom(self) -> None:
        self.full = not self.full
        self.render_rows()

    def render_rows(self) -> None:
        if not self.rows:
            return
        factor = 1 if self.full else 2
        size = "full size, arrows scroll" if self.full else "half size"
        if self.norm is None or self.eps is None:
            at = "each column's own ball"
        else:
            at = f"eps {self.eps:.4g}" if self.norm == "linf" else threat(self.norm, self.eps)
        what = "PGD-20" if self.adv is None else "saved worst case (float32, as evaluated)"
        table = Table(title=f"{what} at {at}; perturbation: red +, blue -; {size} (z)")
        has_z = self.rows[0].z_true is not None
        cols = ["true", "clean", "pred", "adversarial", "pred", "perturbation"]
        if has_z:
            cols += ["z (true class)", "z (wrong class)"]
        for col in cols:
            table.add_column(col, justify="center")
        for r in self.rows:
            clean = shrink(r.clean[0].tolist(), factor)
            adv = shrink(r.adv[0].tolist(), factor)
            diff = r.adv[0] - r.clean[0]  # relative to the largest change a pixel may make
            linf = self.norm == "linf" and self.eps
            scale = (self.eps if linf else float(diff.abs().max())) or 1.0
            delta = shrink((diff / scale).tolist(), factor)
            wrong = "bold red" if r.pred_adv != r.label else "green"
            cells = [
                str(r.label) if r.index is None else f"{r.label}\n#{r.index}",
                half_blocks(clean),
                str(r.pred_clean),
                half_blocks(adv),
                Text(
                    str(r.pred_adv) if r.column is None else f"{r.pred_adv}\n{r.column}",
                    style=wrong,
                ),
                half_blocks(delta, signed=True),
            ]
            if has_z:
                cells += [
                    half_blocks(shrink(r.z_true[0].tolist(), factor)),
                    Text.assemble(
                        half_blocks(shrink(r.z_wrong[0].tolist(), factor)), f"\nclass {r.wrong}"
                    ),
                ]
            table.add_row(*cells)
        static = self.query_one("#gallery", Static)
        # every pixel column: the table takes its natural width and the pane scrolls,
        # rather than rich shrinking the images to fit (which cut 28-pixel digits to 21)
        console = Console(width=1000)
        static.styles.width = Measurement.get(console, console.options, table).maximum
        static.update(table)
