"""Training: the run session (run dirs, locking, crash handling), the loop, methods, fast path."""
