"""Percentiles from cumulative histogram buckets, as Prometheus' ``histogram_quantile`` does.

Serving engines export latency as histograms (``vllm:time_to_first_token_seconds_bucket``,
OTel ``gen_ai.server.time_to_first_token``): counts of observations at or below each upper
bound ``le``, never the observations themselves. A percentile is then found by locating the
bucket that holds the wanted rank and interpolating linearly inside it, which assumes the
observations are spread evenly within a bucket. The answer is only as fine as the buckets:
it is always between the bucket's bounds. Pure functions, no I/O.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

__all__ = [
    "Buckets",
    "decode_bounds",
    "encode_bounds",
    "histogram_quantile",
    "interval_buckets",
    "merge_buckets",
    "window_quantile",
]

#: ``{"le": [...upper bounds, ascending, +inf last], "counts": [...cumulative], "sum", "count"}``
Buckets = dict[str, object]


def histogram_quantile(q: float, le: Sequence[float], counts: Sequence[float]) -> float | None:
    """The ``q`` quantile of the observations counted by cumulative buckets.

    Follows Prometheus' ``histogram_quantile``: linear interpolation within the bucket that
    holds rank ``q * total``; the lowest bucket is taken to start at 0 (when its bound is
    positive); a rank in the ``+Inf`` bucket answers the highest finite bound.

    Args:
        q: The quantile, in [0, 1].
        le: Upper bounds, ascending; the last is usually ``inf``.
        counts: Cumulative counts per bound (same length as ``le``).

    Returns:
        The estimate, or None when there are no observations (never a made-up 0).

    Raises:
        ValueError: ``q`` outside [0, 1], lengths differ, or counts decrease.

    Examples:
        >>> histogram_quantile(0.5, [0.1, 0.5, 1.0, math.inf], [10, 60, 100, 100])
        0.42
        >>> histogram_quantile(0.99, [0.1, math.inf], [1, 10])  # rank in +Inf: the last bound
        0.1
        >>> histogram_quantile(0.5, [1.0, math.inf], [0, 0]) is None
        True
    """
    if not 0.0 <= q <= 1.0 or math.isnan(q):
        raise ValueError(f"quantile must be in [0, 1], not {q}")
    if len(le) != len(counts) or not le:
        raise ValueError("le and counts must be non-empty and of the same length")
    if any(b < a for a, b in itertools.pairwise(counts)):
        raise ValueError("cumulative counts must not decrease")
    total = float(counts[-1])
    if total <= 0:
        return None
    rank = q * total
    for i, (bound, cum) in enumerate(zip(le, counts, strict=True)):
        if cum >= rank:
            if math.isinf(bound):
                # Prometheus: a rank beyond every finite bound is the highest finite bound.
                finite = [b for b in le if not math.isinf(b)]
                return float(finite[-1]) if finite else None
            lower = float(le[i - 1]) if i > 0 else min(0.0, float(bound))
            below = float(counts[i - 1]) if i > 0 else 0.0
            in_bucket = float(cum) - below
            if in_bucket <= 0:
                return float(bound)
            return round(lower + (float(bound) - lower) * (rank - below) / in_bucket, 12)
    return float(le[-1])


def interval_buckets(
    current: Sequence[float], previous: Sequence[float] | None
) -> tuple[list[float], bool]:
    """Observations between two cumulative readings of the same buckets.

    A count that went down means the exporter restarted (its counters began again at 0), so
    the current reading alone is the interval, as Prometheus' ``rate`` assumes.

    Args:
        current: Cumulative counts now.
        previous: Cumulative counts at the previous reading, or None.

    Returns:
        ``(counts, reset)``: the interval's cumulative counts and whether a reset was seen.

    Examples:
        >>> interval_buckets([5, 9], [2, 4])
        ([3.0, 5.0], False)
        >>> interval_buckets([1, 2], [2, 4])
        ([1.0, 2.0], True)
    """
    if previous is None or len(previous) != len(current):
        return [float(c) for c in current], previous is not None
    if any(c < p for c, p in zip(current, previous, strict=True)):
        return [float(c) for c in current], True
    return [float(c) - float(p) for c, p in zip(current, previous, strict=True)], False


def merge_buckets(
    histograms: Sequence[tuple[Sequence[float], Sequence[float]]],
) -> tuple[list[float], list[float]]:
    """Add cumulative histograms (several series, several intervals) into one.

    Histograms with different bounds are added on the union of the bounds: at a bound a
    histogram lacks, its count is that of its largest bound below (the observations known to
    be at or below it), so no observation is counted twice and none is placed lower than it
    could be.

    Args:
        histograms: ``(le, counts)`` pairs.

    Returns:
        ``(le, counts)`` of the sum.

    Examples:
        >>> merge_buckets([([1, math.inf], [2, 3]), ([1, math.inf], [1, 1])])
        ([1.0, inf], [3.0, 4.0])
        >>> merge_buckets([([1, math.inf], [2, 3]), ([2, math.inf], [1, 1])])
        ([1.0, 2.0, inf], [2.0, 3.0, 4.0])
    """
    bounds = sorted({float(b) for le, _ in histograms for b in le})
    total = [0.0] * len(bounds)
    for le, counts in histograms:
        j = -1
        for i, bound in enumerate(bounds):
            while j + 1 < len(le) and float(le[j + 1]) <= bound:
                j += 1
            total[i] += float(counts[j]) if j >= 0 else 0.0
    return bounds, total


def encode_bounds(le: Sequence[float]) -> list[float | str]:
    """Bucket bounds for JSON, which has no infinity: ``inf`` becomes ``"+Inf"`` (Prometheus').

    Examples:
        >>> encode_bounds([0.1, math.inf])
        [0.1, '+Inf']
    """
    return ["+Inf" if math.isinf(b) and b > 0 else float(b) for b in le]


def decode_bounds(le: Sequence[float | str]) -> list[float]:
    """The inverse of :func:`encode_bounds`.

    Examples:
        >>> decode_bounds([0.1, "+Inf"])
        [0.1, inf]
    """
    return [float(b) if not isinstance(b, str) else float(b.replace("Inf", "inf")) for b in le]


def window_quantile(
    histograms: Sequence[tuple[Sequence[float | str], Sequence[float]]], q: float
) -> tuple[int, float | None]:
    """The ``q`` quantile of the observations of several interval histograms together.

    Args:
        histograms: ``(le, cumulative counts)`` of each interval (``le`` as stored, with
            ``"+Inf"``).
        q: The quantile, in [0, 1].

    Returns:
        ``(observations, quantile)``; the quantile is None when there are no observations.

    Examples:
        >>> window_quantile([([0.1, 0.5, "+Inf"], [1, 3, 3]), ([0.1, 0.5, "+Inf"], [1, 3, 3])], 0.5)
        (6, 0.2)
    """
    le, counts = merge_buckets([(decode_bounds(b), c) for b, c in histograms])
    n = round(counts[-1]) if counts else 0
    return n, histogram_quantile(q, le, counts) if n else None
