"""Alert delivery end to end: real Prefect webhook blocks, a real HTTP receiver on 127.0.0.1.

The blocks are saved to the session's temporary Prefect server (``prefect_harness``); every
notification travels as HTTP to a server started here, which can be told to fail.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import pytest
from prefect import flow
from sqlalchemy.engine import Engine

from evalwatch.alerting import evaluate_rules
from evalwatch.checks.rules import ActionSpec, ChannelSpec, DeliveryPolicy, Rule, RulesFile
from evalwatch.storage.alerts import get_alert, list_alerts
from evalwatch.storage.repo import (
    create_run,
    insert_interactions,
    interaction_ids_for,
    write_scores,
)

T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
H = timedelta(hours=1)
SECRET = "tok-5f1b9c2e7d"  # lives only in the block's secrets, sent as a header
PII = ("bob@example.com", "4111 1111 1111 1111", "sk-abcdefghijklmnopqrstuv")


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 that records every request and fails on demand."""

    url: str = ""
    requests: list[Received] = field(default_factory=list)
    fail_next: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ok(self, path: str | None = None) -> list[Received]:
        return [r for r in self.requests if r.status == 200 and (path is None or r.path == path)]

    def payloads(self, path: str = "/ops") -> list[dict[str, Any]]:
        """The alert payloads (the ``json`` channel format) that got through on ``path``."""
        return [json.loads(r.json()["body"]) for r in self.ok(path)]


@pytest.fixture(scope="module")
def _server() -> Iterator[Receiver]:
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with rec.lock:
                status = 500 if rec.fail_next > 0 else 200
                rec.fail_next = max(0, rec.fail_next - 1)
                rec.requests.append(Received(self.path, dict(self.headers), body, status))
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rec
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def _saved_blocks(prefect_harness: None, _server: Receiver) -> Receiver:
    """Webhook blocks 'ops-hook' and 'oncall-hook' pointing at the receiver, saved once."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    for name, path in (("ops-hook", "/ops"), ("oncall-hook", "/oncall")):
        CustomWebhookNotificationBlock(
            name=name,
            url=_server.url + path,
            json_data={"subject": "{{subject}}", "body": "{{body}}"},
            headers={"Authorization": "Bearer {{token}}"},
            secrets={"token": SECRET},
        ).save(name, overwrite=True)
    return _server


@pytest.fixture
def blocks(_saved_blocks: Receiver) -> Receiver:
    """The receiver behind the saved blocks, with no requests recorded and not failing."""
    with _saved_blocks.lock:
        _saved_blocks.requests.clear()
        _saved_blocks.fail_next = 0
    return _saved_blocks


def rules_file(*rules: Rule, attempts: int = 3) -> RulesFile:
    return RulesFile(
        channels={
            "ops": ChannelSpec(type="webhook", block="custom-webhook/ops-hook", format="json"),
            "oncall": ChannelSpec(type="webhook", block="oncall-hook", format="text"),
            "ghost": ChannelSpec(type="webhook", block="custom-webhook/never-saved"),
        },
        delivery=DeliveryPolicy(attempts=attempts, backoff_s=0.01, max_backoff_s=0.05),
        rules=list(rules),
    )


def rule(**kw: Any) -> Rule:
    base: dict[str, Any] = {
        "name": "quality",
        "selector": "judge.helpfulness",
        "aggregation": "mean",
        "comparison": "<",
        "threshold": 0.7,
        "window": "1h",
        "severity": "high",
        "channels": ["ops"],
        "cooldown": "0s",
    }
    base.update(kw)
    return Rule.model_validate(base)


def seed(
    engine: Engine,
    items: Sequence[tuple[datetime, str, float, str]],
    key: str = "run",
    app: str = "bot",
) -> int:
    """Interactions (time, metric, value, response) with one score each, in one run."""
    run = create_run(engine, "traffic", run_key=key)
    assert run.id is not None
    rows: list[dict[str, Any]] = [
        {
            "request_id": f"{key}-{i}",
            "ts": ts,
            "app": app,
            "model_name": "m",
            "model_version": "v1",
            "prompt": "q",
            "response": resp,
            "latency_ms": 1.0,
            "input_tokens": 1,
            "output_tokens": 1,
            "cost": 0.0,
            "redactions": 0,
        }
        for i, (ts, _, _, resp) in enumerate(items)
    ]
    insert_interactions(engine, rows)
    ids = interaction_ids_for(engine, [str(r["request_id"]) for r in rows])
    write_scores(
        engine,
        [
            {
                "run_id": run.id,
                "subject_type": "interaction",
                "subject_id": ids[f"{key}-{i}"],
                "evaluator": metric.split(".")[0],
                "evaluator_version": "1",
                "config_hash": "h",
                "metric": metric.split(".")[1],
                "value": value,
                "status": "ok",
            }
            for i, (_, metric, value, _) in enumerate(items)
        ],
    )
    return run.id


def hourly(
    hours: dict[int, float], metric: str = "judge.helpfulness"
) -> list[tuple[datetime, str, float, str]]:
    return [
        (T0 + h * H + timedelta(minutes=m), metric, v, "ok")
        for h, v in hours.items()
        for m in (5, 10, 15)
    ]


# -- payloads, redaction, escalation, any single item -------------------------------------------


def test_critical_alert_is_delivered_redacted_and_escalated(
    blocks: Receiver, sqlite_engine: Engine
) -> None:
    unsafe = f"Sure: mail {PII[0]}, card {PII[1]}, key {PII[2]}"
    items = [(T0, "toxicity.safety", 0.99, "fine answer")] * 60
    items.append((T0, "toxicity.safety", 0.31, unsafe))
    run_id = seed(sqlite_engine, items)
    safety_any = rule(
        name="unsafe",
        selector="toxicity.safety",
        aggregation="any",
        threshold=0.9,
        window="run",
        severity="critical",
        escalation=["oncall"],
    )
    safety_mean = rule(
        name="unsafe-mean",
        selector="toxicity.safety",
        threshold=0.9,
        window="run",
        severity="critical",
    )
    events = evaluate_rules(
        sqlite_engine, rules_file(safety_any, safety_mean), now=T0 + H, run_id=run_id
    )
    # one bad item among 61 fires the any-single-item rule; the mean (0.99) does not
    assert [(e.rule, e.action, e.notify) for e in events] == [("unsafe", "open", True)]
    assert {r.path for r in blocks.ok()} == {"/ops", "/oncall"}  # critical: escalation too
    (payload,) = blocks.payloads("/ops")
    assert payload["event"] == "open" and payload["rule"] == "unsafe"
    assert payload["severity"] == "critical" and payload["status"] == "open"
    assert (payload["value"], payload["n"], payload["threshold"]) == (1.0, 61, 0.9)
    assert payload["links"]["run_id"] == run_id
    (item,) = payload["offending"]
    assert item["request_id"] == "run-60" and item["value"] == pytest.approx(0.31)
    assert "[REDACTED:email]" in item["response"] and "[REDACTED:card]" in item["response"]
    (oncall,) = blocks.ok("/oncall")
    text = oncall.json()
    assert text["subject"].startswith("[CRITICAL] evalwatch alert unsafe opened")
    assert "any(toxicity.safety) < 0.9" in text["body"]
    assert oncall.headers["Authorization"] == f"Bearer {SECRET}"  # the block's own secret
    for req in blocks.requests:
        raw = req.body.decode()
        assert SECRET not in raw and "Bearer" not in raw
        for secret in PII:
            assert secret not in raw
    alert = get_alert(sqlite_engine, events[0].alert_id)
    assert alert is not None and alert.deliveries is not None
    assert [(d["channel"], d["ok"], d["attempts"]) for d in alert.deliveries] == [
        ("ops", True, 1),
        ("oncall", True, 1),
    ]
    assert "pending_delivery" not in (alert.context or {})
    assert events[0].deliveries and all(d["ok"] for d in events[0].deliveries)


# -- retries, channel down, never lost --------------------------------------------------------


def test_failed_delivery_is_retried_with_backoff(blocks: Receiver, sqlite_engine: Engine) -> None:
    seed(sqlite_engine, hourly({0: 0.2}))
    blocks.fail_next = 2
    sleeps: list[float] = []
    (ev,) = evaluate_rules(sqlite_engine, rules_file(rule()), now=T0 + H, sleep=sleeps.append)
    assert [r.status for r in blocks.requests] == [500, 500, 200]
    assert sleeps == pytest.approx([0.01, 0.02])  # exponential back-off
    alert = get_alert(sqlite_engine, ev.alert_id)
    assert alert is not None and alert.deliveries is not None
    (d,) = alert.deliveries
    assert (d["ok"], d["attempts"], d["error"]) == (True, 3, None)


def test_channel_down_keeps_the_alert_pending_until_it_gets_through(
    blocks: Receiver, sqlite_engine: Engine
) -> None:
    seed(sqlite_engine, hourly({0: 0.2}))
    rules = rules_file(rule(channels=["ops", "ghost"]), attempts=2)
    blocks.fail_next = 1000
    (ev,) = evaluate_rules(sqlite_engine, rules, now=T0 + H, sleep=lambda s: None)
    assert ev.action == "open" and len(blocks.requests) == 2
    alert = get_alert(sqlite_engine, ev.alert_id)
    assert alert is not None and alert.deliveries is not None and alert.context is not None
    assert alert.status == "open"
    by_channel = {d["channel"]: d for d in alert.deliveries}
    assert (by_channel["ops"]["ok"], by_channel["ops"]["error"]) == (False, "HTTP 500")
    assert by_channel["ghost"]["ok"] is False and "never-saved" in by_channel["ghost"]["error"]
    assert by_channel["ghost"]["attempts"] == 1  # a missing block is not retried in a loop
    assert "127.0.0.1" not in json.dumps(alert.deliveries)  # no URL in recorded errors
    assert alert.context["pending_delivery"]["channels"] == ["ops", "ghost"]
    # the receiver recovers; the next evaluation (no new data) delivers what was pending
    blocks.fail_next = 0
    assert (
        evaluate_rules(
            sqlite_engine, rules, now=T0 + H + timedelta(minutes=5), sleep=lambda s: None
        )
        == []
    )
    (payload,) = blocks.payloads("/ops")
    assert (payload["alert_id"], payload["event"]) == (ev.alert_id, "open")
    alert = get_alert(sqlite_engine, ev.alert_id)
    assert alert is not None and alert.context is not None and alert.deliveries is not None
    assert alert.context["pending_delivery"]["channels"] == ["ghost"]  # still no such block
    assert [d["ok"] for d in alert.deliveries if d["channel"] == "ops"] == [False, True]
    # once the block exists, the last pending channel is delivered as well
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    CustomWebhookNotificationBlock(name="ghost", url=blocks.url + "/ghost").save(
        "never-saved", overwrite=True
    )
    evaluate_rules(sqlite_engine, rules, now=T0 + H + timedelta(minutes=10))
    assert len(blocks.ok("/ghost")) == 1
    alert = get_alert(sqlite_engine, ev.alert_id)
    assert alert is not None and "pending_delivery" not in (alert.context or {})


def test_a_dead_channel_is_tried_once_per_evaluation(
    blocks: Receiver, sqlite_engine: Engine
) -> None:
    seed(sqlite_engine, hourly({0: 0.2}), key="a", app="bot")
    seed(sqlite_engine, hourly({0: 0.2}), key="b", app="search")
    rules = rules_file(rule(scope={"app": "each"}), attempts=2)
    blocks.fail_next = 1000
    events = evaluate_rules(sqlite_engine, rules, now=T0 + H, sleep=lambda s: None)
    assert len(events) == 2 and len(blocks.requests) == 2  # 2 attempts, not 2 per alert
    records = sorted((d["attempts"], d["error"]) for e in events for d in e.deliveries)
    assert records == [(0, "not tried: failed earlier (HTTP 500)"), (2, "HTTP 500")]
    blocks.fail_next = 0
    evaluate_rules(sqlite_engine, rules, now=T0 + H, sleep=lambda s: None)
    assert sorted(p["scope_key"] for p in blocks.payloads()) == ["app=bot", "app=search"]
    assert all("pending_delivery" not in (a.context or {}) for a in list_alerts(sqlite_engine))


def test_undelivered_notifications_survive_an_evaluation_without_delivery(
    blocks: Receiver, sqlite_engine: Engine
) -> None:
    seed(sqlite_engine, hourly({0: 0.2}))
    rules = rules_file(rule())
    (ev,) = evaluate_rules(sqlite_engine, rules, now=T0 + H, deliver=False)
    assert blocks.requests == []
    alert = get_alert(sqlite_engine, ev.alert_id)
    assert alert is not None and alert.context is not None
    assert alert.context["pending_delivery"]["event"] == "open"
    evaluate_rules(sqlite_engine, rules, now=T0 + H)
    assert [p["event"] for p in blocks.payloads()] == ["open"]
    evaluate_rules(sqlite_engine, rules, now=T0 + H)
    assert len(blocks.payloads()) == 1  # delivered once


# -- dedup, cooldown, consecutive windows, auto-resolve ------------------------------------------


def test_dedup_and_cooldown(blocks: Receiver, sqlite_engine: Engine) -> None:
    seed(sqlite_engine, hourly({h: 0.3 for h in range(5)}))
    rules = rules_file(rule(cooldown="2h"))
    actions = []
    for k in range(1, 6):
        actions += [
            (e.action, e.notify) for e in evaluate_rules(sqlite_engine, rules, now=T0 + k * H)
        ]
    assert actions == [
        ("open", True),
        ("update", False),
        ("update", True),
        ("update", False),
        ("update", True),
    ]
    (alert,) = list_alerts(sqlite_engine)
    assert (alert.status, alert.count) == ("open", 5)
    assert [(p["event"], p["count"], p["alert_id"]) for p in blocks.payloads()] == [
        ("open", 1, alert.id),
        ("update", 3, alert.id),
        ("update", 5, alert.id),
    ]


def test_consecutive_windows_and_auto_resolve(blocks: Receiver, sqlite_engine: Engine) -> None:
    values = {0: 0.2, 1: 0.2, 2: 0.9, 3: 0.2, 4: 0.2, 5: 0.2, 6: 0.9, 7: 0.9}
    seed(sqlite_engine, hourly(values))
    rules = rules_file(rule(consecutive=3, auto_resolve_after=2))
    per_eval = []
    for k in range(1, 9):
        per_eval.append([e.action for e in evaluate_rules(sqlite_engine, rules, now=T0 + k * H)])
    assert per_eval == [[], [], [], [], [], ["open"], [], ["resolve"]]
    payloads = blocks.payloads()
    assert [(p["event"], p["status"]) for p in payloads] == [
        ("open", "open"),
        ("resolve", "resolved"),
    ]
    assert payloads[0]["window"]["end"] == (T0 + 6 * H).isoformat()
    (alert,) = list_alerts(sqlite_engine)
    assert alert.status == "resolved" and alert.resolved_at == T0 + 8 * H


def test_acknowledged_alert_stops_reminders(blocks: Receiver, sqlite_engine: Engine) -> None:
    from evalwatch.storage.alerts import acknowledge_alert

    seed(sqlite_engine, hourly({0: 0.3, 1: 0.3, 2: 0.3}))
    rules = rules_file(rule(cooldown="0s"))
    (ev,) = evaluate_rules(sqlite_engine, rules, now=T0 + H)
    acknowledge_alert(sqlite_engine, ev.alert_id, T0 + H)
    evaluate_rules(sqlite_engine, rules, now=T0 + 3 * H)
    assert [p["event"] for p in blocks.payloads()] == ["open"]
    (alert,) = list_alerts(sqlite_engine)
    assert (alert.status, alert.count) == ("acknowledged", 3)


# -- action: run a Prefect deployment -----------------------------------------------------------


@flow(name="evalwatch-test-rollback")
def rollback_flow(model_version: str = "", alert_id: int = 0) -> str:
    return f"rollback {model_version} for alert {alert_id}"


def _flow_runs(deployment_id: Any) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with get_client(sync_client=True) as client:
        return list(
            client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
            )
        )


def test_rule_action_runs_a_deployment(blocks: Receiver, sqlite_engine: Engine) -> None:
    deployment: Any = rollback_flow.to_deployment(name="alert-rollback")
    deployment_id = deployment.apply()
    seed(sqlite_engine, hourly({0: 0.3, 1: 0.3}))
    action = ActionSpec(
        deployment="evalwatch-test-rollback/alert-rollback",
        parameters={"model_version": "{{model_version}}", "alert_id": "{{alert_id}}"},
    )
    rules = rules_file(rule(scope={"app": "each", "model_version": "each"}, action=action))
    (ev,) = evaluate_rules(sqlite_engine, rules, now=T0 + H)
    runs = _flow_runs(deployment_id)
    assert len(runs) == 1
    assert runs[0].parameters == {"model_version": "v1", "alert_id": ev.alert_id}
    alert = get_alert(sqlite_engine, ev.alert_id)
    assert alert is not None and alert.context is not None
    (record,) = alert.context["actions"]
    assert record["ok"] is True and record["flow_run_id"] == str(runs[0].id)
    assert "pending_action" not in alert.context
    # a retried trigger of the same alert event reuses the flow run (idempotency key)
    from evalwatch.alerting import trigger_action

    again = trigger_action(action, alert, "open")
    assert again["ok"] is True and again["flow_run_id"] == record["flow_run_id"]
    assert len(_flow_runs(deployment_id)) == 1
    # an update is not an 'open' event: no second run
    (update,) = evaluate_rules(sqlite_engine, rules, now=T0 + 2 * H)
    assert update.action == "update"
    assert len(_flow_runs(deployment_id)) == 1


def test_failed_action_is_recorded_and_kept_pending(
    blocks: Receiver, sqlite_engine: Engine
) -> None:
    seed(sqlite_engine, hourly({0: 0.3}))
    rules = rules_file(rule(action=ActionSpec(deployment="no-such-flow/no-such-deployment")))
    (ev,) = evaluate_rules(sqlite_engine, rules, now=T0 + H)
    alert = get_alert(sqlite_engine, ev.alert_id)
    assert alert is not None and alert.context is not None
    (record,) = alert.context["actions"]
    assert record["ok"] is False and record["error"]
    assert alert.context["pending_action"]["event"] == "open"
    assert len(blocks.payloads()) == 1  # the notification went out regardless


def test_evaluation_inside_a_flow_task_delivers_and_acts(
    blocks: Receiver, sqlite_engine: Engine
) -> None:
    from prefect import task

    deployment: Any = rollback_flow.to_deployment(name="alert-rollback-in-flow")
    deployment_id = deployment.apply()
    seed(sqlite_engine, hourly({0: 0.3}))
    action = ActionSpec(
        deployment="evalwatch-test-rollback/alert-rollback-in-flow",
        parameters={"alert_id": "{{alert_id}}"},
    )
    rules = rules_file(rule(action=action))
    url = str(sqlite_engine.url)

    @task
    def alerts_task() -> list[str]:
        from evalwatch.storage.db import make_engine

        eng = make_engine(url)
        try:
            return [e.action for e in evaluate_rules(eng, rules, now=T0 + H)]
        finally:
            eng.dispose()

    @flow(name="evalwatch-test-alerting-flow")
    def alerting_flow() -> list[str]:
        return alerts_task()

    assert alerting_flow() == ["open"]
    assert [p["event"] for p in blocks.payloads()] == ["open"]
    (run,) = _flow_runs(deployment_id)
    (alert,) = list_alerts(sqlite_engine)
    assert run.parameters == {"alert_id": alert.id}


def test_concurrent_deliverers_send_a_notification_once(
    blocks: Receiver, sqlite_engine: Engine
) -> None:
    from evalwatch.alerting import deliver_pending
    from evalwatch.storage.db import make_engine

    seed(sqlite_engine, hourly({0: 0.3}))
    rules = rules_file(rule(channels=["ops", "oncall"]))
    evaluate_rules(sqlite_engine, rules, now=T0 + H, deliver=False)
    url = str(sqlite_engine.url)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def worker() -> None:
        eng = make_engine(url)
        try:
            barrier.wait()
            deliver_pending(eng, rules, T0 + H)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            eng.dispose()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert sorted(r.path for r in blocks.requests) == ["/oncall", "/ops"]
    (alert,) = list_alerts(sqlite_engine)
    assert alert.deliveries is not None and len(alert.deliveries) == 2


def test_long_floats_and_pii_in_a_payload_still_make_valid_json(
    blocks: Receiver, sqlite_engine: Engine
) -> None:
    # 0.4111111111111111 passes the card checksum: redacting the serialized JSON (instead of
    # the strings in it) turned the payload into invalid JSON and the evaluation crashed.
    luhn_float = 0.4111111111111111
    unsafe = f"mail {PII[0]} key {PII[2]}"
    items = [(T0, "toxicity.safety", 0.99, "fine")] * 5 + [
        (T0, "toxicity.safety", luhn_float, unsafe)
    ]
    run_id = seed(sqlite_engine, items, key="floats")
    any_rule = rule(
        name="unsafe-float",
        selector="toxicity.safety",
        aggregation="any",
        threshold=0.9,
        window="run",
    )
    events = evaluate_rules(sqlite_engine, rules_file(any_rule), now=T0 + H, run_id=run_id)
    assert [(e.rule, e.action) for e in events] == [("unsafe-float", "open")]
    (payload,) = blocks.payloads("/ops")
    (item,) = payload["offending"]
    assert item["value"] == luhn_float  # the number itself, not "[REDACTED:card]"
    assert "[REDACTED:email]" in item["response"] and "[REDACTED:secret]" in item["response"]
    raw = b"".join(r.body for r in blocks.requests).decode()
    assert all(secret not in raw for secret in PII)


def test_redact_payload_walks_the_structure() -> None:
    from evalwatch.alerting.delivery import redact_payload
    from evalwatch.core.redact import Redactor

    payload = {
        "effect_size": 0.1234567890123456,
        "nan": float("nan"),
        "when": T0,
        "items": [{"text": f"to {PII[0]}", "n": 3, "ok": True}, (PII[2], None)],
    }
    out = redact_payload(payload, Redactor())
    assert out == {
        "effect_size": 0.1234567890123456,
        "nan": None,
        "when": T0.isoformat(),
        "items": [{"text": "to [REDACTED:email]", "n": 3, "ok": True}, ["[REDACTED:secret]", None]],
    }
    assert json.loads(json.dumps(out, allow_nan=False)) == out


# -- no Prefect API configured: bounded, queued, said why ----------------------------------------


@pytest.fixture
def no_prefect_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A user with no ``PREFECT_API_URL``; the temporary server's database path is returned."""
    import sys

    # The suite's session harness runs a temporary server in this process; a user's CLI
    # process has none, so hide it (evalwatch would rightly reuse a running one).
    server_module = sys.modules.get("prefect.server.api.server")
    if server_module is not None:
        monkeypatch.setattr(server_module.SubprocessASGIServer, "_instances", {})
    from prefect.settings import (
        PREFECT_API_DATABASE_CONNECTION_URL,
        PREFECT_API_URL,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        temporary_settings,
    )

    db = tmp_path / "prefect-home" / "prefect.db"
    db.parent.mkdir()
    with temporary_settings(
        updates={
            PREFECT_API_DATABASE_CONNECTION_URL: f"sqlite+aiosqlite:///{db}",
            # Far too short for a server to start on any machine: the wait must end anyway.
            PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: 1,
        },
        restore_defaults={PREFECT_API_URL},
    ):
        yield db


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def test_without_an_api_or_a_local_block_store_nothing_is_started_and_all_stays_queued(
    no_prefect_api: Path, sqlite_engine: Engine
) -> None:
    seed(sqlite_engine, hourly({0: 0.2}))
    before = _children()
    t0 = time.monotonic()
    (ev,) = evaluate_rules(sqlite_engine, rules_file(rule()), now=T0 + H)
    assert time.monotonic() - t0 < 10  # no server start, no back-off
    assert _children() <= before
    assert ev.delivery_error is not None and "PREFECT_API_URL is not set" in ev.delivery_error
    assert ev.summary()["delivery_error"] == ev.delivery_error
    alert = get_alert(sqlite_engine, ev.alert_id)
    assert alert is not None and alert.context is not None
    assert alert.context["pending_delivery"]["channels"] == ["ops"]
    assert "claimed_until" not in alert.context  # released, so the next evaluation retries
    (record,) = alert.deliveries or []
    assert record["ok"] is False and record["attempts"] == 0


def test_a_temporary_server_that_does_not_start_in_time_leaves_all_queued(
    no_prefect_api: Path, sqlite_engine: Engine
) -> None:
    no_prefect_api.touch()  # a local block store exists: a temporary server is worth a try
    seed(sqlite_engine, hourly({0: 0.2}))
    before = _children()
    t0 = time.monotonic()
    (ev,) = evaluate_rules(sqlite_engine, rules_file(rule()), now=T0 + H)
    # 1 s start-up deadline, then at most 5 s to stop the server: not Prefect's own loop.
    assert time.monotonic() - t0 < 20
    assert _children() <= before  # the server it started is gone
    assert ev.delivery_error is not None and "did not start within 1s" in ev.delivery_error
    alert = get_alert(sqlite_engine, ev.alert_id)
    assert alert is not None and alert.context is not None
    assert alert.context["pending_delivery"]["channels"] == ["ops"]


def test_an_api_url_in_force_is_used_as_it_is(prefect_harness: None) -> None:
    from prefect.settings import PREFECT_API_URL

    from evalwatch.alerting.prefect_api import prefect_api

    with prefect_api() as api:
        assert api.url == PREFECT_API_URL.value() and not api.temporary


# -- knowing there is no API without importing Prefect ---------------------------------------

_PROBE = """
import json, sys
from evalwatch.alerting.prefect_api import prefect_api
with prefect_api() as api:
    print(json.dumps({"url": api.url, "reason": api.reason, "prefect": "prefect" in sys.modules}))
"""


def _probe(home: Path, cwd: Path, **env: str) -> dict[str, Any]:
    import os
    import subprocess
    import sys

    clean = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE],
        env={**clean, "PREFECT_HOME": str(home), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_no_api_is_known_without_importing_prefect_when_nothing_can_point_at_one(
    tmp_path: Path,
) -> None:
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    got = _probe(home, cwd)
    assert got["url"] is None and "no notification block is saved locally" in got["reason"]
    assert got["prefect"] is False  # the 2 s import was not paid
    # Settings files that move nothing (a logging level) change nothing.
    (home / "profiles.toml").write_text(
        'active = "ephemeral"\n[profiles.ephemeral]\nPREFECT_LOGGING_LEVEL = "DEBUG"\n'
    )
    (cwd / ".env").write_text("PREFECT_LOGGING_LEVEL=DEBUG\nOTHER=1\n")
    (cwd / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert _probe(home, cwd)["prefect"] is False


@pytest.mark.parametrize(
    "where",
    ["env-url", "env-db", "profiles", "dotenv", "prefect-toml", "pyproject", "foreign-db"],
)
def test_any_setting_that_could_point_at_an_api_or_blocks_asks_prefect(
    tmp_path: Path, where: str
) -> None:
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    env: dict[str, str] = {}
    if where == "env-url":
        # Nothing listens there: Prefect's answer is still "this API", not "none".
        env["PREFECT_API_URL"] = "http://127.0.0.1:9/api"
    elif where == "env-db":
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = f"sqlite+aiosqlite:///{tmp_path}/none.db"
    elif where == "profiles":
        (home / "profiles.toml").write_text(
            'active = "mine"\n[profiles.mine]\nPREFECT_API_DATABASE_CONNECTION_URL = "x"\n'
        )
    elif where == "dotenv":
        (cwd / ".env").write_text("PREFECT_SERVER_DATABASE_CONNECTION_URL=sqlite:///x.db\n")
    elif where == "prefect-toml":
        (cwd / "prefect.toml").write_text('[server.ephemeral]\nenabled = false\n')
    elif where == "pyproject":
        (cwd / "pyproject.toml").write_text('[tool.prefect]\napi.url = "http://127.0.0.1:9/api"\n')
    else:
        (home / "prefect.db").write_bytes(b"not a database")
        # Unreadable as a Prefect database: a temporary server is worth a try, and fails fast.
        env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "1"
    got = _probe(home, cwd, **env)
    assert got["prefect"] is True
    if where == "env-url":
        assert got["url"] == "http://127.0.0.1:9/api"
    if where == "pyproject":
        assert got["url"] == "http://127.0.0.1:9/api"


def test_a_local_database_counts_only_when_it_holds_a_saved_block(
    prefect_harness: None, tmp_path: Path
) -> None:
    import sqlite3

    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL

    from evalwatch.alerting.prefect_api import _holds_saved_objects, _sqlite_file

    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    assert _holds_saved_objects(empty)  # not a Prefect database: cannot tell, so try
    CustomWebhookNotificationBlock(name="saved-probe", url="http://127.0.0.1:9/x").save(
        "saved-probe", overwrite=True
    )
    db = _sqlite_file(PREFECT_API_DATABASE_CONNECTION_URL.value())
    assert db is not None and db.exists()
    assert _holds_saved_objects(db)
    copy = tmp_path / "copy.db"
    with sqlite3.connect(db) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    with sqlite3.connect(copy) as conn:
        conn.execute("DELETE FROM block_document")
        conn.execute("DELETE FROM deployment")
    assert not _holds_saved_objects(copy)  # Prefect's own schema, nothing saved in it
