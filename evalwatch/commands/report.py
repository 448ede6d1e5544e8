"""``evalwatch report``: self-contained HTML reports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from evalwatch.commands.common import bad_input, console, open_store


def report(
    run_id: Annotated[int | None, typer.Argument(help="Evaluation run id.")] = None,
    html: Annotated[Path, typer.Option("--html", help="Where to write the HTML report.")] = Path(
        "report.html"
    ),
) -> None:
    """Write the HTML report of an evaluation run (plots inline, no external scripts)."""
    from reporting.run_report import write_run_html
    from storage.repo import get_run

    if run_id is None:
        raise bad_input("give a RUN_ID")
    engine = open_store()
    if get_run(engine, run_id) is None:
        raise bad_input(f"no evaluation run {run_id}")
    path = write_run_html(engine, run_id, html)
    console.print(f"report: {path}")


def register(app: typer.Typer) -> None:
    """Add the ``report`` command."""
    app.command("report")(report)
