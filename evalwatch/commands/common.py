"""Options and helpers shared by CLI commands: the store, time parsing, sampling options."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, overload

import typer
import yaml
from pydantic import ValidationError
from rich.console import Console
from sqlalchemy.engine import Engine

from evalwatch.settings import Settings, get_settings
from storage.db import get_engine
from storage.sampling import SampleSpec

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_CHECK_FAILED",
    "EXIT_OK",
    "EXIT_UNAVAILABLE",
    "AppOpt",
    "MaxItemsOpt",
    "ModelVersionOpt",
    "RateOpt",
    "SeedOpt",
    "SinceOpt",
    "StratifyOpt",
    "UntilOpt",
    "bad_input",
    "console",
    "err_console",
    "evaluator_list",
    "finish_gate_report",
    "open_store",
    "parse_duration",
    "parse_time",
    "read_options_file",
    "sample_spec",
    "unavailable",
    "validation_message",
]

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2
# The work could not be carried out: store, server or endpoint unavailable, internal error.
# Never 0 or 1, so a CI gate cannot read an outage as a pass or as a regression.
EXIT_UNAVAILABLE = 3

console = Console()
err_console = Console(stderr=True)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def bad_input(message: str) -> typer.Exit:
    """Print ``message`` as an error and return the exit for bad input (code 2)."""
    err_console.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(EXIT_BAD_INPUT)


def unavailable(message: str) -> typer.Exit:
    """Print ``message`` as an error and return the exit for work not carried out (code 3)."""
    err_console.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(EXIT_UNAVAILABLE)


def validation_message(exc: ValidationError) -> str:
    """A pydantic error as one line of its messages, without pydantic's prefixes."""
    return "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())


@overload
def evaluator_list(text: str) -> list[str]: ...


@overload
def evaluator_list(text: None) -> None: ...


def evaluator_list(text: str | None) -> list[str] | None:
    """Parse ``--evaluators a,b``: known names in order, once each (None stays None).

    Raises:
        typer.Exit: Code 2 when no name is given or a name is unknown (the known ones listed).

    Examples:
        >>> evaluator_list("heuristics, heuristics")
        ['heuristics']
    """
    if text is None:
        return None
    from evaluators.base import evaluator_names

    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    known = evaluator_names()
    unknown = [n for n in names if n not in known]
    if not names or unknown:
        raise bad_input(
            (f"unknown evaluator(s): {', '.join(unknown)}; " if unknown else "no evaluators; ")
            + f"known: {', '.join(known)}"
        )
    return names


def read_options_file(path: Path | None) -> dict[str, dict[str, Any]]:
    """Read ``--options-file``: a YAML mapping of evaluator name to its options.

    Raises:
        typer.Exit: Code 2 for an unreadable file or one of another shape.
    """
    if path is None:
        return {}
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise bad_input(f"cannot read options file {path}: {exc}") from exc
    if not isinstance(loaded, dict) or not all(isinstance(v, dict) for v in loaded.values()):
        raise bad_input(f"options file {path} must map evaluator names to option mappings")
    return {str(k): dict(v) for k, v in loaded.items()}


def finish_gate_report(
    outcome: Any,
    json_out: bool,
    *,
    header: str | None = None,
    details: str | None = None,
    left: dict[str, str] | None = None,
) -> None:
    """Print a gate or canary outcome, then exit with the report's code (0 pass, 1 fail).

    Args:
        outcome: A gate or canary outcome (``report``, ``report_id``, ``alerts``,
            ``alert_error``).
        json_out: Print the report as JSON (with the alerts) instead of text.
        header: A line printed above the text report.
        details: Text printed below the report (e.g. the worst items).
        left: Metrics not compared, with the reason.
    """
    report = outcome.report
    if json_out:
        report.meta["alerts"] = outcome.alerts
        typer.echo(report.to_json())
    else:
        if header:
            typer.echo(header + "\n")
        typer.echo(report.to_text())
        if details:
            typer.echo("\n" + details)
        if left:
            typer.echo("\nNot compared:")
            for metric, why in left.items():
                typer.echo(f"  {metric}: {why}")
        typer.echo(f"\nstored as regression report {outcome.report_id}")
        for e in outcome.alerts:
            typer.echo(f"alert {e['alert_id']} {e['action']} [{e['severity']}] {e['rule']}")
        if outcome.alert_error:
            err_console.print(
                f"[yellow]alert rules could not be evaluated:[/yellow] {outcome.alert_error}",
                highlight=False,
            )
    code = report.exit_code()
    if code != EXIT_OK:
        raise typer.Exit(code)


def parse_duration(text: str) -> timedelta:
    """Parse ``90d``, ``24h``, ``30m``, ``2w`` or ``45s``.

    Examples:
        >>> parse_duration("36h")
        datetime.timedelta(days=1, seconds=43200)
    """
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"bad duration {text!r}; use a number and one of s, m, h, d, w (e.g. 7d)")
    return timedelta(**{_UNITS[m.group(2)]: float(m.group(1))})


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """Parse an ISO-8601 time (UTC if no zone) or a duration back from now (``24h``)."""
    try:
        return (now or datetime.now(UTC)) - parse_duration(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"bad time {text!r}; use ISO-8601 (2026-11-01T00:00Z) or 24h/7d") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


@dataclass
class CliState:
    """Per-invocation state set by the app callback."""

    database_url: str | None = None

    def settings(self) -> Settings:
        """Settings with the command-line overrides applied."""
        s = get_settings()
        if self.database_url:
            s = s.model_copy(update={"database_url": self.database_url})
        return s


STATE = CliState()


def open_store() -> Engine:
    """The store's engine, migrated to the latest schema on first use."""
    return get_engine(STATE.settings().database_url)


SinceOpt = Annotated[
    str | None, typer.Option("--since", help="Window start: ISO time, or 24h / 7d back from now.")
]
UntilOpt = Annotated[
    str | None, typer.Option("--until", help="Window end (exclusive), same forms.")
]
AppOpt = Annotated[list[str] | None, typer.Option("--app", help="Only this app (repeatable).")]
ModelVersionOpt = Annotated[
    list[str] | None, typer.Option("--model-version", help="Only this model version (repeatable).")
]
RateOpt = Annotated[float, typer.Option("--rate", help="Share of interactions sampled (0-1].")]
MaxItemsOpt = Annotated[int | None, typer.Option("--max-items", help="At most this many.")]
StratifyOpt = Annotated[
    bool, typer.Option("--stratify/--no-stratify", help="Split --max-items evenly per version.")
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Sampling seed.")]


def sample_spec(
    since: str | None,
    until: str | None,
    app: list[str] | None,
    model_version: list[str] | None,
    rate: float,
    max_items: int | None,
    stratify: bool,
    seed: int,
    unscored_by: str | None = None,
) -> SampleSpec:
    """Build a :class:`SampleSpec` from CLI options; raises ``typer.Exit(2)`` on bad values."""
    try:
        return SampleSpec(
            start=parse_time(since) if since else None,
            end=parse_time(until) if until else None,
            apps=app or [],
            model_versions=model_version or [],
            rate=rate,
            max_items=max_items,
            stratify=stratify,
            seed=seed,
            unscored_by=unscored_by,
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"--{'-'.join(str(p) for p in e['loc']).replace('_', '-') or 'window'}: {e['msg']}"
            for e in exc.errors()
        )
        raise bad_input(f"bad sampling options: {problems}") from exc
    except ValueError as exc:
        raise bad_input(str(exc)) from exc
