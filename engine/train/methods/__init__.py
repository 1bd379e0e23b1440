"""Training methods, one file each: a `[method]` config class and a loss, registered by name.

Importing this package imports every module in it, so a new method is a new
file here (or anywhere else that registers with `engine.spec.registry.METHODS`).
"""

from engine.spec.registry import METHODS, import_submodules

import_submodules(__name__, __path__)

__all__ = ["METHODS"]
