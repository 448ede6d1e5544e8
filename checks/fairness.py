"""Fairness monitoring: does one segment of the users get worse answers than the rest?

Pure functions (arrays in, pydantic results out; no I/O). Segments are the values of
metadata fields (``language``, ``region``, ``user_tier``...): every segment of a field is
compared with *the rest* of that field's rows (rows whose field is unknown take no part), on
every metric the caller hands in, each metric in one of five groups:

* ``quality``: evaluator scores (judge, embedding, reference metrics), difference of means
  with Welch's confidence interval, tested with Mann-Whitney U: scores are bounded and skewed
  and a segment is often a tenth of its rest, where Welch's t-test came out anti-conservative
  in the tail a BH family of ~50 tests reads (p near 0.001; ``benchmarks/
  fairness_calibration.py``), while the rank test is exact under "no gap" (the segment's
  values distributed as the rest's). Welch's t-test (value kind ``mean``) is registered for a
  caller's metric with near-normal segment means;
* ``safety``: the unsafe rate (``toxicity.safety`` below the threshold) and ``refusal``: the
  refusal rate, both as a difference of rates with Newcombe's hybrid score interval
  (:func:`evalwatch.checks.intervals.newcombe_interval`) and a pooled two-proportion z-test
  (Fisher's exact test when an expected count is below 50);
* ``latency``: difference of mean latency with Welch's interval, tested with Mann-Whitney U
  (latency is skewed: the rank test keeps its level where a t-test on a few slow calls would
  not);
* ``satisfaction``: user ratings (difference of means, Welch interval, Mann-Whitney U, as
  ratings are ordinal) and the thumbs-down rate.

Every test is a small registered unit (:data:`FAIRNESS_TESTS`, like the drift check's
``DRIFT_TESTS``) chosen by the metric's value kind (:data:`TEST_FOR_KIND`). One report is one
false-discovery-rate family (:func:`scipy.stats.false_discovery_control`) across all fields,
segments and metrics: a finding says ``"gap"`` when its adjusted p-value is at most ``fdr``
and its difference reaches the group's floor. The adjustment is Benjamini-Yekutieli by
default: a segment compared with "the rest" is negatively dependent on the other segments of
its field, which Benjamini-Hochberg's bound does not cover (plain BH gave 7.3 % reports with a
false gap under no gap); BY's holds under any dependence, and under the global null FDR is
the family-wise rate, so it bounds the chance of any false ``"gap"`` in a report by ``fdr``.
``benchmarks/fairness_calibration.py`` measures both. A segment, or its rest,
with fewer values than ``min_segment_size`` is ``"insufficient_data"`` and takes no part in
the adjustment. A field of exactly two segments is tested once (each segment's rest is the
other, so the second test would repeat the first and a duplicated p-value would loosen the BH
family); the second segment's findings are that test read the other way round
(``details["mirror_of"]``).

The gate's fairness slice (:func:`gap_widening`) asks a different question of paired test-set
scores: did the candidate *widen* a segment's gap by more than a margin? See its docstring.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats

from evalwatch.checks.intervals import newcombe_interval, z_for

__all__ = [
    "FAIRNESS_TESTS",
    "GROUPS",
    "TEST_FOR_KIND",
    "FairnessConfig",
    "FairnessFinding",
    "FairnessMetric",
    "FairnessReport",
    "FairnessTest",
    "GapWidening",
    "MetricGroup",
    "TestStat",
    "ValueKind",
    "gap_widening",
    "mann_whitney",
    "run_fairness",
    "segment_values",
    "two_proportion",
    "welch_t",
]

MetricGroup = Literal["quality", "safety", "refusal", "latency", "satisfaction"]
ValueKind = Literal["score", "mean", "rate", "duration", "rating"]
Verdict = Literal["gap", "no_gap", "insufficient_data"]
FloatArray = npt.NDArray[np.float64]

#: Report order of the groups; refusal and safety gaps are listed apart from quality gaps.
GROUPS: tuple[MetricGroup, ...] = ("quality", "safety", "refusal", "latency", "satisfaction")


class FairnessConfig(BaseModel):
    """Settings of one fairness report.

    Attributes:
        fdr: False discovery rate across the report's tests.
        correction: ``"by"`` (Benjamini-Yekutieli, the default) or ``"bh"``
            (Benjamini-Hochberg). BH's bound needs tests that are independent or positively
            dependent; a segment compared with "the rest" is negatively dependent on its
            field's other segments, and plain BH measured 7.3 % false-alarm reports under no
            gap (``benchmarks/fairness_calibration.py``). BY is BH with the harmonic factor
            that holds under any dependence.
        min_segment_size: Fewer values than this in a segment or its rest: insufficient data.
        ci_level: Coverage of the printed intervals.
        max_segments: Largest segments tested per field (by rows); the others are counted
            in ``FairnessReport.left_out``.
        floors: Group -> smallest absolute difference that counts as a gap (metric units;
            none: any significant difference), so a tiny gap on huge traffic is no alarm.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    fdr: float = Field(0.05, gt=0.0, lt=0.5)
    correction: Literal["by", "bh"] = "by"
    min_segment_size: int = Field(30, ge=2)
    ci_level: float = Field(0.95, gt=0.5, lt=1.0)
    max_segments: int = Field(20, ge=1)
    floors: dict[MetricGroup, float] = Field(default_factory=dict)


@dataclass(frozen=True)
class FairnessMetric:
    """One metric's values and the rows (segment labels) they belong to.

    Attributes:
        name: ``judge.correctness``, ``refusal``, ``latency_ms``, ``rating``...
        group: Which kind of gap it shows.
        kind: How it is compared (picks the test, :data:`TEST_FOR_KIND`): ``score``,
            ``duration`` and ``rating`` by Mann-Whitney U, ``rate`` by two proportions,
            ``mean`` by Welch's t-test.
        higher_is_better: Which end is good (a refusal rate: False).
        values: The values (NaN: missing; rates as 0/1 or booleans).
        rows: Label row of each value, or None when ``values`` is aligned with the labels
            (ratings carry their interaction's row).
    """

    name: str
    group: MetricGroup
    kind: ValueKind
    higher_is_better: bool
    values: npt.NDArray[Any]
    rows: npt.NDArray[np.intp] | None = None


@dataclass(frozen=True)
class TestStat:
    """What one test computes for a segment against the rest.

    Attributes:
        statistic: The test statistic (t, z, U).
        p_value: Two-sided p-value.
        segment_value: The segment's mean or rate.
        rest_value: The rest's mean or rate.
        difference: ``segment_value - rest_value``.
        ci: Confidence interval of ``difference``.
        method: What was computed (``welch``, ``z``, ``fisher_exact``, ``mann_whitney``).
        details: Extra numbers for the report (counts, rank-biserial correlation).
    """

    statistic: float
    p_value: float
    segment_value: float
    rest_value: float
    difference: float
    ci: tuple[float, float]
    method: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FairnessTest:
    """One registered test: its name, the value kinds it applies to, and how it runs.

    Attributes:
        name: Registry key.
        kinds: Value kinds it judges.
        effect_name: What its ``difference`` is.
        run: ``run(segment, rest, ci_level)`` -> :class:`TestStat` (finite values in).
    """

    name: str
    kinds: frozenset[ValueKind]
    effect_name: str
    run: Callable[[FloatArray, FloatArray, float], TestStat]


class FairnessFinding(BaseModel):
    """One metric compared between one segment and the rest of its field."""

    field: str
    segment: str
    metric: str
    group: MetricGroup
    test: str
    effect_name: str
    higher_is_better: bool
    n_segment: int
    n_rest: int
    segment_value: float | None = None
    rest_value: float | None = None
    difference: float | None = Field(None, description="segment - rest, metric units.")
    ci: tuple[float, float] | None = None
    statistic: float | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    floor: float = 0.0
    verdict: Verdict
    direction: Literal["worse", "better", "same"] | None = Field(
        None, description="Whether the segment is worse or better off than the rest."
    )
    details: dict[str, Any] = Field(default_factory=dict)
    summary: str = ""


class FairnessReport(BaseModel):
    """Every finding of one fairness check, adjusted as one family."""

    findings: list[FairnessFinding]
    config: FairnessConfig
    segments: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="Field -> segment -> rows, of the tested segments."
    )
    left_out: dict[str, int] = Field(
        default_factory=dict, description="Field -> segments beyond max_segments (not tested)."
    )
    gap_found: bool = False
    notes: list[str] = Field(default_factory=list, description="What was not compared, why.")

    def gaps(self, groups: Sequence[MetricGroup] = GROUPS) -> list[FairnessFinding]:
        """The findings that are gaps, in ``groups``, largest adjusted evidence first."""
        out = [f for f in self.findings if f.verdict == "gap" and f.group in groups]
        return sorted(out, key=lambda f: (f.p_adjusted or 0.0, f.field, f.segment))


# --------------------------------------------------------------------------------------------
# The registered tests
# --------------------------------------------------------------------------------------------


def _welch_ci(seg: FloatArray, rest: FloatArray, level: float) -> tuple[float, float, float, float]:
    """``(t, two-sided p, ci low, ci high)`` of Welch's test of ``mean(seg) - mean(rest)``."""
    d = float(seg.mean() - rest.mean())
    if np.ptp(seg) == 0 and np.ptp(rest) == 0:
        # Both samples constant: the difference is known exactly (no spread to test against).
        return (0.0, 1.0, d, d) if d == 0 else (math.copysign(math.inf, d), 0.0, d, d)
    res = stats.ttest_ind(seg, rest, equal_var=False)
    ci = res.confidence_interval(confidence_level=level)
    return float(res.statistic), float(res.pvalue), float(ci.low), float(ci.high)


def welch_t(segment: FloatArray, rest: FloatArray, ci_level: float = 0.95) -> TestStat:
    """Welch's t-test and interval of the difference of means (scores).

    Args:
        segment: The segment's finite values.
        rest: The rest's finite values.
        ci_level: Interval coverage.

    Returns:
        The statistic.

    Examples:
        >>> s = welch_t(np.array([0.5, 0.6, 0.55, 0.45]), np.array([0.8, 0.85, 0.9, 0.75]))
        >>> round(s.difference, 3), s.p_value < 0.01, s.ci[1] < 0
        (-0.3, True, True)
    """
    t, p, lo, hi = _welch_ci(segment, rest, ci_level)
    return TestStat(
        t,
        p,
        float(segment.mean()),
        float(rest.mean()),
        float(segment.mean() - rest.mean()),
        (lo, hi),
        "welch",
    )


def mann_whitney(segment: FloatArray, rest: FloatArray, ci_level: float = 0.95) -> TestStat:
    """Mann-Whitney U (two-sided) with the Welch interval of the difference of means.

    For scores, skewed values (latency) and ordinal ones (ratings): the rank test's level does
    not rest on normal means; the interval says how large the difference of means is.

    Examples:
        >>> s = mann_whitney(np.array([900.0, 1200, 1100, 1500, 950]),
        ...                  np.array([300.0, 420, 380, 500, 350, 410]))
        >>> s.method, s.p_value < 0.01, s.details["rank_biserial"]
        ('mann_whitney', True, 1.0)
    """
    res = stats.mannwhitneyu(segment, rest, alternative="two-sided")
    p = float(res.pvalue) if math.isfinite(float(res.pvalue)) else 1.0
    _, _, lo, hi = _welch_ci(segment, rest, ci_level)
    u = float(res.statistic)
    rank_biserial = 2.0 * u / (segment.size * rest.size) - 1.0
    return TestStat(
        u,
        p,
        float(segment.mean()),
        float(rest.mean()),
        float(segment.mean() - rest.mean()),
        (lo, hi),
        "mann_whitney",
        {"rank_biserial": rank_biserial},
    )


# The z-test's tail is accurate enough for a BH family of ~50 tests (p near 0.001) only with
# many expected events per cell: with 13 expected refusals (4 % of 320) its p-values below
# 0.001 came 3x too often (benchmarks/fairness_calibration.py); Fisher's exact test below.
_Z_MIN_EXPECTED = 50.0


def two_proportion(segment: FloatArray, rest: FloatArray, ci_level: float = 0.95) -> TestStat:
    """Two rates: pooled z-test, Fisher's exact test with under 50 expected in a cell; Newcombe CI.

    Examples:
        >>> seg = np.array([1.0] * 120 + [0.0] * 880)
        >>> rest = np.array([1.0] * 200 + [0.0] * 3800)
        >>> s = two_proportion(seg, rest)
        >>> round(s.difference, 3), s.method, s.p_value < 0.05
        (0.07, 'z', True)
    """
    k_s, n_s = int(np.sum(segment >= 0.5)), int(segment.size)
    k_r, n_r = int(np.sum(rest >= 0.5)), int(rest.size)
    p_s, p_r = k_s / n_s, k_r / n_r
    table = np.array([[k_s, n_s - k_s], [k_r, n_r - k_r]])
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    pooled = (k_s + k_r) / (n_s + n_r)
    if expected.min() < _Z_MIN_EXPECTED:
        method, statistic = "fisher_exact", p_s - p_r
        p = float(stats.fisher_exact(table).pvalue)
    else:
        method = "z"
        se = math.sqrt(pooled * (1 - pooled) * (1 / n_s + 1 / n_r))
        statistic = (p_s - p_r) / se
        p = float(2 * stats.norm.sf(abs(statistic)))
    # Newcombe's interval of p_b - p_a: the rest is "a", the segment "b".
    lo, hi = newcombe_interval(k_r, n_r, k_s, n_s, z_for(ci_level))
    return TestStat(
        float(statistic),
        min(p, 1.0),
        p_s,
        p_r,
        p_s - p_r,
        (lo, hi),
        method,
        {"count_segment": k_s, "count_rest": k_r},
    )


FAIRNESS_TESTS: dict[str, FairnessTest] = {
    t.name: t
    for t in (
        FairnessTest("welch_t", frozenset({"mean"}), "Δmean", welch_t),
        FairnessTest("two_proportion", frozenset({"rate"}), "Δrate", two_proportion),
        FairnessTest(
            "mann_whitney", frozenset({"score", "duration", "rating"}), "Δmean", mann_whitney
        ),
    )
}

#: The test each value kind is judged by.
TEST_FOR_KIND: dict[ValueKind, str] = {
    kind: t.name for t in FAIRNESS_TESTS.values() for kind in sorted(t.kinds)
}


# --------------------------------------------------------------------------------------------
# One report
# --------------------------------------------------------------------------------------------


def segment_values(
    labels: Sequence[str | None] | npt.NDArray[Any], max_segments: int
) -> tuple[list[tuple[str, int]], int]:
    """A field's segments worth testing: the ``max_segments`` largest, and how many are left.

    Args:
        labels: One label per row (None: unknown).
        max_segments: Segments kept.

    Returns:
        ``([(segment, rows)...], left out)``; a field with fewer than two segments has none
        (there is no rest to compare with).

    Examples:
        >>> segment_values(["en", "de", "en", None, "fr"], 2)
        ([('en', 2), ('de', 1)], 1)
    """
    counts = Counter(str(v) for v in labels if v is not None)
    if len(counts) < 2:
        return [], 0
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return ordered[:max_segments], max(0, len(ordered) - max_segments)


def _direction(diff: float, higher_is_better: bool) -> Literal["worse", "better", "same"]:
    if diff == 0:
        return "same"
    return "better" if (diff > 0) == higher_is_better else "worse"


def _fmt(x: float, kind: ValueKind) -> str:
    if kind == "rate":
        return f"{100 * x:.1f}%"
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.3g}"


def _summary(f: FairnessFinding, kind: ValueKind) -> str:
    if f.segment_value is None or f.rest_value is None or f.difference is None:
        return f"insufficient data: {f.n_segment} {f.field}={f.segment} / {f.n_rest} rest"
    diff = f"{100 * f.difference:+.1f} pp" if kind == "rate" else f"{f.difference:+.3g}"
    return (
        f"{f.metric} {f.field}={f.segment} {_fmt(f.segment_value, kind)} vs rest "
        f"{_fmt(f.rest_value, kind)} ({diff}, {f.direction})"
    )


def _one(
    metric: FairnessMetric,
    fld: str,
    segment: str,
    in_seg: npt.NDArray[np.bool_],
    in_rest: npt.NDArray[np.bool_],
    config: FairnessConfig,
) -> FairnessFinding:
    test = FAIRNESS_TESTS[TEST_FOR_KIND[metric.kind]]
    vals = np.asarray(metric.values, dtype=np.float64)
    if metric.rows is not None:
        in_seg, in_rest = in_seg[metric.rows], in_rest[metric.rows]
    ok = np.isfinite(vals)
    seg, rest = vals[in_seg & ok], vals[in_rest & ok]
    base: dict[str, Any] = {
        "field": fld,
        "segment": segment,
        "metric": metric.name,
        "group": metric.group,
        "test": test.name,
        "effect_name": test.effect_name,
        "higher_is_better": metric.higher_is_better,
        "n_segment": int(seg.size),
        "n_rest": int(rest.size),
        "floor": float(config.floors.get(metric.group, 0.0)),
    }
    need = config.min_segment_size
    if seg.size < need or rest.size < need:
        f = FairnessFinding(**base, verdict="insufficient_data", details={"min_segment_size": need})
        return f.model_copy(update={"summary": _summary(f, metric.kind)})
    st = test.run(seg, rest, config.ci_level)
    f = FairnessFinding(
        **base,
        segment_value=st.segment_value,
        rest_value=st.rest_value,
        difference=st.difference,
        ci=st.ci,
        statistic=st.statistic,
        p_value=float(min(max(st.p_value, 0.0), 1.0)),
        verdict="no_gap",
        direction=_direction(st.difference, metric.higher_is_better),
        details={"method": st.method, **st.details},
    )
    return f.model_copy(update={"summary": _summary(f, metric.kind)})


def run_fairness(
    metrics: Sequence[FairnessMetric],
    segments: Mapping[str, Sequence[str | None] | npt.NDArray[Any]],
    config: FairnessConfig | None = None,
) -> FairnessReport:
    """Compare every segment of every field with the rest, on every metric; one BH family.

    Args:
        metrics: The metrics (values aligned with the labels, or mapped by ``rows``).
        segments: Field -> one label per row (None: unknown for that row).
        config: Report settings.

    Returns:
        The report: findings by field, segment, then metric (in ``metrics`` order).

    Examples:
        >>> rng = np.random.default_rng(0)
        >>> lang = np.array(["en"] * 300 + ["de"] * 100, dtype=object)
        >>> score = np.r_[rng.normal(0.8, 0.1, 300), rng.normal(0.6, 0.1, 100)]
        >>> m = FairnessMetric("judge.correctness", "quality", "score", True, score)
        >>> report = run_fairness([m], {"language": lang})
        >>> [(g.segment, g.direction) for g in report.gaps()]
        [('de', 'worse'), ('en', 'better')]
    """
    config = config or FairnessConfig()
    findings: list[FairnessFinding] = []
    seen: dict[str, dict[str, int]] = {}
    left_out: dict[str, int] = {}
    for fld, raw in segments.items():
        labels = np.asarray(raw, dtype=object)
        tested, extra = segment_values(labels, config.max_segments)
        if not tested:
            continue
        seen[fld] = dict(tested)
        if extra:
            left_out[fld] = extra
        known = np.array([v is not None for v in labels], dtype=bool)
        as_text = np.array([str(v) if v is not None else "" for v in labels], dtype=object)
        # Two segments: each one's rest is the other, so the second test would repeat the
        # first (a duplicated p-value inflates a BH family). It is reported as the mirror.
        two = len(tested) == 2 and not extra
        for segment, _ in tested[:1] if two else tested:
            in_seg = known & (as_text == segment)
            in_rest = known & ~in_seg
            mine = [_one(m, fld, segment, in_seg, in_rest, config) for m in metrics]
            findings += mine
            if two:
                findings += [_mirror(f, tested[1][0]) for f in mine]
    findings = _adjust(findings, config)
    return FairnessReport(
        findings=findings,
        config=config,
        segments=seen,
        left_out=left_out,
        gap_found=any(f.verdict == "gap" for f in findings),
    )


def _mirror(f: FairnessFinding, segment: str) -> FairnessFinding:
    """The other segment of a two-segment field: the same test read the other way round."""
    flip = {"worse": "better", "better": "worse", "same": "same"}
    details = {k: v for k, v in f.details.items() if k not in ("count_segment", "count_rest")}
    if "count_segment" in f.details:
        details |= {
            "count_segment": f.details["count_rest"],
            "count_rest": f.details["count_segment"],
        }
    if "rank_biserial" in f.details:
        details["rank_biserial"] = -f.details["rank_biserial"]
    mirrored = f.model_copy(
        update={
            "segment": segment,
            "n_segment": f.n_rest,
            "n_rest": f.n_segment,
            "segment_value": f.rest_value,
            "rest_value": f.segment_value,
            "difference": None if f.difference is None else -f.difference,
            "ci": None if f.ci is None else (-f.ci[1], -f.ci[0]),
            "statistic": None if f.statistic is None else -f.statistic,
            "direction": None if f.direction is None else flip[f.direction],
            "details": {**details, "mirror_of": f.segment},
        }
    )
    kind: ValueKind = "rate" if f.effect_name == "Δrate" else "score"
    return mirrored.model_copy(update={"summary": _summary(mirrored, kind)})


def _adjust(findings: list[FairnessFinding], config: FairnessConfig) -> list[FairnessFinding]:
    """FDR control (BY or BH) over the tested findings (mirrors copy their original's verdict)."""
    out = _adjust_family(findings, config)
    judged = {(f.field, f.segment, f.metric): f for f in out if "mirror_of" not in f.details}
    for i, f in enumerate(out):
        if "mirror_of" in f.details:
            orig = judged[(f.field, f.details["mirror_of"], f.metric)]
            out[i] = f.model_copy(update={"p_adjusted": orig.p_adjusted, "verdict": orig.verdict})
    return out


def _adjust_family(
    findings: list[FairnessFinding], config: FairnessConfig
) -> list[FairnessFinding]:
    tested = [
        i
        for i, f in enumerate(findings)
        if f.verdict != "insufficient_data" and "mirror_of" not in f.details
    ]
    if not tested:
        return findings
    raw = np.array([findings[i].p_value for i in tested], dtype=np.float64)
    adjusted = stats.false_discovery_control(raw, method=config.correction)
    out = list(findings)
    for i, p_adj in zip(tested, adjusted, strict=True):
        f = findings[i]
        big = f.difference is not None and abs(f.difference) >= f.floor
        gap = bool(p_adj <= config.fdr and big)
        out[i] = f.model_copy(
            update={"p_adjusted": float(p_adj), "verdict": "gap" if gap else "no_gap"}
        )
    return out


# --------------------------------------------------------------------------------------------
# The gate's fairness slice
# --------------------------------------------------------------------------------------------


class GapWidening(BaseModel):
    """How much a candidate widened one segment's gap on one metric (paired test-set items).

    Gaps are in the metric's good direction: ``gap = mean(rest) - mean(segment)`` when higher
    is better (positive: the segment is behind), the other way round when lower is better.
    """

    field: str
    segment: str
    metric: str
    n_segment: int
    n_rest: int
    higher_is_better: bool = True
    gap_baseline: float | None = None
    gap_candidate: float | None = None
    widening: float | None = Field(None, description="gap_candidate - gap_baseline.")
    ci_low: float | None = None
    ci_high: float | None = None
    margin: float
    p_value: float | None = Field(None, description="One-sided: widened by more than margin.")
    p_adjusted: float | None = None
    decision: Literal["pass", "widened", "insufficient_data"] = "insufficient_data"


def gap_widening(
    baseline: Mapping[str, float],
    candidate: Mapping[str, float],
    labels: Mapping[str, str | None],
    *,
    metric: str,
    fld: str,
    segment: str,
    higher_is_better: bool,
    margin: float,
    min_items: int,
    alpha: float,
) -> GapWidening:
    """Did the candidate widen ``segment``'s gap to the rest by more than ``margin``?

    On paired items, the change of the gap is the difference between the rest's and the
    segment's mean paired improvement, ``mean_R(d) - mean_S(d)`` with ``d = candidate -
    baseline`` in the good direction: two independent means, so Welch's interval and a
    one-sided Welch test of ``H0: widening <= margin`` apply. The interval is two-sided at
    ``1 - alpha``; ``p_value`` is the one-sided p, judged by the caller at ``alpha / 2`` after
    its multiplicity adjustment (as the gate judges its other tests).

    Args:
        baseline: Item -> baseline score.
        candidate: Item -> candidate score.
        labels: Item -> segment label of the field (None: unknown).
        metric: Metric name (for the result).
        fld: Field name.
        segment: The segment.
        higher_is_better: The metric's direction.
        margin: Tolerated widening, metric units.
        min_items: Fewer paired items in the segment or the rest: insufficient data.
        alpha: Two-sided level of the interval.

    Returns:
        The comparison (``decision`` left ``"pass"`` or ``"insufficient_data"``; the caller
        sets ``"widened"`` after adjusting).

    Examples:
        >>> ids = [f"q{i}" for i in range(60)]
        >>> lab = {k: ("de" if i < 20 else "en") for i, k in enumerate(ids)}
        >>> base = {k: 0.7 for k in ids}
        >>> cand = {k: (0.5 if lab[k] == "de" else 0.9) + 0.01 * (i % 3)
        ...         for i, k in enumerate(ids)}
        >>> g = gap_widening(base, cand, lab, metric="m", fld="language", segment="de",
        ...                  higher_is_better=True, margin=0.05, min_items=10, alpha=0.05)
        >>> round(g.gap_baseline, 3), round(g.gap_candidate, 3), g.p_value < 0.001
        (0.0, 0.401, True)
    """
    sign = 1.0 if higher_is_better else -1.0
    both = [k for k in baseline if k in candidate and labels.get(k) is not None]
    seg_ids = [k for k in both if str(labels[k]) == segment]
    rest_ids = [k for k in both if str(labels[k]) != segment]
    out = GapWidening(
        field=fld,
        segment=segment,
        metric=metric,
        n_segment=len(seg_ids),
        n_rest=len(rest_ids),
        higher_is_better=higher_is_better,
        margin=margin,
    )
    if len(seg_ids) < min_items or len(rest_ids) < min_items:
        return out

    def arr(side: Mapping[str, float], ids: list[str]) -> FloatArray:
        return sign * np.array([float(side[k]) for k in ids], dtype=np.float64)

    b_s, b_r, c_s, c_r = (arr(s, i) for s in (baseline, candidate) for i in (seg_ids, rest_ids))
    d_s, d_r = c_s - b_s, c_r - b_r
    widening = float(d_r.mean() - d_s.mean())
    v_r, v_s = d_r.var(ddof=1) / d_r.size, d_s.var(ddof=1) / d_s.size
    se = math.sqrt(v_r + v_s)
    if se == 0:
        # Every paired change the same within each group: the widening is known exactly.
        p = 0.0 if widening > margin else 1.0
        lo = hi = widening
    else:
        # Welch-Satterthwaite degrees of freedom.
        dfs = [(v, n) for v, n in ((v_r, d_r.size), (v_s, d_s.size)) if v > 0]
        df = (v_r + v_s) ** 2 / sum(v * v / (n - 1) for v, n in dfs)
        p = float(stats.t.sf((widening - margin) / se, df))
        q = float(stats.t.ppf(1 - alpha / 2, df))
        lo, hi = widening - q * se, widening + q * se
    return out.model_copy(
        update={
            "gap_baseline": float(b_r.mean() - b_s.mean()),
            "gap_candidate": float(c_r.mean() - c_s.mean()),
            "widening": widening,
            "ci_low": float(lo),
            "ci_high": float(hi),
            "p_value": p,
            "decision": "pass",
        }
    )
