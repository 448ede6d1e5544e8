"""Writes and reads of serving-fleet metric series (issue #16).

Series are upserted by ``series_key`` and samples by ``(series_id, ts)``, both with
``INSERT ... ON CONFLICT DO NOTHING`` in bulk, so loading the same scrape twice stores it once,
on SQLite and PostgreSQL alike. A counter sample's ``value`` is its per-second rate since the
series' previous sample (the latest stored one before it, or the one before it in the same
batch); a histogram sample keeps its cumulative buckets and, beside them under
``"interval"``, the buckets of the observations since the previous sample, which is what a
window's percentile is computed from.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from evalwatch.core.telemetry import (
    MetricPoint,
    MetricSelector,
    SeriesKind,
    resolve_selector,
)
from evalwatch.storage.models import utcnow
from evalwatch.storage.models_telemetry import MetricSample, MetricSeries
from evalwatch.storage.repo import insert_ignore

__all__ = [
    "METRIC_DIMENSIONS",
    "Previous",
    "SampleValues",
    "StoreOutcome",
    "histogram_window_buckets",
    "latest_samples",
    "metric_sql_source",
    "newest_sample_time",
    "prune_samples",
    "read_samples",
    "report_stored",
    "series_key",
    "store_points",
]

_ms: sa.Table = MetricSeries.__table__  # type: ignore[attr-defined]
_mp: sa.Table = MetricSample.__table__  # type: ignore[attr-defined]
_KEYS_PER_QUERY = 5_000
#: Scope dimensions of a metric series (the rule selector source ``metric``).
METRIC_DIMENSIONS = ("host", "gpu", "model")


@dataclass(frozen=True)
class StoreOutcome:
    """What :func:`store_points` did.

    Attributes:
        series: Distinct series the points belong to.
        new_series: Of those, how many were new.
        samples: Samples stored now.
        duplicates: Points already stored (same series and time).
    """

    series: int
    new_series: int
    samples: int
    duplicates: int


def series_key(p: MetricPoint) -> str:
    """The identity of a point's series: sha256 of its name, origin and sorted labels.

    Examples:
        >>> from datetime import UTC
        >>> pt = MetricPoint("gpu.temperature", "dcgm", "DCGM_FI_DEV_GPU_TEMP", SeriesKind.gauge,
        ...                  "celsius", datetime(2026, 1, 1, tzinfo=UTC), 40.0, host="h", gpu="0")
        >>> len(series_key(pt))
        64
    """
    ident = [p.name, p.source, p.source_name, p.host, p.gpu, p.model, sorted(p.labels.items())]
    return hashlib.sha256(json.dumps(ident, separators=(",", ":")).encode()).hexdigest()


def _series_ids(conn: Connection, points: Sequence[MetricPoint]) -> tuple[dict[str, int], int]:
    rows: dict[str, dict[str, Any]] = {}
    for p in points:
        key = series_key(p)
        if key not in rows:
            rows[key] = {
                "series_key": key,
                "name": p.name,
                "source_name": p.source_name[:200],
                "source": p.source,
                "kind": str(p.kind),
                "unit": p.unit,
                "host": p.host,
                "gpu": p.gpu,
                "model": p.model,
                "labels": dict(p.labels),
            }
    new = insert_ignore(conn, MetricSeries, list(rows.values()), ["series_key"])
    ids: dict[str, int] = {}
    keys = list(rows)
    for start in range(0, len(keys), _KEYS_PER_QUERY):
        chunk = keys[start : start + _KEYS_PER_QUERY]
        q = sa.select(_ms.c.series_key, _ms.c.id).where(_ms.c.series_key.in_(chunk))
        ids.update({k: int(i) for k, i in conn.execute(q)})
    return ids, len(new)


def _previous(conn: Connection, series_ids: Sequence[int], before: datetime) -> dict[int, Previous]:
    """The latest stored sample before ``before`` of each series: (ts, raw, buckets)."""
    out: dict[int, Previous] = {}
    for start in range(0, len(series_ids), _KEYS_PER_QUERY):
        chunk = list(series_ids[start : start + _KEYS_PER_QUERY])
        latest = (
            sa.select(_mp.c.series_id, sa.func.max(_mp.c.ts).label("ts"))
            .where(_mp.c.series_id.in_(chunk), _mp.c.ts < before)
            .group_by(_mp.c.series_id)
            .subquery()
        )
        q = sa.select(_mp.c.series_id, _mp.c.ts, _mp.c.raw, _mp.c.buckets).join(
            latest, sa.and_(_mp.c.series_id == latest.c.series_id, _mp.c.ts == latest.c.ts)
        )
        for sid, ts, raw, buckets in conn.execute(q):
            out[int(sid)] = (ts, raw, buckets)
    return out


#: A series' previous sample: ``(ts, raw, buckets)``.
Previous = tuple[datetime, float | None, dict[str, Any] | None]
#: Computes a sample's stored ``value``, ``raw`` and ``buckets`` from its point and the series'
#: previous sample (the rate and interval arithmetic lives above the store, in ingest).
SampleValues = Callable[[MetricPoint, Previous | None], dict[str, Any]]


def _gauge_values(p: MetricPoint, _prev: Previous | None) -> dict[str, Any]:
    return {"value": p.value, "raw": None, "buckets": None}


def store_points(
    engine: Engine, points: Iterable[MetricPoint], sample_values: SampleValues = _gauge_values
) -> StoreOutcome:
    """Store metric points: upsert their series, add their samples (idempotent).

    In one transaction: the series are upserted, the previous sample of each counter and
    histogram series is read, and each point's stored values are computed by
    ``sample_values`` against the previous sample of its series (the latest stored before the
    batch, or the one before it in the batch).

    Args:
        engine: The store.
        points: Validated points (see :mod:`evalwatch.ingest.metrics`).
        sample_values: ``(point, previous) -> {"value", "raw", "buckets"}``; the default
            stores a gauge's reading (see :func:`evalwatch.ingest.metric_store.sample_values`).

    Returns:
        Counts of series and samples.

    Examples:
        >>> from datetime import UTC
        >>> from evalwatch.storage.db import make_engine, upgrade
        >>> e = make_engine("sqlite://"); _ = upgrade(e)
        >>> t = datetime(2026, 1, 1, tzinfo=UTC)
        >>> pt = MetricPoint("gpu.temperature", "dcgm", "DCGM_FI_DEV_GPU_TEMP", SeriesKind.gauge,
        ...                  "celsius", t, 40.0, host="h", gpu="0")
        >>> store_points(e, [pt]).samples, store_points(e, [pt]).duplicates
        (1, 1)
    """
    pts = sorted(points, key=lambda p: p.ts)
    if not pts:
        return StoreOutcome(0, 0, 0, 0)
    with engine.begin() as conn:
        ids, new_series = _series_ids(conn, pts)
        keyed = [(ids[series_key(p)], p) for p in pts]
        stateful = sorted({sid for sid, p in keyed if p.kind != SeriesKind.gauge})
        prev = _previous(conn, stateful, pts[0].ts) if stateful else {}
        rows: dict[tuple[int, datetime], dict[str, Any]] = {}
        for sid, p in keyed:
            if (sid, p.ts) in rows:
                continue  # the same reading twice in one batch
            sample = sample_values(p, prev.get(sid))
            rows[(sid, p.ts)] = {"series_id": sid, "ts": p.ts, **sample}
            # The next reading of the series in this batch is measured against this one.
            if p.kind == SeriesKind.counter:
                prev[sid] = (p.ts, sample["raw"], None)
            elif p.kind == SeriesKind.histogram:
                prev[sid] = (p.ts, None, sample["buckets"])
        stored = insert_ignore(conn, MetricSample, list(rows.values()), ["series_id", "ts"])
    return StoreOutcome(len(ids), new_series, len(stored), len(pts) - len(stored))


def prune_samples(
    engine: Engine, older_than: timedelta, now: datetime | None = None, *, dry_run: bool = False
) -> int:
    """Delete metric samples older than the retention period; series stay (they are small).

    Args:
        engine: The store.
        older_than: The retention period (``settings.telemetry.retention``).
        now: When the period ends (default: now).
        dry_run: Count and delete nothing.

    Returns:
        Samples deleted (or, with ``dry_run``, that would be).
    """
    cutoff = (now or utcnow()) - older_than
    with engine.begin() as conn:
        if dry_run:
            q = sa.select(sa.func.count()).select_from(_mp).where(_mp.c.ts < cutoff)
            return int(conn.execute(q).scalar_one())
        return int(conn.execute(sa.delete(_mp).where(_mp.c.ts < cutoff)).rowcount)


def read_samples(
    conn: Connection,
    names: Sequence[str],
    start: datetime | None,
    end: datetime | None,
    filters: Mapping[str, str] | None = None,
    source_name: str | None = None,
) -> list[dict[str, Any]]:
    """Samples of the named series in ``[start, end)``, oldest first, with their series columns.

    Args:
        conn: An open connection.
        names: Canonical series names.
        start: First time kept (None: from the beginning).
        end: First time not kept (None: up to now).
        filters: ``host`` / ``gpu`` / ``model`` -> the one value kept.
        source_name: Only series emitted under this name.

    Returns:
        Dicts with ``series_id``, ``name``, ``host``, ``gpu``, ``model``, ``source``,
        ``ts``, ``value``, ``raw`` and ``buckets``.
    """
    where: list[Any] = [_ms.c.name.in_(list(names))]
    if start is not None:
        where.append(_mp.c.ts >= start)
    if end is not None:
        where.append(_mp.c.ts < end)
    for dim, wanted in (filters or {}).items():
        where.append(_ms.c[dim] == wanted)
    if source_name is not None:
        where.append(_ms.c.source_name == source_name)
    q = (
        sa.select(
            _mp.c.series_id,
            _ms.c.name,
            _ms.c.host,
            _ms.c.gpu,
            _ms.c.model,
            _ms.c.source,
            _mp.c.ts,
            _mp.c.value,
            _mp.c.raw,
            _mp.c.buckets,
        )
        .select_from(_mp.join(_ms, _ms.c.id == _mp.c.series_id))
        .where(*where)
        .order_by(_mp.c.ts, _mp.c.series_id)
    )
    return [dict(r) for r in conn.execute(q).mappings()]


def latest_samples(
    engine: Engine, names: Sequence[str] | None = None, since: datetime | None = None
) -> list[dict[str, Any]]:
    """The newest sample of every series (of ``names``), e.g. for a fleet panel.

    Args:
        engine: The store.
        names: Canonical names to include (None: all).
        since: Ignore series whose newest sample is older than this.

    Returns:
        Dicts with the series' ``name``, ``source``, ``kind``, ``unit``, ``host``, ``gpu``,
        ``model``, ``labels`` and the sample's ``ts``, ``value``, ``raw``, ``buckets``.
    """
    where: list[Any] = []
    if since is not None:
        where.append(_mp.c.ts >= since)
    latest = sa.select(_mp.c.series_id, sa.func.max(_mp.c.ts).label("ts")).group_by(_mp.c.series_id)
    if where:
        latest = latest.where(*where)
    sub = latest.subquery()
    q = (
        sa.select(
            _ms.c.name,
            _ms.c.source,
            _ms.c.kind,
            _ms.c.unit,
            _ms.c.host,
            _ms.c.gpu,
            _ms.c.model,
            _ms.c.labels,
            _mp.c.ts,
            _mp.c.value,
            _mp.c.raw,
            _mp.c.buckets,
        )
        .select_from(
            _mp.join(sub, sa.and_(_mp.c.series_id == sub.c.series_id, _mp.c.ts == sub.c.ts)).join(
                _ms, _ms.c.id == _mp.c.series_id
            )
        )
        .order_by(_ms.c.name, _ms.c.host, _ms.c.gpu, _ms.c.model)
    )
    if names is not None:
        q = q.where(_ms.c.name.in_(list(names)))
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(q).mappings()]


# -- alert-rule reads (the selector source ``metric``; see storage.alerts) ----------------------


def _selector(text: str | None) -> MetricSelector:
    sel = resolve_selector(text or "")
    if sel is None:
        raise ValueError(f"unknown metric series {text!r}")
    return sel


def metric_sql_source(text: str | None) -> tuple[Any, Any, list[Any], dict[str, Any], Any]:
    """(from clause, value, where clauses, dimension columns, time column) of a metric selector.

    The value is each sample's stored value: a gauge's reading, a counter's per-second rate, a
    histogram's mean in its interval. Samples without one (a counter's first) are left out.

    Args:
        text: The selector in full (``gpu.temperature``, ``gen_ai.client.token.usage``).

    Raises:
        ValueError: It names no metric series.
    """
    sel = _selector(text)
    where: list[Any] = [_ms.c.name == sel.name, _mp.c.value.is_not(None)]
    if sel.source_name is not None:
        where.append(_ms.c.source_name == sel.source_name)
    dims = {d: _ms.c[d] for d in METRIC_DIMENSIONS}
    return _mp.join(_ms, _ms.c.id == _mp.c.series_id), _mp.c.value, where, dims, _mp.c.ts


def histogram_window_buckets(
    engine: Engine,
    text: str | None,
    start: datetime,
    end: datetime,
    width: timedelta,
    filters: Mapping[str, str],
    group_by: Sequence[str],
) -> dict[tuple[int, tuple[str | None, ...]], list[tuple[list[Any], list[float]]]]:
    """The interval buckets of a histogram series per window and scope.

    Each sample's ``interval`` buckets (observations since its series' previous sample) go to
    the window its time falls in; the caller adds them up and reads the quantile
    (:mod:`evalwatch.checks.histograms`). A series' first reading has no interval and adds
    nothing.

    Args:
        engine: The store.
        text: The selector (``engine.ttft_p95``, ``engine.ttft_seconds``).
        start: First window's start.
        end: Last window's end.
        width: Window length.
        filters: Dimension -> the one value kept.
        group_by: Dimensions evaluated separately.

    Returns:
        ``(window index, scope values) -> [(le as stored, interval cumulative counts)]``.
    """
    sel = _selector(text)
    width_s = width.total_seconds()
    out: dict[tuple[int, tuple[str | None, ...]], list[tuple[list[Any], list[float]]]] = {}
    with engine.connect() as conn:
        rows = read_samples(conn, [sel.name], start, end, filters, sel.source_name)
    for r in rows:
        interval = (r["buckets"] or {}).get("interval")
        if not interval:
            continue
        idx = int((r["ts"] - start).total_seconds() // width_s)
        scope = tuple(r[d] for d in group_by)
        out.setdefault((idx, scope), []).append(
            (list(r["buckets"]["le"]), [float(c) for c in interval["counts"]])
        )
    return out


def newest_sample_time(engine: Engine, names: Sequence[str] | None = None) -> datetime | None:
    """The time of the newest stored sample (of the named series), or None when there is none.

    Args:
        engine: The store.
        names: Canonical series names (None: every series).

    Returns:
        The newest sample's ``ts``.
    """
    q = sa.select(sa.func.max(_mp.c.ts)).select_from(_mp.join(_ms, _ms.c.id == _mp.c.series_id))
    if names is not None:
        q = q.where(_ms.c.name.in_(list(names)))
    with engine.connect() as conn:
        out = conn.execute(q).scalar_one_or_none()
    return out if out is None or isinstance(out, datetime) else datetime.fromisoformat(str(out))


def report_stored(engine: Engine, report_key: str) -> bool:
    """Whether ``drift_reports`` already holds rows of this report (a rerun stores nothing).

    Args:
        engine: The store.
        report_key: The report's key.
    """
    from evalwatch.storage.models import DriftReportRow

    table: sa.Table = DriftReportRow.__table__  # type: ignore[attr-defined]
    q = sa.select(table.c.id).where(table.c.report_key == report_key).limit(1)
    with engine.connect() as conn:
        return conn.execute(q).first() is not None
