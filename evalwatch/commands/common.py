"""Options and helpers shared by CLI commands: the store, time parsing, sampling options.

Every command module imports this one, and ``evalwatch --help`` imports every command module:
so it imports only typer, rich, pydantic and :mod:`evalwatch.core` at the top, and the store,
settings, YAML and statistics inside the functions that use them
(``tests/test_cli_imports.py`` holds the CLI to that).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, overload

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from evalwatch.core import parse_duration
from evalwatch.core.defaults import DEFAULT_EVALUATORS

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from evalwatch.settings import Settings
    from evalwatch.storage.sampling import SampleSpec

__all__ = [
    "DEFAULT_EVALUATOR_LIST",
    "EXIT_BAD_INPUT",
    "EXIT_CHECK_FAILED",
    "EXIT_OK",
    "EXIT_UNAVAILABLE",
    "AppOpt",
    "EvaluatorsOpt",
    "MaxItemsOpt",
    "ModelVersionOpt",
    "RateOpt",
    "SeedOpt",
    "SinceOpt",
    "StratifyOpt",
    "UnscoredByOpt",
    "UntilOpt",
    "bad_input",
    "confirm_or_refuse",
    "console",
    "describe_failure",
    "err_console",
    "evaluator_list",
    "finish_gate_report",
    "flag_names",
    "open_store",
    "parse_time",
    "print_alert_changes",
    "print_error",
    "print_queued_notifications",
    "read_options_file",
    "sample_spec",
    "unavailable",
    "validation_message",
]

#: ``--evaluators`` when not given, on every command that runs evaluators.
DEFAULT_EVALUATOR_LIST = ",".join(DEFAULT_EVALUATORS)

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2
# The work could not be carried out: store, server or endpoint unavailable, internal error.
# Never 0 or 1, so a CI gate cannot read an outage as a pass or as a regression.
EXIT_UNAVAILABLE = 3

console = Console()
err_console = Console(stderr=True)


def print_error(message: str) -> None:
    """Print ``message`` to stderr as one error line (taken as plain text, not markup)."""
    # Messages are plain text: "[REDACTED:email]" or "[a, b]" must print, not parse as markup.
    # soft_wrap: one line however narrow the terminal (CI logs, grep), as the message says.
    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)


def bad_input(message: str) -> typer.Exit:
    """Print ``message`` as an error and return the exit for bad input (code 2)."""
    print_error(message)
    return typer.Exit(EXIT_BAD_INPUT)


def unavailable(message: str) -> typer.Exit:
    """Print ``message`` as an error and return the exit for work not carried out (code 3)."""
    print_error(message)
    return typer.Exit(EXIT_UNAVAILABLE)


def flag_names(text: str, flags: Mapping[str, str]) -> str:
    """``text`` with each parameter's field name replaced by its command-line flag.

    Models such as ``GateParams`` word their errors in field names; a user typed flags. Only
    names with an underscore are replaced: a one-word name (``dataset``) also reads as prose.

    Args:
        text: A message that may name fields (``candidate_run``).
        flags: Field name -> flag (``{"candidate_run": "--candidate-run"}``).

    Examples:
        >>> flag_names("give baseline_run or baseline_model", {"baseline_run": "--baseline-run",
        ...     "baseline_model": "--baseline-model"})
        'give --baseline-run or --baseline-model'
    """
    names = sorted((n for n in flags if "_" in n), key=len, reverse=True)
    if not names:
        return text
    pattern = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, names)) + r")(?![\w-])")
    return pattern.sub(lambda m: flags[m.group(1)], text)


def validation_message(exc: ValidationError, flags: Mapping[str, str] | None = None) -> str:
    """A pydantic error as one line of its messages, without pydantic's prefixes.

    Args:
        exc: The validation error.
        flags: Field name -> command-line flag; fields are then named by their flags, and an
            error about one field says which flag it is about.
    """
    flags = flags or {}
    parts = []
    for e in exc.errors():
        msg = flag_names(e["msg"].removeprefix("Value error, "), flags)
        field = str(e["loc"][0]) if e["loc"] else ""
        parts.append(f"{flags[field]}: {msg}" if field in flags else msg)
    return "; ".join(parts)


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
    from evalwatch.evaluators.base import evaluator_names

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
    import yaml

    from evalwatch.files import InputFileError, read_input_text

    try:
        loaded = yaml.safe_load(read_input_text(path)) or {}
    except InputFileError as exc:
        raise bad_input(f"cannot read options file: {exc}") from exc
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise bad_input(f"options file {path} is not valid YAML: {detail}") from exc
    if not isinstance(loaded, dict) or not all(isinstance(v, dict) for v in loaded.values()):
        raise bad_input(f"options file {path} must map evaluator names to option mappings")
    return {str(k): dict(v) for k, v in loaded.items()}


def print_queued_notifications(delivery_errors: Sequence[str | None]) -> None:
    """One line when notifications were not sent now: they stay queued (not a failure)."""
    queued = [e for e in delivery_errors if e]
    if queued:
        console.print(
            f"notifications of {len(queued)} alert(s) queued for retry at the next evaluation: "
            f"{queued[0]}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )


def print_alert_changes(alerts: Sequence[Mapping[str, Any]], error: str | None) -> None:
    """Print what a command's alert evaluation did; raise exit 3 when it could not be done.

    One line per alert change, then one line when notifications could not be sent now (they
    stay queued on the alert and the next evaluation retries them: not a failure of the
    command). Every command that stores a report and evaluates the rules prints this way.

    Args:
        alerts: :func:`evalwatch.alerting.evaluate_after_report`'s alert records.
        error: Its error: the rules could not be evaluated.

    Raises:
        typer.Exit: Exit 3 when ``error`` is set.
    """
    for a in alerts:
        console.print(
            f"alert {a['alert_id']} {a['action']} [{a['severity']}] {a['rule']} ({a['scope']})",
            highlight=False,
            markup=False,
        )
    print_queued_notifications([a.get("delivery_error") for a in alerts])
    if error is not None:
        raise unavailable(f"alert rules could not be evaluated: {error}")


def finish_gate_report(
    outcome: Any,
    json_out: bool,
    *,
    header: str | None = None,
    details: str | None = None,
    left: dict[str, str] | None = None,
) -> None:
    """Print a gate or canary outcome, then exit with the report's code (0 pass, 1 fail).

    When the alert rules could not be evaluated the exit is 3 whatever the verdict: a CI job
    must not read "the alerts were not raised" as a pass, nor an outage as a regression.

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
        from evalwatch.reporting.gate_report import gate_text

        typer.echo(gate_text(report))
        if details:
            typer.echo("\n" + details)
        if left:
            typer.echo("\nNot compared:")
            for metric, why in left.items():
                typer.echo(f"  {metric}: {why}")
        typer.echo(f"\nstored as regression report {outcome.report_id}")
        print_alert_changes(outcome.alerts, None)
    if outcome.alert_error:
        raise unavailable(
            f"the {report.verdict} verdict is stored (report {outcome.report_id}), but the alert "
            f"rules could not be evaluated: {' '.join(str(outcome.alert_error).split())}"
        )
    code = report.exit_code()
    if code != EXIT_OK:
        raise typer.Exit(code)


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
    debug: bool = False

    def settings(self) -> Settings:
        """Settings with the command-line overrides applied."""
        from evalwatch.settings import get_settings

        s = get_settings()
        if self.database_url:
            s = s.model_copy(update={"database_url": self.database_url})
        return s


STATE = CliState()


def open_store() -> Engine:
    """The store's engine, migrated to the latest schema on first use."""
    from evalwatch.storage.db import get_engine

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
EvaluatorsOpt = Annotated[
    str,
    typer.Option(
        "--evaluators", "-e", help="Comma-separated evaluator names (see the list on error)."
    ),
]
UnscoredByOpt = Annotated[
    str | None,
    typer.Option(
        "--unscored-by",
        metavar="NAME[@VER]",
        help="Only what EVALUATOR[@VERSION] has not scored yet.",
    ),
]


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
    from evalwatch.storage.sampling import SampleSpec

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


def confirm_or_refuse(question: str, yes: bool) -> None:
    """Go on only with ``--yes`` or a "y" typed at a terminal.

    Args:
        question: What is about to happen, as a yes/no question.
        yes: ``--yes`` was given.

    Raises:
        typer.Exit: Code 2 when stdin is not a terminal and ``--yes`` is absent (a script must
            say so explicitly), or when the answer is no.
    """
    if yes:
        return
    if not sys.stdin.isatty():
        raise bad_input(
            "refusing to delete without confirmation: stdin is not a terminal; pass --yes"
        )
    if not typer.confirm(question, default=False, err=True):
        raise bad_input("nothing deleted (not confirmed)")


def describe_failure(exc: BaseException, debug: bool = False) -> tuple[int, str]:
    """The exit code and one-line message for an exception no command handled.

    Bad configuration (store URL, settings) is bad input (2); a store, Prefect server or HTTP
    endpoint that cannot be reached is work not carried out (3), and so is anything else, an
    internal error: an infrastructure failure never exits 0 or 1.

    Args:
        exc: The exception that ended the command.
        debug: The traceback is shown too (no hint to ask for it).

    Returns:
        ``(exit code, message)``.

    Examples:
        >>> describe_failure(KeyError("x"))
        (3, "internal error: KeyError: 'x' (run with --debug for the traceback)")
    """
    # Each check asks only a module already imported: an exception of a module never imported
    # cannot have been raised, and importing the store or Prefect here would be slow.
    settings = sys.modules.get("evalwatch.settings")
    db = sys.modules.get("evalwatch.storage.db")
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if settings is not None and isinstance(exc, settings.SettingsError):
        return EXIT_BAD_INPUT, str(exc)
    if db is not None and isinstance(exc, db.StoreURLError):
        return EXIT_BAD_INPUT, str(exc)
    if db is not None and isinstance(exc, db.StoreError):
        return EXIT_UNAVAILABLE, str(exc)
    if sa_exc is not None and isinstance(exc, sa_exc.ArgumentError):  # a URL SQLAlchemy got
        return EXIT_BAD_INPUT, f"bad store URL: {exc}"
    if sa_exc is not None and isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
        detail = " ".join(str(exc.orig).split())
        return EXIT_UNAVAILABLE, f"the store failed: {detail}"
    chain = _exception_chain(exc)
    tasks = sys.modules.get("evalwatch.flows._tasks")
    if tasks is not None and isinstance(exc, tasks.AlertRulesError):
        return EXIT_UNAVAILABLE, f"the run's results are stored, but {exc}"
    if "prefect" in sys.modules:  # only then can Prefect have failed; importing it is slow
        from evalwatch.flows._runtime import prefect_failure

        for e in chain:
            if message := prefect_failure(e):
                return EXIT_UNAVAILABLE, message
    for e in chain:
        if message := _unreachable_endpoint(e):
            return EXIT_UNAVAILABLE, message
    text = " ".join(str(exc).split())
    hint = "" if debug else " (run with --debug for the traceback)"
    return EXIT_UNAVAILABLE, f"internal error: {type(exc).__name__}: {text}{hint}"


def _exception_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling, outermost first."""
    out: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in out and len(out) < 20:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def _unreachable_endpoint(exc: BaseException) -> str | None:
    """A message for an HTTP endpoint that could not be reached (httpx, openai), else None."""
    httpx = sys.modules.get("httpx")
    openai = sys.modules.get("openai")
    transport = (openai is not None and isinstance(exc, openai.APIConnectionError)) or (
        httpx is not None and isinstance(exc, httpx.TransportError)
    )
    if not transport:
        return None
    url = ""
    try:
        request = exc.request  # type: ignore[attr-defined]
        url = f" {request.url}" if request is not None else ""
    except (AttributeError, RuntimeError):  # httpx raises RuntimeError when no request is set
        pass
    detail = " ".join(str(exc).split()) or type(exc).__name__
    return f"cannot reach{url or ' an HTTP endpoint'}: {detail}"
