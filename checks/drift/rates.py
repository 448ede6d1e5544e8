"""Rates and ratings: the two-proportion test, the rating distribution and the rating trend."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

from evalwatch.checks.drift.base import (
    ArrayLike,
    ColumnKind,
    DriftTestDescriptor,
    FloatArray,
    ResultBuilder,
    Sample,
    finite,
    format_pct,
    two_sample_runner,
    z_crit,
)
from evalwatch.checks.drift.config import DriftConfig
from evalwatch.checks.drift.results import DriftTestResult
from evalwatch.checks.intervals import newcombe_interval

__all__ = ["DESCRIPTORS", "chi_square_ratings", "rating_trend", "two_proportion_test"]

_RATE_EFFECT = "|Δrate|"
_CHI_EFFECT = "Cramér's V"
_TREND_EFFECT = "|Spearman ρ|"

_pct = format_pct


def two_proportion_test(
    baseline: ArrayLike,
    current: ArrayLike,
    *,
    feature: str = "rate",
    config: DriftConfig | None = None,
) -> DriftTestResult:
    """Compare two rates: pooled two-proportion z-test, Fisher's exact test when small.

    Fisher's exact test is used when any expected cell count of the 2x2 table is below 5.

    Args:
        baseline: Baseline booleans (e.g. refusal flags).
        current: Current booleans.
        feature: Rate name.
        config: Report settings.

    Returns:
        The test result; ``effect_size`` = |current rate - baseline rate|; ``ci`` is the
        Newcombe interval of the signed difference.

    Examples:
        >>> r = two_proportion_test([True] * 5 + [False] * 95, [True] * 20 + [False] * 80,
        ...                         feature="refusal")
        >>> r.summary
        'refusal rate 5.0% → 20.0% (+15.0 pp)'
    """
    config = config or DriftConfig()
    b = np.asarray(baseline, dtype=bool).ravel()
    c = np.asarray(current, dtype=bool).ravel()
    need = config.min_samples.rates
    rb = ResultBuilder(config, "two_proportion", feature, "rate", _RATE_EFFECT, b.size, c.size)
    if rb.too_few(need):
        return rb.insufficient(need)
    k1, n1, k2, n2 = int(b.sum()), int(b.size), int(c.sum()), int(c.size)
    p1, p2 = k1 / n1, k2 / n2
    pooled = (k1 + k2) / (n1 + n2)
    table = np.array([[k1, n1 - k1], [k2, n2 - k2]])
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    if expected.min() < 5:
        method = "fisher_exact"
        fisher = stats.fisher_exact(table)
        p, statistic = float(fisher.pvalue), float(p2 - p1)
    else:
        method = "z"
        se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
        statistic = (p2 - p1) / se
        p = float(2 * stats.norm.sf(abs(statistic)))
    ci = newcombe_interval(k1, n1, k2, n2, z_crit(config.ci_level))
    return rb.result(
        statistic=statistic,
        effect_size=abs(p2 - p1),
        p_value=p,
        ci=ci,
        summary=f"{feature} rate {_pct(p1)} → {_pct(p2)} ({100 * (p2 - p1):+.1f} pp)",
        details={
            "ci_of": "rate(current) - rate(baseline)",
            "rate_baseline": p1,
            "rate_current": p2,
            "count_baseline": k1,
            "count_current": k2,
            "method": method,
        },
    )


def _ratings(values: ArrayLike) -> npt.NDArray[np.int64]:
    arr = finite(values)
    ints = np.rint(arr)
    if np.any(np.abs(arr - ints) > 1e-9) or np.any((ints < 1) | (ints > 5)):
        raise ValueError("ratings must be integers from 1 to 5 (NaN for missing)")
    return ints.astype(np.int64)


def chi_square_ratings(
    baseline: ArrayLike,
    current: ArrayLike,
    *,
    feature: str = "rating",
    config: DriftConfig | None = None,
) -> DriftTestResult:
    """Chi-square test of the 1-5 rating distribution; effect size Cramér's V.

    Args:
        baseline: Baseline ratings (1-5, NaN for missing).
        current: Current ratings.
        feature: Name used in the result.
        config: Report settings.

    Returns:
        The test result with both distributions and mean ratings in ``details``.

    Examples:
        >>> r = chi_square_ratings([5] * 60 + [4] * 40, [5] * 30 + [4] * 40 + [1] * 30)
        >>> r.verdict
        'drift'
    """
    config = config or DriftConfig()
    b, c = _ratings(baseline), _ratings(current)
    need = config.min_samples.ratings
    rb = ResultBuilder(config, "chi_square", feature, "rating", _CHI_EFFECT, b.size, c.size)
    if rb.too_few(need):
        return rb.insufficient(need)
    nb = np.bincount(b, minlength=6)[1:]
    nc = np.bincount(c, minlength=6)[1:]
    table = np.vstack([nb, nc])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        chi2, p, low_cells = 0.0, 1.0, 0
    else:
        chi = stats.chi2_contingency(table, correction=False)
        chi2, p = float(chi.statistic), float(chi.pvalue)
        low_cells = int(np.sum(chi.expected_freq < 5))
    v = math.sqrt(chi2 / table.sum())
    shb, shc = nb / b.size, nc / c.size
    mb, mc = float(b.mean()), float(c.mean())
    low_b, low_c = float(shb[:2].sum()), float(shc[:2].sum())
    return rb.result(
        statistic=chi2,
        effect_size=v,
        p_value=p,
        summary=(
            f"{feature}: mean {mb:.2f} → {mc:.2f}; 1-2 stars {_pct(low_b)} → {_pct(low_c)}, "
            f"5 stars {_pct(float(shb[4]))} → {_pct(float(shc[4]))}"
        ),
        details={
            "distribution_baseline": [float(x) for x in shb],
            "distribution_current": [float(x) for x in shc],
            "mean_baseline": mb,
            "mean_current": mc,
            "cells_expected_below_5": low_cells,
        },
    )


def _seconds(timestamps: ArrayLike) -> FloatArray:
    arr = np.asarray(timestamps)
    if np.issubdtype(arr.dtype, np.datetime64):
        return arr.astype("datetime64[ns]").astype(np.int64).astype(np.float64) / 1e9
    if arr.dtype == object:
        # datetime objects; only differences matter for a trend, so the epoch is irrelevant.
        return np.array([t.timestamp() if hasattr(t, "timestamp") else t for t in arr], float)
    return arr.astype(np.float64)


def rating_trend(
    timestamps: ArrayLike,
    ratings: ArrayLike,
    *,
    feature: str = "rating",
    config: DriftConfig | None = None,
) -> DriftTestResult:
    """Trend of ratings over time within one window (Spearman correlation with time).

    Args:
        timestamps: Times aligned with ``ratings`` (datetime64, UTC datetimes or seconds).
        ratings: Ratings 1-5 (NaN for missing).
        feature: Name used in the result.
        config: Report settings.

    Returns:
        The test result; ``effect_size`` = |Spearman ρ|, ``details["slope_per_day"]`` the least
        squares slope in stars per day.

    Examples:
        >>> import numpy as np
        >>> t = np.arange(200) * 3600.0
        >>> r = rating_trend(t, np.where(np.arange(200) < 100, 5, 2))
        >>> r.details["direction"]
        'down'
    """
    config = config or DriftConfig()
    t = _seconds(timestamps)
    y = np.asarray(ratings, dtype=np.float64).ravel()
    if t.size != y.size:
        raise ValueError("timestamps and ratings must have the same length")
    keep = np.isfinite(y) & np.isfinite(t)
    t, y = t[keep], _ratings(y[keep]).astype(np.float64)
    need = config.min_samples.trend
    rb = ResultBuilder(config, "rating_trend", feature, "rating", _TREND_EFFECT, 0, int(y.size))
    if y.size < need:
        return rb.insufficient(need, reason=f"{y.size} ratings in the current window, need {need}")
    if np.ptp(t) == 0 or np.ptp(y) == 0:
        rho, p, slope = 0.0, 1.0, 0.0
        note = "constant time or rating: no trend can exist"
    else:
        sp = stats.spearmanr(t, y)
        rho, p = float(sp.statistic), float(sp.pvalue)
        slope = float(stats.linregress(t / 86400.0, y).slope)
        note = ""
    direction = "up" if rho > 0 else "down" if rho < 0 else "flat"
    details: dict[str, Any] = {"spearman_rho": rho, "slope_per_day": slope, "direction": direction}
    if note:
        details["note"] = note
    return rb.result(
        statistic=rho,
        effect_size=abs(rho),
        p_value=p,
        summary=(
            f"{feature}: trend {direction} within the current window "
            f"(Spearman ρ {rho:+.3f}, {slope:+.3f} stars/day)"
        ),
        details=details,
    )


def _run_trend(b: Sample, c: Sample, feature: str, config: DriftConfig) -> list[DriftTestResult]:
    if c.timestamps is None:
        raise ValueError("the rating trend needs the current window's timestamps")
    return [rating_trend(c.timestamps, c.values, feature=feature, config=config)]


_RATE: frozenset[ColumnKind] = frozenset({"rate"})
_RATING: frozenset[ColumnKind] = frozenset({"rating"})

DESCRIPTORS: tuple[DriftTestDescriptor, ...] = (
    DriftTestDescriptor(
        "two_proportion",
        "rate",
        _RATE,
        {"two_proportion": _RATE_EFFECT},
        two_sample_runner(two_proportion_test),
    ),
    DriftTestDescriptor(
        "chi_square",
        "rating",
        _RATING,
        {"chi_square": _CHI_EFFECT},
        two_sample_runner(chi_square_ratings),
    ),
    DriftTestDescriptor(
        "rating_trend",
        "rating",
        _RATING,
        {"rating_trend": _TREND_EFFECT},
        _run_trend,
        within_window=True,
    ),
)
