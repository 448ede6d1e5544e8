"""``evalwatch gate``: is the candidate worse than the baseline on a test set?

Exit codes: 0 pass, 1 regression (or inconclusive: a gate that could not show the candidate is
safe does not let it ship), 2 bad input (mismatched test-set or evaluator versions, unknown
runs, invalid policy...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import BaseModel, ValidationError

from evalwatch.commands.common import (
    DEFAULT_EVALUATOR_LIST,
    STATE,
    bad_input,
    err_console,
    evaluator_list,
    finish_gate_report,
    open_store,
    read_options_file,
    validation_message,
)

__all__ = ["gate", "register"]

# GateParams fields whose flag is not the field's name in kebab case.
_RENAMED = {"policy_file": "--policy", "evaluator_options": "--options-file"}


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
            help=f"Comma-separated evaluators; default: the baseline run's, else "
            f"{DEFAULT_EVALUATOR_LIST}.",
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
    from evalwatch.checks.policy import GateInputError
    from evalwatch.reporting.gate_report import worst_items_text
    from evalwatch.runs.gate import GateParams, run_gate_job

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
            evaluators=evaluator_list(evaluators),
            evaluator_options=read_options_file(options_file),
            pairwise=pairwise,
        )
    except ValidationError as exc:
        raise bad_input(validation_message(exc, _flags(GateParams))) from exc
    engine = open_store()
    try:
        outcome = run_gate_job(
            engine, params, STATE.settings(), progress=progress, console=err_console
        )
    except GateInputError as exc:
        # Worded for people already ("dataset_version" there is the runs' property, not a flag).
        raise bad_input(str(exc)) from exc
    finish_gate_report(
        outcome,
        json_out,
        details=worst_items_text(outcome.report),
        left=outcome.report.meta.get("not_gated"),
    )


def _flags(params: type[BaseModel]) -> dict[str, str]:
    """Each parameter field's flag, for messages worded in field names."""
    return {f: _RENAMED.get(f, "--" + f.replace("_", "-")) for f in params.model_fields}


def register(app: typer.Typer) -> None:
    """Add the ``gate`` command."""
    app.command("gate")(gate)
