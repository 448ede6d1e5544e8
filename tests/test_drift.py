"""Drift statistics: verdicts, effect sizes, p-value validity, precision bounds, the report."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from scipy import stats
from threadpoolctl import threadpool_limits

from evalwatch.checks.drift import (
    DriftConfig,
    DriftInput,
    DriftReport,
    DriftTestResult,
    EffectFloors,
    MinSamples,
    apply_verdicts,
    benjamini_hochberg,
    chi_square_ratings,
    domain_classifier_test,
    ks_test,
    mean_shift_bootstrap,
    mmd_permutation_test,
    psi,
    rating_trend,
    run_drift,
    topic_shift,
    two_proportion_test,
    wasserstein_normalised,
)
from evalwatch.reporting.drift_markdown import drift_report_markdown


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread() -> Iterator[None]:
    # These matrices are small: extra BLAS/OpenMP threads only spin against each other.
    with threadpool_limits(limits=1):
        yield


NumericTest = Callable[..., DriftTestResult]
NUMERIC_TESTS: list[NumericTest] = [ks_test, wasserstein_normalised, psi, mean_shift_bootstrap]

# Fewer permutations keep the null-calibration loops fast; validity does not depend on it.
FAST = DriftConfig(n_permutations=100, n_bootstrap=200)


def rng_for(*key: int) -> np.random.Generator:
    return np.random.default_rng(list(key))


def clustered(
    rng: np.random.Generator,
    centres: np.ndarray,
    weights: np.ndarray,
    n: int,
    noise: float = 0.6,
) -> tuple[np.ndarray, np.ndarray]:
    topics = rng.choice(len(weights), size=n, p=weights)
    x = centres[topics] + rng.normal(0, noise / math.sqrt(centres.shape[1]), (n, centres.shape[1]))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), topics


def unit_centres(rng: np.random.Generator, k: int, d: int = 32) -> np.ndarray:
    c = rng.normal(size=(k, d))
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def null_rejection_rate(pvalues: list[float | None], alpha: float = 0.05) -> float:
    assert all(p is not None for p in pvalues)
    return float(np.mean(np.asarray(pvalues, dtype=float) <= alpha))


def binomial_upper(n: int, p: float = 0.05, q: float = 0.999) -> float:
    """Largest rejection share a valid level-p test shows in n runs, 99.9 % of the time."""
    return float(stats.binom.ppf(q, n, p) / n)


# ------------------------------------------------------------------------------------------
# Benjamini-Hochberg and verdicts
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "adjusted"),
    [
        ([0.01, 0.04, 0.03], [0.03, 0.04, 0.04]),
        ([0.001, 0.2, 0.5, 0.04], [0.004, 0.26666667, 0.5, 0.08]),
        ([0.5], [0.5]),
        ([], []),
    ],
)
def test_benjamini_hochberg_matches_hand_computation(
    raw: list[float], adjusted: list[float]
) -> None:
    np.testing.assert_allclose(benjamini_hochberg(raw), adjusted, rtol=1e-6)


@pytest.mark.parametrize("bad", [[0.1, float("nan")], [1.2], [-0.1]])
def test_benjamini_hochberg_rejects_invalid_pvalues(bad: list[float]) -> None:
    with pytest.raises(ValueError, match="p-values"):
        benjamini_hochberg(bad)


def test_apply_verdicts_skips_insufficient_and_requires_floor() -> None:
    cfg = DriftConfig()
    rng = rng_for(1)
    shifted = ks_test(rng.normal(0, 1, 500), rng.normal(0.6, 1, 500), feature="a", config=cfg)
    too_few = ks_test(rng.normal(0, 1, 10), rng.normal(5, 1, 10), feature="b", config=cfg)
    same = ks_test(rng.normal(0, 1, 500), rng.normal(0, 1, 500), feature="c", config=cfg)
    out = apply_verdicts([shifted, too_few, same], cfg)
    assert [r.verdict for r in out] == ["drift", "insufficient_data", "no_drift"]
    assert out[1].p_adjusted is None and out[1].p_value is None
    # Two tests took part in the adjustment: the smaller p is doubled (capped by the larger).
    assert shifted.p_value is not None and same.p_value is not None
    assert out[0].p_adjusted == pytest.approx(min(2 * shifted.p_value, same.p_value), rel=1e-9)


def test_significant_but_tiny_shift_on_huge_windows_is_not_drift() -> None:
    rng = rng_for(2)
    n = 200_000
    base, cur = rng.normal(0, 1, n), rng.normal(0.02, 1, n)  # 0.02 sd: real but negligible
    result = mean_shift_bootstrap(base, cur, feature="latency_ms", config=DriftConfig())
    assert result.p_value is not None and result.p_value < 1e-6
    assert result.effect_size is not None and result.effect_size < result.effect_floor
    assert result.verdict == "no_drift"
    assert result.ci is not None and result.statistic is not None
    assert result.ci[0] < result.statistic < result.ci[1]
    assert result.details["relative_change"] is None  # not a ratio scale: no "+1450 %"


# ------------------------------------------------------------------------------------------
# Numeric columns
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("test", NUMERIC_TESTS, ids=lambda f: f.__name__)
def test_numeric_tests_detect_a_shift_and_pass_identical_distributions(test: NumericTest) -> None:
    rng = rng_for(3)
    base = rng.lognormal(6, 0.5, 3000)
    moved = test(base, rng.lognormal(6, 0.5, 3000) * 1.5, feature="length", config=FAST)
    still = test(base, rng.lognormal(6, 0.5, 3000), feature="length", config=FAST)
    assert moved.verdict == "drift", moved.summary
    assert moved.p_value is not None and moved.p_value < 1e-6
    assert still.verdict == "no_drift", still.summary
    assert moved.effect_size is not None and still.effect_size is not None
    assert moved.effect_size > 3 * moved.effect_floor > still.effect_size
    assert moved.summary.startswith("length:")
    assert moved.n_baseline == moved.n_current == 3000


@pytest.mark.parametrize(
    ("test", "expected_effect", "tol"),
    [
        # Normal(0, 1) vs Normal(1, 1): D = 2 Phi(1/2) - 1; W1 = 1, IQR = 1.349; Glass's delta 1.
        (ks_test, 2 * stats.norm.cdf(0.5) - 1, 0.03),
        (wasserstein_normalised, 1 / (2 * stats.norm.ppf(0.75)), 0.04),
        (mean_shift_bootstrap, 1.0, 0.05),
    ],
    ids=["ks", "wasserstein", "mean_shift"],
)
def test_numeric_effect_sizes_match_theory(
    test: NumericTest, expected_effect: float, tol: float
) -> None:
    rng = rng_for(4)
    r = test(rng.normal(0, 1, 20_000), rng.normal(1, 1, 20_000), config=FAST)
    assert r.effect_size == pytest.approx(expected_effect, abs=tol)


def test_psi_is_near_zero_for_equal_and_large_for_shifted_distributions() -> None:
    rng = rng_for(5)
    base = rng.normal(0, 1, 20_000)
    same = psi(base, rng.normal(0, 1, 20_000), config=FAST)
    moved = psi(base, rng.normal(1, 1, 20_000), config=FAST)
    assert same.effect_size is not None and same.effect_size < 0.01
    # PSI of N(0,1) vs N(1,1) on deciles is about 0.9 (its continuous limit, the Jeffreys
    # divergence, is mu^2 = 1).
    assert moved.effect_size is not None and 0.7 < moved.effect_size < 1.1
    assert len(moved.details["bin_edges"]) == 9


def test_psi_on_a_discrete_column_merges_tied_bins() -> None:
    rng = rng_for(6)
    base = rng.integers(1, 4, 1000).astype(float)  # three values only
    r = psi(base, rng.integers(1, 4, 1000).astype(float), config=FAST)
    assert len(r.details["baseline_counts"]) <= 3
    assert sum(r.details["baseline_counts"]) == 1000


def test_nan_values_are_dropped_and_not_counted() -> None:
    rng = rng_for(7)
    base = rng.normal(0, 1, 300)
    base[:100] = np.nan
    r = ks_test(base, rng.normal(0, 1, 300), config=FAST)
    assert r.n_baseline == 200 and r.n_current == 300


@pytest.mark.parametrize("test", NUMERIC_TESTS, ids=lambda f: f.__name__)
def test_below_min_samples_is_insufficient_data_not_a_guess(test: NumericTest) -> None:
    r = test(np.arange(49.0), np.arange(100.0) + 1000, feature="cost", config=DriftConfig())
    assert r.verdict == "insufficient_data"
    assert r.p_value is None and r.effect_size is None and r.statistic is None
    assert "need 50" in r.summary


def test_constant_baseline_still_measures_a_move() -> None:
    base = np.full(200, 3.0)
    cur = np.full(200, 5.0)
    w = wasserstein_normalised(base, cur, config=FAST)
    m = mean_shift_bootstrap(base, cur, config=FAST)
    assert w.details["scale_name"] == "pooled std" and w.effect_size is not None
    assert w.effect_size > 1
    assert m.p_value == 0.0 and m.statistic == pytest.approx(2.0)
    same = mean_shift_bootstrap(base, base.copy(), config=FAST)
    assert same.p_value == 1.0 and same.effect_size == 0.0


@pytest.mark.parametrize("value", [1 / 3, 0.1, 0.7])
@pytest.mark.parametrize("test", NUMERIC_TESTS, ids=lambda f: f.__name__)
def test_an_unchanged_constant_never_drifts(test: NumericTest, value: float) -> None:
    # Window sizes whose float means round differently from the constant (1e-17 apart).
    r = test(np.full(10_007, value), np.full(333, value), feature="price", config=FAST)
    assert r.verdict == "no_drift", r.summary
    assert r.effect_size == 0.0


def test_wasserstein_permutation_null_is_valid() -> None:
    pvalues = []
    for seed in range(150):
        rng = rng_for(8, seed)
        r = wasserstein_normalised(
            rng.lognormal(0, 1, 120),
            rng.lognormal(0, 1, 120),
            config=FAST.model_copy(update={"seed": seed}),
        )
        pvalues.append(r.p_value)
    assert null_rejection_rate(pvalues) <= binomial_upper(150)
    assert null_rejection_rate(pvalues, 0.5) == pytest.approx(0.5, abs=0.15)


def test_mean_shift_bootstrap_interval_on_a_subsample_keeps_its_width() -> None:
    """Precision bound of the rescaled bootstrap: width within 10 % of the exact interval."""
    rng = rng_for(9)
    base, cur = rng.lognormal(6, 0.6, 50_000), rng.lognormal(6, 0.6, 50_000) * 1.02
    r = mean_shift_bootstrap(base, cur, config=DriftConfig())  # resamples 2,000 of 50,000 rows
    assert r.ci is not None
    exact = 2 * 1.959964 * math.sqrt(base.var(ddof=1) / base.size + cur.var(ddof=1) / cur.size)
    assert (r.ci[1] - r.ci[0]) == pytest.approx(exact, rel=0.10)
    assert r.ci[0] < cur.mean() - base.mean() < r.ci[1]


def test_mean_shift_bootstrap_interval_covers_the_true_difference() -> None:
    cfg = DriftConfig(n_bootstrap=300, max_rows_bootstrap=400)
    covered = 0
    runs = 120
    for seed in range(runs):
        rng = rng_for(10, seed)
        base, cur = rng.exponential(1.0, 1500), rng.exponential(1.1, 1500)
        r = mean_shift_bootstrap(base, cur, config=cfg.model_copy(update={"seed": seed}))
        assert r.ci is not None
        covered += r.ci[0] <= 0.1 <= r.ci[1]
    assert covered / runs >= 0.88  # nominal 95 %


# ------------------------------------------------------------------------------------------
# Rates and ratings
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k1", "n1", "k2", "n2", "method", "verdict"),
    [
        (40, 1000, 90, 1000, "z", "drift"),
        (40, 1000, 44, 1000, "z", "no_drift"),
        (0, 60, 6, 60, "fisher_exact", "drift"),
        (1, 60, 2, 60, "fisher_exact", "no_drift"),
    ],
)
def test_two_proportion_test(k1: int, n1: int, k2: int, n2: int, method: str, verdict: str) -> None:
    base = np.r_[np.ones(k1, bool), np.zeros(n1 - k1, bool)]
    cur = np.r_[np.ones(k2, bool), np.zeros(n2 - k2, bool)]
    r = two_proportion_test(base, cur, feature="refusal", config=DriftConfig())
    assert r.details["method"] == method
    assert r.verdict == verdict
    assert r.effect_size == pytest.approx(abs(k2 / n2 - k1 / n1))
    assert r.ci is not None and r.ci[0] <= k2 / n2 - k1 / n1 <= r.ci[1]
    assert r.summary.startswith("refusal rate")


def test_two_proportion_p_value_matches_scipy() -> None:
    base = np.r_[np.ones(50, bool), np.zeros(950, bool)]
    cur = np.r_[np.ones(75, bool), np.zeros(925, bool)]
    r = two_proportion_test(base, cur, config=DriftConfig())
    table = np.array([[50, 950], [75, 925]])
    chi = stats.chi2_contingency(table, correction=False)  # pooled z-test == chi-square
    assert r.p_value == pytest.approx(chi.pvalue, rel=1e-9)


def test_rate_of_all_false_is_no_drift_with_p_one() -> None:
    r = two_proportion_test(np.zeros(100, bool), np.zeros(100, bool), config=DriftConfig())
    assert r.verdict == "no_drift" and r.p_value == 1.0 and r.effect_size == 0.0


def test_chi_square_ratings_detects_a_shift_and_reports_distributions() -> None:
    rng = rng_for(11)
    p_base = [0.05, 0.07, 0.15, 0.33, 0.40]
    p_cur = [0.12, 0.10, 0.18, 0.30, 0.30]
    base = rng.choice(5, 800, p=p_base) + 1.0
    moved = chi_square_ratings(base, rng.choice(5, 800, p=p_cur) + 1.0, config=DriftConfig())
    still = chi_square_ratings(base, rng.choice(5, 800, p=p_base) + 1.0, config=DriftConfig())
    assert moved.verdict == "drift" and still.verdict == "no_drift"
    assert moved.details["mean_current"] < moved.details["mean_baseline"]
    assert sum(moved.details["distribution_current"]) == pytest.approx(1.0)
    assert moved.effect_name == "Cramér's V"


def test_ratings_with_nan_are_dropped_and_bad_values_rejected() -> None:
    ratings = np.array([5, np.nan, 4, 3] * 20)
    r = chi_square_ratings(ratings, ratings, config=DriftConfig())
    assert r.n_baseline == 60
    with pytest.raises(ValueError, match="1 to 5"):
        chi_square_ratings(np.array([0, 5] * 40), ratings)
    with pytest.raises(ValueError, match="1 to 5"):
        chi_square_ratings(np.array([4.5, 5] * 40), ratings)


def test_rating_trend_finds_a_decline_and_nothing_in_noise() -> None:
    rng = rng_for(12)
    t = np.sort(rng.integers(0, 7 * 86400, 1500)).astype(float)  # whole seconds
    declining = np.clip(np.round(4.5 - 1.5 * t / t.max() + rng.normal(0, 0.8, t.size)), 1, 5)
    down = rating_trend(t, declining, config=DriftConfig())
    flat = rating_trend(t, rng.integers(1, 6, t.size).astype(float), config=DriftConfig())
    assert down.verdict == "drift" and down.details["direction"] == "down"
    assert down.details["slope_per_day"] == pytest.approx(-1.5 / 7, abs=0.06)
    assert flat.verdict == "no_drift"
    dt = t.astype("datetime64[s]")  # datetime64 input gives the same answer
    assert rating_trend(dt, declining).statistic == pytest.approx(down.statistic)


def test_rating_trend_on_constant_ratings_says_no_trend() -> None:
    r = rating_trend(np.arange(100.0), np.full(100, 4.0), config=DriftConfig())
    assert r.verdict == "no_drift" and r.p_value == 1.0 and "note" in r.details


# ------------------------------------------------------------------------------------------
# Embeddings
# ------------------------------------------------------------------------------------------


def test_domain_classifier_detects_shift_and_shows_current_examples() -> None:
    rng = rng_for(13)
    centres = unit_centres(rng, 4)
    base, _ = clustered(rng, centres, np.array([0.4, 0.3, 0.2, 0.1]), 1500)
    cur, topics = clustered(rng, centres, np.array([0.1, 0.2, 0.3, 0.4]), 1500)
    texts = [f"topic {t}" for t in topics]
    r = domain_classifier_test(base, cur, current_texts=texts, config=FAST)
    assert r.verdict == "drift"
    assert r.ci is not None and r.ci[0] < r.details["auc"] < r.ci[1]
    # The most "current-like" responses come from the topics that grew.
    assert all(t in ("topic 2", "topic 3") for t in r.details["most_current_like"])


def test_domain_classifier_null_p_values_are_valid() -> None:
    pvalues = []
    runs = 120
    for seed in range(runs):
        rng = rng_for(14, seed)
        base, cur = rng.normal(size=(200, 16)), rng.normal(size=(200, 16))
        cfg = FAST.model_copy(update={"seed": seed})
        pvalues.append(domain_classifier_test(base, cur, config=cfg).p_value)
    assert null_rejection_rate(pvalues) <= binomial_upper(runs)


def test_mmd_detects_a_topic_mix_change_and_passes_the_null() -> None:
    rng = rng_for(15)
    centres = unit_centres(rng, 6)
    w = np.array([0.25, 0.2, 0.2, 0.15, 0.1, 0.1])
    w_moved = w + np.array([-0.08, 0, 0, 0, 0, 0.08])
    base, _ = clustered(rng, centres, w, 1000)
    moved = mmd_permutation_test(base, clustered(rng, centres, w_moved, 1000)[0], config=FAST)
    same = mmd_permutation_test(base, clustered(rng, centres, w, 1000)[0], config=FAST)
    assert moved.p_value is not None and moved.p_value < 1e-3
    assert same.p_value is not None and same.p_value > 0.01
    assert moved.statistic is not None and same.statistic is not None
    assert moved.statistic > 5 * abs(same.statistic)


def test_mmd_null_p_values_are_valid_including_the_fitted_tail() -> None:
    pvalues, perm = [], []
    runs = 150
    for seed in range(runs):
        rng = rng_for(16, seed)
        centres = unit_centres(rng, 5, d=16)
        w = np.full(5, 0.2)
        a, _ = clustered(rng, centres, w, 120)
        b, _ = clustered(rng, centres, w, 120)
        r = mmd_permutation_test(a, b, config=FAST.model_copy(update={"seed": seed}))
        pvalues.append(r.p_value)
        perm.append(r.details["p_permutation"])
    assert null_rejection_rate(pvalues) <= binomial_upper(runs)
    assert null_rejection_rate(pvalues, 0.01) <= binomial_upper(runs, 0.01)
    # The fitted tail agrees with the plain permutation p-value where both are defined.
    assert np.corrcoef(np.asarray(pvalues, dtype=float), perm)[0, 1] > 0.95


def _mmd_subsample_errors(shift: float, runs: int) -> tuple[np.ndarray, np.ndarray]:
    rng = rng_for(17)
    centres = unit_centres(rng, 5, d=24)
    w = np.array([0.3, 0.25, 0.2, 0.15, 0.1])
    w_cur = w + np.array([-shift, 0, 0, 0, shift])
    base, _ = clustered(rng, centres, w, 2000)
    cur, _ = clustered(rng, centres, w_cur, 2000)
    full = mmd_permutation_test(base, cur, config=DriftConfig(max_rows_for_quadratic=2000))
    errors, ses = [], []
    for seed in range(runs):
        cfg = DriftConfig(max_rows_for_quadratic=400, n_permutations=100, seed=seed)
        sub = mmd_permutation_test(base, cur, config=cfg)
        assert sub.details["rows_per_window"] == [400, 400]
        assert full.statistic is not None and sub.statistic is not None
        errors.append(sub.statistic - full.statistic)
        ses.append(sub.details["mmd2_se"])
    return np.asarray(errors), np.asarray(ses)


@pytest.mark.parametrize("shift", [0.0, 0.1], ids=["no_drift", "drift"])
def test_mmd_subsample_precision_bound_holds(shift: float) -> None:
    """The documented bound: |MMD² on the cap - MMD² on all rows| <= 2 SE, ~95 % of the time."""
    errors, ses = _mmd_subsample_errors(shift, runs=30)
    within = np.mean(np.abs(errors) <= 2 * ses)
    assert within >= 0.85
    # The SE is honest, not inflated: it is of the size of the errors it bounds.
    assert np.median(ses) < 4 * np.sqrt(np.mean(errors**2))
    # And the subsample estimate is unbiased for the full-window one.
    assert abs(errors.mean()) < 2 * errors.std(ddof=1) / math.sqrt(errors.size) + 1e-4


def test_topic_shift_names_grown_and_shrunk_clusters_with_examples() -> None:
    rng = rng_for(18)
    centres = unit_centres(rng, 4)
    base, b_topics = clustered(rng, centres, np.array([0.4, 0.3, 0.2, 0.1]), 2000, noise=0.3)
    cur, c_topics = clustered(rng, centres, np.array([0.2, 0.3, 0.2, 0.3]), 2000, noise=0.3)
    cfg = DriftConfig(n_clusters=4)
    shares, new = topic_shift(
        base,
        cur,
        baseline_texts=[f"about {t}" for t in b_topics],
        current_texts=[f"about {t}" for t in c_topics],
        config=cfg,
    )
    assert shares.verdict == "drift"
    assert shares.effect_size == pytest.approx(0.2, abs=0.04)  # 20 points moved
    assert len(shares.details["grown"]) == 1 and len(shares.details["shrunk"]) == 1
    grown, shrunk = shares.details["grown"][0], shares.details["shrunk"][0]
    assert set(grown["examples"]) == {"about 3"}
    assert set(shrunk["examples"]) == {"about 0"}
    assert grown["delta"] == pytest.approx(0.2, abs=0.04)
    assert shares.details["js_divergence"] > 0 and shares.details["kl_divergence"] > 0
    assert "grew: cluster" in shares.summary and "shrank: cluster" in shares.summary
    assert new.verdict == "no_drift"


def test_new_topic_is_flagged_with_its_examples() -> None:
    rng = rng_for(19)
    centres = unit_centres(rng, 5)
    old = np.array([0.3, 0.3, 0.2, 0.2, 0.0])
    base, _ = clustered(rng, centres, old, 2000, noise=0.3)
    cur, topics = clustered(rng, centres, np.array([0.27, 0.27, 0.18, 0.18, 0.10]), 2000, 0.3)
    _, new = topic_shift(
        base, cur, current_texts=[f"topic {t}" for t in topics], config=DriftConfig(n_clusters=4)
    )
    assert new.verdict == "drift"
    assert new.details["observed_share"] == pytest.approx(0.10 + 0.01, abs=0.02)
    assert new.details["examples"] and set(new.details["examples"]) == {"topic 4"}
    assert "far from every baseline topic" in new.summary


def test_new_topic_share_matches_the_quantile_under_no_drift() -> None:
    """Under no drift the share of 'far' responses is the expected 1 %, and the test is valid."""
    shares, pvalues = [], []
    runs = 50
    for seed in range(runs):
        rng = rng_for(20, seed)
        centres = unit_centres(rng, 4)
        w = np.array([0.4, 0.3, 0.2, 0.1])
        base, _ = clustered(rng, centres, w, 1000)
        cur, _ = clustered(rng, centres, w, 1000)
        _, new = topic_shift(base, cur, config=DriftConfig(n_clusters=4, seed=seed))
        shares.append(new.details["observed_share"])
        pvalues.append(new.p_value)
        assert new.details["expected_share"] == pytest.approx(0.01, abs=0.002)
    assert np.mean(shares) == pytest.approx(0.01, abs=0.003)
    assert null_rejection_rate(pvalues) <= binomial_upper(runs)


def test_topic_shift_needs_enough_baseline_rows() -> None:
    rng = rng_for(21)
    shares, new = topic_shift(rng.normal(size=(150, 8)), rng.normal(size=(150, 8)))
    assert shares.verdict == new.verdict == "insufficient_data"


def test_embedding_tests_below_min_samples_are_insufficient() -> None:
    rng = rng_for(22)
    small = rng.normal(size=(50, 8))
    for r in (
        domain_classifier_test(small, small),
        mmd_permutation_test(small, small),
    ):
        assert r.verdict == "insufficient_data" and r.p_value is None


# ------------------------------------------------------------------------------------------
# The report
# ------------------------------------------------------------------------------------------


def make_window(
    rng: np.random.Generator,
    centres: np.ndarray,
    n: int,
    *,
    length_factor: float = 1.0,
    refusal: float = 0.04,
    new_topic: float = 0.0,
) -> DriftInput:
    w = np.array([0.35, 0.3, 0.2, 0.15, 0.0]) * (1 - new_topic) + np.array([0, 0, 0, 0, 1.0]) * (
        new_topic
    )
    emb, topics = clustered(rng, centres, w, n, noise=0.4)
    ratings = rng.choice(5, n, p=[0.05, 0.07, 0.15, 0.33, 0.40]) + 1.0
    return DriftInput(
        embeddings=emb,
        numeric={
            "response_length": rng.lognormal(6, 0.5, n) * length_factor,
            "latency_ms": rng.lognormal(6.5, 0.4, n),
        },
        rates={"refusal": rng.random(n) < refusal, "unsafe": rng.random(n) < 0.01},
        ratings=ratings,
        texts=[f"topic {t} response {i}" for i, t in enumerate(topics)],
        timestamps=np.sort(rng.uniform(0, 7 * 86400, n)),
    )


@pytest.fixture(scope="module")
def windows() -> dict[str, DriftInput]:
    rng = rng_for(23)
    centres = unit_centres(rng, 5)
    return {
        "base": make_window(rng, centres, 1500),
        "same": make_window(rng, centres, 1500),
        "shifted": make_window(rng, centres, 1500, length_factor=1.3, refusal=0.10, new_topic=0.08),
    }


def test_report_finds_nothing_between_two_windows_of_the_same_traffic(
    windows: dict[str, DriftInput],
) -> None:
    report = run_drift(windows["base"], windows["same"], DriftConfig(n_clusters=4))
    assert not report.drift_found, drift_report_markdown(report)
    assert report.moved() == []
    tests = {(r.test, r.feature) for r in report.results}
    assert ("mmd", "embeddings") in tests and ("two_proportion", "refusal") in tests
    assert ("rating_trend", "rating") in tests and ("psi", "latency_ms") in tests
    assert len(report.results) == 4 + 2 * 4 + 2 + 2
    assert drift_report_markdown(report).startswith("## Drift report: no drift")


def test_report_finds_longer_responses_more_refusals_and_a_new_topic(
    windows: dict[str, DriftInput],
) -> None:
    report = run_drift(windows["base"], windows["shifted"], DriftConfig(n_clusters=4))
    assert report.drift_found
    moved = report.moved()
    moved_keys = {(r.test, r.feature) for r in moved}
    assert ("mean_shift", "response_length") in moved_keys
    assert ("two_proportion", "refusal") in moved_keys
    assert ("new_topic", "embeddings") in moved_keys
    assert not any(r.feature in ("latency_ms", "unsafe") for r in moved)
    ratios = [r.effect_ratio for r in moved]
    assert ratios == sorted(ratios, reverse=True)
    for r in report.results:
        if r.verdict == "drift":
            assert r.p_adjusted is not None and r.p_adjusted <= 0.05
            assert r.effect_size is not None and r.effect_size >= r.effect_floor
    md = drift_report_markdown(report)
    assert md.splitlines()[0].startswith("## Drift report: drift in")
    what_moved = md.split("### What moved")[1].split("### All tests")[0]
    assert "response_length" in what_moved and "refusal rate 4" in what_moved
    assert "+30" in what_moved or "+29" in what_moved or "+31" in what_moved  # length +30 %
    assert "topic 4" in md  # examples of the new topic


def test_report_serialises_to_json_and_back(windows: dict[str, DriftInput]) -> None:
    report = run_drift(windows["base"], windows["shifted"], DriftConfig(n_clusters=4))
    text = report.model_dump_json()
    json.loads(text)  # strict JSON: no NaN or Infinity
    again = DriftReport.model_validate_json(text)
    assert again == report


def test_report_is_reproducible_for_a_seed(windows: dict[str, DriftInput]) -> None:
    a = run_drift(windows["base"], windows["same"], DriftConfig(n_clusters=4, seed=3))
    b = run_drift(windows["base"], windows["same"], DriftConfig(n_clusters=4, seed=3))
    assert a == b


def test_columns_missing_on_one_side_are_insufficient_not_skipped() -> None:
    rng = rng_for(24)
    base = DriftInput(
        embeddings=rng.normal(size=(300, 8)).astype(np.float32),
        numeric={"cost": rng.random(300)},
        rates={"refusal": rng.random(300) < 0.1},
    )
    cur = DriftInput(numeric={"latency_ms": rng.random(300)}, ratings=np.full(300, 5.0))
    report = run_drift(base, cur, DriftConfig())
    by_feature = {(r.test, r.feature): r for r in report.results}
    assert by_feature[("mmd", "embeddings")].verdict == "insufficient_data"
    assert by_feature[("ks", "cost")].n_current == 0
    assert by_feature[("ks", "latency_ms")].n_baseline == 0
    assert by_feature[("two_proportion", "refusal")].verdict == "insufficient_data"
    assert by_feature[("chi_square", "rating")].verdict == "insufficient_data"
    assert all(r.verdict == "insufficient_data" for r in report.results)
    assert not report.drift_found
    assert "### Insufficient data" in drift_report_markdown(report)


def test_pca_option_reduces_embeddings_and_still_detects(windows: dict[str, DriftInput]) -> None:
    cfg = DriftConfig(n_clusters=4, pca_components=8)
    report = run_drift(windows["base"], windows["shifted"], cfg)
    embedding = [r for r in report.results if r.family == "embedding"]
    assert all(r.details["pca_components"] == 8 for r in embedding)
    assert any(r.verdict == "drift" for r in embedding)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"embeddings": np.zeros(10)}, "2-D"),
        ({"embeddings": np.zeros((3, 2)), "texts": ["a"]}, "align"),
        ({"rates": {"refusal": np.array([0.5, 1.0])}}, "boolean"),
        ({"numeric": {"cost": np.zeros((2, 2))}}, "1-D"),
        ({"ratings": np.ones(3), "timestamps": np.arange(2.0)}, "align"),
    ],
)
def test_drift_input_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DriftInput(**kwargs)


def test_report_rejects_inconsistent_drift_flag() -> None:
    with pytest.raises(ValueError, match="drift_found"):
        DriftReport(results=[], config=DriftConfig(), drift_found=True)


def test_config_is_data_and_validated() -> None:
    cfg = DriftConfig(floors=EffectFloors(ks=0.1), min_samples=MinSamples(numeric=10))
    assert cfg.floors.for_test("ks") == 0.1
    assert DriftConfig.model_validate_json(cfg.model_dump_json()) == cfg
    with pytest.raises(ValueError):
        DriftConfig(alpha=1.5)
    with pytest.raises(ValueError):
        DriftConfig(floors={"ks": 0.1, "not_a_test": 1.0})
