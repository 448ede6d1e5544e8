"""The table of registered drift tests, as Evidently's stattest registry keeps its tests.

Each entry is a :class:`~evalwatch.checks.drift.base.DriftTestDescriptor`: name, family, the
column kinds it applies to, the result tests it produces and a uniform runner.
:func:`evalwatch.checks.drift.report.run_drift` runs, for every column of a kind, every
descriptor that applies to that kind, in this table's order.
"""

from __future__ import annotations

from evalwatch.checks.drift import embeddings, numeric, rates, topics
from evalwatch.checks.drift.base import ColumnKind, DriftTestDescriptor

__all__ = ["DRIFT_TESTS", "KIND_ORDER", "descriptors_for"]

# The order of a report: embedding tests, then numeric columns, rates and ratings.
KIND_ORDER: tuple[ColumnKind, ...] = ("embeddings", "numeric", "rate", "rating")

DRIFT_TESTS: dict[str, DriftTestDescriptor] = {
    d.name: d
    for d in (
        *embeddings.DESCRIPTORS,
        *topics.DESCRIPTORS,
        *numeric.DESCRIPTORS,
        *rates.DESCRIPTORS,
    )
}


def descriptors_for(kind: ColumnKind) -> list[DriftTestDescriptor]:
    """The registered tests that apply to one column kind, in table order.

    Args:
        kind: ``"numeric"``, ``"rate"``, ``"rating"`` or ``"embeddings"``.

    Returns:
        Their descriptors.

    Examples:
        >>> [d.name for d in descriptors_for("numeric")]
        ['ks', 'wasserstein', 'psi', 'mean_shift']
    """
    return [d for d in DRIFT_TESTS.values() if kind in d.kinds]
