"""``evalwatch db``: schema migrations and retention."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from evalwatch.commands.common import (
    STATE,
    bad_input,
    confirm_or_refuse,
    console,
)
from evalwatch.core import parse_duration

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

db_app = typer.Typer(help="Store schema and retention.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the store to the latest schema (the CLI also does this on first use)."""
    from evalwatch.storage.db import current_revision, head_revision, make_engine, upgrade

    engine = make_engine(STATE.settings().database_url)
    before = current_revision(engine)
    upgrade(engine)
    console.print(f"store at revision {head_revision()} (was {before or 'empty'})")


@db_app.command("prune")
def db_prune(
    older_than: Annotated[
        str, typer.Option("--older-than", metavar="DURATION", help="Retention period, e.g. 90d.")
    ] = "90d",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would be deleted; delete nothing.")
    ] = False,
    yes: Annotated[
        bool,
        typer.Option(
            "--yes", "-y", help="Delete without asking (required when stdin is not a terminal)."
        ),
    ] = False,
) -> None:
    """Delete traffic older than the retention period, with its feedback, scores, embeddings.

    Asks first on a terminal; elsewhere (cron, CI) it needs --yes. --dry-run only counts.
    """
    from evalwatch.storage.db import make_engine, upgrade
    from evalwatch.storage.repo import prune

    try:
        period = parse_duration(older_than)
    except ValueError as exc:
        raise bad_input(str(exc)) from exc
    engine = make_engine(STATE.settings().database_url)
    upgrade(engine)
    counts = prune(engine, period, dry_run=True)
    what = ", ".join(f"{n} {table}" for table, n in counts.items()) + f" older than {older_than}"
    metric_due = _metric_samples(engine, dry_run=True)
    if metric_due:
        what += f", and {metric_due} metric samples older than telemetry.retention"
    if dry_run:
        console.print(f"would delete {what} (dry run: nothing deleted)", highlight=False)
        return
    if not any(counts.values()) and not metric_due:
        console.print(f"nothing to prune: no traffic older than {older_than}", highlight=False)
        _enforce_text_retention(engine)
        return
    confirm_or_refuse(f"Delete {what}?", yes)
    deleted = prune(engine, period)
    console.print(
        "pruned "
        + ", ".join(f"{n} {table}" for table, n in deleted.items())
        + f" older than {older_than}",
        highlight=False,
    )
    if metric_due:
        n = _metric_samples(engine, dry_run=False)
        console.print(f"pruned {n} metric samples older than telemetry.retention", highlight=False)
    _enforce_text_retention(engine)


def _metric_samples(engine: Engine, *, dry_run: bool) -> int:
    """Metric samples older than ``telemetry.retention`` (default 30d): counted, or deleted."""
    from evalwatch.storage.metric_series import prune_samples

    retention = STATE.settings().telemetry.retention
    try:
        period = parse_duration(retention)
    except ValueError as exc:
        raise bad_input(f"telemetry.retention: {exc}") from exc
    return prune_samples(engine, period, dry_run=dry_run)


def _enforce_text_retention(engine: Engine) -> None:
    """With ``ingest.text_retention`` set, prune also removes the texts older than it."""
    from evalwatch.storage.privacy import enforce_text_retention

    text_retention = STATE.settings().ingest.text_retention
    if text_retention is None:
        return
    removed = enforce_text_retention(engine, parse_duration(text_retention))
    console.print(
        "text removed (length and hash kept) older than "
        + f"{text_retention}: "
        + ", ".join(f"{n} {table}" for table, n in removed.items()),
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    """Add the ``db`` group."""
    app.add_typer(db_app, name="db")
