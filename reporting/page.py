"""Self-contained HTML reports (inline CSS and PNG plots, no external scripts)."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

__all__ = ["html_page", "html_table", "img", "section"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:1100px;color:#1d2430;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #dde}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
th,td{border:1px solid #dde;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f5f9}td.num{text-align:right;font-variant-numeric:tabular-nums}
.meta{color:#556;font-size:.85rem}.bad{color:#b3261e;font-weight:600}
.ok{color:#1e7b34;font-weight:600}img{max-width:100%}
pre{white-space:pre-wrap;font-size:.8rem;background:#f7f7fa;padding:.4rem}
"""


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f'<td class="num">{value:.4g}</td>'
    if isinstance(value, int):
        return f'<td class="num">{value}</td>'
    if value is None:
        return "<td>—</td>"
    return f"<td>{html.escape(str(value))}</td>"


def html_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """An HTML table of dict rows, escaped.

    Examples:
        >>> "<td>x</td>" in html_table([{"a": "x"}])
        True
    """
    if not rows:
        return "<p class='meta'>nothing to show</p>"
    cols = list(columns or rows[0].keys())
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(_cell(r.get(c)) for c in cols) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def img(data_uri: str | None, alt: str) -> str:
    """An inline image, or a note when there was nothing to plot."""
    if data_uri is None:
        return f"<p class='meta'>{html.escape(alt)}: not enough data to plot</p>"
    return f'<img alt="{html.escape(alt)}" src="{data_uri}">'


def section(title: str, *parts: str) -> str:
    """A titled report section."""
    return f"<section><h2>{html.escape(title)}</h2>{''.join(parts)}</section>"


def html_page(title: str, *sections: str, subtitle: str | None = None) -> str:
    """A complete, self-contained HTML document."""
    made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    sub = f"<p class='meta'>{html.escape(subtitle)}</p>" if subtitle else ""
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{sub}<p class='meta'>generated {made} by evalwatch</p>"
        + "".join(sections)
        + "</body></html>"
    )
