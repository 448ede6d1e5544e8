"""Read-side queries of differentially private releases: per-interaction rows with their user.

A DP release bounds each user's contributions, so it needs every row with its ``user_hash``
(the overview's frames leave the user out). Scores and feedback are attributed to their
interaction's time, user, app and model version, as in :mod:`evalwatch.storage.overview`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from evalwatch.core import SubjectType
from evalwatch.storage.models import Feedback, Interaction, Score

__all__ = ["DPFrames", "load_dp_frames"]


@dataclass
class DPFrames:
    """The rows one window's release is computed from."""

    start: datetime
    end: datetime
    traffic: pd.DataFrame  # id, ts, day, app, model_version, user_hash, cost, latency_ms
    scores: pd.DataFrame  # interaction_id, metric (evaluator.metric), value (ok scores)
    feedback: pd.DataFrame  # interaction_id, kind, value, label


def _frame(conn: sa.Connection, q: Any, columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame([tuple(r) for r in conn.execute(q).all()], columns=columns)


def load_dp_frames(
    engine: Engine, start: datetime, end: datetime, apps: list[str] | None = None
) -> DPFrames:
    """The interactions in ``[start, end)`` (of ``apps`` when given), their scores, feedback.

    Examples:
        >>> from datetime import UTC
        >>> from evalwatch.storage.db import make_engine, upgrade
        >>> e = make_engine("sqlite://"); _ = upgrade(e)
        >>> day = datetime(2026, 1, 1, tzinfo=UTC)
        >>> f = load_dp_frames(e, day, day.replace(day=2))
        >>> list(f.traffic.columns)[:4], len(f.traffic)
        (['id', 'ts', 'app', 'model_version'], 0)
    """
    it = Interaction.__table__  # type: ignore[attr-defined]
    sc = Score.__table__  # type: ignore[attr-defined]
    fb = Feedback.__table__  # type: ignore[attr-defined]
    where = [it.c.ts >= start, it.c.ts < end]
    if apps:
        where.append(it.c.app.in_(apps))
    cols = ["id", "ts", "app", "model_version", "user_hash", "cost", "latency_ms"]
    with engine.connect() as conn:
        traffic = _frame(conn, sa.select(*(it.c[c] for c in cols)).where(*where), cols)
        scores = _frame(
            conn,
            sa.select(sc.c.subject_id, sc.c.evaluator + "." + sc.c.metric, sc.c.value)
            .join(
                it,
                sa.and_(sc.c.subject_type == SubjectType.interaction, sc.c.subject_id == it.c.id),
            )
            .where(*where, sc.c.status == "ok"),
            ["interaction_id", "metric", "value"],
        )
        feedback = _frame(
            conn,
            sa.select(fb.c.interaction_id, fb.c.kind, fb.c.value, fb.c.label)
            .join(it, fb.c.interaction_id == it.c.id)
            .where(*where),
            ["interaction_id", "kind", "value", "label"],
        )
    traffic["ts"] = pd.to_datetime(traffic["ts"], utc=True)
    traffic["day"] = traffic["ts"].dt.strftime("%Y-%m-%d")
    for col in ("cost", "latency_ms"):
        traffic[col] = pd.to_numeric(traffic[col], errors="coerce")
    scores["value"] = pd.to_numeric(scores["value"], errors="coerce")
    feedback["value"] = pd.to_numeric(feedback["value"], errors="coerce")
    return DPFrames(start, end, traffic, scores, feedback)
