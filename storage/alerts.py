"""The SQL of alerting: selector values per window and scope, rule state, and alert rows.

Values are aggregated in the database (one grouped query per rule and evaluation, bucketed by
window), so a rule over millions of scores moves a handful of rows. Percentiles use
``percentile_cont`` on PostgreSQL; SQLite has none, so there the values of each group are read
and interpolated the same way (linear, as numpy does).

One open alert per rule and scope, even with concurrent workers: every change to a rule and
scope first makes sure its ``alert_state`` row exists (``INSERT ... ON CONFLICT DO NOTHING``)
and then locks it (``SELECT ... FOR UPDATE`` on PostgreSQL). On SQLite the insert itself takes
the database's write lock (even when it inserts nothing), which serialises writers the same
way. Whoever holds the lock reads the open alert, decides, writes and commits; the next worker
then sees that alert and updates it instead of opening another.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, select

from evalwatch.core import ACTIVE_ALERT_STATUSES, AlertStatus, SubjectType
from evalwatch.core.telemetry import resolve_selector
from evalwatch.storage.db import session_scope
from evalwatch.storage.membership import run_score_ids, run_subject_ids
from evalwatch.storage.metric_series import METRIC_DIMENSIONS, metric_sql_source
from evalwatch.storage.models import (
    Alert,
    AlertState,
    DriftReportRow,
    EvalRun,
    Interaction,
    JudgeCalibration,
    RegressionReport,
    Score,
)
from evalwatch.storage.performance import perf_value
from evalwatch.storage.repo import insert_ignore
from evalwatch.storage.ux_signal import feedback_source

__all__ = [
    "AggSpec",
    "AlertLifecycleError",
    "GroupAggregate",
    "ReportItem",
    "RunRef",
    "ScopeTx",
    "SeriesSpec",
    "acknowledge_alert",
    "advance_states",
    "alerts_with_pending",
    "bucket_aggregates",
    "claim_pending",
    "get_alert",
    "get_run_ref",
    "list_alerts",
    "lock_scope",
    "offending_items",
    "release_pending",
    "report_items",
    "resolve_alert",
    "rule_states",
    "run_aggregates",
]

_EQ_TOL = 1e-9
_TEXT_CHARS = 300
_KEEP_DELIVERIES = 200

_sc: sa.Table = Score.__table__  # type: ignore[attr-defined]
_it: sa.Table = Interaction.__table__  # type: ignore[attr-defined]
_dr: sa.Table = DriftReportRow.__table__  # type: ignore[attr-defined]
_rr: sa.Table = RegressionReport.__table__  # type: ignore[attr-defined]
_jc: sa.Table = JudgeCalibration.__table__  # type: ignore[attr-defined]
_er: sa.Table = EvalRun.__table__  # type: ignore[attr-defined]
_al: sa.Table = Alert.__table__  # type: ignore[attr-defined]


class AlertLifecycleError(ValueError):
    """A lifecycle change that is not allowed (e.g. acknowledging a resolved alert)."""


@dataclass(frozen=True)
class SeriesSpec:
    """Which items a rule reads from the store.

    Args:
        source: ``score``, ``error_rate``, ``traffic`` or ``volume`` (SQL-aggregated), or
            ``drift``, ``anomaly``, ``gate``, ``kappa``, ``run_cost`` (stored reports).
        evaluator: Evaluator name, for ``score``.
        metric: Metric name, for ``score``.
        column: Interaction column, for ``traffic``.
        filters: Dimension -> the one value kept.
        group_by: Dimensions grouped separately, in order.
    """

    source: str
    evaluator: str | None = None
    metric: str | None = None
    column: str | None = None
    filters: Mapping[str, str] = field(default_factory=dict)
    group_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class AggSpec:
    """An aggregation for the database: kind (``evalwatch.checks.rules.Aggregation``), argument.

    ``comparison`` and ``threshold`` are used by ``any`` (items that breach are counted).
    """

    kind: str
    arg: float | None = None
    comparison: str = "<"
    threshold: float = 0.0


@dataclass(frozen=True)
class GroupAggregate:
    """One window (``bucket`` index from the range start; None for a run) of one scope."""

    bucket: int | None
    scope: tuple[str | None, ...]
    n: int
    value: float | None


@dataclass(frozen=True)
class ReportItem:
    """One item of a report-type source (a drift test, a gate, a calibration, a run's cost)."""

    key: str
    ts: datetime
    dims: dict[str, str | None]
    value: float
    detail: dict[str, Any]


@dataclass(frozen=True)
class RunRef:
    """What an alert links to about an evaluation run."""

    id: int
    kind: str
    started_at: datetime
    finished_at: datetime | None
    flow_run_id: str | None


# -- selector values ---------------------------------------------------------------------------


def _cmp(col: Any, comparison: str, bound: float) -> Any:
    if comparison == "<":
        return col < bound
    if comparison == "<=":
        return col <= bound
    if comparison == ">":
        return col > bound
    if comparison == ">=":
        return col >= bound
    if comparison == "==":
        return sa.func.abs(col - bound) <= _EQ_TOL * max(1.0, abs(bound))
    raise ValueError(f"unknown comparison {comparison!r}")


def _one_if(cond: Any) -> Any:
    return sa.case((cond, 1.0), else_=0.0)


def _sql_source(series: SeriesSpec) -> tuple[Any, Any, list[Any], dict[str, Any], Any]:
    """(from clause, value column, where clauses, dimension columns, time column)."""
    dims = {"app": _it.c.app, "model_version": _it.c.model_version}
    if series.source in ("score", "error_rate"):
        frm = _sc.join(_it, _it.c.id == _sc.c.subject_id)
        where: list[Any] = [_sc.c.subject_type == SubjectType.interaction]
        if series.source == "score":
            where += [
                _sc.c.evaluator == series.evaluator,
                _sc.c.metric == series.metric,
                _sc.c.status == "ok",
                _sc.c.value.is_not(None),
            ]
            value: Any = _sc.c.value
        else:
            where.append(_sc.c.status.in_(["ok", "error"]))
            value = _one_if(_sc.c.status == "error")
        return frm, value, where, dims, _it.c.ts
    if series.source == "traffic":
        assert series.column is not None
        col = _it.c[series.column]
        return _it, col, [col.is_not(None)], dims, _it.c.ts
    if series.source == "volume":
        return _it, sa.literal(1.0), [], dims, _it.c.ts
    if series.source == "perf":
        # One value per interaction (see evalwatch.storage.performance); the rule aggregates.
        perf, perf_where = perf_value(series.metric)
        return _it, perf, perf_where, dims, _it.c.ts
    if series.source == "feedback":
        # A feedback kind's values, or whether each interaction had the event (ux_signal).
        return feedback_source(series.metric)
    if series.source == "metric":
        # Samples of a serving-fleet series (``metric`` is the selector in full).
        return metric_sql_source(series.metric)
    raise ValueError(f"source {series.source!r} is not aggregated in SQL")


def _epoch(conn: Connection, col: Any) -> Any:
    if conn.dialect.name == "sqlite":
        return sa.cast(sa.func.strftime("%s", col), sa.Integer)
    return sa.extract("epoch", col)


def _bucket(conn: Connection, col: Any, start: datetime, width_s: int) -> Any:
    offset = _epoch(conn, col) - int(start.timestamp())
    if conn.dialect.name == "sqlite":
        # Both sides are integers, so SQLite's '/' truncates; offsets are never negative.
        return (offset // width_s).label("bucket")
    # PostgreSQL's epoch is numeric: floor explicitly (a cast to an integer would round).
    return sa.cast(sa.func.floor(sa.cast(offset, sa.Float) / float(width_s)), sa.BigInteger).label(
        "bucket"
    )


def _agg_column(conn: Connection, agg: AggSpec, value: Any) -> Any | None:
    if agg.kind == "mean":
        return sa.func.avg(value)
    if agg.kind == "sum":
        return sa.func.sum(value)
    if agg.kind == "min":
        return sa.func.min(value)
    if agg.kind == "max":
        return sa.func.max(value)
    if agg.kind == "count":
        return sa.func.count(value)
    if agg.kind == "any":
        return sa.func.sum(_one_if(_cmp(value, agg.comparison, agg.threshold)))
    if agg.kind == "share_below":
        assert agg.arg is not None
        return sa.func.avg(_one_if(value < agg.arg))
    if agg.kind == "share_above":
        assert agg.arg is not None
        return sa.func.avg(_one_if(value > agg.arg))
    if agg.kind == "percentile":
        if conn.dialect.name == "postgresql":
            return sa.func.percentile_cont(agg.arg).within_group(value.asc())
        return None  # computed from the values below
    raise ValueError(f"unknown aggregation kind {agg.kind!r}")


def _aggregate_query(
    conn: Connection,
    series: SeriesSpec,
    agg: AggSpec,
    window_where: list[Any],
    bucket: Any | None,
) -> list[GroupAggregate]:
    frm, value, where, dims, _ = _sql_source(series)
    where = where + window_where
    for dim, wanted in series.filters.items():
        where.append(dims[dim] == wanted)
    group_cols = [dims[d].label(f"d_{d}") for d in series.group_by]
    keys = ([bucket] if bucket is not None else []) + group_cols
    agg_col = _agg_column(conn, agg, value)
    if agg_col is None:  # percentile on SQLite: read the values, interpolate like numpy
        q = sa.select(*keys, value.label("v")).select_from(frm).where(*where)
        groups: dict[tuple[Any, ...], list[float]] = defaultdict(list)
        for row in conn.execute(q):
            groups[tuple(row[:-1])].append(float(row[-1]))
        out = []
        for key, vals in groups.items():
            b = int(key[0]) if bucket is not None else None
            scope = tuple(key[1:] if bucket is not None else key)
            assert agg.arg is not None
            out.append(
                GroupAggregate(b, scope, len(vals), float(np.percentile(vals, agg.arg * 100)))
            )
        return out
    q = (
        sa.select(*keys, sa.func.count(value).label("n"), agg_col.label("v"))
        .select_from(frm)
        .where(*where)
    )
    if keys:
        q = q.group_by(*keys)
    out = []
    for row in conn.execute(q):
        n = int(row[-2])
        if not keys and n == 0:
            continue  # an ungrouped aggregate over nothing is one row of NULLs
        b = int(row[0]) if bucket is not None else None
        scope = tuple(row[1:-2] if bucket is not None else row[:-2])
        v = row[-1]
        out.append(GroupAggregate(b, scope, n, None if v is None else float(v)))
    return out


def bucket_aggregates(
    engine: Engine,
    series: SeriesSpec,
    agg: AggSpec,
    start: datetime,
    end: datetime,
    width: timedelta,
) -> list[GroupAggregate]:
    """Aggregate items with time in ``[start, end)`` per window of ``width`` and per scope.

    Args:
        engine: The store.
        series: What to read (a SQL source: score, error_rate, traffic or volume).
        agg: How to aggregate.
        start: Start of the first window (aligned by the caller).
        end: End of the last window.
        width: Window length, whole seconds.

    Returns:
        One aggregate per non-empty window and scope; ``bucket`` is the window's index from
        ``start``.

    Examples:
        >>> from evalwatch.storage.db import make_engine, upgrade
        >>> from datetime import UTC
        >>> e = make_engine("sqlite://"); _ = upgrade(e)
        >>> t = datetime(2026, 1, 1, tzinfo=UTC)
        >>> bucket_aggregates(e, SeriesSpec("volume"), AggSpec("count"), t, t, timedelta(hours=1))
        []
    """
    _, _, _, _, ts = _sql_source(series)
    width_s = int(width.total_seconds())
    with engine.connect() as conn:
        return _aggregate_query(
            conn, series, agg, [ts >= start, ts < end], _bucket(conn, ts, start, width_s)
        )


def _run_where(series: SeriesSpec, run_id: int) -> list[Any]:
    # The run's members (scores it computed or reused), not the scores it happened to write.
    if series.source in ("score", "error_rate"):
        return [_sc.c.id.in_(run_score_ids(run_id))]
    return [_it.c.id.in_(run_subject_ids(run_id, SubjectType.interaction))]


def run_aggregates(
    engine: Engine, series: SeriesSpec, agg: AggSpec, run_id: int
) -> list[GroupAggregate]:
    """Aggregate the items of one evaluation run, per scope.

    Scores are those the run reports (computed or reused); traffic fields are those of the
    interactions it has scores about.

    Args:
        engine: The store.
        series: What to read (a SQL source).
        agg: How to aggregate.
        run_id: The evaluation run.

    Returns:
        One aggregate per scope with items (``bucket`` is None).
    """
    with engine.connect() as conn:
        return _aggregate_query(conn, series, agg, _run_where(series, run_id), None)


def offending_items(
    conn_or_engine: Connection | Engine,
    series: SeriesSpec,
    comparison: str | None,
    bound: float | None,
    descending: bool,
    scope: Mapping[str, str | None],
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    run_id: int | None = None,
    limit: int = 5,
) -> list[dict[str, Any]]:
    """A few items that breach, worst first, with their (truncated, not yet redacted) text.

    For ``error_rate`` the items are the failed scores; for ``volume`` there are none.

    Args:
        conn_or_engine: The store.
        series: What the rule reads (a SQL source).
        comparison: Side of ``bound`` an item must be on.
        bound: The item threshold.
        descending: Worst means largest.
        scope: Dimension values of the scope (plus the rule's fixed filters).
        start: Window start (time windows).
        end: Window end (time windows).
        run_id: The run (run windows).
        limit: At most this many items.

    Returns:
        Item dicts: interaction id, request id, time, app, model version, value, prompt and
        response (first 300 characters), and for errors the evaluator and reason.
    """
    if series.source == "volume":
        return []
    if isinstance(conn_or_engine, Engine):
        with conn_or_engine.connect() as conn:
            return offending_items(
                conn,
                series,
                comparison,
                bound,
                descending,
                scope,
                start=start,
                end=end,
                run_id=run_id,
                limit=limit,
            )
    conn = conn_or_engine
    if series.source == "metric":
        return _metric_offending(
            conn, series, comparison, bound, descending, scope, start, end, limit
        )
    frm, value, where, dims, ts = _sql_source(series)
    where = list(where)
    if run_id is not None:
        where += _run_where(series, run_id)
    where = _window_scope_where(where, ts, dims, series, scope, start, end)
    cols = [
        _it.c.id,
        _it.c.request_id,
        _it.c.ts,
        _it.c.app,
        _it.c.model_version,
        value.label("value"),
        sa.func.substr(_it.c.prompt, 1, _TEXT_CHARS).label("prompt"),
        sa.func.substr(_it.c.response, 1, _TEXT_CHARS).label("response"),
    ]
    if series.source == "error_rate":
        where.append(_sc.c.status == "error")
        reason = sa.func.substr(_sc.c.reason, 1, 200).label("reason")
        cols += [_sc.c.evaluator, _sc.c.metric, reason]
        order: list[Any] = [_it.c.ts.desc()]
    else:
        if comparison is not None and bound is not None:
            where.append(_cmp(value, comparison, bound))
        order = [value.desc() if descending else value.asc(), _it.c.id]
    q = sa.select(*cols).select_from(frm).where(*where).order_by(*order).limit(limit)
    out = []
    for row in conn.execute(q).mappings():
        item = dict(row)
        item["ts"] = item["ts"].isoformat() if item.get("ts") else None
        item["value"] = None if item["value"] is None else float(item["value"])
        out.append(item)
    return out


def _window_scope_where(
    where: Sequence[Any],
    ts: Any,
    dims: Mapping[str, Any],
    series: SeriesSpec,
    scope: Mapping[str, str | None],
    start: datetime | None,
    end: datetime | None,
) -> list[Any]:
    """A source's where clauses plus the window's bounds and the series' and scope's dims.

    A filter or scope dimension the source has no column for (a metric sample's ``app``) is
    skipped rather than matching nothing, as the rule's scope may name it for other sources.

    Example:
        >>> _window_scope_where([], sa.column("ts"), {}, SeriesSpec("volume"), {}, None, None)
        []
    """
    out = list(where)
    if start is not None:
        out.append(ts >= start)
    if end is not None:
        out.append(ts < end)
    for dim, wanted in {**series.filters, **scope}.items():
        if wanted is not None and dim in dims:
            out.append(dims[dim] == wanted)
    return out


def _metric_offending(
    conn: Connection,
    series: SeriesSpec,
    comparison: str | None,
    bound: float | None,
    descending: bool,
    scope: Mapping[str, str | None],
    start: datetime | None,
    end: datetime | None,
    limit: int,
) -> list[dict[str, Any]]:
    """:func:`offending_items` of a metric series: its breaching samples, worst first.

    A percentile selector (``engine.ttft_p95``) has none: its value is the window's, read from
    the buckets of all its samples together.
    """
    sel = resolve_selector(series.metric or "")
    if sel is None or sel.quantile is not None:
        return []
    frm, value, where, dims, ts = metric_sql_source(series.metric)
    where = _window_scope_where(where, ts, dims, series, scope, start, end)
    if comparison is not None and bound is not None:
        where.append(_cmp(value, comparison, bound))
    cols = [ts.label("ts"), *(c.label(d) for d, c in dims.items()), value.label("value")]
    q = (
        sa.select(*cols)
        .select_from(frm)
        .where(*where)
        .order_by(value.desc() if descending else value.asc(), ts)
        .limit(limit)
    )
    return [
        {
            **dict(r),
            "series": series.metric,
            "ts": r["ts"].isoformat(),
            "value": float(r["value"]),
        }
        for r in conn.execute(q).mappings()
    ]


def _is_anomaly(test: str, family: str | None) -> bool:
    return family == "anomaly" or test.startswith("anomaly")


def _in_window(
    conn: Connection,
    q: sa.Select[*tuple[Any, ...]],
    ts: sa.ColumnElement[Any],
    id_: sa.ColumnElement[Any],
    since: datetime | None,
    until: datetime,
) -> Iterator[sa.RowMapping]:
    """The rows of ``q`` whose ``ts`` lies in ``(since, until]``, oldest first."""
    q = q.where(ts <= until)
    if since is not None:
        q = q.where(ts > since)
    yield from conn.execute(q.order_by(ts, id_)).mappings()


def report_items(
    engine: Engine, source: str, since: datetime | None, until: datetime
) -> list[ReportItem]:
    """Items of a report-type source stored in ``(since, until]``, oldest first.

    Values: ``drift``/``anomaly`` 1 for a test that found drift (or an anomaly), 0 for none,
    tests with insufficient data left out (anomaly rows are those of family ``anomaly``);
    ``gate`` 1 when the gate or canary failed (exit code not 0), else 0; ``kappa`` the judge's
    kappa; ``run_cost`` a finished run's ``summary["cost_usd"]`` (or ``summary["cost"]``);
    ``fairness`` 1 for a segment-metric finding that is a gap, 0 for none (insufficient data
    left out).

    Args:
        engine: The store.
        source: ``drift``, ``anomaly``, ``gate``, ``kappa``, ``run_cost`` or ``fairness``.
        since: Exclusive lower bound of the item time (None: from the beginning).
        until: Inclusive upper bound.

    Returns:
        The items; ``key`` groups the items of one report (a drift report's tests).
    """
    readers = {
        "drift": _drift_items,
        "anomaly": _anomaly_items,
        "gate": _gate_items,
        "kappa": _kappa_items,
        "run_cost": _run_cost_items,
        "fairness": _fairness_items,
    }
    with engine.connect() as conn:
        read = readers.get(source)
        if read is None:
            raise ValueError(f"source {source!r} has no stored reports")
        return read(conn, since, until)


def _drift_items(conn: Connection, since: datetime | None, until: datetime) -> list[ReportItem]:
    """:func:`report_items` of ``drift``: each drift test, 1 when it found drift."""
    return _drift_report_items(conn, since, until, anomaly=False)


def _anomaly_items(conn: Connection, since: datetime | None, until: datetime) -> list[ReportItem]:
    """:func:`report_items` of ``anomaly``: each anomaly series, 1 when it found an anomaly."""
    return _drift_report_items(conn, since, until, anomaly=True)


def _drift_report_items(
    conn: Connection, since: datetime | None, until: datetime, *, anomaly: bool
) -> list[ReportItem]:
    """Drift report rows as items: anomaly series or the other tests, insufficient data left out."""
    out: list[ReportItem] = []
    for r in _in_window(conn, sa.select(_dr), _dr.c.created_at, _dr.c.id, since, until):
        if _is_anomaly(r["test"], r["family"]) != anomaly or r["family"] == "fairness":
            continue
        if r["verdict"] == "insufficient_data":
            continue
        scope = r["scope"] or {}
        dims = {"app": scope.get("app"), "model_version": scope.get("model_version")}
        if anomaly:
            # Metric-series anomalies (runs.metric_anomalies) are scoped by host, GPU, model.
            dims |= {d: scope.get(d) for d in METRIC_DIMENSIONS} | {"series": r["feature"]}
        out.append(
            ReportItem(
                key=r["report_key"],
                ts=r["created_at"],
                dims=dims,
                value=1.0 if r["verdict"] in ("drift", "anomaly") else 0.0,
                detail={
                    "report_key": r["report_key"],
                    "test": r["test"],
                    "feature": r["feature"],
                    "verdict": r["verdict"],
                    "effect_size": r["effect_size"],
                    "effect_name": r["effect_name"],
                    "p_adjusted": r["p_adjusted"],
                    "summary": r["summary"],
                },
            )
        )
    return out


def _fairness_items(conn: Connection, since: datetime | None, until: datetime) -> list[ReportItem]:
    """:func:`report_items` of ``fairness``: each segment-metric finding, 1 when it is a gap.

    Rows of family ``fairness`` of the drift reports; findings with insufficient data are
    left out. Dimensions: ``segment`` (``field=value``), ``metric``, ``app``, ``model_version``.
    """
    q = sa.select(_dr).where(_dr.c.family == "fairness")
    out: list[ReportItem] = []
    for r in _in_window(conn, q, _dr.c.created_at, _dr.c.id, since, until):
        if r["verdict"] == "insufficient_data":
            continue
        scope = r["scope"] or {}
        details = r["details"] or {}
        out.append(
            ReportItem(
                key=r["report_key"],
                ts=r["created_at"],
                dims={
                    "segment": scope.get("segment"),
                    "metric": r["feature"],
                    "app": scope.get("app"),
                    "model_version": scope.get("model_version"),
                },
                value=1.0 if r["verdict"] == "gap" else 0.0,
                detail={
                    "report_key": r["report_key"],
                    "segment": scope.get("segment"),
                    "metric": r["feature"],
                    "group": details.get("group"),
                    "direction": details.get("direction"),
                    "difference": r["effect_size"],
                    "p_adjusted": r["p_adjusted"],
                    "verdict": r["verdict"],
                    "summary": r["summary"],
                },
            )
        )
    return out


def _gate_items(conn: Connection, since: datetime | None, until: datetime) -> list[ReportItem]:
    """:func:`report_items` of ``gate``: each gate or canary report, 1 when it failed."""
    q = sa.select(_rr.c.id, _rr.c.kind, _rr.c.created_at, _rr.c.verdict, _rr.c.exit_code)
    return [
        ReportItem(
            key=f"gate-{r['id']}",
            ts=r["created_at"],
            dims={"kind": r["kind"]},
            value=0.0 if r["exit_code"] == 0 else 1.0,
            detail={
                "regression_report_id": r["id"],
                "kind": r["kind"],
                "verdict": r["verdict"],
                "exit_code": r["exit_code"],
            },
        )
        for r in _in_window(conn, q, _rr.c.created_at, _rr.c.id, since, until)
    ]


def _kappa_items(conn: Connection, since: datetime | None, until: datetime) -> list[ReportItem]:
    """:func:`report_items` of ``kappa``: each judge calibration's kappa."""
    q = sa.select(
        _jc.c.id,
        _jc.c.created_at,
        _jc.c.judge_model,
        _jc.c.rubric,
        _jc.c.kappa,
        _jc.c.n,
        _jc.c.agreement,
    ).where(_jc.c.kappa.is_not(None))
    return [
        ReportItem(
            key=f"calibration-{r['id']}",
            ts=r["created_at"],
            dims={"rubric": r["rubric"], "judge_model": r["judge_model"]},
            value=float(r["kappa"]),
            detail={
                "calibration_id": r["id"],
                "rubric": r["rubric"],
                "judge_model": r["judge_model"],
                "n": r["n"],
                "agreement": r["agreement"],
            },
        )
        for r in _in_window(conn, q, _jc.c.created_at, _jc.c.id, since, until)
    ]


def _run_cost_items(conn: Connection, since: datetime | None, until: datetime) -> list[ReportItem]:
    """:func:`report_items` of ``run_cost``: each finished run's cost, where it has one."""
    q = sa.select(_er.c.id, _er.c.kind, _er.c.finished_at, _er.c.summary, _er.c.flow_run_id).where(
        _er.c.finished_at.is_not(None)
    )
    out: list[ReportItem] = []
    for r in _in_window(conn, q, _er.c.finished_at, _er.c.id, since, until):
        summary = r["summary"] or {}
        cost = summary.get("cost_usd", summary.get("cost"))
        if not isinstance(cost, int | float) or isinstance(cost, bool):
            continue
        out.append(
            ReportItem(
                key=f"run-{r['id']}",
                ts=r["finished_at"],
                dims={"kind": r["kind"]},
                value=float(cost),
                detail={
                    "run_id": r["id"],
                    "kind": r["kind"],
                    "flow_run_id": r["flow_run_id"],
                },
            )
        )
    return out


def get_run_ref(engine: Engine, run_id: int) -> RunRef | None:
    """The run an alert links to, or None if there is no such run."""
    with engine.connect() as conn:
        r = conn.execute(
            sa.select(
                _er.c.id, _er.c.kind, _er.c.started_at, _er.c.finished_at, _er.c.flow_run_id
            ).where(_er.c.id == run_id)
        ).first()
    if r is None:
        return None
    return RunRef(r.id, r.kind, r.started_at, r.finished_at, r.flow_run_id)


# -- state and alerts --------------------------------------------------------------------------


def rule_states(engine: Engine, rule: str) -> dict[str, AlertState]:
    """Every scope's state of a rule, by scope key."""
    with session_scope(engine) as s:
        rows = s.exec(select(AlertState).where(AlertState.rule == rule))
        return {st.scope_key: st for st in rows}


def advance_states(engine: Engine, rule: str, window_end: datetime, now: datetime) -> int:
    """Mark windows up to ``window_end`` judged for every scope of a rule that had no data.

    A scope with no items in a window keeps its streaks (no data is neither breach nor clear);
    moving its mark keeps later evaluations from rescanning the same empty windows.

    Returns:
        How many scopes moved.
    """
    t: sa.Table = AlertState.__table__  # type: ignore[attr-defined]
    with engine.begin() as conn:
        res = conn.execute(
            sa.update(t)
            .where(
                t.c.rule == rule,
                sa.or_(t.c.last_window_end.is_(None), t.c.last_window_end < window_end),
            )
            .values(last_window_end=window_end, updated_at=now)
        )
        return int(res.rowcount or 0)


class ScopeTx:
    """The locked state and active alert of one rule and scope, inside one transaction."""

    def __init__(self, session: Session, state: AlertState, alert: Alert | None) -> None:
        self.session = session
        self.state = state
        self.alert = alert

    @property
    def connection(self) -> Connection:
        """The transaction's connection (for reads under the lock)."""
        return self.session.connection()

    def save_state(
        self,
        consecutive_breaches: int,
        consecutive_clear: int,
        last_window_end: datetime | None,
        last_value: float | None,
        now: datetime,
    ) -> None:
        """Store the rule and scope's streaks and the last judged window."""
        st = self.state
        st.consecutive_breaches = consecutive_breaches
        st.consecutive_clear = consecutive_clear
        st.last_window_end = last_window_end
        st.last_value = last_value
        st.updated_at = now
        self.session.add(st)

    def open_alert(self, severity: str, now: datetime, context: dict[str, Any]) -> Alert:
        """Open a new alert (the caller holds the lock, so there is no other active one)."""
        assert self.alert is None, "an alert is already active for this rule and scope"
        alert = Alert(
            rule=self.state.rule,
            scope_key=self.state.scope_key,
            severity=severity,
            status=AlertStatus.open,
            count=1,
            opened_at=now,
            last_seen_at=now,
            context=context,
            deliveries=[],
        )
        self.session.add(alert)
        self.session.flush()
        self.alert = alert
        return alert

    def update_alert(self, now: datetime, context: dict[str, Any], severity: str) -> Alert:
        """Count one more breaching window on the active alert."""
        alert = self._active()
        alert.count += 1
        alert.last_seen_at = now
        alert.severity = severity
        alert.context = context
        self.session.add(alert)
        return alert

    def resolve_alert(self, now: datetime, context: dict[str, Any]) -> Alert:
        """Resolve the active alert (the condition has been clear long enough)."""
        alert = self._active()
        alert.status = AlertStatus.resolved
        alert.resolved_at = now
        alert.context = context
        self.session.add(alert)
        self.session.flush()
        self.alert = None
        return alert

    def _active(self) -> Alert:
        if self.alert is None:
            raise AlertLifecycleError("no active alert for this rule and scope")
        return self.alert


def _lock_state(session: Session, rule: str, scope_key: str, now: datetime) -> AlertState:
    # The insert is a write, so on SQLite it already holds the write lock here.
    insert_ignore(
        session.connection(),
        AlertState,
        [
            {
                "rule": rule,
                "scope_key": scope_key,
                "consecutive_breaches": 0,
                "consecutive_clear": 0,
                "updated_at": now,
            }
        ],
        ["rule", "scope_key"],
    )
    return session.exec(
        select(AlertState)
        .where(AlertState.rule == rule, AlertState.scope_key == scope_key)
        .with_for_update()
    ).one()


def _active_alert(session: Session, rule: str, scope_key: str) -> Alert | None:
    return session.exec(
        select(Alert)
        .where(
            Alert.rule == rule,
            Alert.scope_key == scope_key,
            Alert.status.in_(ACTIVE_ALERT_STATUSES),  # type: ignore[attr-defined]
        )
        .order_by(Alert.id.desc())  # type: ignore[union-attr]
        .with_for_update()
    ).first()


@contextmanager
def lock_scope(engine: Engine, rule: str, scope_key: str, now: datetime) -> Iterator[ScopeTx]:
    """Lock one rule and scope, yield its state and active alert, commit on success.

    Args:
        engine: The store.
        rule: Rule name.
        scope_key: Scope key.
        now: Time stamped on a newly created state row.

    Yields:
        The transaction's view: ``state``, ``alert`` (open or acknowledged, or None) and
        methods to change them.
    """
    with session_scope(engine) as s:
        state = _lock_state(s, rule, scope_key, now)
        yield ScopeTx(s, state, _active_alert(s, rule, scope_key))


def _lock_alert(session: Session, alert_id: int) -> Alert | None:
    # A no-op update takes the row lock (PostgreSQL) or the write lock (SQLite) before reading.
    session.connection().execute(
        sa.update(_al).where(_al.c.id == alert_id).values(count=_al.c.count)
    )
    alert = session.get(Alert, alert_id, populate_existing=True)
    return alert


def get_alert(engine: Engine, alert_id: int) -> Alert | None:
    """An alert by id."""
    with session_scope(engine) as s:
        return s.get(Alert, alert_id)


def list_alerts(
    engine: Engine,
    status: str | Sequence[str] | None = None,
    rule: str | None = None,
    limit: int | None = 200,
) -> list[Alert]:
    """Alerts, newest first.

    Args:
        engine: The store.
        status: Only these statuses (open, acknowledged, resolved).
        rule: Only this rule.
        limit: At most this many (None: all).

    Returns:
        The alerts.
    """
    q = select(Alert)
    if status is not None:
        wanted = [status] if isinstance(status, str) else list(status)
        q = q.where(Alert.status.in_(wanted))  # type: ignore[attr-defined]
    if rule is not None:
        q = q.where(Alert.rule == rule)
    q = q.order_by(Alert.opened_at.desc(), Alert.id.desc())  # type: ignore[attr-defined,union-attr]
    if limit is not None:
        q = q.limit(limit)
    with session_scope(engine) as s:
        return list(s.exec(q))


def _change_status(engine: Engine, alert_id: int, status: AlertStatus, now: datetime) -> Alert:
    with session_scope(engine) as s:
        found = s.get(Alert, alert_id)
        if found is None:
            raise KeyError(f"no alert with id {alert_id}")
        # Same lock order as an evaluation (state, then alert), so the two never interleave.
        state = _lock_state(s, found.rule, found.scope_key, now)
        alert = _lock_alert(s, alert_id)
        assert alert is not None
        if status == AlertStatus.acknowledged:
            if alert.status == AlertStatus.resolved:
                raise AlertLifecycleError(
                    f"alert {alert_id} is resolved; it cannot be acknowledged"
                )
            if alert.status == AlertStatus.open:
                alert.status = AlertStatus.acknowledged
                alert.acknowledged_at = now
        elif alert.status != AlertStatus.resolved:
            alert.status = AlertStatus.resolved
            alert.resolved_at = now
            # Resolving by hand starts the rule over: it must breach again to re-open.
            state.consecutive_breaches = 0
            state.consecutive_clear = 0
            state.updated_at = now
            s.add(state)
        s.add(alert)
        s.flush()
        return alert


def acknowledge_alert(engine: Engine, alert_id: int, now: datetime) -> Alert:
    """Acknowledge an open alert: it stays active but stops re-notifying.

    Raises:
        KeyError: No such alert.
        AlertLifecycleError: The alert is resolved.
    """
    return _change_status(engine, alert_id, AlertStatus.acknowledged, now)


def resolve_alert(engine: Engine, alert_id: int, now: datetime) -> Alert:
    """Resolve an alert by hand (idempotent); its rule and scope start over.

    Raises:
        KeyError: No such alert.
    """
    return _change_status(engine, alert_id, AlertStatus.resolved, now)


def alerts_with_pending(engine: Engine, resolved_since: datetime) -> list[Alert]:
    """Alerts with a notification or action still to do.

    Args:
        engine: The store.
        resolved_since: Resolved alerts count only when resolved after this (their
            resolution notice may still be pending).

    Returns:
        The alerts, oldest first.
    """
    q = (
        select(Alert)
        .where(sa.or_(_al.c.status.in_(ACTIVE_ALERT_STATUSES), _al.c.resolved_at >= resolved_since))
        .order_by(Alert.id)  # type: ignore[arg-type]
    )
    with session_scope(engine) as s:
        return [
            a
            for a in s.exec(q)
            if (a.context or {}).get("pending_delivery") or (a.context or {}).get("pending_action")
        ]


def claim_pending(
    engine: Engine, alert_id: int, now: datetime, lease: timedelta
) -> tuple[Alert, dict[str, Any] | None, dict[str, Any] | None] | None:
    """Claim an alert's pending notification and action for ``lease`` so no other worker sends.

    Args:
        engine: The store.
        alert_id: The alert.
        now: Current time.
        lease: How long the claim holds if this worker dies before releasing it.

    Returns:
        ``(alert, pending delivery, pending action)``, or None when there is nothing to
        do or another worker holds the claim.
    """
    with session_scope(engine) as s:
        alert = _lock_alert(s, alert_id)
        if alert is None:
            return None
        ctx = dict(alert.context or {})
        pending = ctx.get("pending_delivery")
        action = ctx.get("pending_action")
        if not pending and not action:
            return None
        claimed = ctx.get("claimed_until")
        if claimed and datetime.fromisoformat(claimed) > now:
            return None
        ctx["claimed_until"] = (now + lease).isoformat()
        alert.context = ctx
        s.add(alert)
        s.flush()
        return alert, (dict(pending) if pending else None), (dict(action) if action else None)


def release_pending(
    engine: Engine,
    alert_id: int,
    seq: int | None,
    deliveries: Sequence[Mapping[str, Any]],
    failed_channels: Sequence[str],
    action_record: Mapping[str, Any] | None = None,
    action_done: bool = False,
) -> Alert:
    """Record delivery attempts, keep failed channels pending, and drop the claim.

    Args:
        engine: The store.
        alert_id: The alert.
        seq: Sequence number of the pending delivery that was attempted (None: none was). If a
            newer event was queued meanwhile, that one stays pending untouched.
        deliveries: Delivery records to append (event, channel, time, ok, attempts, error).
        failed_channels: Channels still to deliver to.
        action_record: An action attempt to append to ``context["actions"]``.
        action_done: The pending action no longer needs doing.

    Returns:
        The updated alert.
    """
    with session_scope(engine) as s:
        alert = _lock_alert(s, alert_id)
        if alert is None:
            raise KeyError(f"no alert with id {alert_id}")
        ctx = dict(alert.context or {})
        ctx.pop("claimed_until", None)
        pending = ctx.get("pending_delivery")
        if seq is not None and pending and pending.get("seq") == seq:
            if failed_channels:
                ctx["pending_delivery"] = {**pending, "channels": list(failed_channels)}
            else:
                ctx.pop("pending_delivery", None)
        if action_record is not None:
            ctx["actions"] = [*ctx.get("actions", []), dict(action_record)][-20:]
        if action_done:
            ctx.pop("pending_action", None)
        alert.context = ctx
        if deliveries:
            alert.deliveries = [*(alert.deliveries or []), *map(dict, deliveries)][
                -_KEEP_DELIVERIES:
            ]
        s.add(alert)
        s.flush()
        return alert
