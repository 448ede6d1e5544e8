"""Reports a person reads: self-contained HTML pages and Prefect markdown artifacts.

The public names are re-exported lazily: ``import evalwatch.reporting.page`` (or any one page
module) does not pay for matplotlib, scipy and the evaluators that the run report needs.
"""

from __future__ import annotations

from typing import Any

from evalwatch.core.lazy import LazyExports

_EXPORTS: dict[str, tuple[str, ...]] = {
    "evalwatch.reporting.run_report": (
        "metric_rows",
        "profile_rows",
        "render_run_html",
        "run_markdown",
        "worst_items",
        "write_run_html",
    ),
}
_LAZY = LazyExports(__name__, _EXPORTS)

__all__ = _LAZY.names


def __getattr__(name: str) -> Any:
    return _LAZY.get(name)
