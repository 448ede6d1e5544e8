"""``evalwatch alerts``: list alerts, acknowledge and resolve them, evaluate the rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from evalwatch.commands.common import (
    STATE,
    bad_input,
    console,
    open_store,
    print_queued_notifications,
    unavailable,
)
from evalwatch.core import AlertStatus

if TYPE_CHECKING:
    from evalwatch.storage.models import Alert

alerts_app = typer.Typer(help="Alerts: list, acknowledge, resolve, evaluate.", no_args_is_help=True)

StatusOpt = Annotated[
    AlertStatus | None,
    typer.Option("--status", help="Only alerts with this status."),
]


def _when(alert: Alert, name: str) -> str:
    value = getattr(alert, name)
    return value.strftime("%Y-%m-%d %H:%M") if value else ""


_COLUMNS = (
    "id",
    "rule",
    "scope",
    "severity",
    "status",
    "count",
    "opened",
    "last seen",
    "value",
    "pending",
)
# Below this terminal width the table's headers and names would be cut: list instead.
_TABLE_WIDTH = 120


def _value(alert: Alert) -> str:
    value = (alert.context or {}).get("value")
    return "" if value is None else f"{value:.4g}"


def _details(alert: Alert) -> str:
    parts = [
        f"opened {_when(alert, 'opened_at')}",
        f"last seen {_when(alert, 'last_seen_at')}",
        f"seen {alert.count} time(s)",
    ]
    if _value(alert):
        parts.append(f"value {_value(alert)}")
    if _pending(alert):
        parts.append(f"pending {_pending(alert)}")
    return ", ".join(parts)


def _pending(alert: Alert) -> str:
    pending = (alert.context or {}).get("pending_delivery") or {}
    return ",".join(pending.get("channels", []))


@alerts_app.command("list")
def alerts_list(
    status: StatusOpt = None,
    rule: Annotated[str | None, typer.Option("--rule", help="Only this rule.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """List alerts, newest first."""
    from evalwatch.storage.alerts import list_alerts

    alerts = list_alerts(open_store(), status=status, rule=rule, limit=limit)
    if as_json:
        for a in alerts:
            typer.echo(json.dumps(a.model_dump(mode="json"), ensure_ascii=False))
        return
    title = f"{len(alerts)} alert(s)" + (f" ({status})" if status else "")
    if console.width < _TABLE_WIDTH:
        # Ten columns do not fit a narrow terminal without cutting headers and names down to
        # "seve…": two lines per alert instead, wrapped at spaces, nothing cut.
        console.print(title, highlight=False)
        for a in alerts:
            console.print(
                f"alert {a.id}  {a.rule}  {a.severity}  {a.status}  ({a.scope_key})",
                highlight=False,
                markup=False,
            )
            console.print(f"    {_details(a)}", highlight=False, markup=False)
        return
    table = Table(title=title)
    for col in _COLUMNS:
        table.add_column(col, justify="right" if col in ("id", "count") else "left")
    for a in alerts:
        table.add_row(
            str(a.id),
            a.rule,
            a.scope_key,
            a.severity,
            a.status,
            str(a.count),
            _when(a, "opened_at"),
            _when(a, "last_seen_at"),
            _value(a),
            _pending(a),
        )
    console.print(table)


@alerts_app.command("ack")
def alerts_ack(alert_id: Annotated[int, typer.Argument(help="Alert id.")]) -> None:
    """Acknowledge an open alert: it stays active but stops re-notifying."""
    from evalwatch.storage.alerts import AlertLifecycleError, acknowledge_alert
    from evalwatch.storage.models import utcnow

    try:
        alert = acknowledge_alert(open_store(), alert_id, utcnow())
    except KeyError:
        raise bad_input(f"no alert with id {alert_id}") from None
    except AlertLifecycleError as exc:
        raise bad_input(str(exc)) from None
    console.print(f"alert {alert.id} ({alert.rule}, {alert.scope_key}) is {alert.status}")


@alerts_app.command("resolve")
def alerts_resolve(alert_id: Annotated[int, typer.Argument(help="Alert id.")]) -> None:
    """Resolve an alert by hand; its rule must breach again to re-open it."""
    from evalwatch.storage.alerts import resolve_alert
    from evalwatch.storage.models import utcnow

    try:
        alert = resolve_alert(open_store(), alert_id, utcnow())
    except KeyError:
        raise bad_input(f"no alert with id {alert_id}") from None
    console.print(f"alert {alert.id} ({alert.rule}, {alert.scope_key}) is {alert.status}")


@alerts_app.command("evaluate")
def alerts_evaluate(
    rules_file: Annotated[
        Path | None, typer.Option("--rules", help="Rules file (default: settings, then built-in).")
    ] = None,
    run_id: Annotated[
        int | None, typer.Option("--run-id", help="Judge this run's 'run' windows too.")
    ] = None,
    deliver: Annotated[
        bool, typer.Option("--deliver/--no-deliver", help="Send queued notifications now.")
    ] = True,
) -> None:
    """Evaluate the alert rules now (the flows do this at the end of every run)."""
    from evalwatch.alerting.delivery import describe_error
    from evalwatch.alerting.engine import evaluate_rules, rules_for_settings
    from evalwatch.checks.rules import RulesError

    try:
        rules = rules_for_settings(STATE.settings(), rules_file)
    except RulesError as exc:
        raise bad_input(str(exc)) from None
    engine = open_store()
    try:
        events = evaluate_rules(engine, rules, run_id=run_id, deliver=deliver)
    except Exception as exc:  # the evaluation could not be carried out: exit 3, one line
        raise unavailable(f"alert rules could not be evaluated: {describe_error(exc)}") from None
    for ev in events:
        sent = sum(1 for d in ev.deliveries if d.get("ok") and "channel" in d)
        console.print(
            f"{ev.action:8} alert {ev.alert_id} {ev.rule} [{ev.scope_key}] {ev.severity} "
            f"value={ev.value} (notified {sent} channel(s))",
            highlight=False,
        )
    console.print(f"{len(events)} alert change(s)")
    print_queued_notifications([ev.delivery_error for ev in events])


def register(app: typer.Typer) -> None:
    """Add the ``alerts`` group."""
    app.add_typer(alerts_app, name="alerts")
