"""Differential privacy for released aggregates: contribution bounds and OpenDP measurements.

The privacy unit is one user (``user_hash``): a release is ``epsilon``-differentially private
with respect to adding or removing all of one user's interactions. How that holds:

1. **Bounded contributions.** :func:`bound_contributions` keeps at most ``k`` interactions
   per user per day per cell (the earliest), so one user changes a daily cell's row set by at
   most ``k`` rows, and a cell that covers ``D`` days by at most ``k * D`` rows. Interactions
   with no ``user_hash`` count as one unknown user (they cannot be told apart, so they are
   bounded together: the safe side).
2. **Bounded values.** A sum clamps each value to declared ``(low, high)`` bounds (OpenDP's
   ``make_clamp``), so one row moves it by at most ``max(|low|, |high|)``.
3. **Sensitivity.** A count's is ``k * D``; a sum's ``k * D * max(|low|, |high|)`` for bounds
   of one sign (``k * D * (high - low)`` when they straddle 0, OpenDP's bound). OpenDP
   derives both from the symmetric distance ``d_in = k * D`` through its transformations, and
   the noise scale for the number's epsilon is found with ``binary_search_param`` against the
   measurement's own privacy map: the library's accounting, not ours.
4. **Composition.** A release of ``N`` noised primitives (counts and sums) gives each
   ``epsilon / N`` (basic sequential composition), so the release as a whole is
   ``epsilon``-DP however many cells one user appears in. Means and rates are ratios of
   noised primitives: post-processing, free of further privacy cost.

Counts get the discrete Laplace (geometric) mechanism, sums the Laplace mechanism. Each
released number carries the 95% interval of its noise from the mechanism's scale
(``opendp.accuracy``); a mean's is the sum's divided by the noised count, an approximation
that ignores the count's own noise. The cells released (days of the window, the apps and
model versions present) are taken as public deployment facts; only the numbers are noised.

Examples:
    >>> import pandas as pd
    >>> rows = pd.DataFrame({"user_hash": ["u"] * 1000 + ["v"], "day": ["d"] * 1001,
    ...                      "ts": range(1001)})
    >>> len(bound_contributions(rows, ["day"], k=3))
    4
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

import pandas as pd

__all__ = [
    "NO_USER",
    "CountQuery",
    "Noised",
    "SumQuery",
    "bound_contributions",
    "noise_scale",
    "release",
    "safe_ratio",
]

#: The contributor that interactions without a ``user_hash`` are bounded as, together.
NO_USER = "(no user id)"

#: Two-sided level of the noise intervals shown beside released numbers.
NOISE_ALPHA = 0.05


def bound_contributions(
    frame: pd.DataFrame,
    cell: Sequence[str],
    k: int,
    *,
    user: str = "user_hash",
    order: Sequence[str] = ("ts",),
) -> pd.DataFrame:
    """At most ``k`` rows per user and cell: a user's earliest ``k`` in each.

    Args:
        frame: One row per interaction (or per value about one).
        cell: The columns that make a cell, the day among them (``["day", "app"]``).
        k: The most rows one user keeps per cell (>= 1).
        user: The user column; missing values are one user, :data:`NO_USER`.
        order: Which rows are kept first (the earliest, by default).

    Returns:
        The kept rows, in ``frame``'s column layout.

    Examples:
        >>> df = pd.DataFrame({"user_hash": ["a", "a", "a", None, None], "day": [1, 1, 2, 1, 1],
        ...                    "ts": [3, 1, 2, 4, 5]})
        >>> bound_contributions(df, ["day"], k=1)["ts"].tolist()
        [1, 2, 4]
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if frame.empty:
        return frame
    keyed = frame.assign(_dp_user=frame[user].fillna(NO_USER))
    keyed = keyed.sort_values([*order], kind="stable")
    kept = keyed.groupby(["_dp_user", *cell], sort=False, dropna=False).head(k)
    return kept.drop(columns="_dp_user").sort_index()


@dataclass(frozen=True)
class CountQuery:
    """The number of rows of a cell, noised.

    Attributes:
        name: What the number is (``"2026-11-01/shop/interactions"``).
        n: The true count after contributions were bounded.
        d_in: The most rows one user changes (``k`` times the days the cell covers).
    """

    name: str
    n: int
    d_in: int


@dataclass(frozen=True)
class SumQuery:
    """The sum of a cell's values, clamped to ``bounds``, noised.

    Attributes:
        name: What the number is.
        values: The values (after contributions were bounded; missing ones left out).
        bounds: ``(low, high)`` each value is clamped to.
        d_in: The most rows one user changes.
    """

    name: str
    values: tuple[float, ...]
    bounds: tuple[float, float]
    d_in: int


@dataclass(frozen=True)
class Noised:
    """A released number: its noised value, and how much noise it carries.

    Attributes:
        name: What the number is.
        value: The noised value (a count is floored at 0: post-processing).
        epsilon: The epsilon spent on it.
        scale: The noise distribution's scale.
        noise95: Half-width of the 95% interval of the noise (``value ± noise95`` holds the
            bounded true value with 95% probability).
        mechanism: ``discrete laplace`` or ``laplace``.
    """

    name: str
    value: float
    epsilon: float
    scale: float
    noise95: float
    mechanism: str
    meta: dict[str, Any] = field(default_factory=dict)


def _dp() -> Any:
    # OpenDP loads a native library; only a DP release pays for it (CLI startup does not).
    import opendp.prelude as dp

    dp.enable_features("contrib")
    return dp


def _count_measurement(dp: Any, scale: float) -> Any:
    domain = dp.vector_domain(dp.atom_domain(T=int))
    return dp.t.make_count(domain, dp.symmetric_distance()) >> dp.m.then_laplace(scale=scale)


def _sum_measurement(dp: Any, bounds: tuple[float, float], scale: float) -> Any:
    domain = dp.vector_domain(dp.atom_domain(T=float, nan=False))
    return (
        dp.t.make_clamp(domain, dp.symmetric_distance(), bounds=bounds)
        >> dp.t.then_sum()
        >> dp.m.then_laplace(scale=scale)
    )


@lru_cache(maxsize=256)
def _calibrated(
    kind: Literal["count", "sum"], bounds: tuple[float, float] | None, d_in: int, epsilon: float
) -> tuple[Any, float, float]:
    """The measurement whose privacy map gives at most ``epsilon`` at ``d_in``, its scale, noise95.

    Cached: every cell of one kind in a release shares it.
    """
    dp = _dp()
    if kind == "count":

        def make(s: float) -> Any:
            return _count_measurement(dp, s)
    else:
        assert bounds is not None

        def make(s: float) -> Any:
            return _sum_measurement(dp, (float(bounds[0]), float(bounds[1])), s)

    scale = float(dp.binary_search_param(make, d_in=d_in, d_out=epsilon))
    measurement = make(scale)
    if kind == "count":
        noise95 = float(dp.discrete_laplacian_scale_to_accuracy(scale, NOISE_ALPHA))
    else:
        noise95 = float(dp.laplacian_scale_to_accuracy(scale, NOISE_ALPHA))
    return measurement, scale, noise95


def noise_scale(
    kind: Literal["count", "sum"],
    epsilon: float,
    d_in: int,
    bounds: tuple[float, float] | None = None,
) -> float:
    """The noise scale OpenDP calibrates for one number at ``epsilon``.

    About ``sensitivity / epsilon``: ``d_in`` for a count, ``d_in * max(|low|, |high|)`` for
    a sum with bounds of one sign (``d_in * (high - low)`` across 0).

    Examples:
        >>> round(noise_scale("count", 0.5, d_in=3), 3)
        6.0
        >>> round(noise_scale("sum", 1.0, d_in=2, bounds=(0.0, 5.0)), 2)
        10.0
    """
    return _calibrated(kind, bounds, d_in, epsilon)[1]


def release(queries: Sequence[CountQuery | SumQuery], epsilon: float) -> list[Noised]:
    """Noise every query, ``epsilon`` split evenly across them (sequential composition).

    Args:
        queries: The primitives of one release.
        epsilon: The release's total epsilon.

    Returns:
        One :class:`Noised` per query, in order.

    Examples:
        >>> out = release([CountQuery("n", 100, d_in=1)], epsilon=1.0)
        >>> out[0].epsilon, out[0].mechanism, round(out[0].noise95, 1)
        (1.0, 'discrete laplace', 3.4)
    """
    if not queries:
        return []
    if not epsilon > 0 or math.isinf(epsilon):
        raise ValueError(f"epsilon must be a positive number, got {epsilon}")
    each = epsilon / len(queries)
    out: list[Noised] = []
    for q in queries:
        if isinstance(q, CountQuery):
            m, scale, n95 = _calibrated("count", None, q.d_in, each)
            # The count transformation only needs the row count, not the rows' values.
            value = float(max(int(m([0] * q.n)), 0))
            out.append(Noised(q.name, value, each, scale, n95, "discrete laplace"))
        else:
            m, scale, n95 = _calibrated("sum", q.bounds, q.d_in, each)
            value = float(m([float(v) for v in q.values]))
            out.append(
                Noised(q.name, value, each, scale, n95, "laplace", {"bounds": list(q.bounds)})
            )
    return out


def safe_ratio(
    total: Noised, count: Noised, bounds: tuple[float, float] | None = None
) -> tuple[float | None, float | None]:
    """A mean or rate from a noised sum (or count) and a noised count, with its noise95.

    Post-processing of released numbers: no further privacy cost. The value is clamped to
    ``bounds``; with a noised count below 1 there is no mean to show (None, not 0).

    Examples:
        >>> s = Noised("s", 50.0, 1.0, 1.0, 3.0, "laplace")
        >>> n = Noised("n", 100.0, 1.0, 1.0, 3.0, "discrete laplace")
        >>> safe_ratio(s, n, (0.0, 1.0))
        (0.5, 0.03)
    """
    if count.value < 1:
        return None, None
    value = total.value / count.value
    if bounds is not None:
        value = min(max(value, bounds[0]), bounds[1])
    return value, total.noise95 / count.value
