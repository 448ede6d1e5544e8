"""Tasks every evaluation flow shares: the shared steps of :mod:`evalwatch.runs.common` as tasks.

Scoring a batch and finishing the run are the same functions the CLI calls in one process;
the tasks only add the store from ``database_url``, batching and the Prefect artifacts.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.futures import as_completed

from evalwatch.flows._runtime import artifact_key, flow_settings, store
from evalwatch.reporting.location import report_folder, report_url
from evalwatch.reporting.run_report import metric_rows, run_markdown, write_run_html
from evalwatch.runs.common import build_evaluators, finish_evaluation, score_batch
from evalwatch.runs.fairness import run_fairness_report
from evalwatch.runs.lifecycle import run_lifecycle
from evalwatch.runs.summary import BatchStats, RunPlan
from evalwatch.settings import Settings

__all__ = [
    "AlertRulesError",
    "evaluate_alert_rules",
    "evaluate_batch",
    "evaluate_in_batches",
    "finish_and_report",
    "publish_report",
]


@task(name="evaluate-batch", retries=2, retry_delay_seconds=5)
def evaluate_batch(plan: RunPlan, ids: list[int], database_url: str | None) -> BatchStats:
    """Score one batch of the run (:func:`evalwatch.runs.common.score_batch`).

    Already-scored subjects are reused, so retrying (or re-running the flow after a crash)
    never duplicates a score.
    """
    settings = flow_settings(database_url)
    engine = store(database_url)
    built = build_evaluators(plan.evaluators, settings, plan.evaluator_options, engine)
    return score_batch(
        engine,
        plan,
        built,
        ids,
        chunk_size=max(1, len(ids)),
        # The flow logs each unavailable evaluator once, not once per batch.
        report_unavailable=False,
    )


@task(name="finish-and-report")
def finish_and_report(plan: RunPlan, stats: BatchStats, database_url: str | None) -> dict[str, Any]:
    """Finish the run (:func:`evalwatch.runs.common.finish_evaluation`), then publish its report.

    Publishes the markdown, table and report artifacts. Returns the stored
    :class:`~evalwatch.runs.summary.RunSummary` with the HTML ``report`` path.
    """
    settings = flow_settings(database_url)
    engine = store(database_url)
    kind, run_id = plan.kind, plan.run_id
    with run_lifecycle(engine, run_id) as life:
        # One streaming pass over the run's scores serves the summary, report and artifacts,
        # in memory that does not grow with the run.
        finished = finish_evaluation(engine, life, plan, stats)
        digest = finished.digest
        report_path = report_folder(settings) / f"run-{run_id}.html"
        # Traffic runs only: a test-set run scored no interaction to segment.
        fairness = (
            run_fairness_report(engine, run_id, settings.fairness) if kind == "traffic" else None
        )
        report = write_run_html(engine, run_id, report_path, digest, fairness)
        markdown = run_markdown(
            engine, run_id, report_path=str(report), digest=digest, fairness=fairness
        )
        create_markdown_artifact(
            markdown=markdown,
            key=artifact_key("evalwatch", kind, "summary"),
            description=f"evalwatch {kind} run {run_id}",
        )
        rows = metric_rows(digest.metrics())
        if rows:
            create_table_artifact(
                table=rows,
                key=artifact_key("evalwatch", kind, "metrics"),
                description=f"per-metric summary of run {run_id}",
            )
        publish_report(
            report,
            key=artifact_key("evalwatch", kind, "report"),
            title=f"HTML report of run {run_id}",
            settings=settings,
            markdown=markdown,
        )
    return finished.summary.stored() | {"report": str(report)}


def publish_report(
    path: Path, *, key: str, title: str, settings: Settings, markdown: str | None = None
) -> None:
    """Publish a written HTML report as a Prefect artifact a person can open from the UI.

    Where ``EVALWATCH_REPORT_BASE_URL`` serves the report, a link artifact to its http(s)
    address. Otherwise a markdown artifact: the report's content (``markdown``) under a line
    saying where the file is, because browsers do not open ``file://`` links from the UI.

    Args:
        path: The report file.
        key: Artifact key.
        title: Link text, and the heading of the markdown artifact.
        settings: Settings (the base URL and where reports go).
        markdown: The report's essential content as markdown, when there is one.
    """
    url = report_url(path, settings)
    if url is not None:
        create_link_artifact(link=url, link_text=title, key=key, description=title)
        return
    where = (
        f"## {title}\n\nWritten to `{path}` on `{socket.gethostname()}`. Serve the reports "
        "folder and set `EVALWATCH_REPORT_BASE_URL` to get a link here (browsers do not open "
        "`file://` links from the Prefect UI).\n"
    )
    create_markdown_artifact(
        markdown=where + ("\n" + markdown if markdown else ""), key=key, description=title
    )


def evaluate_in_batches(plan: RunPlan, ids: list[int], database_url: str | None) -> BatchStats:
    """Submit one task per batch, update the progress artifact, return the combined figures."""
    size = plan.batch_size
    batches = [ids[i : i + size] for i in range(0, len(ids), size)]
    progress_id: UUID = create_progress_artifact(  # type: ignore[assignment]
        progress=0.0,
        key=artifact_key("evalwatch", plan.kind, "progress"),
        description=f"run {plan.run_id}: batches scored",
    )
    futures = [evaluate_batch.submit(plan, b, database_url) for b in batches]
    parts: list[BatchStats] = []
    for done, fut in enumerate(as_completed(futures), start=1):
        parts.append(fut.result())
        update_progress_artifact(progress_id, progress=100.0 * done / len(batches))
    if not batches:
        update_progress_artifact(progress_id, progress=100.0)
    return BatchStats.combine(parts)


class AlertRulesError(RuntimeError):
    """The alert rules could not be evaluated after a run; its results stand (exit code 3)."""


@task(name="evaluate-alert-rules", retries=1, retry_delay_seconds=5)
def evaluate_alert_rules(run_id: int | None, database_url: str | None) -> list[dict[str, Any]]:
    """Evaluate the alert rules in force after a run or a stored report.

    The run's results are stored before this task starts and stand whatever happens here,
    but an evaluation that fails must be visible: the task raises with the one-line reason,
    so the flow run ends Failed rather than Completed.

    Raises:
        AlertRulesError: The rules could not be evaluated (the reason holds no URL or token).
    """
    from evalwatch.alerting import evaluate_after_report

    logger = get_run_logger()
    alerts, error = evaluate_after_report(
        store(database_url), run_id, settings=flow_settings(database_url)
    )
    if error is not None:
        logger.error("alert rules could not be evaluated: %s", error)
        raise AlertRulesError(f"alert rules could not be evaluated: {error}")
    for a in alerts:
        logger.warning(
            "alert %s %s [%s] %s: value %s vs threshold %s",
            a["alert_id"],
            a["action"],
            a["severity"],
            a["rule"],
            a["value"],
            a["threshold"],
        )
    return alerts
