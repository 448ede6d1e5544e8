"""The drift test registry, constant columns, and the one Wilson interval."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from evalwatch.checks.drift import (
    DRIFT_TESTS,
    DriftConfig,
    DriftInput,
    MinSamples,
    Sample,
    descriptors_for,
    ks_test,
    mean_shift_bootstrap,
    near_constant,
    psi,
    run_drift,
    wasserstein_normalised,
)
from evalwatch.checks.intervals import newcombe_interval, wilson_interval, z_for

FAST = DriftConfig(
    n_permutations=50,
    n_bootstrap=100,
    min_samples=MinSamples(embeddings=40),
    n_clusters=3,
)


def _samples(kind: str, shifted: bool) -> tuple[Sample, Sample]:
    """A small synthetic baseline and current sample of one column kind."""
    rng = np.random.default_rng(0)
    n = 240
    move = 1.0 if shifted else 0.0
    if kind == "numeric":
        return Sample(rng.normal(0, 1, n)), Sample(rng.normal(move, 1, n))
    if kind == "rate":
        return Sample(rng.random(n) < 0.1), Sample(rng.random(n) < 0.1 + 0.3 * move)
    if kind == "rating":
        ts = np.arange(n) * 3600.0
        cur = np.where(np.arange(n) < n // 2, 5, 5 - 3 * move) if shifted else rng.integers(1, 6, n)
        return (
            Sample(rng.integers(1, 6, n).astype(float), timestamps=ts),
            Sample(np.asarray(cur, dtype=float), timestamps=ts),
        )
    centres = rng.normal(size=(3, 8)) * 4
    b = centres[rng.integers(0, 2, n)] + rng.normal(size=(n, 8))
    c = centres[rng.integers(0, 3 if shifted else 2, n)] + rng.normal(size=(n, 8))
    texts = [f"response {i}" for i in range(n)]
    return Sample(b, texts=texts), Sample(c, texts=texts)


def test_the_registry_covers_every_family_and_kind() -> None:
    assert {d.family for d in DRIFT_TESTS.values()} == {"embedding", "numeric", "rate", "rating"}
    assert [d.name for d in descriptors_for("numeric")] == [
        "ks",
        "wasserstein",
        "psi",
        "mean_shift",
    ]
    assert [d.name for d in descriptors_for("rating")] == ["chi_square", "rating_trend"]
    produced = [t for d in DRIFT_TESTS.values() for t in d.tests]
    assert len(produced) == len(set(produced)) == 11  # every TestName, each from one descriptor


@pytest.mark.parametrize("name", sorted(DRIFT_TESTS))
def test_every_registered_test_runs_and_returns_its_family(name: str) -> None:
    d = DRIFT_TESTS[name]
    (kind,) = d.kinds
    for shifted in (False, True):
        b, c = _samples(kind, shifted)
        results = d.run(b, c, "feature", FAST)
        assert [r.test for r in results] == list(d.tests)
        for r in results:
            assert r.family == d.family
            assert r.effect_name == d.tests[r.test] or r.effect_name.split(" / ")[0] in {
                "W1",
                "|Δmean|",
            }
            assert r.verdict in {"drift", "no_drift"}
            assert r.p_value is not None and 0 <= r.p_value <= 1
    # The shifted samples are a clear move: every test but the within-window trend on random
    # ratings sees it.
    b, c = _samples(kind, True)
    assert any(r.verdict == "drift" for r in d.run(b, c, "feature", FAST)), name


@pytest.mark.parametrize("name", sorted(DRIFT_TESTS))
def test_every_registered_test_says_insufficient_on_tiny_windows(name: str) -> None:
    d = DRIFT_TESTS[name]
    (kind,) = d.kinds
    b, c = _samples(kind, False)
    tiny = (
        Sample(b.values[:5], texts=b.texts[:5] if b.texts else None, timestamps=None),
        Sample(
            c.values[:5],
            texts=c.texts[:5] if c.texts else None,
            timestamps=None if c.timestamps is None else c.timestamps[:5],
        ),
    )
    for r in d.run(*tiny, "feature", FAST):
        assert r.verdict == "insufficient_data" and r.family == d.family
        assert r.p_value is None and r.summary.startswith("insufficient data")


# ---------------------------------------------------------------------------------------------
# Constant columns
# ---------------------------------------------------------------------------------------------


def test_near_constant_is_relative_to_the_values() -> None:
    assert near_constant([0.1 + 0.2, 0.3] * 50)  # 5.6e-17 apart: rounding, not variation
    assert near_constant(np.full(10, 7.0))
    assert not near_constant([1e-20, 2e-20])  # tiny units still vary
    assert not near_constant([1.7e9, 1.7e9 + 1])  # a second on Unix times


def test_a_constant_column_with_rounding_noise_is_no_drift() -> None:
    # Two windows of one value computed two ways: standard deviations ~1e-17, not 0.
    base = np.array([0.1 + 0.2, 0.3] * 300)
    cur = np.array([0.3] * 500 + [0.1 + 0.2] * 100)
    assert 0 < float(np.std(base)) < 1e-15
    for fn in (mean_shift_bootstrap, ks_test, wasserstein_normalised, psi):
        r = fn(base, cur, feature="price", config=FAST)
        assert r.verdict == "no_drift", (fn.__name__, r.summary)
        assert r.effect_size == 0.0 and r.p_value == 1.0


def test_a_window_whose_spread_is_rounding_has_zero_std() -> None:
    # Baseline one value (with rounding noise), current a real shift: measured against the
    # pooled spread, not against 1e-17.
    base = np.array([0.1 + 0.2, 0.3] * 300)
    cur = np.full(600, 0.5)
    r = mean_shift_bootstrap(base, cur, feature="price", config=FAST)
    assert r.details["scale_name"] == "pooled std"
    assert r.verdict == "drift" and r.effect_size == pytest.approx(2.0, rel=0.01)


def test_run_drift_leaves_out_a_constant_column() -> None:
    rng = np.random.default_rng(3)
    base = DriftInput(
        numeric={"price": np.array([0.1 + 0.2, 0.3] * 300), "latency_ms": rng.normal(size=600)}
    )
    cur = DriftInput(numeric={"price": np.full(600, 0.3), "latency_ms": rng.normal(size=600)})
    report = run_drift(base, cur, FAST)
    assert {r.feature for r in report.results} == {"latency_ms"}
    assert not report.drift_found


# ---------------------------------------------------------------------------------------------
# The Wilson interval
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("k", "n"), [(0, 10), (1, 10), (2, 10), (81, 263), (50, 50), (3, 1000)])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_wilson_matches_scipy(k: int, n: int, confidence: float) -> None:
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    assert wilson_interval(k, n, confidence) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_wilson_textbook_value() -> None:
    # Agresti & Coull (1998), and Newcombe (1998) example: 81/263 -> 0.2553 to 0.3662.
    lo, hi = wilson_interval(81, 263)
    assert (round(lo, 4), round(hi, 4)) == (0.2553, 0.3662)
    assert wilson_interval(0, 100)[0] == 0.0 and wilson_interval(100, 100)[1] == 1.0


def test_wilson_refuses_no_trials() -> None:
    with pytest.raises(ValueError):
        wilson_interval(0, 0)
    with pytest.raises(ValueError):
        wilson_interval(5, 4)


def test_newcombe_published_example() -> None:
    # Newcombe (1998), Statistics in Medicine 17:873, example (a): 56/70 vs 48/80.
    lo, hi = newcombe_interval(48, 80, 56, 70, z_for(0.95))
    assert (round(lo, 4), round(hi, 4)) == (0.0524, 0.3339)


def test_every_caller_uses_the_one_wilson_interval() -> None:
    import evalwatch.checks.drift.rates as rates
    import evalwatch.checks.regression as regression
    import evalwatch.evaluators.summary as summary

    assert summary.wilson_interval is wilson_interval
    assert rates.newcombe_interval is newcombe_interval
    assert regression.newcombe_interval is newcombe_interval
    for module in (rates, regression, summary):
        assert not hasattr(module, "_wilson") and not hasattr(module, "_newcombe")
