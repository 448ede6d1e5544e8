"""Model performance per version (issue #16 section 2): traffic and engine series, perf rules.

Real stores (SQLite file and PostgreSQL), metric series written by the telemetry store code,
the overview rendered and read back for its numbers.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from evalwatch.alerting import evaluate_rules
from evalwatch.checks.rules import Rule, RulesFile, check_rules_data
from evalwatch.core.telemetry import MetricPoint, SeriesKind
from evalwatch.ingest.metric_store import store
from evalwatch.reporting.overview import build_tables, overview_html, overview_markdown
from evalwatch.reporting.performance import infra_rows, perf_rows
from evalwatch.storage.alerts import AggSpec, SeriesSpec, bucket_aggregates
from evalwatch.storage.models import Alert
from evalwatch.storage.overview import load_overview
from evalwatch.storage.performance import (
    engine_windows,
    infra_samples,
    load_perf_frame,
    model_load_series,
)
from evalwatch.storage.repo import insert_interactions

START = datetime(2026, 11, 1, tzinfo=UTC)
H = timedelta(hours=1)

# v1: 20 interactions with latencies 100..2000 ms; four carry an error marker, three of which
# count (a message, true, an OTel span error; ``false`` is no error).
V1_META: dict[int, dict[str, Any]] = {
    0: {"error": "upstream timeout"},
    1: {"error": False},
    2: {"otel": {"trace_id": "ab", "error": "boom"}},
    3: {"error": True},
}


def _row(i: int, version: str, model: str, latency: float, meta: dict[str, Any] | None) -> dict:
    return {
        "request_id": f"{version}-{i}",
        "ts": START + timedelta(minutes=2 * i),
        "app": "chat",
        "model_name": model,
        "model_version": version,
        "prompt": "p",
        "response": "r",
        "latency_ms": latency,
        "input_tokens": 30,
        "output_tokens": 50,
        "cost": 0.002,
        "metadata": meta,
    }


def _seed_traffic(engine: Engine) -> None:
    rows = [_row(i, "v1", "llama-8b", 100.0 * (i + 1), V1_META.get(i)) for i in range(20)]
    # v2 logs its own time to first token: 100, 110, ..., 190 ms.
    rows += [_row(i, "v2", "llama-70b", 1000.0, {"ttft_ms": 100 + 10 * i}) for i in range(10)]
    insert_interactions(engine, rows)


def _pt(name: str, kind: SeriesKind, ts: datetime, value: float | None, **kw: Any) -> MetricPoint:
    return MetricPoint(name, "vllm", name, kind, kw.pop("unit", ""), ts, value, **kw)


def _seed_series(engine: Engine) -> None:
    le = [0.1, 0.5, math.inf]
    pts = [
        # Generation counter: 0 -> 3600 -> 10800 tokens an hour apart: 1 then 2 tokens/s.
        *(
            _pt(
                "engine.generation_tokens",
                SeriesKind.counter,
                START + k * H,
                raw,
                host="h1",
                model="llama-8b",
            )
            for k, raw in enumerate((0.0, 3600.0, 10800.0))
        ),
        # TTFT histogram: nothing at the first reading, ten observations in (0.1, 0.5] later.
        _pt(
            "engine.ttft_seconds",
            SeriesKind.histogram,
            START,
            None,
            host="h1",
            model="llama-8b",
            buckets={"le": le, "counts": [0, 0, 0], "sum": 0, "count": 0},
        ),
        _pt(
            "engine.ttft_seconds",
            SeriesKind.histogram,
            START + 2 * H,
            None,
            host="h1",
            model="llama-8b",
            buckets={"le": le, "counts": [0, 10, 10], "sum": 3, "count": 10},
        ),
        _pt(
            "engine.model_load_seconds", SeriesKind.gauge, START, 12.5, host="h1", model="llama-8b"
        ),
        _pt(
            "engine.model_load_seconds",
            SeriesKind.gauge,
            START + 3 * H,
            8.0,
            host="h1",
            model="llama-8b",
        ),
    ]
    # Infrastructure of h1 GPU 0: one reading in each half of the two-day window.
    for ts, util, used, temp, frag in (
        (START + H, 40.0, 20.0, 60.0, 0.1),
        (START + 25 * H, 80.0, 60.0, 70.0, 0.3),
    ):
        gpu = {"host": "h1", "gpu": "0"}
        pts += [
            _pt("gpu.utilization", SeriesKind.gauge, ts, util, **gpu),
            _pt("gpu.memory_used_bytes", SeriesKind.gauge, ts, used * 2**30, **gpu),
            _pt("gpu.memory_free_bytes", SeriesKind.gauge, ts, (80 - used) * 2**30, **gpu),
            _pt("gpu.temperature", SeriesKind.gauge, ts, temp, **gpu),
            _pt("memory.fragmentation", SeriesKind.gauge, ts, frag, **gpu),
        ]
    store(engine, pts)


def test_perf_rows_from_traffic_and_engine_series(engine: Engine) -> None:
    _seed_traffic(engine)
    _seed_series(engine)
    end = START + 2 * timedelta(days=1)
    frame = load_perf_frame(engine, START, end)
    assert frame.loc[frame["model_version"] == "v1", "error"].sum() == 3
    engines = engine_windows(engine, START, end)
    assert set(engines) == {"llama-8b"}
    rows = {r.model_version: r for r in perf_rows(frame, engines)}
    v1, v2 = rows["v1"], rows["v2"]
    assert (v1.n, v1.errors, v1.error_rate) == (20, 3, pytest.approx(0.15))
    # numpy's linear percentile of 100..2000 step 100.
    assert v1.latency_p50_ms == pytest.approx(1050.0)
    assert v1.latency_p95_ms == pytest.approx(1905.0)
    assert v1.latency_p99_ms == pytest.approx(1981.0)
    expected_tps = sum(50_000.0 / (100.0 * (i + 1)) for i in range(20)) / 20
    assert v1.tokens_per_s == pytest.approx(expected_tps)
    # No TTFT in v1's traffic: the engine histogram of its served model, interpolated.
    assert v1.ttft_source == "engine"
    assert v1.ttft_p50_ms == pytest.approx(300.0) and v1.ttft_p95_ms == pytest.approx(480.0)
    assert v1.engine_tokens_per_s == pytest.approx(1.5)
    assert v1.model_load_s == pytest.approx(8.0)
    assert v1.cost_total == pytest.approx(0.04)
    # v2 carries its own TTFT; its model has no engine series.
    assert v2.ttft_source == "traffic" and v2.ttft_p50_ms == pytest.approx(145.0)
    assert v2.errors == 0 and v2.engine_tokens_per_s is None
    loads = model_load_series(engine, START, end)
    assert loads["value"].tolist() == [12.5, 8.0]


def test_infrastructure_rows_latest_and_trend(engine: Engine) -> None:
    _seed_series(engine)
    end = START + timedelta(days=2)
    (row,) = infra_rows(infra_samples(engine, START, end), START, end)
    assert (row.host, row.gpu) == ("h1", "0")
    assert row.latest["gpu.utilization"] == 80.0
    assert row.first_half["gpu.utilization"] == 40.0
    # Used share derived from the bytes (no exporter stored it): 60 / 80 GiB.
    assert row.latest["gpu.memory_used_share"] == pytest.approx(0.75)
    assert row.first_half["gpu.memory_used_share"] == pytest.approx(0.25)
    assert row.latest["gpu.temperature"] == 70.0
    assert row.latest["memory.fragmentation"] == pytest.approx(0.3)


def test_overview_shows_performance_infrastructure_and_active_alerts(engine: Engine) -> None:
    _seed_traffic(engine)
    _seed_series(engine)
    from evalwatch.storage.db import session_scope

    with session_scope(engine) as s:
        s.add(
            Alert(
                rule="latency-p95-high",
                scope_key="app=chat,model_version=v1",
                severity="medium",
                status="open",
                count=3,
                opened_at=START + H,
                last_seen_at=START + 3 * H,
                context={},
                deliveries=[],
            )
        )
    data = load_overview(engine, START, START + timedelta(days=2))
    t = build_tables(data)
    perf = {r["model version"]: r for r in t.performance}
    assert perf["v1"]["error rate"] == 0.15 and perf["v1"]["TTFT from"] == "engine"
    assert perf["v1"]["latency p95 ms"] == 1905.0 and perf["v1"]["model load s"] == 8.0
    (infra,) = t.infrastructure
    assert infra["GPU util % (latest)"] == 80.0 and infra["GPU util % trend"] == "40 ↑ 80"
    (alert,) = t.active_alerts
    assert alert["rule"] == "latency-p95-high" and alert["windows"] == 3
    page = overview_html(data)
    assert "Model performance per version" in page and "1905" in page
    assert "Infrastructure" in page and "GPU utilisation" in page
    assert "Active alerts (1)" in page and "app=chat,model_version=v1" in page
    md = overview_markdown(data)
    assert "## Model performance per version" in md and "| chat | v2 |" in md


def _perf_rule(**kw: Any) -> Rule:
    base: dict[str, Any] = {
        "name": "perf",
        "selector": "perf.latency_ms",
        "aggregation": "p95",
        "comparison": ">",
        "threshold": 1500,
        "window": "1h",
        "scope": {"app": "each", "model_version": "each"},
        "severity": "medium",
    }
    base.update(kw)
    return Rule.model_validate(base)


def test_perf_rules_fire_on_the_window_figures(engine: Engine) -> None:
    _seed_traffic(engine)
    now = START + H + timedelta(minutes=1)  # the first hour is complete
    rules = RulesFile(
        rules=[
            _perf_rule(),
            _perf_rule(
                name="errors", selector="perf.error_rate", aggregation="mean", threshold=0.1
            ),
            _perf_rule(
                name="slow-tokens",
                selector="perf.tokens_per_s",
                aggregation="mean",
                comparison="<",
                threshold=40,
            ),
        ]
    )
    assert check_rules_data(rules, known_metrics=[]) == []
    events = evaluate_rules(engine, rules, now=now, deliver=False)
    fired = {(e.rule, e.scope["model_version"]): e for e in events if e.action == "open"}
    # v1's p95 latency (1905 ms) and error rate (3 of 20) breach; v2 (1000 ms, no errors)
    # does not. Tokens/s: v2 runs at 50 / s, v1 averages above 40 too: nothing fires.
    assert set(fired) == {("perf", "v1"), ("errors", "v1")}
    assert fired[("perf", "v1")].value == pytest.approx(1905.0)
    assert fired[("errors", "v1")].value == pytest.approx(0.15)
    assert fired[("errors", "v1")].n == 20
    # The window's TTFT as stored in traffic, aggregated in SQL on both backends.
    (g,) = bucket_aggregates(
        engine,
        SeriesSpec("perf", metric="ttft_ms", group_by=("model_version",)),
        AggSpec("max"),
        START,
        START + H,
        H,
    )
    assert g.scope == ("v2",) and g.value == pytest.approx(190.0) and g.n == 10


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ("perf.latency_p95", "use selector perf.latency_ms with aggregation p95"),
        ("perf.nonsense", "known: perf.latency_ms, perf.tokens_per_s"),
        ("perf.ttft", "use selector perf.ttft_ms"),
    ],
)
def test_unknown_perf_names_are_rejected_with_a_hint(selector: str, message: str) -> None:
    rf = RulesFile(rules=[_perf_rule(selector=selector)])
    (problem,) = check_rules_data(rf)
    assert problem.startswith("rule 'perf': selector: unknown performance figure")
    assert message in problem
