"""``evalwatch rules``: validate an alert rules file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from evalwatch.commands.common import EXIT_BAD_INPUT, bad_input, console, err_console

rules_app = typer.Typer(help="Alert rules.", no_args_is_help=True)


@rules_app.command("check")
def rules_check(
    file: Annotated[Path, typer.Argument(help="The rules YAML file.")],
    metric: Annotated[
        list[str] | None,
        typer.Option("--metric", help="Another known metric, evaluator.metric (repeatable)."),
    ] = None,
    channel: Annotated[
        list[str] | None,
        typer.Option("--channel", help="Another known channel name (repeatable)."),
    ] = None,
) -> None:
    """Validate a rules file: exit 0 when valid, 2 with every problem listed otherwise.

    Each problem names the rule and the field, e.g. an unknown metric, aggregation or channel.
    """
    from evalwatch.checks.rules import check_rules, load_rules
    from evalwatch.evaluators.metrics import metric_catalogue
    from evalwatch.files import InputFileError, read_input_text

    try:
        # A file that cannot be read is one problem, told once (not listed as a rule problem).
        read_input_text(file)
    except InputFileError as exc:
        raise bad_input(str(exc)) from exc
    known = set(metric_catalogue()) | set(metric or [])
    errors = check_rules(file, known_metrics=known, known_channels=channel or [])
    if errors:
        for e in errors:
            err_console.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
        err_console.print(f"{file}: {len(errors)} problem(s)", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT)
    rules = load_rules(file, known_metrics=known, known_channels=channel or [])
    console.print(
        f"OK: {file} ({len(rules.rules)} rule(s), {len(rules.channels)} channel(s))",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    """Add the ``rules`` group."""
    app.add_typer(rules_app, name="rules")
