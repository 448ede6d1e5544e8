"""``evaluate_dataset``: score a model on a versioned test set as one evaluation run."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.runtime import flow_run as prefect_flow_run
from prefect.states import State

from evalwatch.flows._runtime import default_task_runner, flow_settings, store
from evalwatch.flows._tasks import evaluate_alert_rules, evaluate_in_batches, finish_and_report
from evalwatch.runs.dataset import DatasetParams, DatasetRunError, prepare_dataset_run
from evalwatch.runs.lifecycle import run_lifecycle
from evalwatch.runs.summary import RunPlan

__all__ = ["evaluate_dataset", "prepare_outputs"]


def _retry_unless_bad_input(task: Any, task_run: Any, state: State[Any]) -> bool:
    """Retry transient failures only: an unknown model or a bad predictions file stays bad."""
    try:
        state.result()
    except DatasetRunError:
        return False
    except Exception:
        return True
    return True


@task(
    name="prepare-dataset-run",
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=_retry_unless_bad_input,
)
def prepare_outputs(params: DatasetParams, database_url: str | None) -> tuple[RunPlan, list[int]]:
    """Resolve the test set, obtain the model's outputs (file or calls), create the run.

    Returns:
        The run's plan and the model-output ids it scores.
    """
    prepared = prepare_dataset_run(
        store(database_url),
        params,
        flow_settings(database_url),
        flow_run_id=prefect_flow_run.id,
    )
    return prepared.plan, prepared.output_ids


@flow(name="evaluate-dataset", task_runner=default_task_runner(), log_prints=True)
def evaluate_dataset(params: DatasetParams, database_url: str | None = None) -> dict[str, Any]:
    """Evaluate a model on a test set: outputs from a predictions file or from model calls.

    The same steps as ``evalwatch.runs.dataset.evaluate_dataset``, as tasks.

    Args:
        params: Test set (name, optional version), model or predictions file, evaluators.
        database_url: Store URL; default ``EVALWATCH_DATABASE_URL``.

    Returns:
        The run's stored summary (:class:`~evalwatch.runs.summary.RunSummary`: ``run_id``,
        dataset version, model...) plus the HTML ``report`` path and the ``alerts`` raised.
    """
    logger = get_run_logger()
    plan, output_ids = prepare_outputs(params, database_url)
    facts = plan.facts
    logger.info(
        "run %s: %s on %s@%s, %d outputs",
        plan.run_id,
        facts.model,
        facts.dataset,
        facts.dataset_version,
        len(output_ids),
    )
    with run_lifecycle(store(database_url), plan.run_id):
        stats = evaluate_in_batches(plan, output_ids, database_url)
        summary = finish_and_report(plan, stats, database_url)
    # Rules that watch runs (metric thresholds, run.cost) are judged as soon as the run is in.
    summary["alerts"] = evaluate_alert_rules(plan.run_id, database_url)
    return summary
