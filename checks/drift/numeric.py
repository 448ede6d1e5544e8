"""Numeric columns: two-sample KS, normalised Wasserstein, PSI and the bootstrap mean shift.

NaN values are dropped. A column whose values do not vary beyond float rounding, across both
windows, is one constant: every test here then sees exactly that constant on both sides (so
``mean(0.1 + 0.2)`` against ``mean(0.3)`` is no shift), and a window whose own spread is
rounding noise has standard deviation 0 (an effect divided by 1e-17 would report drift on a
column that never changed).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from evalwatch.checks.drift.base import (
    ArrayLike,
    ColumnKind,
    DriftTestDescriptor,
    FloatArray,
    ResultBuilder,
    finite,
    format_number,
    format_pct,
    permutation_tail,
    rng_for,
    subsample_idx,
    two_sample_runner,
)
from evalwatch.checks.drift.config import DriftConfig, TestName
from evalwatch.checks.drift.results import DriftTestResult

__all__ = [
    "DESCRIPTORS",
    "ks_test",
    "mean_shift_bootstrap",
    "near_constant",
    "psi",
    "wasserstein_normalised",
]

# Spread below this share of the values' magnitude is float rounding, not variation: ~4,500
# ulps, far below any real measurement's resolution (a 1 s spread on Unix times is 5e-10).
_REL_SPREAD_TOL = 1e-12

_KS_EFFECT = "KS D"
_W1_EFFECT = "W1 / baseline IQR"
_PSI_EFFECT = "PSI"
_MEAN_EFFECT = "|Δmean| / baseline std"

_fmt = format_number
_pct = format_pct


def near_constant(values: ArrayLike) -> bool:
    """Whether the finite values do not vary beyond float rounding of their magnitude.

    Args:
        values: A column (NaN ignored).

    Returns:
        True for fewer than two values, or a spread at most ``1e-12`` times the largest
        magnitude (exactly constant columns included).

    Examples:
        >>> near_constant([0.1 + 0.2, 0.3, 0.3]), near_constant([0.3, 0.31])
        (True, False)
    """
    x = finite(values)
    if x.size < 2:
        return True
    return float(np.ptp(x)) <= _REL_SPREAD_TOL * float(np.max(np.abs(x)))


def _numeric_pair(baseline: ArrayLike, current: ArrayLike) -> tuple[FloatArray, FloatArray]:
    b, c = finite(baseline), finite(current)
    if b.size and c.size and near_constant(np.concatenate([b, c])):
        # One constant in both windows: compare it with itself, not its rounding noise.
        value = float(b[0])
        return np.full(b.size, value), np.full(c.size, value)
    return b, c


def _numeric_start(
    test: TestName,
    effect_name: str,
    baseline: ArrayLike,
    current: ArrayLike,
    feature: str,
    config: DriftConfig,
) -> tuple[FloatArray, FloatArray, ResultBuilder, DriftTestResult | None]:
    """The opening every numeric test shares: its windows, its builder, and its early result.

    Returns:
        The two windows (see :func:`_numeric_pair`), the test's :class:`ResultBuilder`, and
        the ``insufficient_data`` result when either window has fewer than
        ``config.min_samples.numeric`` rows (None when the test can run).
    """
    b, c = _numeric_pair(baseline, current)
    rb = ResultBuilder(config, test, feature, "numeric", effect_name, b.size, c.size)
    need = config.min_samples.numeric
    return b, c, rb, rb.insufficient(need) if rb.too_few(need) else None


def _std(x: FloatArray) -> float:
    """Sample standard deviation, exactly 0 when the spread is float rounding.

    ``np.std`` of a constant like 1/3 is about 1e-17, not 0, because the mean rounds; an
    effect divided by that noise would report drift on a column that never changed.
    """
    if near_constant(x):
        return 0.0
    return float(np.std(x, ddof=1))


def _scale(baseline: FloatArray, current: FloatArray) -> tuple[float, str]:
    """Baseline IQR, else its standard deviation, else the pooled one (constant baseline)."""
    q75, q25 = np.percentile(baseline, [75, 25])
    if q75 > q25:
        return float(q75 - q25), "baseline IQR"
    sd = _std(baseline)
    if sd > 0:
        return sd, "baseline std"
    pooled = _std(np.concatenate([baseline, current]))
    return pooled, "pooled std"


def ks_test(
    baseline: ArrayLike,
    current: ArrayLike,
    *,
    feature: str = "value",
    config: DriftConfig | None = None,
) -> DriftTestResult:
    """Two-sample Kolmogorov-Smirnov test; the effect size is the statistic D itself.

    NaN values are dropped. ``scipy.stats.ks_2samp`` picks the exact or asymptotic p-value.

    Args:
        baseline: Baseline values.
        current: Current values.
        feature: Column name, used in the result.
        config: Report settings (floors, minimum sample size).

    Returns:
        The test result (``effect_size`` = D, the largest gap between the two CDFs).

    Examples:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> r = ks_test(rng.normal(0, 1, 500), rng.normal(0.5, 1, 500), feature="x")
        >>> r.verdict
        'drift'
    """
    config = config or DriftConfig()
    b, c, rb, short = _numeric_start("ks", _KS_EFFECT, baseline, current, feature, config)
    if short is not None:
        return short
    res = stats.ks_2samp(b, c)
    d = float(res.statistic)
    mb, mc = float(np.median(b)), float(np.median(c))
    return rb.result(
        statistic=d,
        effect_size=d,
        p_value=float(res.pvalue),
        summary=(
            f"{feature}: CDFs differ by up to {_pct(d)} of rows "
            f"(at {_fmt(float(res.statistic_location))}); median {_fmt(mb)} → {_fmt(mc)}"
        ),
        details={
            "median_baseline": mb,
            "median_current": mc,
            "statistic_location": float(res.statistic_location),
        },
    )


def _w1_permutation(
    baseline: FloatArray, current: FloatArray, n_perm: int, rng: np.random.Generator
) -> tuple[float, FloatArray]:
    """Wasserstein-1 of the two samples and of ``n_perm`` label permutations.

    W1 is the integral of |F_b - F_c|: with the pooled values sorted once, each permutation is a
    cumulative sum of ±1/n steps, so all permutations cost one ``(n_perm, N)`` cumsum.
    """
    pooled = np.concatenate([baseline, current])
    order = np.argsort(pooled, kind="stable")
    gaps = np.diff(pooled[order])
    n1, n2 = baseline.size, current.size
    is_base = np.zeros(pooled.size, dtype=bool)
    is_base[:n1] = True
    steps_obs = np.where(is_base[order], 1.0 / n1, -1.0 / n2)
    observed = float(np.abs(np.cumsum(steps_obs)[:-1]) @ gaps)
    perm_labels = rng.permuted(np.tile(is_base, (n_perm, 1)), axis=1)
    # F_b - F_c after k pooled values = (#baseline among them) (1/n1 + 1/n2) - k / n2.
    n_base = np.cumsum(perm_labels[:, :-1], axis=1, dtype=np.int32)
    gap_f = n_base * (1.0 / n1 + 1.0 / n2)
    gap_f -= np.arange(1, pooled.size) / n2
    # einsum, not a BLAS gemv: this product is tiny, and BLAS threads only spin on a busy box.
    null = np.einsum("ij,j->i", np.abs(gap_f, out=gap_f), gaps)
    return observed, np.asarray(null, dtype=np.float64)


def wasserstein_normalised(
    baseline: ArrayLike,
    current: ArrayLike,
    *,
    feature: str = "value",
    config: DriftConfig | None = None,
) -> DriftTestResult:
    """Wasserstein-1 distance normalised by the baseline IQR, with a permutation p-value.

    The distance uses every row. The p-value comes from ``config.n_permutations`` label
    permutations on at most ``config.max_rows_permutation`` rows per window (Pearson III tail fitted
    to the permutation null, see :class:`DriftConfig`); capping costs power, never validity.

    Args:
        baseline: Baseline values.
        current: Current values.
        feature: Column name.
        config: Report settings.

    Returns:
        The test result; ``effect_size`` = W1 / baseline IQR (the std, then the pooled std, when
        the IQR is 0).

    Examples:
        >>> import numpy as np
        >>> rng = np.random.default_rng(1)
        >>> r = wasserstein_normalised(rng.normal(0, 1, 400), rng.normal(0.5, 1, 400))
        >>> round(r.effect_size, 1), r.verdict
        (0.4, 'drift')
    """
    config = config or DriftConfig()
    b, c, rb, short = _numeric_start("wasserstein", _W1_EFFECT, baseline, current, feature, config)
    if short is not None:
        return short
    w1 = float(stats.wasserstein_distance(b, c))
    scale, scale_name = _scale(b, c)
    effect = w1 / scale if scale > 0 else 0.0
    rng = rng_for(config, "wasserstein", feature)
    cap = config.max_rows_permutation
    bs, cs = b[subsample_idx(b.size, cap, rng)], c[subsample_idx(c.size, cap, rng)]
    observed, null = _w1_permutation(bs, cs, config.n_permutations, rng)
    p_perm = float((1 + np.sum(null >= observed)) / (null.size + 1))
    p = permutation_tail(observed, null)
    return rb.result(
        statistic=w1,
        effect_size=effect,
        effect_name=f"W1 / {scale_name}",
        p_value=p,
        summary=(
            f"{feature}: values moved by {_fmt(w1)} on average (optimal transport), "
            f"{_fmt(effect)} × the {scale_name}"
        ),
        details={
            "w1": w1,
            "scale": scale,
            "scale_name": scale_name,
            "p_permutation": p_perm,
            "rows_permuted": [int(bs.size), int(cs.size)],
        },
    )


def psi(
    baseline: ArrayLike,
    current: ArrayLike,
    *,
    feature: str = "value",
    config: DriftConfig | None = None,
) -> DriftTestResult:
    """Population stability index on baseline-quantile bins, with a chi-square p-value.

    Bins are the ``config.psi_bins`` baseline quantiles (ties merged, so discrete columns get
    fewer bins). PSI = sum((c - b) * ln(c / b)) over bin shares, with half a count added to
    every bin so an empty bin does not make it infinite. The p-value is the chi-square test of
    homogeneity of the same binned counts.

    Args:
        baseline: Baseline values.
        current: Current values.
        feature: Column name.
        config: Report settings.

    Returns:
        The test result; ``effect_size`` = PSI.

    Examples:
        >>> import numpy as np
        >>> rng = np.random.default_rng(2)
        >>> r = psi(rng.normal(0, 1, 2000), rng.normal(1, 1, 2000))
        >>> r.effect_size > 0.25
        True
    """
    config = config or DriftConfig()
    b, c, rb, short = _numeric_start("psi", _PSI_EFFECT, baseline, current, feature, config)
    if short is not None:
        return short
    qs = np.linspace(0, 1, config.psi_bins + 1)[1:-1]
    edges = np.unique(np.quantile(b, qs))
    # An edge at the baseline minimum would open a bin no baseline row can fall in (common
    # for discrete columns); current values below the minimum join the lowest bin instead.
    edges = edges[edges > b.min()]
    nb = np.bincount(np.searchsorted(edges, b, side="right"), minlength=edges.size + 1)
    nc = np.bincount(np.searchsorted(edges, c, side="right"), minlength=edges.size + 1)
    pb = (nb + 0.5) / (b.size + 0.5 * nb.size)
    pc = (nc + 0.5) / (c.size + 0.5 * nc.size)
    value = float(np.sum((pc - pb) * np.log(pc / pb)))
    table = np.vstack([nb, nc])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        chi2, p = 0.0, 1.0
    else:
        chi = stats.chi2_contingency(table, correction=False)
        chi2, p = float(chi.statistic), float(chi.pvalue)
    worst = int(np.argmax(np.abs(pc - pb)))
    return rb.result(
        statistic=value,
        effect_size=value,
        p_value=p,
        summary=(
            f"{feature}: PSI {_fmt(value)} over {nb.size} baseline-quantile bins; largest "
            f"change in bin {worst + 1} ({_pct(float(nb[worst] / b.size))} → "
            f"{_pct(float(nc[worst] / c.size))})"
        ),
        details={
            "bin_edges": [float(e) for e in edges],
            "baseline_counts": [int(x) for x in nb],
            "current_counts": [int(x) for x in nc],
            "chi2": chi2,
        },
    )


def _bootstrap_deviations(
    x: FloatArray, n_boot: int, cap: int, rng: np.random.Generator
) -> FloatArray:
    """Bootstrap deviations of the mean of ``x`` from the sample mean, for the full size.

    Resampling ``m = min(n, cap)`` rows and scaling the deviations by ``sqrt(m / n)`` gives the
    sampling distribution of the full-window mean at a fraction of the cost of resampling
    50,000 rows. Precision bound: the spread is estimated from m rows, so the interval's width
    has a relative standard error of about ``sqrt((kurtosis - 1) / (4 m))`` (1-3 % at m = 2,000
    for lengths and latencies); its skew correction is that of an m-row sample, which at
    m >= 2,000 is already negligible for a mean. ``tests/test_drift.py`` checks the width
    against the exact normal interval on 50,000 rows.
    """
    m = min(x.size, cap)
    xs = x[subsample_idx(x.size, m, rng)]
    idx = rng.integers(0, m, size=(n_boot, m), dtype=np.int32)
    boot = xs[idx].mean(axis=1) - xs.mean()
    return np.asarray(boot * math.sqrt(m / x.size), dtype=np.float64)


def mean_shift_bootstrap(
    baseline: ArrayLike,
    current: ArrayLike,
    *,
    feature: str = "value",
    config: DriftConfig | None = None,
) -> DriftTestResult:
    """Difference of means with a percentile bootstrap confidence interval.

    The p-value is Welch's t-test; the interval is the percentile bootstrap of the mean
    difference (``config.n_bootstrap`` resamples of at most ``config.max_rows_bootstrap`` rows
    per window, rescaled to the full window size). The effect size is the absolute difference
    in baseline standard deviations (Glass's delta).

    Args:
        baseline: Baseline values.
        current: Current values.
        feature: Column name.
        config: Report settings.

    Returns:
        The test result; ``ci`` is the interval of ``mean(current) - mean(baseline)``.

    Examples:
        >>> import numpy as np
        >>> rng = np.random.default_rng(3)
        >>> r = mean_shift_bootstrap(rng.normal(10, 1, 1000), rng.normal(10.5, 1, 1000))
        >>> r.ci[0] < 0.5 < r.ci[1]
        True
    """
    config = config or DriftConfig()
    b, c, rb, short = _numeric_start("mean_shift", _MEAN_EFFECT, baseline, current, feature, config)
    if short is not None:
        return short
    sd_b, sd_c = _std(b), _std(c)
    # Constant windows: their means are their values; a rounded mean would invent a shift.
    mb = float(b[0]) if sd_b == 0 else float(b.mean())
    mc = float(c[0]) if sd_c == 0 else float(c.mean())
    diff = mc - mb
    sd = sd_b
    scale_name = "baseline std"
    if sd <= 0:
        sd, scale_name = _std(np.concatenate([b, c])), "pooled std"
    effect = abs(diff) / sd if sd > 0 else 0.0
    if sd_b == 0 and sd_c == 0:
        p = 1.0 if diff == 0 else 0.0
    else:
        p = float(stats.ttest_ind(c, b, equal_var=False).pvalue)
    rng = rng_for(config, "mean_shift", feature)
    dev = _bootstrap_deviations(c, config.n_bootstrap, config.max_rows_bootstrap, rng)
    dev = dev - _bootstrap_deviations(b, config.n_bootstrap, config.max_rows_bootstrap, rng)
    tail = (1 - config.ci_level) / 2
    lo, hi = diff + float(np.quantile(dev, tail)), diff + float(np.quantile(dev, 1 - tail))
    # A relative change only means something on a ratio scale (lengths, costs, latencies).
    ratio_scale = mb > 0 and float(b.min()) >= 0
    rel = diff / mb if ratio_scale else None
    rel_ci = (lo / mb, hi / mb) if ratio_scale else None
    how_much = f"{diff:+.4g}"
    if rel is not None and rel_ci is not None:
        how_much += (
            f" ({100 * rel:+.1f}%, {100 * config.ci_level:.0f}% CI {100 * rel_ci[0]:+.1f}% "
            f"to {100 * rel_ci[1]:+.1f}%)"
        )
    else:
        how_much += f" ({100 * config.ci_level:.0f}% CI {lo:+.4g} to {hi:+.4g})"
    return rb.result(
        statistic=diff,
        effect_size=effect,
        effect_name=f"|Δmean| / {scale_name}",
        p_value=p,
        ci=(lo, hi),
        summary=f"{feature}: mean {_fmt(mb)} → {_fmt(mc)}, {how_much}",
        details={
            "ci_of": "mean(current) - mean(baseline)",
            "mean_baseline": mb,
            "mean_current": mc,
            "relative_change": rel,
            "relative_ci": None if rel_ci is None else [float(rel_ci[0]), float(rel_ci[1])],
            "scale": sd,
            "scale_name": scale_name,
        },
    )


_NUMERIC: frozenset[ColumnKind] = frozenset({"numeric"})

DESCRIPTORS: tuple[DriftTestDescriptor, ...] = (
    DriftTestDescriptor("ks", "numeric", _NUMERIC, {"ks": _KS_EFFECT}, two_sample_runner(ks_test)),
    DriftTestDescriptor(
        "wasserstein",
        "numeric",
        _NUMERIC,
        {"wasserstein": _W1_EFFECT},
        two_sample_runner(wasserstein_normalised),
    ),
    DriftTestDescriptor("psi", "numeric", _NUMERIC, {"psi": _PSI_EFFECT}, two_sample_runner(psi)),
    DriftTestDescriptor(
        "mean_shift",
        "numeric",
        _NUMERIC,
        {"mean_shift": _MEAN_EFFECT},
        two_sample_runner(mean_shift_bootstrap),
    ),
)
