"""Error types the faces turn into exit codes and one-line messages."""

from __future__ import annotations


class WorkbenchError(Exception):
    """Bad input from the user (preset, checkpoint, data, name): exit code 2."""


class ConfigError(WorkbenchError):
    """A preset or override that does not validate; the message names file and key."""


class DataMissingError(WorkbenchError):
    """Dataset files are not where the preset says; the message says where they belong."""


class CheckpointError(WorkbenchError):
    """A checkpoint that is truncated, foreign or inconsistent."""


class TrainingDiverged(Exception):
    """Loss or weights became NaN/inf: the run stops and keeps its last good checkpoint."""
