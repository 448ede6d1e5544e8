"""Evaluate alert rules against the store, keep each rule's state, open and resolve alerts.

Called at the end of every traffic, drift and gate run (:func:`evaluate_after_run`). For each
rule it reads the windows not yet judged (aggregated in the database by
:mod:`evalwatch.storage.alerts`), decides each window with the pure functions of
:mod:`evalwatch.checks.rules`,
and applies them under the rule and scope's lock, so separate runs and workers share one
state and one open alert per rule and scope. Notifications and actions are queued on the
alert in the same transaction and sent afterwards by :mod:`evalwatch.alerting.delivery`.

Windows:

- A duration (``1h``, ``1d``): windows aligned to the epoch, judged once complete (plus the
  rule's ``delay``). Traffic and score items fall in the window of their interaction's time;
  reports of their creation time. A window with no items (or fewer than ``min_items``) is
  insufficient data: it neither extends nor breaks a streak. ``count`` sees empty windows as 0.
- ``run`` for scores and traffic fields: the items of the run passed as ``run_id``.
- ``run`` for drift, anomaly, gate, kappa and run cost: every new report (a drift report's
  tests together, a gate, a calibration, a finished run) is one window.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy.engine import Engine

from evalwatch.alerting.delivery import deliver_pending
from evalwatch.checks.histograms import window_quantile
from evalwatch.checks.rules import (
    DEFAULT_RULES_PATH,
    Rule,
    RulesFile,
    RuleState,
    compare,
    complete_windows,
    decide,
    evaluate_window,
    format_scope_key,
    item_filter,
    load_rules,
    parse_scope_key,
    transition,
)
from evalwatch.checks.traces import slowest_step, slowest_step_of
from evalwatch.core import AlertStatus
from evalwatch.core.redact import Redactor
from evalwatch.core.telemetry import reads_buckets
from evalwatch.evaluators.metrics import metric_catalogue
from evalwatch.storage.alerts import (
    AggSpec,
    GroupAggregate,
    ReportItem,
    RunRef,
    ScopeTx,
    SeriesSpec,
    advance_states,
    bucket_aggregates,
    get_run_ref,
    lock_scope,
    offending_items,
    report_items,
    rule_states,
    run_aggregates,
)
from evalwatch.storage.metric_series import histogram_window_buckets
from evalwatch.storage.models import Alert, AlertState, utcnow
from evalwatch.storage.traces import trace_steps

if TYPE_CHECKING:
    from evalwatch.settings import Settings

__all__ = [
    "AlertEvent",
    "evaluate_after_report",
    "evaluate_after_run",
    "evaluate_rules",
    "rules_for_settings",
]

log = logging.getLogger(__name__)

# Context keys that belong to delivery bookkeeping and survive a context refresh.
_BOOKKEEPING = ("pending_delivery", "pending_action", "delivery_seq", "actions", "claimed_until")
_REPORT_LOOKBACK = timedelta(days=30)
_MAX_OFFENDING = 5


@dataclass
class AlertEvent:
    """Something that happened to an alert during one evaluation."""

    rule: str
    scope_key: str
    scope: dict[str, str | None]
    action: Literal["open", "update", "resolve"]
    alert_id: int
    severity: str
    status: str
    count: int
    value: float | None
    n: int
    threshold: float
    window_start: datetime | None
    window_end: datetime
    notify: bool
    deliveries: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The event as the JSON-able record runs and flows return (``alerts`` lists)."""
        return {
            "alert_id": self.alert_id,
            "rule": self.rule,
            "action": self.action,
            "severity": self.severity,
            "scope": self.scope_key,
            "value": self.value,
            "threshold": self.threshold,
            "delivery_error": self.delivery_error,
        }

    @property
    def delivery_error(self) -> str | None:
        """Why a notification or action of this event was not sent now (None: all were).

        What was not sent stays queued on the alert and the next evaluation retries it.
        """
        # "cause": the failure a channel skipped in this delivery had earlier (not "not tried").
        return next(
            (str(d.get("cause") or d.get("error")) for d in self.deliveries if not d.get("ok")),
            None,
        )


@dataclass
class _Obs:
    """One judged window of one scope."""

    start: datetime | None
    end: datetime
    key: datetime  # stored as the state's last_window_end
    value: float | None
    n: int
    breached: bool | None
    run_id: int | None = None
    items: list[ReportItem] = field(default_factory=list)
    links: dict[str, Any] = field(default_factory=dict)


def _series(rule: Rule) -> SeriesSpec:
    sel = rule.sel
    return SeriesSpec(
        source=sel.source,
        evaluator=sel.evaluator,
        # A metric series is named in full (gpu.temperature): its prefix is part of the name.
        metric=sel.text if sel.source == "metric" else sel.metric,
        column=sel.field,
        filters=rule.fixed_scope,
        group_by=rule.group_dims,
    )


def _aggspec(rule: Rule) -> AggSpec:
    agg = rule.agg
    return AggSpec(agg.kind, agg.arg, rule.comparison, rule.threshold)


def _scope(rule: Rule, values: Mapping[str, str | None]) -> dict[str, str | None]:
    scope: dict[str, str | None] = dict(rule.fixed_scope)
    for dim in rule.group_dims:
        scope[dim] = values.get(dim)
    return scope


def _min_mark(states: Mapping[str, AlertState]) -> datetime | None:
    marks = [s.last_window_end for s in states.values() if s.last_window_end is not None]
    return min(marks) if marks else None


def _flow_run_url(flow_run_id: str | None) -> str | None:
    if not flow_run_id:
        return None
    try:
        from prefect.settings import PREFECT_UI_URL

        ui = PREFECT_UI_URL.value()
    except Exception:  # no UI configured: the id alone is the link
        return None
    return f"{str(ui).rstrip('/')}/runs/flow-run/{flow_run_id}" if ui else None


def _run_links(run: RunRef) -> dict[str, Any]:
    return {
        "run_id": run.id,
        "run_kind": run.kind,
        "flow_run_id": run.flow_run_id,
        "flow_run_url": _flow_run_url(run.flow_run_id),
    }


# -- reading windows ---------------------------------------------------------------------------


def _window_aggregates(
    engine: Engine, rule: Rule, start: datetime, end: datetime, width: timedelta
) -> list[GroupAggregate]:
    """Per-window aggregates of a SQL source; a histogram percentile is read from its buckets.

    ``engine.ttft_p95`` (or ``engine.ttft_seconds`` with ``p95``) is the percentile of the
    requests in the window, from the histogram buckets of every sample in it, never a
    percentile of per-interval means; its ``n`` is the number of requests.
    """
    q = None
    if rule.sel.source == "metric":
        q = reads_buckets(rule.selector, rule.agg.kind, rule.agg.arg)
    if q is None:
        return bucket_aggregates(engine, _series(rule), _aggspec(rule), start, end, width)
    found = histogram_window_buckets(
        engine, rule.selector, start, end, width, rule.fixed_scope, rule.group_dims
    )
    out = []
    for (idx, scope), hists in found.items():
        n, value = window_quantile(hists, q)
        out.append(GroupAggregate(idx, scope, n, value))
    return out


def _observe_windows(
    engine: Engine,
    rule: Rule,
    states: Mapping[str, AlertState],
    now: datetime,
    max_windows: int,
) -> tuple[dict[str, tuple[dict[str, str | None], list[_Obs]]], datetime | None]:
    width = rule.window_width
    assert width is not None
    wins = complete_windows(
        now,
        width,
        rule.delay_td,
        _min_mark(states),
        lookback=rule.consecutive,
        max_windows=max_windows,
    )
    if not wins:
        return {}, None
    start, end = wins[0][0], wins[-1][1]
    sel = rule.sel
    # scope key -> (scope, window index -> (value, n))
    found: dict[str, tuple[dict[str, str | None], dict[int, tuple[float | None, int]]]] = {}
    if sel.is_report:
        per: dict[str, tuple[dict[str, str | None], dict[int, list[float]]]] = {}
        for item in report_items(engine, sel.source, start - timedelta(microseconds=1), end):
            if item.ts >= end or item.ts < start or not _matches(rule, item):
                continue
            scope = _scope(rule, item.dims)
            idx = int((item.ts - start) // width)
            per.setdefault(format_scope_key(scope), (scope, defaultdict(list)))[1][idx].append(
                item.value
            )
        for key, (scope, buckets) in per.items():
            found[key] = (scope, {})
            for idx, vals in buckets.items():
                outcome = evaluate_window(vals, rule)
                found[key][1][idx] = (outcome.value, outcome.n)
    else:
        for g in _window_aggregates(engine, rule, start, end, width):
            scope = _scope(rule, dict(zip(rule.group_dims, g.scope, strict=True)))
            assert g.bucket is not None
            found.setdefault(format_scope_key(scope), (scope, {}))[1][g.bucket] = (g.value, g.n)
    if rule.agg.kind == "count":
        # An empty window counts 0 for every scope already known, so a traffic drop is seen.
        dims = set(rule.fixed_scope) | set(rule.group_dims)
        for key in states:
            scope = parse_scope_key(key)
            same_shape = set(scope) == dims and all(
                scope.get(d) == v for d, v in rule.fixed_scope.items()
            )
            if key not in found and same_shape:  # scopes of an older scope setting are left be
                found[key] = (scope, {})
    out: dict[str, tuple[dict[str, str | None], list[_Obs]]] = {}
    for key, (scope, by_idx) in found.items():
        obs = []
        for idx, (w_start, w_end) in enumerate(wins):
            if idx in by_idx:
                value, n = by_idx[idx]
            elif rule.agg.kind == "count":
                value, n = 0.0, 0
            else:
                continue
            obs.append(_Obs(w_start, w_end, w_end, value, n, decide(value, n, rule)))
        if obs:
            out[key] = (scope, obs)
    return out, end


def _matches(rule: Rule, item: ReportItem) -> bool:
    return all(item.dims.get(d) == v for d, v in rule.fixed_scope.items())


def _observe_run(
    engine: Engine, rule: Rule, run: RunRef | None, now: datetime
) -> dict[str, tuple[dict[str, str | None], list[_Obs]]]:
    if run is None:
        return {}
    out: dict[str, tuple[dict[str, str | None], list[_Obs]]] = {}
    for g in run_aggregates(engine, _series(rule), _aggspec(rule), run.id):
        scope = _scope(rule, dict(zip(rule.group_dims, g.scope, strict=True)))
        obs = _Obs(
            run.started_at,
            run.finished_at or now,
            run.started_at,
            g.value,
            g.n,
            decide(g.value, g.n, rule),
            run_id=run.id,
            links=_run_links(run),
        )
        out[format_scope_key(scope)] = (scope, [obs])
    return out


def _observe_reports(
    engine: Engine, rule: Rule, states: Mapping[str, AlertState], now: datetime
) -> dict[str, tuple[dict[str, str | None], list[_Obs]]]:
    floor = now - _REPORT_LOOKBACK
    mark = _min_mark(states)
    since = max(mark, floor) if mark is not None and len(states) > 0 else floor
    reports: dict[str, dict[str, list[ReportItem]]] = defaultdict(lambda: defaultdict(list))
    scopes: dict[str, dict[str, str | None]] = {}
    for item in report_items(engine, rule.sel.source, since, now):
        if not _matches(rule, item):
            continue
        scope = _scope(rule, item.dims)
        key = format_scope_key(scope)
        scopes[key] = scope
        reports[key][item.key].append(item)
    out: dict[str, tuple[dict[str, str | None], list[_Obs]]] = {}
    for key, by_report in reports.items():
        obs = []
        for report_key, items in by_report.items():
            outcome = evaluate_window([i.value for i in items], rule)
            first, last = min(i.ts for i in items), max(i.ts for i in items)
            links = {"report": report_key, **_report_links(items[0])}
            obs.append(
                _Obs(
                    first,
                    last,
                    last,
                    outcome.value,
                    outcome.n,
                    outcome.breached,
                    items=items,
                    links=links,
                )
            )
        obs.sort(key=lambda o: o.key)
        if key not in states:
            obs = obs[-rule.consecutive :]  # a first evaluation does not replay old reports
        out[key] = (scopes[key], obs)
    return out


def _report_links(item: ReportItem) -> dict[str, Any]:
    d = item.detail
    links: dict[str, Any] = {}
    for name in ("report_key", "regression_report_id", "calibration_id", "run_id", "flow_run_id"):
        if d.get(name) is not None:
            links[name] = d[name]
    if d.get("flow_run_id"):
        links["flow_run_url"] = _flow_run_url(str(d["flow_run_id"]))
    return links


# -- applying windows --------------------------------------------------------------------------


def _redact_item(item: Mapping[str, Any], red: Redactor) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in item.items():
        out[k] = red.redact(v)[0] if isinstance(v, str) else v
    return out


def _offending(
    tx: ScopeTx, rule: Rule, scope: Mapping[str, str | None], obs: _Obs, red: Redactor
) -> list[dict[str, Any]]:
    flt = item_filter(rule)
    if rule.sel.is_report:
        items = obs.items
        if flt is not None:
            items = [i for i in items if compare(i.value, flt.comparison, flt.bound)]
            items = sorted(items, key=lambda i: i.value, reverse=flt.descending)
        return [_redact_item({**i.detail, "value": i.value}, red) for i in items[:_MAX_OFFENDING]]
    if flt is None:
        return []
    rows = offending_items(
        tx.connection,
        _series(rule),
        flt.comparison,
        flt.bound,
        flt.descending,
        scope,
        start=obs.start if obs.run_id is None else None,
        end=obs.end if obs.run_id is None else None,
        run_id=obs.run_id,
        limit=_MAX_OFFENDING,
    )
    return [_redact_item(r, red) for r in rows]


def _slowest_step(
    tx: ScopeTx, rule: Rule, offending: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """For a latency rule on traced traffic: the step taking most of the offending items' time.

    Each offending item also gets its own ``slowest_step``; untraced traffic gives None.
    """
    if rule.sel.field != "latency_ms" or not offending:
        return None
    ids = [int(i["id"]) for i in offending if i.get("id") is not None]
    traced = trace_steps(tx.connection, ids)
    for item in offending:
        t = traced.get(int(item["id"])) if item.get("id") is not None else None
        if t is not None:
            item["slowest_step"] = slowest_step_of(t.steps, t.latency_ms, t.root_span_id)
    return slowest_step((t.steps, t.latency_ms, t.root_span_id) for t in traced.values())


def _context(
    rule: Rule,
    scope: Mapping[str, str | None],
    obs: _Obs,
    offending: list[dict[str, Any]],
    previous: Mapping[str, Any] | None,
    slowest: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    prev = dict(previous or {})
    history = [
        *prev.get("history", []),
        {"end": obs.end.isoformat(), "value": obs.value, "n": obs.n, "breached": obs.breached},
    ][-10:]
    ctx: dict[str, Any] = {k: prev[k] for k in _BOOKKEEPING if k in prev}
    ctx.update(
        {
            "description": rule.description,
            "selector": rule.selector,
            "aggregation": rule.aggregation,
            "comparison": rule.comparison,
            "threshold": rule.threshold,
            "window": {"kind": rule.window, **_span(obs)},
            "value": obs.value,
            "n": obs.n,
            "scope": dict(scope),
            "offending": offending,
            "links": obs.links,
            "history": history,
        }
    )
    if slowest is not None:
        ctx["slowest_step"] = dict(slowest)
    if "opened_window" in prev:
        ctx["opened_window"] = prev["opened_window"]
    else:
        ctx["opened_window"] = ctx["window"]
    return ctx


def _span(obs: _Obs) -> dict[str, str | None]:
    """The window of an observation as the alert context stores it (ISO-8601 bounds)."""
    return {"start": obs.start.isoformat() if obs.start else None, "end": obs.end.isoformat()}


def _queue(alert: Alert, rule: Rule, event: str, notify: bool, now: datetime) -> None:
    ctx = dict(alert.context or {})
    channels = rule.notification_channels()
    if notify and channels:
        seq = int(ctx.get("delivery_seq", 0)) + 1
        earlier = (ctx.get("pending_delivery") or {}).get("channels", [])
        ctx["delivery_seq"] = seq
        ctx["pending_delivery"] = {
            "event": event,
            "channels": list(dict.fromkeys([*earlier, *channels])),
            "seq": seq,
            "queued_at": now.isoformat(),
        }
    if rule.action is not None and event in rule.action.on:
        ctx["pending_action"] = {"event": event, "queued_at": now.isoformat()}
    alert.context = ctx
    if notify:
        alert.last_notified_at = now


def _apply(
    engine: Engine,
    rule: Rule,
    scope_key: str,
    scope: dict[str, str | None],
    observations: Sequence[_Obs],
    now: datetime,
    red: Redactor,
    run_window: bool,
) -> list[AlertEvent]:
    events: list[AlertEvent] = []
    with lock_scope(engine, rule.name, scope_key, now) as tx:
        st = tx.state
        # Judged under the lock: another worker may have judged some windows meanwhile.
        if run_window:
            todo = [o for o in observations if st.last_window_end != o.key]
        else:
            todo = [
                o for o in observations if st.last_window_end is None or o.key > st.last_window_end
            ]
        if not todo:
            return []
        alert = tx.alert
        rs = RuleState(
            st.consecutive_breaches,
            st.consecutive_clear,
            AlertStatus(alert.status) if alert is not None else None,
            alert.last_notified_at if alert is not None else None,
        )
        for obs in todo:
            step = transition(rs, obs.breached, now, rule)
            rs = step.state
            if step.action == "none":
                continue
            if step.action == "resolve":
                assert alert is not None
                ctx = dict(alert.context or {})
                ctx["resolved_window"] = {**_span(obs), "value": obs.value, "n": obs.n}
                alert = tx.resolve_alert(now, ctx)
            else:
                offending = _offending(tx, rule, scope, obs, red)
                slowest = _slowest_step(tx, rule, offending)
                if step.action == "open":
                    alert = tx.open_alert(
                        rule.severity, now, _context(rule, scope, obs, offending, None, slowest)
                    )
                else:
                    assert alert is not None
                    alert = tx.update_alert(
                        now,
                        _context(rule, scope, obs, offending, alert.context, slowest),
                        rule.severity,
                    )
            _queue(alert, rule, step.action, step.notify, now)
            tx.session.add(alert)
            tx.session.flush()
            assert alert.id is not None
            events.append(
                AlertEvent(
                    rule=rule.name,
                    scope_key=scope_key,
                    scope=scope,
                    action=step.action,
                    alert_id=alert.id,
                    severity=alert.severity,
                    status=alert.status,
                    count=alert.count,
                    value=obs.value,
                    n=obs.n,
                    threshold=rule.threshold,
                    window_start=obs.start,
                    window_end=obs.end,
                    notify=step.notify,
                )
            )
        last_value = next((o.value for o in reversed(todo) if o.value is not None), st.last_value)
        mark = todo[-1].key if run_window else max(o.key for o in todo)
        tx.save_state(rs.consecutive_breaches, rs.consecutive_clear, mark, last_value, now)
    return events


def _evaluate_rule(
    engine: Engine,
    rule: Rule,
    now: datetime,
    run: RunRef | None,
    red: Redactor,
    max_windows: int,
) -> list[AlertEvent]:
    states = rule_states(engine, rule.name)
    range_end: datetime | None = None
    run_window = False
    if rule.sel.is_report and rule.window == "run":
        observed = _observe_reports(engine, rule, states, now)
    elif rule.window == "run":
        observed = _observe_run(engine, rule, run, now)
        run_window = True
    else:
        observed, range_end = _observe_windows(engine, rule, states, now, max_windows)
    events: list[AlertEvent] = []
    # A fixed order, so concurrent workers take the scope locks in the same order.
    for key in sorted(observed):
        scope, obs = observed[key]
        events += _apply(engine, rule, key, scope, obs, now, red, run_window)
    if range_end is not None:
        advance_states(engine, rule.name, range_end, now)
    return events


def evaluate_rules(
    engine: Engine,
    rules: RulesFile,
    now: datetime | None = None,
    run_id: int | None = None,
    kinds: Collection[str] | None = None,
    *,
    deliver: bool = True,
    redactor: Redactor | None = None,
    sleep: Callable[[float], None] = time.sleep,
    max_windows: int = 500,
) -> list[AlertEvent]:
    """Evaluate rules, update their state and alerts, then send what is queued.

    Safe to call from several runs and workers at once and to call again: each window is
    judged once per rule and scope.

    Args:
        engine: The store.
        rules: The rules (see :func:`evalwatch.checks.rules.load_rules`).
        now: Evaluation time (default: now).
        run_id: The evaluation run that just finished: its items form the ``run`` windows of
            score and traffic rules.
        kinds: Evaluate only rules whose selector belongs to these families: ``traffic``,
            ``drift``, ``gate``, ``calibration``, ``run``, ``metrics`` (None: all rules).
        deliver: Send queued notifications and actions now (they stay queued otherwise, and
            go out at the next evaluation that delivers).
        redactor: Masks personal data and secrets in item text and messages.
        sleep: How to wait between delivery attempts.
        max_windows: Most windows judged per rule at once.

    Returns:
        What happened to alerts: opened, updated, resolved (with the delivery records made).

    Examples:
        >>> from evalwatch.storage.db import make_engine, upgrade
        >>> e = make_engine("sqlite://"); _ = upgrade(e)
        >>> evaluate_rules(e, RulesFile(rules=[]))
        []
    """
    now = now or utcnow()
    red = redactor or Redactor()
    run = get_run_ref(engine, run_id) if run_id is not None else None
    if run_id is not None and run is None:
        log.warning("evaluate_rules: no evaluation run %s; its run windows are skipped", run_id)
    events: list[AlertEvent] = []
    for rule in rules.rules:
        if not rule.enabled or (kinds is not None and rule.sel.family not in kinds):
            continue
        events += _evaluate_rule(engine, rule, now, run, red, max_windows)
    if deliver:
        records = deliver_pending(engine, rules, now, redactor=red, sleep=sleep)
        for ev in events:
            ev.deliveries = records.get(ev.alert_id, [])
    return events


def rules_for_settings(settings: Settings, rules_file: Path | str | None = None) -> RulesFile:
    """The rules in force: ``rules_file``, else ``settings.rules_file``, else the defaults.

    Args:
        settings: The caller's settings (``EVALWATCH_RULES_FILE`` is their ``rules_file``).
        rules_file: A file that overrides the settings' (the CLI's ``--rules``).

    Raises:
        evalwatch.checks.rules.RulesError: The file is missing or invalid.
    """
    path = rules_file if rules_file is not None else settings.rules_file
    # Selectors are checked against the metrics the registered evaluators (plug-ins too) declare.
    return load_rules(path or DEFAULT_RULES_PATH, known_metrics=metric_catalogue())


def evaluate_after_run(
    engine: Engine,
    run_id: int | None = None,
    *,
    settings: Settings | None = None,
    rules: RulesFile | None = None,
    now: datetime | None = None,
) -> list[AlertEvent]:
    """The one call at the end of a traffic, drift or gate run (after ``finish_run``).

    Evaluates every rule in force (time windows that completed, this run's ``run`` windows,
    new reports), stores alert changes and delivers notifications and actions.

    Args:
        engine: The store.
        run_id: The run that just finished, if it is an evaluation run.
        settings: The caller's settings: the rules are :func:`rules_for_settings`'s.
        rules: The rules, instead of the settings' (give one of the two).
        now: Evaluation time (default: now).

    Returns:
        What happened to alerts.

    Raises:
        TypeError: Neither ``settings`` nor ``rules`` was given.
    """
    if rules is None:
        if settings is None:
            # No silent fallback to the built-in rules: the user's rules file would be ignored.
            raise TypeError("evaluate_after_run needs settings or rules")
        rules = rules_for_settings(settings)
    return evaluate_rules(engine, rules, now=now, run_id=run_id)


def evaluate_after_report(
    engine: Engine,
    run_id: int | None = None,
    *,
    settings: Settings | None = None,
    rules: RulesFile | None = None,
    now: datetime | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """:func:`evaluate_after_run` for a path that stored a report; never raises.

    Every command and flow that stores a report (drift, gate, canary, calibration, a run's
    summary) calls this, so the rules that watch the report are judged at once. The report
    stands whatever happens here; the caller makes a failure visible (the CLI exits 3, a
    flow run fails) with the one-line reason returned.

    Args:
        engine: The store.
        run_id: The evaluation run that just finished, if any.
        settings: The caller's settings: the rules are :func:`rules_for_settings`'s.
        rules: The rules, instead of the settings' (give one of the two).
        now: Evaluation time (default: now).

    Returns:
        ``(alerts, error)``: :meth:`AlertEvent.summary` of what happened to alerts, and why
        the evaluation failed (None when it did not); the reason holds no URL or token.
    """
    from evalwatch.alerting.delivery import describe_error

    try:
        events = evaluate_after_run(engine, run_id, settings=settings, rules=rules, now=now)
    except Exception as exc:  # reported to the caller, which decides how loudly to fail
        # Debug only: a logged traceback would reach the user's terminal.
        log.debug("alert rules could not be evaluated", exc_info=True)
        return [], describe_error(exc)
    return [e.summary() for e in events], None
