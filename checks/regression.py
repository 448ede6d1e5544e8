"""Regression gate and canary comparison: paired and unpaired statistics, pure functions.

Nothing here reads a database, calls an evaluator or talks to Prefect: callers hand in scores
keyed by item id and get back a :class:`GateReport` they can print, store or turn into an
exit code.

How the gate decides
--------------------
* **Paired differences.** Both sides are compared on the items they both scored; each item's
  ``candidate - baseline`` difference removes the item's own difficulty from the noise, which
  is what lets a 0.02 drop show through a per-item spread of 0.1.
* **Intervals.** Continuous metrics get a paired bootstrap interval of the mean difference
  (seeded, ``n_bootstrap`` resamples). It is Hesterberg's *expanded* percentile interval: the
  plain percentile interval is too narrow for small samples (it behaves like a z-interval
  with an ``n`` denominator), so its tail levels are widened with the ``t`` quantile and a
  ``sqrt(n / (n - 1))`` factor; for large ``n`` the two coincide.
* **One interval, one decision.** Intervals are two-sided at ``1 - alpha``. Each one-sided
  decision is taken at ``alpha / 2``, and its p-value is obtained by inverting the same
  bootstrap distribution, so "p < alpha/2" and "the interval lies beyond the margin" agree.
* **Rules.** ``regression`` tests H0 "the candidate is not worse by more than the margin"
  against "it is": the metric fails only when the drop beyond the margin is significant.
  ``non-inferiority`` tests H0 "worse by at least the margin" and passes only when that is
  rejected, i.e. when the interval's lower end (in the metric's good direction) lies above
  ``-margin``; a metric that is neither proven worse nor proven non-inferior is
  ``not_proven``.
* **Pass/fail and pairwise metrics.** Per-item differences are then -1/0/+1. With a zero
  margin, McNemar's exact test (pass/fail) or the sign test (judge win/tie/loss, ties
  dropped) gives an exact p-value; both are the binomial test on the discordant items. With
  a non-zero margin those exact tests do not apply, and the paired bootstrap of the -1/0/+1
  differences is used instead.
* **Multiplicity.** "Fail when any metric regresses" is a union of tests, so the
  regression-direction p-values are Holm-adjusted across metrics (family-wise error
  ``alpha / 2``). "Pass only when every metric is non-inferior" is an intersection-union
  test: it already has level ``alpha / 2`` without adjustment (Berger, 1982), and Holm
  would only cost power, so non-inferiority p-values are not adjusted.
* **Slices.** Every (tag, metric) pair with at least ``min_slice_items`` items is tested for
  a regression, and Holm runs over all of them as one family, separate from the overall
  family: Holm has the same family-wise guarantee as Bonferroni under any dependence
  between slices (which overlap, as items carry several tags) and is never less powerful.
  Keeping the overall tests in their own family keeps their power; the price is that the
  gate's total false-fail rate is bounded by ``alpha`` (two families of ``alpha / 2``)
  rather than ``alpha / 2``.
* **Power.** Each comparison reports the minimum detectable difference (MDD): the true drop
  beyond the margin that a one-sided paired t-test at the Bonferroni level of its family
  catches with probability ``power``. ``too_small`` says the test set cannot check the
  margin: for ``non-inferiority`` an equivalent candidate would usually not be proven
  (MDD > margin); for ``regression`` with a margin, drops of twice the margin would usually
  be missed.
* **Canary.** Two versions serving different requests are compared unpaired: a two-sample
  bootstrap interval of the difference of means (percentile), Mann-Whitney U as a rank
  check, and, for rates, Newcombe's hybrid score interval, whose inversion gives the
  p-value.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeGuard

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydantic import BaseModel, Field
from scipy import optimize, special, stats

from evalwatch.checks.fairness import GapWidening, gap_widening, segment_values
from evalwatch.checks.intervals import newcombe_interval
from evalwatch.checks.policy import (
    GateInputError,
    GatePolicy,
    MetricKind,
    MetricPolicy,
    default_policy,
)

__all__ = [
    "Decision",
    "GateInputError",
    "GateReport",
    "MetricComparison",
    "ProportionTest",
    "Verdict",
    "WorstItem",
    "average_repeats",
    "check_comparable",
    "compare_paired",
    "compare_pairwise",
    "compare_unpaired",
    "format_gate_p",
    "format_num",
    "holm",
    "mcnemar_exact",
    "min_detectable_difference",
    "paired_bootstrap_ci",
    "run_canary",
    "run_gate",
    "sign_test",
    "two_proportion",
]

Verdict = Literal["pass", "regression", "inconclusive"]
Decision = Literal["pass", "regression", "not_proven", "insufficient_data"]
Alternative = Literal["two-sided", "worse", "better"]

FloatArray = NDArray[np.float64]

DEFAULT_COMPARABLE_KEYS: tuple[str, ...] = ("dataset", "dataset_version", "evaluator_versions")

# Resampling plans up to this many cells (resamples x items) are kept as a weight matrix so
# that metrics and slices with the same item count share one plan (a matrix-vector product
# instead of a fresh gather); 4M float32 cells is 16 MB per cached plan.
_PLAN_CACHE_MAX_CELLS = 4_000_000
_Z_MAX = 40.0  # beyond this a normal tail probability is 0 in double precision


# --------------------------------------------------------------------------------------------
# Bootstrap machinery
# --------------------------------------------------------------------------------------------


def _weights(n: int, n_resamples: int, rng: np.random.Generator) -> NDArray[np.float32]:
    idx = rng.integers(0, n, size=(n_resamples, n))
    idx += (np.arange(n_resamples) * n)[:, None]
    counts = np.bincount(idx.ravel(), minlength=n_resamples * n).reshape(n_resamples, n)
    return (counts / n).astype(np.float32)


@functools.lru_cache(maxsize=2)
def _cached_weights(n: int, n_resamples: int, seed: int, stream: int) -> NDArray[np.float32]:
    w = _weights(n, n_resamples, np.random.default_rng([seed, stream]))
    w.setflags(write=False)
    return w


def _bootstrap_means(x: FloatArray, n_resamples: int, seed: int, stream: int = 0) -> FloatArray:
    """Means of ``n_resamples`` resamples (with replacement) of ``x``; deterministic."""
    n = x.size
    centre = float(x.mean())
    # Resampling the deviations from the mean keeps float32 rounding far below the Monte
    # Carlo error, and makes a constant input give exactly its value in every resample.
    dev = x - centre
    if n * n_resamples <= _PLAN_CACHE_MAX_CELLS:
        w = _cached_weights(n, n_resamples, seed, stream)
        return centre + (w @ dev.astype(np.float32)).astype(np.float64)
    rng = np.random.default_rng([seed, stream])
    out = np.empty(n_resamples, dtype=np.float64)
    chunk = max(1, _PLAN_CACHE_MAX_CELLS // n)
    for start in range(0, n_resamples, chunk):
        k = min(chunk, n_resamples - start)
        out[start : start + k] = dev[rng.integers(0, n, size=(k, n))].mean(axis=1)
    return centre + out


@dataclass(frozen=True)
class _Boot:
    """A bootstrap distribution with its interval and the p-values that invert it.

    ``expand`` and ``df`` implement the expanded percentile interval; ``df = inf`` with
    ``expand = 1`` is the plain percentile interval.
    """

    means: FloatArray
    expand: float = 1.0
    df: float = math.inf

    def _tail_level(self, one_sided: float) -> float:
        if math.isinf(self.df):
            return one_sided
        return float(special.ndtr(-self.expand * special.stdtrit(self.df, 1.0 - one_sided)))

    def interval(self, alpha: float) -> tuple[float, float]:
        a = self._tail_level(alpha / 2.0)
        lo, hi = np.quantile(self.means, [a, 1.0 - a])
        return float(lo), float(hi)

    def _p_from_tail(self, count: int) -> float:
        # +1 on both sides: the observed sample counts as one resample, so p is never 0.
        q = (count + 1.0) / (self.means.size + 1.0)
        if math.isinf(self.df):
            return float(min(1.0, q))
        return float(special.stdtr(self.df, special.ndtri(min(q, 1.0)) / self.expand))

    def p_less(self, theta0: float) -> float:
        """One-sided p for H1: true value < theta0 (ties count for H0)."""
        return self._p_from_tail(int(np.count_nonzero(self.means >= theta0)))

    def p_greater(self, theta0: float) -> float:
        """One-sided p for H1: true value > theta0 (ties count for H0)."""
        return self._p_from_tail(int(np.count_nonzero(self.means <= theta0)))


def _paired_boot(diff: FloatArray, n_resamples: int, seed: int) -> _Boot:
    n = diff.size
    if n < 2:
        raise ValueError("a bootstrap interval needs at least 2 paired items")
    return _Boot(
        means=_bootstrap_means(diff, n_resamples, seed),
        expand=math.sqrt(n / (n - 1.0)),
        df=float(n - 1),
    )


def paired_bootstrap_ci(
    diff: ArrayLike, alpha: float = 0.05, n_resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Two-sided ``1 - alpha`` paired bootstrap interval for the mean of per-item differences.

    Resampling the per-item differences keeps each item's two scores together, which is what
    makes the interval paired. The interval is the expanded percentile interval (see the
    module docstring), seeded, so the same input gives the same bounds.

    Args:
        diff: Per-item differences (candidate minus baseline), at least 2, no NaN.
        alpha: Two-sided error level, e.g. 0.05 for a 95 % interval.
        n_resamples: Bootstrap resamples; 10 000 keeps the bounds stable to about 1 % of
            their width.
        seed: Seed of the resampling.

    Returns:
        ``(low, high)``.

    Raises:
        ValueError: Fewer than 2 differences, NaN in the input or ``alpha`` out of (0, 1).

    Examples:
        >>> lo, hi = paired_bootstrap_ci([0.1, -0.05, 0.02, 0.0, 0.04], n_resamples=2000)
        >>> lo < 0.022 < hi
        True
    """
    d = np.asarray(diff, dtype=np.float64).ravel()
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if np.isnan(d).any():
        raise ValueError("differences contain NaN; drop unscored items first")
    return _paired_boot(d, n_resamples, seed).interval(alpha)


# --------------------------------------------------------------------------------------------
# Exact and analytic tests
# --------------------------------------------------------------------------------------------


def _binom_direction(k_bad: int, k_good: int, alternative: Alternative) -> float:
    n = k_bad + k_good
    if k_bad < 0 or k_good < 0:
        raise ValueError("counts must be non-negative")
    if n == 0:
        return 1.0  # no discordant items: no evidence either way
    if alternative == "worse":
        return float(stats.binomtest(k_bad, n, 0.5, alternative="greater").pvalue)
    if alternative == "better":
        return float(stats.binomtest(k_bad, n, 0.5, alternative="less").pvalue)
    return float(stats.binomtest(k_bad, n, 0.5, alternative="two-sided").pvalue)


def mcnemar_exact(b: int, c: int, alternative: Alternative = "two-sided") -> float:
    """McNemar's exact test for paired pass/fail outcomes.

    Only discordant items carry information: under H0 an item that changed is equally likely
    to have changed either way, so ``b ~ Binomial(b + c, 1/2)``.

    Args:
        b: Items the baseline passed and the candidate failed.
        c: Items the baseline failed and the candidate passed.
        alternative: ``"worse"`` (candidate fails more: ``b > c``), ``"better"`` or
            ``"two-sided"``.

    Returns:
        The exact p-value; 1.0 when there are no discordant items.

    Examples:
        >>> round(mcnemar_exact(10, 2, "worse"), 4)
        0.0193
    """
    return _binom_direction(b, c, alternative)


def sign_test(wins: int, losses: int, alternative: Alternative = "two-sided") -> float:
    """Exact sign test on pairwise judge verdicts; ties are excluded beforehand.

    Args:
        wins: Items where the judge preferred the candidate.
        losses: Items where it preferred the baseline.
        alternative: ``"worse"`` (candidate loses more), ``"better"`` or ``"two-sided"``.

    Returns:
        The exact p-value; 1.0 when every verdict was a tie.

    Examples:
        >>> round(sign_test(wins=3, losses=12, alternative="worse"), 4)
        0.0176
    """
    return _binom_direction(losses, wins, alternative)


def holm(p_values: Sequence[float | None] | ArrayLike) -> FloatArray:
    """Holm step-down adjusted p-values.

    Reject hypothesis ``i`` at family-wise level ``a`` when ``adjusted[i] < a``. ``None`` or
    NaN entries (tests that were not run) come back NaN and do not count towards the family
    size.

    Args:
        p_values: Raw p-values.

    Returns:
        Adjusted p-values in the input order.

    Examples:
        >>> holm([0.01, 0.04, 0.03]).round(3).tolist()
        [0.03, 0.06, 0.06]
    """
    raw = np.asarray(p_values, dtype=object).ravel()
    p = np.array([np.nan if v is None else float(v) for v in raw], dtype=np.float64)
    out = np.full_like(p, np.nan)
    ok = ~np.isnan(p)
    pv = p[ok]
    m = pv.size
    if m == 0:
        return out
    if ((pv < 0) | (pv > 1)).any():
        raise ValueError("p-values must lie in [0, 1]")
    order = np.argsort(pv, kind="stable")
    stepped = np.maximum.accumulate((m - np.arange(m)) * pv[order])
    adj = np.empty(m)
    adj[order] = np.minimum(1.0, stepped)
    out[ok] = adj
    return out


def _mdd_from_se(se: float, df: float, alpha: float, power: float) -> float:
    if math.isinf(df):
        q = special.ndtri(1.0 - alpha) + special.ndtri(power)
    else:
        q = special.stdtrit(df, 1.0 - alpha) + special.stdtrit(df, power)
    return float(q * se)


def min_detectable_difference(sd_diff: float, n: int, alpha: float, power: float = 0.8) -> float:
    """Smallest true mean difference a one-sided paired t-test detects with ``power``.

    ``(t[1-alpha, n-1] + t[power, n-1]) * sd_diff / sqrt(n)``. In the gate the difference is
    measured beyond the margin, and ``alpha`` is the level of one one-sided decision
    (``alpha / 2`` of the policy, divided by the number of tests in the family).

    Args:
        sd_diff: Standard deviation of the per-item differences.
        n: Paired items.
        alpha: One-sided significance level.
        power: Probability of detecting a difference of the returned size.

    Returns:
        The minimum detectable difference, in the metric's units.

    Raises:
        ValueError: ``n < 2`` or levels outside (0, 1).

    Examples:
        >>> round(min_detectable_difference(0.1, 300, alpha=0.025), 4)
        0.0162
    """
    if n < 2:
        raise ValueError("n must be at least 2")
    if not (0.0 < alpha < 1.0 and 0.0 < power < 1.0):
        raise ValueError("alpha and power must lie in (0, 1)")
    return _mdd_from_se(float(sd_diff) / math.sqrt(n), float(n - 1), alpha, power)


def _n_required(sd: float, margin: float, alpha: float, power: float) -> int | None:
    if margin <= 0 or sd <= 0:
        return None
    z = special.ndtri(1.0 - alpha) + special.ndtri(power)
    return math.ceil((z * sd / margin) ** 2)


# --------------------------------------------------------------------------------------------
# Result models
# --------------------------------------------------------------------------------------------


class MetricComparison(BaseModel):
    """One metric compared over all items or one slice.

    Differences are ``candidate - baseline`` in the metric's units (for pairwise metrics: the
    net win rate, wins minus losses over items). Whether a negative difference is bad depends
    on ``higher_is_better``. ``p_value`` is one-sided for "the candidate is worse by more
    than ``margin``".
    """

    metric: str
    slice: str | None = None
    kind: MetricKind
    paired: bool = True
    test: str
    status: Literal["ok", "insufficient_data"]
    reason: str | None = None
    n_both: int | None = Field(None, description="Items both sides scored (paired only).")
    n_baseline: int = 0
    n_candidate: int = 0
    n_missing_baseline: int = Field(0, description="Items the baseline did not score.")
    n_missing_candidate: int = Field(0, description="Items the candidate did not score.")
    higher_is_better: bool = True
    baseline_mean: float | None = None
    candidate_mean: float | None = None
    mean_diff: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    confidence: float
    margin: float = Field(description="Tolerated drop in the metric's units.")
    margin_spec: str = Field(description="The margin as the policy states it.")
    p_value: float | None = None
    p_adjusted: float | None = None
    p_noninferiority: float | None = None
    p_rank: float | None = Field(None, description="Mann-Whitney U, one-sided (canary).")
    wins: int | None = None
    ties: int | None = None
    losses: int | None = None
    sd_diff: float | None = Field(None, description="SD of per-item differences (paired).")
    se_diff: float | None = Field(None, description="Standard error of the mean difference.")
    mdd: float | None = None
    n_required: int | None = Field(None, description="Items needed for MDD <= margin.")
    too_small: bool = False
    decision: Decision = "insufficient_data"


class WorstItem(BaseModel):
    """An item whose score dropped the most; ``details`` is for the caller's outputs."""

    metric: str
    item_id: str
    baseline: float | None = None
    candidate: float | None = None
    diff: float
    verdict: str | None = None
    tags: list[str] = Field(default_factory=list)
    details: dict[str, Any] = Field(default_factory=dict)


class ProportionTest(BaseModel):
    """Two independent rates compared with Newcombe's hybrid score interval."""

    rate_a: float
    rate_b: float
    diff: float = Field(description="rate_b - rate_a")
    ci_low: float
    ci_high: float
    p_worse: float = Field(description="One-sided p: b worse than a by more than the margin.")
    p_better: float = Field(description="One-sided p: b not worse by the margin or more.")


class GateReport(BaseModel):
    """Outcome of a regression gate or canary comparison."""

    mode: Literal["gate", "canary"] = "gate"
    verdict: Verdict
    rule: str
    alpha: float
    metrics: list[MetricComparison]
    slices: list[MetricComparison] = Field(default_factory=list)
    regressing_slices: list[str] = Field(default_factory=list)
    fairness: list[GapWidening] = Field(
        default_factory=list, description="The fairness slice: each segment's gap, both sides."
    )
    widened_gaps: list[str] = Field(
        default_factory=list, description="Segments (field=value) whose gap widened."
    )
    worst_items: list[WorstItem] = Field(default_factory=list)
    reasons: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    policy: GatePolicy
    meta: dict[str, Any] = Field(default_factory=dict)

    def exit_code(self) -> int:
        """Process exit code for a deploy pipeline.

        A gate exits 0 only on ``pass``: ``inconclusive`` exits 1 like ``regression``,
        because a gate that could not establish the candidate is safe must not let it ship.
        A canary exits 1 only on ``regression`` (the canary is shown worse), so that too
        little traffic does not roll back. Bad input (code 2) never produces a report; it
        raises :class:`GateInputError`.

        Returns:
            0 or 1.

        Examples:
            >>> GateReport(verdict="pass", rule="regression", alpha=0.05, metrics=[],
            ...            policy=GatePolicy()).exit_code()
            0
        """
        if self.verdict == "pass":
            return 0
        if self.mode == "canary" and self.verdict == "inconclusive":
            return 0
        return 1

    def to_json(self, indent: int | None = 2) -> str:
        """Serialise the whole report (floats that are undefined are ``null``).

        Args:
            indent: JSON indentation; ``None`` for one line.

        Returns:
            A JSON document.

        Examples:
            >>> r = GateReport(verdict="pass", rule="regression", alpha=0.05, metrics=[],
            ...                policy=GatePolicy())
            >>> '"verdict": "pass"' in r.to_json()
            True
        """
        return self.model_dump_json(indent=indent)


# --------------------------------------------------------------------------------------------
# Numbers in reasons (the report's own text; its tables are rendered in evalwatch.reporting)
# --------------------------------------------------------------------------------------------


def format_num(x: float | None, digits: int = 4) -> str:
    """A number in a gate reason or table (``-`` when undefined).

    Examples:
        >>> format_num(0.012345), format_num(None), format_num(0.00001)
        ('0.0123', '-', '1.0e-05')
    """
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if x != 0 and abs(x) < 10 ** (-digits + 1):
        return f"{x:.1e}"
    return f"{x:.{digits}g}" if abs(x) >= 1000 else f"{round(x, digits):g}"


def format_gate_p(x: float | None) -> str:
    """A gate p-value (``-`` when not computed).

    Examples:
        >>> format_gate_p(0.00001), format_gate_p(0.0312)
        ('<0.0001', '0.0312')
    """
    if x is None:
        return "-"
    return "<0.0001" if x < 1e-4 else f"{x:.4f}"


# --------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------


def _valid_scores(scores: Mapping[str, Any], metric: str, side: str) -> dict[str, float]:
    """Return the scored items; ``None``/NaN mean "unscored" and are left out."""
    keys = [str(k) for k in scores]
    if any(isinstance(v, str | bytes) for v in scores.values()):
        # numpy would parse "0.8" silently; a string score is a bug upstream.
        item = next(k for k, v in scores.items() if isinstance(v, str | bytes))
        raise GateInputError(
            f"{side} score for metric {metric!r}, item {item!r} is not a number: {scores[item]!r}"
        )
    try:
        values = np.array([np.nan if v is None else v for v in scores.values()], dtype=np.float64)
    except (TypeError, ValueError):
        values = None
    if values is None or values.shape != (len(keys),):
        for item, v in scores.items():
            if v is not None and (isinstance(v, str) or not isinstance(v, int | float | np.number)):
                raise GateInputError(
                    f"{side} score for metric {metric!r}, item {item!r} is not a number: {v!r}"
                )
        raise GateInputError(f"{side} scores for metric {metric!r} are not all numbers")
    if np.isinf(values).any():
        bad = keys[int(np.flatnonzero(np.isinf(values))[0])]
        raise GateInputError(f"{side} score for metric {metric!r}, item {bad!r} is infinite")
    keep = ~np.isnan(values)
    return dict(
        zip([k for k, ok in zip(keys, keep, strict=True) if ok], values[keep].tolist(), strict=True)
    )


def _binarise(values: FloatArray, mp: MetricPolicy, side: str) -> FloatArray:
    if mp.pass_threshold is not None:
        passed = (
            values >= mp.pass_threshold if mp.higher_is_better else (values <= mp.pass_threshold)
        )
        return passed.astype(np.float64)
    if not np.isin(values, (0.0, 1.0)).all():
        raise GateInputError(
            f"binary metric {mp.metric!r} has {side} scores other than 0/1; "
            "set pass_threshold in the policy"
        )
    return values


def _resolve(mp: MetricPolicy, gate: GatePolicy) -> MetricPolicy:
    if mp.margin is not None:
        return mp
    kind = "absolute" if mp.kind == "pairwise" else gate.default_margin_kind
    return mp.model_copy(update={"margin": gate.default_margin, "margin_kind": kind})


def _margin(mp: MetricPolicy, baseline_mean: float | None) -> tuple[float, str]:
    margin = float(mp.margin or 0.0)
    if mp.margin_kind == "relative":
        spec = f"{margin * 100:g}% rel"
        if baseline_mean is None:
            return 0.0, spec
        return margin * abs(baseline_mean), spec
    return margin, format_num(margin)


def _orientation(mp: MetricPolicy) -> float:
    # Binarised scores are pass indicators, and a pass is always good.
    if mp.kind == "pairwise" or (mp.kind == "binary" and mp.pass_threshold is not None):
        return 1.0
    return 1.0 if mp.higher_is_better else -1.0


# --------------------------------------------------------------------------------------------
# Paired comparison
# --------------------------------------------------------------------------------------------


def _decide(comp: MetricComparison, rule: str, alpha: float) -> Decision:
    if comp.status != "ok" or comp.p_value is None:
        return "insufficient_data"
    p_worse = comp.p_adjusted if comp.p_adjusted is not None else comp.p_value
    if p_worse < alpha / 2:
        return "regression"
    if rule == "non-inferiority":
        if comp.p_noninferiority is not None and comp.p_noninferiority < alpha / 2:
            return "pass"
        return "not_proven"
    return "pass"


def _too_small(mdd: float | None, margin: float, rule: str) -> bool:
    if mdd is None:
        return False
    if rule == "non-inferiority":
        return mdd > margin
    # With a zero margin under the regression rule there is no margin to check; the MDD is
    # still reported.
    return margin > 0 and mdd > margin


def _paired_core(
    *,
    metric: str,
    mp: MetricPolicy,
    gate: GatePolicy,
    rule: str,
    d: FloatArray,
    sign: float,
    counts: dict[str, int],
    min_items: int,
    family_size: int,
    slice_name: str | None,
    baseline_mean: float | None,
    candidate_mean: float | None,
) -> MetricComparison:
    """Shared tail of the paired comparisons; ``d`` is oriented so that positive is better."""
    n = int(d.size)
    margin, spec = _margin(mp, baseline_mean)
    wins = ties = losses = None
    if mp.kind in ("binary", "pairwise"):
        wins = int(np.count_nonzero(d > 0))
        losses = int(np.count_nonzero(d < 0))
        ties = n - wins - losses
    common: dict[str, Any] = {
        "metric": metric,
        "slice": slice_name,
        "kind": mp.kind,
        "paired": True,
        "higher_is_better": mp.higher_is_better,
        "confidence": 1.0 - gate.alpha,
        "margin": margin,
        "margin_spec": spec,
        "baseline_mean": baseline_mean,
        "candidate_mean": candidate_mean,
        "wins": wins,
        "ties": ties,
        "losses": losses,
        "n_both": n,
        **counts,
    }
    # The exact tests only test "no difference"; a non-zero margin needs the bootstrap.
    exact = mp.kind in ("binary", "pairwise") and margin == 0.0
    test = "paired_bootstrap"
    if exact:
        test = "mcnemar_exact" if mp.kind == "binary" else "sign_test"
    min_items = max(2, min_items)
    if n < min_items:
        return MetricComparison(
            **common,
            test=test,
            status="insufficient_data",
            reason=f"{n} items scored on both sides, fewer than the {min_items} required",
            mean_diff=float(sign * d.mean()) if n else None,
        )
    boot = _paired_boot(d, gate.n_bootstrap, gate.seed)
    lo, hi = boot.interval(gate.alpha)
    if exact:
        assert wins is not None and losses is not None
        p_worse = _binom_direction(losses, wins, "worse")
        p_ni = _binom_direction(losses, wins, "better")
    else:
        p_worse = boot.p_less(-margin)
        p_ni = boot.p_greater(-margin)
    sd = float(d.std(ddof=1))
    level = gate.alpha / 2 / max(1, family_size)
    mdd = min_detectable_difference(sd, n, level, gate.power)
    comp = MetricComparison(
        **common,
        test=test,
        status="ok",
        mean_diff=float(sign * d.mean()),
        ci_low=float(lo if sign > 0 else -hi),
        ci_high=float(hi if sign > 0 else -lo),
        p_value=p_worse,
        p_adjusted=p_worse,
        p_noninferiority=p_ni if rule == "non-inferiority" else None,
        sd_diff=sd,
        se_diff=sd / math.sqrt(n),
        mdd=mdd,
        n_required=_n_required(sd, margin, level, gate.power),
        too_small=_too_small(mdd, margin, rule),
    )
    return comp.model_copy(update={"decision": _decide(comp, rule, gate.alpha)})


def compare_paired(
    baseline: Mapping[str, float | None],
    candidate: Mapping[str, float | None],
    policy: MetricPolicy,
    gate: GatePolicy | None = None,
    *,
    family_size: int = 1,
    slice_name: str | None = None,
    min_items: int | None = None,
    rule: str | None = None,
) -> MetricComparison:
    """Compare one metric over the items both sides scored.

    Args:
        baseline: Item id -> score of the running version (``None``/NaN = unscored).
        candidate: Item id -> score of the new version.
        policy: The metric's settings (kind, direction, margin). ``kind="pairwise"`` is not
            accepted here; use :func:`compare_pairwise`.
        gate: Gate settings (alpha, rule, bootstrap); the default policy when ``None``.
        family_size: Tests in the multiplicity family, used for the MDD level.
        slice_name: Tag this comparison is restricted to, for the report.
        min_items: Override of ``gate.min_items`` (slices use ``min_slice_items``).
        rule: Override of ``gate.rule`` (slices are always tested for regression).

    Returns:
        A :class:`MetricComparison`; ``p_adjusted`` equals ``p_value`` until
        :func:`run_gate` adjusts it.

    Raises:
        GateInputError: A score is not a number, or binary scores are not 0/1 without a
            ``pass_threshold``.

    Examples:
        >>> base = {f"q{i}": 0.8 for i in range(30)}
        >>> cand = {f"q{i}": 0.8 - 0.1 * (i % 2) for i in range(30)}
        >>> compare_paired(base, cand, MetricPolicy(metric="sim")).decision
        'regression'
    """
    gate = gate or default_policy()
    mp = _resolve(policy, gate)
    if mp.kind == "pairwise":
        raise GateInputError(f"metric {mp.metric!r} is pairwise; use compare_pairwise")
    b = _valid_scores(baseline, mp.metric, "baseline")
    c = _valid_scores(candidate, mp.metric, "candidate")
    keys = set(baseline) | set(candidate)
    ids = sorted(set(b) & set(c))
    counts = {
        "n_baseline": len(b),
        "n_candidate": len(c),
        "n_missing_baseline": len({str(k) for k in keys} - set(b)),
        "n_missing_candidate": len({str(k) for k in keys} - set(c)),
    }
    x = np.array([b[i] for i in ids], dtype=np.float64)
    y = np.array([c[i] for i in ids], dtype=np.float64)
    if mp.kind == "binary":
        x, y = _binarise(x, mp, "baseline"), _binarise(y, mp, "candidate")
    sign = _orientation(mp)
    return _paired_core(
        metric=mp.metric,
        mp=mp,
        gate=gate,
        rule=rule or gate.rule,
        d=sign * (y - x),
        sign=sign,
        counts=counts,
        min_items=gate.min_items if min_items is None else min_items,
        family_size=family_size,
        slice_name=slice_name,
        baseline_mean=float(x.mean()) if x.size else None,
        candidate_mean=float(y.mean()) if y.size else None,
    )


_VERDICT_VALUE = {"win": 1.0, "tie": 0.0, "loss": -1.0}


def _valid_verdicts(verdicts: Mapping[str, str | None], metric: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for item, v in verdicts.items():
        if v is None:
            continue
        key = str(v).strip().lower()
        if key not in _VERDICT_VALUE:
            raise GateInputError(
                f"pairwise verdict for metric {metric!r}, item {item!r} must be "
                f"win/tie/loss, got {v!r}"
            )
        out[str(item)] = _VERDICT_VALUE[key]
    return out


def compare_pairwise(
    verdicts: Mapping[str, str | None],
    policy: MetricPolicy,
    gate: GatePolicy | None = None,
    *,
    family_size: int = 1,
    slice_name: str | None = None,
    min_items: int | None = None,
    rule: str | None = None,
) -> MetricComparison:
    """Compare pairwise judge verdicts (candidate's view: win, tie or loss per item).

    Position-swapped judgements that disagree are expected to arrive as ties. The effect is
    the net win rate ``(wins - losses) / items``; with a zero margin the decision uses the
    exact sign test on wins vs losses.

    Args:
        verdicts: Item id -> ``"win"``, ``"tie"``, ``"loss"`` or ``None`` (not judged).
        policy: The metric's settings; its margin applies to the net win rate.
        gate: Gate settings; the default policy when ``None``.
        family_size: Tests in the multiplicity family, for the MDD level.
        slice_name: Tag this comparison is restricted to.
        min_items: Override of ``gate.min_items``.
        rule: Override of ``gate.rule``.

    Returns:
        A :class:`MetricComparison` with ``wins``, ``ties`` and ``losses``.

    Raises:
        GateInputError: A verdict is not win/tie/loss.

    Examples:
        >>> v = {f"q{i}": "loss" if i < 20 else "tie" for i in range(40)}
        >>> compare_pairwise(v, MetricPolicy(metric="judge.pairwise", kind="pairwise")).decision
        'regression'
    """
    gate = gate or default_policy()
    mp = _resolve(policy.model_copy(update={"kind": "pairwise"}), gate)
    v = _valid_verdicts(verdicts, mp.metric)
    ids = sorted(v)
    d = np.array([v[i] for i in ids], dtype=np.float64)
    counts = {
        "n_baseline": len(ids),
        "n_candidate": len(ids),
        "n_missing_baseline": len(verdicts) - len(ids),
        "n_missing_candidate": len(verdicts) - len(ids),
    }
    return _paired_core(
        metric=mp.metric,
        mp=mp,
        gate=gate,
        rule=rule or gate.rule,
        d=d,
        sign=1.0,
        counts=counts,
        min_items=gate.min_items if min_items is None else min_items,
        family_size=family_size,
        slice_name=slice_name,
        baseline_mean=None,
        candidate_mean=None,
    )


# --------------------------------------------------------------------------------------------
# Run-level gate
# --------------------------------------------------------------------------------------------


def _apply_family(
    comps: list[MetricComparison], gate: GatePolicy, rule: str
) -> list[MetricComparison]:
    """Holm-adjust the regression p-values of a family and recompute MDD and decisions."""
    tested = [i for i, c in enumerate(comps) if c.status == "ok" and c.p_value is not None]
    k = len(tested)
    if k == 0:
        return comps
    adj = holm([comps[i].p_value for i in tested])
    level = gate.alpha / 2 / k
    out = list(comps)
    for j, i in enumerate(tested):
        c = comps[i]
        mdd = c.mdd
        n_req = c.n_required
        if c.paired and c.sd_diff is not None and c.n_both is not None:
            mdd = min_detectable_difference(c.sd_diff, c.n_both, level, gate.power)
            n_req = _n_required(c.sd_diff, c.margin, level, gate.power)
        elif not c.paired and c.se_diff is not None:
            mdd = _mdd_from_se(c.se_diff, math.inf, level, gate.power)
        updated = c.model_copy(
            update={
                "p_adjusted": float(adj[j]),
                "mdd": mdd,
                "n_required": n_req,
                "too_small": _too_small(mdd, c.margin, rule),
            }
        )
        out[i] = updated.model_copy(update={"decision": _decide(updated, rule, gate.alpha)})
    return out


def _worst_items(
    metric: str,
    b: Mapping[str, float | None] | None,
    c: Mapping[str, float | None] | None,
    verdicts: Mapping[str, str | None] | None,
    mp: MetricPolicy,
    tags: Mapping[str, Sequence[str]],
    limit: int,
) -> list[WorstItem]:
    if limit <= 0:
        return []
    if verdicts is not None:
        v = _valid_verdicts(verdicts, metric)
        losers = sorted(i for i, x in v.items() if x < 0)[:limit]
        return [
            WorstItem(
                metric=metric, item_id=i, diff=-1.0, verdict="loss", tags=list(tags.get(i, []))
            )
            for i in losers
        ]
    assert b is not None and c is not None
    bs = _valid_scores(b, metric, "baseline")
    cs = _valid_scores(c, metric, "candidate")
    sign = 1.0 if mp.higher_is_better else -1.0
    drops = []
    for i in set(bs) & set(cs):
        d = sign * (cs[i] - bs[i])
        if d < 0:
            drops.append((d, i))
    drops.sort()
    return [
        WorstItem(
            metric=metric,
            item_id=i,
            baseline=bs[i],
            candidate=cs[i],
            diff=cs[i] - bs[i],
            tags=list(tags.get(i, [])),
        )
        for _, i in drops[:limit]
    ]


def run_gate(
    baseline_scores: Mapping[str, Mapping[str, float | None]],
    candidate_scores: Mapping[str, Mapping[str, float | None]],
    item_tags: Mapping[str, Sequence[str]] | None = None,
    policy: GatePolicy | None = None,
    pairwise: Mapping[str, Mapping[str, str | None]] | None = None,
    meta: Mapping[str, Any] | None = None,
    item_segments: Mapping[str, Mapping[str, str | None]] | None = None,
) -> GateReport:
    """Run the regression gate over every metric, overall and per slice.

    Args:
        baseline_scores: Metric -> item id -> score of the running version.
        candidate_scores: Metric -> item id -> score of the candidate.
        item_tags: Item id -> tags; each tag is a slice.
        policy: Gate policy; :func:`default_policy` when ``None``.
        pairwise: Metric -> item id -> ``"win"``/``"tie"``/``"loss"`` from a pairwise judge.
        meta: Free-form context stored in the report (dataset, runs, models).
        item_segments: Field -> item id -> segment label (None: unknown), for the fairness
            slice (:class:`~evalwatch.checks.policy.FairnessPolicy`): a gap between a segment
            and the rest that widens by more than the margin fails the gate.

    Returns:
        A :class:`GateReport` whose ``verdict`` is ``pass``, ``regression`` or
        ``inconclusive``.

    Raises:
        GateInputError: Nothing to compare, a score is not a number, or a metric's kind
            contradicts how its data was given.

    Examples:
        >>> base = {"sim": {f"q{i}": 0.9 for i in range(40)}}
        >>> cand = {"sim": {f"q{i}": 0.9 - 0.2 * (i < 10) for i in range(40)}}
        >>> tags = {f"q{i}": ["billing" if i < 10 else "other"] for i in range(40)}
        >>> report = run_gate(base, cand, tags)
        >>> report.verdict, report.regressing_slices
        ('regression', ['billing'])
    """
    gate = policy or default_policy()
    tags = {str(k): list(v) for k, v in (item_tags or {}).items()}
    pw = dict(pairwise or {})
    score_metrics = sorted(set(baseline_scores) | set(candidate_scores))
    clash = sorted(set(score_metrics) & set(pw))
    if clash:
        raise GateInputError(f"metrics given both as scores and as pairwise verdicts: {clash}")
    if not score_metrics and not pw:
        raise GateInputError("nothing to compare: no metric has scores or pairwise verdicts")

    policies, warnings = _gate_policies(gate, score_metrics, sorted(pw))
    inputs = _GateInputs(gate, policies, baseline_scores, candidate_scores, pw)
    names = [*score_metrics, *sorted(pw)]
    overall = _apply_family([inputs.compare(n, None, None) for n in names], gate, gate.rule)
    slice_comps = _slice_comparisons(inputs, names, tags) if gate.slices and tags else []
    regressing_slices = sorted(
        {s.slice for s in slice_comps if s.decision == "regression" and s.slice is not None}
    )
    fairness = _fairness_slices(
        baseline_scores, candidate_scores, policies, item_segments or {}, gate
    )

    worst: list[WorstItem] = []
    for c in overall:
        if c.status != "ok":
            continue
        worst += _worst_items(
            c.metric,
            baseline_scores.get(c.metric),
            candidate_scores.get(c.metric),
            pw.get(c.metric),
            policies[c.metric],
            tags,
            gate.worst_items,
        )

    return _report(
        "gate",
        gate,
        overall,
        warnings,
        meta,
        slices=slice_comps,
        regressing_slices=regressing_slices,
        worst_items=worst,
        fairness=fairness,
    )


def _gate_policies(
    gate: GatePolicy, score_metrics: Sequence[str], pairwise_metrics: Sequence[str]
) -> tuple[dict[str, MetricPolicy], list[str]]:
    """Each metric's policy, checked against how its data was given.

    Args:
        gate: The gate policy.
        score_metrics: Metrics given as scores.
        pairwise_metrics: Metrics given as pairwise verdicts.

    Returns:
        Metric -> its policy, and a warning for each policy metric neither side has.

    Raises:
        GateInputError: A metric's kind contradicts how its data was given.
    """
    policies: dict[str, MetricPolicy] = {}
    for name in score_metrics:
        mp = gate.metric_policy(name)
        if mp.kind == "pairwise":
            raise GateInputError(
                f"metric {name!r} is pairwise in the policy but was given as scores"
            )
        policies[name] = mp
    for name in pairwise_metrics:
        mp = gate.metric_policy(name, kind="pairwise")
        if mp.kind != "pairwise":
            raise GateInputError(
                f"metric {name!r} was given as pairwise verdicts but the policy says {mp.kind}"
            )
        policies[name] = mp
    warnings = [
        f"policy lists metric {m.metric!r} but neither side has it"
        for m in gate.metrics
        if m.metric not in policies
    ]
    return policies, warnings


@dataclass(frozen=True)
class _GateInputs:
    """What :func:`run_gate` compares: the policies and both sides' scores or verdicts."""

    gate: GatePolicy
    policies: Mapping[str, MetricPolicy]
    baseline_scores: Mapping[str, Mapping[str, float | None]]
    candidate_scores: Mapping[str, Mapping[str, float | None]]
    pairwise: Mapping[str, Mapping[str, str | None]]

    def has_both(self, name: str) -> bool:
        """Whether a metric has data to compare on both sides (or pairwise verdicts)."""
        return (name in self.baseline_scores and name in self.candidate_scores) or (
            name in self.pairwise
        )

    def compare(self, name: str, ids: set[str] | None, slice_name: str | None) -> MetricComparison:
        """Compare one metric overall (``ids`` None) or over one slice's items.

        Args:
            name: The metric.
            ids: The slice's item ids, None for every item.
            slice_name: The slice (a tag), None overall.

        Returns:
            The comparison, before the family's multiplicity adjustment.
        """
        gate = self.gate
        mp = self.policies[name]
        min_items = gate.min_items if slice_name is None else gate.min_slice_items
        rule = gate.rule if slice_name is None else "regression"
        if name in self.pairwise:
            verdicts = self.pairwise[name]
            v = verdicts if ids is None else {k: x for k, x in verdicts.items() if k in ids}
            return compare_pairwise(
                v, mp, gate, slice_name=slice_name, min_items=min_items, rule=rule
            )
        b = self.baseline_scores.get(name)
        c = self.candidate_scores.get(name)
        if b is None or c is None:
            side = "baseline" if b is None else "candidate"
            margin, spec = _margin(mp, None)
            return MetricComparison(
                metric=name,
                slice=slice_name,
                kind=mp.kind,
                test="none",
                status="insufficient_data",
                reason=f"the {side} has no scores for this metric",
                higher_is_better=mp.higher_is_better,
                confidence=1.0 - gate.alpha,
                margin=margin,
                margin_spec=spec,
                n_baseline=len(b or {}),
                n_candidate=len(c or {}),
            )
        if ids is not None:
            b = {k: x for k, x in b.items() if k in ids}
            c = {k: x for k, x in c.items() if k in ids}
        return compare_paired(b, c, mp, gate, slice_name=slice_name, min_items=min_items, rule=rule)


def _slice_comparisons(
    inputs: _GateInputs, names: Sequence[str], tags: Mapping[str, Sequence[str]]
) -> list[MetricComparison]:
    """Every metric compared over each slice (tag), adjusted as one family.

    Args:
        inputs: The gate's inputs.
        names: The metrics, in report order.
        tags: Item id -> its tags.

    Returns:
        The slice comparisons, tag by tag.
    """
    by_tag: dict[str, set[str]] = {}
    for item, ts in tags.items():
        for t in ts:
            by_tag.setdefault(str(t), set()).add(item)
    comps = [
        inputs.compare(n, by_tag[t], t) for t in sorted(by_tag) for n in names if inputs.has_both(n)
    ]
    return _apply_family(comps, inputs.gate, "regression")


def _fairness_slices(
    baseline_scores: Mapping[str, Mapping[str, float | None]],
    candidate_scores: Mapping[str, Mapping[str, float | None]],
    policies: Mapping[str, MetricPolicy],
    segments: Mapping[str, Mapping[str, str | None]],
    gate: GatePolicy,
) -> list[GapWidening]:
    """Each segment's gap widening on each score metric, Holm-adjusted as one family.

    The family is its own, like the tag slices': a widened gap is judged at ``alpha / 2``
    after Holm over every tested (segment, metric) pair.
    """
    fp = gate.fairness
    out: list[GapWidening] = []
    for fld in sorted(segments):
        labels = segments[fld]
        tested, _ = segment_values(list(labels.values()), max_segments=len(labels) or 1)
        for segment, _n in tested:
            for metric in sorted(set(baseline_scores) & set(candidate_scores)):
                mp = policies.get(metric)
                if mp is None or mp.kind == "pairwise":
                    continue
                if fp.metrics is not None and metric not in fp.metrics:
                    continue
                b = {k: v for k, v in baseline_scores[metric].items() if _is_num(v)}
                c = {k: v for k, v in candidate_scores[metric].items() if _is_num(v)}
                out.append(
                    gap_widening(
                        b,
                        c,
                        labels,
                        metric=metric,
                        fld=fld,
                        segment=segment,
                        higher_is_better=mp.higher_is_better,
                        margin=fp.margin_for(metric),
                        min_items=fp.min_segment_items,
                        alpha=gate.alpha,
                    )
                )
    adjusted = holm([g.p_value for g in out])
    result = []
    for g, p_adj in zip(out, adjusted, strict=True):
        if g.decision == "insufficient_data":
            result.append(g)
            continue
        widened = bool(p_adj < gate.alpha / 2)
        result.append(
            g.model_copy(
                update={"p_adjusted": float(p_adj), "decision": "widened" if widened else "pass"}
            )
        )
    return result


def _is_num(v: float | None) -> TypeGuard[float]:
    return v is not None and math.isfinite(v)


def _direction_word(c: MetricComparison) -> str:
    if c.mean_diff is None:
        return ""
    return f"diff {format_num(c.mean_diff)} [{format_num(c.ci_low)}, {format_num(c.ci_high)}]"


def _report(
    mode: Literal["gate", "canary"],
    gate: GatePolicy,
    metrics: list[MetricComparison],
    warnings: list[str],
    meta: Mapping[str, Any] | None,
    *,
    slices: list[MetricComparison] | None = None,
    regressing_slices: list[str] | None = None,
    worst_items: list[WorstItem] | None = None,
    fairness: list[GapWidening] | None = None,
) -> GateReport:
    """The report of a gate or canary comparison: its verdict and reasons, then everything."""
    slices = slices or []
    fairness = fairness or []
    verdict, reasons = _verdict(metrics, slices, gate, warnings, fairness)
    return GateReport(
        mode=mode,
        verdict=verdict,
        rule=gate.rule,
        alpha=gate.alpha,
        metrics=metrics,
        slices=slices,
        regressing_slices=regressing_slices or [],
        fairness=fairness,
        widened_gaps=sorted(
            {f"{g.field}={g.segment}" for g in fairness if g.decision == "widened"}
        ),
        worst_items=worst_items or [],
        reasons=reasons,
        warnings=warnings,
        policy=gate,
        meta=dict(meta or {}),
    )


def _verdict(
    overall: list[MetricComparison],
    slices: list[MetricComparison],
    gate: GatePolicy,
    warnings: list[str],
    fairness: Sequence[GapWidening] = (),
) -> tuple[Verdict, list[str]]:
    reasons: list[str] = []
    regressed = [c for c in overall if c.decision == "regression"]
    slice_regressed = [s for s in slices if s.decision == "regression"]
    missing = [c for c in overall if c.decision == "insufficient_data"]
    unproven = [c for c in overall if c.decision == "not_proven"]
    for c in regressed:
        reasons.append(
            f"{c.metric} regressed beyond its margin {c.margin_spec}: {_direction_word(c)}, "
            f"adjusted p {format_gate_p(c.p_adjusted)}"
        )
    for s in slice_regressed:
        reasons.append(
            f"slice '{s.slice}' regressed on {s.metric}: {_direction_word(s)}, "
            f"adjusted p {format_gate_p(s.p_adjusted)}"
        )
    for c in missing:
        reasons.append(f"{c.metric}: insufficient data ({c.reason})")
    for c in unproven:
        reasons.append(
            f"{c.metric}: non-inferiority not shown, the interval does not rule out a drop "
            f"of {c.margin_spec} ({_direction_word(c)})"
        )
    for c in [*overall, *slices]:
        if c.status == "ok" and c.too_small:
            where = f"slice '{c.slice}', " if c.slice else ""
            need = f"; about {c.n_required} items would be needed" if c.n_required else ""
            warnings.append(
                f"{where}{c.metric}: too few items ({c.n_both or c.n_baseline}) to check the "
                f"margin {c.margin_spec}: minimum detectable difference {format_num(c.mdd)}{need}"
            )
    for c in overall:
        if c.paired and c.status == "ok" and c.n_missing_candidate:
            # Items the candidate failed to produce or score could hide a regression.
            k = c.n_missing_candidate
            warnings.append(
                f"{c.metric}: {k} item{'s' if k != 1 else ''} without a candidate score "
                f"{'are' if k != 1 else 'is'} left out of the comparison"
            )
    if slice_regressed and not gate.fail_on_slice_regression:
        warnings.append(
            "slices regressed but fail_on_slice_regression is off: "
            + ", ".join(sorted({str(s.slice) for s in slice_regressed}))
        )
    widened = [g for g in fairness if g.decision == "widened"]
    for g in widened:
        line = (
            f"fairness: the gap of '{g.field}={g.segment}' on {g.metric} widened by "
            f"{format_num(g.widening)} (gap {format_num(g.gap_baseline)} -> "
            f"{format_num(g.gap_candidate)}, margin {g.margin:g}), adjusted p "
            f"{format_gate_p(g.p_adjusted)}"
        )
        (reasons if gate.fairness.fail_on_widening else warnings).append(line)
    if (
        regressed
        or (slice_regressed and gate.fail_on_slice_regression)
        or (widened and gate.fairness.fail_on_widening)
    ):
        return "regression", reasons
    if missing or unproven or not overall:
        return "inconclusive", reasons
    if gate.rule == "non-inferiority":
        reasons.append("every metric is shown non-inferior within its margin")
    else:
        reasons.append("no metric or slice shows a significant drop beyond its margin")
    return "pass", reasons


# --------------------------------------------------------------------------------------------
# Canary comparison (unpaired)
# --------------------------------------------------------------------------------------------


def _newcombe_p_less(x_a: int, n_a: int, x_b: int, n_b: int, theta0: float) -> float:
    """One-sided p for H1: p_b - p_a < theta0, by inverting the Newcombe interval."""
    d = x_b / n_b - x_a / n_a
    if d == theta0:
        return 0.5
    if d < theta0:
        # The smallest z whose upper bound reaches theta0 gives p = P(Z > z).
        def f(z: float) -> float:
            return newcombe_interval(x_a, n_a, x_b, n_b, z)[1] - theta0

        if f(_Z_MAX) < 0:
            return 0.0
        z = optimize.brentq(f, 0.0, _Z_MAX, xtol=1e-10)
        return float(stats.norm.sf(z))

    def g(z: float) -> float:
        return newcombe_interval(x_a, n_a, x_b, n_b, z)[0] - theta0

    if g(_Z_MAX) > 0:
        return 1.0
    z = optimize.brentq(g, 0.0, _Z_MAX, xtol=1e-10)
    return float(stats.norm.cdf(z))


def two_proportion(
    successes_a: int,
    n_a: int,
    successes_b: int,
    n_b: int,
    *,
    alpha: float = 0.05,
    margin: float = 0.0,
    higher_is_better: bool = True,
) -> ProportionTest:
    """Compare two independent rates (baseline ``a``, canary ``b``).

    The interval for ``rate_b - rate_a`` is Newcombe's hybrid score interval, which keeps its
    coverage near rates of 0 or 1 where the Wald interval collapses; the p-values invert the
    same interval, so a decision at ``alpha / 2`` matches the interval's end.

    Args:
        successes_a: Events in the baseline (e.g. thumbs-down count).
        n_a: Baseline trials.
        successes_b: Events in the canary.
        n_b: Canary trials.
        alpha: Two-sided level of the interval.
        margin: Tolerated worsening of the rate, absolute.
        higher_is_better: ``False`` for error-like rates, where an increase is worse.

    Returns:
        A :class:`ProportionTest`.

    Raises:
        ValueError: A count is negative or exceeds its trials, or a side has no trials.

    Examples:
        >>> t = two_proportion(50, 1000, 80, 1000, higher_is_better=False)
        >>> t.p_worse < 0.01, t.ci_low > 0
        (True, True)
    """
    for x, n, side in ((successes_a, n_a, "a"), (successes_b, n_b, "b")):
        if n <= 0 or x < 0 or x > n:
            raise ValueError(f"side {side}: need 0 <= successes <= n and n > 0, got {x}/{n}")
    z = float(stats.norm.ppf(1.0 - alpha / 2))
    lo, hi = newcombe_interval(successes_a, n_a, successes_b, n_b, z)
    if higher_is_better:
        xa, xb = successes_a, successes_b
    else:
        # Count the complementary (good) events so that "worse" is always "lower".
        xa, xb = n_a - successes_a, n_b - successes_b
    p_worse = _newcombe_p_less(xa, n_a, xb, n_b, -margin)
    p_better = 1.0 - _newcombe_p_less(xa, n_a, xb, n_b, -margin)
    return ProportionTest(
        rate_a=successes_a / n_a,
        rate_b=successes_b / n_b,
        diff=successes_b / n_b - successes_a / n_a,
        ci_low=lo,
        ci_high=hi,
        p_worse=p_worse,
        p_better=p_better,
    )


def _clean(values: ArrayLike, metric: str, side: str) -> tuple[FloatArray, int]:
    raw = np.asarray(values, dtype=object).ravel()
    if any(isinstance(v, str | bytes) for v in raw):
        raise GateInputError(f"{side} scores for metric {metric!r} contain text, not numbers")
    try:
        arr = np.array([np.nan if v is None else v for v in raw], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise GateInputError(f"{side} scores for metric {metric!r} are not all numbers") from exc
    if np.isinf(arr).any():
        raise GateInputError(f"{side} scores for metric {metric!r} contain infinity")
    keep = ~np.isnan(arr)
    return arr[keep], int(arr.size - keep.sum())


def compare_unpaired(
    a: ArrayLike,
    b: ArrayLike,
    policy: MetricPolicy,
    gate: GatePolicy | None = None,
    *,
    family_size: int = 1,
) -> MetricComparison:
    """Compare one metric between two independent samples (baseline ``a``, canary ``b``).

    Continuous metrics: two-sample percentile bootstrap of the difference of means (each
    side resampled on its own) for the interval and the decision, and a one-sided
    Mann-Whitney U p-value (``p_rank``) as a check on the whole distribution. Binary
    metrics: :func:`two_proportion`.

    Args:
        a: Baseline scores (NaN/None = unscored).
        b: Canary scores.
        policy: The metric's settings; ``pairwise`` is not possible unpaired.
        gate: Gate settings; the default policy when ``None``.
        family_size: Tests in the multiplicity family, for the MDD level.

    Returns:
        A :class:`MetricComparison` with ``paired=False``.

    Raises:
        GateInputError: Pairwise kind, or binary scores that are not 0/1 without a
            threshold.

    Examples:
        >>> rng = np.random.default_rng(0)
        >>> a, b = rng.normal(0.8, 0.1, 400), rng.normal(0.7, 0.1, 400)
        >>> compare_unpaired(a, b, MetricPolicy(metric="sim")).decision
        'regression'
    """
    gate = gate or default_policy()
    mp = _resolve(policy, gate)
    if mp.kind == "pairwise":
        raise GateInputError(f"metric {mp.metric!r}: pairwise verdicts need paired items")
    x, miss_a = _clean(a, mp.metric, "baseline")
    y, miss_b = _clean(b, mp.metric, "canary")
    if mp.kind == "binary":
        x, y = _binarise(x, mp, "baseline"), _binarise(y, mp, "canary")
    sign = _orientation(mp)
    bm = float(x.mean()) if x.size else None
    cm = float(y.mean()) if y.size else None
    margin, spec = _margin(mp, bm)
    rule = gate.rule
    common: dict[str, Any] = {
        "metric": mp.metric,
        "kind": mp.kind,
        "paired": False,
        "n_baseline": int(x.size),
        "n_candidate": int(y.size),
        "n_missing_baseline": miss_a,
        "n_missing_candidate": miss_b,
        "higher_is_better": mp.higher_is_better,
        "baseline_mean": bm,
        "candidate_mean": cm,
        "confidence": 1.0 - gate.alpha,
        "margin": margin,
        "margin_spec": spec,
    }
    test = "two_proportion_newcombe" if mp.kind == "binary" else "unpaired_bootstrap"
    if min(x.size, y.size) < gate.min_items:
        return MetricComparison(
            **common,
            test=test,
            status="insufficient_data",
            reason=(
                f"{x.size} baseline and {y.size} canary scores; each side needs {gate.min_items}"
            ),
            mean_diff=(cm - bm) if cm is not None and bm is not None else None,
        )
    se = math.sqrt(x.var(ddof=1) / x.size + y.var(ddof=1) / y.size)
    level = gate.alpha / 2 / max(1, family_size)
    mdd = _mdd_from_se(se, math.inf, level, gate.power)
    lo, hi, p_worse, p_ni, p_rank = _unpaired_test(x, y, mp, gate, margin, sign)
    comp = MetricComparison(
        **common,
        test=test,
        status="ok",
        mean_diff=float(y.mean() - x.mean()),
        ci_low=float(lo),
        ci_high=float(hi),
        p_value=float(p_worse),
        p_adjusted=float(p_worse),
        p_noninferiority=float(p_ni) if rule == "non-inferiority" else None,
        p_rank=p_rank,
        se_diff=se,
        mdd=mdd,
        too_small=_too_small(mdd, margin, rule),
    )
    return comp.model_copy(update={"decision": _decide(comp, rule, gate.alpha)})


def _unpaired_test(
    x: FloatArray, y: FloatArray, mp: MetricPolicy, gate: GatePolicy, margin: float, sign: float
) -> tuple[float, float, float, float, float | None]:
    """The interval and p-values of an unpaired comparison (baseline ``x``, canary ``y``).

    Args:
        x: Baseline scores (0/1 for a binary metric).
        y: Canary scores.
        mp: The metric's resolved policy.
        gate: Gate settings.
        margin: The regression margin.
        sign: +1 when higher is better, -1 otherwise.

    Returns:
        ``(ci_low, ci_high, p_worse, p_noninferiority, p_rank)``; ``p_rank`` (Mann-Whitney)
        is None for a binary metric.
    """
    if mp.kind == "binary":
        pt = two_proportion(
            int(x.sum()),
            int(x.size),
            int(y.sum()),
            int(y.size),
            alpha=gate.alpha,
            margin=margin,
            higher_is_better=sign > 0,
        )
        return pt.ci_low, pt.ci_high, pt.p_worse, pt.p_better, None
    diff_boot = sign * (
        _bootstrap_means(y, gate.n_bootstrap, gate.seed, stream=2)
        - _bootstrap_means(x, gate.n_bootstrap, gate.seed, stream=1)
    )
    boot = _Boot(means=diff_boot)
    olo, ohi = boot.interval(gate.alpha)
    lo, hi = (olo, ohi) if sign > 0 else (-ohi, -olo)
    if np.ptp(np.concatenate([x, y])) == 0:
        p_rank = 1.0  # every score identical: no rank difference at all
    else:
        p_rank = float(stats.mannwhitneyu(sign * y, sign * x, alternative="less").pvalue)
    return lo, hi, boot.p_less(-margin), boot.p_greater(-margin), p_rank


def run_canary(
    baseline_scores: Mapping[str, ArrayLike],
    canary_scores: Mapping[str, ArrayLike],
    policy: GatePolicy | None = None,
    rates: Mapping[str, tuple[tuple[int, int], tuple[int, int]]] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> GateReport:
    """Compare a canary version with the current one on the same traffic window.

    Args:
        baseline_scores: Metric -> scores of the current version's requests.
        canary_scores: Metric -> scores of the canary's requests.
        policy: Gate policy (rule, margins, alpha); :func:`default_policy` when ``None``.
        rates: Metric -> ``((events_a, n_a), (events_b, n_b))`` for rates known only as
            counts (e.g. thumbs-down); direction comes from the metric's policy.
        meta: Free-form context stored in the report.

    Returns:
        A :class:`GateReport` with ``mode="canary"``; ``exit_code()`` is 1 only when the
        canary is shown worse.

    Raises:
        GateInputError: Nothing to compare, or bad scores or counts.

    Examples:
        >>> rng = np.random.default_rng(1)
        >>> r = run_canary({"sim": rng.normal(0.8, 0.1, 300)}, {"sim": rng.normal(0.8, 0.1, 300)})
        >>> r.verdict, r.exit_code()
        ('pass', 0)
    """
    gate = policy or default_policy()
    rates = dict(rates or {})
    names = sorted(set(baseline_scores) | set(canary_scores))
    if not names and not rates:
        raise GateInputError("nothing to compare: no metric has scores or rates")
    clash = sorted(set(names) & set(rates))
    if clash:
        raise GateInputError(f"metrics given both as scores and as rates: {clash}")
    family = len(names) + len(rates)
    comps: list[MetricComparison] = []
    warnings: list[str] = []
    for name in names:
        mp = gate.metric_policy(name)
        if name not in baseline_scores or name not in canary_scores:
            side = "baseline" if name not in baseline_scores else "canary"
            comps.append(
                MetricComparison(
                    metric=name,
                    kind=mp.kind,
                    paired=False,
                    test="none",
                    status="insufficient_data",
                    reason=f"the {side} has no scores for this metric",
                    higher_is_better=mp.higher_is_better,
                    confidence=1.0 - gate.alpha,
                    margin=_margin(mp, None)[0],
                    margin_spec=_margin(mp, None)[1],
                )
            )
            continue
        comps.append(
            compare_unpaired(
                baseline_scores[name], canary_scores[name], mp, gate, family_size=family
            )
        )
    for name in sorted(rates):
        mp = gate.metric_policy(name).model_copy(update={"kind": "binary"})
        (xa, na), (xb, nb) = rates[name]
        try:
            a = np.r_[np.ones(xa), np.zeros(na - xa)]
            b = np.r_[np.ones(xb), np.zeros(nb - xb)]
        except ValueError as exc:
            raise GateInputError(f"rate {name!r}: bad counts {rates[name]!r}") from exc
        if not (0 <= xa <= na and 0 <= xb <= nb):
            raise GateInputError(f"rate {name!r}: events must lie in [0, n], got {rates[name]!r}")
        comps.append(
            compare_unpaired(
                a, b, mp.model_copy(update={"pass_threshold": None}), gate, family_size=family
            )
        )
    comps = _apply_family(comps, gate, gate.rule)
    return _report("canary", gate, comps, warnings, meta)


# --------------------------------------------------------------------------------------------
# Input checks and helpers for callers
# --------------------------------------------------------------------------------------------


def check_comparable(
    baseline_meta: Mapping[str, Any],
    candidate_meta: Mapping[str, Any],
    keys: Iterable[str] = DEFAULT_COMPARABLE_KEYS,
) -> None:
    """Refuse to compare runs that differ in what must be held fixed.

    Mappings (such as evaluator name -> version) are compared entry by entry, so the message
    names the evaluator whose version differs. A key absent from both sides is ignored; a
    key or entry present on one side only is a difference.

    Args:
        baseline_meta: Facts about the baseline run, e.g. ``{"dataset": "support-qa",
            "dataset_version": "3", "evaluator_versions": {"judge": "1.2"}}``.
        candidate_meta: The same facts about the candidate run.
        keys: Which facts must match.

    Raises:
        GateInputError: Something differs; the message lists every difference.

    Examples:
        >>> check_comparable({"dataset_version": "3"}, {"dataset_version": "3"})
        >>> check_comparable({"dataset_version": "3"}, {"dataset_version": "4"})
        Traceback (most recent call last):
        ...
        evalwatch.checks.policy.GateInputError: baseline and candidate are not comparable:
          - dataset_version: baseline '3', candidate '4'
    """
    diffs: list[str] = []
    for key in keys:
        in_b, in_c = key in baseline_meta, key in candidate_meta
        if not in_b and not in_c:
            continue
        if not in_b or not in_c:
            have = "candidate" if in_c else "baseline"
            val = (candidate_meta if in_c else baseline_meta)[key]
            diffs.append(f"{key}: only the {have} records it ({val!r})")
            continue
        vb, vc = baseline_meta[key], candidate_meta[key]
        if isinstance(vb, Mapping) and isinstance(vc, Mapping):
            for sub in sorted(set(vb) | set(vc), key=str):
                if sub not in vb:
                    diffs.append(f"{key}.{sub}: missing in baseline, candidate {vc[sub]!r}")
                elif sub not in vc:
                    diffs.append(f"{key}.{sub}: baseline {vb[sub]!r}, missing in candidate")
                elif vb[sub] != vc[sub]:
                    diffs.append(f"{key}.{sub}: baseline {vb[sub]!r}, candidate {vc[sub]!r}")
        elif vb != vc:
            diffs.append(f"{key}: baseline {vb!r}, candidate {vc!r}")
    if diffs:
        raise GateInputError(
            "baseline and candidate are not comparable:\n" + "\n".join(f"  - {d}" for d in diffs)
        )


def average_repeats(scores: Mapping[str, Sequence[float | None]]) -> dict[str, float]:
    """Average repeated judgements per item (``--repeats K``), ignoring unscored repeats.

    Items with no valid repeat are left out, so they count as unscored rather than as 0.

    Args:
        scores: Item id -> the K scores it received.

    Returns:
        Item id -> mean score.

    Examples:
        >>> average_repeats({"q1": [4, 5, None], "q2": [None]})
        {'q1': 4.5}
    """
    out: dict[str, float] = {}
    for item, vals in scores.items():
        arr = np.array([np.nan if v is None else float(v) for v in vals], dtype=np.float64)
        arr = arr[~np.isnan(arr)]
        if arr.size:
            out[str(item)] = float(arr.mean())
    return out
