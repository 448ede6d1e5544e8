from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from evalwatch.checks.policy import GateInputError, GatePolicy, MetricPolicy
from evalwatch.checks.regression import (
    GateReport,
    average_repeats,
    check_comparable,
    compare_paired,
    compare_pairwise,
    compare_unpaired,
    holm,
    mcnemar_exact,
    min_detectable_difference,
    paired_bootstrap_ci,
    run_canary,
    run_gate,
    sign_test,
    two_proportion,
)
from evalwatch.reporting.gate_report import gate_markdown, gate_text

FAST = GatePolicy(n_bootstrap=2_000)


def ids(n: int, prefix: str = "q") -> list[str]:
    return [f"{prefix}{i:04d}" for i in range(n)]


def exact_diffs(n: int, mean: float, sd: float, seed: int = 0) -> np.ndarray:
    """Differences with exactly this sample mean and SD, so decisions don't hinge on luck."""
    z = np.random.default_rng(seed).normal(size=n)
    z = (z - z.mean()) / z.std(ddof=1)
    return mean + sd * z


def paired(
    diffs: np.ndarray, base_level: float = 0.5, prefix: str = "q"
) -> tuple[dict[str, float], dict[str, float]]:
    keys = ids(diffs.size, prefix)
    base = dict.fromkeys(keys, base_level)
    cand = {k: base_level + float(d) for k, d in zip(keys, diffs, strict=True)}
    return base, cand


def floats(values: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def binom_tail(k: int, n: int) -> float:
    """P(X >= k) for X ~ Binomial(n, 1/2), by hand."""
    return sum(math.comb(n, j) for j in range(k, n + 1)) / 2**n


# ------------------------------------------------------------------------------------------
# Primitives
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "expected"),
    [
        ([0.01, 0.04, 0.03], [0.03, 0.06, 0.06]),
        ([0.01, 0.02, 0.03, 0.04], [0.04, 0.06, 0.06, 0.06]),
        ([0.5, 0.001], [0.5, 0.002]),
        ([0.9, 0.8], [1.0, 1.0]),
        ([0.04], [0.04]),
        ([float("nan"), 0.02, 0.01], [float("nan"), 0.02, 0.02]),
    ],
)
def test_holm_matches_hand_computation(p: list[float], expected: list[float]) -> None:
    np.testing.assert_allclose(holm(p), expected, rtol=1e-12, equal_nan=True)


def test_holm_rejects_impossible_p_values() -> None:
    with pytest.raises(ValueError):
        holm([0.2, 1.5])


@pytest.mark.parametrize(("b", "c"), [(10, 2), (7, 7), (0, 5), (25, 10), (1, 0), (40, 25)])
def test_mcnemar_exact_is_the_binomial_tail(b: int, c: int) -> None:
    n = b + c
    assert mcnemar_exact(b, c, "worse") == pytest.approx(binom_tail(b, n), rel=1e-9)
    assert mcnemar_exact(b, c, "better") == pytest.approx(binom_tail(c, n), rel=1e-9)
    two = min(1.0, 2 * min(binom_tail(b, n), binom_tail(c, n)))
    assert mcnemar_exact(b, c) == pytest.approx(two, rel=1e-9)


def test_exact_tests_without_discordant_items_give_no_evidence() -> None:
    assert mcnemar_exact(0, 0, "worse") == 1.0
    assert sign_test(0, 0, "worse") == 1.0


@pytest.mark.parametrize(("wins", "losses"), [(3, 12), (12, 3), (5, 5), (0, 9)])
def test_sign_test_counts_losses_as_evidence_of_worse(wins: int, losses: int) -> None:
    n = wins + losses
    assert sign_test(wins, losses, "worse") == pytest.approx(binom_tail(losses, n), rel=1e-9)
    assert sign_test(wins, losses, "better") == pytest.approx(binom_tail(wins, n), rel=1e-9)


@pytest.mark.parametrize(
    ("n", "dist", "low", "high"),
    [(10, "normal", 0.85, 0.95), (40, "skewed", 0.82, 0.95), (200, "skewed", 0.85, 0.95)],
)
def test_paired_bootstrap_ci_covers_the_true_mean(
    n: int, dist: str, low: float, high: float
) -> None:
    reps, covered = 200, 0
    for r in range(reps):
        rng = np.random.default_rng(10_000 + r)
        d = rng.normal(0.0, 1.0, n) if dist == "normal" else rng.exponential(1.0, n) - 1.0
        lo, hi = paired_bootstrap_ci(d, alpha=0.10, n_resamples=2_000, seed=0)
        covered += lo <= 0.0 <= hi
    assert low <= covered / reps <= high


def test_small_sample_interval_is_expanded_to_the_t_width() -> None:
    # The plain percentile interval is about sqrt((n-1)/n) too narrow (0.92 of the t width at
    # n = 8); the expanded interval should be close to the t interval for normal data.
    ratios = []
    for seed in range(20):
        z = np.random.default_rng(seed).normal(size=8)
        lo, hi = paired_bootstrap_ci(z, n_resamples=20_000, seed=1)
        t_lo, t_hi = stats.ttest_1samp(z, 0.0).confidence_interval(0.95)
        ratios.append((hi - lo) / (t_hi - t_lo))
    assert 0.95 <= float(np.mean(ratios)) <= 1.02


def test_paired_bootstrap_ci_is_seeded_and_stable() -> None:
    d = exact_diffs(300, -0.02, 0.1)
    a = paired_bootstrap_ci(d, seed=7)
    assert a == paired_bootstrap_ci(d, seed=7)
    b = paired_bootstrap_ci(d, seed=8)
    width = a[1] - a[0]
    assert abs(a[0] - b[0]) < 0.05 * width and abs(a[1] - b[1]) < 0.05 * width
    # Large-sample agreement with the t interval.
    t_lo, t_hi = stats.ttest_1samp(d, 0.0).confidence_interval(0.95)
    assert a[0] == pytest.approx(t_lo, abs=0.1 * width)
    assert a[1] == pytest.approx(t_hi, abs=0.1 * width)


def test_bootstrap_on_large_samples_uses_chunks_and_agrees_with_t() -> None:
    # 10 000 x 5 000 cells exceeds the cached-plan bound, exercising the chunked path.
    d = exact_diffs(5_000, 0.01, 0.2)
    lo, hi = paired_bootstrap_ci(d, n_resamples=1_000, seed=1)
    t_lo, t_hi = stats.ttest_1samp(d, 0.0).confidence_interval(0.95)
    assert lo == pytest.approx(t_lo, abs=0.001) and hi == pytest.approx(t_hi, abs=0.001)


@pytest.mark.parametrize(("diff", "message"), [([0.1], "at least 2"), ([0.1, np.nan], "NaN")])
def test_paired_bootstrap_ci_refuses_bad_input(diff: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        paired_bootstrap_ci(diff)


def test_min_detectable_difference_hand_value_and_shape() -> None:
    # (z_0.975 + z_0.8) * 0.1 / sqrt(300) = 0.01618 (t quantiles make it a hair larger)
    mdd = min_detectable_difference(0.1, 300, alpha=0.025, power=0.8)
    assert mdd == pytest.approx((1.959964 + 0.841621) * 0.1 / math.sqrt(300), rel=0.01)
    assert min_detectable_difference(0.1, 1200, 0.025) < mdd / 1.9
    assert min_detectable_difference(0.1, 300, 0.025, power=0.9) > mdd
    with pytest.raises(ValueError):
        min_detectable_difference(0.1, 1, 0.025)


def test_mdd_is_the_drop_detected_with_the_stated_power() -> None:
    n, sd, level = 60, 0.1, 0.025
    mdd = min_detectable_difference(sd, n, level, power=0.8)
    rng = np.random.default_rng(3)
    hits = sum(
        stats.ttest_1samp(rng.normal(-mdd, sd, n), 0.0, alternative="less").pvalue < level
        for _ in range(2_000)
    )
    assert 0.77 <= hits / 2_000 <= 0.83


# ------------------------------------------------------------------------------------------
# Paired comparisons and decision rules
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "n", "mean", "sd", "margin", "expected", "too_small"),
    [
        ("regression", 200, -0.05, 0.05, 0.0, "regression", False),  # clear drop
        ("regression", 300, 0.0, 0.05, 0.01, "pass", False),  # equivalent
        ("regression", 300, 0.03, 0.05, 0.0, "pass", False),  # improvement
        ("regression", 300, -0.005, 0.05, 0.01, "pass", False),  # drop within the margin
        ("regression", 25, -0.02, 0.1, 0.01, "pass", True),  # drop hidden by a small set
        ("non-inferiority", 25, 0.0, 0.1, 0.01, "not_proven", True),  # small n: not proven
        ("non-inferiority", 400, 0.0, 0.05, 0.02, "pass", False),  # large n: proven
        ("non-inferiority", 400, -0.05, 0.05, 0.02, "regression", False),  # proven worse
        ("non-inferiority", 400, -0.02, 0.05, 0.02, "not_proven", False),  # at the margin
        ("non-inferiority", 400, 0.0, 0.05, 0.0, "not_proven", True),  # no margin: unprovable
    ],
)
def test_decision_rules_on_constructed_cases(
    rule: str, n: int, mean: float, sd: float, margin: float, expected: str, too_small: bool
) -> None:
    base, cand = paired(exact_diffs(n, mean, sd))
    gate = FAST.model_copy(update={"rule": rule})
    c = compare_paired(base, cand, MetricPolicy(metric="sim", margin=margin), gate)
    assert c.decision == expected
    assert c.too_small is too_small
    assert c.n_both == n
    assert c.mean_diff == pytest.approx(mean, abs=1e-12)
    assert c.ci_low is not None and c.ci_high is not None
    assert c.ci_low < mean < c.ci_high
    if rule == "non-inferiority":
        assert c.p_noninferiority is not None
        # Passing must coincide with the interval excluding a drop beyond the margin.
        assert (expected == "pass") == (c.ci_low > -margin)


def test_p_value_and_interval_give_the_same_decision() -> None:
    mp = MetricPolicy(metric="sim", margin=0.01)
    disagreements = 0
    for seed in range(60):
        d = np.random.default_rng(seed).normal(-0.012, 0.05, 100)
        c = compare_paired(*paired(d), mp, FAST)
        assert c.p_value is not None and c.ci_high is not None
        disagreements += (c.p_value < FAST.alpha / 2) != (c.ci_high < -0.01)
    assert disagreements == 0


@pytest.mark.parametrize(
    ("higher_is_better", "delta", "expected"),
    [(False, +30.0, "regression"), (False, -30.0, "pass"), (True, +30.0, "pass")],
)
def test_direction_of_the_metric(higher_is_better: bool, delta: float, expected: str) -> None:
    d = exact_diffs(100, delta, 20.0)
    base, cand = paired(d, base_level=500.0)
    mp = MetricPolicy(metric="latency_ms", higher_is_better=higher_is_better)
    c = compare_paired(base, cand, mp, FAST)
    assert c.decision == expected
    assert c.mean_diff == pytest.approx(delta)  # reported in raw units, candidate - baseline
    assert c.ci_low is not None and c.ci_high is not None and c.ci_low < delta < c.ci_high


@pytest.mark.parametrize(("relative_margin", "expected"), [(0.10, "pass"), (0.01, "regression")])
def test_relative_margin_scales_with_the_baseline(relative_margin: float, expected: str) -> None:
    # A 0.02 drop on a baseline of 0.5 is 4 %.
    base, cand = paired(exact_diffs(400, -0.02, 0.03), base_level=0.5)
    mp = MetricPolicy(metric="sim", margin=relative_margin, margin_kind="relative")
    c = compare_paired(base, cand, mp, FAST)
    assert c.margin == pytest.approx(relative_margin * 0.5)
    assert c.decision == expected


def test_only_items_both_sides_scored_are_compared() -> None:
    base = {"a": 0.5, "b": 0.6, "c": None, "d": 0.7, "e": 0.1}
    cand = {"a": 0.4, "b": float("nan"), "c": 0.3, "d": 0.6, "f": 0.9}
    gate = FAST.model_copy(update={"min_items": 2})
    c = compare_paired(base, cand, MetricPolicy(metric="sim"), gate)
    assert c.n_both == 2  # a and d
    assert c.n_baseline == 4 and c.n_candidate == 4
    assert c.n_missing_baseline == 2  # c (None) and f (absent)
    assert c.n_missing_candidate == 2  # b (NaN) and e (absent)
    assert c.mean_diff == pytest.approx(-0.1)
    report = run_gate({"sim": base}, {"sim": cand}, None, gate)
    assert any("2 items without a candidate score" in w for w in report.warnings)


def test_too_few_items_is_insufficient_data_not_a_pass() -> None:
    base, cand = paired(exact_diffs(5, -0.3, 0.01))
    c = compare_paired(base, cand, MetricPolicy(metric="sim"), FAST)
    assert (c.status, c.decision, c.p_value) == ("insufficient_data", "insufficient_data", None)
    assert c.reason is not None and "5 items" in c.reason
    report = run_gate({"sim": base}, {"sim": cand}, policy=FAST)
    assert report.verdict == "inconclusive" and report.exit_code() == 1


@pytest.mark.parametrize(
    ("scores", "message"),
    [({"a": "0.8"}, "not a number"), ({"a": [1, 2]}, "not a number"), ({"a": math.inf}, "inf")],
)
def test_bad_scores_are_gate_input_errors(scores: dict[str, object], message: str) -> None:
    with pytest.raises(GateInputError, match=message):
        compare_paired(scores, {"a": 0.5}, MetricPolicy(metric="sim"), FAST)  # type: ignore[arg-type]


def test_binary_metric_uses_mcnemar_on_discordant_items() -> None:
    keys = ids(100)
    base = dict.fromkeys(keys, 1.0)
    cand = dict.fromkeys(keys, 1.0)
    for k in keys[:12]:  # baseline pass -> candidate fail
        cand[k] = 0.0
    for k in keys[12:80:2]:  # 34 stay failing on both sides
        base[k] = cand[k] = 0.0
    for k in keys[80:82]:  # baseline fail -> candidate pass
        base[k] = 0.0
    c = compare_paired(base, cand, MetricPolicy(metric="ok", kind="binary"), FAST)
    assert c.test == "mcnemar_exact"
    assert (c.losses, c.wins, c.ties) == (12, 2, 86)
    assert c.p_value == pytest.approx(mcnemar_exact(12, 2, "worse"))
    assert c.decision == "regression"


@pytest.mark.parametrize(
    ("losses", "wins", "expected"),
    [
        (10, 3, "pass"),  # one-sided p = 378/8192 = 0.046: above alpha/2 = 0.025
        (12, 3, "regression"),  # one-sided p = 576/32768 = 0.018
    ],
)
def test_decisions_are_taken_at_half_alpha(losses: int, wins: int, expected: str) -> None:
    keys = ids(100)
    base = {k: (1.0 if i < losses else 0.0) for i, k in enumerate(keys)}
    cand = {k: (1.0 if losses <= i < losses + wins else 0.0) for i, k in enumerate(keys)}
    c = compare_paired(base, cand, MetricPolicy(metric="ok", kind="binary"), FAST)
    assert (c.losses, c.wins) == (losses, wins)
    assert c.p_value == pytest.approx(binom_tail(losses, losses + wins))
    assert c.decision == expected


def test_binary_metric_from_rubric_scores_with_threshold() -> None:
    keys = ids(60)
    base = dict.fromkeys(keys, 4.0)
    cand = {k: (2.0 if i < 20 else 5.0) for i, k in enumerate(keys)}
    mp = MetricPolicy(metric="judge.correctness", kind="binary", pass_threshold=4)
    c = compare_paired(base, cand, mp, FAST)
    assert (c.baseline_mean, c.candidate_mean) == (1.0, pytest.approx(40 / 60))
    assert c.losses == 20 and c.decision == "regression"
    with pytest.raises(GateInputError, match="pass_threshold"):
        compare_paired(base, cand, MetricPolicy(metric="j", kind="binary"), FAST)


def test_lower_is_better_scores_binarised_by_threshold() -> None:
    # Toxicity passes at <= 0.5; the candidate turns 15 of 80 items toxic.
    keys = ids(80)
    base = dict.fromkeys(keys, 0.1)
    cand = {k: (0.9 if i < 15 else 0.1) for i, k in enumerate(keys)}
    mp = MetricPolicy(metric="tox", kind="binary", pass_threshold=0.5, higher_is_better=False)
    c = compare_paired(base, cand, mp, FAST)
    assert (c.baseline_mean, c.losses, c.wins) == (1.0, 15, 0)  # pass rates
    assert c.decision == "regression"
    assert compare_paired(cand, base, mp, FAST).decision == "pass"


@pytest.mark.parametrize("rule", ["regression", "non-inferiority"])
def test_identical_outputs_never_regress(rule: str) -> None:
    base, _ = paired(np.zeros(100))
    gate = FAST.model_copy(update={"rule": rule})
    c = compare_paired(base, dict(base), MetricPolicy(metric="sim"), gate)
    assert (c.mean_diff, c.ci_low, c.ci_high, c.sd_diff) == (0.0, 0.0, 0.0, 0.0)
    assert c.p_value == 1.0  # ties count for the null: no evidence of a drop
    # Under non-inferiority with a zero margin, "not worse" cannot be proven from ties.
    assert c.decision == ("pass" if rule == "regression" else "not_proven")


def test_a_constant_drop_is_a_regression() -> None:
    base, cand = paired(np.full(50, -0.05))
    c = compare_paired(base, cand, MetricPolicy(metric="sim", margin=0.01), FAST)
    assert c.decision == "regression"
    assert c.ci_low == pytest.approx(-0.05) and c.ci_high == pytest.approx(-0.05)


def test_binary_metric_with_a_margin_uses_the_bootstrap() -> None:
    keys = ids(400)
    base = dict.fromkeys(keys, 1.0)
    cand = {k: (0.0 if i < 8 else 1.0) for i, k in enumerate(keys)}  # pass rate -2 %
    mp = MetricPolicy(metric="ok", kind="binary", margin=0.05)
    c = compare_paired(base, cand, mp, FAST)
    assert c.test == "paired_bootstrap" and c.decision == "pass"
    # Without the margin the same 8 losses and no wins are a significant regression.
    assert compare_paired(base, cand, MetricPolicy(metric="ok", kind="binary"), FAST).decision == (
        "regression"
    )


def test_pairwise_verdicts_use_the_sign_test() -> None:
    verdicts: dict[str, str | None] = {
        k: ("loss" if i < 15 else "win" if i < 18 else "tie") for i, k in enumerate(ids(50))
    }
    verdicts["extra"] = None  # not judged
    c = compare_pairwise(verdicts, MetricPolicy(metric="judge.pairwise", kind="pairwise"), FAST)
    assert (c.wins, c.ties, c.losses, c.n_both) == (3, 32, 15, 50)
    assert c.test == "sign_test"
    assert c.p_value == pytest.approx(sign_test(3, 15, "worse"))
    assert c.mean_diff == pytest.approx((3 - 15) / 50)
    assert c.decision == "regression"
    with pytest.raises(GateInputError, match="win/tie/loss"):
        compare_pairwise({"a": "draw"}, MetricPolicy(metric="p", kind="pairwise"), FAST)


# ------------------------------------------------------------------------------------------
# Whole gate
# ------------------------------------------------------------------------------------------


def sliced_case(slice_drop: float) -> tuple[dict, dict, dict]:
    """400 items; 'billing' (40 items) drops by slice_drop, the rest improve by 0.01."""
    keys = ids(400)
    rng = np.random.default_rng(5)
    base_vals = rng.uniform(0.4, 0.9, 400)
    d = np.where(np.arange(400) < 40, -slice_drop, 0.01) + exact_diffs(400, 0.0, 0.03, seed=6)
    d[7] = -0.5  # the single worst item
    tags = {
        k: (["billing"] if i < 40 else ["shipping"]) + (["hard"] if i % 5 == 0 else [])
        for i, k in enumerate(keys)
    }
    base = {"sim": dict(zip(keys, base_vals.tolist(), strict=True))}
    cand = {"sim": dict(zip(keys, (base_vals + d).tolist(), strict=True))}
    return base, cand, tags


def test_regressing_slice_is_named_even_when_the_whole_passes() -> None:
    base, cand, tags = sliced_case(slice_drop=0.1)
    report = run_gate(base, cand, tags, FAST)
    overall = report.metrics[0]
    assert overall.decision == "pass"  # the mean barely moves
    assert report.regressing_slices == ["billing"]
    assert report.verdict == "regression" and report.exit_code() == 1
    assert any("billing" in r for r in report.reasons)
    # Slices are one Holm family: slice x metric tests, all with adjusted p >= raw p.
    tested = [s for s in report.slices if s.status == "ok"]
    assert {s.slice for s in tested} == {"billing", "shipping", "hard"}
    raw = [s.p_value for s in tested]
    np.testing.assert_allclose(floats([s.p_adjusted for s in tested]), holm(raw))
    # The most regressed item comes first, with its id and tags for the caller.
    worst = report.worst_items[0]
    assert (worst.item_id, worst.tags) == ("q0007", ["billing"])
    assert worst.diff == pytest.approx(-0.5 + 0.0, abs=0.05)

    lenient = FAST.model_copy(update={"fail_on_slice_regression": False})
    report = run_gate(base, cand, tags, lenient)
    assert report.verdict == "pass" and report.regressing_slices == ["billing"]
    assert any("billing" in w for w in report.warnings)


def test_small_slices_are_listed_but_not_tested() -> None:
    base, cand, tags = sliced_case(slice_drop=0.0)
    tags["q0399"] = ["shipping", "rare"]
    report = run_gate(base, cand, tags, FAST)
    rare = [s for s in report.slices if s.slice == "rare"]
    assert rare and rare[0].decision == "insufficient_data"
    assert report.verdict == "pass"  # a tiny slice must not make the gate inconclusive


def test_equivalent_candidate_passes_and_clear_drop_fails() -> None:
    keys = ids(300)
    rng = np.random.default_rng(11)
    base_sim = rng.uniform(0.3, 0.9, 300)
    noise = exact_diffs(300, 0.0, 0.05, seed=12)
    base = {"sim": dict(zip(keys, base_sim, strict=True)), "tox": dict.fromkeys(keys, 0.01)}
    same = {
        "sim": dict(zip(keys, base_sim + noise, strict=True)),
        "tox": dict.fromkeys(keys, 0.01),
    }
    worse = {
        "sim": dict(zip(keys, base_sim + noise - 0.03, strict=True)),
        "tox": dict.fromkeys(keys, 0.01),
    }
    policy = FAST.model_copy(
        update={"metrics": [MetricPolicy(metric="tox", higher_is_better=False, margin=0.01)]}
    )
    ok = run_gate(base, same, None, policy)
    assert ok.verdict == "pass" and ok.exit_code() == 0
    bad = run_gate(base, worse, None, policy)
    assert bad.verdict == "regression" and bad.exit_code() == 1
    assert [m.metric for m in bad.metrics if m.decision == "regression"] == ["sim"]
    # Holm across metrics.
    np.testing.assert_allclose(
        floats([m.p_adjusted for m in bad.metrics]), holm([m.p_value for m in bad.metrics])
    )


def test_non_inferiority_gate_is_inconclusive_when_not_proven() -> None:
    base, cand = paired(exact_diffs(30, 0.0, 0.1))
    policy = FAST.model_copy(update={"rule": "non-inferiority", "default_margin": 0.01})
    report = run_gate({"sim": base}, {"sim": cand}, None, policy)
    assert report.verdict == "inconclusive" and report.exit_code() == 1
    assert report.metrics[0].too_small
    assert any("too few items" in w for w in report.warnings)


def test_pairwise_metrics_join_the_gate_and_its_slices() -> None:
    keys = ids(120)
    verdicts = {k: ("loss" if i < 30 else "tie") for i, k in enumerate(keys)}
    tags = {k: ["billing" if i < 30 else "other"] for i, k in enumerate(keys)}
    report = run_gate({}, {}, tags, FAST, pairwise={"judge.pairwise": verdicts})
    assert report.metrics[0].kind == "pairwise"
    assert report.verdict == "regression"
    assert "billing" in report.regressing_slices
    assert {w.verdict for w in report.worst_items} == {"loss"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"baseline_scores": {}, "candidate_scores": {}}, "nothing to compare"),
        (
            {
                "baseline_scores": {"p": {"a": 1.0}},
                "candidate_scores": {"p": {"a": 1.0}},
                "pairwise": {"p": {"a": "win"}},
            },
            "both as scores and as pairwise",
        ),
        (
            {
                "baseline_scores": {"p": {"a": 1.0}},
                "candidate_scores": {"p": {"a": 1.0}},
                "policy": GatePolicy(metrics=[MetricPolicy(metric="p", kind="pairwise")]),
            },
            "pairwise in the policy",
        ),
    ],
)
def test_gate_input_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(GateInputError, match=message):
        run_gate(**kwargs)


def test_metric_missing_on_one_side_is_explicit() -> None:
    base, cand = paired(exact_diffs(50, 0.0, 0.05))
    report = run_gate({"sim": base, "tox": base}, {"sim": cand}, None, FAST)
    tox = next(m for m in report.metrics if m.metric == "tox")
    assert tox.decision == "insufficient_data" and "candidate has no scores" in (tox.reason or "")
    assert report.verdict == "inconclusive"


def test_reports_render_and_round_trip() -> None:
    base, cand, tags = sliced_case(slice_drop=0.1)
    report = run_gate(base, cand, tags, FAST, meta={"dataset": "support-qa"})
    text = gate_text(report)
    assert text.startswith("evalwatch gate: REGRESSION")
    assert "billing" in text and "q0007" in text and "sim" in text
    md = gate_markdown(report)
    assert md.startswith("## evalwatch gate: REGRESSION")
    assert "| billing | sim |" in md
    data = json.loads(report.to_json())
    assert data["verdict"] == "regression" and data["meta"] == {"dataset": "support-qa"}
    assert GateReport.model_validate_json(report.to_json()) == report
    # Same input, same seed: the same report.
    assert run_gate(base, cand, tags, FAST, meta={"dataset": "support-qa"}) == report


# ------------------------------------------------------------------------------------------
# Comparable runs, repeats
# ------------------------------------------------------------------------------------------

META = {
    "dataset": "support-qa",
    "dataset_version": "3",
    "evaluator_versions": {"embedding": "1.0", "judge": "2.1"},
    "model_name": "baseline-model",
}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({}, []),
        ({"model_name": "candidate-model"}, []),  # models are supposed to differ
        ({"dataset_version": "4"}, ["dataset_version: baseline '3', candidate '4'"]),
        (
            {"evaluator_versions": {"embedding": "1.0", "judge": "2.2"}},
            ["evaluator_versions.judge: baseline '2.1', candidate '2.2'"],
        ),
        (
            {"evaluator_versions": {"embedding": "1.0"}},
            ["evaluator_versions.judge: baseline '2.1', missing in candidate"],
        ),
        (
            {"dataset": "other", "evaluator_versions": {"embedding": "1.1", "judge": "2.1"}},
            ["dataset: baseline 'support-qa'", "evaluator_versions.embedding"],
        ),
    ],
)
def test_check_comparable(change: dict, expected: list[str]) -> None:
    candidate = {**META, **change}
    if not expected:
        check_comparable(META, candidate)
        return
    with pytest.raises(GateInputError) as info:
        check_comparable(META, candidate)
    for fragment in expected:
        assert fragment in str(info.value)


def test_average_repeats_ignores_unscored_repeats() -> None:
    assert average_repeats({"a": [1.0, 2.0, None], "b": [None, None], "c": [3]}) == {
        "a": 1.5,
        "c": 3.0,
    }


# ------------------------------------------------------------------------------------------
# Canary (unpaired)
# ------------------------------------------------------------------------------------------


def test_two_proportion_matches_newcombe_published_example() -> None:
    # Newcombe (1998), Statistics in Medicine 17:873, example (a): 56/70 vs 48/80,
    # method 10 interval 0.0524 to 0.3339.
    t = two_proportion(48, 80, 56, 70)
    assert t.diff == pytest.approx(0.2)
    assert (t.ci_low, t.ci_high) == (
        pytest.approx(0.0524, abs=5e-5),
        pytest.approx(0.3339, abs=5e-5),
    )


@pytest.mark.parametrize(
    ("counts", "higher_is_better", "margin"),
    [
        ((50, 1000, 80, 1000), False, 0.0),
        ((50, 1000, 62, 1000), False, 0.0),
        ((50, 1000, 80, 1000), False, 0.01),
        ((900, 1000, 870, 1000), True, 0.0),
        ((0, 500, 0, 500), True, 0.0),
        ((3, 40, 9, 40), False, 0.05),
    ],
)
def test_two_proportion_p_value_agrees_with_its_interval(
    counts: tuple[int, int, int, int], higher_is_better: bool, margin: float
) -> None:
    t = two_proportion(*counts, alpha=0.05, margin=margin, higher_is_better=higher_is_better)
    worse = t.ci_high < -margin if higher_is_better else t.ci_low > margin
    assert (t.p_worse < 0.025) == worse
    assert 0.0 <= t.p_worse <= 1.0 and t.p_better == pytest.approx(1 - t.p_worse)


def test_two_proportion_rejects_impossible_counts() -> None:
    with pytest.raises(ValueError):
        two_proportion(5, 4, 1, 10)


@pytest.mark.parametrize(("shift", "expected"), [(-0.05, "regression"), (0.0, "pass")])
def test_compare_unpaired_continuous(shift: float, expected: str) -> None:
    rng = np.random.default_rng(21)
    a = rng.normal(0.8, 0.1, 400)
    b = [*rng.normal(0.8 + shift, 0.1, 350).tolist(), None, float("nan")]
    c = compare_unpaired(a, b, MetricPolicy(metric="sim"), FAST)
    assert not c.paired and c.test == "unpaired_bootstrap"
    assert (c.n_baseline, c.n_candidate, c.n_missing_candidate) == (400, 350, 2)
    assert c.decision == expected
    assert c.p_rank is not None and (c.p_rank < 0.025) == (expected == "regression")
    # The bootstrap interval agrees with Welch's.
    welch = stats.ttest_ind(np.asarray(b[:-2]), a, equal_var=False).confidence_interval(0.95)
    assert c.ci_low == pytest.approx(welch.low, abs=0.003)
    assert c.ci_high == pytest.approx(welch.high, abs=0.003)


def test_compare_unpaired_refuses_text_and_pairwise() -> None:
    with pytest.raises(GateInputError, match="text"):
        compare_unpaired([0.5] * 30, ["0.5"] * 30, MetricPolicy(metric="sim"), FAST)
    with pytest.raises(GateInputError, match="paired items"):
        compare_unpaired([1.0] * 30, [1.0] * 30, MetricPolicy(metric="p", kind="pairwise"), FAST)


def test_run_canary_exit_codes() -> None:
    rng = np.random.default_rng(4)
    worse = run_canary(
        {"sim": rng.normal(0.8, 0.1, 500)},
        {"sim": rng.normal(0.8, 0.1, 500)},
        GatePolicy(
            n_bootstrap=2_000,
            metrics=[MetricPolicy(metric="thumbs_down_rate", higher_is_better=False)],
        ),
        rates={"thumbs_down_rate": ((40, 1000), (75, 1000))},
    )
    assert worse.mode == "canary" and worse.verdict == "regression" and worse.exit_code() == 1
    by_name = {m.metric: m for m in worse.metrics}
    assert by_name["thumbs_down_rate"].decision == "regression"
    assert by_name["sim"].decision == "pass"
    np.testing.assert_allclose(
        floats([m.p_adjusted for m in worse.metrics]), holm([m.p_value for m in worse.metrics])
    )
    assert "thumbs_down_rate" in gate_text(worse)

    same = run_canary({"sim": rng.normal(0.8, 0.1, 500)}, {"sim": rng.normal(0.8, 0.1, 500)}, FAST)
    assert same.verdict == "pass" and same.exit_code() == 0

    # Too little canary traffic: not shown worse, so no rollback, but not a pass either.
    early = run_canary({"sim": rng.normal(0.8, 0.1, 500)}, {"sim": [0.1, 0.2]}, FAST)
    assert early.verdict == "inconclusive" and early.exit_code() == 0
