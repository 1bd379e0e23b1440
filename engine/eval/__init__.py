"""Evaluation: suites, plans, attack runs, sanity checks, sweeps, ablations, gallery.

What an evaluation saves (its evidence) is a record: `engine.records.evidence`.
"""

from engine.records.evidence import WORST

__all__ = ["WORST"]
