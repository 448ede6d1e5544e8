"""The overview's user-experience panel: each feedback signal's trend, and task success.

One row per model version (and one for all of them): for every feedback kind with data in the
window (:data:`evalwatch.core.feedback.FEEDBACK_KINDS`), its signal over the first half of the
window and over the second (a mean of values, or the share of interactions with the event),
and the task-success rate: the share of judged interactions whose ``judge.task_completed``
verdict passed, with its Wilson interval (:func:`evalwatch.checks.intervals.wilson_interval`).
Columns are named by the signal, as the alert selectors are (``feedback.copy_rate`` is the
``copy_rate`` column).
"""

from __future__ import annotations

import html
from typing import Any

import pandas as pd

from evalwatch.checks.intervals import wilson_interval
from evalwatch.core.feedback import FEEDBACK_KINDS, FeedbackKind
from evalwatch.reporting.page import html_table, section
from evalwatch.storage.overview import OverviewData

__all__ = [
    "ALL_VERSIONS",
    "TASK_SUCCESS_COLUMN",
    "task_success_cell",
    "ux_markdown",
    "ux_rows",
    "ux_section",
]

#: The ``model version`` of the row over every version.
ALL_VERSIONS = "(all)"
#: The column of the task-success rate.
TASK_SUCCESS_COLUMN = "task success (judged)"
_TITLE = "User experience per model version (first half → second half of the window)"


def _fmt(value: float, kind: FeedbackKind) -> str:
    return f"{value:.1%}" if kind.aggregate == "rate" or kind.value == "up_down" else f"{value:.3g}"


def _halves(first: float | None, second: float | None, kind: FeedbackKind) -> str | None:
    """``first → second`` with an arrow; one half only when the other has no data."""
    if first is None and second is None:
        return None
    if first is None or second is None:
        one = second if first is None else first
        assert one is not None
        return f"{_fmt(one, kind)} (one half only)"
    arrow = "↑" if second > first else ("↓" if second < first else "→")
    return f"{_fmt(first, kind)} {arrow} {_fmt(second, kind)}"


def _mean(values: pd.Series) -> float | None:
    v = values.dropna()
    return float(v.mean()) if len(v) else None


def _signal(kind: FeedbackKind, traffic: pd.DataFrame, feedback: pd.DataFrame) -> float | None:
    """One kind's signal over some interactions and their feedback."""
    mine = feedback[feedback["kind"] == kind.name]
    if kind.aggregate == "mean":
        return _mean(mine["value"])
    if traffic.empty:
        return None
    return float(traffic["id"].isin(set(mine["interaction_id"])).mean())


def task_success_cell(passed: pd.Series) -> str | None:
    """``rate [low, high] of n``: the pass rate of judged interactions, 95% Wilson interval.

    Examples:
        >>> task_success_cell(pd.Series([True] * 8 + [False] * 2))
        '80.0% [49.0%, 94.3%] of 10'
        >>> task_success_cell(pd.Series([], dtype=bool)) is None
        True
    """
    n = len(passed)
    if n == 0:
        return None
    k = int(passed.sum())
    lo, hi = wilson_interval(k, n)
    return f"{k / n:.1%} [{lo:.1%}, {hi:.1%}] of {n}"


def _present(data: OverviewData) -> list[FeedbackKind]:
    kinds = set(data.feedback["kind"]) if not data.feedback.empty else set()
    return [k for k in FEEDBACK_KINDS if k.name in kinds]


def _row(
    label: str,
    traffic: pd.DataFrame,
    feedback: pd.DataFrame,
    success: pd.DataFrame,
    kinds: list[FeedbackKind],
    mid: pd.Timestamp,
) -> dict[str, Any]:
    row: dict[str, Any] = {"model version": label, "interactions": len(traffic)}
    halves = [
        (traffic[traffic["ts"] < mid], feedback[feedback["ts"] < mid]),
        (traffic[traffic["ts"] >= mid], feedback[feedback["ts"] >= mid]),
    ]
    for kind in kinds:
        first, second = (_signal(kind, t, f) for t, f in halves)
        row[kind.signal] = _halves(first, second, kind)
    row[TASK_SUCCESS_COLUMN] = task_success_cell(success["passed"])
    return row


def ux_rows(data: OverviewData) -> list[dict[str, Any]]:
    """The panel's rows: all versions first, then each model version (no I/O).

    Feedback and verdicts are placed at their interaction's time (see
    :func:`evalwatch.storage.overview.load_overview`); a rate's denominator is the half's
    interactions.

    Args:
        data: The overview's data.

    Returns:
        Rows with ``model version``, ``interactions``, one column per feedback signal with
        data, and :data:`TASK_SUCCESS_COLUMN`; empty when the window has neither feedback nor
        task-success verdicts.
    """
    kinds = _present(data)
    success = data.task_success
    if not kinds and success.empty:
        return []
    start, end = pd.Timestamp(data.start), pd.Timestamp(data.end)
    mid = start + (end - start) / 2
    traffic, feedback = data.traffic, data.feedback
    if feedback.empty:
        feedback = pd.DataFrame(columns=["interaction_id", "ts", "kind", "value", "label"])
    version_of = dict(zip(traffic["id"], traffic["model_version"], strict=True))
    feedback = feedback.assign(model_version=feedback["interaction_id"].map(version_of))
    rows = [_row(ALL_VERSIONS, traffic, feedback, success, kinds, mid)]
    for version, g in traffic.groupby("model_version", sort=True):
        rows.append(
            _row(
                str(version),
                g,
                feedback[feedback["model_version"] == version],
                success[success["model_version"] == version],
                kinds,
                mid,
            )
        )
    return rows


def _legend(data: OverviewData) -> str:
    kinds = _present(data)
    parts = [f"{k.signal}: {k.description}" for k in kinds]
    parts.append(
        f"{TASK_SUCCESS_COLUMN}: share of judged interactions whose task_completed verdict "
        "passed (judge rubric set task_success), 95% Wilson interval"
    )
    return "; ".join(parts)


def ux_section(data: OverviewData) -> str:
    """The panel as an HTML section of the overview page."""
    rows = ux_rows(data)
    if not rows:
        return section(
            _TITLE,
            "<p class='meta'>no user feedback and no task-success verdicts in the window</p>",
        )
    return section(_TITLE, html_table(rows), f"<p class='meta'>{html.escape(_legend(data))}</p>")


def ux_markdown(data: OverviewData) -> str:
    """The panel as a markdown section (heading, table, legend)."""
    rows = ux_rows(data)
    lines = ["## User experience", ""]
    if not rows:
        return "\n".join([*lines, "_no user feedback and no task-success verdicts_", ""])
    cols = list(rows[0])
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = ("—" if r[c] is None else str(r[c]).replace("|", "\\|") for c in cols)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join([*lines, "", _legend(data), ""])
