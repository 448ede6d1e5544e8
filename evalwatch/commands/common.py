"""Options and helpers shared by CLI commands: the store, time parsing, sampling options."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
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
    "open_store",
    "parse_duration",
    "parse_time",
    "sample_spec",
]

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2

console = Console()
err_console = Console(stderr=True)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def bad_input(message: str) -> typer.Exit:
    """Print ``message`` as an error and return the exit for bad input (code 2)."""
    err_console.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(EXIT_BAD_INPUT)


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
