"""The faces of the workbench: CLI, headless view (and, later, the Textual app)."""
