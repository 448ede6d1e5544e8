"""Anomalies on serving-fleet metric series: hourly baselines per host, GPU and model (issue #16).

:func:`check_metric_anomalies` is the whole step (``evalwatch collect anomalies`` and the end of
the ``collect-metrics`` flow call it): for each configured selector (``gpu.temperature``, a
counter's rate such as ``engine.generation_tokens``, a histogram percentile such as
``engine.ttft_p95``) it reads the stored samples of the judged windows and the history before
them, aggregates them per window and scope, and judges each judged window against the robust,
seasonality-aware baseline of :func:`evalwatch.checks.anomaly.detect_anomalies`, as the drift
job does for traffic series.

Per window: a gauge's or counter rate's samples are averaged
(:func:`evalwatch.checks.anomaly.aggregate_series`); a percentile selector reads the quantile
of the window's interval buckets added up (:func:`evalwatch.checks.histograms.window_quantile`),
a percentile of requests rather than of per-sample means. Each window's scale has a floor: a
mean's sampling error (the samples' spread around their own window's mean, so a daily cycle is
not counted as noise), or 5 % of a percentile's history median (buckets resolve no finer).
Series with the same name, host, GPU
and model (a DCGM exporter and ``collect gpu`` on one machine) are one scope.

Each selector and scope becomes one ``drift_reports`` row of family ``anomaly`` (the drift
job's row shape; scope ``{host, gpu, model}``), which the alert selector ``anomaly.verdict``
reads with the dimensions ``host``, ``gpu``, ``model`` and ``series``. The report key is fixed
by the judged windows and the parameters, so the flow running every few minutes stores one
report per hour, not one per run.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, field_validator

from evalwatch.checks.anomaly import Freq, Method, aggregate_series, detect_anomalies, noise_floor
from evalwatch.checks.drift.outcome import (
    FREQ_DELTA,
    AnomalySeries,
    DriftParams,
    Scope,
    TimeWindow,
    as_utc,
)
from evalwatch.checks.histograms import window_quantile
from evalwatch.core import parse_duration
from evalwatch.core.telemetry import MetricSelector, resolve_selector
from evalwatch.runs.drift import anomaly_threshold
from evalwatch.storage.metric_series import (
    METRIC_DIMENSIONS,
    newest_sample_time,
    read_samples,
    report_stored,
)
from evalwatch.storage.models import utcnow
from evalwatch.storage.traffic_frame import insert_drift_rows
from evalwatch.storage.windows import format_utc

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from evalwatch.settings import Settings

__all__ = [
    "MetricAnomalyOutcome",
    "MetricAnomalyParams",
    "MetricAnomalySeries",
    "check_metric_anomalies",
    "params_from_settings",
]

# Smallest scale of a histogram percentile, relative to its history's median (see below).
_QUANTILE_REL_FLOOR = 0.05
_TEST = "anomaly_metric_"  # + method; ``anomaly*`` tests are anomaly rows for storage.alerts


class MetricAnomalyParams(BaseModel):
    """What a metric anomaly check judges.

    Attributes:
        series: Metric selectors (``gpu.temperature``, ``engine.ttft_p95``...).
        window: Span of the judged windows, ending at ``end``.
        history: History before the judged windows the baseline is built from.
        freq: ``hour`` or ``day`` windows.
        method: ``mad`` or ``ewma`` (see :mod:`evalwatch.checks.anomaly`).
        threshold: Robust z cut (None: the Bonferroni cut of the drift job at ``alpha``).
        alpha: Chance of any false anomaly in the check on stationary noise.
        end: End of the judged windows (None: the start of the current, incomplete window).

    Examples:
        >>> MetricAnomalyParams(series=["gpu.temperature"]).window
        '1h'
        >>> MetricAnomalyParams(series=["gpu.temprature"])
        Traceback (most recent call last):
        ...
        pydantic_core._pydantic_core.ValidationError: 1 validation error for MetricAnomalyParams
        series
          Value error, unknown metric series 'gpu.temprature' ...
    """

    model_config = ConfigDict(extra="forbid")

    series: list[str] = Field(min_length=1)
    window: str = "1h"
    history: str = "7d"
    freq: Freq = "hour"
    method: Method = "mad"
    threshold: float | None = Field(None, gt=0)
    alpha: float = Field(0.05, gt=0, lt=1)
    end: datetime | None = None

    @field_validator("series")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        for text in v:
            if resolve_selector(text) is None:
                raise ValueError(
                    f"unknown metric series {text!r} (see the canonical names in the README)"
                )
        return v

    @field_validator("window", "history")
    @classmethod
    def _duration(cls, v: str) -> str:
        if parse_duration(v).total_seconds() <= 0:
            raise ValueError(f"{v!r} must be a positive duration")
        return v


def params_from_settings(
    settings: Settings,
    *,
    window: str | None = None,
    history: str | None = None,
    series: Sequence[str] | None = None,
    end: datetime | None = None,
) -> MetricAnomalyParams:
    """The check's parameters from ``settings.telemetry``, with the caller's overrides.

    Args:
        settings: The settings (``telemetry.anomaly_*``).
        window: Overrides ``anomaly_window``.
        history: Overrides ``anomaly_history``.
        series: Overrides ``anomaly_series``.
        end: End of the judged windows.

    Returns:
        The parameters.
    """
    t = settings.telemetry
    return MetricAnomalyParams(
        series=list(series) if series else list(t.anomaly_series),
        window=window or t.anomaly_window,
        history=history or t.anomaly_history,
        freq=t.anomaly_freq,
        threshold=t.anomaly_threshold,
        end=end,
    )


@dataclass
class MetricAnomalySeries(AnomalySeries):
    """One selector's anomaly series for one host, GPU and model.

    Attributes:
        dims: ``{"host", "gpu", "model"}`` of the scope, as stored and read by alert rules.
    """

    dims: dict[str, str | None] = field(default_factory=dict)


@dataclass
class MetricAnomalyOutcome:
    """What a metric anomaly check found and stored.

    Attributes:
        report_key: Key of the ``drift_reports`` rows (fixed by the windows and parameters).
        created_at: When the check ran.
        current: The judged windows.
        params: The parameters.
        series: One anomaly series per selector and scope.
        no_data: The line saying the judged windows hold no samples (None when they hold some).
        n_rows_stored: Rows written now (0 when the same report was stored before).
        already_stored: The report of these windows and parameters was stored by an earlier run.
        alerts: Alert changes of the rule evaluation that followed (when one did).
        alert_error: Why that evaluation failed.
    """

    report_key: str
    created_at: datetime
    current: TimeWindow
    params: MetricAnomalyParams
    series: list[MetricAnomalySeries] = field(default_factory=list)
    no_data: str | None = None
    n_rows_stored: int = 0
    already_stored: bool = False
    alerts: list[dict[str, Any]] = field(default_factory=list)
    alert_error: str | None = None

    @property
    def anomalies_found(self) -> bool:
        """Whether any series had an anomalous judged window."""
        return any(s.verdict == "anomaly" for s in self.series)

    def rows(self) -> list[dict[str, Any]]:
        """The ``drift_reports`` rows: one per selector and scope (family ``anomaly``)."""
        return [_row(self, s) for s in self.series]


def _floor(t: datetime, freq: Freq) -> datetime:
    t = as_utc(t)
    if freq == "day":
        return t.replace(hour=0, minute=0, second=0, microsecond=0)
    return t.replace(minute=0, second=0, microsecond=0)


def _report_key(params: MetricAnomalyParams, current: TimeWindow, history: timedelta) -> str:
    text = json.dumps(
        {
            "kind": "metric-anomaly",
            "start": current.start.isoformat(),
            "end": current.end.isoformat(),
            "history_s": history.total_seconds(),
            **params.model_dump(mode="json", exclude={"end", "window", "history"}),
        },
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _label(dims: tuple[str | None, ...]) -> str:
    return ",".join(f"{d}={v}" for d, v in zip(METRIC_DIMENSIONS, dims, strict=True) if v)


def _window_values(
    rows: Sequence[dict[str, Any]],
    sel: MetricSelector,
    start64: np.datetime64,
    last64: np.datetime64,
    cut64: np.datetime64,
    freq: Freq,
) -> tuple[npt.NDArray[np.datetime64], npt.NDArray[np.float64], npt.NDArray[np.int64], float]:
    """(window starts, values, samples per window, noise floor) of one scope's samples."""
    ts = np.array([as_utc(r["ts"]).replace(tzinfo=None) for r in rows], dtype="datetime64[us]")
    # Samples are read from the first window's start to the last window's end: in range.
    starts, _, counts = aggregate_series(ts, freq=freq, agg="count", start=start64, end=last64)
    slot = (ts - starts[0].astype("datetime64[us]")) // np.timedelta64(FREQ_DELTA[freq])
    slot = slot.astype(np.int64)
    if sel.quantile is None:
        vals = np.array([r["value"] for r in rows], dtype=np.float64)
        _, out, counts = aggregate_series(
            ts, vals, freq=freq, agg="mean", start=start64, end=last64
        )
        # The floor is the sampling error of a history window's mean. It comes from the
        # samples' spread around their own window's mean: the spread of all readings would
        # count the daily cycle as noise and hide every anomaly of a seasonal series.
        hist = np.isfinite(out) & (starts < cut64.astype(starts.dtype))
        past = np.isfinite(vals) & (ts < cut64)
        resid = vals[past] - out[slot[past]]
        return starts, out, counts, noise_floor(resid, counts[hist], "mean")
    # A percentile of requests: the window's interval buckets added up, then the quantile.
    per: dict[int, list[tuple[list[Any], list[float]]]] = {}
    for i, r in zip(slot.tolist(), rows, strict=True):
        interval = (r["buckets"] or {}).get("interval")
        if interval:
            per.setdefault(i, []).append((list(r["buckets"]["le"]), interval["counts"]))
    out = np.full(starts.size, np.nan)
    for i, hists in per.items():
        n, q = window_quantile(hists, sel.quantile)
        if n and q is not None and math.isfinite(q):
            out[i] = q
    # A percentile interpolated inside fixed buckets moves in steps: a history that sat in one
    # bucket has a spread near 0, and the next small step would read as an anomaly.
    past_q = out[(starts < cut64.astype(starts.dtype)) & np.isfinite(out)]
    floor = _QUANTILE_REL_FLOOR * float(np.median(past_q)) if past_q.size else 0.0
    return starts, out, counts, floor


def check_metric_anomalies(
    engine: Engine,
    params: MetricAnomalyParams,
    *,
    now: datetime | None = None,
    store: bool = True,
) -> MetricAnomalyOutcome:
    """Judge the metric series' newest complete windows for anomalies and store the report.

    Args:
        engine: The store.
        params: What to judge.
        now: The present (default: now); the judged windows end at the start of its window.
        store: Write the ``drift_reports`` rows (unless this report was stored before).

    Returns:
        The outcome; ``no_data`` is set (and nothing stored) when the judged windows hold no
        sample of any selected series.

    Examples:
        >>> from evalwatch.storage.db import make_engine, upgrade
        >>> e = make_engine("sqlite://"); _ = upgrade(e)
        >>> out = check_metric_anomalies(e, MetricAnomalyParams(series=["gpu.temperature"]))
        >>> out.no_data.endswith("the store holds no metric samples")
        True
    """
    now = as_utc(now or utcnow())
    freq = params.freq
    step = FREQ_DELTA[freq]
    end = _floor(params.end or now, freq)
    span = parse_duration(params.window)
    n_judged = max(1, math.ceil(span / step))
    history = parse_duration(params.history)
    current = TimeWindow(start=end - n_judged * step, end=end)
    series_start = _floor(current.start - history, freq)
    outcome = MetricAnomalyOutcome(
        report_key=_report_key(params, current, history),
        created_at=now,
        current=current,
        params=params,
    )
    sels = {text: resolve_selector(text) for text in params.series}
    names = sorted({s.name for s in sels.values() if s is not None})
    start64 = np.datetime64(series_start.replace(tzinfo=None), "us")
    last64 = np.datetime64((current.end - timedelta(microseconds=1)).replace(tzinfo=None), "us")
    cut = as_utc(current.start)
    cut64 = np.datetime64(cut.replace(tzinfo=None), "us")
    prepared: list[
        tuple[str, dict[str, str | None], npt.NDArray[Any], npt.NDArray[np.float64], Any, float]
    ] = []
    for text, sel in sels.items():
        assert sel is not None  # the parameters' validator resolved every selector
        # One read per selector: an OTel ``gen_ai.*`` selector keeps its source's series only.
        with engine.connect() as conn:
            rows = read_samples(
                conn, [sel.name], series_start, current.end, source_name=sel.source_name
            )
        groups: dict[tuple[str | None, ...], list[dict[str, Any]]] = {}
        for r in rows:
            if r["value"] is None and sel.quantile is None:
                continue
            groups.setdefault(tuple(r[d] for d in METRIC_DIMENSIONS), []).append(r)
        for dims, mine in sorted(groups.items(), key=lambda kv: [v or "" for v in kv[0]]):
            if as_utc(mine[-1]["ts"]) < cut:
                continue  # nothing in the judged windows (a host gone): no verdict to store
            starts, vals, counts, floor = _window_values(mine, sel, start64, last64, cut64, freq)
            scope = dict(zip(METRIC_DIMENSIONS, dims, strict=True))
            prepared.append((text, scope, starts, vals, counts, floor))
    if not prepared:
        outcome.no_data = _no_data_line(engine, names, current)
        return outcome
    judged = sum(int(np.isfinite(v[-n_judged:]).sum()) for *_, v, _c, _f in prepared)
    threshold = anomaly_threshold(
        DriftParams(alpha=params.alpha, anomaly_threshold=params.threshold), judged
    )
    for text, scope, starts, vals, counts, floor in prepared:
        report = detect_anomalies(
            starts,
            vals,
            freq=freq,
            method=params.method,
            threshold=threshold,
            seasonal=True,
            agg="mean",
            min_scale=floor,
            start=starts[0],
            end=starts[-1],
        )
        outcome.series.append(
            MetricAnomalySeries(
                scope=Scope(label=_label(tuple(scope.values())) or "overall"),
                dims=scope,
                feature=text,
                report=report,
                counts=[int(c) for c in counts],
                current=current,
                now=now,
            )
        )
    if store:
        if report_stored(engine, outcome.report_key):
            outcome.already_stored = True
        else:
            outcome.n_rows_stored = insert_drift_rows(engine, outcome.rows())
    return outcome


def _no_data_line(engine: Engine, names: Sequence[str], current: TimeWindow) -> str:
    """``0 metric samples between ... UTC; the newest is ... UTC`` (or: the store holds none)."""
    newest = newest_sample_time(engine, names)
    held = (
        "the store holds no metric samples"
        if newest is None
        else f"the newest is {format_utc(as_utc(newest))} UTC"
    )
    return (
        f"0 metric samples between {format_utc(current.start)} and "
        f"{format_utc(current.end)} UTC; {held}"
    )


def _row(outcome: MetricAnomalyOutcome, a: MetricAnomalySeries) -> dict[str, Any]:
    """The ``drift_reports`` row of one metric anomaly series (the drift job's row shape)."""
    return a.row(
        report_key=outcome.report_key,
        created_at=outcome.created_at,
        dims=a.dims,
        test=f"{_TEST}{a.report.method}",
    )
