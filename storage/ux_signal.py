"""The SQL of the user-experience signal: each feedback kind's values, per interaction.

An alert rule on ``feedback.<signal>`` (:data:`evalwatch.core.feedback.FEEDBACK_SIGNALS`) reads
its items here, as :func:`evalwatch.storage.alerts.bucket_aggregates` reads scores:

* a ``mean`` kind (rating, thumbs, time to rate): one item per stored feedback value;
* a ``rate`` kind (follow-up, copy, refinement, abandon): one item per interaction, 1 when it
  has at least one such event and 0 when it has none, so ``mean`` is the share of
  interactions with the event.

Items are placed at the time of the interaction they are about (as the overview places them),
so a window's value is that window's traffic's experience. Feedback arrives after the answer:
give such rules a ``delay`` that covers how late it comes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa

from evalwatch.core import SubjectType
from evalwatch.core.feedback import (
    FEEDBACK_SIGNALS,
    TASK_SUCCESS_EVALUATOR,
    TASK_SUCCESS_RUBRIC,
    signal_kind,
)
from evalwatch.storage.models import Feedback, Interaction, Score

__all__ = ["TASK_SUCCESS_COLUMNS", "feedback_source", "task_success_frame"]

#: Columns of :func:`task_success_frame`.
TASK_SUCCESS_COLUMNS = ["interaction_id", "ts", "model_version", "passed"]

_it: sa.Table = Interaction.__table__  # type: ignore[attr-defined]
_fb: sa.Table = Feedback.__table__  # type: ignore[attr-defined]
_sc: sa.Table = Score.__table__  # type: ignore[attr-defined]


def feedback_source(signal: str | None) -> tuple[Any, Any, list[Any], dict[str, Any], Any]:
    """(from clause, value column, where clauses, dimension columns, time column) of a signal.

    The shape of :func:`evalwatch.storage.alerts._sql_source`, whose ``feedback`` branch this is.

    Args:
        signal: The selector's part after ``feedback.`` (``copy_rate``).

    Returns:
        The pieces of the query; every from clause includes ``interactions``.

    Raises:
        ValueError: Not a known signal (rules are checked for this before they run).

    Examples:
        >>> frm, value, where, dims, ts = feedback_source("rating")
        >>> sorted(dims)
        ['app', 'model_version']
    """
    kind = signal_kind(signal or "")
    if kind is None:
        raise ValueError(
            f"unknown feedback signal {signal!r}; use one of {', '.join(FEEDBACK_SIGNALS)}"
        )
    dims = {"app": _it.c.app, "model_version": _it.c.model_version}
    if kind.aggregate == "mean":
        frm = _fb.join(_it, _it.c.id == _fb.c.interaction_id)
        where = [_fb.c.kind == kind.name, _fb.c.value.is_not(None)]
        return frm, _fb.c.value, where, dims, _it.c.ts
    # EXISTS, not a join: an interaction copied three times counts once, one with no event 0.
    happened = sa.exists().where(_fb.c.interaction_id == _it.c.id, _fb.c.kind == kind.name)
    value = sa.case((happened, 1.0), else_=0.0)
    return _it, value, [], dims, _it.c.ts


def task_success_frame(conn: sa.Connection, start: datetime, end: datetime) -> pd.DataFrame:
    """Whether the judge found each judged interaction of ``[start, end)``'s task completed.

    One row per interaction with an ``ok`` ``judge.task_completed`` score (the pass/fail
    rubric of the ``task_success`` set); an interaction judged more than once counts once,
    with its newest verdict.

    Args:
        conn: An open connection to the store.
        start: Window start (interaction time, inclusive).
        end: Window end (exclusive).

    Returns:
        Columns :data:`TASK_SUCCESS_COLUMNS`; ``passed`` is a bool (the normalised verdict is
        1 for a pass, 0 for a fail).

    Examples:
        >>> from datetime import UTC
        >>> from evalwatch.storage.db import make_engine, upgrade
        >>> e = make_engine("sqlite://"); _ = upgrade(e)
        >>> t = datetime(2026, 1, 1, tzinfo=UTC)
        >>> with e.connect() as c:
        ...     len(task_success_frame(c, t, t))
        0
    """
    newest = (
        sa.select(sa.func.max(_sc.c.id))
        .where(
            _sc.c.subject_type == SubjectType.interaction,
            _sc.c.evaluator == TASK_SUCCESS_EVALUATOR,
            _sc.c.metric == TASK_SUCCESS_RUBRIC,
            _sc.c.status == "ok",
            _sc.c.value.is_not(None),
        )
        .group_by(_sc.c.subject_id)
    )
    q = (
        sa.select(_it.c.id, _it.c.ts, _it.c.model_version, _sc.c.value)
        .join(_it, _it.c.id == _sc.c.subject_id)
        .where(_sc.c.id.in_(newest), _it.c.ts >= start, _it.c.ts < end)
    )
    rows = [tuple(r) for r in conn.execute(q).all()]
    frame = pd.DataFrame(rows, columns=["interaction_id", "ts", "model_version", "value"])
    if not frame.empty:
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    frame["passed"] = pd.to_numeric(frame["value"]) >= 0.5
    return frame[TASK_SUCCESS_COLUMNS]
