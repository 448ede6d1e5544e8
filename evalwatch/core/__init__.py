"""The vocabulary every layer shares: subject types, statuses, durations and the redactor.

The bottom layer: it imports only the standard library and pydantic (the ``core depends on
nothing`` import contract and ``tests/test_core.py`` hold it to that), so every other package
can use it without pulling in the store, the statistics or the evaluators. What a metric means
(:class:`MetricSpec`) lives here too, and the lazy re-exports the package ``__init__`` modules
use (:mod:`evalwatch.core.lazy`).
"""

from evalwatch.core.durations import DURATION_UNITS, parse_duration
from evalwatch.core.metrics import MetricKind, MetricSpec
from evalwatch.core.redact import PII_KINDS, Finding, Redactor, luhn_ok, mask
from evalwatch.core.vocab import (
    ACTIVE_ALERT_STATUSES,
    AlertStatus,
    RunStatus,
    ScoreStatus,
    SubjectType,
)

__all__ = [
    "ACTIVE_ALERT_STATUSES",
    "DURATION_UNITS",
    "PII_KINDS",
    "AlertStatus",
    "Finding",
    "MetricKind",
    "MetricSpec",
    "Redactor",
    "RunStatus",
    "ScoreStatus",
    "SubjectType",
    "luhn_ok",
    "mask",
    "parse_duration",
]
