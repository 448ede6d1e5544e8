"""Alert delivery through Prefect notification blocks, and rule actions through deployments.

Each channel of a rules file names a saved Prefect notification block (custom webhook, Slack,
Microsoft Teams, PagerDuty, SendGrid email, ...). Delivery is at-least-once: the evaluation
queues a notification on the alert row in the same transaction that opens or updates it, and
this module sends what is queued, retrying with back-off; a channel that is still down stays
queued and is retried at the next evaluation. Every attempt is recorded on the alert.

Messages carry no secret and no unredacted personal data: item text is redacted when the alert
is stored, the whole message is redacted again before it leaves, and error texts recorded on
the alert keep the status or exception type only (a webhook URL is itself a credential).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from evalwatch.alerting.prefect_api import PrefectApi, prefect_api
from evalwatch.checks.rules import (
    ActionSpec,
    ChannelSpec,
    DeliveryPolicy,
    Rule,
    RulesFile,
    parse_scope_key,
    render_parameters,
)
from evalwatch.core.redact import Redactor
from evalwatch.storage.alerts import alerts_with_pending, claim_pending, release_pending
from evalwatch.storage.models import Alert, utcnow

__all__ = [
    "DeliveryResult",
    "Message",
    "block_classes",
    "build_message",
    "deliver_pending",
    "describe_error",
    "load_block",
    "redact_payload",
    "send_notification",
    "trigger_action",
]

log = logging.getLogger(__name__)

_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)
_MAX_ITEMS = 5


def block_classes() -> dict[str, type[Any]]:
    """Channel type -> Prefect notification block class (imported lazily: prefect is slow).

    Examples:
        >>> block_classes()["webhook"].__name__
        'CustomWebhookNotificationBlock'
    """
    from prefect.blocks.notifications import (
        CustomWebhookNotificationBlock,
        DiscordWebhook,
        MattermostWebhook,
        MicrosoftTeamsWebhook,
        OpsgenieWebhook,
        PagerDutyWebHook,
        SendgridEmail,
        SlackWebhook,
        TwilioSMS,
    )

    return {
        "webhook": CustomWebhookNotificationBlock,
        "slack": SlackWebhook,
        "teams": MicrosoftTeamsWebhook,
        "pagerduty": PagerDutyWebHook,
        "email": SendgridEmail,
        "opsgenie": OpsgenieWebhook,
        "mattermost": MattermostWebhook,
        "discord": DiscordWebhook,
        "twilio": TwilioSMS,
    }


def load_block(spec: ChannelSpec) -> Any:
    """Load the saved Prefect notification block a channel names.

    Args:
        spec: The channel.

    Returns:
        The block (a ``prefect.blocks.abstract.NotificationBlock``).

    Raises:
        ValueError: No block of that type and name is saved.
    """
    cls = block_classes()[spec.type]
    # _sync: stay synchronous even when called from an async flow (Prefect's dispatch would
    # otherwise hand back a coroutine).
    return cls.load(spec.block_name, _sync=True)


def describe_error(exc: BaseException) -> str:
    """A short description of a failure that carries no URL, token or payload.

    Examples:
        >>> describe_error(ValueError("POST https://hooks.example/T0/secret failed"))
        'ValueError: POST [url] failed'
    """
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(status, int):
        return f"HTTP {status}"
    text = _URL.sub("[url]", str(exc).splitlines()[0] if str(exc) else "")
    text = Redactor().redact(text)[0][:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass(frozen=True)
class Message:
    """A notification: subject, readable text, and the same facts as a JSON-able payload."""

    subject: str
    text: str
    payload: dict[str, Any]

    def body(self, fmt: str) -> str:
        """The body for a channel format (``text`` or ``json``)."""
        if fmt == "json":
            # The payload is JSON-safe (see redact_payload): strict JSON, no NaN.
            return json.dumps(self.payload, ensure_ascii=False, allow_nan=False, default=str)
        return self.text


def redact_payload(value: Any, redactor: Redactor) -> Any:
    """A JSON-able copy of ``value`` with every string in it (keys too) redacted.

    The strings are redacted, never the serialization: a pattern run over JSON text can match
    across its syntax (a long float looks like a card number) and leave text that no longer
    parses. Values JSON cannot hold become strings (redacted too); NaN and infinities become
    None, so the body is strict JSON.

    Args:
        value: A payload (mappings, sequences, strings, numbers, None, anything else).
        redactor: Masks personal data and secrets.

    Returns:
        The redacted copy.

    Examples:
        >>> redact_payload({"to": "bob@example.com", "effect": 0.4111111111111111}, Redactor())
        {'to': '[REDACTED:email]', 'effect': 0.4111111111111111}
    """
    if isinstance(value, str):
        return redactor.redact(value)[0]
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {redactor.redact(str(k))[0]: redact_payload(v, redactor) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_payload(v, redactor) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return redactor.redact(str(value))[0]


def _num(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


_EVENT_WORDS = {"open": "opened", "update": "still firing", "resolve": "resolved"}


def build_message(alert: Alert, event: str, rule: Rule | None, redactor: Redactor) -> Message:
    """The notification for one alert event, redacted.

    Args:
        alert: The alert (its context holds what fired it).
        event: ``open``, ``update`` or ``resolve``.
        rule: The rule, when still configured (for its description).
        redactor: Masks personal data and secrets.

    Returns:
        The message.
    """
    ctx = alert.context or {}
    window = ctx.get("window") or {}
    offending = list(ctx.get("offending") or [])[:_MAX_ITEMS]
    payload: dict[str, Any] = {
        "source": "evalwatch",
        "event": event,
        "alert_id": alert.id,
        "rule": alert.rule,
        "description": rule.description if rule else ctx.get("description", ""),
        "severity": alert.severity,
        "status": alert.status,
        "scope": ctx.get("scope", {}),
        "scope_key": alert.scope_key,
        "selector": ctx.get("selector"),
        "aggregation": ctx.get("aggregation"),
        "comparison": ctx.get("comparison"),
        "threshold": ctx.get("threshold"),
        "value": ctx.get("value"),
        "n": ctx.get("n"),
        "window": window,
        "count": alert.count,
        "opened_at": alert.opened_at.isoformat() if alert.opened_at else None,
        "last_seen_at": alert.last_seen_at.isoformat() if alert.last_seen_at else None,
        "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
        "offending": offending,
        "links": ctx.get("links", {}),
    }
    if ctx.get("slowest_step"):
        payload["slowest_step"] = ctx["slowest_step"]
    scope = alert.scope_key if alert.scope_key != "all" else "all traffic"
    subject = (
        f"[{alert.severity.upper()}] evalwatch alert {alert.rule} "
        f"{_EVENT_WORDS.get(event, event)} ({scope})"
    )
    lines = [
        subject,
        f"Alert #{alert.id}: {payload['description']}".rstrip(": "),
        f"Condition: {ctx.get('aggregation')}({ctx.get('selector')}) {ctx.get('comparison')} "
        f"{_num(ctx.get('threshold'))}; value {_num(ctx.get('value'))} over {ctx.get('n')} "
        "item(s)",
        f"Window: {window.get('kind', '?')} {window.get('start') or ''} .. "
        f"{window.get('end') or ''}".rstrip(" ."),
        f"Status: {alert.status}; seen {alert.count} time(s); opened {payload['opened_at']}; "
        f"last seen {payload['last_seen_at']}",
    ]
    slow = ctx.get("slowest_step")
    if slow:
        lines.append(
            f"Slowest step: {slow.get('kind')} {slow.get('name')!r}, "
            f"{float(slow.get('share') or 0):.0%} of the latency of {slow.get('of')} traced "
            "item(s)"
        )
    for item in offending:
        text = item.get("response") or item.get("summary") or item.get("feature") or ""
        ident = item.get("request_id") or item.get("id") or item.get("report_key") or ""
        lines.append(f"  - {ident} value={_num(item.get('value'))} {str(text)[:160]}".rstrip())
    for name, value in (ctx.get("links") or {}).items():
        if value not in (None, "", []):
            lines.append(f"{name}: {value}")
    text = "\n".join(lines)
    # Redact everything that leaves, even text already redacted when the alert was stored.
    text = redactor.redact(text)[0]
    subject = redactor.redact(subject)[0]
    return Message(subject=subject, text=text, payload=redact_payload(payload, redactor))


@dataclass(frozen=True)
class DeliveryResult:
    """The outcome of sending one message to one channel."""

    ok: bool
    attempts: int
    error: str | None = None


def send_notification(
    spec: ChannelSpec,
    message: Message,
    policy: DeliveryPolicy,
    sleep: Callable[[float], None] = time.sleep,
    block: Any | None = None,
) -> DeliveryResult:
    """Send a message through a channel's block, retrying with exponential back-off.

    Args:
        spec: The channel.
        message: What to send.
        policy: Attempts and back-off.
        sleep: How to wait between attempts (injectable for tests).
        block: An already loaded block (loaded from ``spec`` when None).

    Returns:
        Whether it got through, after how many attempts, and the last error.
    """
    error: str | None = None
    for attempt in range(1, policy.attempts + 1):
        if block is None:
            try:
                block = load_block(spec)
            except ValueError as exc:  # no such block saved: waiting will not make one
                return DeliveryResult(False, attempt, describe_error(exc))
            except Exception as exc:  # the Prefect API may be briefly unreachable: retry
                error = describe_error(exc)
                if attempt < policy.attempts:
                    sleep(policy.delay(attempt))
                continue
        try:
            # Apprise-based blocks only log failures unless told to raise.
            with block.raise_on_failure():
                block.notify(message.body(spec.format), message.subject, _sync=True)
            return DeliveryResult(True, attempt)
        except Exception as exc:  # any failure is recorded and retried, never raised
            error = describe_error(exc)
            log.warning("alert delivery via %s failed (attempt %d): %s", spec.type, attempt, error)
        if attempt < policy.attempts:
            sleep(policy.delay(attempt))
    return DeliveryResult(False, policy.attempts, error)


def _idempotency_key(spec: ActionSpec, alert: Alert, event: str) -> str:
    # Prefect dedups flow runs per flow, and alert ids repeat across stores (staging and
    # production sharing one Prefect server, a store rebuilt): identify the alert fully.
    ident = json.dumps(
        [
            spec.deployment,
            alert.rule,
            alert.scope_key,
            alert.opened_at.isoformat() if alert.opened_at else None,
        ],
    )
    digest = hashlib.sha256(ident.encode()).hexdigest()[:16]
    return f"evalwatch-alert-{alert.id}-{event}-{alert.count}-{digest}"


def trigger_action(spec: ActionSpec, alert: Alert, event: str) -> dict[str, Any]:
    """Start the rule's Prefect deployment for an alert event (fire and forget).

    The idempotency key (alert id, event, count and a digest of the deployment, rule, scope
    and opening time) makes a retried trigger for the same alert event reuse the flow run it
    already created, and never another alert's.

    Args:
        spec: The action.
        alert: The alert.
        event: ``open``, ``update`` or ``resolve``.

    Returns:
        A record: event, deployment, parameters, time, ok, flow run id or error.
    """
    from prefect.deployments import run_deployment

    ctx = alert.context or {}
    scope = parse_scope_key(alert.scope_key)
    values = {
        "alert_id": alert.id,
        "rule": alert.rule,
        "severity": alert.severity,
        "scope_key": alert.scope_key,
        "app": scope.get("app"),
        "model_version": scope.get("model_version"),
        "value": ctx.get("value"),
        "threshold": ctx.get("threshold"),
        "event": event,
    }
    params = render_parameters(spec.parameters, values)
    record: dict[str, Any] = {
        "event": event,
        "deployment": spec.deployment,
        "parameters": params,
        "at": utcnow().isoformat(),
    }
    try:
        flow_run: Any = run_deployment(
            spec.deployment,
            parameters=params,
            timeout=0,
            as_subflow=False,
            idempotency_key=_idempotency_key(spec, alert, event),
            _sync=True,  # type: ignore[call-arg]
        )
    except Exception as exc:  # recorded on the alert and retried at the next evaluation
        log.warning("alert action %s failed: %s", spec.deployment, describe_error(exc))
        return {**record, "ok": False, "error": describe_error(exc)}
    return {**record, "ok": True, "flow_run_id": str(flow_run.id)}


def deliver_pending(
    engine: Engine,
    rules: RulesFile,
    now: datetime,
    *,
    redactor: Redactor | None = None,
    sleep: Callable[[float], None] = time.sleep,
    lease: timedelta = timedelta(minutes=10),
    resolved_within: timedelta = timedelta(days=7),
) -> dict[int, list[dict[str, Any]]]:
    """Send every queued notification and start every queued action.

    Each alert is claimed first (so two workers never send the same notification), then sent
    to its channels; what failed stays queued with the attempt recorded. Blocks are loaded
    from the Prefect API of :func:`evalwatch.alerting.prefect_api.prefect_api`, reached in bounded
    time;
    when there is none (no ``PREFECT_API_URL`` and no temporary server to be had), nothing is
    tried and everything stays queued, recorded with the reason.

    Args:
        engine: The store.
        rules: The rules (channels, delivery policy, actions).
        now: Current time.
        redactor: Masks personal data and secrets (default: all kinds).
        sleep: How to wait between attempts.
        lease: How long a claim holds if this worker dies mid-delivery.
        resolved_within: Resolved alerts older than this are not retried any more.

    Returns:
        Alert id -> the delivery and action records made now.
    """
    with contextlib.ExitStack() as stack:
        return _deliver(
            engine,
            rules,
            now,
            red=redactor or Redactor(),
            sleep=sleep,
            lease=lease,
            resolved_within=resolved_within,
            stack=stack,
        )


def _deliver(
    engine: Engine,
    rules: RulesFile,
    now: datetime,
    *,
    red: Redactor,
    sleep: Callable[[float], None],
    lease: timedelta,
    resolved_within: timedelta,
    stack: contextlib.ExitStack,
) -> dict[int, list[dict[str, Any]]]:
    delivery = _Delivery(rules, red=red, sleep=sleep, stack=stack)
    out: dict[int, list[dict[str, Any]]] = {}
    for candidate in alerts_with_pending(engine, now - resolved_within):
        assert candidate.id is not None
        claimed = claim_pending(engine, candidate.id, now, lease)
        if claimed is None:
            continue
        alert, pending, action = claimed
        rule = delivery.rules_by_name.get(alert.rule)
        records, failed = delivery.notify(alert, pending, rule) if pending else ([], [])
        action_record, action_done = delivery.act(alert, action, rule) if action else (None, False)
        assert alert.id is not None
        release_pending(
            engine,
            alert.id,
            int(pending["seq"]) if pending and "seq" in pending else None,
            records,
            failed,
            action_record,
            action_done,
        )
        out[alert.id] = records + ([action_record] if action_record else [])
    return out


class _Delivery:
    """What one :func:`deliver_pending` call shares across alerts: API, blocks, dead channels."""

    def __init__(
        self,
        rules: RulesFile,
        *,
        red: Redactor,
        sleep: Callable[[float], None],
        stack: contextlib.ExitStack,
    ) -> None:
        """Start a delivery over ``rules``; the Prefect API is reached when first needed.

        Args:
            rules: The rules (channels, delivery policy, actions).
            red: Masks personal data and secrets in messages.
            sleep: How to wait between attempts.
            stack: Holds the Prefect API (a temporary server) open until every alert is done.
        """
        self.rules = rules
        self.rules_by_name = {r.name: r for r in rules.rules}
        self.red = red
        self.sleep = sleep
        self.stack = stack
        self.blocks: dict[str, Any] = {}
        self.api: PrefectApi | None = None
        # A channel that failed every attempt is not tried again in this call: one dead endpoint
        # must not stall the evaluation once per pending alert. Its notifications stay pending.
        self.down: dict[str, str] = {}

    def reach_api(self) -> PrefectApi:
        """The Prefect API, opened at the first notification or action that needs it.

        Returns:
            The API; its ``url`` is None (with a ``reason``) when there is none to be had.
        """
        # Once per delivery; kept open (a temporary server running) until every alert is done.
        if self.api is None:
            self.api = self.stack.enter_context(prefect_api())
            if self.api.url is None:
                log.info("alert notifications stay queued: %s", self.api.reason)
        return self.api

    def notify(
        self, alert: Alert, pending: Mapping[str, Any], rule: Rule | None
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """Send one queued notification to each of its channels.

        Args:
            alert: The claimed alert.
            pending: The queued notification (event, channels).
            rule: The alert's rule, None when it was removed from the rules.

        Returns:
            The delivery records, and the channels that stay queued.
        """
        event = str(pending.get("event"))
        message = build_message(alert, event, rule, self.red)
        records: list[dict[str, Any]] = []
        failed: list[str] = []
        for channel in pending.get("channels", []):
            record, stays_queued = self._send(channel, event, message)
            records.append(record)
            if stays_queued:
                failed.append(channel)
        return records, failed

    def _send(self, channel: str, event: str, message: Message) -> tuple[dict[str, Any], bool]:
        """Send ``message`` to one channel unless it cannot be reached now.

        Args:
            channel: The channel's name in the rules.
            event: The alert event the message is about.
            message: The redacted message.

        Returns:
            The delivery record, and whether the notification stays queued for this channel.
        """
        base = {"event": event, "channel": channel, "at": utcnow().isoformat()}
        spec = self.rules.channels.get(channel)
        if spec is None:  # the channel was removed from the rules: nothing to retry
            return {**base, "ok": False, "attempts": 0, "error": "channel not configured"}, False
        reached = self.reach_api()
        if reached.url is None:  # kept queued: the next evaluation retries it
            return {
                **base,
                "block": spec.block,
                "ok": False,
                "attempts": 0,
                "error": reached.reason,
            }, True
        if channel in self.down:
            return {
                **base,
                "block": spec.block,
                "ok": False,
                "attempts": 0,
                "error": f"not tried: failed earlier ({self.down[channel]})",
                "cause": self.down[channel],
            }, True
        if channel not in self.blocks:
            # A failed load is retried (and recorded) by send_notification.
            with contextlib.suppress(Exception):
                self.blocks[channel] = load_block(spec)
        result = send_notification(
            spec, message, self.rules.delivery, self.sleep, self.blocks.get(channel)
        )
        if not result.ok:
            self.down[channel] = result.error or "error"
        return {
            **base,
            "block": spec.block,
            "ok": result.ok,
            "attempts": result.attempts,
            "error": result.error,
            "at": utcnow().isoformat(),
        }, not result.ok

    def act(
        self, alert: Alert, action: Mapping[str, Any], rule: Rule | None
    ) -> tuple[dict[str, Any] | None, bool]:
        """Start the queued action of an alert's rule.

        Args:
            alert: The claimed alert.
            action: The queued action (its event).
            rule: The alert's rule, None when it was removed from the rules.

        Returns:
            The action record (None when the rule or its action is gone), and whether the
            action is done with (started, or nothing left to start).
        """
        if rule is None or rule.action is None:
            return None, True  # the rule or its action is gone
        reached = self.reach_api()
        if reached.url is None:
            record: dict[str, Any] = {
                "event": str(action.get("event")),
                "deployment": rule.action.deployment,
                "at": utcnow().isoformat(),
                "ok": False,
                "error": reached.reason,
            }
        else:
            record = trigger_action(rule.action, alert, str(action.get("event")))
        return record, bool(record["ok"])
