"""Drift statistics: compare a current window of traffic against a baseline window.

Every function here is pure (arrays in, pydantic results out; no I/O). ``run_drift`` runs every
registered test that its inputs allow and combines them into one :class:`DriftReport`:

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

Modules, by family: ``numeric``, ``rates`` (rates and ratings), ``embeddings`` (classifier,
MMD), ``topics`` (topic shares, new topics); ``base`` holds the result builder and the
test descriptor, ``registry`` the table of descriptors that ``report.run_drift`` is driven
by, ``outcome`` the result types of a drift check on stored traffic. Rendering (markdown,
HTML) is in ``evalwatch.reporting``.
"""

from evalwatch.checks.drift.base import (
    DriftTestDescriptor,
    ResultBuilder,
    Sample,
    apply_verdicts,
    benjamini_hochberg,
)
from evalwatch.checks.drift.config import DriftConfig, EffectFloors, MinSamples, TestName
from evalwatch.checks.drift.embeddings import (
    domain_classifier_test,
    mmd_permutation_test,
    reduce_embeddings,
)
from evalwatch.checks.drift.numeric import (
    ks_test,
    mean_shift_bootstrap,
    near_constant,
    psi,
    wasserstein_normalised,
)
from evalwatch.checks.drift.rates import chi_square_ratings, rating_trend, two_proportion_test
from evalwatch.checks.drift.registry import DRIFT_TESTS, descriptors_for
from evalwatch.checks.drift.report import run_drift
from evalwatch.checks.drift.results import (
    DriftInput,
    DriftReport,
    DriftTestResult,
    Family,
    Verdict,
)
from evalwatch.checks.drift.topics import topic_shift

__all__ = [
    "DRIFT_TESTS",
    "DriftConfig",
    "DriftInput",
    "DriftReport",
    "DriftTestDescriptor",
    "DriftTestResult",
    "EffectFloors",
    "Family",
    "MinSamples",
    "ResultBuilder",
    "Sample",
    "TestName",
    "Verdict",
    "apply_verdicts",
    "benjamini_hochberg",
    "chi_square_ratings",
    "descriptors_for",
    "domain_classifier_test",
    "ks_test",
    "mean_shift_bootstrap",
    "mmd_permutation_test",
    "near_constant",
    "psi",
    "rating_trend",
    "reduce_embeddings",
    "run_drift",
    "topic_shift",
    "two_proportion_test",
    "wasserstein_normalised",
]
