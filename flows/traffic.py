"""``evaluate_traffic``: sample stored traffic, validate it, score it in batches, report.

The steps are :mod:`evalwatch.runs.traffic`'s and :mod:`evalwatch.runs.common`'s, the ones
``evalwatch evaluate`` runs in one process; here each is a task and scoring is one task per
batch. The stored summary is the same :class:`~evalwatch.runs.summary.RunSummary` either way.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.runtime import flow_run as prefect_flow_run

from evalwatch.flows._runtime import default_task_runner, flow_settings, store
from evalwatch.flows._tasks import evaluate_alert_rules, evaluate_in_batches, finish_and_report
from evalwatch.runs.lifecycle import run_lifecycle
from evalwatch.runs.summary import RunPlan
from evalwatch.runs.traffic import TrafficParams, prepare_traffic_run

__all__ = ["evaluate_traffic", "prepare"]


@task(name="prepare-traffic-run", retries=2, retry_delay_seconds=2)
def prepare(params: TrafficParams, database_url: str | None) -> tuple[RunPlan, list[int]]:
    """Sample, validate the sample and create or resume the run: its plan and subject ids."""
    settings = flow_settings(database_url)
    prepared = prepare_traffic_run(
        store(database_url), params, settings, flow_run_id=prefect_flow_run.id
    )
    return prepared.plan, prepared.ids


@flow(name="evaluate-traffic", task_runner=default_task_runner(), log_prints=True)
def evaluate_traffic(
    params: TrafficParams | None = None, database_url: str | None = None
) -> dict[str, Any]:
    """Evaluate a sample of stored traffic, one task per batch, and report on it.

    Args:
        params: Sampling, evaluators and batch size (a relative ``window`` for schedules).
        database_url: Store URL; default ``EVALWATCH_DATABASE_URL``.

    Returns:
        The run's stored summary (:class:`~evalwatch.runs.summary.RunSummary`, with
        ``run_id``) plus the HTML ``report`` path and the ``alerts`` raised.
    """
    params = (params or TrafficParams()).resolved()
    logger = get_run_logger()
    plan, ids = prepare(params, database_url)
    run_id = plan.run_id
    logger.info("run %s: %d interactions sampled for %s", run_id, len(ids), params.evaluators)
    if plan.facts.no_data:
        # Not a failure (an hour may be quiet), but never a silent green run: the line heads
        # the log, the stored summary and the markdown artifact.
        logger.warning("run %s: %s", run_id, plan.facts.no_data)
    with run_lifecycle(store(database_url), run_id):
        stats = evaluate_in_batches(plan, ids, database_url)
        for name, why in stats.unavailable.items():
            logger.warning("evaluator %s unavailable: %s", name, why)
        summary = finish_and_report(plan, stats, database_url)
    summary["alerts"] = evaluate_alert_rules(run_id, database_url)
    return summary
