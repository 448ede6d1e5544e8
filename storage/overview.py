"""Read-side queries for the operations overview: traffic, quality, satisfaction, cost, ops."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from evalwatch.core import SubjectType
from evalwatch.storage.models import (
    Alert,
    DriftReportRow,
    EvaluatorProfile,
    Feedback,
    Interaction,
    RegressionReport,
    Score,
)
from evalwatch.storage.performance import (
    EngineWindow,
    engine_windows,
    infra_samples,
    load_perf_frame,
    model_load_series,
)
from evalwatch.storage.traffic_frame import newest_interaction_time
from evalwatch.storage.ux_signal import TASK_SUCCESS_COLUMNS, task_success_frame

__all__ = ["FINDING_VERDICTS", "OverviewData", "load_overview", "overview_window"]


@dataclass
class OverviewData:
    """Everything the overview shows, for one window."""

    start: datetime
    end: datetime
    traffic: pd.DataFrame  # id, ts, model_version, app, cost, latency_ms
    scores: pd.DataFrame  # ts, model_version, metric, value
    feedback: pd.DataFrame  # interaction_id, ts, kind, value, label
    profiles: pd.DataFrame
    open_alerts: pd.DataFrame
    latest_drift: list[dict[str, Any]] = field(default_factory=list)
    latest_drift_at: datetime | None = None
    latest_gates: list[dict[str, Any]] = field(default_factory=list)
    # The newest drift check that found drift or an anomaly, when it is not the latest check
    # (the latest check finding nothing must not hide what an earlier one found).
    findings_drift: list[dict[str, Any]] = field(default_factory=list)
    findings_drift_at: datetime | None = None
    # Judged task success per interaction (evalwatch.storage.ux_signal.task_success_frame).
    task_success: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=TASK_SUCCESS_COLUMNS)
    )
    # Model performance per version and the serving fleet (evalwatch.storage.performance):
    # the window's interactions with their performance fields, the engine series per served
    # model, the infrastructure gauges and the model-load readings.
    perf: pd.DataFrame = field(default_factory=pd.DataFrame)
    engines: dict[str, EngineWindow] = field(default_factory=dict)
    infra: pd.DataFrame = field(default_factory=pd.DataFrame)
    model_loads: pd.DataFrame = field(default_factory=pd.DataFrame)


# Verdicts of drift_reports rows that are findings: a drifted test, an anomalous series.
FINDING_VERDICTS = ("drift", "anomaly")


def overview_window(
    engine: Engine, days: float, until: datetime | None = None
) -> tuple[datetime, datetime]:
    """The overview's window: ``days`` ending at ``until``, else at the newest traffic.

    ``evalwatch report --overview``, the demo and the ``operations-overview`` flow all use it,
    so each shows the same window for the same store.

    Args:
        engine: The store.
        days: Window length in days.
        until: Window end; default just after the newest stored interaction (now when none).

    Returns:
        ``(start, end)``, aware UTC.

    Examples:
        >>> from evalwatch.storage.db import make_engine, upgrade
        >>> e = make_engine("sqlite://"); _ = upgrade(e)
        >>> end = datetime(2026, 11, 8, tzinfo=UTC)
        >>> overview_window(e, 7, end)[0].isoformat()
        '2026-11-01T00:00:00+00:00'
    """
    if until is None:
        newest = newest_interaction_time(engine)
        until = newest + timedelta(seconds=1) if newest is not None else datetime.now(UTC)
    return until - timedelta(days=days), until


def _frame(conn: sa.Connection, q: Any, columns: list[str]) -> pd.DataFrame:
    rows = conn.execute(q).all()
    return pd.DataFrame([tuple(r) for r in rows], columns=columns)


def load_overview(engine: Engine, start: datetime, end: datetime) -> OverviewData:
    """Load the overview's data for interactions in ``[start, end)``.

    Scores and feedback are attributed to the time of the interaction they are about, so a
    day's quality is the quality of that day's traffic.
    """
    with engine.connect() as conn:
        traffic, scores, feedback = _window_frames(conn, start, end)
        pr = EvaluatorProfile.__table__  # type: ignore[attr-defined]
        profiles = _frame(
            conn,
            sa.select(*(pr.c[n] for n in _PROFILE_COLUMNS)).where(pr.c.created_at >= start),
            list(_PROFILE_COLUMNS),
        )
        al = Alert.__table__  # type: ignore[attr-defined]
        open_alerts = _frame(
            conn,
            sa.select(*(al.c[n] for n in _ALERT_COLUMNS))
            .where(al.c.status != "resolved")
            .order_by(al.c.last_seen_at.desc()),
            list(_ALERT_COLUMNS),
        )
        drift, drift_at, findings, findings_at = _latest_drift(conn)
        gates = _latest_gates(conn)
        task_success = task_success_frame(conn, start, end)
    for frame in (traffic, scores, feedback):
        if not frame.empty:
            frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    for col in ("cost", "latency_ms"):
        traffic[col] = pd.to_numeric(traffic[col], errors="coerce")
    scores["value"] = pd.to_numeric(scores["value"], errors="coerce")
    feedback["value"] = pd.to_numeric(feedback["value"], errors="coerce")
    return OverviewData(
        start,
        end,
        traffic,
        scores,
        feedback,
        profiles,
        open_alerts,
        drift,
        drift_at,
        gates,
        findings,
        findings_at,
        task_success=task_success,
        perf=load_perf_frame(engine, start, end),
        engines=engine_windows(engine, start, end),
        infra=infra_samples(engine, start, end),
        model_loads=model_load_series(engine, start, end),
    )


_PROFILE_COLUMNS = (
    "evaluator",
    "device",
    "gpu_available",
    "n_items",
    "seconds",
    "items_per_s",
    "gpu_util_mean",
    "gpu_mem_peak_mb",
    "gpu_energy_j",
    "rss_peak_mb",
    "created_at",
)
_ALERT_COLUMNS = ("id", "rule", "scope_key", "severity", "status", "count", "last_seen_at")


def _window_frames(
    conn: sa.Connection, start: datetime, end: datetime
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The window's interactions, and their scores and feedback at the interaction's time.

    Args:
        conn: An open connection to the store.
        start: Window start (inclusive).
        end: Window end (exclusive).

    Returns:
        Traffic, scores (``evaluator.metric`` as ``metric``, ok scores only) and feedback.
    """
    it = Interaction.__table__  # type: ignore[attr-defined]
    sc = Score.__table__  # type: ignore[attr-defined]
    fb = Feedback.__table__  # type: ignore[attr-defined]
    in_window = sa.and_(it.c.ts >= start, it.c.ts < end)
    traffic = _frame(
        conn,
        sa.select(it.c.id, it.c.ts, it.c.app, it.c.model_version, it.c.cost, it.c.latency_ms).where(
            in_window
        ),
        ["id", "ts", "app", "model_version", "cost", "latency_ms"],
    )
    scores = _frame(
        conn,
        sa.select(it.c.ts, it.c.model_version, (sc.c.evaluator + "." + sc.c.metric), sc.c.value)
        .join(
            it,
            sa.and_(sc.c.subject_type == SubjectType.interaction, sc.c.subject_id == it.c.id),
        )
        .where(in_window, sc.c.status == "ok"),
        ["ts", "model_version", "metric", "value"],
    )
    feedback = _frame(
        conn,
        sa.select(fb.c.interaction_id, it.c.ts, fb.c.kind, fb.c.value, fb.c.label)
        .join(it, fb.c.interaction_id == it.c.id)
        .where(in_window),
        ["interaction_id", "ts", "kind", "value", "label"],
    )
    return traffic, scores, feedback


def _latest_drift(
    conn: sa.Connection,
) -> tuple[list[dict[str, Any]], datetime | None, list[dict[str, Any]], datetime | None]:
    """The latest drift check's rows, and the newest check with findings when that one has none.

    Returns:
        ``(latest rows, latest time, findings rows, findings time)``; the findings are empty
        when the latest check has findings itself, or no check ever had any.
    """
    dr = DriftReportRow.__table__  # type: ignore[attr-defined]
    newest = (dr.c.created_at.desc(), dr.c.id.desc())
    latest_key = conn.execute(
        sa.select(dr.c.report_key, dr.c.created_at).order_by(*newest).limit(1)
    ).first()
    if latest_key is None:
        return [], None, [], None
    drift = _drift_rows(conn, latest_key[0])
    if any(d["verdict"] in FINDING_VERDICTS for d in drift):
        return drift, latest_key[1], [], None
    found_key = conn.execute(
        sa.select(dr.c.report_key, dr.c.created_at)
        .where(dr.c.verdict.in_(FINDING_VERDICTS))
        .order_by(*newest)
        .limit(1)
    ).first()
    if found_key is None:
        return drift, latest_key[1], [], None
    return drift, latest_key[1], _drift_rows(conn, found_key[0]), found_key[1]


def _latest_gates(conn: sa.Connection) -> list[dict[str, Any]]:
    """The five newest gate and canary reports (verdict, exit code, the two sides)."""
    rr = RegressionReport.__table__  # type: ignore[attr-defined]
    return [
        dict(r)
        for r in conn.execute(
            sa.select(
                rr.c.id,
                rr.c.kind,
                rr.c.created_at,
                rr.c.verdict,
                rr.c.exit_code,
                rr.c.baseline,
                rr.c.candidate,
            )
            .order_by(rr.c.created_at.desc())
            .limit(5)
        ).mappings()
    ]


def _drift_rows(conn: sa.Connection, report_key: str) -> list[dict[str, Any]]:
    """The rows of one stored drift report (tests and anomaly series)."""
    dr = DriftReportRow.__table__  # type: ignore[attr-defined]
    return [
        dict(r)
        for r in conn.execute(
            sa.select(
                dr.c.test,
                dr.c.feature,
                dr.c.family,
                dr.c.verdict,
                dr.c.effect_size,
                dr.c.p_adjusted,
                dr.c.summary,
                dr.c.scope,
                dr.c.current,
            ).where(dr.c.report_key == report_key)
        ).mappings()
    ]
