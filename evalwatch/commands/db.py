"""``evalwatch db``: schema migrations and retention."""

from __future__ import annotations

from typing import Annotated

import typer

from evalwatch.commands.common import (
    STATE,
    bad_input,
    confirm_or_refuse,
    console,
)
from evalwatch.core import parse_duration

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
    if dry_run:
        console.print(f"would delete {what} (dry run: nothing deleted)", highlight=False)
        return
    if not any(counts.values()):
        console.print(f"nothing to prune: no traffic older than {older_than}", highlight=False)
        return
    confirm_or_refuse(f"Delete {what}?", yes)
    deleted = prune(engine, period)
    console.print(
        "pruned "
        + ", ".join(f"{n} {table}" for table, n in deleted.items())
        + f" older than {older_than}",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    """Add the ``db`` group."""
    app.add_typer(db_app, name="db")
