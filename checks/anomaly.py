"""Anomalies over time: robust, seasonality-aware baselines for per-window series.

Events (a timestamp and a value each) are aggregated into hourly or daily windows (volume,
mean score, p95 latency, error rate, cost), and each window is compared with a baseline built
only from the windows before it, so an anomaly never hides itself:

* ``method="mad"``: expected value = median of the history, scale = 1.4826 x MAD (a standard
  deviation for Gaussian noise, unmoved by a few outliers). With ``seasonal=True`` and at least
  three cycles of history (3 days of hourly windows, 3 weeks of daily ones), the expected value
  is the median of the same hour of day (day of week) and the scale the MAD of the history's
  leave-one-out residuals from that profile, so a normal daily peak is not an anomaly.
* ``method="ewma"``: exponentially weighted level and variance, updated after each window with
  the value clipped to the anomaly band (a spike does not drag the baseline up); seasonal by
  keeping one level per hour of day when each hour has three cycles of history.

A window is anomalous when its robust z-score ``(value - expected) / scale`` exceeds the
threshold, read as a normal z and widened while the history is short (the scale of a few
windows is itself noisy; see ``detect_anomalies``). On Gaussian noise this keeps false flags
near the nominal 0.05 % per window at the default 3.5.
Windows without events hold no value (``status="no_data"``) except for volume, where an empty
window is a real zero; windows with too little history say ``"insufficient_history"``.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict
from scipy import stats

__all__ = [
    "AnomalyPoint",
    "AnomalyReport",
    "aggregate_series",
    "anscombe_rate",
    "detect_anomalies",
    "from_anscombe",
    "noise_floor",
]

Freq = Literal["hour", "day"]
Method = Literal["mad", "ewma"]
Agg = Literal["mean", "sum", "count", "p95", "rate"]
Status = Literal["ok", "insufficient_history", "no_data", "not_judged"]

_MAD_TO_SD = 1.4826  # 1 / Phi^-1(3/4): MAD of Gaussian noise -> its standard deviation
_MEAN_AD_TO_SD = 1.2533  # sqrt(pi / 2): mean absolute deviation -> standard deviation
_PERIOD = {"hour": 24, "day": 7}  # hour of day, day of week
_UNIT = {"hour": "h", "day": "D"}
_DEFAULT_HISTORY = {"hour": 14 * 24, "day": 8 * 7}
_DEFAULT_MIN_HISTORY = {"hour": 24, "day": 7}
_MIN_CYCLES = 3
_MAD_EFFICIENCY = 0.37  # asymptotic efficiency of the MAD relative to the standard deviation
_SLOT_SPAN_CYCLES = 4  # EWMA span of a same-hour (same-weekday) level, in cycles


class AnomalyPoint(BaseModel):
    """One window of the series and its verdict.

    Attributes:
        window_start: Start of the window (UTC).
        value: Aggregated value (``None`` when the window holds no events).
        n: Events in the window.
        expected: Baseline value for this window (``None`` without enough history).
        scale: Robust standard deviation the deviation is measured in.
        robust_z: ``(value - expected) / scale``.
        cutoff: The ``|robust_z|`` above which this window is anomalous: the report's
            threshold, widened while the history is short (see ``detect_anomalies``).
        anomaly: Whether ``|robust_z|`` exceeds ``cutoff``.
        direction: ``"up"`` or ``"down"`` for an anomaly, else ``None``.
        seasonal: Whether the expected value came from the same hour of day (day of week).
        status: ``"ok"``, ``"insufficient_history"``, ``"no_data"``, or ``"not_judged"`` (a
            history window before ``judge_from``: its value, no baseline).
    """

    model_config = ConfigDict(extra="forbid")

    window_start: datetime
    value: float | None
    n: int
    expected: float | None = None
    scale: float | None = None
    robust_z: float | None = None
    cutoff: float | None = None
    anomaly: bool = False
    direction: Literal["up", "down"] | None = None
    seasonal: bool = False
    status: Status


class AnomalyReport(BaseModel):
    """The series with a verdict per window.

    Attributes:
        freq: ``"hour"`` or ``"day"``.
        method: ``"mad"`` or ``"ewma"``.
        agg: How events were aggregated per window.
        threshold: Robust z-score above which a window is anomalous.
        seasonal: Whether seasonality was requested.
        points: One entry per window, in time order.
    """

    model_config = ConfigDict(extra="forbid")

    freq: Freq
    method: Method
    agg: Agg
    threshold: float
    seasonal: bool
    points: list[AnomalyPoint]

    def anomalies(self) -> list[AnomalyPoint]:
        """Return the anomalous windows, in time order.

        Returns:
            The points with ``anomaly=True``.

        Examples:
            >>> AnomalyReport(freq="day", method="mad", agg="mean", threshold=3.5,
            ...               seasonal=False, points=[]).anomalies()
            []
        """
        return [p for p in self.points if p.anomaly]


def _to_datetime64(timestamps: Any) -> npt.NDArray[np.datetime64]:
    arr = np.asarray(timestamps)
    if np.issubdtype(arr.dtype, np.datetime64):
        return arr.astype("datetime64[s]")
    out = np.empty(arr.size, dtype="datetime64[s]")
    for i, t in enumerate(arr.ravel()):
        if isinstance(t, str):
            t = datetime.fromisoformat(t)
        if isinstance(t, datetime):
            if t.tzinfo is not None:
                t = t.astimezone(UTC).replace(tzinfo=None)
            out[i] = np.datetime64(t, "s")
        else:
            raise TypeError(f"unsupported timestamp {t!r}: use datetime64, datetime or ISO text")
    return out


def aggregate_series(
    timestamps: Any,
    values: npt.ArrayLike | None = None,
    *,
    freq: Freq = "hour",
    agg: Agg = "mean",
    start: datetime | np.datetime64 | None = None,
    end: datetime | np.datetime64 | None = None,
) -> tuple[npt.NDArray[np.datetime64], npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Aggregate events into consecutive windows, empty windows included.

    Args:
        timestamps: Event times (datetime64, datetimes or ISO-8601 text; aware ones in UTC).
        values: Event values (NaN ignored); not needed for ``agg="count"``. Booleans with
            ``agg="rate"`` give the share of True (e.g. an error rate).
        freq: ``"hour"`` or ``"day"`` windows.
        agg: ``"mean"``, ``"sum"``, ``"count"``, ``"p95"`` or ``"rate"``.
        start: First window (default: the first event's); use it to see leading empty windows.
        end: Last window (default: the last event's); use it to see an outage at the end.

    Returns:
        ``(window_starts, values, counts)``; a window without events has value NaN, except
        ``count`` (0) and ``sum`` (0), whose empty windows are real zeros.

    Examples:
        >>> import numpy as np
        >>> t = np.array(["2024-01-01T00:10", "2024-01-01T00:50", "2024-01-01T02:05"],
        ...              dtype="datetime64[s]")
        >>> starts, vals, counts = aggregate_series(t, freq="hour", agg="count")
        >>> vals.tolist(), counts.tolist()
        ([2.0, 0.0, 1.0], [2, 0, 1])
    """
    unit = _UNIT[freq]
    ts = _to_datetime64(timestamps)
    if values is None:
        if agg != "count":
            raise ValueError(f"agg={agg!r} needs values")
        vals = np.ones(ts.size, dtype=np.float64)
    else:
        vals = np.asarray(values, dtype=np.float64).ravel()
        if vals.size != ts.size:
            raise ValueError(f"{vals.size} values for {ts.size} timestamps")
    slots = ts.astype(f"datetime64[{unit}]").astype(np.int64)
    if ts.size == 0 and (start is None or end is None):
        raise ValueError("no events: give start and end to build an empty series")
    first = _window_index(start, unit) if start is not None else int(slots.min())
    last = _window_index(end, unit) if end is not None else int(slots.max())
    if last < first:
        raise ValueError("end is before start")
    keep = (slots >= first) & (slots <= last)
    slots, vals = slots[keep] - first, vals[keep]
    n_windows = last - first + 1
    counts = np.bincount(slots, minlength=n_windows).astype(np.int64)
    finite = np.isfinite(vals)
    n_finite = np.bincount(slots[finite], minlength=n_windows)
    out = np.full(n_windows, np.nan)
    if agg == "count":
        out = counts.astype(np.float64)
    elif agg == "sum":
        out = np.bincount(slots[finite], weights=vals[finite], minlength=n_windows)
    elif agg in ("mean", "rate"):
        sums = np.bincount(slots[finite], weights=vals[finite], minlength=n_windows)
        has = n_finite > 0
        out[has] = sums[has] / n_finite[has]
    else:  # p95
        order = np.argsort(slots[finite], kind="stable")
        s_sorted, v_sorted = slots[finite][order], vals[finite][order]
        bounds = np.searchsorted(s_sorted, np.arange(n_windows + 1))
        for w in np.flatnonzero(n_finite):
            out[w] = float(np.percentile(v_sorted[bounds[w] : bounds[w + 1]], 95))
    starts = (np.arange(n_windows) + first).astype(f"datetime64[{unit}]")
    return starts, out, counts


def _window_index(t: datetime | np.datetime64, unit: str) -> int:
    return int(_to_datetime64([t]).astype(f"datetime64[{unit}]").astype(np.int64)[0])


def _slot(starts: npt.NDArray[np.datetime64], freq: Freq) -> npt.NDArray[np.int64]:
    idx = starts.astype(f"datetime64[{_UNIT[freq]}]").astype(np.int64)
    if freq == "hour":
        return idx % 24
    return (idx + 3) % 7  # 1970-01-01 was a Thursday: Monday = 0


def _robust_scale(residuals: npt.NDArray[np.float64]) -> float:
    centre = float(np.median(residuals))
    dev = np.abs(residuals - centre)
    mad = float(np.median(dev))
    if mad > 0:
        return _MAD_TO_SD * mad
    # More than half the history identical (e.g. an error rate stuck at 0): MAD is 0, the
    # mean absolute deviation still sees the rest.
    return _MEAN_AD_TO_SD * float(np.mean(dev))


class _Baseline(NamedTuple):
    expected: float
    scale: float  # standard deviation of the prediction error
    seasonal: bool
    n_history: int  # windows with a value behind this baseline
    dof: float  # effective degrees of freedom of ``scale``


@lru_cache(maxsize=4096)
def _cutoff(threshold: float, dof: float) -> float:
    """``threshold`` as a normal z, widened for a scale estimated from little history.

    A scale from n windows is itself noisy, which makes ``(x - expected) / scale`` heavier
    tailed than a normal: the cut keeps the normal's tail probability under a Student t with
    the scale's effective degrees of freedom (MAD: 37 % efficient; EWMA: about one span).
    """
    if not math.isfinite(dof) or dof > 1e6:
        return threshold
    return float(stats.t.isf(stats.norm.sf(threshold), max(dof, 1.0)))


def _mad_baseline(
    values: npt.NDArray[np.float64],
    slots: npt.NDArray[np.int64],
    t: int,
    history: int,
    period: int,
    seasonal: bool,
) -> _Baseline:
    lo = max(0, t - history)
    hist, hist_slots = values[lo:t], slots[lo:t]
    ok = np.isfinite(hist)
    hist, hist_slots = hist[ok], hist_slots[ok]
    n = int(hist.size)
    if n < 2:
        return _Baseline(math.nan, math.nan, False, n, 1.0)
    same = hist_slots == slots[t]
    use_season = seasonal and (t - lo) >= _MIN_CYCLES * period and int(same.sum()) >= _MIN_CYCLES
    if not use_season:
        # The median's own error (variance pi/2 sigma^2/n) adds to the next window's.
        scale = _robust_scale(hist) * math.sqrt(1 + math.pi / (2 * n))
        return _Baseline(float(np.median(hist)), scale, False, n, _MAD_EFFICIENCY * (n - 1))
    profile, residuals = _seasonal_profile(values[lo:t], slots[lo:t], lo + int(slots[0]), period)
    return _Baseline(
        float(profile[slots[t]]),
        _robust_scale(residuals),
        True,
        n,
        _MAD_EFFICIENCY * (residuals.size - 1),
    )


def _seasonal_profile(
    values: npt.NDArray[np.float64], slots: npt.NDArray[np.int64], first: int, period: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per-slot medians and leave-one-out residuals of a history, cycles as matrix rows.

    Leave-one-out residuals are prediction errors: in-sample residuals from a median of 3-14
    values are too small (one of 3 is exactly 0) and would flag plain noise. Removing the
    entry of rank r from a sorted column of k values leaves the median at positions
    (k-2)//2 and (k-1)//2 of the rest, i.e. sorted index j + (j >= r): no loop needed.
    """
    rows = (first + np.arange(values.size)) // period
    rows -= rows[0]
    grid = np.full((int(rows[-1]) + 1, period), np.nan)
    grid[rows, slots] = values
    k = np.sum(np.isfinite(grid), axis=0)
    order = np.argsort(grid, axis=0)  # NaN sorts last
    ordered = np.take_along_axis(grid, order, axis=0)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(grid.shape[0])[:, None], axis=0)

    def at(idx: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        safe = np.clip(idx, 0, grid.shape[0] - 1)
        return np.take_along_axis(ordered, safe, axis=0)

    cols_k = np.broadcast_to(k, grid.shape)
    mid = at(np.stack([(k - 1) // 2, k // 2]).clip(0))
    profile = np.where(k > 0, mid.mean(axis=0), np.nan)
    j1, j2 = (cols_k - 2) // 2, (cols_k - 1) // 2
    loo = 0.5 * (at(j1 + (j1 >= rank)) + at(j2 + (j2 >= rank)))
    use = np.isfinite(grid) & (cols_k >= _MIN_CYCLES)
    return profile, (grid - loo)[use]


def detect_anomalies(
    timestamps: Any,
    values: npt.ArrayLike | None = None,
    *,
    freq: Freq = "hour",
    method: Method = "mad",
    threshold: float = 3.5,
    seasonal: bool = True,
    agg: Agg = "mean",
    history: int | None = None,
    min_history: int | None = None,
    ewma_span: int = 24,
    min_scale: float = 0.0,
    start: datetime | np.datetime64 | None = None,
    end: datetime | np.datetime64 | None = None,
    judge_from: datetime | np.datetime64 | None = None,
) -> AnomalyReport:
    """Flag windows whose aggregate departs from a robust baseline of the windows before.

    Args:
        timestamps: Event times (datetime64, datetimes or ISO-8601 text). An already aggregated
            series is one event per window with ``agg="mean"``.
        values: Event values (latency, score, cost, error flags...); ``None`` for volume.
        freq: ``"hour"`` or ``"day"`` windows.
        method: ``"mad"`` (rolling median/MAD) or ``"ewma"``.
        threshold: Robust z-score above which a window is anomalous (3.5 is the usual cut for
            the MAD-based modified z-score). It is read as a normal z: while the scale rests on
            little history the cut widens to keep the same tail probability under a Student t
            (MAD: 0.37 (n - 1) degrees of freedom; EWMA: about ``ewma_span``), so early windows
            are not flagged for the noise of their own baseline.
        seasonal: Use hour of day (``freq="hour"``) or day of week (``"day"``) profiles once
            the history holds three cycles.
        agg: Aggregation per window: ``"mean"``, ``"sum"``, ``"count"``, ``"p95"``, ``"rate"``.
        history: Windows of history the MAD baseline looks back (default 14 days hourly, 8
            weeks daily).
        min_history: Windows with a value needed before a verdict (default 24 hourly, 7 daily).
        ewma_span: Span of the EWMA level and variance, in windows (``method="ewma"``).
        min_scale: Smallest scale, in the series' units, so that a flat history (an error rate
            at exactly 0) does not turn every small change into an anomaly.
        start: First window (see :func:`aggregate_series`).
        end: Last window.
        judge_from: Windows starting before it are history only: they keep their value and
            count (``status="not_judged"``) but get no baseline, which a MAD baseline would
            otherwise compute for every one of them (default: judge every window).

    Returns:
        An :class:`AnomalyReport` with one point per window.

    Examples:
        >>> import numpy as np
        >>> hours = np.arange("2024-01-01T00", "2024-01-08T00", dtype="datetime64[h]")
        >>> noise = np.random.default_rng(1).normal(100, 5, hours.size)
        >>> noise[-1] = 200.0  # a spike in the last hour
        >>> report = detect_anomalies(hours, noise, freq="hour")
        >>> [p.direction for p in report.anomalies()]
        ['up']
    """
    if threshold <= 0:
        raise ValueError("threshold must be positive")
    starts, series, counts = aggregate_series(
        timestamps, values, freq=freq, agg=agg, start=start, end=end
    )
    period = _PERIOD[freq]
    history = history or _DEFAULT_HISTORY[freq]
    min_history = min_history or _DEFAULT_MIN_HISTORY[freq]
    slots = _slot(starts, freq)
    first = 0
    if judge_from is not None:
        first = int(np.searchsorted(starts, _to_datetime64([judge_from])[0]))
    if method == "mad":
        # Each MAD baseline reads only the windows before it: history windows need none.
        skipped = _Baseline(math.nan, math.nan, False, 0, 1.0)
        rows = [skipped] * first + [
            _mad_baseline(series, slots, t, history, period, seasonal)
            for t in range(first, series.size)
        ]
    else:
        rows = _run_ewma(series, slots, min_history, period, seasonal, threshold, ewma_span)
    points: list[AnomalyPoint] = []
    for i, base in enumerate(rows):
        value = float(series[i])
        start_dt = starts[i].astype("datetime64[s]").astype(datetime).replace(tzinfo=UTC)
        if i < first:
            points.append(
                AnomalyPoint(
                    window_start=start_dt,
                    value=value if math.isfinite(value) else None,
                    n=int(counts[i]),
                    status="not_judged",
                )
            )
            continue
        if not math.isfinite(value):
            points.append(
                AnomalyPoint(window_start=start_dt, value=None, n=int(counts[i]), status="no_data")
            )
            continue
        if base.n_history < min_history or not math.isfinite(base.expected):
            points.append(
                AnomalyPoint(
                    window_start=start_dt,
                    value=value,
                    n=int(counts[i]),
                    status="insufficient_history",
                )
            )
            continue
        scale = max(base.scale, min_scale, 1e-9 * max(1.0, abs(base.expected)))
        z = (value - base.expected) / scale
        cutoff = _cutoff(threshold, base.dof)
        flagged = abs(z) > cutoff
        points.append(
            AnomalyPoint(
                window_start=start_dt,
                value=value,
                n=int(counts[i]),
                expected=base.expected,
                scale=scale,
                robust_z=z,
                cutoff=cutoff,
                anomaly=flagged,
                direction=("up" if z > 0 else "down") if flagged else None,
                seasonal=base.seasonal,
                status="ok",
            )
        )
    return AnomalyReport(
        freq=freq, method=method, agg=agg, threshold=threshold, seasonal=seasonal, points=points
    )


def _run_ewma(
    series: npt.NDArray[np.float64],
    slots: npt.NDArray[np.int64],
    min_history: int,
    period: int,
    seasonal: bool,
    threshold: float,
    span: int,
) -> list[_Baseline]:
    alpha = 2.0 / (span + 1.0)
    # A same-slot level sees one value per cycle, so its span is counted in cycles.
    alpha_slot = 2.0 / (_SLOT_SPAN_CYCLES + 1.0)
    level = math.nan
    var = 0.0
    slot_level: dict[int, float] = {}
    slot_seen: dict[int, int] = {}
    seen = 0
    rows: list[_Baseline] = []
    for t in range(series.size):
        x = float(series[t])
        s = int(slots[t])
        use_season = seasonal and slot_seen.get(s, 0) >= _MIN_CYCLES
        expected = slot_level[s] if use_season else level
        scale = math.sqrt(var)
        # An exponentially weighted variance averages about one span of residuals.
        dof = max(1.0, min(seen, span) - 1.0)
        rows.append(_Baseline(expected, scale, use_season, seen, dof))
        if not math.isfinite(x):
            continue
        if seen >= min_history and scale > 0:
            # Learn from an anomalous window only up to the band's edge, so one spike does not
            # drag the level and inflate the variance for the next day.
            band = _cutoff(threshold, dof) * scale
            x_learn = min(max(x, expected - band), expected + band)
        else:
            x_learn = x
        resid = x_learn - expected if math.isfinite(expected) else 0.0
        level = x_learn if math.isnan(level) else level + alpha * (x_learn - level)
        var = (1 - alpha) * (var + alpha * resid * resid) if seen > 0 else 0.0
        previous = slot_level.get(s)
        slot_level[s] = (
            x_learn if previous is None else previous + alpha_slot * (x_learn - previous)
        )
        slot_seen[s] = slot_seen.get(s, 0) + 1
        seen += 1
    return rows


# --------------------------------------------------------------------------------------------
# Rates on a stable scale, and the noise floor of a window
# --------------------------------------------------------------------------------------------


def anscombe_rate(successes: npt.ArrayLike, n: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Variance-stabilised rate ``arcsin(sqrt((x + 3/8) / (n + 3/4)))``: variance ~1/(4n).

    A rate near 0 is skewed (2 events in 10 at a 1 % base rate is a 0.6 % tail, not the
    "z = 6" a plain standard deviation says); on this scale a normal cut holds.

    Args:
        successes: Events per window.
        n: Trials per window (0 gives NaN).

    Returns:
        The stabilised values.

    Examples:
        >>> round(float(anscombe_rate(5, 20)), 4)
        0.534
    """
    x = np.asarray(successes, dtype=np.float64)
    m = np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(np.arcsin(np.sqrt((x + 0.375) / (m + 0.75))), dtype=np.float64)


def from_anscombe(y: float, n: int) -> float:
    """The rate of ``n`` trials whose stabilised value is ``y`` (inverse of :func:`anscombe_rate`).

    Args:
        y: A value on the arcsine scale.
        n: Trials in the window.

    Returns:
        The rate, clipped to [0, 1]; NaN without trials.

    Examples:
        >>> from_anscombe(float(anscombe_rate(5, 20)), 20)
        0.25
    """
    if n <= 0:
        return math.nan
    return min(1.0, max(0.0, (math.sin(y) ** 2 * (n + 0.75) - 0.375) / n))


def noise_floor(values: npt.NDArray[np.float64], counts: npt.NDArray[np.int64], agg: str) -> float:
    """Sampling error of one window's aggregate at the history's typical window size.

    A window's robust scale never goes below this (``min_scale`` of
    :func:`detect_anomalies`), so a quiet history does not turn sampling noise into anomalies.

    Args:
        values: The history's individual values (unused for ``count``).
        counts: Events per history window.
        agg: ``count`` (Poisson), ``sum`` (compound Poisson), ``rate`` (on the arcsine scale of
            :func:`anscombe_rate`), else a mean.

    Returns:
        The floor (0 without a busy history window).

    Examples:
        >>> noise_floor(np.empty(0), np.array([100, 100, 0]), "count")
        10.0
        >>> round(noise_floor(np.empty(0), np.array([99, 99]), "rate"), 4)
        0.0501
    """
    busy = counts[counts > 0]
    if busy.size == 0:
        return 0.0
    n_typ = float(np.median(busy))
    if agg == "count":
        return math.sqrt(n_typ)  # Poisson
    if agg == "rate":
        return 0.5 / math.sqrt(n_typ + 0.75)  # arcsine scale: variance 1 / (4 (n + 3/4))
    if values.size < 2:
        return 0.0
    sd = float(np.std(values, ddof=1))
    if agg == "sum":
        mean = float(np.mean(values))
        return math.sqrt(n_typ * (sd * sd + mean * mean))  # compound Poisson
    return sd / math.sqrt(n_typ)
