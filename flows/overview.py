"""``operations_overview``: the daily overview as a markdown artifact and an HTML page."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from evalwatch.flows._runtime import artifact_key, flow_settings, store
from evalwatch.flows._tasks import publish_report
from evalwatch.reporting.location import report_folder

__all__ = ["operations_overview"]


@task(name="build-overview")
def build_overview(days: float, until: datetime | None, database_url: str | None) -> dict[str, Any]:
    """Load the window, publish the markdown artifact and write the HTML page."""
    from evalwatch.reporting.overview import overview_html, overview_markdown
    from evalwatch.storage.overview import load_overview, overview_window

    settings = flow_settings(database_url)
    engine = store(database_url)
    start, end = overview_window(engine, days, until)
    data = load_overview(engine, start, end)
    markdown = overview_markdown(data)
    create_markdown_artifact(
        markdown=markdown,
        key=artifact_key("evalwatch", "overview"),
        description=f"evalwatch overview, last {days:g} days",
    )
    path = report_folder(settings) / f"overview-{datetime.now(UTC):%Y%m%d}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(overview_html(data), encoding="utf-8")
    publish_report(
        path,
        key=artifact_key("evalwatch", "overview", "report"),
        title="operations overview",
        settings=settings,
        markdown=markdown,
    )
    return {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "report": str(path.resolve()),
        "interactions": len(data.traffic),
        "open_alerts": len(data.open_alerts),
    }


@flow(name="operations-overview", log_prints=True)
def operations_overview(
    days: float = 7.0, until: datetime | None = None, database_url: str | None = None
) -> dict[str, Any]:
    """The operations overview of the last ``days`` (ending at ``until`` or the newest traffic).

    Args:
        days: Window length in days.
        until: Window end; default the newest stored interaction.
        database_url: Store URL; default ``EVALWATCH_DATABASE_URL``.
    """
    return build_overview(days, until, database_url)
