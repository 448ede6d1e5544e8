"""Checks on evalwatch's data: validation, drift, anomalies, the regression gate, alert rules.

Every statistic here is a pure function (arrays in, pydantic results out, no I/O). The public
names are re-exported lazily, so ``import evalwatch.checks.rules`` does not pay for scipy and
sklearn.
"""

from __future__ import annotations

from typing import Any

from evalwatch.core.lazy import LazyExports

_EXPORTS: dict[str, tuple[str, ...]] = {
    "evalwatch.checks.validation": (
        "ValidationEngineError",
        "validate_feedback",
        "validate_feedback_rows",
        "validate_traffic",
        "validate_traffic_rows",
    ),
    "evalwatch.checks.drift": (
        "DriftConfig",
        "DriftInput",
        "DriftReport",
        "DriftTestResult",
        "benjamini_hochberg",
        "run_drift",
    ),
    "evalwatch.checks.anomaly": (
        "AnomalyPoint",
        "AnomalyReport",
        "aggregate_series",
        "detect_anomalies",
    ),
    "evalwatch.checks.policy": (
        "GateInputError",
        "GatePolicy",
        "MetricPolicy",
        "PolicyError",
        "default_policy",
        "load_policy",
    ),
    "evalwatch.checks.regression": (
        "GateReport",
        "MetricComparison",
        "check_comparable",
        "compare_paired",
        "compare_pairwise",
        "compare_unpaired",
        "run_canary",
        "run_gate",
    ),
    "evalwatch.checks.rules": ("Rule", "RulesError", "RulesFile", "check_rules", "load_rules"),
}
_LAZY = LazyExports(__name__, _EXPORTS)

__all__ = _LAZY.names


def __getattr__(name: str) -> Any:
    return _LAZY.get(name)
