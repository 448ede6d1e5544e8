"""``evalwatch export``: differentially private aggregates for readers outside the team.

``export daily`` writes noised daily aggregates per app (CSV or JSON) and charges the epsilon
to a dataset's privacy budget; ``export budget`` shows what each dataset has spent. A release
that would exceed its budget is refused with exit code 1 (the budget check failed) and writes
nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from evalwatch.commands.common import (
    EXIT_CHECK_FAILED,
    STATE,
    AppOpt,
    bad_input,
    console,
    open_store,
    parse_time,
    print_error,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

export_app = typer.Typer(
    help="Differentially private exports of aggregates, and their privacy budgets.",
    no_args_is_help=True,
)

EpsilonOpt = Annotated[
    float,
    typer.Option(
        "--dp-epsilon",
        help="Epsilon this release spends (split over its noised numbers; charged to --dataset).",
    ),
]
DatasetOpt = Annotated[
    str | None,
    typer.Option(
        "--dataset",
        help="Privacy budget to charge (default: traffic, or traffic:<app> with --app).",
    ),
]


def _window(since: str, until: str | None) -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    try:
        start = parse_time(since, now)
        end = parse_time(until, now) if until else now
    except ValueError as exc:
        raise bad_input(str(exc)) from exc
    if not start < end:
        raise bad_input(f"--since {since} is not before --until {until or 'now'}")
    return start, end


@export_app.command("daily")
def daily(
    out: Annotated[Path, typer.Option("--out", help="File to write.")],
    dp_epsilon: EpsilonOpt,
    since: Annotated[
        str, typer.Option("--since", help="Window start: ISO time, or 30d back from now.")
    ] = "30d",
    until: Annotated[
        str | None, typer.Option("--until", help="Window end (exclusive; default now).")
    ] = None,
    fmt: Annotated[Literal["csv", "json"], typer.Option("--format", help="csv or json.")] = "csv",
    app: AppOpt = None,
    dataset: DatasetOpt = None,
) -> None:
    """Write noised daily aggregates per app: interactions, cost, latency, success, ratings.

    Every number is differentially private (each user at most dp.max_contributions_per_day
    interactions per day and app, values clamped to dp.bounds) and comes with the half-width
    of its noise's 95% interval. Exit 1, nothing written, when the dataset's budget would be
    exceeded.
    """
    from evalwatch.runs.dp import default_dataset, dp_params, publish_daily_export
    from evalwatch.storage.dp_ledger import BudgetExceededError

    start, end = _window(since, until)
    settings = STATE.settings().dp
    try:
        params = dp_params(settings, dp_epsilon, dataset or default_dataset(app))
    except ValueError as exc:
        raise bad_input(str(exc)) from exc
    engine = open_store()
    try:
        done = publish_daily_export(engine, settings, params, start, end, out, fmt, app)
    except BudgetExceededError as exc:
        print_error(str(exc))
        raise typer.Exit(EXIT_CHECK_FAILED) from exc
    c = done.charge
    console.print(
        f"export: {out.resolve()} ({len(done.release.tables['daily'])} rows, release "
        f"{c.release_id}, epsilon {c.epsilon:g} of dataset {c.dataset!r}: "
        f"{c.spent_after:.4g} of {c.budget:.4g} spent, {c.remaining:.4g} left)",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


@export_app.command("budget")
def budget(
    dataset: Annotated[
        list[str] | None,
        typer.Option("--dataset", help="Only this dataset (repeatable; default: every one used)."),
    ] = None,
) -> None:
    """Show each dataset's privacy budget: total, spent, remaining, releases."""
    from evalwatch.storage.dp_ledger import budget_status, list_releases

    settings = STATE.settings().dp
    engine = open_store()
    names = dataset or sorted({r["dataset"] for r in list_releases(engine)})
    if not names:
        console.print("no differentially private release yet", highlight=False)
        return
    for name in names:
        s = budget_status(engine, name, settings.budget_for(name))
        console.print(
            f"{name}: budget {s.budget:g}, spent {s.spent:.4g}, remaining {s.remaining:.4g}, "
            f"{s.releases} release(s)",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )


def write_dp_overview(
    engine: Engine,
    epsilon: float,
    dataset: str | None,
    start: datetime,
    end: datetime,
    html: Path | None,
    folder: Path,
    *,
    kind: Literal["overview", "executive"] = "overview",
) -> Path:
    """``report --overview|--executive --dp-epsilon``: the noised page, charged to ``dataset``.

    Raises:
        typer.Exit: 2 for a bad epsilon or dataset; 1 when the budget would be exceeded
            (nothing written).
    """
    from evalwatch.runs.dp import default_dataset, dp_params, publish_overview
    from evalwatch.storage.dp_ledger import BudgetExceededError

    settings = STATE.settings().dp
    try:
        params = dp_params(settings, epsilon, dataset or default_dataset(None))
    except ValueError as exc:
        raise bad_input(str(exc)) from exc
    target = html or folder / f"{kind}-dp-{datetime.now(UTC):%Y%m%d}.html"
    try:
        done = publish_overview(engine, settings, params, start, end, target, kind=kind)
    except BudgetExceededError as exc:
        print_error(str(exc))
        raise typer.Exit(EXIT_CHECK_FAILED) from exc
    c = done.charge
    console.print(
        f"{kind}: {target.resolve()} (differentially private, release {c.release_id}, epsilon "
        f"{c.epsilon:g} of dataset {c.dataset!r}: {c.spent_after:.4g} of {c.budget:.4g} spent, "
        f"{c.remaining:.4g} left)",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    return target


def register(app: typer.Typer) -> None:
    """Add the ``export`` group."""
    app.add_typer(export_app, name="export")
