"""``evalwatch report``: self-contained HTML reports of a run, or the operations overview."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from evalwatch.commands.common import STATE, bad_input, console, open_store, parse_time


def report(
    run_id: Annotated[int | None, typer.Argument(help="Evaluation run id.")] = None,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            help="Where to write the HTML report (default: the store's reports folder, "
            "run-N.html or overview-DATE.html).",
        ),
    ] = None,
    overview: Annotated[
        bool, typer.Option("--overview", help="The operations overview instead of one run.")
    ] = False,
    days: Annotated[float, typer.Option("--days", help="Overview window in days.")] = 7.0,
    until: Annotated[
        str | None,
        typer.Option("--until", help="Overview window end (default: newest traffic)."),
    ] = None,
) -> None:
    """Write the HTML report of an evaluation run, or with --overview the operations overview.

    Without --html the report goes where the flows put theirs: beside a SQLite store
    (``<store folder>/reports/``), or ``<EVALWATCH_REPORT_DIR>/<store key>/``.
    """
    from evalwatch.reporting.location import report_folder

    engine = open_store()
    folder = report_folder(STATE.settings())
    if overview:
        from evalwatch.reporting.overview import overview_html
        from evalwatch.storage.overview import load_overview, overview_window

        if run_id is not None:
            raise bad_input("--overview takes no RUN_ID")
        if days <= 0:
            raise bad_input("--days must be positive")
        try:
            end = parse_time(until) if until else None
        except ValueError as exc:
            raise bad_input(str(exc)) from exc
        start, end = overview_window(engine, days, end)
        target = html or folder / f"overview-{datetime.now(UTC):%Y%m%d}.html"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(overview_html(load_overview(engine, start, end)), encoding="utf-8")
        console.print(f"overview: {target.resolve()}", highlight=False, soft_wrap=True)
        return
    from evalwatch.reporting.run_report import write_run_html
    from evalwatch.storage.repo import get_run

    if run_id is None:
        raise bad_input("give a RUN_ID, or --overview")
    if get_run(engine, run_id) is None:
        raise bad_input(f"no evaluation run {run_id}")
    path = write_run_html(engine, run_id, html or folder / f"run-{run_id}.html")
    console.print(f"report: {path}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add the ``report`` command."""
    app.command("report")(report)
