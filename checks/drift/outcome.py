"""The result types of a drift check on stored traffic: windows, scopes, anomaly series.

:func:`evalwatch.runs.drift.check_drift` fills a :class:`DriftOutcome`; the CLI, the flows and
:mod:`evalwatch.reporting` read it (rendering lives there, not here). :class:`DriftParams` says
what a check compares and how. Nothing here does I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from evalwatch.checks.anomaly import AnomalyPoint, AnomalyReport, from_anscombe
from evalwatch.checks.drift.config import DriftConfig
from evalwatch.checks.drift.results import DriftReport, DriftTestResult
from evalwatch.checks.fairness import FairnessReport
from evalwatch.core import parse_duration

__all__ = [
    "FREQ_DELTA",
    "HEADLINE_ORDER",
    "AnomalySeries",
    "Baseline",
    "DriftOutcome",
    "DriftParams",
    "Freq",
    "Scope",
    "ScopeKind",
    "ScopeResult",
    "ScopedRows",
    "TimeWindow",
    "as_utc",
    "format_value",
    "json_safe",
]

ScopeKind = Literal["overall", "app", "model_version"]
Freq = Literal["hour", "day"]

FREQ_DELTA = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
_FREQ_WORD = {"hour": "hourly", "day": "daily"}
# Which result of a feature says "by how much" best, when several drifted.
HEADLINE_ORDER: dict[str, int] = {"mean_shift": 0, "two_proportion": 0, "wasserstein": 1}


class ScopedRows(Protocol):
    """Rows with an app and a model version each (what a :class:`Scope` selects from)."""

    app: npt.NDArray[np.object_]
    model_version: npt.NDArray[np.object_]

    def __len__(self) -> int:
        """Number of rows."""
        ...


def _scope_list(*kinds: ScopeKind) -> list[ScopeKind]:
    return list(kinds)


def as_utc(dt: datetime) -> datetime:
    """An aware UTC time (a naive one is taken as UTC)."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


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
        return f"{as_utc(self.start).strftime(fmt)} → {as_utc(self.end).strftime(fmt)} UTC"

    def as_json(self) -> dict[str, str]:
        """``{"start": ISO, "end": ISO}`` for the stored report."""
        return {"start": as_utc(self.start).isoformat(), "end": as_utc(self.end).isoformat()}


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

    def mask(self, frame: ScopedRows) -> npt.NDArray[np.bool_]:
        """Rows of ``frame`` (a traffic frame of ``evalwatch.storage``) in this scope."""
        if self.split == "app":
            return np.asarray(frame.app == self.app, dtype=np.bool_)
        if self.split == "model_version":
            return np.asarray(frame.model_version == self.model_version, dtype=np.bool_)
        return np.ones(len(frame), dtype=np.bool_)


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
        out = from_anscombe(value, n)
        return None if math.isnan(out) else out

    def judged(self) -> list[tuple[AnomalyPoint, int]]:
        """Complete windows inside the current window, with their event counts."""
        step = FREQ_DELTA[self.report.freq]
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
            f"{format_value(self.display(worst.value, n_worst))} vs expected "
            f"{format_value(self.display(worst.expected, n_worst))} "
            f"(robust z {worst.robust_z or 0.0:+.1f}{scale})"
        )

    def row(
        self, *, report_key: str, created_at: datetime, dims: dict[str, str | None], test: str
    ) -> dict[str, Any]:
        """The series' ``drift_reports`` row (family ``anomaly``), as alert rules read it.

        Args:
            report_key: Key of the report the row belongs to.
            created_at: When the check ran.
            dims: The scope's dimensions as stored (``app``/``model_version`` for traffic,
                ``host``/``gpu``/``model`` for metric samples).
            test: The row's test name, e.g. ``anomaly_mad`` (``anomaly*`` marks anomaly rows).

        Returns:
            The row: each anomalous window in ``details.anomalies``, values in the series'
            own units (:meth:`display`).

        Example:
            ``series.row(report_key=k, created_at=now, dims=series.scope.dims(),
            test="anomaly_mad")["verdict"]`` is ``"anomaly"`` when a judged window was.
        """
        found = [
            {
                "window_start": p.window_start.isoformat(),
                "value": self.display(p.value, c),
                "expected": self.display(p.expected, c),
                "scale": p.scale,
                "robust_z": p.robust_z,
                "cutoff": p.cutoff,
                "direction": p.direction,
                "n": c,
            }
            for p, c in self.anomalies()
        ]
        return {
            "report_key": report_key,
            "created_at": created_at,
            "scope": {**dims, "label": self.scope.label},
            "baseline": {
                "kind": "history",
                "windows": self.n_history,
                "start": self.current.start.isoformat(),
            },
            "current": self.current.as_json(),
            "test": test,
            "feature": self.feature,
            "family": "anomaly",
            "n_baseline": self.n_history,
            "n_current": len(self.judged()),
            "statistic": self.max_abs_z,
            "effect_size": self.max_abs_z,
            "effect_name": "robust z",
            "p_value": None,
            "p_adjusted": None,
            "verdict": self.verdict,
            "summary": self.summary(),
            "details": json_safe(
                {
                    "freq": self.report.freq,
                    "method": self.report.method,
                    "threshold": self.report.threshold,
                    "scale": "arcsine" if self.rate else "linear",
                    "anomalies": found,
                }
            ),
        }


def format_value(x: float | None, missing: str = "n/a") -> str:
    """A value for a summary line or a report cell (``missing`` when there is none).

    Examples:
        >>> format_value(0.004), format_value(12.345), format_value(12345.6), format_value(None)
        ('4.00e-03', '12.3', '12,346', 'n/a')
    """
    if x is None:
        return missing
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
        fairness: The current window's fairness report (segments against the rest; None:
            not computed), stored as rows of family ``"fairness"``.
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
    fairness: FairnessReport | None = None

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
            head = min(results, key=lambda r: HEADLINE_ORDER.get(r.test, 9))
            out.append(
                {
                    "scope": label,
                    "feature": feature,
                    "label": f"{feature} ({head.test})" if head.family == "embedding" else feature,
                    "summary": head.summary,
                    "tests": {r.test: r.effect_size for r in results},
                    "effects": ", ".join(
                        f"{r.test} {r.effect_name} {format_value(r.effect_size)}" for r in results
                    ),
                    "p_adjusted": max(r.p_adjusted or 0.0 for r in results),
                }
            )
        return out

    def to_dict(self, full: bool = True) -> dict[str, Any]:
        """A JSON-safe summary (CLI ``--json``, the flow's return value).

        Args:
            full: Include every test of every scope and every anomaly series (else only
                per-scope counts and the series with anomalies).

        Returns:
            ``report_key``, ``drift_found``, ``anomaly_found``, windows, ``moved`` headlines,
            per-scope results and anomaly series.
        """
        return json_safe(
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
                "fairness": (
                    None
                    if self.fairness is None
                    else self.fairness.model_dump(mode="json")
                    if full
                    else {
                        "gap_found": self.fairness.gap_found,
                        "gaps": [g.model_dump(mode="json") for g in self.fairness.gaps()],
                    }
                ),
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


def json_safe(obj: Any) -> Any:
    """Plain JSON values: non-finite floats become None, numpy scalars Python ones.

    Examples:
        >>> json_safe({"x": float("nan"), "n": np.int64(3)})
        {'x': None, 'n': 3}
    """
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, datetime):
        return obj.isoformat()
    return obj
