"""`aispend report --date DATE [--data-dir DIR] [--out DIR]`: render one day's HTML report.

The work is in `reports.from_lake.run_report`; this module turns its outcome into one line
on stdout (the path) or stderr (the problem, exit code 2, nothing written).
"""

from __future__ import annotations

import datetime as dt

from reports.from_lake import ReportError, run_report


def report_command(date: str, data_dir: str | None, out: str | None) -> int:
    """The CLI body: one line on success (the path) or on error (exit code 2)."""
    import typer

    from aispend_cli.errors import EXIT_USER_ERROR

    try:
        day = dt.date.fromisoformat(date)
    except ValueError:
        typer.echo(f"error: --date: expected a date YYYY-MM-DD, got {date!r}", err=True)
        return EXIT_USER_ERROR
    try:
        path = run_report(day, data_dir, out)
    except ReportError as exc:
        typer.echo(f"error: {' '.join(str(exc).split())}", err=True)
        return EXIT_USER_ERROR
    typer.echo(f"wrote {path}")
    return 0
