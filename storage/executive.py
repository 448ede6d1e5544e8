"""Read-side queries of the executive view: one window and the period before it.

The executive page (``evalwatch report --executive``) reduces these frames to counts, means
and rates per app and model version (:mod:`evalwatch.reporting.executive`), scores them
(:mod:`evalwatch.checks.health`) and renders them. Only this module reads the store for it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from evalwatch.core import ACTIVE_ALERT_STATUSES, SubjectType
from evalwatch.storage.models import Alert, Feedback, Interaction, Score
from evalwatch.storage.performance import load_perf_frame

__all__ = ["ALERT_COLUMNS", "ExecutiveFrames", "WindowFrames", "load_executive", "open_alerts"]

_it: sa.Table = Interaction.__table__  # type: ignore[attr-defined]
_sc: sa.Table = Score.__table__  # type: ignore[attr-defined]
_fb: sa.Table = Feedback.__table__  # type: ignore[attr-defined]
_al: sa.Table = Alert.__table__  # type: ignore[attr-defined]

ALERT_COLUMNS = (
    "id",
    "rule",
    "scope_key",
    "severity",
    "status",
    "count",
    "opened_at",
    "last_seen_at",
)


@dataclass
class WindowFrames:
    """One window's rows.

    Attributes:
        start: Window start (inclusive).
        end: Window end (exclusive).
        traffic: :func:`evalwatch.storage.performance.load_perf_frame` of the window.
        scores: ``interaction_id, metric, value``: the newest ok score of each interaction
            and asked-for metric (a re-scored interaction counts once).
        feedback: ``interaction_id, kind, value, label``.
    """

    start: datetime
    end: datetime
    traffic: pd.DataFrame
    scores: pd.DataFrame
    feedback: pd.DataFrame


@dataclass
class ExecutiveFrames:
    """The window, the equally long period before it, and the alerts open now."""

    current: WindowFrames
    previous: WindowFrames
    open_alerts: pd.DataFrame


def _scores(
    conn: sa.Connection, start: datetime, end: datetime, metrics: Iterable[str]
) -> pd.DataFrame:
    pairs = [tuple(m.split(".", 1)) for m in sorted(set(metrics)) if "." in m]
    cols = ["interaction_id", "metric", "value"]
    if not pairs:
        return pd.DataFrame(columns=cols)
    q = (
        sa.select(_sc.c.subject_id, _sc.c.evaluator, _sc.c.metric, _sc.c.value)
        .join(
            _it,
            sa.and_(_sc.c.subject_type == SubjectType.interaction, _sc.c.subject_id == _it.c.id),
        )
        .where(
            _it.c.ts >= start,
            _it.c.ts < end,
            _sc.c.subject_type == SubjectType.interaction,
            _sc.c.status == "ok",
            _sc.c.value.is_not(None),
            sa.or_(*(sa.and_(_sc.c.evaluator == e, _sc.c.metric == m) for e, m in pairs)),
        )
        .order_by(_sc.c.id)
    )
    rows = [(r[0], f"{r[1]}.{r[2]}", float(r[3])) for r in conn.execute(q)]
    frame = pd.DataFrame(rows, columns=cols)
    # The newest score of each interaction and metric (rows came oldest first).
    return frame.drop_duplicates(["interaction_id", "metric"], keep="last").reset_index(drop=True)


def _feedback(conn: sa.Connection, start: datetime, end: datetime) -> pd.DataFrame:
    q = (
        sa.select(_fb.c.interaction_id, _fb.c.kind, _fb.c.value, _fb.c.label)
        .join(_it, _fb.c.interaction_id == _it.c.id)
        .where(_it.c.ts >= start, _it.c.ts < end)
    )
    frame = pd.DataFrame(
        [tuple(r) for r in conn.execute(q)], columns=["interaction_id", "kind", "value", "label"]
    )
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce")
    return frame


def open_alerts(engine: Engine) -> pd.DataFrame:
    """The alerts open or acknowledged now, most severe first then newest (``ALERT_COLUMNS``).

    Examples:
        >>> from evalwatch.storage.db import make_engine, upgrade
        >>> e = make_engine("sqlite://"); _ = upgrade(e)
        >>> open_alerts(e).empty
        True
    """
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(*(_al.c[n] for n in ALERT_COLUMNS))
            .where(_al.c.status.in_(list(ACTIVE_ALERT_STATUSES)))
            .order_by(_al.c.last_seen_at.desc(), _al.c.id.desc())
        ).all()
    return pd.DataFrame([tuple(r) for r in rows], columns=list(ALERT_COLUMNS))


def _window(engine: Engine, start: datetime, end: datetime, metrics: Iterable[str]) -> WindowFrames:
    with engine.connect() as conn:
        scores = _scores(conn, start, end, metrics)
        feedback = _feedback(conn, start, end)
    return WindowFrames(start, end, load_perf_frame(engine, start, end), scores, feedback)


def load_executive(
    engine: Engine, start: datetime, end: datetime, metrics: Iterable[str]
) -> ExecutiveFrames:
    """Load the executive view's rows for ``[start, end)`` and the period just before it.

    Args:
        engine: The store.
        start: Window start.
        end: Window end.
        metrics: The evaluator metrics wanted (quality and safety metrics).

    Returns:
        The frames.
    """
    wanted = list(metrics)
    length = end - start
    return ExecutiveFrames(
        current=_window(engine, start, end, wanted),
        previous=_window(engine, start - length, start, wanted),
        open_alerts=open_alerts(engine),
    )
