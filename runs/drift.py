"""Drift and anomaly checks on stored traffic: load two windows, test them, store the report.

:func:`check_drift` is the whole job (the CLI, the ``drift_check`` flow and ``make demo`` call
it): resolve the current window and the baseline, load both from the store in one query per
table, run :func:`evalwatch.checks.drift.run_drift` per scope, adjust every test of every scope as
ONE
report, compute the anomaly series, and store one ``drift_reports`` row per test under one
``report_key``.

What is compared, per interaction:

* numeric columns: ``response_length`` (characters), ``latency_ms``, ``input_tokens``,
  ``output_tokens``, ``cost`` and every stored score metric as ``evaluator.metric`` (only scores
  with status ``ok``; where several evaluator versions scored one interaction the most recently
  stored score counts). A metric whose stored values are all 0 or 1 is a *rate*, not a numeric
  column (``heuristics.refusal`` becomes the rate ``refusal``);
* rates: ``refusal``, the other 0/1 metrics, ``unsafe`` (``toxicity.safety`` below
  ``unsafe_threshold``, where toxicity scores exist), ``unscored`` (share of evaluated
  interactions with a score that failed, status ``error``) and ``thumbs_down`` (share of
  thumbs feedback that is down);
* ratings: ``rating`` feedback (1-5) with its timestamps, for the distribution and the trend;
* embeddings: the response embeddings of one embedding model (default: the model with the most
  embeddings in the windows), decoded from float16, with the responses as example texts.

Scopes: ``overall`` (everything the ``apps`` / ``model_versions`` filters keep), then each app
and each model version seen in either window (a dimension with a single value is not split,
it would repeat ``overall``). ``evalwatch.checks.drift`` wants one Benjamini-Hochberg family per
report:
each scope's results are pooled and adjusted together by
:func:`evalwatch.checks.drift.apply_verdicts`,
so the report-level false-alarm rate stays at ``alpha`` however many scopes there are (tests
with insufficient data take no part). More scopes cost power, not validity.

Anomalies: hourly (or daily) series of volume, p95 latency, cost (sum), mean response length,
the evaluator error rate and every score metric's mean (or rate), over the current window and
``anomaly_history_days`` before it, go through :func:`evalwatch.checks.anomaly.detect_anomalies`.
Only
windows inside the current window, and complete (ended before ``now``), are judged. Each
window's value gets a noise floor (``min_scale``) of its sampling error at the history's typical
window size, and rates are judged on the variance-stabilising (Anscombe) arcsine scale, so a
handful of events per hour cannot raise an alarm by chance. The robust z cut is, by default,
the Bonferroni cut for the number of windows judged at the report's ``alpha`` (at least 3.5), so
the check's chance of any false anomaly matches its drift tests'. One row per series and scope
is stored with family ``"anomaly"`` (test ``anomaly_<method>``, verdict ``anomaly``,
``no_anomaly`` or ``insufficient_data``), which the alert selector ``anomaly.verdict`` reads;
anomalies are not part of the Benjamini-Hochberg family and do not set ``drift_found``.

A numeric column holding one single value across both windows (a fixed price) is not tested:
it cannot drift, and the float rounding of its mean would look like a shift.

Loading is :func:`evalwatch.storage.traffic_frame.load_frame` (one streamed query per table into
numpy
columns); this module holds no SQL.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.engine import Engine

from evalwatch.checks.anomaly import AnomalyPoint, AnomalyReport, aggregate_series, detect_anomalies
from evalwatch.checks.drift import (
    DriftConfig,
    DriftInput,
    DriftReport,
    DriftTestResult,
    format_p,
    md_escape,
    results_table,
    run_drift,
)
from evalwatch.checks.drift import apply_verdicts as _apply_verdicts
from evalwatch.settings import Settings
from evalwatch.storage.models import utcnow
from evalwatch.storage.repo import content_hash
from evalwatch.storage.traffic_frame import (
    TrafficFrame,
    insert_drift_rows,
    load_frame,
    newest_interaction_time,
    run_subjects,
    to_datetime64,
)

__all__ = [
    "AnomalySeries",
    "Baseline",
    "DriftInputError",
    "DriftOutcome",
    "DriftParams",
    "Scope",
    "ScopeResult",
    "TimeWindow",
    "TrafficFrame",
    "anomaly_threshold",
    "check_drift",
    "drift_input",
    "load_frame",
    "newest_interaction_time",
    "outcome_rows",
    "resolve_windows",
    "store_outcome",
]

ScopeKind = Literal["overall", "app", "model_version"]
Freq = Literal["hour", "day"]

# Stored binary metrics that get a plain name as a rate.
_RATE_NAMES = {"heuristics.refusal": "refusal"}
_SAFETY_METRIC = "toxicity.safety"
_FREQ_DELTA = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
_FREQ_WORD = {"hour": "hourly", "day": "daily"}


def _scope_list(*kinds: ScopeKind) -> list[ScopeKind]:
    return list(kinds)


class DriftInputError(ValueError):
    """The check cannot run as asked (bad windows, unknown run, empty store)."""


# --------------------------------------------------------------------------------------------
# Parameters and windows
# --------------------------------------------------------------------------------------------


class TimeWindow(BaseModel):
    """A half-open time window ``[start, end)`` in UTC.

    Examples:
        >>> w = TimeWindow(start=datetime(2026, 11, 1, tzinfo=UTC),
        ...                end=datetime(2026, 11, 8, tzinfo=UTC))
        >>> w.describe()
        '2026-11-01 00:00 → 2026-11-08 00:00 UTC'
    """

    model_config = ConfigDict(frozen=True)

    start: datetime
    end: datetime

    @model_validator(mode="after")
    def _ordered(self) -> TimeWindow:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("window times must be timezone-aware")
        if self.start >= self.end:
            raise ValueError(f"window start {self.start} is not before its end {self.end}")
        return self

    def describe(self) -> str:
        """``start → end UTC`` to the minute."""
        fmt = "%Y-%m-%d %H:%M"
        return f"{_utc(self.start).strftime(fmt)} → {_utc(self.end).strftime(fmt)} UTC"

    def as_json(self) -> dict[str, str]:
        """``{"start": ISO, "end": ISO}`` for the stored report."""
        return {"start": _utc(self.start).isoformat(), "end": _utc(self.end).isoformat()}


class DriftParams(BaseModel):
    """What a drift check compares, and how.

    Current window: ``[current_start, current_end)``; without ``current_end`` it ends at the
    hour after the newest stored interaction (in the filtered scope), without
    ``current_start`` it is ``window`` long. Baseline, in order of precedence:
    ``baseline_run`` (the interactions that evaluation run scored), a pinned
    ``baseline_start``/``baseline_end`` window, else the ``baseline_days`` before the current
    window.

    Examples:
        >>> DriftParams(window="3d", baseline_days=7).scopes
        ['overall', 'app', 'model_version']
    """

    model_config = ConfigDict(extra="forbid")

    current_start: datetime | None = Field(None, description="Current window start (inclusive).")
    current_end: datetime | None = Field(
        None, description="Current window end (exclusive); default: after the newest interaction."
    )
    window: str = Field("24h", description="Current window length when no start is given.")
    baseline_days: float = Field(7.0, gt=0, description="Days before the current window.")
    baseline_start: datetime | None = Field(None, description="Pinned baseline start.")
    baseline_end: datetime | None = Field(None, description="Pinned baseline end (exclusive).")
    baseline_run: int | None = Field(
        None, description="Evaluation run whose interactions are the baseline."
    )
    apps: list[str] = Field(default_factory=list, description="Only these apps.")
    model_versions: list[str] = Field(default_factory=list, description="Only these versions.")
    scopes: list[ScopeKind] = Field(
        default_factory=lambda: _scope_list("overall", "app", "model_version"),
        description="Scopes tested; all of them form one Benjamini-Hochberg family.",
    )
    alpha: float = Field(0.05, gt=0, lt=1, description="Significance level of the report.")
    config: DriftConfig = Field(
        default_factory=DriftConfig, description="Test settings (alpha above wins)."
    )
    embedding_model: str | None = Field(
        None, description="Embedding model compared; default: the most common in the windows."
    )
    unsafe_threshold: float = Field(
        0.5, ge=0, le=1, description="toxicity.safety below this is unsafe."
    )
    anomaly_freq: Freq = Field("hour", description="Anomaly series windows: hour or day.")
    anomaly_method: Literal["mad", "ewma"] = Field("mad", description="Robust baseline.")
    anomaly_threshold: float | None = Field(
        None,
        gt=0,
        description="Robust z-score of an anomaly; default: Bonferroni over the windows judged "
        "at alpha, at least 3.5.",
    )
    anomaly_history_days: float | None = Field(
        None, gt=0, description="History before the current window (default baseline_days)."
    )
    anomaly_scopes: list[ScopeKind] = Field(
        default_factory=lambda: _scope_list("overall"), description="Scopes with anomaly series."
    )
    anomaly_min_events: int = Field(
        5, ge=1, description="Events a window needs for a mean, rate or p95 (volume: any)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> DriftParams:
        from evalwatch.commands.common import parse_duration

        parse_duration(self.window)  # raises ValueError on a bad duration
        for name in ("current_start", "current_end", "baseline_start", "baseline_end"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                setattr(self, name, value.replace(tzinfo=UTC))
        if (self.baseline_start is None) != (self.baseline_end is None):
            raise ValueError("give both baseline_start and baseline_end, or neither")
        if self.baseline_run is not None and self.baseline_start is not None:
            raise ValueError("give a baseline run or a pinned baseline window, not both")
        if self.baseline_start and self.baseline_end and self.baseline_start >= self.baseline_end:
            raise ValueError("baseline_start must be before baseline_end")
        if self.current_start and self.current_end and self.current_start >= self.current_end:
            raise ValueError("current_start must be before current_end")
        if not self.scopes:
            raise ValueError("scopes names no scope")
        return self

    def drift_config(self) -> DriftConfig:
        """The test settings with this check's ``alpha``."""
        return self.config.model_copy(update={"alpha": self.alpha})


@dataclass(frozen=True)
class Baseline:
    """The resolved baseline: a time window, or the interactions of an evaluation run."""

    window: TimeWindow | None = None
    run_id: int | None = None

    def as_json(self) -> dict[str, Any]:
        """What the stored report says about the baseline."""
        if self.window is not None:
            return {"kind": "window", **self.window.as_json()}
        return {"kind": "run", "run_id": self.run_id}

    def describe(self) -> str:
        """Human-readable description."""
        if self.window is not None:
            return self.window.describe()
        return f"interactions of evaluation run {self.run_id}"


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _ceil_hour(dt: datetime) -> datetime:
    floor = _utc(dt).replace(minute=0, second=0, microsecond=0)
    return floor if floor == _utc(dt) else floor + timedelta(hours=1)


def resolve_windows(engine: Engine, params: DriftParams) -> tuple[TimeWindow, Baseline]:
    """Turn the parameters into the current window and the baseline.

    Args:
        engine: The store (asked for the newest interaction when the end is not given).
        params: The check's parameters.

    Returns:
        ``(current, baseline)``.

    Raises:
        DriftInputError: Nothing stored in the scope, an unknown run, or overlapping windows.

    Examples:
        >>> from evalwatch.storage.db import make_engine, upgrade
        >>> e = make_engine("sqlite://"); _ = upgrade(e)
        >>> p = DriftParams(current_end=datetime(2026, 11, 15, tzinfo=UTC), window="3d")
        >>> cur, base = resolve_windows(e, p)
        >>> cur.describe(), base.describe()
        ('2026-11-12 00:00 → 2026-11-15 00:00 UTC', '2026-11-05 00:00 → 2026-11-12 00:00 UTC')
    """
    from evalwatch.commands.common import parse_duration

    end = params.current_end
    if end is None:
        newest = newest_interaction_time(engine, params.apps, params.model_versions)
        if newest is None:
            raise DriftInputError(
                "no interactions stored" + _filter_text(params) + "; ingest traffic first"
            )
        end = _ceil_hour(newest + timedelta(microseconds=1))
    start = params.current_start or end - parse_duration(params.window)
    try:
        current = TimeWindow(start=_utc(start), end=_utc(end))
    except ValueError as exc:
        raise DriftInputError(f"bad current window: {exc}") from exc
    if params.baseline_run is not None:
        return current, Baseline(run_id=params.baseline_run)
    if params.baseline_start is not None and params.baseline_end is not None:
        base = TimeWindow(start=_utc(params.baseline_start), end=_utc(params.baseline_end))
        if base.start < current.end and current.start < base.end:
            raise DriftInputError(
                f"the baseline window ({base.describe()}) overlaps the current window "
                f"({current.describe()})"
            )
        return current, Baseline(window=base)
    base = TimeWindow(start=current.start - timedelta(days=params.baseline_days), end=current.start)
    return current, Baseline(window=base)


def _filter_text(params: DriftParams) -> str:
    parts = []
    if params.apps:
        parts.append(f"app {', '.join(params.apps)}")
    if params.model_versions:
        parts.append(f"model version {', '.join(params.model_versions)}")
    return f" for {' and '.join(parts)}" if parts else ""


# --------------------------------------------------------------------------------------------
# Windows -> DriftInput
# --------------------------------------------------------------------------------------------


def _rate_name(key: str) -> str:
    return _RATE_NAMES.get(key, key)


def drift_input(
    frame: TrafficFrame,
    rows: npt.NDArray[np.bool_],
    *,
    unsafe_threshold: float = 0.5,
    columns: Sequence[str] | None = None,
) -> DriftInput:
    """One window of a frame as the input of :func:`evalwatch.checks.drift.run_drift`.

    Args:
        frame: The loaded frame.
        rows: Boolean mask of the window's rows.
        unsafe_threshold: ``toxicity.safety`` below this counts as unsafe.
        columns: Numeric and binary columns to include (default: all of the frame's).

    Returns:
        The window: numeric columns (0/1 metrics as rates), rates ``unsafe``, ``unscored`` and
        ``thumbs_down`` where the frame has their data, ratings with timestamps, embeddings
        with their responses as texts (None when the window has none).

    Examples:
        >>> from evalwatch.storage.db import make_engine, upgrade
        >>> e = make_engine("sqlite://"); _ = upgrade(e)
        >>> w = TimeWindow(start=datetime(2026, 11, 1, tzinfo=UTC),
        ...                end=datetime(2026, 11, 2, tzinfo=UTC))
        >>> f = load_frame(e, [w])
        >>> sorted(drift_input(f, f.between(w)).numeric)
        ['cost', 'input_tokens', 'latency_ms', 'output_tokens', 'response_length']
    """
    names = list(frame.numeric) if columns is None else [c for c in columns if c in frame.numeric]
    numeric: dict[str, npt.NDArray[Any]] = {}
    rates: dict[str, npt.NDArray[Any]] = {}
    for name in names:
        col = frame.numeric[name][rows]
        if name in frame.binary:
            rates[_rate_name(name)] = col[np.isfinite(col)] >= 0.5
        else:
            numeric[name] = col
    if _SAFETY_METRIC in frame.numeric and (columns is None or _SAFETY_METRIC in names):
        safety = frame.numeric[_SAFETY_METRIC][rows]
        rates["unsafe"] = safety[np.isfinite(safety)] < unsafe_threshold
    if frame.evaluated.any():
        rates["unscored"] = frame.errored[rows & frame.evaluated]
    if frame.thumb_rows.size:
        rates["thumbs_down"] = frame.thumb_down[rows[frame.thumb_rows]]
    embeddings = texts = None
    if frame.embeddings is not None:
        sel = rows[frame.emb_rows]
        if sel.any():
            embeddings = frame.embeddings[sel]
            texts = [str(t) for t in frame.responses[frame.emb_rows[sel]]]
    ratings = timestamps = None
    if frame.rating_rows.size:
        sel = rows[frame.rating_rows]
        ratings = frame.rating_values[sel]
        timestamps = frame.rating_ts[sel]
    return DriftInput(
        embeddings=embeddings,
        numeric=numeric,
        rates=rates,
        ratings=ratings,
        texts=texts,
        timestamps=timestamps,
    )


@dataclass(frozen=True)
class Scope:
    """A slice of the traffic: everything, one app, or one model version."""

    label: str
    app: str | None = None
    model_version: str | None = None
    split: str | None = None  # the dimension this scope splits on (None: overall)

    def dims(self) -> dict[str, str | None]:
        """``{"app": ..., "model_version": ...}`` as stored and read by alert rules."""
        return {"app": self.app, "model_version": self.model_version}

    def mask(self, frame: TrafficFrame) -> npt.NDArray[np.bool_]:
        """Rows of ``frame`` in this scope."""
        if self.split == "app":
            return np.asarray(frame.app == self.app, dtype=np.bool_)
        if self.split == "model_version":
            return np.asarray(frame.model_version == self.model_version, dtype=np.bool_)
        return np.ones(len(frame), dtype=np.bool_)


def _scopes(
    kinds: Sequence[ScopeKind], frame: TrafficFrame, rows: npt.NDArray[np.bool_], p: DriftParams
) -> list[Scope]:
    pinned_app = p.apps[0] if len(p.apps) == 1 else None
    pinned_version = p.model_versions[0] if len(p.model_versions) == 1 else None
    out: list[Scope] = []
    if "overall" in kinds:
        out.append(Scope("overall", pinned_app, pinned_version))
    for dim in ("app", "model_version"):
        if dim not in kinds:
            continue
        values = sorted({str(v) for v in getattr(frame, dim)[rows]})
        if len(values) < 2:
            continue  # one value: the same rows as overall
        for v in values:
            if dim == "app":
                out.append(Scope(f"app={v}", v, pinned_version, "app"))
            else:
                out.append(Scope(f"model_version={v}", pinned_app, v, "model_version"))
    return out


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass
class ScopeResult:
    """The drift report of one scope (p-values adjusted across the whole check).

    Attributes:
        scope: The scope.
        report: Its tests; ``p_adjusted`` and verdicts come from the check-wide adjustment.
        n_baseline: Baseline interactions in the scope.
        n_current: Current interactions in the scope.
        baseline_numeric: Baseline numeric columns (kept for the HTML report's plots).
        current_numeric: Current numeric columns.
    """

    scope: Scope
    report: DriftReport
    n_baseline: int
    n_current: int
    baseline_numeric: dict[str, npt.NDArray[np.float64]] = field(default_factory=dict)
    current_numeric: dict[str, npt.NDArray[np.float64]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The scope's label (``overall``, ``app=...``, ``model_version=...``)."""
        return self.scope.label


@dataclass
class AnomalySeries:
    """One anomaly series of one scope: every window's verdict, judged in the current window.

    Attributes:
        scope: The scope.
        feature: Series name, e.g. ``volume``, ``latency_ms.p95``, ``refusal.rate``.
        report: The windows and their verdicts (``evalwatch.checks.anomaly``).
        counts: Events per window (aligned with ``report.points``).
        current: The current window.
        now: Windows ending after this are incomplete and not judged.
        rate: The series is a rate judged on the variance-stabilised (Anscombe arcsine)
            scale: ``report`` holds that scale, :meth:`display` gives rates back.
    """

    scope: Scope
    feature: str
    report: AnomalyReport
    counts: list[int]
    current: TimeWindow
    now: datetime
    rate: bool = False

    def display(self, value: float | None, n: int) -> float | None:
        """A point's value (or expected value) in the series' own units.

        Args:
            value: ``point.value`` or ``point.expected``.
            n: Events in the window.

        Returns:
            The value; for rates, the rate of ``n`` events.
        """
        if value is None or not self.rate:
            return value
        out = _from_anscombe(value, n)
        return None if math.isnan(out) else out

    def judged(self) -> list[tuple[AnomalyPoint, int]]:
        """Complete windows inside the current window, with their event counts."""
        step = _FREQ_DELTA[self.report.freq]
        end = min(self.current.end, self.now)
        return [
            (p, c)
            for p, c in zip(self.report.points, self.counts, strict=True)
            if p.window_start >= self.current.start and p.window_start + step <= end
        ]

    def anomalies(self) -> list[tuple[AnomalyPoint, int]]:
        """The anomalous windows of the current window."""
        return [(p, c) for p, c in self.judged() if p.anomaly]

    @property
    def n_history(self) -> int:
        """Windows with a value before the current window."""
        return sum(
            1
            for p in self.report.points
            if p.window_start < self.current.start and p.value is not None
        )

    @property
    def verdict(self) -> str:
        """``anomaly``, ``no_anomaly`` or ``insufficient_data`` (nothing could be judged)."""
        judged = [p for p, _ in self.judged() if p.status == "ok"]
        if not judged:
            return "insufficient_data"
        return "anomaly" if any(p.anomaly for p in judged) else "no_anomaly"

    @property
    def max_abs_z(self) -> float | None:
        """The largest ``|robust z|`` judged in the current window."""
        zs = [abs(p.robust_z) for p, _ in self.judged() if p.robust_z is not None]
        return max(zs) if zs else None

    def summary(self) -> str:
        """One line: how many windows were anomalous and the worst one."""
        unit = self.report.freq
        found = self.anomalies()
        judged = [p for p, _ in self.judged() if p.status == "ok"]
        if not judged:
            return (
                f"{self.feature} ({_FREQ_WORD[self.report.freq]}): insufficient data "
                f"(no {unit} of the current window has enough history and events)"
            )
        if not found:
            return (
                f"{self.feature} ({_FREQ_WORD[self.report.freq]}): no anomaly in "
                f"{len(judged)} {unit}s"
            )
        worst, n_worst = max(found, key=lambda pc: abs(pc[0].robust_z or 0.0))
        scale = " on the arcsine scale" if self.rate else ""
        ups = sum(1 for p, _ in found if p.direction == "up")
        return (
            f"{self.feature} ({_FREQ_WORD[self.report.freq]}): {len(found)} anomalous "
            f"{unit}{'s' if len(found) > 1 else ''} of {len(judged)} ({ups} up, "
            f"{len(found) - ups} down); worst "
            f"{worst.window_start.strftime('%Y-%m-%d %H:%M')} UTC: "
            f"{_num(self.display(worst.value, n_worst))} vs expected "
            f"{_num(self.display(worst.expected, n_worst))} "
            f"(robust z {worst.robust_z or 0.0:+.1f}{scale})"
        )


def _num(x: float | None) -> str:
    if x is None:
        return "n/a"
    if x != 0 and abs(x) < 0.01:
        return f"{x:.2e}"
    return f"{x:,.3g}" if abs(x) < 1000 else f"{x:,.0f}"


@dataclass
class DriftOutcome:
    """What a drift check found, where it is stored, and how long it took.

    Attributes:
        report_key: Key shared by the stored ``drift_reports`` rows of this check.
        created_at: When the check ran (the rows' ``created_at``).
        params: The parameters.
        current: The current window.
        baseline: The baseline.
        scopes: One result per scope, ``overall`` first.
        anomalies: The anomaly series.
        embedding_model: The embedding model compared (None: no embeddings stored).
        timings: Seconds per step (``load``, ``drift``, ``anomalies``, ``store``, ``total``).
        html_path: Where the HTML report was written, if it was.
        n_rows_stored: Rows written to ``drift_reports``.
        no_data: One line per window that holds no interactions (current first), with the
            newest interaction the store does hold; such a check judges nothing and stores
            nothing.
        alerts: What the alert rules did after the report was stored.
        alert_error: Why the alert rules could not be evaluated (None: they were, or were
            not asked to be).
    """

    report_key: str
    created_at: datetime
    params: DriftParams
    current: TimeWindow
    baseline: Baseline
    scopes: list[ScopeResult]
    anomalies: list[AnomalySeries]
    embedding_model: str | None
    timings: dict[str, float] = field(default_factory=dict)
    html_path: Path | None = None
    n_rows_stored: int = 0
    no_data: list[str] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    alert_error: str | None = None

    @property
    def report(self) -> DriftReport:
        """The first scope's report (``overall`` unless it was not asked for)."""
        return self.scopes[0].report

    @property
    def drift_found(self) -> bool:
        """Whether any test of any scope found drift (the CLI exits 1)."""
        return any(s.report.drift_found for s in self.scopes)

    @property
    def anomaly_found(self) -> bool:
        """Whether any series has an anomalous window in the current window."""
        return any(a.verdict == "anomaly" for a in self.anomalies)

    @property
    def n_tests(self) -> int:
        """Tests with a verdict other than insufficient data, over all scopes."""
        return sum(
            1 for s in self.scopes for r in s.report.results if r.verdict != "insufficient_data"
        )

    def moved(self) -> list[tuple[ScopeResult, DriftTestResult]]:
        """Every drifted test with its scope.

        Returns:
            ``(scope, result)`` pairs scope by scope (``overall`` first), and within a scope
            the largest effect (in multiples of its floor) first.
        """
        return [
            (s, r)
            for s in self.scopes
            for r in sorted(
                (r for r in s.report.results if r.verdict == "drift"),
                key=lambda r: r.effect_ratio,
                reverse=True,
            )
        ]

    def headlines(self) -> list[dict[str, Any]]:
        """One entry per moved (scope, feature): its clearest summary and the evidence.

        Returns:
            Dicts with ``scope``, ``feature``, ``label`` (the feature, with the test for
            embedding tests), ``summary``, ``tests`` (test: effect),
            ``effects`` (as text) and ``p_adjusted`` (the largest adjusted p among them), in
            the order of :meth:`moved`.
        """
        groups: dict[tuple[str, str, str], list[DriftTestResult]] = {}
        for scope, r in self.moved():
            key = (scope.label, r.feature, r.test if r.family == "embedding" else "")
            groups.setdefault(key, []).append(r)
        out = []
        for (label, feature, _), results in groups.items():
            head = min(results, key=lambda r: _HEADLINE_ORDER.get(r.test, 9))
            out.append(
                {
                    "scope": label,
                    "feature": feature,
                    "label": f"{feature} ({head.test})" if head.family == "embedding" else feature,
                    "summary": head.summary,
                    "tests": {r.test: r.effect_size for r in results},
                    "effects": ", ".join(
                        f"{r.test} {r.effect_name} {_num(r.effect_size)}" for r in results
                    ),
                    "p_adjusted": max(r.p_adjusted or 0.0 for r in results),
                }
            )
        return out

    def to_markdown(self) -> str:
        """Markdown that leads with what moved and by how much, then anomalies and details.

        Returns:
            Markdown text.
        """
        overall = self.scopes[0]
        lines: list[str] = []
        moved = self.moved()
        if self.no_data:
            lines.append("## Drift check: no data")
            lines.append("")
            lines.extend(f"- {md_escape(line)}" for line in self.no_data)
            lines.append("")
            lines.append("Nothing was judged and no report was stored.")
            return "\n".join(lines)
        if moved:
            lines.append(f"## Drift check: drift in {len(moved)} of {self.n_tests} tests")
        else:
            lines.append("## Drift check: no drift")
        lines.append("")
        lines.append(
            f"Current {self.current.describe()} ({overall.n_current:,} interactions) vs "
            f"baseline {self.baseline.describe()} ({overall.n_baseline:,} interactions); "
            f"{len(self.scopes)} scope(s). Significance level {self.params.alpha:g} across "
            f"all {self.n_tests} tests (Benjamini-Hochberg), and each test's effect must reach "
            f"its floor. Report key `{self.report_key}`."
        )
        lines.append("")
        if moved:
            lines.append("### What moved")
            lines.append("")
            for h in self.headlines():
                lines.append(
                    f"- **{md_escape(h['scope'])}** {md_escape(h['summary'])} "
                    f"[{md_escape(h['effects'])}; adjusted p ≤ {format_p(h['p_adjusted'])}]"
                )
            lines.append("")
        else:
            lines.append("Nothing moved beyond its effect-size floor at the report's level.")
            lines.append("")
        found = [a for a in self.anomalies if a.verdict == "anomaly"]
        lines.append("### Anomalies in the current window")
        lines.append("")
        if found:
            for a in found:
                lines.append(f"- **{md_escape(a.scope.label)}** {md_escape(a.summary())}")
        else:
            judged = sum(1 for a in self.anomalies if a.verdict != "insufficient_data")
            lines.append(f"None ({judged} series judged).")
        lines.append("")
        for s in self.scopes:
            topic = next(
                (r for r in s.report.results if r.test == "topic_shares" and r.verdict == "drift"),
                None,
            )
            if topic is not None:
                lines.extend(_topic_lines(s.label, topic))
            new = next(
                (r for r in s.report.results if r.test == "new_topic" and r.verdict == "drift"),
                None,
            )
            if new is not None and new.details.get("examples"):
                lines.append(f"#### {md_escape(s.label)}: responses far from every baseline topic")
                lines.append("")
                lines.extend(f"- {md_escape(t)}" for t in new.details["examples"][:5])
                lines.append("")
        lines.append("### Scopes")
        lines.append("")
        lines.append("| scope | baseline | current | tests | drift | insufficient data |")
        lines.append("|---|---:|---:|---:|---:|---:|")
        for s in self.scopes:
            res = s.report.results
            lines.append(
                f"| {md_escape(s.label)} | {s.n_baseline:,} | {s.n_current:,} "
                f"| {sum(r.verdict != 'insufficient_data' for r in res)} "
                f"| {sum(r.verdict == 'drift' for r in res)} "
                f"| {sum(r.verdict == 'insufficient_data' for r in res)} |"
            )
        lines.append("")
        lines.append(f"### All tests: {md_escape(overall.label)}")
        lines.append("")
        lines += results_table(overall.report.results)
        lines.append("")
        return "\n".join(lines)

    def to_dict(self, full: bool = True) -> dict[str, Any]:
        """A JSON-safe summary (CLI ``--json``, the flow's return value).

        Args:
            full: Include every test of every scope and every anomaly series (else only
                per-scope counts and the series with anomalies).

        Returns:
            ``report_key``, ``drift_found``, ``anomaly_found``, windows, ``moved`` headlines,
            per-scope results and anomaly series.
        """
        return _json_safe(
            {
                "report_key": self.report_key,
                "created_at": self.created_at.isoformat(),
                "no_data": self.no_data,
                "alerts": self.alerts,
                "alert_error": self.alert_error,
                "drift_found": self.drift_found,
                "anomaly_found": self.anomaly_found,
                "alpha": self.params.alpha,
                "n_tests": self.n_tests,
                "current": self.current.as_json(),
                "baseline": self.baseline.as_json(),
                "embedding_model": self.embedding_model,
                "moved": self.headlines(),
                "scopes": [
                    {
                        "scope": s.label,
                        **s.scope.dims(),
                        "n_baseline": s.n_baseline,
                        "n_current": s.n_current,
                        "drift_found": s.report.drift_found,
                        "n_drift": sum(r.verdict == "drift" for r in s.report.results),
                        "n_insufficient": sum(
                            r.verdict == "insufficient_data" for r in s.report.results
                        ),
                    }
                    | (
                        {"results": [r.model_dump(mode="json") for r in s.report.results]}
                        if full
                        else {}
                    )
                    for s in self.scopes
                ],
                "anomalies": [
                    {
                        "scope": a.scope.label,
                        "feature": a.feature,
                        "verdict": a.verdict,
                        "summary": a.summary(),
                        "windows": [
                            {
                                "window_start": p.window_start.isoformat(),
                                "value": a.display(p.value, c),
                                "expected": a.display(p.expected, c),
                                "robust_z": p.robust_z,
                                "direction": p.direction,
                                "n": c,
                            }
                            for p, c in a.anomalies()
                        ],
                    }
                    for a in self.anomalies
                    if full or a.verdict == "anomaly"
                ],
                "timings": self.timings,
                "html": None if self.html_path is None else str(self.html_path),
                "n_rows_stored": self.n_rows_stored,
            }
        )


# Which result of a numeric column says "by how much" best, when several drifted.
_HEADLINE_ORDER: dict[str, int] = {"mean_shift": 0, "two_proportion": 0, "wasserstein": 1}


def _topic_lines(label: str, result: DriftTestResult) -> list[str]:
    clusters = result.details.get("grown", []) + result.details.get("shrunk", [])
    if not clusters:
        return []
    lines = [f"#### {md_escape(label)}: topic shares that changed", ""]
    lines.append("| cluster | baseline share | current share | change | examples |")
    lines.append("|---|---:|---:|---:|---|")
    for c in clusters:
        examples = " / ".join(md_escape(t) for t in c.get("examples", []))
        lines.append(
            f"| {c['cluster']} | {100 * c['baseline_share']:.1f}% "
            f"| {100 * c['current_share']:.1f}% | {100 * c['delta']:+.1f} pp | {examples} |"
        )
    lines.append("")
    return lines


def _json_safe(obj: Any) -> Any:
    """Plain JSON values: non-finite floats become None, numpy scalars Python ones."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, datetime):
        return obj.isoformat()
    return obj


def _finite_or_none(x: float | None) -> float | None:
    return x if x is None or math.isfinite(x) else None


# --------------------------------------------------------------------------------------------
# Anomaly series
# --------------------------------------------------------------------------------------------


def _noise_floor(values: npt.NDArray[np.float64], counts: npt.NDArray[np.int64], agg: str) -> float:
    """Sampling error of one window's aggregate at the history's typical window size."""
    busy = counts[counts > 0]
    if busy.size == 0:
        return 0.0
    n_typ = float(np.median(busy))
    if agg == "count":
        return math.sqrt(n_typ)  # Poisson
    if values.size < 2:
        return 0.0
    sd = float(np.std(values, ddof=1))
    if agg == "sum":
        mean = float(np.mean(values))
        return math.sqrt(n_typ * (sd * sd + mean * mean))  # compound Poisson
    return sd / math.sqrt(n_typ)


@dataclass
class _Prepared:
    """One series aggregated per window, waiting for the check-wide threshold."""

    scope: Scope
    feature: str
    starts: npt.NDArray[np.datetime64]
    values: npt.NDArray[np.float64]
    counts: npt.NDArray[np.int64]
    floor: float
    rate: bool = False


def _anscombe(successes: npt.NDArray[np.float64], n: npt.NDArray[np.int64]) -> Any:
    """Variance-stabilised rate ``arcsin(sqrt((x + 3/8) / (n + 3/4)))``: variance ~1/(4n).

    A rate near 0 is skewed (2 events in 10 at a 1 % base rate is a 0.6 % tail, not the
    "z = 6" a plain standard deviation says); on this scale a normal cut holds.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.arcsin(np.sqrt((successes + 0.375) / (n + 0.75)))


def _from_anscombe(y: float, n: int) -> float:
    """The rate of ``n`` events whose stabilised value is ``y`` (inverse of ``_anscombe``)."""
    if n <= 0:
        return math.nan
    return min(1.0, max(0.0, (math.sin(y) ** 2 * (n + 0.75) - 0.375) / n))


def _prepare_series(
    scope: Scope,
    frame: TrafficFrame,
    rows: npt.NDArray[np.bool_],
    current: TimeWindow,
    series_start: datetime,
    p: DriftParams,
) -> list[_Prepared]:
    freq = p.anomaly_freq
    start64 = to_datetime64(series_start)
    last64 = to_datetime64(current.end - timedelta(microseconds=1))
    hist_cut = to_datetime64(current.start)
    ts = frame.ts[rows]
    specs: list[tuple[str, npt.NDArray[np.float64] | None, str]] = [("volume", None, "count")]
    specs.append(("latency_ms.p95", frame.numeric["latency_ms"][rows], "p95"))
    specs.append(("cost.sum", frame.numeric["cost"][rows], "sum"))
    specs.append(("response_length.mean", frame.numeric["response_length"][rows], "mean"))
    if frame.evaluated.any():
        err = np.where(frame.evaluated[rows], frame.errored[rows].astype(np.float64), np.nan)
        specs.append(("error_rate", err, "rate"))
    for key in frame.score_columns():
        if key in frame.binary:
            specs.append((f"{_rate_name(key)}.rate", frame.numeric[key][rows], "rate"))
        else:
            specs.append((f"{key}.mean", frame.numeric[key][rows], "mean"))
    out: list[_Prepared] = []
    for feature, values, agg in specs:
        if values is None:
            t_ok, v_ok = ts, None
        else:
            finite = np.isfinite(values)
            if not finite.any():
                continue
            t_ok, v_ok = ts[finite], values[finite]
        starts, vals, counts = aggregate_series(
            t_ok,
            v_ok,
            freq=freq,
            agg="sum" if agg == "rate" else agg,  # type: ignore[arg-type]
            start=start64,
            end=last64,
        )
        hist = starts < hist_cut.astype(starts.dtype)
        if v_ok is None:
            floor = _noise_floor(np.empty(0), counts[hist], "count")
        elif agg == "rate":
            vals = _anscombe(vals, counts)
            busy = counts[hist & (counts > 0)]
            floor = 0.5 / math.sqrt(float(np.median(busy)) + 0.75) if busy.size else 0.0
        else:
            floor = _noise_floor(v_ok[t_ok < hist_cut], counts[hist], agg)
        if v_ok is not None:
            # Too few events for a mean, a rate or a p95: the window holds no value.
            vals = np.where(counts >= p.anomaly_min_events, vals, np.nan)
        out.append(_Prepared(scope, feature, starts, vals, counts, floor, rate=agg == "rate"))
    return out


def anomaly_threshold(p: DriftParams, n_windows: int) -> float:
    """The robust z-score above which a window is anomalous in this check.

    ``p.anomaly_threshold`` when given; otherwise the two-sided Bonferroni cut for
    ``n_windows`` judged windows at the report's ``alpha`` (never below the usual 3.5), so on
    stationary Gaussian noise the chance of any false anomaly in the check stays near
    ``alpha``, as for the drift tests.

    Args:
        p: The check's parameters.
        n_windows: Windows judged over every series and scope.

    Returns:
        The threshold.

    Examples:
        >>> round(anomaly_threshold(DriftParams(), 1800), 2)
        4.19
        >>> anomaly_threshold(DriftParams(), 10)
        3.5
    """
    if p.anomaly_threshold is not None:
        return p.anomaly_threshold
    from scipy import stats

    z = float(stats.norm.isf(p.alpha / (2 * max(n_windows, 1))))
    return max(3.5, z)


def _detect(
    prepared: Sequence[_Prepared], current: TimeWindow, p: DriftParams, now: datetime
) -> list[AnomalySeries]:
    step = _FREQ_DELTA[p.anomaly_freq]
    first, last = to_datetime64(current.start), to_datetime64(min(current.end, now))
    judged = 0
    for s in prepared:
        ends = s.starts.astype("datetime64[us]") + np.timedelta64(step)
        judged += int(np.sum((s.starts.astype("datetime64[us]") >= first) & (ends <= last)))
    threshold = anomaly_threshold(p, judged)
    out = []
    for s in prepared:
        report = detect_anomalies(
            s.starts,
            s.values,
            freq=p.anomaly_freq,
            method=p.anomaly_method,
            threshold=threshold,
            seasonal=True,
            agg="mean",
            min_scale=s.floor,
            start=s.starts[0],
            end=s.starts[-1],
        )
        out.append(
            AnomalySeries(
                scope=s.scope,
                feature=s.feature,
                report=report,
                counts=[int(c) for c in s.counts],
                current=current,
                now=now,
                rate=s.rate,
            )
        )
    return out


# --------------------------------------------------------------------------------------------
# The check
# --------------------------------------------------------------------------------------------


def _active_columns(
    frame: TrafficFrame, base: npt.NDArray[np.bool_], cur: npt.NDArray[np.bool_]
) -> list[str]:
    """Columns with values in either window, less numeric ones holding one single value.

    A column that is one constant across both windows (a fixed price, a fixed token count)
    cannot drift. It is left out rather than tested, so that it takes no place in the
    report's Benjamini-Hochberg family.
    """
    both = base | cur
    out = []
    for name, col in frame.numeric.items():
        values = col[both]
        values = values[np.isfinite(values)]
        if values.size == 0:
            continue
        if name not in frame.binary and float(values.min()) == float(values.max()):
            continue
        out.append(name)
    return out


def check_drift(
    engine: Engine,
    params: DriftParams | None = None,
    settings: Settings | None = None,
    *,
    html: Path | bool | None = None,
    store: bool = True,
    now: datetime | None = None,
    alerts: bool = True,
) -> DriftOutcome:
    """Run a drift and anomaly check on stored traffic, store its report, evaluate the rules.

    Args:
        engine: The store.
        params: Windows, scopes and test settings.
        settings: Settings; ``html=True`` writes to the store's report folder
            (:func:`evalwatch.reporting.location.report_folder`).
        html: Write the HTML report: ``True`` to the store's report folder, or a path.
        store: Write the ``drift_reports`` rows (one per test, one per anomaly series).
        now: The present: windows ending after it are not judged for anomalies.
        alerts: Evaluate the alert rules once the report is stored (a flow does it in its
            own task instead); the outcome's ``alerts`` and ``alert_error`` say how it went.

    Returns:
        The outcome; ``outcome.drift_found`` is what the CLI's exit code reports, and
        ``outcome.no_data`` says which window held no interactions (nothing judged, nothing
        stored).

    Raises:
        DriftInputError: Bad windows, an unknown baseline run, or nothing stored.

    Examples:
        >>> from evalwatch.storage.db import make_engine, upgrade
        >>> e = make_engine("sqlite://"); _ = upgrade(e)
        >>> p = DriftParams(current_end=datetime(2026, 11, 15, tzinfo=UTC), window="3d")
        >>> out = check_drift(e, p, store=False)
        >>> out.drift_found, out.scopes[0].n_current
        (False, 0)
    """
    t_total = time.perf_counter()
    params = params or DriftParams()
    now = _utc(now or utcnow())
    config = params.drift_config()
    current, baseline = resolve_windows(engine, params)
    history_days = params.anomaly_history_days or params.baseline_days
    series_start = current.start - timedelta(days=history_days)
    run_ids: npt.NDArray[np.int64] | None = None
    if baseline.run_id is not None:
        exists, run_ids = run_subjects(engine, baseline.run_id)
        if not exists:
            raise DriftInputError(f"no evaluation run {baseline.run_id}")
        if run_ids.size == 0:
            raise DriftInputError(
                f"evaluation run {baseline.run_id} scored no interactions (a test-set run?)"
            )

    t0 = time.perf_counter()
    windows = [TimeWindow(start=series_start, end=current.end)]
    if baseline.window is not None:
        windows.append(baseline.window)
    frame = load_frame(
        engine,
        windows,
        baseline_run=baseline.run_id,
        apps=params.apps,
        model_versions=params.model_versions,
        embedding_model=params.embedding_model,
    )
    timings = {"load": time.perf_counter() - t0}

    cur_rows = frame.between(current)
    if baseline.window is not None:
        base_rows = frame.between(baseline.window)
    else:
        assert run_ids is not None
        base_rows = np.isin(frame.ids, run_ids)
    no_data = _no_data(engine, params, current, baseline, cur_rows, base_rows)

    t0 = time.perf_counter()
    scopes = _scopes(params.scopes, frame, cur_rows | base_rows, params)
    raw: list[tuple[Scope, DriftReport, int, int, dict[str, Any], dict[str, Any]]] = []
    for scope in scopes:
        in_scope = scope.mask(frame)
        b, c = base_rows & in_scope, cur_rows & in_scope
        columns = _active_columns(frame, b, c)
        b_in = drift_input(frame, b, unsafe_threshold=params.unsafe_threshold, columns=columns)
        c_in = drift_input(frame, c, unsafe_threshold=params.unsafe_threshold, columns=columns)
        report = run_drift(b_in, c_in, config)
        raw.append((scope, report, int(b.sum()), int(c.sum()), b_in.numeric, c_in.numeric))
    # One Benjamini-Hochberg family across every scope's tests.
    pooled = [r for _, rep, *_ in raw for r in rep.results]
    adjusted = _apply_verdicts(pooled, config)
    results: list[ScopeResult] = []
    i = 0
    for scope, rep, nb, nc, b_num, c_num in raw:
        mine = adjusted[i : i + len(rep.results)]
        i += len(rep.results)
        report = DriftReport(
            results=mine, config=config, drift_found=any(r.verdict == "drift" for r in mine)
        )
        results.append(ScopeResult(scope, report, nb, nc, b_num, c_num))
    timings["drift"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    prepared: list[_Prepared] = []
    series_rows = frame.between(TimeWindow(start=series_start, end=current.end))
    for scope in _scopes(params.anomaly_scopes, frame, series_rows, params):
        rows = series_rows & scope.mask(frame)
        prepared.extend(_prepare_series(scope, frame, rows, current, series_start, params))
    series = _detect(prepared, current, params, now)
    timings["anomalies"] = time.perf_counter() - t0

    created = utcnow()
    key = content_hash(
        {
            "params": params.model_dump(mode="json"),
            "current": current.as_json(),
            "baseline": baseline.as_json(),
            "at": created.isoformat(),
        }
    )[:32]
    outcome = DriftOutcome(
        report_key=key,
        created_at=created,
        params=params,
        current=current,
        baseline=baseline,
        scopes=results,
        anomalies=series,
        embedding_model=frame.embedding_model,
        timings=timings,
        no_data=no_data,
    )
    # A window with no traffic judges nothing: storing its report would record a check that
    # did not happen (and could resolve alerts on no evidence).
    if store and not no_data:
        t0 = time.perf_counter()
        outcome.n_rows_stored = store_outcome(engine, outcome)
        timings["store"] = time.perf_counter() - t0
        if alerts:
            from evalwatch.alerting import evaluate_after_report

            t0 = time.perf_counter()
            outcome.alerts, outcome.alert_error = evaluate_after_report(engine)
            timings["alerts"] = time.perf_counter() - t0
    if html and not no_data:  # an HTML page of no tests would read as "no drift"
        from evalwatch.reporting.drift_report import write_drift_html

        if html is True:
            from evalwatch.reporting.location import report_folder

            # The folder of the store this check read, whatever settings' default store is.
            base = (settings or Settings()).model_copy(update={"database_url": str(engine.url)})
            path = report_folder(base) / f"drift-{key[:12]}.html"
        else:
            path = Path(html)
        t0 = time.perf_counter()
        outcome.html_path = write_drift_html(outcome, path)
        timings["html"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_total
    return outcome


def _no_data(
    engine: Engine,
    params: DriftParams,
    current: TimeWindow,
    baseline: Baseline,
    cur_rows: npt.NDArray[np.bool_],
    base_rows: npt.NDArray[np.bool_],
) -> list[str]:
    """The no-data line of each window that holds no interactions (see storage.windows)."""
    from evalwatch.storage.windows import no_data_message

    apps, versions = params.apps, params.model_versions
    out = []
    if not cur_rows.any():
        out.append(
            no_data_message(engine, current.start, current.end, apps=apps, model_versions=versions)
        )
    if baseline.window is not None and not base_rows.any():
        out.append(
            no_data_message(
                engine,
                baseline.window.start,
                baseline.window.end,
                apps=apps,
                model_versions=versions,
                what="baseline interactions",
            )
        )
    return out


def outcome_rows(outcome: DriftOutcome) -> list[dict[str, Any]]:
    """The ``drift_reports`` rows of an outcome: one per test, one per anomaly series.

    Args:
        outcome: A check's outcome.

    Returns:
        Row dicts keyed by column name.
    """
    rows: list[dict[str, Any]] = []
    base_json = outcome.baseline.as_json()
    cur_json = outcome.current.as_json()
    for s in outcome.scopes:
        scope = {**s.scope.dims(), "label": s.label}
        for r in s.report.results:
            details = {
                **r.details,
                "effect_floor": r.effect_floor,
                "ci": list(r.ci) if r.ci is not None else None,
                "alpha": outcome.params.alpha,
            }
            if r.family == "embedding":
                details["embedding_model"] = outcome.embedding_model
            rows.append(
                {
                    "report_key": outcome.report_key,
                    "created_at": outcome.created_at,
                    "scope": scope,
                    "baseline": {**base_json, "n": s.n_baseline},
                    "current": {**cur_json, "n": s.n_current},
                    "test": r.test,
                    "feature": r.feature,
                    "family": r.family,
                    "n_baseline": r.n_baseline,
                    "n_current": r.n_current,
                    "statistic": _finite_or_none(r.statistic),
                    "effect_size": _finite_or_none(r.effect_size),
                    "effect_name": r.effect_name[:64],
                    "p_value": r.p_value,
                    "p_adjusted": r.p_adjusted,
                    "verdict": r.verdict,
                    "summary": r.summary,
                    "details": _json_safe(details),
                }
            )
    for a in outcome.anomalies:
        found = a.anomalies()
        rows.append(
            {
                "report_key": outcome.report_key,
                "created_at": outcome.created_at,
                "scope": {**a.scope.dims(), "label": a.scope.label},
                "baseline": {
                    "kind": "history",
                    "windows": a.n_history,
                    "start": outcome.current.start.isoformat(),
                },
                "current": cur_json,
                "test": f"anomaly_{a.report.method}",
                "feature": a.feature,
                "family": "anomaly",
                "n_baseline": a.n_history,
                "n_current": len(a.judged()),
                "statistic": a.max_abs_z,
                "effect_size": a.max_abs_z,
                "effect_name": "robust z",
                "p_value": None,
                "p_adjusted": None,
                "verdict": a.verdict,
                "summary": a.summary(),
                "details": _json_safe(
                    {
                        "freq": a.report.freq,
                        "method": a.report.method,
                        "threshold": a.report.threshold,
                        "scale": "arcsine" if a.rate else "linear",
                        "anomalies": [
                            {
                                "window_start": p.window_start.isoformat(),
                                "value": a.display(p.value, c),
                                "expected": a.display(p.expected, c),
                                "scale": p.scale,
                                "robust_z": p.robust_z,
                                "cutoff": p.cutoff,
                                "direction": p.direction,
                                "n": c,
                            }
                            for p, c in found
                        ],
                    }
                ),
            }
        )
    return rows


def store_outcome(engine: Engine, outcome: DriftOutcome) -> int:
    """Store an outcome's rows in ``drift_reports`` (one transaction).

    Args:
        engine: The store.
        outcome: A check's outcome.

    Returns:
        Rows written.
    """
    return insert_drift_rows(engine, outcome_rows(outcome))
