"""``evalwatch gate``: is the candidate worse than the baseline on a test set?

Exit codes: 0 pass, 1 regression (or inconclusive: a gate that could not show the candidate is
safe does not let it ship), 2 bad input (mismatched test-set or evaluator versions, unknown
runs, invalid policy...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import ValidationError

from evalwatch.commands.common import EXIT_OK, STATE, bad_input, err_console, open_store

__all__ = ["gate", "print_outcome_extras", "register"]


def _names(evaluators: str | None) -> list[str] | None:
    if evaluators is None:
        return None
    names = list(dict.fromkeys(n.strip() for n in evaluators.split(",") if n.strip()))
    if not names:
        raise bad_input("--evaluators names no evaluator")
    from evaluators.base import evaluator_names

    unknown = [n for n in names if n not in evaluator_names()]
    if unknown:
        raise bad_input(
            f"unknown evaluator(s) {', '.join(unknown)}; known: {', '.join(evaluator_names())}"
        )
    return names


def _options(path: Path | None) -> dict[str, dict[str, Any]]:
    if path is None:
        return {}
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise bad_input(f"cannot read options file {path}: {exc}") from exc
    if not isinstance(loaded, dict) or not all(isinstance(v, dict) for v in loaded.values()):
        raise bad_input(f"options file {path} must map evaluator names to option mappings")
    return {str(k): dict(v) for k, v in loaded.items()}


def print_outcome_extras(outcome: Any) -> None:
    """Print where the report is stored and what alerted (after the report itself)."""
    typer.echo(f"\nstored as regression report {outcome.report_id}")
    for e in outcome.alerts:
        typer.echo(f"alert {e['alert_id']} {e['action']} [{e['severity']}] {e['rule']}")
    if outcome.alert_error:
        err_console.print(
            f"[yellow]alert rules could not be evaluated:[/yellow] {outcome.alert_error}",
            highlight=False,
        )


def gate(
    dataset: Annotated[str, typer.Option("--dataset", help="Test-set name.", show_default=False)],
    baseline_run: Annotated[
        int | None, typer.Option("--baseline-run", help="Evaluation run id of the baseline.")
    ] = None,
    baseline_model: Annotated[
        str | None,
        typer.Option(
            "--baseline-model",
            help="Baseline model: its stored answers, else called (EVALWATCH_TARGET__*).",
        ),
    ] = None,
    candidate_run: Annotated[
        int | None, typer.Option("--candidate-run", help="Evaluation run id of the candidate.")
    ] = None,
    candidate_model: Annotated[
        str | None,
        typer.Option("--candidate-model", help="Candidate model: stored answers, else called."),
    ] = None,
    candidate_outputs: Annotated[
        Path | None,
        typer.Option("--candidate-outputs", help="Candidate predictions file (JSONL: id, output)."),
    ] = None,
    policy: Annotated[
        Path | None,
        typer.Option("--policy", help="Gate policy YAML (datasets/gate-policy.example.yaml)."),
    ] = None,
    repeats: Annotated[
        int | None,
        typer.Option(
            "--repeats",
            min=1,
            max=20,
            help="Judge each item K times and average (judge only; default: the policy's).",
        ),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the full report as JSON (for machines).")
    ] = False,
    evaluators: Annotated[
        str | None,
        typer.Option(
            "--evaluators",
            help="Comma-separated evaluators; default: the baseline run's, else "
            "embedding,heuristics.",
        ),
    ] = None,
    options_file: Annotated[
        Path | None,
        typer.Option("--options-file", help="YAML mapping evaluator name -> options."),
    ] = None,
    pairwise: Annotated[
        bool,
        typer.Option("--pairwise", help="Also judge candidate vs baseline answers pairwise."),
    ] = False,
    dataset_version: Annotated[
        str | None,
        typer.Option(
            "--dataset-version", help="Test-set version (default: the runs', else the newest)."
        ),
    ] = None,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show evaluation progress (stderr).")
    ] = True,
) -> None:
    """Gate a candidate against the baseline on a test set: exit 0 pass, 1 regression, 2 bad input.

    Both sides are compared item by item (paired bootstrap intervals, McNemar's exact test for
    pass/fail metrics, the sign test for pairwise judge verdicts), per metric and per slice
    tag, with Holm correction. Missing evaluation is run first.
    """
    from checks.policy import GateInputError
    from runs.gate import GateParams, run_gate_job, worst_items_text

    try:
        params = GateParams(
            dataset=dataset,
            dataset_version=dataset_version,
            baseline_run=baseline_run,
            baseline_model=baseline_model,
            candidate_run=candidate_run,
            candidate_model=candidate_model,
            candidate_outputs=str(candidate_outputs) if candidate_outputs else None,
            policy_file=str(policy) if policy else None,
            repeats=repeats,
            evaluators=_names(evaluators),
            evaluator_options=_options(options_file),
            pairwise=pairwise,
        )
    except ValidationError as exc:
        raise bad_input(
            "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        ) from exc
    engine = open_store()
    try:
        outcome = run_gate_job(
            engine, params, STATE.settings(), progress=progress, console=err_console
        )
    except GateInputError as exc:
        raise bad_input(str(exc)) from exc
    report = outcome.report
    if json_out:
        report.meta["alerts"] = outcome.alerts
        typer.echo(report.to_json())
    else:
        typer.echo(report.to_text())
        details = worst_items_text(report)
        if details:
            typer.echo("\n" + details)
        left = report.meta.get("not_gated") or {}
        if left:
            typer.echo("\nNot compared:")
            for metric, why in left.items():
                typer.echo(f"  {metric}: {why}")
        print_outcome_extras(outcome)
    code = report.exit_code()
    if code != EXIT_OK:
        raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add the ``gate`` command."""
    app.command("gate")(gate)
