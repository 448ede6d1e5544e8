"""``operations_overview``: the daily overview as a markdown artifact and an HTML page."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from evalwatch.flows._runtime import artifact_key, flow_settings, store
from evalwatch.flows._tasks import publish_report
from evalwatch.reporting.location import report_folder

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from evalwatch.settings import Settings

__all__ = ["operations_overview"]


@task(name="build-overview")
def build_overview(
    days: float,
    until: datetime | None,
    database_url: str | None,
    targets_file: str | None = None,
) -> dict[str, Any]:
    """Load the window; publish the overview's and the executive view's artifacts and pages."""
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
    executive = _executive(engine, start, end, targets_file, settings, days)
    return {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "report": str(path.resolve()),
        "interactions": len(data.traffic),
        "open_alerts": len(data.open_alerts),
        **executive,
    }


def _executive(
    engine: Engine,
    start: datetime,
    end: datetime,
    targets_file: str | None,
    settings: Settings,
    days: float,
) -> dict[str, Any]:
    """Publish the executive view of the same window: a markdown artifact and an HTML page."""
    from evalwatch.checks.health import load_targets
    from evalwatch.checks.rules import load_rules
    from evalwatch.reporting.executive import (
        ALL,
        executive_html,
        executive_markdown,
        load_executive_data,
        scope_health,
    )

    data = load_executive_data(
        engine, start, end, load_targets(targets_file), load_rules(settings.rules_file)
    )
    markdown = executive_markdown(data)
    create_markdown_artifact(
        markdown=markdown,
        key=artifact_key("evalwatch", "executive"),
        description=f"evalwatch executive view, last {days:g} days",
    )
    path = report_folder(settings) / f"executive-{datetime.now(UTC):%Y%m%d}.html"
    path.write_text(executive_html(data), encoding="utf-8")
    path.with_suffix(".md").write_text(markdown, encoding="utf-8")
    publish_report(
        path,
        key=artifact_key("evalwatch", "executive", "report"),
        title="executive view",
        settings=settings,
        markdown=markdown,
    )
    overall = next((s for s in data.scopes if s.key == (ALL, ALL)), None)
    return {
        "executive_report": str(path.resolve()),
        "health": None if overall is None else scope_health(data, overall).score,
    }


@flow(name="operations-overview", log_prints=True)
def operations_overview(
    days: float = 7.0,
    until: datetime | None = None,
    database_url: str | None = None,
    targets_file: str | None = None,
) -> dict[str, Any]:
    """The operations overview and the executive view of the last ``days``.

    The window ends at ``until`` or the newest traffic.

    Args:
        days: Window length in days.
        until: Window end; default the newest stored interaction.
        database_url: Store URL; default ``EVALWATCH_DATABASE_URL``.
        targets_file: Health targets YAML of the executive view; default the built-in targets.
    """
    return build_overview(days, until, database_url, targets_file)
