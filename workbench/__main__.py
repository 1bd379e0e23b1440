"""`python -m workbench` runs the CLI (tests use it to exercise the real entry point)."""

from workbench.cli import main

main()
