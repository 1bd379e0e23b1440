"""Method registry: a preset's `method.name` -> the class that turns a batch into a loss."""

from __future__ import annotations

from engine.config import PresetConfig
from engine.methods.apinet import Apinet
from engine.methods.atblr import Atblr
from engine.methods.base import Method
from engine.methods.madry import Madry
from engine.methods.standard import Standard
from engine.methods.trades import Trades

METHODS = {
    "standard": Standard,
    "madry": Madry,
    "trades": Trades,
    "atblr": Atblr,
    "apinet": Apinet,
}
NEEDS_WHOLE_CONFIG = {"apinet"}  # its loss depends on the defence and the dataset too


def build_method(cfg: PresetConfig) -> Method:
    cls = METHODS[cfg.method.name]
    if cfg.method.name in NEEDS_WHOLE_CONFIG:
        return cls(cfg)
    return cls(cfg.method, cfg.attack)


__all__ = ["METHODS", "Method", "build_method"]
