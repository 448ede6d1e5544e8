"""``evaluate_traffic``: sample stored traffic, validate it, score it in batches, report."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.runtime import flow_run as prefect_flow_run

from evalwatch.flows._runtime import flow_settings, make_task_runner, store
from evalwatch.flows._tasks import (
    evaluate_alert_rules,
    evaluate_in_batches,
    fail_run,
    finish_and_report,
)
from evalwatch.runs.traffic import TrafficParams, prepare_traffic_run

__all__ = ["evaluate_traffic", "prepare"]


@task(name="prepare-traffic-run", retries=2, retry_delay_seconds=2)
def prepare(params: TrafficParams, database_url: str | None) -> dict[str, Any]:
    """Sample, validate the sample and create or resume the run."""
    settings = flow_settings(database_url)
    prepared = prepare_traffic_run(
        store(database_url), params, settings, flow_run_id=prefect_flow_run.id
    )
    return {
        "run_id": prepared.run_id,
        "ids": prepared.ids,
        "n_invalid": len(prepared.invalid),
        "invalid_examples": {str(k): v for k, v in list(prepared.invalid.items())[:10]},
        "no_data": prepared.no_data,
    }


@flow(name="evaluate-traffic", task_runner=make_task_runner(), log_prints=True)
def evaluate_traffic(
    params: TrafficParams | None = None, database_url: str | None = None
) -> dict[str, Any]:
    """Evaluate a sample of stored traffic, one task per batch, and report on it.

    Args:
        params: Sampling, evaluators and batch size (a relative ``window`` for schedules).
        database_url: Store URL; default ``EVALWATCH_DATABASE_URL``.

    Returns:
        The run's summary with ``run_id`` and the HTML ``report`` path.
    """
    params = (params or TrafficParams()).resolved()
    logger = get_run_logger()
    prepared = prepare(params, database_url)
    run_id, ids = prepared["run_id"], prepared["ids"]
    logger.info("run %s: %d interactions sampled for %s", run_id, len(ids), params.evaluators)
    if prepared["no_data"]:
        # Not a failure (an hour may be quiet), but never a silent green run: the line heads
        # the log, the stored summary and the markdown artifact.
        logger.warning("run %s: %s", run_id, prepared["no_data"])
    try:
        unavailable = evaluate_in_batches(
            "traffic",
            run_id,
            ids,
            params.batch_size,
            params.evaluators,
            params.evaluator_options,
            database_url,
        )
        for name, why in unavailable.items():
            logger.warning("evaluator %s unavailable: %s", name, why)
        summary = finish_and_report(
            run_id,
            database_url,
            "traffic",
            {
                "n_sampled": len(ids) + prepared["n_invalid"],
                "n_invalid": prepared["n_invalid"],
                "invalid_examples": prepared["invalid_examples"],
                "unavailable": unavailable,
            }
            | ({"no_data": prepared["no_data"]} if prepared["no_data"] else {}),
        )
    except BaseException as exc:
        fail_run(database_url, run_id, exc)
        raise
    summary["alerts"] = evaluate_alert_rules(run_id, database_url)
    return summary
