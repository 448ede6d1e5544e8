"""Telemetry tables: serving-fleet and engine metric series (issue #16).

A *series* is one metric name with one label set (``gpu.utilization`` on host ``h1``, GPU
``0``); a *sample* is its value at one time. Counters are stored as the per-second rate
since the series' previous sample (``value``) beside the raw cumulative reading (``raw``);
histograms keep their cumulative buckets so percentiles can be computed later.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from evalwatch.storage.models import UTCDateTime, _json, _now

__all__ = ["MetricSample", "MetricSeries"]


class MetricSeries(SQLModel, table=True):
    """One metric under one label set, from one source."""

    __tablename__ = "metric_series"
    __table_args__ = (sa.UniqueConstraint("series_key", name="uq_metric_series_key"),)

    id: int | None = Field(default=None, primary_key=True)
    # sha256 of the canonical name and the sorted label set: one row per series.
    series_key: str = Field(max_length=64)
    name: str = Field(max_length=200, index=True)  # canonical, e.g. gpu.temperature
    source_name: str = Field(max_length=200)  # as emitted, e.g. DCGM_FI_DEV_GPU_TEMP
    source: str = Field(max_length=32)  # dcgm | vllm | otlp | nvml | prometheus
    kind: str = Field(max_length=16)  # gauge | counter | histogram
    unit: str | None = Field(default=None, max_length=32)
    host: str | None = Field(default=None, max_length=200, index=True)
    gpu: str | None = Field(default=None, max_length=64)
    model: str | None = Field(default=None, max_length=200, index=True)
    labels: dict[str, Any] | None = _json()
    created_at: datetime = _now()


class MetricSample(SQLModel, table=True):
    """One reading of a series; re-loading the same reading is a no-op."""

    __tablename__ = "metric_samples"
    __table_args__ = (
        sa.UniqueConstraint("series_id", "ts", name="uq_metric_sample"),
        sa.Index("ix_metric_samples_ts", "ts"),
    )

    id: int | None = Field(default=None, primary_key=True)
    series_id: int = Field(foreign_key="metric_series.id", ondelete="CASCADE")
    ts: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    # Gauge: the reading. Counter: per-second rate since the previous sample (None for the
    # first). Histogram: the mean of the observations in the interval, when known.
    value: float | None = None
    raw: float | None = None  # counter: the cumulative reading as emitted
    # Histogram: {"le": [...], "counts": [...cumulative], "sum": float, "count": float}, the
    # last bound as "+Inf" (JSON has no infinity), and "interval": {"counts", "sum", "count"},
    # the observations since the series' previous sample (absent for its first).
    buckets: dict[str, Any] | None = _json()
