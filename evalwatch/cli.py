"""The ``evalwatch`` command line: one entry point for every capability.

Exit codes: 0 success, 1 a check failed (validation, gate, drift), 2 bad usage or input.
"""

from __future__ import annotations

import importlib
from typing import Annotated

import typer

from evalwatch.commands.common import STATE

app = typer.Typer(
    name="evalwatch",
    help="Batch evaluation and monitoring for LLM applications.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Each module defines register(app); modules are imported here so every group shows in --help.
_COMMAND_MODULES = [
    "db",
    "ingest",
    "datasets",
    "sample",
    "evaluate",
    "run",
    "report",
    "judge",
    "rules",
    "alerts",
    "gate",
    "compare",
    "drift",
    "demo",
]


@app.callback()
def _root(
    db: Annotated[
        str | None,
        typer.Option("--db", help="Store URL (overrides EVALWATCH_DATABASE_URL).", metavar="URL"),
    ] = None,
) -> None:
    STATE.database_url = db


for _name in _COMMAND_MODULES:
    importlib.import_module(f"evalwatch.commands.{_name}").register(app)


def main() -> None:
    """Console-script entry point."""
    app()
