"""Reports a person reads: self-contained HTML pages and Prefect markdown artifacts."""

from evalwatch.reporting.run_report import (
    metric_rows,
    profile_rows,
    render_run_html,
    run_markdown,
    worst_items,
    write_run_html,
)

__all__ = [
    "metric_rows",
    "profile_rows",
    "render_run_html",
    "run_markdown",
    "worst_items",
    "write_run_html",
]
