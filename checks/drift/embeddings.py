"""Embedding tests: the domain classifier and the MMD permutation test (and the PCA step)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy import stats

from evalwatch.checks.drift.base import (
    ArrayLike,
    ColumnKind,
    DriftTestDescriptor,
    ResultBuilder,
    Sample,
    permutation_tail,
    rng_for,
    subsample_idx,
    texts_at,
    z_crit,
)
from evalwatch.checks.drift.config import DriftConfig, TestName
from evalwatch.checks.drift.results import DriftTestResult

__all__ = [
    "DESCRIPTORS",
    "as_embeddings",
    "domain_classifier_test",
    "mmd_permutation_test",
    "reduce_embeddings",
]

_AUC_EFFECT = "AUC - 0.5"
_MMD_EFFECT = "MMD"


def as_embeddings(x: ArrayLike) -> npt.NDArray[np.float32]:
    """Embeddings as a float32 ``n x d`` array.

    Raises:
        ValueError: Not two-dimensional.
    """
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (n x d), got shape {arr.shape}")
    return arr


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
    b, c = as_embeddings(baseline), as_embeddings(current)
    k = config.pca_components
    if k is None or k >= b.shape[1]:
        return b, c
    from sklearn.decomposition import PCA

    rng = rng_for(config, "pca", "embeddings")
    fit_rows = b[subsample_idx(b.shape[0], config.max_rows_cluster_fit, rng)]
    pca = PCA(n_components=min(k, fit_rows.shape[0]), random_state=config.seed).fit(fit_rows)
    return (
        np.asarray(pca.transform(b), dtype=np.float32),
        np.asarray(pca.transform(c), dtype=np.float32),
    )


def _embedding_start(
    test: TestName,
    effect_name: str,
    baseline: ArrayLike,
    current: ArrayLike,
    config: DriftConfig,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], ResultBuilder, DriftTestResult | None]:
    """The opening both embedding tests share: windows, builder, and early result.

    Returns:
        The (possibly reduced, see :func:`reduce_embeddings`) windows, the test's
        :class:`ResultBuilder`, and the ``insufficient_data`` result when either window has
        fewer than ``config.min_samples.embeddings`` rows (None when the test can run).
    """
    b, c = reduce_embeddings(baseline, current, config)
    nb, nc = b.shape[0], c.shape[0]
    rb = ResultBuilder(config, test, "embeddings", "embedding", effect_name, nb, nc)
    need = config.min_samples.embeddings
    return b, c, rb, rb.insufficient(need) if rb.too_few(need) else None


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
    b, c, rb, short = _embedding_start("domain_classifier", _AUC_EFFECT, baseline, current, config)
    if short is not None:
        return short
    nb, nc = rb.n_baseline, rb.n_current
    rng = rng_for(config, "domain_classifier", "embeddings")
    m = min(nb, nc, config.max_rows_classifier)
    ib = rng.permutation(subsample_idx(nb, m, rng))
    ic = rng.permutation(subsample_idx(nc, m, rng))
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
    z = z_crit(config.ci_level)
    top = test_c[np.argsort(-s_c)[: config.n_examples]]
    return rb.result(
        statistic=auc,
        effect_size=auc - 0.5,
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
            "most_current_like": texts_at(current_texts, top.tolist()),
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
    probe = subsample_idx(z.shape[0], 1000, rng)
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
    b, c, rb, short = _embedding_start("mmd", _MMD_EFFECT, baseline, current, config)
    if short is not None:
        return short
    nb, nc = rb.n_baseline, rb.n_current
    rng = rng_for(config, "mmd", "embeddings")
    cap = config.max_rows_for_quadratic
    bs, cs = b[subsample_idx(nb, cap, rng)], c[subsample_idx(nc, cap, rng)]
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
    p = permutation_tail(observed, null)

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
    z = z_crit(config.ci_level)
    return rb.result(
        statistic=mmd2,
        effect_size=mmd,
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


def _run_classifier(b: Sample, c: Sample, _: str, config: DriftConfig) -> list[DriftTestResult]:
    return [domain_classifier_test(b.values, c.values, current_texts=c.texts, config=config)]


def _run_mmd(b: Sample, c: Sample, _: str, config: DriftConfig) -> list[DriftTestResult]:
    return [mmd_permutation_test(b.values, c.values, config=config)]


_EMBEDDINGS: frozenset[ColumnKind] = frozenset({"embeddings"})

DESCRIPTORS: tuple[DriftTestDescriptor, ...] = (
    DriftTestDescriptor(
        "domain_classifier",
        "embedding",
        _EMBEDDINGS,
        {"domain_classifier": _AUC_EFFECT},
        _run_classifier,
    ),
    DriftTestDescriptor("mmd", "embedding", _EMBEDDINGS, {"mmd": _MMD_EFFECT}, _run_mmd),
)
