"""Topic tests on embeddings: cluster shares and new topics (KMeans fitted on the baseline).

:func:`topic_shift` runs as named steps: split the baseline and fit the clusters
(:func:`_fit_clusters`), assign held-out baseline and current rows to them
(:meth:`_Clusters.assign`), then build each test's result (:func:`_shares_result`,
:func:`_new_topic_result`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats
from scipy.spatial.distance import jensenshannon

from evalwatch.checks.drift.base import (
    ArrayLike,
    ColumnKind,
    DriftTestDescriptor,
    ResultBuilder,
    Sample,
    format_pct,
    rng_for,
    texts_at,
)
from evalwatch.checks.drift.config import DriftConfig, TestName
from evalwatch.checks.drift.embeddings import reduce_embeddings
from evalwatch.checks.drift.results import DriftTestResult

__all__ = ["DESCRIPTORS", "topic_shift"]

_SHARES_EFFECT = "total variation of shares"
_NEW_EFFECT = "excess far share"

_pct = format_pct


@dataclass(frozen=True)
class _Clusters:
    """KMeans centroids fitted on part of the baseline, and which baseline rows are held out."""

    centres: npt.NDArray[np.float64]
    n_fit: int
    hold_rows: npt.NDArray[np.intp]

    @property
    def k(self) -> int:
        return int(self.centres.shape[0])

    def assign(
        self, x: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]:
        """Nearest centroid of each row, and the distance to it."""
        centre_sq = np.einsum("ij,ij->i", self.centres, self.centres)
        # |x - c|^2 = |x|^2 - 2 x.c + |c|^2: one (n x k) product instead of a float64 copy of x.
        d2 = -2.0 * (x @ self.centres.T.astype(np.float32)).astype(np.float64)
        d2 += centre_sq[None, :]
        d2 += np.einsum("ij,ij->i", x, x, dtype=np.float64)[:, None]
        lab = np.argmin(d2, axis=1)
        return lab, np.sqrt(np.maximum(d2[np.arange(d2.shape[0]), lab], 0.0))


def _fit_clusters(b: npt.NDArray[np.float32], config: DriftConfig) -> _Clusters:
    """Split the baseline at random and fit KMeans on ``min(n/2, max_rows_cluster_fit)`` rows.

    Distances of the fitting rows to their own centroids are biased low, so the other rows
    are held out for both tests.
    """
    from sklearn.cluster import KMeans

    nb = b.shape[0]
    order = rng_for(config, "topic_shift", "embeddings").permutation(nb)
    n_fit = min(nb // 2, config.max_rows_cluster_fit)
    fit_rows, hold_rows = np.sort(order[:n_fit]), np.sort(order[n_fit:])
    # At least ~10 fitting rows per cluster, or centroids chase noise.
    n_clusters = max(2, min(config.n_clusters, n_fit // 10))
    # float64 rows: on float32 input sklearn computes distances in small upcast chunks, which
    # took most of this test's time at 50,000 rows.
    km = KMeans(n_clusters=n_clusters, n_init=2, random_state=config.seed)
    km.fit(b[fit_rows].astype(np.float64))
    return _Clusters(np.asarray(km.cluster_centers_, dtype=np.float64), int(n_fit), hold_rows)


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
    return texts_at(texts, rows[chosen].tolist())


def _adjusted_residuals(table: npt.NDArray[np.int64], chi: Any) -> npt.NDArray[np.float64]:
    """Adjusted (standardised) residuals of the current row: which cells drive the chi-square."""
    nonzero = table.sum(axis=0) > 0
    expected = np.zeros_like(table, dtype=np.float64)
    expected[:, nonzero] = chi.expected_freq
    row_share = table.sum(axis=1) / table.sum()
    col_share = table.sum(axis=0) / table.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        resid = (table[1] - expected[1]) / np.sqrt(
            expected[1] * (1 - row_share[1]) * (1 - col_share)
        )
    return np.asarray(np.nan_to_num(resid), dtype=np.float64)


@dataclass(frozen=True)
class _Assigned:
    """Cluster labels and distances of the held-out baseline rows and the current rows."""

    lab_b: npt.NDArray[np.intp]
    dist_b: npt.NDArray[np.float64]
    lab_c: npt.NDArray[np.intp]
    dist_c: npt.NDArray[np.float64]


def _listed_clusters(
    clusters: list[dict[str, Any]],
    fit: _Clusters,
    a: _Assigned,
    baseline_texts: Sequence[str] | None,
    current_texts: Sequence[str] | None,
    config: DriftConfig,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The clusters that grew and shrank enough to list, with the texts nearest their centroid."""
    listed = [
        cl
        for cl in clusters
        if abs(cl["delta"]) >= config.cluster_min_delta and abs(cl["z"]) >= config.cluster_min_z
    ]
    grown = sorted((cl for cl in listed if cl["delta"] > 0), key=lambda cl: -cl["delta"])
    shrunk = sorted((cl for cl in listed if cl["delta"] < 0), key=lambda cl: cl["delta"])
    n_cur = a.lab_c.size
    for cl in grown:
        cl["examples"] = _examples_near(
            a.dist_c, a.lab_c, cl["cluster"], current_texts, np.arange(n_cur), config.n_examples
        )
    for cl in shrunk:
        cl["examples"] = _examples_near(
            a.dist_b, a.lab_b, cl["cluster"], baseline_texts, fit.hold_rows, config.n_examples
        )
    return grown, shrunk


def _describe(items: list[dict[str, Any]]) -> str:
    return ", ".join(
        f"cluster {cl['cluster']} {_pct(cl['baseline_share'])} → {_pct(cl['current_share'])}"
        for cl in items[:3]
    )


def _shares_result(
    rb: ResultBuilder,
    fit: _Clusters,
    a: _Assigned,
    baseline_texts: Sequence[str] | None,
    current_texts: Sequence[str] | None,
) -> DriftTestResult:
    """Chi-square of held-out baseline vs current cluster counts; effect: total variation."""
    m, nc, k = a.lab_b.size, a.lab_c.size, fit.k
    cnt_b = np.bincount(a.lab_b, minlength=k)
    cnt_c = np.bincount(a.lab_c, minlength=k)
    table = np.vstack([cnt_b, cnt_c])
    chi = stats.chi2_contingency(table[:, table.sum(axis=0) > 0], correction=False)
    sh_b, sh_c = cnt_b / m, cnt_c / nc
    tv = 0.5 * float(np.abs(sh_c - sh_b).sum())
    smooth_b = (cnt_b + 0.5) / (m + 0.5 * k)
    smooth_c = (cnt_c + 0.5) / (nc + 0.5 * k)
    resid = _adjusted_residuals(table, chi)
    clusters: list[dict[str, Any]] = [
        {
            "cluster": i,
            "baseline_share": float(sh_b[i]),
            "current_share": float(sh_c[i]),
            "delta": float(sh_c[i] - sh_b[i]),
            "z": float(resid[i]),
        }
        for i in range(k)
    ]
    grown, shrunk = _listed_clusters(clusters, fit, a, baseline_texts, current_texts, rb.config)
    moved_txt = f"{_pct(tv)} of responses changed topic cluster (total variation)"
    if grown:
        moved_txt += f"; grew: {_describe(grown)}"
    if shrunk:
        moved_txt += f"; shrank: {_describe(shrunk)}"
    return rb.result(
        statistic=float(chi.statistic),
        effect_size=tv,
        p_value=float(chi.pvalue),
        summary=f"topics: {moved_txt}",
        details={
            "n_clusters": k,
            "baseline_rows_fit": fit.n_fit,
            "baseline_rows_held_out": int(m),
            "js_divergence": float(jensenshannon(sh_b, sh_c, base=2) ** 2),
            "kl_divergence": float(np.sum(smooth_c * np.log(smooth_c / smooth_b))),
            "clusters": clusters,
            "grown": grown,
            "shrunk": shrunk,
        },
    )


def _new_topic_result(
    rb: ResultBuilder, a: _Assigned, current_texts: Sequence[str] | None
) -> DriftTestResult:
    """Share of current rows beyond the held-out baseline's quantile distance, exact p-value.

    With the threshold the j-th largest of m held-out distances, the count of current rows
    above it is negative-hypergeometric under no drift.
    """
    config = rb.config
    m, nc = a.dist_b.size, a.dist_c.size
    j = max(1, math.ceil(m * (1 - config.new_topic_quantile)))
    threshold = float(np.sort(a.dist_b)[m - j])
    far = a.dist_c > threshold
    x_far = int(far.sum())
    expected_share = j / (m + 1)
    observed_share = x_far / nc
    p_new = float(stats.nhypergeom.sf(x_far - 1, m + nc, nc, j)) if x_far > 0 else 1.0
    far_idx = np.flatnonzero(far)
    far_idx = far_idx[np.argsort(-a.dist_c[far_idx])][: max(config.n_examples, 5)]
    return rb.result(
        statistic=float(x_far),
        effect_size=observed_share - expected_share,
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
            "examples": texts_at(current_texts, far_idx.tolist()),
        },
    )


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
    config = config or DriftConfig()
    b, c = reduce_embeddings(baseline, current, config)
    nb, nc = b.shape[0], c.shape[0]
    need = config.min_samples.embeddings
    if nb < 2 * need or nc < need:
        reason = f"{nb} baseline / {nc} current rows, need {2 * need} baseline and {need} current"
        return [
            ResultBuilder(config, test, "embeddings", "embedding", name, nb, nc).insufficient(
                need, reason=reason
            )
            for test, name in _TESTS.items()
        ]
    fit = _fit_clusters(b, config)
    lab_b, dist_b = fit.assign(b[fit.hold_rows])
    lab_c, dist_c = fit.assign(c)
    assigned = _Assigned(lab_b, dist_b, lab_c, dist_c)
    m = fit.hold_rows.size

    def builder(test: TestName) -> ResultBuilder:
        return ResultBuilder(config, test, "embeddings", "embedding", _TESTS[test], m, nc)

    return [
        _shares_result(builder("topic_shares"), fit, assigned, baseline_texts, current_texts),
        _new_topic_result(builder("new_topic"), assigned, current_texts),
    ]


def _run_topics(b: Sample, c: Sample, _: str, config: DriftConfig) -> list[DriftTestResult]:
    return topic_shift(
        b.values, c.values, baseline_texts=b.texts, current_texts=c.texts, config=config
    )


_TESTS: dict[TestName, str] = {"topic_shares": _SHARES_EFFECT, "new_topic": _NEW_EFFECT}
_EMBEDDINGS: frozenset[ColumnKind] = frozenset({"embeddings"})

DESCRIPTORS: tuple[DriftTestDescriptor, ...] = (
    DriftTestDescriptor("topic_shift", "embedding", _EMBEDDINGS, _TESTS, _run_topics),
)
