"""``evalwatch run``: start the Prefect flows from the command line (visible in Prefect).

Each flow gets the task runner ``EVALWATCH_TASK_RUNNER`` names when it is called. The summary
printed is the flow's :class:`~evalwatch.runs.summary.RunSummary`, the shape ``evalwatch
evaluate`` stores too.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.table import Table

from evalwatch.commands.common import (
    DEFAULT_EVALUATOR_LIST,
    EXIT_CHECK_FAILED,
    STATE,
    AppOpt,
    EvaluatorsOpt,
    MaxItemsOpt,
    ModelVersionOpt,
    RateOpt,
    SeedOpt,
    SinceOpt,
    StratifyOpt,
    UnscoredByOpt,
    UntilOpt,
    bad_input,
    console,
    evaluator_list,
    open_store,
    print_alert_changes,
    sample_spec,
    validation_message,
)
from evalwatch.commands.server import use_prefect_server, wait_for_prefect

run_app = typer.Typer(help="Run evalwatch's Prefect flows.", no_args_is_help=True)

BatchOpt = Annotated[int, typer.Option("--batch-size", help="Subjects per Prefect task.")]


def print_run_summary(summary: dict[str, Any]) -> None:
    """Print a flow's summary: the no-data line, run id, per-metric table, the report."""
    if summary.get("no_data"):  # an empty sample: the one line instead of empty tables
        console.print(f"[yellow]{summary['no_data']}[/yellow]", highlight=False)
        console.print(f"run {summary.get('run_id')}: nothing evaluated", highlight=False)
        return
    table = Table(title=f"run {summary.get('run_id')}")
    # The metric name folds on a narrow terminal; figures never do, so none is cut short.
    table.add_column("metric", overflow="fold")
    for col in ("n", "mean", "95% CI", "unscored"):
        table.add_column(col, justify="right", no_wrap=True)
    for m in summary.get("metrics", []):
        ci = "—" if m.get("ci_low") is None else f"{m['ci_low']:.3f}–{m['ci_high']:.3f}"
        mean = "—" if m.get("mean") is None else f"{m['mean']:.4f}"
        table.add_row(
            f"{m['evaluator']}.{m['metric']}", str(m["count"]), mean, ci, str(m.get("unscored", 0))
        )
    console.print(table)
    for name, why in (summary.get("unavailable") or {}).items():
        console.print(f"[yellow]evaluator {name} unavailable:[/yellow] {why}")
    if summary.get("report"):
        console.print(f"report: {summary['report']}")
    # The flow ends Failed when the rules could not be evaluated, so only changes reach here.
    print_alert_changes(summary.get("alerts") or [], None)


@run_app.command("traffic")
def run_traffic(
    since: SinceOpt = None,
    until: UntilOpt = None,
    app: AppOpt = None,
    model_version: ModelVersionOpt = None,
    rate: RateOpt = 1.0,
    max_items: MaxItemsOpt = None,
    stratify: StratifyOpt = False,
    seed: SeedOpt = 0,
    unscored_by: UnscoredByOpt = None,
    evaluators: EvaluatorsOpt = DEFAULT_EVALUATOR_LIST,
    batch_size: BatchOpt = 1024,
) -> None:
    """Run the evaluate-traffic flow on a sample of stored traffic."""
    use_prefect_server()  # first: before Prefect is imported, and a server starts meanwhile
    from evalwatch.flows._runtime import with_task_runner
    from evalwatch.flows.traffic import evaluate_traffic
    from evalwatch.runs.traffic import TrafficParams

    spec = sample_spec(
        since, until, app, model_version, rate, max_items, stratify, seed, unscored_by
    )
    params = TrafficParams(
        sample=spec, evaluators=evaluator_list(evaluators), batch_size=batch_size
    )
    settings = STATE.settings()
    flow = with_task_runner(evaluate_traffic, settings)
    wait_for_prefect()
    summary = flow(params=params, database_url=settings.database_url)
    print_run_summary(summary)


@run_app.command("dataset")
def run_dataset(
    name: Annotated[str, typer.Argument(help="Test-set name (see `evalwatch datasets list`).")],
    model: Annotated[
        str | None, typer.Option("--model", help="Call this model (EVALWATCH_TARGET__*).")
    ] = None,
    outputs: Annotated[
        str | None, typer.Option("--outputs", help="Predictions file instead of model calls.")
    ] = None,
    version: Annotated[
        str | None, typer.Option("--version", help="Test-set version (default newest).")
    ] = None,
    evaluators: EvaluatorsOpt = DEFAULT_EVALUATOR_LIST,
    batch_size: BatchOpt = 1024,
) -> None:
    """Run the evaluate-dataset flow: a model on a versioned test set."""
    use_prefect_server()  # first: before Prefect is imported, and a server starts meanwhile
    from evalwatch.runs.dataset import DatasetParams, DatasetRunError, check_dataset_run

    try:
        params = DatasetParams(
            dataset=name,
            version=version,
            model=model,
            outputs_file=outputs,
            evaluators=evaluator_list(evaluators),
            batch_size=batch_size,
        )
    except ValidationError as exc:
        raise bad_input(validation_message(exc)) from exc
    try:
        # Before the flow starts: bad input is told in one line, not retried and logged with a
        # traceback by Prefect (a temporary server started meanwhile is stopped at exit).
        check_dataset_run(open_store(), params, STATE.settings())
    except DatasetRunError as exc:
        raise bad_input(str(exc)) from exc
    from evalwatch.flows._runtime import with_task_runner
    from evalwatch.flows.dataset import evaluate_dataset

    settings = STATE.settings()
    try:
        flow = with_task_runner(evaluate_dataset, settings)
        wait_for_prefect()
        summary = flow(params=params, database_url=settings.database_url)
    except DatasetRunError as exc:
        raise bad_input(str(exc)) from exc
    console.print(
        f"{summary['model']} on {summary['dataset']}@{summary['dataset_version']}"
        + (
            f", {summary['generation_errors']} generation errors"
            if summary.get("generation_errors")
            else ""
        )
    )
    print_run_summary(summary)
    if summary.get("unavailable") and len(summary["unavailable"]) == len(params.evaluators):
        raise typer.Exit(EXIT_CHECK_FAILED)


def register(app: typer.Typer) -> None:
    """Add the ``run`` group."""
    app.add_typer(run_app, name="run")
