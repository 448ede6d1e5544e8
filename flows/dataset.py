"""``evaluate_dataset``: score a model on a versioned test set as one evaluation run."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.runtime import flow_run as prefect_flow_run
from prefect.states import State

from evalwatch.flows._runtime import flow_settings, make_task_runner, store
from evalwatch.flows._tasks import (
    evaluate_alert_rules,
    evaluate_in_batches,
    fail_run,
    finish_and_report,
)
from evalwatch.runs.dataset import DatasetParams, DatasetRunError, prepare_dataset_run

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
def prepare_outputs(params: DatasetParams, database_url: str | None) -> dict[str, Any]:
    """Resolve the test set, obtain the model's outputs (file or calls), create the run."""
    prepared = prepare_dataset_run(
        store(database_url),
        params,
        flow_settings(database_url),
        flow_run_id=prefect_flow_run.id,
    )
    return {
        "run_id": prepared.run_id,
        "output_ids": prepared.output_ids,
        "model": prepared.model,
        "dataset": prepared.dataset.name,
        "dataset_version": prepared.dataset.version,
        "generation_errors": prepared.generation_errors,
        "quarantined_predictions": prepared.quarantined,
        "generation_cost_usd": prepared.generation_cost_usd,
    }


@flow(name="evaluate-dataset", task_runner=make_task_runner(), log_prints=True)
def evaluate_dataset(params: DatasetParams, database_url: str | None = None) -> dict[str, Any]:
    """Evaluate a model on a test set: outputs from a predictions file or from model calls.

    Args:
        params: Test set (name, optional version), model or predictions file, evaluators.
        database_url: Store URL; default ``EVALWATCH_DATABASE_URL``.

    Returns:
        The run's summary with ``run_id``, dataset version, model and the HTML ``report``.
    """
    logger = get_run_logger()
    prepared = prepare_outputs(params, database_url)
    run_id = prepared["run_id"]
    logger.info(
        "run %s: %s on %s@%s, %d outputs",
        run_id,
        prepared["model"],
        prepared["dataset"],
        prepared["dataset_version"],
        len(prepared["output_ids"]),
    )
    try:
        unavailable = evaluate_in_batches(
            "dataset",
            run_id,
            prepared["output_ids"],
            params.batch_size,
            params.evaluators,
            params.evaluator_options,
            database_url,
            subject_type="output",
        )
        summary = finish_and_report(
            run_id,
            database_url,
            "dataset",
            {
                k: prepared[k]
                for k in (
                    "model",
                    "dataset",
                    "dataset_version",
                    "generation_errors",
                    "quarantined_predictions",
                )
            }
            | (
                {"generation_cost_usd": prepared["generation_cost_usd"]}
                if prepared["generation_cost_usd"] is not None
                else {}
            )
            | {"unavailable": unavailable},
        )
    except BaseException as exc:
        fail_run(database_url, run_id, exc)
        raise
    # Rules that watch runs (metric thresholds, run.cost) are judged as soon as the run is in.
    summary["alerts"] = evaluate_alert_rules(run_id, database_url)
    return summary
