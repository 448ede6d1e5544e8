"""One drift report: every registered test the two windows allow, adjusted together."""

from __future__ import annotations

import numpy as np

from evalwatch.checks.drift.base import ColumnKind, ResultBuilder, Sample, apply_verdicts
from evalwatch.checks.drift.config import DriftConfig
from evalwatch.checks.drift.embeddings import reduce_embeddings
from evalwatch.checks.drift.numeric import near_constant
from evalwatch.checks.drift.registry import KIND_ORDER, descriptors_for
from evalwatch.checks.drift.results import DriftInput, DriftReport, DriftTestResult

__all__ = ["run_drift"]


def _columns(window: DriftInput, kind: ColumnKind) -> dict[str, Sample]:
    """A window's features of one kind, as the registered tests' samples."""
    if kind == "numeric":
        return {name: Sample(np.asarray(v)) for name, v in window.numeric.items()}
    if kind == "rate":
        return {name: Sample(np.asarray(v)) for name, v in window.rates.items()}
    if kind == "rating":
        if window.ratings is None:
            return {}
        return {"rating": Sample(np.asarray(window.ratings), timestamps=window.timestamps)}
    if window.embeddings is None:
        return {}
    return {"embeddings": Sample(np.asarray(window.embeddings), texts=window.texts)}


def _empty(kind: ColumnKind) -> Sample:
    """The sample of a window that lacks a column: 0 rows, so its tests say insufficient."""
    return Sample(np.empty(0, dtype=bool if kind == "rate" else np.float64))


def _one_constant(b: Sample, c: Sample) -> bool:
    """A numeric column holding one value (to float rounding) across both windows."""
    pooled = np.concatenate([np.ravel(b.values), np.ravel(c.values)]).astype(np.float64)
    pooled = pooled[np.isfinite(pooled)]
    return pooled.size > 0 and near_constant(pooled)


def _embedding_results(
    baseline: DriftInput, current: DriftInput, config: DriftConfig
) -> list[DriftTestResult]:
    """The embedding tests, on the baseline's principal components once when configured."""
    b_cols, c_cols = _columns(baseline, "embeddings"), _columns(current, "embeddings")
    if not b_cols and not c_cols:
        return []
    results: list[DriftTestResult] = []
    if not b_cols or not c_cols:
        # One window has no embeddings: every embedding test says so, none runs.
        nb = b_cols["embeddings"].values.shape[0] if b_cols else 0
        nc = c_cols["embeddings"].values.shape[0] if c_cols else 0
        need = config.min_samples.embeddings
        for d in descriptors_for("embeddings"):
            for test, name in d.tests.items():
                rb = ResultBuilder(config, test, "embeddings", d.family, name, nb, nc)
                results.append(rb.insufficient(need))
        return results
    b, c = b_cols["embeddings"], c_cols["embeddings"]
    rb_, rc_ = reduce_embeddings(b.values, c.values, config)
    reduced = config.model_copy(update={"pca_components": None})
    for d in descriptors_for("embeddings"):
        results.extend(
            d.run(Sample(rb_, texts=b.texts), Sample(rc_, texts=c.texts), "embeddings", reduced)
        )
    if config.pca_components is not None:
        results = [
            r.model_copy(update={"details": {**r.details, "pca_components": config.pca_components}})
            for r in results
        ]
    return results


def run_drift(
    baseline: DriftInput, current: DriftInput, config: DriftConfig | None = None
) -> DriftReport:
    """Run every registered test the two windows allow and adjust them as one report.

    A column present in only one window gives ``"insufficient_data"`` results (0 rows on the
    other side), never a silent skip. Columns absent from both windows are not tested, and
    neither is a numeric column holding one single value (to float rounding) across both
    windows: it cannot drift, and left out it takes no place in the Benjamini-Hochberg family.

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
    results = _embedding_results(baseline, current, config)
    for kind in KIND_ORDER[1:]:
        b_cols, c_cols = _columns(baseline, kind), _columns(current, kind)
        for name in sorted(set(b_cols) | set(c_cols)):
            b, c = b_cols.get(name, _empty(kind)), c_cols.get(name, _empty(kind))
            if kind == "numeric" and _one_constant(b, c):
                continue
            for d in descriptors_for(kind):
                if d.within_window and (name not in c_cols or c.timestamps is None):
                    continue
                results.extend(d.run(b, c, name, config))
    final = apply_verdicts(results, config)
    return DriftReport(
        results=final, config=config, drift_found=any(r.verdict == "drift" for r in final)
    )
