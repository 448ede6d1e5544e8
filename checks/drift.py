"""Drift statistics: compare a current window of traffic against a baseline window.

Every function here is pure (arrays in, pydantic results out; no I/O). ``run_drift`` runs every
test that its inputs allow and combines them into one :class:`DriftReport`:

* embeddings: a domain classifier (held-out ROC AUC, Mann-Whitney p-value), an MMD
  permutation test (RBF kernel, median heuristic), topic shares (KMeans on the baseline,
  chi-square on cluster shares, Jensen-Shannon/KL divergence, grown and shrunk clusters with
  example texts) and a new-topic test (share of responses farther from every baseline cluster
  than the baseline's own ``new_topic_quantile`` distance);
* numeric columns: two-sample KS, Wasserstein distance normalised by the baseline IQR, PSI on
  baseline-quantile bins and the mean shift with a bootstrap confidence interval;
* rates (refusal, unsafe, unscored...): two-proportion z-test, Fisher's exact test when small;
* ratings: chi-square on the 1-5 distribution and the trend within the current window.

One significance level holds for the whole report: p-values are adjusted with
Benjamini-Hochberg across *all* tests of the report, and a test says ``"drift"`` only when its
adjusted p-value is at most ``alpha`` **and** its effect size reaches the test's floor, so a
tiny but "significant" change on huge windows is no alarm. Below the minimum sample size the
verdict is ``"insufficient_data"`` and the test takes no part in the adjustment.

Quadratic or slow tests subsample to a cap. Subsampling never breaks validity (the subsample is
drawn without looking at the data, so every p-value stays valid); it costs power and precision,
bounded as documented on each function and checked in ``tests/test_drift.py``.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy import stats
from scipy.spatial.distance import jensenshannon

__all__ = [
    "DriftConfig",
    "DriftInput",
    "DriftReport",
    "DriftTestResult",
    "EffectFloors",
    "MinSamples",
    "apply_verdicts",
    "benjamini_hochberg",
    "chi_square_ratings",
    "domain_classifier_test",
    "format_p",
    "ks_test",
    "md_escape",
    "mean_shift_bootstrap",
    "mmd_permutation_test",
    "psi",
    "rating_trend",
    "reduce_embeddings",
    "results_table",
    "run_drift",
    "topic_shift",
    "two_proportion_test",
    "wasserstein_normalised",
]

TestName = Literal[
    "ks",
    "wasserstein",
    "psi",
    "mean_shift",
    "domain_classifier",
    "mmd",
    "topic_shares",
    "new_topic",
    "two_proportion",
    "chi_square",
    "rating_trend",
]
Family = Literal["embedding", "numeric", "rate", "rating"]
Verdict = Literal["drift", "no_drift", "insufficient_data"]

FloatArray = npt.NDArray[np.float64]
ArrayLike = npt.ArrayLike

_EXAMPLE_CHARS = 200


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


class EffectFloors(BaseModel):
    """Smallest effect size that counts as drift, per test (thresholds are data).

    A significant test whose effect stays below its floor is ``"no_drift"``: on windows of
    50,000 rows almost any change is significant, and these floors say which changes matter.
    Defaults sit below the "small shift" of ``benchmarks/drift_calibration.py`` (response
    length +5 %, a score's mean -0.02, 4 points of topic share moved), so that shift is caught
    while clearly smaller ones are not an alarm. For scale, on that benchmark's data: length
    +5 % is KS D ~0.03, W1/IQR ~0.07 and 0.08 standard deviations; the score shift is
    0.15 standard deviations; each point of topic share moved adds ~0.0065 to the MMD.

    Attributes:
        ks: KS statistic D (largest gap between the two CDFs).
        wasserstein: Wasserstein-1 distance divided by the baseline IQR.
        psi: Population stability index (0.1 is the usual "moderate shift" convention).
        mean_shift: Absolute mean difference divided by the baseline standard deviation.
        domain_classifier: Cross-validated ROC AUC minus 0.5.
        mmd: MMD (square root of the unbiased MMD²) with the RBF median-heuristic kernel.
        topic_shares: Total-variation distance between cluster shares (share of traffic that
            changed topic).
        new_topic: Excess share of current responses far from every baseline cluster.
        two_proportion: Absolute difference of two rates.
        chi_square: Cramér's V of the rating distribution table.
        rating_trend: Absolute Spearman correlation of rating with time.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    ks: float = Field(0.03, ge=0)
    wasserstein: float = Field(0.04, ge=0)
    psi: float = Field(0.1, ge=0)
    mean_shift: float = Field(0.05, ge=0)
    domain_classifier: float = Field(0.05, ge=0)
    mmd: float = Field(0.015, ge=0)
    topic_shares: float = Field(0.02, ge=0)
    new_topic: float = Field(0.01, ge=0)
    two_proportion: float = Field(0.01, ge=0)
    chi_square: float = Field(0.05, ge=0)
    rating_trend: float = Field(0.05, ge=0)

    def for_test(self, test: TestName) -> float:
        """Return the floor of one test.

        Args:
            test: Test name, e.g. ``"ks"``.

        Returns:
            The effect-size floor.

        Examples:
            >>> EffectFloors().for_test("psi")
            0.1
        """
        return float(getattr(self, test))


class MinSamples(BaseModel):
    """Minimum rows per window below which a test answers ``"insufficient_data"``.

    Attributes:
        numeric: Finite values per window for KS, Wasserstein, PSI and mean shift.
        rates: Observations per window for a two-proportion test.
        ratings: Ratings per window for the chi-square test.
        trend: Ratings in the current window for the trend test.
        embeddings: Embedding rows per window for the embedding tests.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    numeric: int = Field(50, ge=2)
    rates: int = Field(30, ge=1)
    ratings: int = Field(30, ge=2)
    trend: int = Field(30, ge=3)
    embeddings: int = Field(100, ge=20)


class DriftConfig(BaseModel):
    """Settings of a drift report.

    Attributes:
        alpha: Significance level of the whole report (Benjamini-Hochberg across all tests).
        floors: Effect-size floor per test.
        min_samples: Minimum sample sizes per window.
        n_permutations: Permutations of the MMD and Wasserstein tests. Their p-values come from
            a Pearson type III fitted to the permutation null (so they can go below
            ``1 / (n_permutations + 1)``, which Benjamini-Hochberg over ~40 tests needs); the
            plain permutation p-value is kept in ``details``.
        n_bootstrap: Bootstrap resamples for the mean-shift confidence interval.
        ci_level: Confidence level of every reported interval.
        max_rows_for_quadratic: Rows per window for the MMD test (kernel matrix is quadratic).
        max_rows_classifier: Rows per window for the domain classifier.
        max_rows_permutation: Rows per window for the Wasserstein permutation p-value (the
            distance itself uses all rows).
        max_rows_bootstrap: Rows per window the bootstrap resamples (deviations are rescaled by
            ``sqrt(m / n)``; precision bound in :func:`mean_shift_bootstrap`).
        max_rows_cluster_fit: Baseline rows KMeans is fitted on; the other baseline rows are
            held out for the share and new-topic tests.
        classifier_test_fraction: Share of each window's classifier rows held out for the
            AUC and its p-value (the rest trains the model).
        classifier_c: Inverse L2 regularisation of the logistic regression.
        pca_components: Project embeddings onto this many principal components of the
            baseline first (``None``: use them as they are).
        n_clusters: KMeans clusters (topics) fitted on the baseline.
        new_topic_quantile: A current response is "far" when its distance to the nearest
            baseline centroid exceeds this quantile of held-out baseline distances.
        psi_bins: Baseline-quantile bins of the PSI.
        cluster_min_delta: Share change (absolute) for a cluster to be listed as grown/shrunk.
        cluster_min_z: Adjusted residual for a cluster to be listed as grown/shrunk.
        n_examples: Example texts per listed cluster.
        seed: Seed of every random choice (subsamples, permutations, splits, KMeans).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    alpha: float = Field(0.05, gt=0, lt=1)
    floors: EffectFloors = Field(default_factory=EffectFloors)
    min_samples: MinSamples = Field(default_factory=MinSamples)
    n_permutations: int = Field(200, ge=20)
    n_bootstrap: int = Field(500, ge=50)
    ci_level: float = Field(0.95, gt=0, lt=1)
    max_rows_for_quadratic: int = Field(2000, ge=100)
    max_rows_classifier: int = Field(5000, ge=100)
    max_rows_permutation: int = Field(3000, ge=100)
    max_rows_bootstrap: int = Field(2000, ge=100)
    max_rows_cluster_fit: int = Field(5000, ge=100)
    classifier_test_fraction: float = Field(0.5, gt=0, lt=1)
    classifier_c: float = Field(0.1, gt=0)
    pca_components: int | None = Field(None, ge=1)
    n_clusters: int = Field(8, ge=2)
    new_topic_quantile: float = Field(0.99, gt=0.5, lt=1)
    psi_bins: int = Field(10, ge=2)
    cluster_min_delta: float = Field(0.01, ge=0)
    cluster_min_z: float = Field(2.58, ge=0)
    n_examples: int = Field(3, ge=0)
    seed: int = 0


# --------------------------------------------------------------------------------------------
# Inputs and results
# --------------------------------------------------------------------------------------------


@dataclass
class DriftInput:
    """One window of traffic, column by column.

    Missing values are explicit: a numeric array may hold NaN (unscored rows are dropped from
    its tests, their share is a rate of its own), ``ratings`` may hold NaN for rows without a
    rating.

    Attributes:
        embeddings: ``n x d`` response embeddings (float32), or ``None``.
        numeric: Numeric columns by name, e.g. ``response_length``, ``latency_ms``,
            ``embedding.relevance``.
        rates: Boolean columns by name, e.g. ``refusal``, ``unsafe``, ``unscored``.
        ratings: User ratings on a 1-5 scale (NaN where absent), or ``None``.
        texts: Response texts aligned with ``embeddings`` rows (cluster examples), or ``None``.
        timestamps: Times aligned with ``ratings`` (datetime64 or seconds), for the trend.

    Examples:
        >>> import numpy as np
        >>> window = DriftInput(numeric={"latency_ms": np.array([120.0, 95.0])})
        >>> sorted(window.numeric)
        ['latency_ms']
    """

    embeddings: npt.NDArray[np.floating[Any]] | None = None
    numeric: dict[str, npt.NDArray[Any]] = field(default_factory=dict)
    rates: dict[str, npt.NDArray[Any]] = field(default_factory=dict)
    ratings: npt.NDArray[Any] | None = None
    texts: list[str] | None = None
    timestamps: npt.NDArray[Any] | None = None

    def __post_init__(self) -> None:
        """Validate shapes and alignment."""
        if self.embeddings is not None:
            self.embeddings = np.asarray(self.embeddings)
            if self.embeddings.ndim != 2:
                raise ValueError(
                    f"embeddings must be 2-D (n x d), got shape {self.embeddings.shape}"
                )
            if self.texts is not None and len(self.texts) != self.embeddings.shape[0]:
                raise ValueError(
                    f"texts ({len(self.texts)}) must align with embeddings "
                    f"({self.embeddings.shape[0]} rows)"
                )
        for name, values in self.numeric.items():
            if np.asarray(values).ndim != 1:
                raise ValueError(f"numeric column {name!r} must be 1-D")
        for name, values in self.rates.items():
            arr = np.asarray(values)
            if arr.ndim != 1 or not (arr.dtype == np.bool_ or np.isin(arr, (0, 1)).all()):
                raise ValueError(f"rate column {name!r} must be a 1-D boolean array")
        if (
            self.ratings is not None
            and self.timestamps is not None
            and len(self.ratings) != len(self.timestamps)
        ):
            raise ValueError(
                f"timestamps ({len(self.timestamps)}) must align with ratings ({len(self.ratings)})"
            )


class DriftTestResult(BaseModel):
    """The outcome of one test on one feature.

    Attributes:
        test: Test name.
        feature: Compared column (``"embeddings"`` for the embedding tests).
        family: ``"embedding"``, ``"numeric"``, ``"rate"`` or ``"rating"``.
        n_baseline: Usable baseline rows (0 for the within-window trend).
        n_current: Usable current rows.
        statistic: The test statistic (``None`` when not computed).
        effect_size: Effect size compared with the floor (``None`` when not computed).
        effect_name: What ``effect_size`` measures.
        effect_floor: The floor ``effect_size`` must reach for ``"drift"``.
        p_value: Raw p-value (``None`` when not computed).
        p_adjusted: Benjamini-Hochberg adjusted p-value across the report (a standalone test
            is its own report of one, so there it equals ``p_value``).
        verdict: ``"drift"``, ``"no_drift"`` or ``"insufficient_data"``.
        ci: Confidence interval of the main quantity (see ``details["ci_of"]``).
        details: Test-specific figures (JSON-serialisable).
        summary: One line saying what moved and by how much.
    """

    model_config = ConfigDict(extra="forbid")

    test: TestName
    feature: str
    family: Family
    n_baseline: int
    n_current: int
    statistic: float | None
    effect_size: float | None
    effect_name: str
    effect_floor: float
    p_value: float | None
    p_adjusted: float | None = None
    verdict: Verdict
    ci: tuple[float, float] | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    summary: str

    @property
    def effect_ratio(self) -> float:
        """Effect size in multiples of its floor (0 when not computed); comparable across tests.

        Returns:
            ``effect_size / effect_floor`` (``inf`` for a zero floor and positive effect).
        """
        if self.effect_size is None:
            return 0.0
        if self.effect_floor <= 0:
            return math.inf if self.effect_size > 0 else 0.0
        return self.effect_size / self.effect_floor


class DriftReport(BaseModel):
    """All tests of one baseline/current comparison.

    Attributes:
        results: One entry per (test, feature).
        config: Settings the report ran with.
        drift_found: Whether any test's verdict is ``"drift"``.
    """

    model_config = ConfigDict(extra="forbid")

    results: list[DriftTestResult]
    config: DriftConfig
    drift_found: bool

    @model_validator(mode="after")
    def _drift_found_matches(self) -> DriftReport:
        if self.drift_found != any(r.verdict == "drift" for r in self.results):
            raise ValueError("drift_found must be True exactly when a result says 'drift'")
        return self

    def moved(self) -> list[DriftTestResult]:
        """Return the ``"drift"`` results, largest effect (in multiples of its floor) first.

        Returns:
            The drifted results, sorted.

        Examples:
            >>> DriftReport(results=[], config=DriftConfig(), drift_found=False).moved()
            []
        """
        drifted = [r for r in self.results if r.verdict == "drift"]
        return sorted(drifted, key=lambda r: r.effect_ratio, reverse=True)

    def to_markdown(self) -> str:
        """Render the report, leading with what moved and by how much.

        Returns:
            Markdown text.

        Examples:
            >>> report = DriftReport(results=[], config=DriftConfig(), drift_found=False)
            >>> report.to_markdown().splitlines()[0]
            '## Drift report: no drift'
        """
        moved = self.moved()
        insufficient = [r for r in self.results if r.verdict == "insufficient_data"]
        tested = len(self.results) - len(insufficient)
        lines: list[str] = []
        if moved:
            lines.append(f"## Drift report: drift in {len(moved)} of {tested} tests")
        else:
            lines.append("## Drift report: no drift")
        lines.append("")
        lines.append(
            f"Significance level {self.config.alpha:g} for the whole report (Benjamini-Hochberg "
            "across all tests); a test flags drift only when its effect reaches its floor."
        )
        lines.append("")
        if moved:
            lines.append("### What moved")
            lines.append("")
            lines.extend(_moved_markdown(moved))
            lines.append("")
            topic = next((r for r in moved if r.test == "topic_shares"), None)
            if topic is not None:
                lines.extend(_topic_markdown(topic))
            new_topic = next((r for r in moved if r.test == "new_topic"), None)
            if new_topic is not None and new_topic.details.get("examples"):
                lines.append("#### Responses far from every baseline topic")
                lines.append("")
                for text in new_topic.details["examples"]:
                    lines.append(f"- {md_escape(text)}")
                lines.append("")
        else:
            lines.append("Nothing moved beyond its effect-size floor at the report's level.")
            lines.append("")
        lines.append("### All tests")
        lines.append("")
        lines += results_table(self.results)
        if insufficient:
            lines.append("")
            lines.append("### Insufficient data")
            lines.append("")
            for r in insufficient:
                lines.append(f"- {md_escape(r.feature)} ({r.test}): {r.summary}")
        return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------


def results_table(results: Sequence[DriftTestResult]) -> list[str]:
    """Markdown table lines of test results: drifted first, then by family and feature.

    Examples:
        >>> results_table([])[1]
        '|---|---|---:|---:|---:|---:|---:|---:|---|'
    """
    order = {"drift": 0, "no_drift": 1, "insufficient_data": 2}
    lines = [
        "| feature | test | n baseline | n current | effect | floor | p | adjusted p | verdict |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in sorted(results, key=lambda r: (order[r.verdict], r.family, r.feature)):
        lines.append(
            f"| {md_escape(r.feature)} | {r.test} | {r.n_baseline} | {r.n_current} "
            f"| {md_escape(r.effect_name)} {_fmt(r.effect_size)} | {_fmt(r.effect_floor)} "
            f"| {format_p(r.p_value)} | {format_p(r.p_adjusted)} | {r.verdict} |"
        )
    return lines


def _fmt(x: float | None) -> str:
    if x is None:
        return "n/a"
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"


def format_p(p: float | None, missing: str = "n/a") -> str:
    """A p-value for reports (``missing`` when not computed).

    Examples:
        >>> format_p(0.0), format_p(0.0004), format_p(0.25)
        ('<1e-300', '4.00e-04', '0.250')
    """
    if p is None:
        return missing
    if p == 0:
        return "<1e-300"  # below double precision
    return f"{p:.2e}" if p < 1e-3 else f"{p:.3f}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def md_escape(text: str) -> str:
    """Text safe inside a markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


# Which result of a numeric column says "by how much" best, when several drifted.
_HEADLINE_ORDER: dict[str, int] = {"mean_shift": 0, "wasserstein": 1, "ks": 2, "psi": 3}


def _moved_markdown(moved: list[DriftTestResult]) -> list[str]:
    """One bullet per moved feature (largest effect first), each embedding test on its own."""
    groups: dict[tuple[str, str], list[DriftTestResult]] = {}
    for r in moved:  # already sorted by effect ratio, so groups keep that order
        key = (r.feature, r.test) if r.family == "embedding" else (r.feature, "")
        groups.setdefault(key, []).append(r)
    lines = []
    for results in groups.values():
        headline = min(results, key=lambda r: _HEADLINE_ORDER.get(r.test, 9))
        evidence = ", ".join(
            f"{r.test} {md_escape(r.effect_name)} {_fmt(r.effect_size)}" for r in results
        )
        worst_p = max(r.p_adjusted or 0.0 for r in results)
        lines.append(
            f"- {md_escape(headline.summary)} [{evidence}; adjusted p ≤ {format_p(worst_p)}]"
        )
    return lines


def _topic_markdown(result: DriftTestResult) -> list[str]:
    lines = ["#### Topic shares that changed", ""]
    lines.append("| cluster | baseline share | current share | change | examples |")
    lines.append("|---|---:|---:|---:|---|")
    for c in result.details.get("grown", []) + result.details.get("shrunk", []):
        examples = " / ".join(md_escape(t) for t in c.get("examples", []))
        lines.append(
            f"| {c['cluster']} | {_pct(c['baseline_share'])} | {_pct(c['current_share'])} "
            f"| {100 * c['delta']:+.1f} pp | {examples} |"
        )
    lines.append("")
    return lines


def _rng(config: DriftConfig, test: str, feature: str) -> np.random.Generator:
    # One stream per (seed, test, feature): reproducible, and independent across features.
    return np.random.default_rng([config.seed, zlib.crc32(f"{test}:{feature}".encode())])


def _finite(values: ArrayLike) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64).ravel()
    return arr[np.isfinite(arr)]


def _subsample_idx(n: int, cap: int, rng: np.random.Generator) -> npt.NDArray[np.intp]:
    if n <= cap:
        return np.arange(n)
    return np.sort(rng.choice(n, size=cap, replace=False))


def _permutation_tail(observed: float, null: FloatArray) -> float:
    """Upper-tail p-value of ``observed`` under a Pearson type III fitted to a permutation null.

    The null's mean, variance and skewness are matched by a shifted gamma distribution. Unlike
    the raw permutation p-value, it is not floored at ``1 / (B + 1)``, which matters because a
    Benjamini-Hochberg report of ~40 tests needs p-values near 0.001. Matching the skewness
    too (rather than a two-moment gamma, Gretton et al. 2009) follows the heavier tail of MMD
    on clustered embeddings: on 400 no-drift replicates the two-moment gamma gave 0.75 % of
    p-values <= 0.001 for MMD, the three-moment fit none, like the exact permutation p-value
    (``tests/test_drift.py`` checks the fitted tail's validity at 5 % and 1 %).
    """
    mean = float(np.mean(null))
    sd = float(np.std(null, ddof=1))
    if sd <= 0:
        # A degenerate null (constant data): the permutation p-value is all there is.
        return float((1 + np.sum(null >= observed - 1e-12)) / (null.size + 1))
    skew = float(stats.skew(null, bias=False))
    if skew <= 0.05:
        return float(stats.norm.sf(observed, loc=mean, scale=sd))
    shape = 4.0 / (skew * skew)
    scale = sd * skew / 2.0
    return float(stats.gamma.sf(observed, shape, loc=mean - shape * scale, scale=scale))


def _z_crit(level: float) -> float:
    return float(stats.norm.ppf(0.5 + level / 2))


def _insufficient(
    test: TestName,
    feature: str,
    family: Family,
    n_baseline: int,
    n_current: int,
    need: int,
    effect_name: str,
    config: DriftConfig,
    *,
    reason: str | None = None,
) -> DriftTestResult:
    why = reason or (f"{n_baseline} baseline / {n_current} current rows, need {need} per window")
    return DriftTestResult(
        test=test,
        feature=feature,
        family=family,
        n_baseline=n_baseline,
        n_current=n_current,
        statistic=None,
        effect_size=None,
        effect_name=effect_name,
        effect_floor=config.floors.for_test(test),
        p_value=None,
        p_adjusted=None,
        verdict="insufficient_data",
        details={"min_samples": need},
        summary=f"insufficient data: {why}",
    )


def _verdict(p_adjusted: float | None, effect: float | None, floor: float, alpha: float) -> Verdict:
    if p_adjusted is None or effect is None:
        return "no_drift"
    return "drift" if (p_adjusted <= alpha and effect >= floor) else "no_drift"


def _result(
    config: DriftConfig,
    *,
    test: TestName,
    feature: str,
    family: Family,
    n_baseline: int,
    n_current: int,
    statistic: float | None,
    effect_size: float,
    effect_name: str,
    p_value: float,
    summary: str,
    ci: tuple[float, float] | None = None,
    details: dict[str, Any] | None = None,
) -> DriftTestResult:
    """Build a standalone result: a report of one test, so the adjusted p is the raw p."""
    floor = config.floors.for_test(test)
    details = dict(details or {})
    if math.isnan(p_value):
        # Degenerate data a test cannot judge: say so, and let it raise no alarm.
        details["note"] = "p-value undefined on this data; counted as 1"
        p_value = 1.0
    p = float(min(max(p_value, 0.0), 1.0))
    return DriftTestResult(
        test=test,
        feature=feature,
        family=family,
        n_baseline=n_baseline,
        n_current=n_current,
        statistic=None if statistic is None else float(statistic),
        effect_size=float(effect_size),
        effect_name=effect_name,
        effect_floor=floor,
        p_value=p,
        p_adjusted=p,
        verdict=_verdict(p, effect_size, floor, config.alpha),
        ci=None if ci is None else (float(ci[0]), float(ci[1])),
        details=details,
        summary=summary,
    )


def benjamini_hochberg(p_values: Sequence[float] | FloatArray) -> FloatArray:
    """Benjamini-Hochberg adjusted p-values (step-up, monotone, capped at 1).

    Args:
        p_values: Raw p-values in [0, 1].

    Returns:
        Adjusted p-values in the input order; ``p_adjusted <= alpha`` controls the false
        discovery rate at ``alpha`` (and the chance of any false alarm when nothing moved).

    Examples:
        >>> benjamini_hochberg([0.01, 0.04, 0.03]).round(3).tolist()
        [0.03, 0.04, 0.04]
    """
    arr = np.asarray(p_values, dtype=np.float64)
    if arr.size == 0:
        return arr.copy()
    if np.any(~np.isfinite(arr)) or np.any((arr < 0) | (arr > 1)):
        raise ValueError("p-values must be finite and in [0, 1]")
    return np.asarray(stats.false_discovery_control(arr, method="bh"), dtype=np.float64)


def apply_verdicts(
    results: Sequence[DriftTestResult], config: DriftConfig
) -> list[DriftTestResult]:
    """Adjust p-values across ``results`` (Benjamini-Hochberg) and set every verdict.

    Results with ``"insufficient_data"`` take no part in the adjustment and keep their verdict.

    Args:
        results: Results of one report (e.g. from the individual test functions).
        config: Supplies ``alpha``.

    Returns:
        New results with ``p_adjusted`` and ``verdict`` set.

    Examples:
        >>> cfg = DriftConfig()
        >>> r = two_proportion_test([False] * 400 + [True] * 20, [False] * 350 + [True] * 70,
        ...                         feature="refusal", config=cfg)
        >>> apply_verdicts([r], cfg)[0].verdict
        'drift'
    """
    tested = [i for i, r in enumerate(results) if r.verdict != "insufficient_data"]
    p_raw = [results[i].p_value for i in tested]
    if any(p is None for p in p_raw):
        raise ValueError("every tested result needs a p-value")
    adjusted = benjamini_hochberg([float(p) for p in p_raw if p is not None])
    out = list(results)
    for i, p_adj in zip(tested, adjusted, strict=True):
        r = results[i]
        out[i] = r.model_copy(
            update={
                "p_adjusted": float(p_adj),
                "verdict": _verdict(float(p_adj), r.effect_size, r.effect_floor, config.alpha),
            }
        )
    return out


# --------------------------------------------------------------------------------------------
# Numeric columns
# --------------------------------------------------------------------------------------------


def _numeric_pair(baseline: ArrayLike, current: ArrayLike) -> tuple[FloatArray, FloatArray]:
    return _finite(baseline), _finite(current)


def _std(x: FloatArray) -> float:
    """Sample standard deviation, exactly 0 for a constant array.

    ``np.std`` of a constant like 1/3 is about 1e-17, not 0, because the mean rounds; an
    effect divided by that noise would report drift on a column that never changed.
    """
    if x.size < 2 or float(np.ptp(x)) == 0.0:
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
    b, c = _numeric_pair(baseline, current)
    need = config.min_samples.numeric
    if b.size < need or c.size < need:
        return _insufficient("ks", feature, "numeric", b.size, c.size, need, "KS D", config)
    res = stats.ks_2samp(b, c)
    d = float(res.statistic)
    mb, mc = float(np.median(b)), float(np.median(c))
    return _result(
        config,
        test="ks",
        feature=feature,
        family="numeric",
        n_baseline=b.size,
        n_current=c.size,
        statistic=d,
        effect_size=d,
        effect_name="KS D",
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
    b, c = _numeric_pair(baseline, current)
    need = config.min_samples.numeric
    name = "W1 / baseline IQR"
    if b.size < need or c.size < need:
        return _insufficient("wasserstein", feature, "numeric", b.size, c.size, need, name, config)
    w1 = float(stats.wasserstein_distance(b, c))
    scale, scale_name = _scale(b, c)
    effect = w1 / scale if scale > 0 else 0.0
    rng = _rng(config, "wasserstein", feature)
    cap = config.max_rows_permutation
    bs, cs = b[_subsample_idx(b.size, cap, rng)], c[_subsample_idx(c.size, cap, rng)]
    observed, null = _w1_permutation(bs, cs, config.n_permutations, rng)
    p_perm = float((1 + np.sum(null >= observed)) / (null.size + 1))
    p = _permutation_tail(observed, null)
    return _result(
        config,
        test="wasserstein",
        feature=feature,
        family="numeric",
        n_baseline=b.size,
        n_current=c.size,
        statistic=w1,
        effect_size=effect,
        effect_name=name if scale_name == "baseline IQR" else f"W1 / {scale_name}",
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
    b, c = _numeric_pair(baseline, current)
    need = config.min_samples.numeric
    if b.size < need or c.size < need:
        return _insufficient("psi", feature, "numeric", b.size, c.size, need, "PSI", config)
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
    return _result(
        config,
        test="psi",
        feature=feature,
        family="numeric",
        n_baseline=b.size,
        n_current=c.size,
        statistic=value,
        effect_size=value,
        effect_name="PSI",
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
    xs = x[_subsample_idx(x.size, m, rng)]
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
    b, c = _numeric_pair(baseline, current)
    need = config.min_samples.numeric
    name = "|Δmean| / baseline std"
    if b.size < need or c.size < need:
        return _insufficient("mean_shift", feature, "numeric", b.size, c.size, need, name, config)
    sd_b, sd_c = _std(b), _std(c)
    # Constant windows: their means are their values; a rounded mean would invent a shift.
    mb = float(b[0]) if sd_b == 0 else float(b.mean())
    mc = float(c[0]) if sd_c == 0 else float(c.mean())
    diff = mc - mb
    sd = sd_b
    scale_name = "baseline std"
    if sd <= 0:
        sd, scale_name = _std(np.concatenate([b, c])), "pooled std"
        name = "|Δmean| / pooled std"
    effect = abs(diff) / sd if sd > 0 else 0.0
    if sd_b == 0 and sd_c == 0:
        p = 1.0 if diff == 0 else 0.0
    else:
        p = float(stats.ttest_ind(c, b, equal_var=False).pvalue)
    rng = _rng(config, "mean_shift", feature)
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
    return _result(
        config,
        test="mean_shift",
        feature=feature,
        family="numeric",
        n_baseline=b.size,
        n_current=c.size,
        statistic=diff,
        effect_size=effect,
        effect_name=name,
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


# --------------------------------------------------------------------------------------------
# Rates and ratings
# --------------------------------------------------------------------------------------------


def _wilson(k: int, n: int, z: float) -> tuple[float, float]:
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return centre - half, centre + half


def _newcombe(k1: int, n1: int, k2: int, n2: int, z: float) -> tuple[float, float]:
    """Newcombe's hybrid score interval for p2 - p1 (good for rare events, unlike Wald)."""
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = _wilson(k1, n1, z)
    l2, u2 = _wilson(k2, n2, z)
    d = p2 - p1
    lo = d - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2)
    hi = d + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)
    return lo, hi


def two_proportion_test(
    baseline: ArrayLike,
    current: ArrayLike,
    *,
    feature: str = "rate",
    config: DriftConfig | None = None,
) -> DriftTestResult:
    """Compare two rates: pooled two-proportion z-test, Fisher's exact test when small.

    Fisher's exact test is used when any expected cell count of the 2x2 table is below 5.

    Args:
        baseline: Baseline booleans (e.g. refusal flags).
        current: Current booleans.
        feature: Rate name.
        config: Report settings.

    Returns:
        The test result; ``effect_size`` = |current rate - baseline rate|; ``ci`` is the
        Newcombe interval of the signed difference.

    Examples:
        >>> r = two_proportion_test([True] * 5 + [False] * 95, [True] * 20 + [False] * 80,
        ...                         feature="refusal")
        >>> r.summary
        'refusal rate 5.0% → 20.0% (+15.0 pp)'
    """
    config = config or DriftConfig()
    b = np.asarray(baseline, dtype=bool).ravel()
    c = np.asarray(current, dtype=bool).ravel()
    need = config.min_samples.rates
    name = "|Δrate|"
    if b.size < need or c.size < need:
        return _insufficient("two_proportion", feature, "rate", b.size, c.size, need, name, config)
    k1, n1, k2, n2 = int(b.sum()), int(b.size), int(c.sum()), int(c.size)
    p1, p2 = k1 / n1, k2 / n2
    pooled = (k1 + k2) / (n1 + n2)
    table = np.array([[k1, n1 - k1], [k2, n2 - k2]])
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    if expected.min() < 5:
        method = "fisher_exact"
        fisher = stats.fisher_exact(table)
        p, statistic = float(fisher.pvalue), float(p2 - p1)
    else:
        method = "z"
        se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
        statistic = (p2 - p1) / se
        p = float(2 * stats.norm.sf(abs(statistic)))
    ci = _newcombe(k1, n1, k2, n2, _z_crit(config.ci_level))
    return _result(
        config,
        test="two_proportion",
        feature=feature,
        family="rate",
        n_baseline=n1,
        n_current=n2,
        statistic=statistic,
        effect_size=abs(p2 - p1),
        effect_name=name,
        p_value=p,
        ci=ci,
        summary=f"{feature} rate {_pct(p1)} → {_pct(p2)} ({100 * (p2 - p1):+.1f} pp)",
        details={
            "ci_of": "rate(current) - rate(baseline)",
            "rate_baseline": p1,
            "rate_current": p2,
            "count_baseline": k1,
            "count_current": k2,
            "method": method,
        },
    )


def _ratings(values: ArrayLike) -> npt.NDArray[np.int64]:
    arr = _finite(values)
    ints = np.rint(arr)
    if np.any(np.abs(arr - ints) > 1e-9) or np.any((ints < 1) | (ints > 5)):
        raise ValueError("ratings must be integers from 1 to 5 (NaN for missing)")
    return ints.astype(np.int64)


def chi_square_ratings(
    baseline: ArrayLike,
    current: ArrayLike,
    *,
    feature: str = "rating",
    config: DriftConfig | None = None,
) -> DriftTestResult:
    """Chi-square test of the 1-5 rating distribution; effect size Cramér's V.

    Args:
        baseline: Baseline ratings (1-5, NaN for missing).
        current: Current ratings.
        feature: Name used in the result.
        config: Report settings.

    Returns:
        The test result with both distributions and mean ratings in ``details``.

    Examples:
        >>> r = chi_square_ratings([5] * 60 + [4] * 40, [5] * 30 + [4] * 40 + [1] * 30)
        >>> r.verdict
        'drift'
    """
    config = config or DriftConfig()
    b, c = _ratings(baseline), _ratings(current)
    need = config.min_samples.ratings
    name = "Cramér's V"
    if b.size < need or c.size < need:
        return _insufficient("chi_square", feature, "rating", b.size, c.size, need, name, config)
    nb = np.bincount(b, minlength=6)[1:]
    nc = np.bincount(c, minlength=6)[1:]
    table = np.vstack([nb, nc])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        chi2, p, low_cells = 0.0, 1.0, 0
    else:
        chi = stats.chi2_contingency(table, correction=False)
        chi2, p = float(chi.statistic), float(chi.pvalue)
        low_cells = int(np.sum(chi.expected_freq < 5))
    v = math.sqrt(chi2 / table.sum())
    shb, shc = nb / b.size, nc / c.size
    mb, mc = float(b.mean()), float(c.mean())
    low_b, low_c = float(shb[:2].sum()), float(shc[:2].sum())
    return _result(
        config,
        test="chi_square",
        feature=feature,
        family="rating",
        n_baseline=int(b.size),
        n_current=int(c.size),
        statistic=chi2,
        effect_size=v,
        effect_name=name,
        p_value=p,
        summary=(
            f"{feature}: mean {mb:.2f} → {mc:.2f}; 1-2 stars {_pct(low_b)} → {_pct(low_c)}, "
            f"5 stars {_pct(float(shb[4]))} → {_pct(float(shc[4]))}"
        ),
        details={
            "distribution_baseline": [float(x) for x in shb],
            "distribution_current": [float(x) for x in shc],
            "mean_baseline": mb,
            "mean_current": mc,
            "cells_expected_below_5": low_cells,
        },
    )


def _seconds(timestamps: ArrayLike) -> FloatArray:
    arr = np.asarray(timestamps)
    if np.issubdtype(arr.dtype, np.datetime64):
        return arr.astype("datetime64[ns]").astype(np.int64).astype(np.float64) / 1e9
    if arr.dtype == object:
        # datetime objects; only differences matter for a trend, so the epoch is irrelevant.
        return np.array([t.timestamp() if hasattr(t, "timestamp") else t for t in arr], float)
    return arr.astype(np.float64)


def rating_trend(
    timestamps: ArrayLike,
    ratings: ArrayLike,
    *,
    feature: str = "rating",
    config: DriftConfig | None = None,
) -> DriftTestResult:
    """Trend of ratings over time within one window (Spearman correlation with time).

    Args:
        timestamps: Times aligned with ``ratings`` (datetime64, UTC datetimes or seconds).
        ratings: Ratings 1-5 (NaN for missing).
        feature: Name used in the result.
        config: Report settings.

    Returns:
        The test result; ``effect_size`` = |Spearman ρ|, ``details["slope_per_day"]`` the least
        squares slope in stars per day.

    Examples:
        >>> import numpy as np
        >>> t = np.arange(200) * 3600.0
        >>> r = rating_trend(t, np.where(np.arange(200) < 100, 5, 2))
        >>> r.details["direction"]
        'down'
    """
    config = config or DriftConfig()
    t = _seconds(timestamps)
    y = np.asarray(ratings, dtype=np.float64).ravel()
    if t.size != y.size:
        raise ValueError("timestamps and ratings must have the same length")
    keep = np.isfinite(y) & np.isfinite(t)
    t, y = t[keep], _ratings(y[keep]).astype(np.float64)
    need = config.min_samples.trend
    name = "|Spearman ρ|"
    if y.size < need:
        return _insufficient(
            "rating_trend",
            feature,
            "rating",
            0,
            int(y.size),
            need,
            name,
            config,
            reason=f"{y.size} ratings in the current window, need {need}",
        )
    if np.ptp(t) == 0 or np.ptp(y) == 0:
        rho, p, slope = 0.0, 1.0, 0.0
        note = "constant time or rating: no trend can exist"
    else:
        sp = stats.spearmanr(t, y)
        rho, p = float(sp.statistic), float(sp.pvalue)
        slope = float(stats.linregress(t / 86400.0, y).slope)
        note = ""
    direction = "up" if rho > 0 else "down" if rho < 0 else "flat"
    details: dict[str, Any] = {"spearman_rho": rho, "slope_per_day": slope, "direction": direction}
    if note:
        details["note"] = note
    return _result(
        config,
        test="rating_trend",
        feature=feature,
        family="rating",
        n_baseline=0,
        n_current=int(y.size),
        statistic=rho,
        effect_size=abs(rho),
        effect_name=name,
        p_value=p,
        summary=(
            f"{feature}: trend {direction} within the current window "
            f"(Spearman ρ {rho:+.3f}, {slope:+.3f} stars/day)"
        ),
        details=details,
    )


# --------------------------------------------------------------------------------------------
# Embeddings
# --------------------------------------------------------------------------------------------


def _as_embeddings(x: ArrayLike) -> npt.NDArray[np.float32]:
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (n x d), got shape {arr.shape}")
    return arr


def _texts_at(texts: Sequence[str] | None, idx: Sequence[int]) -> list[str]:
    if texts is None:
        return []
    return [texts[int(i)][:_EXAMPLE_CHARS] for i in idx]


def reduce_embeddings(
    baseline: ArrayLike, current: ArrayLike, config: DriftConfig
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Project both windows on the baseline's principal components when configured.

    PCA is fitted on at most ``config.max_rows_cluster_fit`` baseline rows so the projection
    does not depend on the current window.

    Args:
        baseline: Baseline embeddings (n x d).
        current: Current embeddings (m x d).
        config: ``pca_components`` (``None`` returns the inputs as float32).

    Returns:
        The (possibly reduced) baseline and current embeddings.

    Examples:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> b, c = reduce_embeddings(rng.normal(size=(300, 16)), rng.normal(size=(200, 16)),
        ...                          DriftConfig(pca_components=4))
        >>> b.shape, c.shape
        ((300, 4), (200, 4))
    """
    b, c = _as_embeddings(baseline), _as_embeddings(current)
    k = config.pca_components
    if k is None or k >= b.shape[1]:
        return b, c
    from sklearn.decomposition import PCA

    rng = _rng(config, "pca", "embeddings")
    fit_rows = b[_subsample_idx(b.shape[0], config.max_rows_cluster_fit, rng)]
    pca = PCA(n_components=min(k, fit_rows.shape[0]), random_state=config.seed).fit(fit_rows)
    return (
        np.asarray(pca.transform(b), dtype=np.float32),
        np.asarray(pca.transform(c), dtype=np.float32),
    )


def domain_classifier_test(
    baseline: ArrayLike,
    current: ArrayLike,
    *,
    current_texts: Sequence[str] | None = None,
    config: DriftConfig | None = None,
) -> DriftTestResult:
    """Can a logistic regression tell current embeddings from baseline ones?

    Both windows are subsampled to the same size ``m`` (at most ``config.max_rows_classifier``)
    and split at random: the model is fitted on ``1 - classifier_test_fraction`` of each window
    and scores the rest. The ROC AUC of those held-out scores is the statistic and its p-value
    is the one-sided Mann-Whitney test, exact under no drift because the held-out rows are
    exchangeable given the fitted model.

    A single held-out split rather than cross-validation is deliberate: pooling out-of-fold
    scores (or combining per-fold tests) makes the folds' errors dependent, and on no-drift
    data that Mann-Whitney p-value fell below 0.05 in 13 % of replicates instead of 5 %.
    Getting a valid p-value from cross-validation would take refitting per permutation.

    Args:
        baseline: Baseline embeddings (n x d).
        current: Current embeddings (m x d).
        current_texts: Texts aligned with ``current``, to show the most "current-like" ones.
        config: Report settings (``pca_components`` applies).

    Returns:
        The test result; ``effect_size`` = AUC - 0.5, ``ci`` the Hanley-McNeil interval of the
        AUC.

    Examples:
        >>> import numpy as np
        >>> rng = np.random.default_rng(4)
        >>> r = domain_classifier_test(rng.normal(size=(300, 8)),
        ...                            rng.normal(size=(300, 8)) + 0.5)
        >>> r.details["auc"] > 0.8
        True
    """
    from sklearn.linear_model import LogisticRegression

    config = config or DriftConfig()
    b, c = reduce_embeddings(baseline, current, config)
    need = config.min_samples.embeddings
    name = "AUC - 0.5"
    nb, nc = b.shape[0], c.shape[0]
    if nb < need or nc < need:
        return _insufficient(
            "domain_classifier", "embeddings", "embedding", nb, nc, need, name, config
        )
    rng = _rng(config, "domain_classifier", "embeddings")
    m = min(nb, nc, config.max_rows_classifier)
    ib = rng.permutation(_subsample_idx(nb, m, rng))
    ic = rng.permutation(_subsample_idx(nc, m, rng))
    n_test = max(1, round(m * config.classifier_test_fraction))
    n_train = m - n_test
    x_train = np.vstack([b[ib[:n_train]], c[ic[:n_train]]])
    y_train = np.r_[np.zeros(n_train, dtype=np.int8), np.ones(n_train, dtype=np.int8)]
    model = LogisticRegression(C=config.classifier_c, max_iter=300).fit(x_train, y_train)
    test_c = ic[n_train:]
    s_b = np.asarray(model.decision_function(b[ib[n_train:]]), dtype=np.float64)
    s_c = np.asarray(model.decision_function(c[test_c]), dtype=np.float64)
    mw = stats.mannwhitneyu(s_c, s_b, alternative="greater")
    auc = float(mw.statistic) / (n_test * n_test)
    p = float(mw.pvalue)
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = auc * (1 - auc) + (n_test - 1) * (q1 - auc**2) + (n_test - 1) * (q2 - auc**2)
    se = math.sqrt(max(var, 0.0) / (n_test * n_test))
    z = _z_crit(config.ci_level)
    top = test_c[np.argsort(-s_c)[: config.n_examples]]
    return _result(
        config,
        test="domain_classifier",
        feature="embeddings",
        family="embedding",
        n_baseline=nb,
        n_current=nc,
        statistic=auc,
        effect_size=auc - 0.5,
        effect_name=name,
        p_value=p,
        ci=(max(auc - z * se, 0.0), min(auc + z * se, 1.0)),
        summary=(
            f"embeddings: a classifier tells current from baseline responses with ROC AUC "
            f"{auc:.3f} on held-out rows (0.5 = indistinguishable)"
        ),
        details={
            "ci_of": "ROC AUC",
            "auc": auc,
            "rows_train_per_window": int(n_train),
            "rows_test_per_window": int(n_test),
            "pca_components": config.pca_components,
            "most_current_like": _texts_at(current_texts, top.tolist()),
        },
    )


def _rbf_kernel(
    z: npt.NDArray[np.float32], rng: np.random.Generator
) -> tuple[npt.NDArray[np.float32], float]:
    """RBF kernel matrix with the median heuristic (bandwidth² = median squared distance)."""
    sq = np.einsum("ij,ij->i", z, z)
    k = z @ z.T
    k *= -2.0
    k += sq[:, None]
    k += sq[None, :]
    np.maximum(k, 0.0, out=k)
    # The median over a random 1,000-row block is within a percent of the full median.
    probe = _subsample_idx(z.shape[0], 1000, rng)
    block = k[np.ix_(probe, probe)]
    med = float(np.median(block[np.triu_indices(probe.size, 1)]))
    if med <= 0:
        med = 1.0
    k /= -med
    np.exp(k, out=k)
    return k, med


def mmd_permutation_test(
    baseline: ArrayLike,
    current: ArrayLike,
    *,
    config: DriftConfig | None = None,
) -> DriftTestResult:
    """Maximum mean discrepancy between the windows, RBF kernel, permutation p-value.

    At most ``config.max_rows_for_quadratic`` rows per window enter the kernel matrix, which is
    computed once; every permutation is a column of signed weights ``w`` (``1/n`` baseline,
    ``-1/m`` current) and the biased MMD² of all permutations is ``diag(Wᵀ K W)`` from one matrix
    product. The p-value is the Pearson type III tail fitted to that permutation null.

    Precision bound of the subsample: the p-value stays valid for any cap (the subsample ignores
    the labels), and the test has the power of a full test at ``n = cap``. The unbiased MMD²
    estimate deviates from its full-window value by less than ``2 * details["mmd2_se"]`` with
    about 95 % probability, where ``mmd2_se`` combines the first-order (Hoeffding projection)
    variance ``4 Var(h_x)/n + 4 Var(h_y)/m`` and the permutation variance (the second-order
    term, which dominates when nothing moved). ``tests/test_drift.py`` checks this bound.

    Args:
        baseline: Baseline embeddings (n x d).
        current: Current embeddings (m x d).
        config: Report settings (``pca_components`` applies).

    Returns:
        The test result; ``statistic`` = unbiased MMD², ``effect_size`` = MMD (its square root,
        0 when negative).

    Examples:
        >>> import numpy as np
        >>> rng = np.random.default_rng(5)
        >>> r = mmd_permutation_test(rng.normal(size=(200, 8)), rng.normal(size=(200, 8)) + 0.4)
        >>> r.p_value < 0.01
        True
    """
    config = config or DriftConfig()
    b, c = reduce_embeddings(baseline, current, config)
    need = config.min_samples.embeddings
    nb, nc = b.shape[0], c.shape[0]
    if nb < need or nc < need:
        return _insufficient("mmd", "embeddings", "embedding", nb, nc, need, "MMD", config)
    rng = _rng(config, "mmd", "embeddings")
    cap = config.max_rows_for_quadratic
    bs, cs = b[_subsample_idx(nb, cap, rng)], c[_subsample_idx(nc, cap, rng)]
    n1, n2 = bs.shape[0], cs.shape[0]
    k, bandwidth2 = _rbf_kernel(np.vstack([bs, cs]), rng)
    w0 = np.r_[np.full(n1, 1.0 / n1), np.full(n2, -1.0 / n2)].astype(np.float32)
    n_perm = config.n_permutations
    # One matrix product serves everything: the permutation weights, the observed weights and
    # the two block indicators (row sums of K within and across windows).
    cols = np.empty((n1 + n2, n_perm + 3), dtype=np.float32)
    cols[:, :n_perm] = rng.permuted(np.tile(w0, (n_perm, 1)), axis=1).T
    cols[:, n_perm] = w0
    cols[:, n_perm + 1] = np.r_[np.ones(n1), np.zeros(n2)]
    cols[:, n_perm + 2] = np.r_[np.zeros(n1), np.ones(n2)]
    kc = k @ cols
    del k
    quad = np.einsum("ij,ij->j", cols[:, : n_perm + 1], kc[:, : n_perm + 1], dtype=np.float64)
    null, observed = quad[:n_perm], float(quad[n_perm])
    p_perm = float((1 + np.sum(null >= observed)) / (null.size + 1))
    p = _permutation_tail(observed, null)

    to_x = kc[:, n_perm + 1].astype(np.float64)  # row sums over baseline columns
    to_y = kc[:, n_perm + 2].astype(np.float64)  # row sums over current columns
    sum_xx, sum_yy, sum_xy = to_x[:n1].sum(), to_y[n1:].sum(), to_y[:n1].sum()
    # k(x, x) = 1 for the RBF kernel: the diagonal drops out of the unbiased estimate.
    mmd2 = float(
        (sum_xx - n1) / (n1 * (n1 - 1)) + (sum_yy - n2) / (n2 * (n2 - 1)) - 2 * sum_xy / (n1 * n2)
    )
    h_x = (to_x[:n1] - 1) / (n1 - 1) - to_y[:n1] / n2
    h_y = (to_y[n1:] - 1) / (n2 - 1) - to_x[n1:] / n1
    var_linear = 4 * (float(np.var(h_x, ddof=1)) / n1 + float(np.var(h_y, ddof=1)) / n2)
    se = math.sqrt(var_linear + float(np.var(null, ddof=1)))
    mmd = math.sqrt(max(mmd2, 0.0))
    z = _z_crit(config.ci_level)
    return _result(
        config,
        test="mmd",
        feature="embeddings",
        family="embedding",
        n_baseline=nb,
        n_current=nc,
        statistic=mmd2,
        effect_size=mmd,
        effect_name="MMD",
        p_value=p,
        ci=(mmd2 - z * se, mmd2 + z * se),
        summary=(
            f"embeddings: distribution distance MMD {mmd:.3f} (MMD² {mmd2:.2e} ± {se:.1e}, "
            f"RBF kernel)"
        ),
        details={
            "ci_of": "unbiased MMD²",
            "mmd2": mmd2,
            "mmd2_se": se,
            "bandwidth2": bandwidth2,
            "p_permutation": p_perm,
            "rows_per_window": [int(n1), int(n2)],
            "n_permutations": config.n_permutations,
            "pca_components": config.pca_components,
        },
    )


def _examples_near(
    dist: npt.NDArray[np.float64],
    labels: npt.NDArray[np.intp],
    cluster: int,
    texts: Sequence[str] | None,
    rows: npt.NDArray[np.intp],
    n: int,
) -> list[str]:
    if texts is None or n == 0:
        return []
    members = np.flatnonzero(labels == cluster)
    chosen = members[np.argsort(dist[members])[:n]]
    return _texts_at(texts, rows[chosen].tolist())


def topic_shift(
    baseline: ArrayLike,
    current: ArrayLike,
    *,
    baseline_texts: Sequence[str] | None = None,
    current_texts: Sequence[str] | None = None,
    config: DriftConfig | None = None,
) -> list[DriftTestResult]:
    """Topic shares and new topics: KMeans on the baseline, current responses assigned to it.

    The baseline is split at random: KMeans is fitted on ``min(n/2, max_rows_cluster_fit)``
    rows and the other rows are held out, because distances of the fitting rows to their own
    centroids are biased low. Two tests follow:

    * ``topic_shares``: chi-square test of held-out baseline vs current cluster counts; effect
      size is the total-variation distance of the shares (share of traffic that changed
      topic); details give Jensen-Shannon divergence (base 2), KL(current || baseline) and the
      clusters that grew or shrank, with the texts nearest their centroid.
    * ``new_topic``: share of current responses farther from every centroid than the held-out
      baseline's ``new_topic_quantile`` distance, against the share expected under no drift.
      The p-value is exact: with the threshold the j-th largest of m held-out distances, the
      count of current responses above it is negative-hypergeometric under no drift.

    Args:
        baseline: Baseline embeddings (n x d).
        current: Current embeddings (m x d).
        baseline_texts: Texts aligned with ``baseline`` (examples of shrunk clusters).
        current_texts: Texts aligned with ``current`` (examples of grown and new topics).
        config: Report settings (``n_clusters``, ``pca_components`` ...).

    Returns:
        ``[topic_shares result, new_topic result]``.

    Examples:
        >>> import numpy as np
        >>> rng = np.random.default_rng(6)
        >>> centres = rng.normal(size=(3, 16)) * 4
        >>> b = centres[rng.integers(0, 2, 600)] + rng.normal(size=(600, 16))
        >>> c = centres[rng.integers(0, 3, 600)] + rng.normal(size=(600, 16))
        >>> shares, new = topic_shift(b, c, config=DriftConfig(n_clusters=2))
        >>> new.verdict
        'drift'
    """
    from sklearn.cluster import KMeans

    config = config or DriftConfig()
    b, c = reduce_embeddings(baseline, current, config)
    nb, nc = b.shape[0], c.shape[0]
    need = config.min_samples.embeddings
    if nb < 2 * need or nc < need:
        reason = f"{nb} baseline / {nc} current rows, need {2 * need} baseline and {need} current"
        return [
            _insufficient(
                "topic_shares",
                "embeddings",
                "embedding",
                nb,
                nc,
                need,
                "total variation of shares",
                config,
                reason=reason,
            ),
            _insufficient(
                "new_topic",
                "embeddings",
                "embedding",
                nb,
                nc,
                need,
                "excess far share",
                config,
                reason=reason,
            ),
        ]
    rng = _rng(config, "topic_shift", "embeddings")
    order = rng.permutation(nb)
    n_fit = min(nb // 2, config.max_rows_cluster_fit)
    fit_rows, hold_rows = np.sort(order[:n_fit]), np.sort(order[n_fit:])
    # At least ~10 fitting rows per cluster, or centroids chase noise.
    n_clusters = max(2, min(config.n_clusters, n_fit // 10))
    # float64 rows: on float32 input sklearn computes distances in small upcast chunks, which
    # took most of this test's time at 50,000 rows.
    km = KMeans(n_clusters=n_clusters, n_init=2, random_state=config.seed)
    km.fit(b[fit_rows].astype(np.float64))
    centres = np.asarray(km.cluster_centers_, dtype=np.float64)
    centre_sq = np.einsum("ij,ij->i", centres, centres)

    def assign(x: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]:
        # |x - c|^2 = |x|^2 - 2 x.c + |c|^2: one (n x k) product instead of a float64 copy of x.
        d2 = -2.0 * (x @ centres.T.astype(np.float32)).astype(np.float64)
        d2 += centre_sq[None, :]
        d2 += np.einsum("ij,ij->i", x, x, dtype=np.float64)[:, None]
        lab = np.argmin(d2, axis=1)
        return lab, np.sqrt(np.maximum(d2[np.arange(d2.shape[0]), lab], 0.0))

    lab_b, dist_b = assign(b[hold_rows])
    lab_c, dist_c = assign(c)
    m = hold_rows.size
    cnt_b = np.bincount(lab_b, minlength=n_clusters)
    cnt_c = np.bincount(lab_c, minlength=n_clusters)

    # --- topic shares -------------------------------------------------------------------
    table = np.vstack([cnt_b, cnt_c])
    nonzero = table.sum(axis=0) > 0
    chi = stats.chi2_contingency(table[:, nonzero], correction=False)
    sh_b, sh_c = cnt_b / m, cnt_c / nc
    tv = 0.5 * float(np.abs(sh_c - sh_b).sum())
    js = float(jensenshannon(sh_b, sh_c, base=2) ** 2)
    smooth_b = (cnt_b + 0.5) / (m + 0.5 * n_clusters)
    smooth_c = (cnt_c + 0.5) / (nc + 0.5 * n_clusters)
    kl = float(np.sum(smooth_c * np.log(smooth_c / smooth_b)))
    # Adjusted (standardised) residuals say which cells drive the chi-square.
    expected = np.zeros_like(table, dtype=np.float64)
    expected[:, nonzero] = chi.expected_freq
    row_share = table.sum(axis=1) / table.sum()
    col_share = table.sum(axis=0) / table.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        resid = (table[1] - expected[1]) / np.sqrt(
            expected[1] * (1 - row_share[1]) * (1 - col_share)
        )
    resid = np.nan_to_num(resid)
    clusters: list[dict[str, Any]] = []
    for k in range(n_clusters):
        clusters.append(
            {
                "cluster": k,
                "baseline_share": float(sh_b[k]),
                "current_share": float(sh_c[k]),
                "delta": float(sh_c[k] - sh_b[k]),
                "z": float(resid[k]),
            }
        )
    listed = [
        cl
        for cl in clusters
        if abs(cl["delta"]) >= config.cluster_min_delta and abs(cl["z"]) >= config.cluster_min_z
    ]
    grown = sorted((cl for cl in listed if cl["delta"] > 0), key=lambda cl: -cl["delta"])
    shrunk = sorted((cl for cl in listed if cl["delta"] < 0), key=lambda cl: cl["delta"])
    for cl in grown:
        cl["examples"] = _examples_near(
            dist_c, lab_c, cl["cluster"], current_texts, np.arange(nc), config.n_examples
        )
    for cl in shrunk:
        cl["examples"] = _examples_near(
            dist_b, lab_b, cl["cluster"], baseline_texts, hold_rows, config.n_examples
        )

    def describe(items: list[dict[str, Any]]) -> str:
        return ", ".join(
            f"cluster {cl['cluster']} {_pct(cl['baseline_share'])} → {_pct(cl['current_share'])}"
            for cl in items[:3]
        )

    moved_txt = f"{_pct(tv)} of responses changed topic cluster (total variation)"
    if grown:
        moved_txt += f"; grew: {describe(grown)}"
    if shrunk:
        moved_txt += f"; shrank: {describe(shrunk)}"
    shares = _result(
        config,
        test="topic_shares",
        feature="embeddings",
        family="embedding",
        n_baseline=m,
        n_current=nc,
        statistic=float(chi.statistic),
        effect_size=tv,
        effect_name="total variation of shares",
        p_value=float(chi.pvalue),
        summary=f"topics: {moved_txt}",
        details={
            "n_clusters": n_clusters,
            "baseline_rows_fit": int(n_fit),
            "baseline_rows_held_out": int(m),
            "js_divergence": js,
            "kl_divergence": kl,
            "clusters": clusters,
            "grown": grown,
            "shrunk": shrunk,
        },
    )

    # --- new topic ----------------------------------------------------------------------
    j = max(1, math.ceil(m * (1 - config.new_topic_quantile)))
    threshold = float(np.sort(dist_b)[m - j])
    far = dist_c > threshold
    x_far = int(far.sum())
    expected_share = j / (m + 1)
    observed_share = x_far / nc
    p_new = float(stats.nhypergeom.sf(x_far - 1, m + nc, nc, j)) if x_far > 0 else 1.0
    far_idx = np.flatnonzero(far)
    far_idx = far_idx[np.argsort(-dist_c[far_idx])][: max(config.n_examples, 5)]
    new = _result(
        config,
        test="new_topic",
        feature="embeddings",
        family="embedding",
        n_baseline=m,
        n_current=nc,
        statistic=float(x_far),
        effect_size=observed_share - expected_share,
        effect_name="excess far share",
        p_value=p_new,
        summary=(
            f"new topics: {_pct(observed_share)} of current responses are far from every "
            f"baseline topic (expected {_pct(expected_share)})"
        ),
        details={
            "distance_threshold": threshold,
            "quantile": config.new_topic_quantile,
            "observed_share": observed_share,
            "expected_share": expected_share,
            "count_far": x_far,
            "examples": _texts_at(current_texts, far_idx.tolist()),
        },
    )
    return [shares, new]


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------


def run_drift(
    baseline: DriftInput, current: DriftInput, config: DriftConfig | None = None
) -> DriftReport:
    """Run every test the two windows allow and adjust them as one report.

    A column present in only one window gives ``"insufficient_data"`` results (0 rows on the
    other side), never a silent skip. Columns absent from both windows are not tested.

    Args:
        baseline: The baseline window.
        current: The current window.
        config: Report settings.

    Returns:
        The report; ``drift_found`` is True when any test says ``"drift"``.

    Examples:
        >>> import numpy as np
        >>> rng = np.random.default_rng(7)
        >>> base = DriftInput(numeric={"latency_ms": rng.lognormal(5, 0.3, 1000)})
        >>> cur = DriftInput(numeric={"latency_ms": rng.lognormal(5.4, 0.3, 1000)})
        >>> report = run_drift(base, cur, DriftConfig())
        >>> report.drift_found, report.moved()[0].feature
        (True, 'latency_ms')
    """
    config = config or DriftConfig()
    results: list[DriftTestResult] = []
    empty_f = np.empty(0, dtype=np.float64)

    if baseline.embeddings is not None or current.embeddings is not None:
        if baseline.embeddings is None or current.embeddings is None:
            nb = 0 if baseline.embeddings is None else baseline.embeddings.shape[0]
            nc = 0 if current.embeddings is None else current.embeddings.shape[0]
            need = config.min_samples.embeddings
            missing: list[tuple[TestName, str]] = [
                ("domain_classifier", "AUC - 0.5"),
                ("mmd", "MMD"),
                ("topic_shares", "total variation of shares"),
                ("new_topic", "excess far share"),
            ]
            for test, name in missing:
                results.append(
                    _insufficient(test, "embeddings", "embedding", nb, nc, need, name, config)
                )
        else:
            b, c = reduce_embeddings(baseline.embeddings, current.embeddings, config)
            reduced = config.model_copy(update={"pca_components": None})
            results.append(
                domain_classifier_test(b, c, current_texts=current.texts, config=reduced)
            )
            results.append(mmd_permutation_test(b, c, config=reduced))
            results.extend(
                topic_shift(
                    b, c, baseline_texts=baseline.texts, current_texts=current.texts, config=reduced
                )
            )
            if config.pca_components is not None:
                for i in range(len(results)):
                    if results[i].family == "embedding":
                        details = {**results[i].details, "pca_components": config.pca_components}
                        results[i] = results[i].model_copy(update={"details": details})

    for name in sorted(set(baseline.numeric) | set(current.numeric)):
        bv = baseline.numeric.get(name, empty_f)
        cv = current.numeric.get(name, empty_f)
        for fn in (ks_test, wasserstein_normalised, psi, mean_shift_bootstrap):
            results.append(fn(bv, cv, feature=name, config=config))

    for name in sorted(set(baseline.rates) | set(current.rates)):
        bv = baseline.rates.get(name, np.empty(0, dtype=bool))
        cv = current.rates.get(name, np.empty(0, dtype=bool))
        results.append(two_proportion_test(bv, cv, feature=name, config=config))

    if baseline.ratings is not None or current.ratings is not None:
        br = baseline.ratings if baseline.ratings is not None else empty_f
        cr = current.ratings if current.ratings is not None else empty_f
        results.append(chi_square_ratings(br, cr, config=config))
        if current.ratings is not None and current.timestamps is not None:
            results.append(rating_trend(current.timestamps, current.ratings, config=config))

    final = apply_verdicts(results, config)
    return DriftReport(
        results=final,
        config=config,
        drift_found=any(r.verdict == "drift" for r in final),
    )
