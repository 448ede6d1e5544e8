"""``evalwatch report``: self-contained HTML reports of a run, or the operations overview."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from evalwatch.commands.common import STATE, bad_input, console, open_store, parse_time

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


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
    executive: Annotated[
        bool,
        typer.Option(
            "--executive",
            help="The executive view (health per app and model version, safety compliance, "
            "satisfaction, cost per successful interaction, trends): HTML and markdown.",
        ),
    ] = False,
    targets: Annotated[
        Path | None,
        typer.Option(
            "--targets",
            help="Health targets YAML for --executive (default: the built-in targets).",
        ),
    ] = None,
    days: Annotated[
        float, typer.Option("--days", help="Overview or executive window in days.")
    ] = 7.0,
    until: Annotated[
        str | None,
        typer.Option("--until", help="Overview or executive window end (default: newest traffic)."),
    ] = None,
    dp_epsilon: Annotated[
        float | None,
        typer.Option(
            "--dp-epsilon",
            help="Differentially private page for readers outside the team: spend this "
            "epsilon of --dataset's budget; every number noised, with its 95% noise interval.",
        ),
    ] = None,
    dp_dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset", help="Privacy budget --dp-epsilon is charged to (default: traffic)."
        ),
    ] = None,
) -> None:
    """Write the HTML report of a run, or with --overview / --executive a view of the traffic.

    Without --html the report goes where the flows put theirs: beside a SQLite store
    (``<store folder>/reports/``), or ``<EVALWATCH_REPORT_DIR>/<store key>/``.
    """
    from evalwatch.reporting.location import report_folder

    if overview and executive:
        raise bad_input("give --overview or --executive, not both")
    if targets is not None and not executive:
        raise bad_input("--targets goes with --executive")
    engine = open_store()
    folder = report_folder(STATE.settings())
    if executive:
        if run_id is not None:
            raise bad_input("--executive takes no RUN_ID")
        start, end = _window(engine, days, until)
        if dp_epsilon is not None:
            from evalwatch.commands.export import write_dp_overview

            if targets is not None:
                raise bad_input("--targets does not go with --dp-epsilon (no verdicts released)")
            write_dp_overview(
                engine, dp_epsilon, dp_dataset, start, end, html, folder, kind="executive"
            )
            return
        page, md = _executive_report(engine, start, end, targets, html, folder)
        console.print(f"executive view: {page}", highlight=False, soft_wrap=True)
        console.print(f"markdown: {md}", highlight=False, soft_wrap=True)
        return
    if overview:
        from evalwatch.reporting.overview import overview_html
        from evalwatch.storage.overview import load_overview

        if run_id is not None:
            raise bad_input("--overview takes no RUN_ID")
        start, end = _window(engine, days, until)
        if dp_epsilon is not None:
            from evalwatch.commands.export import write_dp_overview

            write_dp_overview(engine, dp_epsilon, dp_dataset, start, end, html, folder)
            return
        target = html or folder / f"overview-{datetime.now(UTC):%Y%m%d}.html"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(overview_html(load_overview(engine, start, end)), encoding="utf-8")
        console.print(f"overview: {target.resolve()}", highlight=False, soft_wrap=True)
        return
    from evalwatch.reporting.run_report import write_run_html
    from evalwatch.storage.repo import get_run

    if dp_epsilon is not None or dp_dataset is not None:
        raise bad_input("--dp-epsilon and --dataset go with --overview or --executive")
    if run_id is None:
        raise bad_input("give a RUN_ID, or --overview")
    if get_run(engine, run_id) is None:
        raise bad_input(f"no evaluation run {run_id}")
    from evalwatch.runs.fairness import run_fairness_report

    fairness = run_fairness_report(engine, run_id, STATE.settings().fairness)
    path = write_run_html(engine, run_id, html or folder / f"run-{run_id}.html", fairness=fairness)
    console.print(f"report: {path}", highlight=False, soft_wrap=True)


def _window(engine: Engine, days: float, until: str | None) -> tuple[datetime, datetime]:
    """The overview's window (``days`` ending at ``until`` or the newest traffic)."""
    from evalwatch.storage.overview import overview_window

    if days <= 0:
        raise bad_input("--days must be positive")
    try:
        end = parse_time(until) if until else None
    except ValueError as exc:
        raise bad_input(str(exc)) from exc
    return overview_window(engine, days, end)


def _executive_report(
    engine: Engine,
    start: datetime,
    end: datetime,
    targets: Path | None,
    html: Path | None,
    folder: Path,
) -> tuple[Path, Path]:
    """Write the executive view's HTML page and its markdown beside it; return both paths."""
    from evalwatch.checks.health import TargetsError, load_targets
    from evalwatch.checks.rules import RulesError, load_rules
    from evalwatch.reporting.executive import (
        executive_html,
        executive_markdown,
        load_executive_data,
    )

    try:
        health_targets = load_targets(targets)
    except TargetsError as exc:
        raise bad_input(str(exc)) from exc
    try:
        rules = load_rules(STATE.settings().rules_file)
    except RulesError as exc:
        more = f" (and {len(exc.errors) - 1} more)" if len(exc.errors) > 1 else ""
        raise bad_input(f"alert rules (read for the safety checks): {exc.errors[0]}{more}") from exc
    data = load_executive_data(engine, start, end, health_targets, rules)
    page = html or folder / f"executive-{datetime.now(UTC):%Y%m%d}.html"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(executive_html(data), encoding="utf-8")
    md = page.with_suffix(".md")
    md.write_text(executive_markdown(data), encoding="utf-8")
    return page.resolve(), md.resolve()


def register(app: typer.Typer) -> None:
    """Add the ``report`` command."""
    app.command("report")(report)
