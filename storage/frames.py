"""Read-side queries that return pandas frames for summaries, reports and checks."""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from storage.models import DatasetItem, Interaction, ModelOutput, Score

__all__ = ["run_scores_frame"]


def run_scores_frame(engine: Engine, run_id: int) -> pd.DataFrame:
    """Every score of a run with what it is about.

    Args:
        engine: The store.
        run_id: Evaluation run id.

    Returns:
        One row per score: ``subject_type, subject_id, evaluator, metric`` (as
        ``evaluator.metric``), ``value``, ``status``, ``reason``, ``explanation``,
        ``group`` (model version for traffic, model for test-set outputs), ``ts``, ``item``
        (request id or dataset item key), ``tags`` and ``text`` (the response or output).
    """
    sc = Score.__table__  # type: ignore[attr-defined]
    it = Interaction.__table__  # type: ignore[attr-defined]
    mo = ModelOutput.__table__  # type: ignore[attr-defined]
    di = DatasetItem.__table__  # type: ignore[attr-defined]
    base = [
        sc.c.subject_type,
        sc.c.subject_id,
        sc.c.evaluator,
        (sc.c.evaluator + "." + sc.c.metric).label("metric"),
        sc.c.value,
        sc.c.status,
        sc.c.reason,
        sc.c.explanation,
    ]
    q_traffic = (
        sa.select(
            *base,
            it.c.model_version.label("group"),
            it.c.ts.label("ts"),
            it.c.request_id.label("item"),
            sa.null().label("tags"),
            it.c.response.label("text"),
        )
        .join(it, sa.and_(sc.c.subject_type == "interaction", sc.c.subject_id == it.c.id))
        .where(sc.c.run_id == run_id)
    )
    q_outputs = (
        sa.select(
            *base,
            mo.c.model.label("group"),
            mo.c.created_at.label("ts"),
            di.c.item_key.label("item"),
            di.c.tags.label("tags"),
            mo.c.output.label("text"),
        )
        .join(mo, sa.and_(sc.c.subject_type == "output", sc.c.subject_id == mo.c.id))
        .join(di, di.c.id == mo.c.dataset_item_id)
        .where(sc.c.run_id == run_id)
    )
    frames = []
    with engine.connect() as conn:
        for q in (q_traffic, q_outputs):
            rows = conn.execute(q).mappings().all()
            if rows:
                frames.append(pd.DataFrame([dict(r) for r in rows]))
    if not frames:
        return pd.DataFrame(
            columns=[
                "subject_type",
                "subject_id",
                "evaluator",
                "metric",
                "value",
                "status",
                "reason",
                "explanation",
                "group",
                "ts",
                "item",
                "tags",
                "text",
            ]
        )
    df = pd.concat(frames, ignore_index=True)
    df["ts"] = pd.to_datetime(df["ts"], utc=True)
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    return df
