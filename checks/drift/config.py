"""Settings of a drift report: significance level, effect-size floors, sample sizes, caps."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DriftConfig", "EffectFloors", "MinSamples", "TestName"]

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
