"""Model performance per version and serving-fleet readings, read from the store.

Two sources (issue #16, section 2):

* **Traffic** (``interactions``): per interaction its latency, tokens, cost and whether it
  failed. The ``perf.*`` alert selectors read the same per-interaction values
  (:func:`perf_value`), so the overview's table and a rule over ``perf.latency_ms`` with
  ``p95`` agree.
* **Engine and GPU metric series** (``metric_series`` / ``metric_samples``, written by
  ``evalwatch collect``): engine throughput (``engine.generation_tokens``, a counter stored as
  tokens/s), time to first token (``engine.ttft_seconds`` histogram), model-load times
  (``engine.model_load_seconds``) and the infrastructure gauges (GPU utilisation, VRAM used
  share, temperature, memory fragmentation).

What counts as a failed interaction: traffic rows carry no status column; a caller logs a
failure in the row's metadata, and the OTel ingest keeps a span's ERROR status as
``metadata.otel.error``. So an interaction is an **error** when ``metadata.error`` holds a
value other than null, ``false``, ``0`` or ``""`` (a message, a code, ``true``), or
``metadata.otel.error`` is set. The error rate is errors over all interactions of the scope.

Time to first token comes from ``metadata.ttft_ms`` (milliseconds) where the traffic carries
it; otherwise from the engine's ``engine.ttft_seconds`` histogram of the served model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from evalwatch.core.performance import PERF_METRICS
from evalwatch.core.telemetry import (
    ENGINE_GENERATION_TOKENS,
    ENGINE_MODEL_LOAD,
    ENGINE_TTFT,
    GPU_MEMORY_FREE,
    GPU_MEMORY_USED,
    GPU_MEMORY_USED_SHARE,
    GPU_TEMPERATURE,
    GPU_UTILIZATION,
    MEMORY_FRAGMENTATION,
)
from evalwatch.storage.models import Interaction
from evalwatch.storage.models_telemetry import MetricSample, MetricSeries

__all__ = [
    "INFRA_METRICS",
    "EngineWindow",
    "engine_windows",
    "error_flag",
    "infra_samples",
    "load_perf_frame",
    "model_load_series",
    "perf_value",
]

_it: sa.Table = Interaction.__table__  # type: ignore[attr-defined]
_ms: sa.Table = MetricSeries.__table__  # type: ignore[attr-defined]
_mp: sa.Table = MetricSample.__table__  # type: ignore[attr-defined]

# The infrastructure panel's gauges, in column order: canonical name -> column title.
INFRA_METRICS: dict[str, str] = {
    GPU_UTILIZATION: "GPU util %",
    GPU_MEMORY_USED_SHARE: "VRAM used share",
    GPU_TEMPERATURE: "temperature C",
    MEMORY_FRAGMENTATION: "fragmentation",
}
_NOT_AN_ERROR = ("", "false", "0", "null")


def error_flag() -> sa.ColumnElement[float]:
    """1.0 for a failed interaction, else 0.0 (see the module docstring), as SQL.

    Works on SQLite (``json_extract``) and PostgreSQL (``->>`` / ``#>>``) alike.
    """
    meta = _it.c["metadata"]
    own = sa.cast(meta["error"].as_string(), sa.String)
    failed = sa.or_(
        sa.and_(own.is_not(None), sa.func.lower(own).not_in(_NOT_AN_ERROR)),
        meta[("otel", "error")].as_string().is_not(None),
    )
    return sa.case((failed, 1.0), else_=0.0)


def _ttft_ms() -> sa.ColumnElement[float]:
    return sa.cast(_it.c["metadata"]["ttft_ms"].as_string(), sa.Float)


def perf_value(metric: str | None) -> tuple[sa.ColumnElement[Any], list[Any]]:
    """The per-interaction value of ``perf.<metric>`` and the rows that have one.

    Args:
        metric: A name of :data:`evalwatch.checks.performance.PERF_METRICS`.

    Returns:
        ``(value column, where clauses)`` over the ``interactions`` table.

    Raises:
        ValueError: An unknown name.

    Examples:
        >>> str(perf_value("cost")[0])
        'interactions.cost'
    """
    if metric == "latency_ms":
        return _it.c.latency_ms, [_it.c.latency_ms.is_not(None)]
    if metric == "cost":
        return _it.c.cost, [_it.c.cost.is_not(None)]
    if metric == "tokens_per_s":
        value = sa.cast(_it.c.output_tokens, sa.Float) * 1000.0 / _it.c.latency_ms
        return value, [_it.c.output_tokens.is_not(None), _it.c.latency_ms > 0]
    if metric == "ttft_ms":
        return _ttft_ms(), [_ttft_ms().is_not(None)]
    if metric == "error_rate":
        return error_flag(), []
    raise ValueError(f"unknown perf metric {metric!r}; known: {', '.join(PERF_METRICS)}")


def load_perf_frame(engine: Engine, start: datetime, end: datetime) -> pd.DataFrame:
    """The window's interactions with their performance fields, one row each.

    Columns: ``id, ts, app, model_name, model_version, latency_ms, input_tokens,
    output_tokens, cost, error (0/1), ttft_ms``.
    """
    cols = [
        _it.c.id,
        _it.c.ts,
        _it.c.app,
        _it.c.model_name,
        _it.c.model_version,
        _it.c.latency_ms,
        _it.c.input_tokens,
        _it.c.output_tokens,
        _it.c.cost,
        error_flag().label("error"),
        _ttft_ms().label("ttft_ms"),
    ]
    q = sa.select(*cols).where(_it.c.ts >= start, _it.c.ts < end)
    with engine.connect() as conn:
        rows = conn.execute(q).all()
    frame = pd.DataFrame([tuple(r) for r in rows], columns=[c.name for c in cols])
    for col in ("latency_ms", "input_tokens", "output_tokens", "cost", "error", "ttft_ms"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    if not frame.empty:
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame


def _samples(engine: Engine, names: list[str], start: datetime, end: datetime) -> pd.DataFrame:
    """Samples of the series with these canonical names in ``[start, end)``, oldest first."""
    cols = [
        _ms.c.id.label("series_id"),
        _ms.c.name,
        _ms.c.host,
        _ms.c.gpu,
        _ms.c.model,
        _mp.c.ts,
        _mp.c.value,
        _mp.c.buckets,
    ]
    q = (
        sa.select(*cols)
        .select_from(_mp.join(_ms, _ms.c.id == _mp.c.series_id))
        .where(_ms.c.name.in_(names), _mp.c.ts >= start, _mp.c.ts < end)
        .order_by(_mp.c.ts, _mp.c.id)
    )
    with engine.connect() as conn:
        rows = conn.execute(q).all()
    frame = pd.DataFrame(
        [tuple(r) for r in rows],
        columns=["series_id", "name", "host", "gpu", "model", "ts", "value", "buckets"],
    )
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce")
    if not frame.empty:
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame


def _ttft_intervals(hist: pd.DataFrame) -> list[tuple[list[float], list[float]]]:
    """The ``interval`` buckets of every histogram sample: the observations since the one before.

    A series' first reading has no interval (what it counts may predate the window by
    months), so it adds nothing.
    """
    out: list[tuple[list[float], list[float]]] = []
    for b in hist["buckets"]:
        interval = b.get("interval") if isinstance(b, dict) else None
        if not interval or not b.get("le"):
            continue
        # float() reads the "+Inf" JSON stores for the last bound.
        out.append(([float(x) for x in b["le"]], [float(c) for c in interval["counts"]]))
    return out


@dataclass
class EngineWindow:
    """What the engine's own series say about one served model over a window.

    Attributes:
        model: The served model (the series' ``model`` label).
        tokens_per_s: Mean generation rate (``engine.generation_tokens``), summed over the
            model's series (one per engine process).
        ttft_intervals: The window's ``engine.ttft_seconds`` observations, one ``(le,
            cumulative counts)`` pair per sample (each sample's interval since the one
            before it); added up and read as percentiles above the store.
        load_seconds: The latest ``engine.model_load_seconds`` reading.
    """

    model: str
    tokens_per_s: float | None = None
    ttft_intervals: list[tuple[list[float], list[float]]] = field(default_factory=list)
    load_seconds: float | None = None


def engine_windows(engine: Engine, start: datetime, end: datetime) -> dict[str, EngineWindow]:
    """Engine throughput, the TTFT histogram and the latest model-load time per served model.

    Args:
        engine: The store.
        start: Window start.
        end: Window end.

    Returns:
        Served model -> its figures; models without engine series are absent.
    """
    frame = _samples(
        engine,
        [ENGINE_GENERATION_TOKENS, ENGINE_TTFT, ENGINE_MODEL_LOAD],
        start,
        end,
    )
    out: dict[str, EngineWindow] = {}
    for model, g in frame[frame["model"].notna()].groupby("model"):
        win = EngineWindow(str(model))
        gen = g[g["name"] == ENGINE_GENERATION_TOKENS]
        if gen["value"].notna().any():
            win.tokens_per_s = float(gen.groupby("series_id")["value"].mean().sum())
        win.ttft_intervals = _ttft_intervals(g[g["name"] == ENGINE_TTFT])
        load = g[(g["name"] == ENGINE_MODEL_LOAD) & g["value"].notna()]
        if not load.empty:
            win.load_seconds = float(load["value"].iloc[-1])
        out[str(model)] = win
    return out


def model_load_series(engine: Engine, start: datetime, end: datetime) -> pd.DataFrame:
    """Every ``engine.model_load_seconds`` reading of the window: ts, host, model, value."""
    frame = _samples(engine, [ENGINE_MODEL_LOAD], start, end)
    return frame.loc[frame["value"].notna(), ["ts", "host", "model", "value"]].reset_index(
        drop=True
    )


def _with_used_share(frame: pd.DataFrame) -> pd.DataFrame:
    """Add ``gpu.memory_used_share`` = used / (used + free) where only the bytes are stored."""
    if (frame["name"] == GPU_MEMORY_USED_SHARE).any():
        return frame
    used = frame[frame["name"] == GPU_MEMORY_USED]
    free = frame[frame["name"] == GPU_MEMORY_FREE]
    if used.empty or free.empty:
        return frame
    both = used.merge(free[["host", "gpu", "ts", "value"]], on=["host", "gpu", "ts"])
    total = both["value_x"] + both["value_y"]
    share = both.assign(name=GPU_MEMORY_USED_SHARE, value=both["value_x"] / total.where(total > 0))[
        list(frame.columns)
    ]
    return pd.concat([frame, share], ignore_index=True)


def infra_samples(engine: Engine, start: datetime, end: datetime) -> pd.DataFrame:
    """The window's readings of :data:`INFRA_METRICS`: name, host, gpu, ts, value.

    ``gpu.memory_used_share`` is derived from the used and free bytes where no exporter
    stored it.
    """
    frame = _samples(engine, [*INFRA_METRICS, GPU_MEMORY_USED, GPU_MEMORY_FREE], start, end)
    if frame.empty:
        return frame[["name", "host", "gpu", "ts", "value"]]
    frame = _with_used_share(frame)
    keep = frame["name"].isin(list(INFRA_METRICS)) & frame["value"].notna()
    return frame.loc[keep, ["name", "host", "gpu", "ts", "value"]].reset_index(drop=True)
