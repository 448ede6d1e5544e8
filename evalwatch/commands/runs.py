"""``evalwatch runs``: the evaluation runs in the store (list, show)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from evalwatch.commands.common import bad_input, console, open_store

__all__ = ["register", "runs_app"]

runs_app = typer.Typer(help="Evaluation runs: list, show.", no_args_is_help=True)


def _when(ts: object) -> str:
    return "—" if ts is None else str(ts)[:16]


@runs_app.command("list")
def runs_list(
    kind: Annotated[
        str | None,
        typer.Option("--kind", metavar="KIND", help="Only this kind: traffic, dataset, gate..."),
    ] = None,
    status: Annotated[
        str | None,
        typer.Option(
            "--status", metavar="STATUS", help="Only this status: running, completed, failed."
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many.")] = 50,
) -> None:
    """List evaluation runs, newest first."""
    from evalwatch.storage.listing import list_runs

    page = list_runs(open_store(), kind=kind, status=status, limit=limit)
    table = Table(title=f"{len(page.rows)} of {page.total} runs", title_justify="left")
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("model", overflow="fold")
    table.add_column("evaluators", overflow="fold")
    table.add_column("started (UTC)", no_wrap=True)
    for r in page.rows:
        table.add_row(
            str(r.id),
            escape(r.kind),
            escape(r.status),
            escape(r.model or "—"),
            escape(", ".join(r.evaluators or {}) or "—"),
            _when(r.started_at),
        )
    console.print(table)


@runs_app.command("show")
def runs_show(
    run_id: Annotated[
        int, typer.Argument(metavar="ID", help="Run id (see `evalwatch runs list`).")
    ],
) -> None:
    """Show one run: what it evaluated, with which evaluators, and its per-metric summary."""
    from evalwatch.commands.run import print_run_summary
    from evalwatch.storage.listing import get_run

    run = get_run(open_store(), run_id)
    if run is None:
        raise bad_input(f"no run {run_id}; see `evalwatch runs list`")
    fields = {
        "kind": run.kind,
        "status": run.status,
        "model": run.model,
        "dataset id": run.dataset_id,
        "started (UTC)": _when(run.started_at),
        "finished (UTC)": _when(run.finished_at),
        "Prefect flow run": run.flow_run_id,
        "run key": run.run_key,
    }
    console.print(f"[bold]run {run.id}[/bold]")
    for label, value in fields.items():
        if value is not None:
            console.print(f"  {label}: {escape(str(value))}", highlight=False)
    if run.error:
        console.print(f"  [red]error:[/red] {escape(run.error)}", highlight=False)
    for name, prov in (run.evaluators or {}).items():
        console.print(
            f"  evaluator {escape(name)} version {escape(str(prov.get('version')))} "
            f"config {escape(str(prov.get('config_hash')))}",
            highlight=False,
        )
    if run.params:
        console.print(
            "  parameters: " + escape(json.dumps(run.params, default=str)), highlight=False
        )
    summary = run.summary or {}
    if summary.get("metrics"):
        print_run_summary({**summary, "run_id": run.id})


def register(app: typer.Typer) -> None:
    """Add the ``runs`` group."""
    app.add_typer(runs_app, name="runs")
