"""What a metric point is stored as: counters as rates, histograms with interval buckets.

:func:`evalwatch.storage.metric_series.store_points` writes the rows; this module computes
their values against the series' previous sample (the store reads it in the same
transaction), with the histogram arithmetic of :mod:`evalwatch.checks.histograms`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy.engine import Engine

from evalwatch.checks.histograms import decode_bounds, encode_bounds, interval_buckets
from evalwatch.core.telemetry import MetricPoint, SeriesKind
from evalwatch.storage.metric_series import Previous, StoreOutcome, store_points

__all__ = ["sample_values", "store"]


def _counter(p: MetricPoint, prev: Previous | None) -> dict[str, Any]:
    assert p.value is not None
    if p.delta and p.start_ts is not None:
        dt = (p.ts - p.start_ts).total_seconds()
        return {"value": p.value / dt if dt > 0 else None, "raw": p.value, "buckets": None}
    rate = None
    if prev is not None and prev[1] is not None:
        dt = (p.ts - prev[0]).total_seconds()
        # A reading below the previous one: the exporter restarted and counts from 0 again.
        grown = p.value - prev[1] if p.value >= prev[1] else p.value
        rate = grown / dt if dt > 0 else None
    return {"value": rate, "raw": p.value, "buckets": None}


def _histogram(p: MetricPoint, prev: Previous | None) -> dict[str, Any]:
    b = p.buckets or {}
    le = [float(x) for x in b["le"]]
    counts = [float(c) for c in b["counts"]]
    total, obs_sum = float(b.get("count", counts[-1])), float(b.get("sum", 0.0))
    interval: dict[str, Any] | None = None
    if p.delta:
        interval = {"counts": counts, "sum": obs_sum, "count": total}
    else:
        old = prev[2] if prev is not None else None
        # No earlier reading of the same buckets: nothing to subtract, no interval known.
        if old is not None and decode_bounds(old.get("le", [])) == le:
            delta, reset = interval_buckets(counts, old.get("counts"))
            interval = {
                "counts": delta,
                "sum": obs_sum if reset else obs_sum - float(old.get("sum", 0.0)),
                "count": total if reset else total - float(old.get("count", 0.0)),
            }
    stored: dict[str, Any] = {
        "le": encode_bounds(le),
        "counts": counts,
        "sum": obs_sum,
        "count": total,
    }
    mean = None
    if interval is not None:
        stored["interval"] = interval
        if interval["count"] > 0:
            mean = interval["sum"] / interval["count"]
    return {"value": mean, "raw": total, "buckets": stored}


def sample_values(p: MetricPoint, prev: Previous | None) -> dict[str, Any]:
    """The stored ``value``, ``raw`` and ``buckets`` of a point, given its series' previous sample.

    Gauge: the reading. Counter: ``value`` = per-second rate since the previous sample (a
    reset counts from 0, as Prometheus' ``rate``; None for a series' first reading), ``raw``
    = the reading. Histogram: ``buckets`` = the cumulative buckets plus ``interval``, the
    buckets of the observations since the previous sample; ``value`` = their mean.

    Examples:
        >>> from datetime import UTC, datetime
        >>> t0, t1 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 0, 0, 10, tzinfo=UTC)
        >>> p = MetricPoint("engine.generation_tokens", "vllm", "vllm:generation_tokens",
        ...                 SeriesKind.counter, "tokens/s", t1, 1500.0)
        >>> sample_values(p, (t0, 1000.0, None))["value"]
        50.0
    """
    if p.kind == SeriesKind.counter:
        return _counter(p, prev)
    if p.kind == SeriesKind.histogram:
        return _histogram(p, prev)
    return {"value": p.value, "raw": None, "buckets": None}


def store(engine: Engine, points: Iterable[MetricPoint]) -> StoreOutcome:
    """Store points with their rates and interval buckets (idempotent).

    Args:
        engine: The store.
        points: Validated points.

    Returns:
        Counts of series and samples.
    """
    return store_points(engine, points, sample_values)
