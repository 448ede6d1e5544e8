"""Alert evaluation on the real store (SQLite file and PostgreSQL): values, state, lifecycle, CLI.

Notifications are not sent here (``deliver=False``); tests/test_delivery.py sends them through
Prefect blocks to a real HTTP receiver.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from evalwatch.alerting import evaluate_rules
from evalwatch.checks.rules import Rule, RulesFile, aggregate, load_rules, parse_aggregation
from evalwatch.storage.alerts import (
    AggSpec,
    AlertLifecycleError,
    SeriesSpec,
    acknowledge_alert,
    bucket_aggregates,
    get_alert,
    list_alerts,
    resolve_alert,
    rule_states,
    run_aggregates,
)
from evalwatch.storage.db import make_engine, session_scope
from evalwatch.storage.models import (
    AlertState,
    DriftReportRow,
    EvalRun,
    JudgeCalibration,
    RegressionReport,
    RunStatus,
)
from evalwatch.storage.repo import (
    create_run,
    finish_run,
    insert_interactions,
    interaction_ids_for,
    write_scores,
)

T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
H = timedelta(hours=1)


# -- seeding -----------------------------------------------------------------------------------


def add_interactions(engine: Engine, rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    full = []
    for r in rows:
        full.append(
            {
                "request_id": r["request_id"],
                "ts": r["ts"],
                "app": r.get("app", "bot"),
                "model_name": "m",
                "model_version": r.get("model_version", "v1"),
                "prompt": r.get("prompt", "a question"),
                "response": r.get("response", "an answer"),
                "latency_ms": r.get("latency_ms", 100.0),
                "input_tokens": 10,
                "output_tokens": 20,
                "cost": 0.001,
                "redactions": 0,
            }
        )
    insert_interactions(engine, full)
    return interaction_ids_for(engine, [r["request_id"] for r in rows])


def add_scores(
    engine: Engine, run_id: int, rows: Sequence[tuple[int, str, str, float | None, str]]
) -> None:
    write_scores(
        engine,
        [
            {
                "run_id": run_id,
                "subject_type": "interaction",
                "subject_id": sid,
                "evaluator": ev,
                "evaluator_version": "1",
                "config_hash": "h",
                "metric": metric,
                "value": value,
                "status": status,
                "reason": None if status == "ok" else "model crashed",
            }
            for sid, ev, metric, value, status in rows
        ],
    )


def scored_traffic(
    engine: Engine,
    hours: dict[int, Sequence[float]],
    metric: str = "judge.helpfulness",
    app: str = "bot",
    prefix: str = "r",
) -> int:
    """Interactions at each hour offset from T0 with the given metric values; returns run id."""
    run = create_run(engine, "traffic", run_key=f"run-{prefix}-{app}-{metric}")
    assert run.id is not None
    rows = []
    values = {}
    for h, vals in hours.items():
        for i, v in enumerate(vals):
            rid = f"{prefix}-{app}-{h}-{i}"
            rows.append(
                {"request_id": rid, "ts": T0 + h * H + timedelta(minutes=1 + i % 50), "app": app}
            )
            values[rid] = v
    ids = add_interactions(engine, rows)
    ev, m = metric.split(".")
    add_scores(engine, run.id, [(ids[r], ev, m, v, "ok") for r, v in values.items()])
    return run.id


def rules_of(*rules: Rule) -> RulesFile:
    return RulesFile(rules=list(rules))


def quality_rule(**kw: Any) -> Rule:
    base: dict[str, Any] = {
        "name": "quality",
        "selector": "judge.helpfulness",
        "aggregation": "mean",
        "comparison": "<",
        "threshold": 0.7,
        "window": "1h",
        "scope": {"app": "each"},
        "severity": "high",
    }
    base.update(kw)
    return Rule.model_validate(base)


def states(engine: Engine, rule: str) -> dict[str, AlertState]:
    return rule_states(engine, rule)


# -- values ------------------------------------------------------------------------------------


AGGS = [
    "mean",
    "sum",
    "min",
    "max",
    "count",
    "any",
    "p50",
    "p95",
    "p99",
    "share_below:0.5",
    "share_above:0.8",
]


def test_sql_aggregates_match_the_pure_functions(engine: Engine) -> None:
    rng = np.random.default_rng(7)
    expected_values: dict[tuple[int, str, str], list[float]] = defaultdict(list)
    rows = []
    for h in range(3):
        for app in ("bot", "search"):
            for mv in ("v1", "v2"):
                for i in range(int(rng.integers(3, 25))):
                    rid = f"{h}-{app}-{mv}-{i}"
                    lat = float(rng.gamma(2.0, 400.0))
                    rows.append(
                        {
                            "request_id": rid,
                            "ts": T0 + h * H + timedelta(seconds=60 * i),
                            "app": app,
                            "model_version": mv,
                            "latency_ms": lat,
                        }
                    )
                    expected_values[(h, app, mv)].append(lat)
    add_interactions(engine, rows)
    series = SeriesSpec("traffic", column="latency_ms", group_by=("app", "model_version"))
    for agg_text in AGGS:
        agg = parse_aggregation(agg_text)
        got = bucket_aggregates(
            engine, series, AggSpec(agg.kind, agg.arg, ">", 900.0), T0, T0 + 3 * H, H
        )
        assert len(got) == len(expected_values), agg_text
        for g in got:
            assert g.bucket is not None
            vals = expected_values[(g.bucket, str(g.scope[0]), str(g.scope[1]))]
            assert g.n == len(vals)
            want = aggregate(vals, agg, ">", 900.0)
            assert g.value == pytest.approx(want, rel=1e-9), (agg_text, g)
    # a fixed filter and no grouping
    only = SeriesSpec("traffic", column="latency_ms", filters={"app": "search"})
    got = bucket_aggregates(engine, only, AggSpec("max"), T0, T0 + 3 * H, 3 * H)
    assert len(got) == 1 and got[0].scope == ()
    search = [v for (_, a, _), vs in expected_values.items() if a == "search" for v in vs]
    assert got[0].value == pytest.approx(max(search)) and got[0].n == len(search)


def test_run_aggregates_cover_only_the_run(engine: Engine) -> None:
    run_a = scored_traffic(engine, {0: [0.9, 0.8, 0.2]}, prefix="a")
    run_b = scored_traffic(engine, {0: [0.1, 0.1]}, prefix="b")
    series = SeriesSpec("score", evaluator="judge", metric="helpfulness")
    (a,) = run_aggregates(engine, series, AggSpec("mean"), run_a)
    assert a.n == 3 and a.value == pytest.approx((0.9 + 0.8 + 0.2) / 3)
    (b,) = run_aggregates(engine, series, AggSpec("count"), run_b)
    assert b.n == 2
    lat = run_aggregates(
        engine, SeriesSpec("traffic", column="latency_ms"), AggSpec("count"), run_a
    )
    assert lat[0].n == 3
    assert run_aggregates(engine, series, AggSpec("mean"), 999_999) == []


# -- state across runs and workers --------------------------------------------------------------


def test_state_persists_across_separate_evaluations(db_url: str) -> None:
    seed = make_engine(db_url)
    scored_traffic(
        seed, {0: [0.5] * 5, 1: [0.5] * 5, 2: [0.6] * 5, 3: [0.4] * 5, 4: [0.9] * 5, 5: [0.95] * 5}
    )
    seed.dispose()
    rules = rules_of(quality_rule(consecutive=3, auto_resolve_after=2))
    expected = [[], [], ["open"], ["update"], [], ["resolve"]]
    alert_id = None
    for k, want in enumerate(expected, start=1):
        worker = make_engine(db_url)  # each evaluation is a separate run / worker
        events = evaluate_rules(worker, rules, now=T0 + k * H + timedelta(minutes=5), deliver=False)
        assert [e.action for e in events] == want, k
        st = states(worker, "quality")["app=bot"]
        assert st.last_window_end == T0 + k * H
        if k <= 4:
            assert (st.consecutive_breaches, st.consecutive_clear) == (k, 0)
        if events:
            alert_id = alert_id or events[0].alert_id
            assert events[0].alert_id == alert_id  # the same alert all along
        worker.dispose()
    check = make_engine(db_url)
    (alert,) = list_alerts(check)
    assert (alert.id, alert.status, alert.count, alert.severity) == (
        alert_id,
        "resolved",
        2,
        "high",
    )
    assert alert.context is not None
    assert alert.context["value"] == pytest.approx(0.4)
    assert alert.context["resolved_window"]["value"] == pytest.approx(0.95)
    assert [h["value"] for h in alert.context["history"]] == pytest.approx([0.6, 0.4])
    check.dispose()


def test_each_window_is_judged_once_and_missed_windows_are_caught_up(engine: Engine) -> None:
    scored_traffic(engine, {h: [0.3] * 3 for h in range(10)})
    rules = rules_of(quality_rule(consecutive=1))
    first = evaluate_rules(engine, rules, now=T0 + 6 * H, deliver=False)
    assert [e.action for e in first] == ["open"]  # first evaluation looks back 1 window
    assert (
        evaluate_rules(engine, rules, now=T0 + 6 * H + timedelta(minutes=30), deliver=False) == []
    )
    later = evaluate_rules(engine, rules, now=T0 + 9 * H + timedelta(minutes=1), deliver=False)
    assert [(e.action, e.window_end) for e in later] == [
        ("update", T0 + 7 * H),
        ("update", T0 + 8 * H),
        ("update", T0 + 9 * H),
    ]
    (alert,) = list_alerts(engine)
    assert alert.count == 4


def test_delay_holds_a_window_back(engine: Engine) -> None:
    scored_traffic(engine, {0: [0.1] * 3})
    rules = rules_of(quality_rule(delay="30m"))
    assert evaluate_rules(engine, rules, now=T0 + H + timedelta(minutes=10), deliver=False) == []
    events = evaluate_rules(engine, rules, now=T0 + H + timedelta(minutes=31), deliver=False)
    assert [e.action for e in events] == ["open"]


def test_concurrent_workers_keep_one_open_alert(db_url: str) -> None:
    seed = make_engine(db_url)
    scored_traffic(seed, {h: [0.95, 0.2, 0.99] for h in range(6)}, metric="toxicity.safety")
    seed.dispose()
    rule = Rule(
        name="unsafe",
        selector="toxicity.safety",
        aggregation="any",
        comparison="<",
        threshold=0.9,
        window="1h",
        scope={"app": "each"},
        severity="critical",
        cooldown="0s",
    )
    rules = rules_of(rule)
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        eng = make_engine(db_url)
        try:
            barrier.wait()
            for k in range(1, 7):
                evaluate_rules(eng, rules, now=T0 + k * H + timedelta(minutes=2), deliver=False)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            eng.dispose()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    check = make_engine(db_url)
    alerts = list_alerts(check)
    assert len(alerts) == 1
    # six breaching windows, each judged exactly once: one open and five updates
    assert (alerts[0].status, alerts[0].count) == ("open", 6)
    st = states(check, "unsafe")["app=bot"]
    assert st.consecutive_breaches == 6 and st.last_window_end == T0 + 6 * H
    check.dispose()


def test_one_alert_per_scope(engine: Engine) -> None:
    scored_traffic(engine, {0: [0.2] * 3}, app="bot")
    scored_traffic(engine, {0: [0.3] * 3}, app="search")
    scored_traffic(engine, {0: [0.9] * 3}, app="fine")
    events = evaluate_rules(engine, rules_of(quality_rule()), now=T0 + H, deliver=False)
    assert sorted((e.scope_key, e.action) for e in events) == [
        ("app=bot", "open"),
        ("app=search", "open"),
    ]
    assert {a.scope_key for a in list_alerts(engine, status="open")} == {"app=bot", "app=search"}


# -- lifecycle ---------------------------------------------------------------------------------


def test_acknowledge_and_resolve(engine: Engine) -> None:
    scored_traffic(engine, {h: [0.2] * 3 for h in range(6)})
    rules = rules_of(quality_rule(consecutive=2, cooldown="0s"))
    assert evaluate_rules(engine, rules, now=T0 + H, deliver=False) == []
    (opened,) = evaluate_rules(engine, rules, now=T0 + 2 * H, deliver=False)
    assert (opened.action, opened.notify) == ("open", True)
    acked = acknowledge_alert(engine, opened.alert_id, T0 + 2 * H)
    assert (acked.status, acked.acknowledged_at) == ("acknowledged", T0 + 2 * H)
    acknowledge_alert(engine, opened.alert_id, T0 + 2 * H)  # idempotent
    (update,) = evaluate_rules(engine, rules, now=T0 + 3 * H, deliver=False)
    assert (update.action, update.notify, update.status, update.count) == (
        "update",
        False,
        "acknowledged",
        2,
    )
    resolved = resolve_alert(engine, opened.alert_id, T0 + 3 * H)
    assert (resolved.status, resolved.resolved_at) == ("resolved", T0 + 3 * H)
    assert resolve_alert(engine, opened.alert_id, T0 + 4 * H).resolved_at == T0 + 3 * H
    with pytest.raises(AlertLifecycleError):
        acknowledge_alert(engine, opened.alert_id, T0 + 4 * H)
    with pytest.raises(KeyError):
        resolve_alert(engine, 424242, T0)
    # resolving by hand starts over: two more breaching windows open a new alert
    assert evaluate_rules(engine, rules, now=T0 + 4 * H, deliver=False) == []
    (again,) = evaluate_rules(engine, rules, now=T0 + 5 * H, deliver=False)
    assert again.action == "open" and again.alert_id != opened.alert_id
    assert [a.status for a in list_alerts(engine)] == ["open", "resolved"]


def test_count_rule_sees_empty_windows(engine: Engine) -> None:
    add_interactions(
        engine, [{"request_id": f"v{i}", "ts": T0 + timedelta(minutes=i)} for i in range(5)]
    )
    rule = Rule(
        name="traffic-drop",
        selector="volume",
        aggregation="count",
        comparison="<",
        threshold=3,
        window="1h",
        scope={"app": "each"},
        severity="warning",
    )
    assert evaluate_rules(engine, rules_of(rule), now=T0 + H, deliver=False) == []
    (ev,) = evaluate_rules(engine, rules_of(rule), now=T0 + 2 * H, deliver=False)
    assert (ev.action, ev.value, ev.n, ev.scope_key) == ("open", 0.0, 0, "app=bot")


def test_offending_items_are_redacted_in_the_alert(engine: Engine) -> None:
    run = create_run(engine, "traffic", run_key="pii-run")
    assert run.id is not None
    ids = add_interactions(
        engine,
        [
            {"request_id": "ok1", "ts": T0, "response": "fine"},
            {
                "request_id": "bad",
                "ts": T0,
                "prompt": "call me",
                "response": "mail bob@example.com or card 4111 1111 1111 1111, "
                "key sk-abcdefghijklmnopqrstuv",
            },
        ],
    )
    add_scores(
        engine,
        run.id,
        [
            (ids["ok1"], "toxicity", "safety", 0.99, "ok"),
            (ids["bad"], "toxicity", "safety", 0.2, "ok"),
        ],
    )
    rule = Rule(
        name="unsafe",
        selector="toxicity.safety",
        aggregation="any",
        comparison="<",
        threshold=0.9,
        window="run",
        severity="critical",
    )
    (ev,) = evaluate_rules(engine, rules_of(rule), now=T0 + H, run_id=run.id, deliver=False)
    alert = get_alert(engine, ev.alert_id)
    assert alert is not None and alert.context is not None
    (item,) = alert.context["offending"]
    assert item["request_id"] == "bad" and item["value"] == pytest.approx(0.2)
    text = str(alert.context)
    for secret in ("bob@example.com", "4111 1111 1111 1111", "sk-abcdefghijklmnopqrstuv"):
        assert secret not in text
    assert "[REDACTED:email]" in item["response"] and "[REDACTED:card]" in item["response"]
    assert alert.context["links"]["run_id"] == run.id
    # the same run judged again changes nothing
    assert (
        evaluate_rules(engine, rules_of(rule), now=T0 + 2 * H, run_id=run.id, deliver=False) == []
    )


def test_error_rate_rule(engine: Engine) -> None:
    run = create_run(engine, "traffic", run_key="err-run")
    assert run.id is not None
    ids = add_interactions(engine, [{"request_id": f"e{i}", "ts": T0} for i in range(4)])
    add_scores(
        engine,
        run.id,
        [
            (ids["e0"], "toxicity", "safety", 0.99, "ok"),
            (ids["e1"], "toxicity", "safety", None, "error"),
            (ids["e2"], "judge", "helpfulness", None, "error"),
            (ids["e3"], "judge", "helpfulness", None, "skipped"),
        ],
    )
    rule = Rule(
        name="errors",
        selector="evaluators.error_rate",
        aggregation="mean",
        comparison=">",
        threshold=0.5,
        window="run",
        severity="warning",
    )
    (ev,) = evaluate_rules(engine, rules_of(rule), run_id=run.id, now=T0 + H, deliver=False)
    assert ev.value == pytest.approx(2 / 3) and ev.n == 3  # skipped is not an error
    alert = get_alert(engine, ev.alert_id)
    assert alert is not None and alert.context is not None
    assert {(i["evaluator"], i["reason"]) for i in alert.context["offending"]} == {
        ("toxicity", "model crashed"),
        ("judge", "model crashed"),
    }


# -- reports: drift, anomaly, gate, kappa, run cost --------------------------------------------


def _drift(
    engine: Engine,
    key: str,
    at: datetime,
    verdicts: list[str],
    app: str = "bot",
    family: str = "numeric",
) -> None:
    with session_scope(engine) as s:
        for i, v in enumerate(verdicts):
            s.add(
                DriftReportRow(
                    report_key=key,
                    created_at=at,
                    scope={"app": app, "model_version": "v1"},
                    test="ks" if family != "anomaly" else "anomaly_mad",
                    feature=f"f{i}",
                    family=family,
                    verdict=v,
                    effect_size=0.4,
                    p_adjusted=0.001,
                )
            )


def test_drift_and_anomaly_reports(engine: Engine) -> None:
    rules = load_rules().model_copy(update={"channels": {}})
    drift = rules.rule("drift-found").model_copy(update={"channels": []})
    anomaly = drift.model_copy(update={"name": "anomaly-found", "selector": "anomaly.verdict"})
    rf = rules_of(drift, anomaly)
    _drift(engine, "rep1", T0, ["no_drift", "drift", "insufficient_data"])
    _drift(engine, "rep1b", T0, ["no_drift"], app="other")
    _drift(engine, "anom1", T0, ["anomaly"], family="anomaly")
    events = evaluate_rules(engine, rf, now=T0 + H, deliver=False)
    assert sorted((e.rule, e.scope_key, e.action) for e in events) == [
        ("anomaly-found", "app=bot,model_version=v1", "open"),
        ("drift-found", "app=bot,model_version=v1", "open"),
    ]
    drift_alert = get_alert(engine, next(e.alert_id for e in events if e.rule == "drift-found"))
    assert drift_alert is not None and drift_alert.context is not None
    assert [i["feature"] for i in drift_alert.context["offending"]] == ["f1"]
    assert drift_alert.context["links"]["report_key"] == "rep1"
    assert evaluate_rules(engine, rf, now=T0 + 2 * H, deliver=False) == []  # nothing new
    _drift(engine, "rep2", T0 + 2 * H, ["no_drift", "no_drift"])
    (ev,) = evaluate_rules(engine, rf, now=T0 + 3 * H, deliver=False)
    assert (ev.rule, ev.action) == ("drift-found", "resolve")


def test_gate_kappa_and_run_cost(engine: Engine) -> None:
    earlier = datetime.now(UTC) - timedelta(minutes=10)  # run.cost uses the real finish time
    with session_scope(engine) as s:
        s.add(RegressionReport(kind="gate", created_at=earlier, verdict="regression", exit_code=1))
        s.add(
            RegressionReport(kind="canary", created_at=earlier, verdict="inconclusive", exit_code=0)
        )
        s.add(
            JudgeCalibration(
                created_at=earlier,
                judge_model="j",
                rubric="helpfulness",
                rubric_version="1",
                n=50,
                kappa=0.41,
            )
        )
        s.add(
            JudgeCalibration(
                created_at=earlier,
                judge_model="j",
                rubric="safety",
                rubric_version="1",
                n=50,
                kappa=0.82,
            )
        )
    run = create_run(engine, "dataset", run_key="costly")
    assert run.id is not None
    finish_run(engine, run.id, RunStatus.completed, summary={"cost_usd": 12.5})
    with session_scope(engine) as s:
        r = s.get(EvalRun, run.id)
        assert r is not None
        finished = r.finished_at
    assert finished is not None
    defaults = {r.name: r.model_copy(update={"channels": []}) for r in load_rules().rules}
    cost = Rule(
        name="run-cost",
        selector="run.cost",
        aggregation="max",
        comparison=">",
        threshold=10,
        window="run",
        severity="medium",
    )
    rf = rules_of(defaults["gate-failed"], defaults["judge-kappa-low"], cost)
    events = evaluate_rules(engine, rf, now=finished + H, deliver=False)
    assert sorted((e.rule, e.scope_key, e.action, e.value) for e in events) == [
        ("gate-failed", "kind=gate", "open", 1.0),
        ("judge-kappa-low", "rubric=helpfulness", "open", 1.0),
        ("run-cost", "all", "open", 12.5),
    ]
    assert evaluate_rules(engine, rf, now=finished + 2 * H, deliver=False) == []
    # a passing gate resolves the gate alert
    with session_scope(engine) as s:
        s.add(
            RegressionReport(kind="gate", created_at=finished + 2 * H, verdict="pass", exit_code=0)
        )
    (ev,) = evaluate_rules(engine, rf, now=finished + 3 * H, kinds={"gate"}, deliver=False)
    assert (ev.rule, ev.action) == ("gate-failed", "resolve")


def test_kinds_filter(engine: Engine) -> None:
    scored_traffic(engine, {0: [0.1] * 3})
    rules = rules_of(quality_rule())
    assert evaluate_rules(engine, rules, now=T0 + H, kinds={"drift"}, deliver=False) == []
    assert len(evaluate_rules(engine, rules, now=T0 + H, kinds={"traffic"}, deliver=False)) == 1


# -- CLI ---------------------------------------------------------------------------------------


@pytest.fixture
def cli() -> Iterator[typer.Typer]:
    from evalwatch import cli as cli_module
    from evalwatch.commands import alerts as alerts_cmd
    from evalwatch.commands import rules as rules_cmd

    app = cli_module.app
    names = {g.name for g in app.registered_groups}
    added = []
    for name, module in (("alerts", alerts_cmd), ("rules", rules_cmd)):
        if name not in names:  # until the CLI lists these modules itself
            module.register(app)
            added.append(app.registered_groups[-1])
    yield app
    for g in added:
        app.registered_groups.remove(g)


def test_cli_alerts_list_ack_resolve(db_url: str, cli: typer.Typer) -> None:
    engine = make_engine(db_url)
    scored_traffic(engine, {0: [0.1] * 3}, app="bot")
    scored_traffic(engine, {0: [0.2] * 3}, app="search")
    evaluate_rules(engine, rules_of(quality_rule()), now=T0 + H, deliver=False)
    ids = {a.scope_key: a.id for a in list_alerts(engine)}
    engine.dispose()
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(cli, ["--db", db_url, *args])

    def listed(*extra: str) -> dict[str, str]:
        res = run("alerts", "list", "--json", *extra)
        assert res.exit_code == 0, res.output
        rows = [json.loads(line) for line in res.output.splitlines() if line.strip()]
        assert all(r["rule"] == "quality" for r in rows)
        return {r["scope_key"]: r["status"] for r in rows}

    res = run("alerts", "list")
    assert res.exit_code == 0 and "2 alert(s)" in res.output, res.output
    assert listed() == {"app=bot": "open", "app=search": "open"}
    res = run("alerts", "ack", str(ids["app=bot"]))
    assert res.exit_code == 0 and "acknowledged" in res.output
    assert listed("--status", "acknowledged") == {"app=bot": "acknowledged"}
    res = run("alerts", "resolve", str(ids["app=search"]))
    assert res.exit_code == 0 and "resolved" in res.output
    assert listed("--status", "open") == {}
    assert listed() == {"app=bot": "acknowledged", "app=search": "resolved"}
    assert run("alerts", "ack", str(ids["app=search"])).exit_code == 2  # resolved
    assert run("alerts", "ack", "9999").exit_code == 2
    assert run("alerts", "resolve", "9999").exit_code == 2
    assert run("alerts", "list", "--status", "bogus").exit_code == 2


def test_cli_alerts_evaluate(db_url: str, cli: typer.Typer, tmp_path: Path) -> None:
    engine = make_engine(db_url)
    add_interactions(engine, [{"request_id": "x", "ts": datetime.now(UTC) - H}])  # last full hour
    engine.dispose()
    path = tmp_path / "r.yaml"
    path.write_text(
        "rules:\n  - {name: busy, selector: volume, aggregation: count, comparison: '>=',\n"
        "     threshold: 1, window: 1h, consecutive: 1, severity: info}\n"
    )
    res = CliRunner().invoke(
        cli, ["--db", db_url, "alerts", "evaluate", "--rules", str(path), "--no-deliver"]
    )
    assert res.exit_code == 0, res.output
    assert "open" in res.output and "busy" in res.output
    bad = CliRunner().invoke(
        cli, ["--db", db_url, "alerts", "evaluate", "--rules", str(tmp_path / "missing.yaml")]
    )
    assert bad.exit_code == 2


def test_cli_rules_check(cli: typer.Typer, tmp_path: Path) -> None:
    from evalwatch.checks.rules import DEFAULT_RULES_PATH

    runner = CliRunner()
    ok = runner.invoke(cli, ["rules", "check", str(DEFAULT_RULES_PATH)])
    assert ok.exit_code == 0 and "OK" in ok.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "channels: {ops: {type: webhook, block: custom-webhook/x}}\n"
        "rules:\n"
        "  - {name: a, selector: toxicity.nope, comparison: '<', threshold: 1, channels: [ops]}\n"
        "  - {name: b, selector: latency_ms, aggregation: median, comparison: '>',"
        " threshold: 1, channels: [pager]}\n"
    )
    res = runner.invoke(cli, ["rules", "check", str(bad)])
    assert res.exit_code == 2
    out = res.output
    assert "rule 'a': selector: unknown metric 'toxicity.nope'" in out
    assert "rule 'b': aggregation: unknown aggregation 'median'" in out
    assert runner.invoke(cli, ["rules", "check", str(tmp_path / "nope.yaml")]).exit_code == 2
    mine = tmp_path / "mine.yaml"
    mine.write_text("rules:\n  - {name: m, selector: mine.score, comparison: '<', threshold: 1}\n")
    assert runner.invoke(cli, ["rules", "check", str(mine)]).exit_code == 2
    assert (
        runner.invoke(cli, ["rules", "check", str(mine), "--metric", "mine.score"]).exit_code == 0
    )


def test_a_failed_evaluation_is_reported_not_raised() -> None:
    from evalwatch.alerting import evaluate_after_report

    unmigrated = make_engine("sqlite://")  # no tables: the evaluation cannot be carried out
    alerts, error = evaluate_after_report(unmigrated, rules=rules_of(quality_rule()))
    assert alerts == [] and error is not None and error.startswith("OperationalError")


def test_the_rules_in_force_come_from_the_callers_settings_not_the_environment(
    sqlite_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from evalwatch.alerting import evaluate_after_report, rules_for_settings
    from evalwatch.settings import Settings

    broken = tmp_path / "env.yaml"  # what the environment names: evaluating it would fail
    broken.write_text("rules:\n  - {name: r, selector: nope, comparison: '<', threshold: 1}\n")
    monkeypatch.setenv("EVALWATCH_RULES_FILE", str(broken))
    mine = tmp_path / "mine.yaml"
    mine.write_text(
        "rules:\n  - {name: busy, selector: volume, aggregation: count,\n"
        "     comparison: '>=', threshold: 1, window: 1h}\n"
    )
    settings = Settings(rules_file=mine)
    assert [r.name for r in rules_for_settings(settings).rules] == ["busy"]
    override = tmp_path / "cli.yaml"  # the CLI's --rules wins over the settings' file
    override.write_text(mine.read_text().replace("busy", "other"))
    assert [r.name for r in rules_for_settings(settings, override).rules] == ["other"]
    assert evaluate_after_report(sqlite_engine, settings=settings) == ([], None)
    # Neither settings nor rules: refused (reported), never the built-in rules in silence.
    alerts, error = evaluate_after_report(sqlite_engine)
    assert alerts == [] and error is not None and error.startswith("TypeError")


def test_a_failed_evaluation_fails_the_flow_run(
    prefect_harness: None, sqlite_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect import flow

    from evalwatch.flows._tasks import evaluate_alert_rules
    from evalwatch.settings import reset_settings

    broken = tmp_path / "rules.yaml"
    broken.write_text("rules:\n  - {name: r, selector: nope, comparison: '<', threshold: 1}\n")
    monkeypatch.setenv("EVALWATCH_RULES_FILE", str(broken))
    reset_settings()
    url = str(sqlite_engine.url)

    @flow
    def after_a_run() -> list[dict[str, Any]]:
        return evaluate_alert_rules.with_options(retry_delay_seconds=0)(None, url)

    state = after_a_run(return_state=True)
    assert state.is_failed(), state
    with pytest.raises(RuntimeError, match="alert rules could not be evaluated: RulesError"):
        state.result()


def test_cli_alerts_evaluate_exits_3_with_one_line_when_it_cannot_evaluate(
    cli: typer.Typer, tmp_path: Path
) -> None:
    import sqlalchemy as sa

    from evalwatch.storage.db import upgrade

    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = make_engine(url)
    upgrade(engine)
    with engine.begin() as conn:  # a damaged store: the rule state table is gone
        conn.execute(sa.text("DROP TABLE alert_state"))
    engine.dispose()
    path = tmp_path / "r.yaml"
    path.write_text(
        "rules:\n  - {name: busy, selector: volume, aggregation: count, comparison: '>=',\n"
        "     threshold: 1, window: 1h}\n"
    )
    res = CliRunner().invoke(cli, ["--db", url, "alerts", "evaluate", "--rules", str(path)])
    assert res.exit_code == 3, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    (line,) = [ln for ln in res.output.splitlines() if ln.strip()]
    assert line.startswith("error: alert rules could not be evaluated: OperationalError")
