"""The workbench engine: data, models, attacks, methods, training, evaluation.

Imports torch in its submodules only, so light tools (checkpoint headers,
run listings) stay fast and torch-free.
"""

__version__ = "0.1.0"
