"""Confidence intervals of rates: Wilson's score interval and Newcombe's difference interval.

The one place these are computed: the drift tests (``checks.drift``), the regression gate and
canary (``checks.regression``) and the run summaries (``evaluators.summary``) all call them.
Closed forms only (no scipy), because the canary inverts the Newcombe interval with a root
finder and calls it many times.
"""

from __future__ import annotations

import math
from statistics import NormalDist

__all__ = ["newcombe_interval", "wilson_interval", "z_for"]


def z_for(confidence: float) -> float:
    """The two-sided standard normal quantile of a confidence level.

    Args:
        confidence: Coverage in (0, 1), e.g. 0.95.

    Returns:
        ``z`` with ``P(|Z| <= z) = confidence``.

    Examples:
        >>> round(z_for(0.95), 4)
        1.96
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson_interval(
    k: float, n: float, confidence: float = 0.95, *, z: float | None = None
) -> tuple[float, float]:
    """Wilson score interval of a rate ``k / n``.

    Unlike the Wald interval it stays inside [0, 1] and is not a single point when every
    value is the same (0 refusals in 100 is not "exactly 0"). It is the interval
    ``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")`` gives.

    Args:
        k: Successes (a float where a caller inverts the interval in z).
        n: Trials, more than 0.
        confidence: Coverage, used when ``z`` is not given.
        z: The normal quantile itself (overrides ``confidence``).

    Returns:
        ``(low, high)`` inside [0, 1].

    Raises:
        ValueError: ``n`` is not positive or ``k`` is outside ``[0, n]``.

    Examples:
        >>> lo, hi = wilson_interval(0, 100)
        >>> lo, round(hi, 3)
        (0.0, 0.037)
        >>> [round(x, 4) for x in wilson_interval(81, 263)]
        [0.2553, 0.3662]
    """
    if n <= 0:
        raise ValueError(f"a rate needs n > 0 trials, got {n}")
    if not 0 <= k <= n:
        raise ValueError(f"successes {k} outside [0, {n}]")
    z = z_for(confidence) if z is None else z
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # Exact in theory; the clip only removes rounding past 0 or 1, and at k = 0 or k = n the
    # bound is the end itself (rounding would put 1.0 above a high of 0.9999999999999999).
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high


def newcombe_interval(k_a: int, n_a: int, k_b: int, n_b: int, z: float) -> tuple[float, float]:
    """Newcombe's hybrid score interval (method 10) of ``p_b - p_a``.

    Built from the two Wilson intervals; unlike the Wald interval it keeps its coverage for
    rare events and small samples (Newcombe 1998).

    Args:
        k_a: Successes of the first sample (the baseline).
        n_a: Its trials.
        k_b: Successes of the second sample (the current window, the candidate).
        n_b: Its trials.
        z: Normal quantile of the two-sided level (1.96 for 95 %).

    Returns:
        ``(low, high)`` of the difference of rates.

    Examples:
        Newcombe (1998), Statistics in Medicine 17:873, example (a): 56/70 vs 48/80.

        >>> [round(x, 4) for x in newcombe_interval(48, 80, 56, 70, 1.959964)]
        [0.0524, 0.3339]
    """
    pa, pb = k_a / n_a, k_b / n_b
    la, ua = wilson_interval(k_a, n_a, z=z)
    lb, ub = wilson_interval(k_b, n_b, z=z)
    d = pb - pa
    return (
        d - math.sqrt((pb - lb) ** 2 + (ua - pa) ** 2),
        d + math.sqrt((ub - pb) ** 2 + (pa - la) ** 2),
    )
