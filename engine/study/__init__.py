"""Studies: many runs of arms, grid settings and seeds, and one paired report (docs/studies.md)."""
