"""Model performance per version and the infrastructure panel, from the loaded rows (no I/O).

The rows come from :mod:`evalwatch.storage.performance`; the figures are defined there (what
an error is, where time to first token comes from). Here they are reduced to one row per app
and model version, and one row per host and GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from evalwatch.checks.histograms import histogram_quantile, merge_buckets
from evalwatch.storage.performance import INFRA_METRICS, EngineWindow

__all__ = [
    "InfraRow",
    "PerfRow",
    "engine_ttft",
    "infra_rows",
    "infra_table",
    "perf_rows",
    "perf_table",
    "trend_text",
]


@dataclass
class PerfRow:
    """Performance of one app and model version over a window (numbers only).

    ``ttft_source`` says where time to first token came from: ``traffic`` (the rows'
    ``metadata.ttft_ms``), ``engine`` (the served model's ``engine.ttft_seconds``
    histogram) or None (neither).
    """

    app: str
    model_version: str
    n: int
    errors: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    tokens_per_s: float | None  # mean over interactions of output tokens per second
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    ttft_source: str | None
    cost_total: float | None
    cost_mean: float | None
    engine_tokens_per_s: float | None = None
    model_load_s: float | None = None
    models: list[str] = field(default_factory=list)

    @property
    def error_rate(self) -> float | None:
        """Errors over interactions (None for none)."""
        return self.errors / self.n if self.n else None


def engine_ttft(win: EngineWindow) -> tuple[float | None, float | None]:
    """p50 and p95 (seconds) of the window's TTFT observations over a model's series.

    Examples:
        >>> w = EngineWindow("m", ttft_intervals=[([0.1, 0.5, float("inf")], [0, 10, 10])])
        >>> engine_ttft(w)
        (0.3, 0.48)
    """
    if not win.ttft_intervals:
        return None, None
    le, counts = merge_buckets(win.ttft_intervals)
    return histogram_quantile(0.5, le, counts), histogram_quantile(0.95, le, counts)


def _pct(values: pd.Series, q: float) -> float | None:
    vals = values.dropna().to_numpy(dtype=float)
    return float(np.percentile(vals, q)) if len(vals) else None


def _mean(values: pd.Series) -> float | None:
    vals = values.dropna()
    return float(vals.mean()) if len(vals) else None


def perf_rows(frame: pd.DataFrame, engines: dict[str, EngineWindow] | None = None) -> list[PerfRow]:
    """One :class:`PerfRow` per app and model version of a ``load_perf_frame`` frame.

    Engine figures join a version when a series' ``model`` label is the version itself, or
    else the interactions' ``model_name`` (the served model).

    Args:
        frame: The window's interactions.
        engines: ``engine_windows`` of the same window, by served model.

    Returns:
        The rows, by app then version.
    """
    by_model = engines or {}
    out: list[PerfRow] = []
    if frame.empty:
        return out
    for (app, version), g in frame.groupby(["app", "model_version"], sort=True):
        tps = g["output_tokens"] * 1000.0 / g["latency_ms"].where(g["latency_ms"] > 0)
        names = sorted({str(m) for m in g["model_name"].dropna()})
        eng = by_model.get(str(version)) or next(
            (by_model[m] for m in names if m in by_model), None
        )
        src: str | None = None
        p50 = p95 = None
        if g["ttft_ms"].notna().any():
            src, p50, p95 = "traffic", _pct(g["ttft_ms"], 50), _pct(g["ttft_ms"], 95)
        elif eng is not None:
            e50, e95 = engine_ttft(eng)
            if e50 is not None:
                src, p50 = "engine", e50 * 1000.0
                p95 = None if e95 is None else e95 * 1000.0
        cost = g["cost"].dropna()
        out.append(
            PerfRow(
                app=str(app),
                model_version=str(version),
                n=len(g),
                errors=int(g["error"].fillna(0).sum()),
                latency_p50_ms=_pct(g["latency_ms"], 50),
                latency_p95_ms=_pct(g["latency_ms"], 95),
                latency_p99_ms=_pct(g["latency_ms"], 99),
                tokens_per_s=_mean(tps),
                ttft_p50_ms=p50,
                ttft_p95_ms=p95,
                ttft_source=src,
                cost_total=float(cost.sum()) if len(cost) else None,
                cost_mean=float(cost.mean()) if len(cost) else None,
                engine_tokens_per_s=None if eng is None else eng.tokens_per_s,
                model_load_s=None if eng is None else eng.load_seconds,
                models=names,
            )
        )
    return out


def _r(x: float | None, digits: int) -> float | None:
    return None if x is None else round(x, digits)


def perf_table(rows: list[PerfRow]) -> list[dict[str, Any]]:
    """The "Model performance per version" table rows."""
    return [
        {
            "app": r.app,
            "model version": r.model_version,
            "interactions": r.n,
            "error rate": _r(r.error_rate, 4),
            "latency p50 ms": _r(r.latency_p50_ms, 1),
            "latency p95 ms": _r(r.latency_p95_ms, 1),
            "latency p99 ms": _r(r.latency_p99_ms, 1),
            "tokens/s (per request)": _r(r.tokens_per_s, 1),
            "TTFT p50 ms": _r(r.ttft_p50_ms, 1),
            "TTFT p95 ms": _r(r.ttft_p95_ms, 1),
            "TTFT from": r.ttft_source,
            "engine tokens/s": _r(r.engine_tokens_per_s, 1),
            "model load s": _r(r.model_load_s, 2),
            "cost USD": _r(r.cost_total, 4),
            "cost / interaction": _r(r.cost_mean, 6),
        }
        for r in rows
    ]


@dataclass
class InfraRow:
    """One host and GPU: each gauge's latest reading and first-half -> second-half means."""

    host: str | None
    gpu: str | None
    latest: dict[str, float | None]
    first_half: dict[str, float | None]
    second_half: dict[str, float | None]
    last_seen: datetime | None


def infra_rows(samples: pd.DataFrame, start: datetime, end: datetime) -> list[InfraRow]:
    """Per host and GPU, the latest reading and the trend of each infrastructure gauge.

    Several series of one gauge on one host and GPU (two exporters) are averaged per time.

    Args:
        samples: ``infra_samples`` of the window (name, host, gpu, ts, value).
        start: Window start (the trend compares its two halves).
        end: Window end.

    Returns:
        One row per host and GPU, by host then GPU.
    """
    if samples.empty:
        return []
    mid = pd.Timestamp(start) + (pd.Timestamp(end) - pd.Timestamp(start)) / 2
    keyed = samples.assign(h=samples["host"].fillna(""), g=samples["gpu"].fillna(""))
    out: list[InfraRow] = []
    for (host, gpu), g in keyed.groupby(["h", "g"], sort=True):
        latest: dict[str, float | None] = {}
        first: dict[str, float | None] = {}
        second: dict[str, float | None] = {}
        for name in INFRA_METRICS:
            s = g[g["name"] == name].groupby("ts")["value"].mean().sort_index()
            a, b = s[s.index < mid], s[s.index >= mid]
            latest[name] = float(s.iloc[-1]) if len(s) else None
            first[name] = float(a.mean()) if len(a) else None
            second[name] = float(b.mean()) if len(b) else None
        out.append(
            InfraRow(str(host) or None, str(gpu) or None, latest, first, second, g["ts"].max())
        )
    return out


def trend_text(first: float | None, second: float | None) -> str:
    """``a ↑ b`` from the first half's mean to the second's (``—`` without either).

    Examples:
        >>> trend_text(50.0, 71.25)
        '50 ↑ 71.2'
    """
    if first is None and second is None:
        return "—"
    if first is None or second is None:
        only = second if first is None else first
        assert only is not None
        return f"{_num(only)} (one half only)"
    arrow = "↑" if second > first else ("↓" if second < first else "→")
    return f"{_num(first)} {arrow} {_num(second)}"


def _num(x: float) -> str:
    """Three significant digits, without an exponent for the values a page shows (1e+03)."""
    return f"{x:.0f}" if abs(x) >= 1000 else f"{x:.3g}"


def infra_table(rows: list[InfraRow]) -> list[dict[str, Any]]:
    """The infrastructure panel's rows: latest value and trend per gauge."""
    out: list[dict[str, Any]] = []
    for r in rows:
        row: dict[str, Any] = {"host": r.host or "—", "GPU": r.gpu or "—"}
        for name, title in INFRA_METRICS.items():
            v = r.latest.get(name)
            row[f"{title} (latest)"] = None if v is None else round(v, 3)
            row[f"{title} trend"] = trend_text(r.first_half.get(name), r.second_half.get(name))
        row["last reading"] = f"{r.last_seen:%Y-%m-%d %H:%M}" if r.last_seen is not None else None
        out.append(row)
    return out
