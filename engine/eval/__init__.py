"""Evaluation: suites, plans, attack runs, sanity checks, evidence, sweeps, ablations, gallery.

Kept free of imports so `engine.eval.evidence` (torch-free) stays light.
"""

WORST = "robust (worst case)"  # the per-example AND of every column: every table's headline
