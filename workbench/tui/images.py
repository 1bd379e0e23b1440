"""Images in the terminal: two pixel rows per character with the upper half block."""

from __future__ import annotations

from rich.style import Style
from rich.text import Text


def _rgb(v: float) -> str:
    g = max(0, min(255, round(v * 255)))
    return f"rgb({g},{g},{g})"


def _signed(v: float) -> str:
    """Perturbations: red for +, blue for -, black for 0."""
    g = max(0, min(255, round(abs(v) * 255)))
    return f"rgb({g},0,0)" if v > 0 else f"rgb(0,0,{g})"


def half_blocks(img: list[list[float]], signed: bool = False) -> Text:
    """Render an H x W grid of values (in [0,1], or [-1,1] when signed) as H/2 text rows."""
    colour = _signed if signed else _rgb
    out = Text()
    h = len(img)
    for r in range(0, h, 2):
        top, bottom = img[r], img[r + 1] if r + 1 < h else [0.0] * len(img[r])
        for a, b in zip(top, bottom, strict=True):
            out.append("▀", Style(color=colour(a), bgcolor=colour(b)))
        if r + 2 < h:
            out.append("\n")
    return out


def shrink(img: list[list[float]], factor: int) -> list[list[float]]:
    """Average factor x factor blocks so a 28x28 digit fits narrow terminals."""
    if factor <= 1:
        return img
    h, w = len(img) // factor, len(img[0]) // factor
    return [
        [
            sum(img[r * factor + i][c * factor + j] for i in range(factor) for j in range(factor))
            / factor**2
            for c in range(w)
        ]
        for r in range(h)
    ]
