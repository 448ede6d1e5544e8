"""``drift_check``: compare the current window of traffic with a baseline, report, alert."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from evalwatch.flows._runtime import artifact_key, flow_settings, store
from evalwatch.flows._tasks import evaluate_alert_rules, publish_report
from evalwatch.reporting.drift_markdown import drift_outcome_markdown
from evalwatch.runs.drift import DriftParams, check_drift

__all__ = ["drift_check", "publish_drift_report", "run_drift_check"]


@task(name="run-drift-check")
def run_drift_check(params: DriftParams, database_url: str | None) -> dict[str, Any]:
    """Load both windows, run the tests and anomaly series, store the report, write the HTML.

    Not retried: a second attempt would store a second report.

    Returns:
        ``summary`` (JSON-safe, without every test), ``markdown`` and ``moved`` table rows.
    """
    settings = flow_settings(database_url)
    # The rules are evaluated by the flow's own task (visible, and failing the flow run).
    outcome = check_drift(store(database_url), params, settings, html=True, alerts=False)
    moved = [
        {
            "scope": h["scope"],
            "feature": h["feature"],
            "what moved": h["summary"],
            "adjusted p": h["p_adjusted"],
        }
        for h in outcome.headlines()
    ]
    return {
        "summary": outcome.to_dict(full=False),
        "markdown": drift_outcome_markdown(outcome),
        "moved": moved,
    }


@task(name="publish-drift-report")
def publish_drift_report(result: dict[str, Any], database_url: str | None = None) -> None:
    """Publish the markdown report, the table of what moved and the HTML link (stable keys)."""
    summary = result["summary"]
    create_markdown_artifact(
        markdown=result["markdown"],
        key=artifact_key("evalwatch", "drift", "report"),
        description=f"drift report {summary['report_key']}",
    )
    if result["moved"]:
        create_table_artifact(
            table=result["moved"],
            key=artifact_key("evalwatch", "drift", "moved"),
            description=f"what moved in drift report {summary['report_key']}",
        )
    if summary.get("html"):
        from pathlib import Path

        # A link where the reports are served; else where the file is (the content is the
        # "report" artifact above).
        publish_report(
            Path(summary["html"]),
            key=artifact_key("evalwatch", "drift", "html"),
            title=f"HTML drift report {summary['report_key']}",
            settings=flow_settings(database_url),
        )


@flow(name="drift-check", log_prints=True)
def drift_check(
    params: DriftParams | None = None, database_url: str | None = None
) -> dict[str, Any]:
    """Compare the current window of traffic with its baseline and alert on drift.

    Args:
        params: Windows (a relative ``window`` ending after the newest interaction for
            schedules), baseline, scopes and test settings.
        database_url: Store URL; default ``EVALWATCH_DATABASE_URL``.

    Returns:
        The report's summary: ``report_key``, ``drift_found``, ``moved``, anomalies, the HTML
        ``html`` path, the ``alerts`` the alert rules raised, and ``no_data`` (one line per
        window that held no interactions: then nothing was judged or stored).

    Raises:
        RuntimeError: The alert rules could not be evaluated (the report stays stored).
    """
    params = params or DriftParams()
    logger = get_run_logger()
    result = run_drift_check(params, database_url)
    summary: dict[str, Any] = result["summary"]
    publish_drift_report(result, database_url)
    if summary["no_data"]:
        # Nothing judged and nothing stored: said in the log and the report artifact.
        for line in summary["no_data"]:
            logger.warning("drift check: %s", line)
        summary["alerts"] = []
        return summary
    verdict = "drift found" if summary["drift_found"] else "no drift"
    logger.info(
        "drift report %s: %s (%d tests, %d moved)",
        summary["report_key"],
        verdict,
        summary["n_tests"],
        len(summary["moved"]),
    )
    for h in summary["moved"][:10]:
        logger.warning("moved [%s] %s", h["scope"], h["summary"])
    summary["alerts"] = evaluate_alert_rules(None, database_url)
    return summary
