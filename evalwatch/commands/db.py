"""``evalwatch db``: schema migrations and retention."""

from __future__ import annotations

from typing import Annotated

import typer

from evalwatch.commands.common import STATE, bad_input, console, parse_duration
from storage.db import current_revision, head_revision, make_engine, upgrade
from storage.repo import prune

db_app = typer.Typer(help="Store schema and retention.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the store to the latest schema (the CLI also does this on first use)."""
    engine = make_engine(STATE.settings().database_url)
    before = current_revision(engine)
    upgrade(engine)
    console.print(f"store at revision {head_revision()} (was {before or 'empty'})")


@db_app.command("prune")
def db_prune(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Retention period, e.g. 90d.")
    ] = "90d",
) -> None:
    """Delete traffic older than the retention period, with its feedback, scores, embeddings."""
    try:
        period = parse_duration(older_than)
    except ValueError as exc:
        raise bad_input(str(exc)) from exc
    engine = make_engine(STATE.settings().database_url)
    upgrade(engine)
    deleted = prune(engine, period)
    console.print(
        "pruned "
        + ", ".join(f"{n} {table}" for table, n in deleted.items())
        + f" older than {older_than}"
    )


def register(app: typer.Typer) -> None:
    """Add the ``db`` group."""
    app.add_typer(db_app, name="db")
