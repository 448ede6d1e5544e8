"""The words every layer shares: what a score is about, and the statuses of scores, runs, alerts.

They are string enums, so they compare equal to (and are stored as) their plain values.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ACTIVE_ALERT_STATUSES", "AlertStatus", "RunStatus", "ScoreStatus", "SubjectType"]


class SubjectType(StrEnum):
    """What a score or embedding is about."""

    interaction = "interaction"  # a logged production interaction
    output = "output"  # a model's output for a dataset item


class ScoreStatus(StrEnum):
    """Whether a score holds a value. Only ``ok`` carries one; the others carry a reason."""

    ok = "ok"
    error = "error"
    skipped = "skipped"


class RunStatus(StrEnum):
    """Lifecycle of an evaluation run."""

    running = "running"
    completed = "completed"
    failed = "failed"


class AlertStatus(StrEnum):
    """Lifecycle of an alert: open -> acknowledged -> resolved."""

    open = "open"
    acknowledged = "acknowledged"
    resolved = "resolved"


#: Alerts still to be dealt with; at most one per rule and scope.
ACTIVE_ALERT_STATUSES: tuple[AlertStatus, ...] = (AlertStatus.open, AlertStatus.acknowledged)
