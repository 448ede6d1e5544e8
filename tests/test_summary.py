from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from evalwatch.evaluators.summary import MetricAccumulator, ScoreSummarizer, summarize, t_interval


def test_summary_matches_numpy_and_scipy() -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(0.4, 0.2, size=500)
    s = summarize("e", "m", [*values.tolist(), None, None])
    assert s.count == 500 and s.unscored == 2
    assert s.mean == pytest.approx(values.mean())
    assert s.std == pytest.approx(values.std(ddof=1))
    lo, hi = stats.t.interval(0.95, 499, loc=values.mean(), scale=stats.sem(values))
    assert (s.ci_low, s.ci_high) == (pytest.approx(lo), pytest.approx(hi))
    assert s.status == "ok"


@pytest.mark.parametrize(
    ("values", "count", "mean", "status"),
    [([], 0, None, "insufficient_data"), ([0.7], 1, 0.7, "insufficient_data")],
)
def test_too_few_values_give_no_interval(
    values: list[float], count: int, mean: float | None, status: str
) -> None:
    s = summarize("e", "m", values)
    assert s.count == count and s.mean == mean and s.status == status
    assert s.ci_low is None and s.ci_high is None


def test_nothing_scored_is_not_a_zero() -> None:
    s = summarize("e", "m", [None, None], ["error: boom", "skipped: no reference"])
    assert s.mean is None and s.count == 0 and s.unscored == 2
    assert s.unscored_reasons == {"error: boom": 1, "skipped: no reference": 1}


def test_constant_values_have_a_zero_width_interval() -> None:
    assert t_interval(1.0, 0.0, 5) == (1.0, 1.0)


def test_add_many_and_merge_equal_one_by_one() -> None:
    rng = np.random.default_rng(1)
    chunks = [rng.random(n).tolist() for n in (1, 7, 300, 2)]
    one = MetricAccumulator()
    for c in chunks:
        for v in c:
            one.add(v)
    many = MetricAccumulator()
    for c in chunks:
        many.add_many(c)
    assert many.count == one.count
    assert many.mean == pytest.approx(one.mean)
    assert many.m2 == pytest.approx(one.m2)


def test_reasons_are_bounded() -> None:
    acc = MetricAccumulator()
    for i in range(50):
        acc.add(None, f"error {i}")
    assert acc.unscored == 50
    assert len(acc.reasons) == 11 and acc.reasons["(other reasons)"] == 40


def test_summarizer_keeps_metric_order_and_splits_versions() -> None:
    s = ScoreSummarizer()
    s.add_many("h", "chars", "v2", [1.0, 2.0])
    s.add_many("h", "json_valid", "v2", [], ["skipped: no JSON expected"])
    s.add_many("h", "chars", "v1", [3.0])
    overall = s.overall()
    assert [(m.metric, m.count, m.unscored) for m in overall] == [
        ("chars", 3, 0),
        ("json_valid", 0, 1),
    ]
    assert overall[0].mean == pytest.approx(2.0)
    per = s.by_model_version()
    assert [(m.model_version, m.metric) for m in per] == [
        ("v1", "chars"),
        ("v2", "chars"),
        ("v2", "json_valid"),
    ]


def test_rates_get_a_wilson_interval_inside_zero_one() -> None:
    from evalwatch.evaluators.summary import MetricAccumulator, wilson_interval

    acc = MetricAccumulator()
    acc.add_many([1.0] * 2 + [0.0] * 8)
    s = acc.summary("heuristics", "empty_response")
    assert (s.ci_low, s.ci_high) == pytest.approx(wilson_interval(2, 10))
    assert s.ci_low is not None and s.ci_high is not None
    assert 0.0 < s.ci_low < 0.2 < s.ci_high < 1.0  # a t-interval would go below 0 here
    none = MetricAccumulator()
    for _ in range(100):
        none.add(0.0)
    z = none.summary("heuristics", "refusal")
    # No refusal in 100 is not "exactly 0": the interval still has width.
    assert z.ci_low == 0.0 and z.ci_high is not None and 0.03 < z.ci_high < 0.04
    # One non-binary value anywhere (added, or merged in) makes it a mean again.
    acc.merge(MetricAccumulator(count=1, mean=0.5, binary=False))
    t = acc.summary("x", "y")
    assert t.ci_low is not None and t.ci_low < 0.0
