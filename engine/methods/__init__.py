"""Method registry: a preset's `method.name` -> the class that turns a batch into a loss."""

from __future__ import annotations

from engine.config import PresetConfig
from engine.methods.atblr import Atblr
from engine.methods.base import Method
from engine.methods.madry import Madry
from engine.methods.standard import Standard
from engine.methods.trades import Trades

METHODS = {"standard": Standard, "madry": Madry, "trades": Trades, "atblr": Atblr}


def build_method(cfg: PresetConfig) -> Method:
    return METHODS[cfg.method.name](cfg.method, cfg.attack)


__all__ = ["METHODS", "Method", "build_method"]
