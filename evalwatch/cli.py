"""The ``evalwatch`` command line: one entry point for every capability.

Exit codes: 0 success, 1 a check failed (validation, gate, drift), 2 bad usage or input, 3 the
work could not be carried out (store, server or endpoint unavailable, internal error).
"""

from __future__ import annotations

import importlib
import sys
import traceback
from typing import Annotated, Any

import typer
from typer.core import TyperOption

from evalwatch.commands.common import STATE, describe_failure, print_error

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
    "runs",
    "report",
    "judge",
    "rules",
    "alerts",
    "gate",
    "compare",
    "drift",
    "quarantine",
    "server",
    "collect",
    "privacy",
    "export",
    "demo",
]


def _no_placeholder_on_flags() -> None:
    """Show no ``<bool>`` value placeholder beside flags in the help panels.

    Typer's rich help panel prints every option's type, flags included (``--json <bool>``),
    although a flag takes no value; its plain help already leaves it out. A flag given an
    explicit metavar keeps it.
    """
    show_type = TyperOption.display_type_rich

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        if (self.is_flag or self.count) and self.metavar is None:
            return None
        return show_type(self, ctx)

    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_no_placeholder_on_flags()


@app.callback()
def _root(
    db: Annotated[
        str | None,
        typer.Option("--db", help="Store URL (overrides EVALWATCH_DATABASE_URL).", metavar="URL"),
    ] = None,
    debug: Annotated[
        bool,
        typer.Option(
            "--debug", envvar="EVALWATCH_DEBUG", help="Show the traceback of an unexpected error."
        ),
    ] = False,
) -> None:
    STATE.database_url = db
    STATE.debug = debug


for _name in _COMMAND_MODULES:
    importlib.import_module(f"evalwatch.commands.{_name}").register(app)


def main() -> None:
    """Console-script entry point: any error no command handled becomes one line and a code.

    Click's usage errors keep their exit 2; a bad store URL or setting exits 2; an unreachable
    store, Prefect server or endpoint, and any internal error exit 3 (never 0 or 1, which a CI
    job would read as "passed" or "regression"). ``--debug`` / ``EVALWATCH_DEBUG=1`` print the
    traceback as well.
    """
    try:
        app()
    except Exception as exc:
        code, message = describe_failure(exc, debug=STATE.debug)
        if STATE.debug:
            traceback.print_exc()
        print_error(message)
        sys.exit(code)
