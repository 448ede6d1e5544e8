"""Summary statistics of scores: count, mean, a 95% t-interval and the unscored count.

Pure functions and streaming accumulators (Welford's algorithm, mergeable), so a run over
millions of scores summarises in constant memory. No I/O.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, Field

from evalwatch.checks.intervals import wilson_interval

__all__ = [
    "MetricAccumulator",
    "MetricSummary",
    "ScoreSummarizer",
    "summarize",
    "t_interval",
    "wilson_interval",
]

_MAX_REASONS = 10


def t_interval(
    mean: float, std: float, n: int, confidence: float = 0.95
) -> tuple[float, float] | None:
    """Student-t confidence interval of a mean; None with fewer than two values.

    Args:
        mean: Sample mean.
        std: Sample standard deviation (ddof=1).
        n: Number of values.
        confidence: Coverage, e.g. 0.95.

    Returns:
        (low, high), or None when ``n < 2`` (no spread to estimate).

    Examples:
        >>> lo, hi = t_interval(1.0, 1.0, 4)
        >>> round(lo, 3), round(hi, 3)
        (-0.591, 2.591)
    """
    if n < 2:
        return None
    if std == 0.0:
        return (mean, mean)
    from scipy import stats  # imported here: scipy.stats is slow to import

    half = float(stats.t.ppf(0.5 + confidence / 2.0, n - 1)) * std / math.sqrt(n)
    return (mean - half, mean + half)


class MetricSummary(BaseModel):
    """One metric's summary. ``mean`` is None when nothing was scored (never a made-up 0)."""

    evaluator: str
    metric: str
    model_version: str | None = Field(None, description="Set for per-version summaries.")
    count: int = Field(description="Scored values.")
    mean: float | None = None
    std: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    confidence: float = 0.95
    unscored: int = 0
    unscored_reasons: dict[str, int] = Field(default_factory=dict)
    status: str = Field(
        "ok", description="'ok', or 'insufficient_data' with fewer than two values."
    )


@dataclass
class MetricAccumulator:
    """Streaming count/mean/variance (Welford) plus unscored reasons.

    Examples:
        >>> acc = MetricAccumulator()
        >>> for v in (1.0, 2.0, 3.0):
        ...     acc.add(v)
        >>> acc.add(None, "error: timeout")
        >>> acc.count, acc.mean, acc.unscored
        (3, 2.0, 1)
    """

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    unscored: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    # Every value so far was 0 or 1: a rate, whose interval is Wilson's, not Student's.
    binary: bool = True

    def add(self, value: float | None, reason: str | None = None) -> None:
        """Add one scored value, or one unscored result (``value`` None) with its reason."""
        if value is None:
            self.unscored += 1
            key = reason or "unscored"
            # Keep a bounded set of distinct reasons; the rest are pooled.
            if key in self.reasons or len(self.reasons) < _MAX_REASONS:
                self.reasons[key] += 1
            else:
                self.reasons["(other reasons)"] += 1
            return
        self.count += 1
        self.binary = self.binary and value in (0.0, 1.0)
        delta = value - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (value - self.mean)

    def add_many(self, values: Sequence[float]) -> None:
        """Add many scored values at once (vectorised; same result as adding one by one)."""
        if not values:
            return
        arr = np.asarray(values, dtype=np.float64)
        mean = float(arr.mean())
        self.merge(
            MetricAccumulator(
                count=len(arr),
                mean=mean,
                m2=float(((arr - mean) ** 2).sum()),
                binary=bool(np.isin(arr, (0.0, 1.0)).all()),
            )
        )

    def merge(self, other: MetricAccumulator) -> None:
        """Fold another accumulator into this one (Chan et al.'s parallel update)."""
        if other.count:
            self.binary = self.binary and other.binary
            n = self.count + other.count
            delta = other.mean - self.mean
            self.mean += delta * other.count / n
            self.m2 += other.m2 + delta * delta * self.count * other.count / n
            self.count = n
        self.unscored += other.unscored
        self.reasons.update(other.reasons)

    @property
    def std(self) -> float | None:
        """Sample standard deviation, None with fewer than two values."""
        return math.sqrt(max(self.m2, 0.0) / (self.count - 1)) if self.count > 1 else None

    def summary(
        self,
        evaluator: str,
        metric: str,
        model_version: str | None = None,
        confidence: float = 0.95,
    ) -> MetricSummary:
        """The :class:`MetricSummary` of what was added."""
        std = self.std
        ci: tuple[float, float] | None = None
        if std is not None and self.binary:
            ci = wilson_interval(round(self.mean * self.count), self.count, confidence)
        elif std is not None:
            ci = t_interval(self.mean, std, self.count, confidence)
        return MetricSummary(
            evaluator=evaluator,
            metric=metric,
            model_version=model_version,
            count=self.count,
            mean=self.mean if self.count else None,
            std=std,
            ci_low=ci[0] if ci else None,
            ci_high=ci[1] if ci else None,
            confidence=confidence,
            unscored=self.unscored,
            unscored_reasons=dict(self.reasons.most_common()),
            status="ok" if self.count >= 2 else "insufficient_data",
        )


def summarize(
    evaluator: str,
    metric: str,
    values: Iterable[float | None],
    reasons: Iterable[str | None] | None = None,
    confidence: float = 0.95,
) -> MetricSummary:
    """Summarise one metric's values; None values count as unscored.

    Args:
        evaluator: Evaluator name.
        metric: Metric name.
        values: Scored values, None for unscored results.
        reasons: Optional reasons aligned with ``values`` (used for the None ones).
        confidence: Interval coverage.

    Returns:
        The summary.

    Examples:
        >>> s = summarize("heuristics", "refusal", [0.0, 1.0, None])
        >>> s.count, s.mean, s.unscored
        (2, 0.5, 1)
    """
    acc = MetricAccumulator()
    if reasons is None:
        for v in values:
            acc.add(v)
    else:
        for v, r in zip(values, reasons, strict=True):
            acc.add(v, r)
    return acc.summary(evaluator, metric, confidence=confidence)


class ScoreSummarizer:
    """Accumulates scores per (evaluator, metric) and per (evaluator, metric, model version).

    Examples:
        >>> s = ScoreSummarizer()
        >>> s.add("heuristics", "empty_response", "v1", 0.0)
        >>> s.add("heuristics", "empty_response", "v2", 1.0)
        >>> [m.mean for m in s.overall()], len(s.by_model_version())
        ([0.5], 2)
    """

    def __init__(self, confidence: float = 0.95) -> None:
        self.confidence = confidence
        self._overall: dict[tuple[str, str], MetricAccumulator] = {}
        self._by_version: dict[tuple[str, str, str], MetricAccumulator] = {}

    def add(
        self,
        evaluator: str,
        metric: str,
        model_version: str | None,
        value: float | None,
        reason: str | None = None,
    ) -> None:
        """Add one result (``value`` None when unscored)."""
        self._overall.setdefault((evaluator, metric), MetricAccumulator()).add(value, reason)
        if model_version is not None:
            key = (evaluator, metric, model_version)
            self._by_version.setdefault(key, MetricAccumulator()).add(value, reason)

    def add_many(
        self,
        evaluator: str,
        metric: str,
        model_version: str | None,
        values: Sequence[float],
        unscored_reasons: Sequence[str] = (),
    ) -> None:
        """Add a batch of one metric's results: scored values and unscored reasons."""
        targets = [self._overall.setdefault((evaluator, metric), MetricAccumulator())]
        if model_version is not None:
            key = (evaluator, metric, model_version)
            targets.append(self._by_version.setdefault(key, MetricAccumulator()))
        for acc in targets:
            acc.add_many(values)
            for reason in unscored_reasons:
                acc.add(None, reason)

    def overall(self) -> list[MetricSummary]:
        """One summary per (evaluator, metric), in first-seen order."""
        return [
            acc.summary(ev, metric, confidence=self.confidence)
            for (ev, metric), acc in self._overall.items()
        ]

    def by_model_version(self) -> list[MetricSummary]:
        """One summary per (evaluator, metric, model version): by version, then metric order."""
        order = {key: i for i, key in enumerate(self._overall)}
        keys = sorted(self._by_version, key=lambda k: (k[2], order[(k[0], k[1])]))
        return [self._by_version[k].summary(k[0], k[1], k[2], self.confidence) for k in keys]
