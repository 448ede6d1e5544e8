"""Alerting: evaluate rules against the store, keep the alert lifecycle, deliver notifications."""

from evalwatch.alerting.delivery import (
    DeliveryResult,
    Message,
    block_classes,
    build_message,
    deliver_pending,
    describe_error,
    load_block,
    redact_payload,
    send_notification,
    trigger_action,
)
from evalwatch.alerting.engine import (
    AlertEvent,
    evaluate_after_report,
    evaluate_after_run,
    evaluate_rules,
    rules_for_settings,
)

__all__ = [
    "AlertEvent",
    "DeliveryResult",
    "Message",
    "block_classes",
    "build_message",
    "deliver_pending",
    "describe_error",
    "evaluate_after_report",
    "evaluate_after_run",
    "evaluate_rules",
    "load_block",
    "redact_payload",
    "rules_for_settings",
    "send_notification",
    "trigger_action",
]
