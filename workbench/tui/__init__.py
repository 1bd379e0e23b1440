"""The Textual app (imports textual; the engine never imports this package)."""
