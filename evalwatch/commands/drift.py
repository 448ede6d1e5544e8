"""``evalwatch drift``: compare a current window of traffic with a baseline; exit 1 on drift."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import ValidationError
from rich.markup import escape

from evalwatch.commands.common import (
    EXIT_BAD_INPUT,
    EXIT_CHECK_FAILED,
    EXIT_OK,
    STATE,
    AppOpt,
    ModelVersionOpt,
    bad_input,
    console,
    open_store,
    parse_time,
    print_alert_changes,
)
from evalwatch.core import parse_duration

if TYPE_CHECKING:
    from evalwatch.runs.drift import DriftOutcome

__all__ = ["drift", "print_outcome", "register"]

_SCOPES = ("overall", "app", "model_version")


def _time(option: str, text: str | None) -> object:
    if text is None:
        return None
    try:
        return parse_time(text)
    except ValueError as exc:
        raise bad_input(f"{option}: {exc}") from exc


def print_outcome(outcome: DriftOutcome) -> None:
    """Print a check's outcome, leading with what moved and by how much.

    Args:
        outcome: The check's outcome.
    """
    overall = outcome.scopes[0]
    if outcome.drift_found:
        console.print(
            f"[bold red]drift[/bold red] in {len(outcome.moved())} of {outcome.n_tests} tests "
            f"(significance level {outcome.params.alpha:g} across the whole report)"
        )
    else:
        console.print(
            f"[bold green]no drift[/bold green] in {outcome.n_tests} tests "
            f"(significance level {outcome.params.alpha:g} across the whole report)"
        )
    console.print(
        f"current  {outcome.current.describe()} ({overall.n_current:,} interactions)",
        highlight=False,
    )
    console.print(
        f"baseline {escape(outcome.baseline.describe())} ({overall.n_baseline:,} interactions)",
        highlight=False,
    )
    headlines = outcome.headlines()
    if headlines:
        console.print("[bold]what moved[/bold] (largest effect first):")
        first_scope = outcome.scopes[0].label
        others: dict[str, list[str]] = {}
        for h in headlines:
            if h["scope"] == first_scope:
                console.print(
                    f"  {escape(h['summary'])} [dim](adjusted p ≤ {h['p_adjusted']:.1e})[/dim]",
                    highlight=False,
                )
            else:
                others.setdefault(h["scope"], []).append(h["label"])
        for scope, features in others.items():
            console.print(
                f"  [bold]{escape(scope)}[/bold]: {escape(', '.join(features))}", highlight=False
            )
    found = [a for a in outcome.anomalies if a.verdict == "anomaly"]
    if found:
        console.print("[bold]anomalies in the current window:[/bold]")
        for a in found:
            console.print(f"  {escape(a.scope.label)}: {escape(a.summary())}", highlight=False)
    if outcome.fairness is not None:
        from evalwatch.reporting.fairness import fairness_summary_lines

        gaps = fairness_summary_lines(outcome.fairness)
        tested = sum(f.verdict != "insufficient_data" for f in outcome.fairness.findings)
        console.print(
            f"[bold]fairness[/bold]: {len(gaps)} gap(s) in {tested} segment tests"
            + ("" if outcome.fairness.segments else " (no segment field has two values)"),
            highlight=False,
        )
        for line in gaps:
            console.print(f"  {escape(line)}", highlight=False)
    insufficient = sum(
        1 for s in outcome.scopes for r in s.report.results if r.verdict == "insufficient_data"
    )
    if insufficient:
        console.print(f"[dim]{insufficient} tests had insufficient data[/dim]")
    if outcome.n_rows_stored:
        console.print(
            f"stored {outcome.n_rows_stored} rows in drift_reports, report key "
            f"{outcome.report_key}",
            highlight=False,
        )
    if outcome.html_path is not None:
        console.print(f"report: {outcome.html_path}", highlight=False)


def drift(
    current_since: Annotated[
        str | None,
        typer.Option("--current-since", help="Current window start: ISO time, or 24h back."),
    ] = None,
    current_until: Annotated[
        str | None,
        typer.Option(
            "--current-until",
            help="Current window end (exclusive); default: the hour after the newest interaction.",
        ),
    ] = None,
    window: Annotated[
        str | None,
        typer.Option("--window", help="Current window length ending at its end (default 24h)."),
    ] = None,
    baseline_days: Annotated[
        float | None,
        typer.Option("--baseline-days", help="Baseline: the N days before (default 7)."),
    ] = None,
    baseline_since: Annotated[
        str | None, typer.Option("--baseline-since", help="Pinned baseline start.")
    ] = None,
    baseline_until: Annotated[
        str | None, typer.Option("--baseline-until", help="Pinned baseline end (exclusive).")
    ] = None,
    baseline_run: Annotated[
        int | None,
        typer.Option("--baseline-run", help="Baseline: the interactions this run evaluated."),
    ] = None,
    app: AppOpt = None,
    model_version: ModelVersionOpt = None,
    scopes: Annotated[
        str,
        typer.Option("--scopes", help="Comma-separated scopes: overall, app, model_version."),
    ] = ",".join(_SCOPES),
    alpha: Annotated[
        float, typer.Option("--alpha", help="Significance level of the whole report.")
    ] = 0.05,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
    html: Annotated[
        Path | None, typer.Option("--html", help="Write the HTML report to this file.")
    ] = None,
) -> None:
    """Compare the current window with a baseline; exit 1 when drift is found.

    Exit 2 when a window holds no interactions (one line says which, and the newest time the
    store holds), 3 when the report was stored but the alert rules could not be evaluated.

    Every test of every scope shares one significance level (Benjamini-Hochberg across the
    report) and needs its effect-size floor. Anomalies over time are reported (and stored for
    alert rules) but do not change the exit code.
    """
    from evalwatch.runs.drift import DriftInputError, DriftParams, check_drift

    if window is not None and current_since is not None:
        raise bad_input("give --current-since or --window, not both")
    if (baseline_since is None) != (baseline_until is None):
        raise bad_input("give both --baseline-since and --baseline-until")
    chosen = [
        name
        for name, given in (
            ("--baseline-days", baseline_days is not None),
            ("--baseline-since/--baseline-until", baseline_since is not None),
            ("--baseline-run", baseline_run is not None),
        )
        if given
    ]
    if len(chosen) > 1:
        raise bad_input(f"give one baseline, not {' and '.join(chosen)}")
    scope_list = [s.strip() for s in scopes.split(",") if s.strip()]
    unknown = [s for s in scope_list if s not in _SCOPES]
    if unknown or not scope_list:
        raise bad_input(f"--scopes: unknown {', '.join(unknown) or 'empty'}; use {_SCOPES}")
    if window is not None:
        try:
            parse_duration(window)
        except ValueError as exc:
            raise bad_input(f"--window: {exc}") from exc
    try:
        params = DriftParams(
            current_start=_time("--current-since", current_since),
            current_end=_time("--current-until", current_until),
            window=window or "24h",
            baseline_days=7.0 if baseline_days is None else baseline_days,
            baseline_start=_time("--baseline-since", baseline_since),
            baseline_end=_time("--baseline-until", baseline_until),
            baseline_run=baseline_run,
            apps=app or [],
            model_versions=model_version or [],
            scopes=scope_list,
            alpha=alpha,
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'options'}: {e['msg']}" for e in exc.errors()
        )
        raise bad_input(f"bad drift options: {problems}") from exc
    try:
        outcome = check_drift(open_store(), params, STATE.settings(), html=html)
    except DriftInputError as exc:
        raise bad_input(str(exc)) from exc
    if as_json:
        typer.echo(json.dumps(outcome.to_dict(), indent=2))
    elif outcome.no_data:
        for line in outcome.no_data:
            console.print(line, highlight=False, markup=False, soft_wrap=True)
        console.print("nothing judged, no report stored", highlight=False)
    else:
        print_outcome(outcome)
    if outcome.no_data:
        # The window given selects nothing: not a pass (0) and not a finding (1).
        raise typer.Exit(EXIT_BAD_INPUT)
    # Alert changes are printed with the text outcome (JSON holds them); an evaluation that
    # could not be done exits 3 either way. Queued notifications keep the check's exit code.
    print_alert_changes([] if as_json else outcome.alerts, outcome.alert_error)
    raise typer.Exit(EXIT_CHECK_FAILED if outcome.drift_found else EXIT_OK)


def register(app: typer.Typer) -> None:
    """Add the ``drift`` command."""
    app.command("drift")(drift)
