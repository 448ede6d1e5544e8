"""``evalwatch quarantine``: rows ingest rejected, with every reason (list, show)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from evalwatch.commands.common import bad_input, console, open_store
from evalwatch.core.redact import Redactor

__all__ = ["quarantine_app", "register"]

quarantine_app = typer.Typer(help="Rows rejected by ingest: list, show.", no_args_is_help=True)


@quarantine_app.command("list")
def quarantine_list(
    reason: Annotated[
        str | None,
        typer.Option("--reason", metavar="TEXT", help="Only rows with a reason containing TEXT."),
    ] = None,
    kind: Annotated[
        str | None,
        typer.Option("--kind", metavar="KIND", help="Only this kind: traffic, feedback, dataset."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many.")] = 50,
) -> None:
    """List quarantined rows, newest first, with their source, line and reasons."""
    from evalwatch.storage.listing import list_quarantine

    page = list_quarantine(open_store(), reason=reason, kind=kind, limit=limit)
    table = Table(title=f"{len(page.rows)} of {page.total} quarantined rows", title_justify="left")
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("source:line", overflow="fold")
    table.add_column("reasons", overflow="fold")
    redact = Redactor().redact  # a reason may quote the value it is about
    for q in page.rows:
        reasons = "; ".join(redact(r)[0] for r in q.reasons)
        table.add_row(str(q.id), escape(q.kind), escape(f"{q.source}:{q.line}"), escape(reasons))
    console.print(table)
    if page.rows:
        console.print("the raw row: `evalwatch quarantine show ID`", highlight=False)


@quarantine_app.command("show")
def quarantine_show(
    row_id: Annotated[
        int, typer.Argument(metavar="ID", help="Row id (see `evalwatch quarantine list`).")
    ],
) -> None:
    """Show one quarantined row: source, line, every reason and the raw text, redacted."""
    from evalwatch.storage.listing import get_quarantined

    q = get_quarantined(open_store(), row_id)
    if q is None:
        raise bad_input(f"no quarantined row {row_id}; see `evalwatch quarantine list`")
    # Ingest masks personal data before quarantining unless --no-redact was given; a terminal
    # (and whoever reads over a shoulder or a CI log) never needs it either way.
    raw, _ = Redactor().redact(q.raw)
    console.print(f"[bold]quarantined row {q.id}[/bold] ({escape(q.kind)})")
    console.print(f"  source: {escape(q.source)}, line {q.line}", highlight=False)
    console.print(f"  quarantined (UTC): {str(q.created_at)[:19]}", highlight=False)
    for why in q.reasons:  # a reason may quote the value it is about
        console.print(f"  - {escape(Redactor().redact(why)[0])}", highlight=False)
    console.print("  raw (personal data and secrets masked):", highlight=False)
    console.print(escape(raw), highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add the ``quarantine`` group."""
    app.add_typer(quarantine_app, name="quarantine")
