"""`p` on a run, an evaluation or a study: write its report (engine/report/) and say where.

The report is drawn and written by the engine in a worker thread (matplotlib
takes a moment); the screen only hears the outcome as a notification.
"""

from __future__ import annotations

from pathlib import Path

from textual.screen import Screen

from workbench.views import error_text


def write_report(screen: Screen, target: Path) -> None:
    """Write `target`'s report into its default folder; notify the folder, or the one-line
    reason it could not be written."""
    app = screen.app
    screen.notify(f"writing the report of {target.name} ...")

    def work() -> None:
        from engine.report.build import make_report

        try:
            written = make_report(
                str(target), runs_dir=app.runs_dir, latex=True, markdown=True, require_table=False
            )
        except Exception as exc:  # hostile files: one line, never a crash of the app
            app.call_from_thread(screen.notify, f"report: {error_text(exc)}", severity="error")
            return
        figures = sum(1 for f in written.files if f.suffix == ".png")
        app.call_from_thread(
            screen.notify,
            f"report written to {written.out}/ (report.md, {figures} figures)",
            timeout=10,
        )

    screen.run_worker(work, thread=True, group="report", exclusive=True)
