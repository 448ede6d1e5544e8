"""Tasks every evaluation flow shares: scoring a batch, and finishing with artifacts."""

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

from evalwatch.evaluators.runner import run_evaluation
from evalwatch.flows._runtime import artifact_key, flow_settings, store
from evalwatch.reporting.location import report_folder, report_url
from evalwatch.reporting.run_report import metric_rows, run_markdown, write_run_html
from evalwatch.runs.common import build_evaluators, merge_profiles, run_summary_from_store
from evalwatch.runs.digest import digest_run
from evalwatch.settings import Settings
from evalwatch.storage.models import RunStatus
from evalwatch.storage.repo import finish_run

__all__ = [
    "AlertRulesError",
    "evaluate_alert_rules",
    "evaluate_batch",
    "evaluate_in_batches",
    "fail_run",
    "finish_and_report",
    "publish_report",
]


@task(name="evaluate-batch", retries=2, retry_delay_seconds=5)
def evaluate_batch(
    run_id: int,
    ids: list[int],
    evaluators: list[str],
    evaluator_options: dict[str, dict[str, Any]],
    database_url: str | None,
    subject_type: str = "interaction",
) -> dict[str, Any]:
    """Score one batch with every evaluator; already-scored subjects are skipped.

    Retrying (or re-running the flow after a crash) therefore never duplicates a score.
    """
    settings = flow_settings(database_url)
    engine = store(database_url)
    built = build_evaluators(evaluators, settings, evaluator_options, engine)
    result = run_evaluation(
        engine,
        built,
        ids,
        subject_type,
        run_id=run_id,
        chunk_size=max(1, len(ids)),
        progress=False,
        skip_scored=True,
        finish=False,
        # The flow logs each unavailable evaluator once, not once per batch.
        report_unavailable=False,
    )
    return {
        "n": len(ids),
        "scores_written": result.scores_written,
        "unavailable": result.unavailable,
        "failed_batches": result.failed_batches,
    }


@task(name="finish-and-report")
def finish_and_report(
    run_id: int, database_url: str | None, kind: str, extra: dict[str, Any]
) -> dict[str, Any]:
    """Fold profiles, store the summary, publish the markdown, table and report artifacts."""
    settings = flow_settings(database_url)
    engine = store(database_url)
    merge_profiles(engine, run_id)
    # One streaming pass over the run's scores serves the summary, report and artifacts, in
    # memory that does not grow with the run.
    digest = digest_run(engine, run_id)
    summary = run_summary_from_store(engine, run_id, digest) | extra
    finish_run(engine, run_id, RunStatus.completed, summary=summary)
    report_path = report_folder(settings) / f"run-{run_id}.html"
    report = write_run_html(engine, run_id, report_path, digest)
    markdown = run_markdown(engine, run_id, report_path=str(report), digest=digest)
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
    return summary | {"run_id": run_id, "report": str(report)}


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


def evaluate_in_batches(
    kind: str,
    run_id: int,
    ids: list[int],
    batch_size: int,
    evaluators: list[str],
    evaluator_options: dict[str, dict[str, Any]],
    database_url: str | None,
    subject_type: str = "interaction",
) -> dict[str, str]:
    """Submit one task per batch, update the progress artifact, return unavailable evaluators."""
    batches = [ids[i : i + batch_size] for i in range(0, len(ids), batch_size)]
    progress_id: UUID = create_progress_artifact(  # type: ignore[assignment]
        progress=0.0,
        key=artifact_key("evalwatch", kind, "progress"),
        description=f"run {run_id}: batches scored",
    )
    futures = [
        evaluate_batch.submit(run_id, b, evaluators, evaluator_options, database_url, subject_type)
        for b in batches
    ]
    unavailable: dict[str, str] = {}
    for done, fut in enumerate(as_completed(futures), start=1):
        unavailable.update(fut.result()["unavailable"])
        update_progress_artifact(progress_id, progress=100.0 * done / len(batches))
    if not batches:
        update_progress_artifact(progress_id, progress=100.0)
    return unavailable


def fail_run(database_url: str | None, run_id: int, exc: BaseException) -> None:
    """Mark a run failed with the exception that stopped it."""
    finish_run(store(database_url), run_id, RunStatus.failed, error=f"{type(exc).__name__}: {exc}")


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
    alerts, error = evaluate_after_report(store(database_url), run_id)
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
