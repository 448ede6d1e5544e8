"""Multi-span OTLP traces (real OpenTelemetry SDK spans) become one interaction per trace."""

from __future__ import annotations

import base64
import json
import os
import random
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from google.protobuf import json_format
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags
from sqlalchemy.engine import Engine

from evalwatch.alerting import evaluate_rules
from evalwatch.alerting.delivery import build_message
from evalwatch.checks.rules import Rule, RulesFile
from evalwatch.checks.traces import kind_shares, mean_kind_shares, slowest_step
from evalwatch.core.redact import Redactor
from evalwatch.ingest.pipeline import ingest
from evalwatch.ingest.readers import SourceReader
from evalwatch.ingest.traces import merge_trace_rows, span_kind
from evalwatch.reporting.run_report import render_run_html, run_markdown
from evalwatch.settings import Settings
from evalwatch.storage.alerts import list_alerts
from evalwatch.storage.db import make_engine
from evalwatch.storage.models import Alert
from evalwatch.storage.repo import create_run, write_scores
from evalwatch.storage.traces import run_traces, trace_steps
from evalwatch.testing import FakeJudgeServer

MS = 1_000_000
T0 = 1_789_999_200 * 10**9  # 2026-09-21T14:00:00Z, on an hour boundary (alert windows)
QUESTION = "Where is order 4711?"
DOCS = ["Order 4711 shipped on Monday via DHL.", "DHL deliveries take two to three days."]
FINAL = "Order 4711 shipped Monday with DHL and should arrive by Thursday."
SETTINGS = Settings(hash_key="trace-key")


def _provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "support-agent"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _agent_trace(
    tracer: trace.Tracer, t0: int, *, tool_ms: int = 300, question: str = QUESTION
) -> None:
    """invoke_agent -> retrieval -> chat -> execute_tool (failing) -> chat, as SDKs emit them."""
    root = tracer.start_span(
        "invoke_agent support",
        start_time=t0,
        attributes={
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": "support",
            "gen_ai.conversation.id": "conv-1",
            "user.id": "user-1",
            "gen_ai.input.messages": json.dumps(
                [{"role": "user", "parts": [{"type": "text", "content": question}]}]
            ),
        },
    )
    ctx = trace.set_span_in_context(root)
    span = tracer.start_span(
        "retrieve orders",
        context=ctx,
        start_time=t0 + 10 * MS,
        attributes={
            "gen_ai.operation.name": "retrieval",
            "db.system.name": "qdrant",
            "gen_ai.retrieval.documents": json.dumps(
                [{"id": f"d{i}", "score": 0.9 - i / 10, "content": d} for i, d in enumerate(DOCS)]
            ),
        },
    )
    span.end(end_time=t0 + 60 * MS)
    span = tracer.start_span(
        "chat acme-chat",
        context=ctx,
        start_time=t0 + 70 * MS,
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "acme-chat",
            "gen_ai.response.model": "acme-chat-2026-09",
            "gen_ai.usage.input_tokens": 120,
            "gen_ai.usage.output_tokens": 15,
            "gen_ai.prompt": question,
            "gen_ai.completion": "Let me look the order up.",
        },
    )
    span.end(end_time=t0 + 170 * MS)
    span = tracer.start_span(
        "execute_tool lookup_order",
        context=ctx,
        start_time=t0 + 180 * MS,
        attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup_order"},
    )
    span.set_status(Status(StatusCode.ERROR, "carrier API timeout"))
    span.end(end_time=t0 + (180 + tool_ms) * MS)
    after = t0 + (190 + tool_ms) * MS
    span = tracer.start_span(
        "chat acme-chat",
        context=ctx,
        start_time=after,
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "acme-chat",
            "gen_ai.response.model": "acme-chat-2026-09",
            "gen_ai.usage.input_tokens": 200,
            "gen_ai.usage.output_tokens": 30,
            "gen_ai.output.messages": json.dumps(
                [{"role": "assistant", "parts": [{"type": "text", "content": FINAL}]}]
            ),
        },
    )
    span.add_event("gen_ai.user.message", {"content": question})
    span.end(end_time=after + 200 * MS)
    root.end(end_time=after + 210 * MS)


def _spans(*, traces: int = 1, tool_ms: int = 300) -> list[ReadableSpan]:
    provider, exporter = _provider()
    tracer = provider.get_tracer("evalwatch-trace-test")
    for i in range(traces):
        _agent_trace(tracer, T0 + i * 60 * 10**9, tool_ms=tool_ms, question=f"{QUESTION} #{i}")
    provider.shutdown()
    return list(exporter.get_finished_spans())


def _doc(spans: list[ReadableSpan]) -> str:
    return json_format.MessageToJson(encode_spans(spans))


def _hex(doc: str) -> str:
    """The OTLP/JSON encoding (the collector's file exporter) writes ids as hex."""

    def fix(obj: Any) -> Any:
        if isinstance(obj, dict):
            return {
                k: base64.b64decode(v).hex()
                if k in ("traceId", "spanId", "parentSpanId") and v
                else fix(v)
                for k, v in obj.items()
            }
        if isinstance(obj, list):
            return [fix(v) for v in obj]
        return obj

    return json.dumps(fix(json.loads(doc)))


def _rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        q = sa.text("SELECT * FROM interactions ORDER BY ts")
        return [dict(r) for r in conn.execute(q).mappings()]


def _meta(row: dict[str, Any]) -> dict[str, Any]:
    meta = row["metadata"]
    return json.loads(meta) if isinstance(meta, str) else meta


def test_agent_trace_becomes_one_interaction(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    path.write_text(_doc(_spans()))
    result = ingest(engine, [path], settings=SETTINGS)
    assert (result.rows, result.ingested, result.quarantined) == (1, 1, 0)
    [row] = _rows(engine)
    assert row["app"] == "support-agent"
    assert row["prompt"] == QUESTION + " #0"
    assert row["response"] == FINAL
    assert row["context"] == "\n\n".join(DOCS)
    assert row["latency_ms"] == pytest.approx(700.0)  # the root span's duration
    assert (row["input_tokens"], row["output_tokens"]) == (320, 45)  # both chat calls
    assert (row["model_name"], row["model_version"]) == ("acme-chat", "acme-chat-2026-09")
    assert row["request_id"].startswith("otel-trace-")
    tr = _meta(row)["trace"]
    assert [(s["kind"], s["name"]) for s in tr["steps"]] == [
        ("agent", "invoke_agent support"),
        ("retrieval", "retrieve orders"),
        ("llm", "chat acme-chat"),
        ("tool", "execute_tool lookup_order"),
        ("llm", "chat acme-chat"),
    ]
    assert [s["latency_ms"] for s in tr["steps"]] == pytest.approx([700, 50, 100, 300, 200])
    assert tr["steps"][2]["input_tokens"] == 120 and tr["steps"][3]["tool"] == "lookup_order"
    assert tr["errors"] == [
        {
            "span_id": tr["steps"][3]["span_id"],
            "kind": "tool",
            "name": "execute_tool lookup_order",
            "error": "carrier API timeout",
        }
    ]
    assert tr["partial"] is False and tr["missing_parents"] == []
    assert len(tr["trace_id"]) == 32 and tr["root_span_id"] == tr["steps"][0]["span_id"]


def test_out_of_order_spans_and_hex_lines_give_the_same_interaction(tmp_path: Path) -> None:
    spans = _spans()
    ordered = tmp_path / "ordered.json"
    ordered.write_text(_doc(spans))
    shuffled = list(spans)
    random.Random(7).shuffle(shuffled)
    # One export request per line, hex ids, the root first and its children after it.
    lines = tmp_path / "lines.jsonl"
    lines.write_text("".join(_hex(_doc([s])) + "\n" for s in [spans[-1], *shuffled]))
    a = [r.value for r in SourceReader(ordered)]
    b = [r.value for r in SourceReader(lines)]
    assert len(a) == len(b) == 1
    assert a == b


def test_orphan_spans_attach_to_the_root_and_a_rootless_trace_is_partial(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    provider, exporter = _provider()
    tracer = provider.get_tracer("t")
    root = tracer.start_span(
        "invoke_agent support", start_time=T0, attributes={"gen_ai.operation.name": "invoke_agent"}
    )
    lost = NonRecordingSpan(
        SpanContext(
            root.get_span_context().trace_id, 0xABCDEF, False, TraceFlags(TraceFlags.SAMPLED)
        )
    )
    chat = tracer.start_span(
        "chat acme-chat",
        context=trace.set_span_in_context(lost),  # its parent was never exported
        start_time=T0 + 5 * MS,
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "acme-chat",
            "gen_ai.prompt": "hi",
            "gen_ai.completion": "hello",
        },
    )
    chat.end(end_time=T0 + 45 * MS)
    root.end(end_time=T0 + 50 * MS)
    # A second trace whose root is missing altogether.
    other = NonRecordingSpan(SpanContext(0x1234, 0x99, False, TraceFlags(TraceFlags.SAMPLED)))
    child = tracer.start_span(
        "chat acme-chat",
        context=trace.set_span_in_context(other),
        start_time=T0 + 10 * MS,
        attributes={
            "gen_ai.request.model": "acme-chat",
            "gen_ai.prompt": "q",
            "gen_ai.completion": "a",
        },
    )
    child.end(end_time=T0 + 30 * MS)
    provider.shutdown()
    path = tmp_path / "orphans.json"
    path.write_text(_doc(list(exporter.get_finished_spans())))
    result = ingest(sqlite_engine, [path], settings=SETTINGS)
    assert (result.ingested, result.quarantined) == (2, 0)
    rows = {_meta(r)["trace"]["trace_id"]: r for r in _rows(sqlite_engine)}
    attached = rows[f"{root.get_span_context().trace_id:032x}"]
    tr = _meta(attached)["trace"]
    assert [s["kind"] for s in tr["steps"]] == ["agent", "llm"]
    assert tr["steps"][1]["orphan"] is True
    assert tr["missing_parents"] == [f"{0xABCDEF:016x}"]
    assert attached["latency_ms"] == pytest.approx(50.0)
    assert (attached["prompt"], attached["response"]) == ("hi", "hello")
    rootless = _meta(rows[f"{0x1234:032x}"])["trace"]
    assert rootless["root_span_id"] is None and rootless["partial"] is True
    assert rows[f"{0x1234:032x}"]["latency_ms"] == pytest.approx(20.0)  # the spans' envelope


def _split(spans: list[ReadableSpan]) -> tuple[list[ReadableSpan], list[ReadableSpan]]:
    """What a batching exporter sends first (the early children) and last (the rest, root)."""
    by_end = sorted(spans, key=lambda s: s.end_time or 0)
    return by_end[:3], by_end[3:]


def test_a_trace_split_across_two_files_is_completed_not_duplicated(
    engine: Engine, tmp_path: Path
) -> None:
    first, rest = _split(_spans())
    part1 = tmp_path / "part1.json"
    part1.write_text(_doc(first))
    part2 = tmp_path / "part2.jsonl"
    part2.write_text(_hex(_doc(rest)) + "\n")
    r1 = ingest(engine, [part1], settings=SETTINGS)
    assert (r1.ingested, r1.updated, r1.quarantined) == (1, 0, 0)
    [partial] = _rows(engine)
    tr = _meta(partial)["trace"]
    assert tr["partial"] is True and tr["root_span_id"] is None
    assert partial["response"] == "Let me look the order up."  # the only answer so far
    assert partial["context"] == "\n\n".join(DOCS)
    r2 = ingest(engine, [part2], settings=SETTINGS)
    assert (r2.ingested, r2.updated, r2.duplicates, r2.quarantined) == (0, 1, 0, 0)
    [done] = _rows(engine)
    assert done["id"] == partial["id"] and done["request_id"] == partial["request_id"]
    tr = _meta(done)["trace"]
    assert tr["partial"] is False and len(tr["steps"]) == 5
    assert done["response"] == FINAL and done["prompt"] == QUESTION + " #0"
    assert done["context"] == "\n\n".join(DOCS)
    assert done["latency_ms"] == pytest.approx(700.0)
    assert (done["input_tokens"], done["output_tokens"]) == (320, 45)
    assert done["ts"] == partial["ts"] or done["ts"] < partial["ts"]  # the root starts first
    # The same file again adds no span: a duplicate, nothing rewritten.
    r3 = ingest(engine, [part2], settings=SETTINGS)
    assert (r3.ingested, r3.updated, r3.duplicates) == (0, 0, 1)
    assert len(_rows(engine)) == 1


def test_both_parts_in_one_ingest_and_stale_scores_dropped(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    first, rest = _split(_spans())
    part1, part2 = tmp_path / "a.json", tmp_path / "b.json"
    part1.write_text(_doc(first))
    part2.write_text(_doc(rest))
    r = ingest(sqlite_engine, [part1, part2], settings=SETTINGS)
    # No "request_id: not unique": the second part completes the first.
    assert (r.ingested, r.updated, r.quarantined) == (1, 1, 0), r.reasons
    [row] = _rows(sqlite_engine)
    assert row["response"] == FINAL
    # A score about a partial trace judged another answer: completing the trace drops it.
    with sqlite_engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM interactions"))
    ingest(sqlite_engine, [part1], settings=SETTINGS)
    [partial] = _rows(sqlite_engine)
    run = create_run(sqlite_engine, "traffic")
    score = {
        "run_id": run.id,
        "subject_type": "interaction",
        "subject_id": partial["id"],
        "evaluator": "heuristics",
        "evaluator_version": "1",
        "config_hash": "x",
        "metric": "heuristics.length",
        "value": 1.0,
        "status": "ok",
    }
    assert write_scores(sqlite_engine, [score]) == 1
    assert ingest(sqlite_engine, [part2], settings=SETTINGS).updated == 1
    with sqlite_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM scores")).scalar() == 0


def test_bad_trace_documents_are_quarantined_with_their_reason(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    good = json.loads(_hex(_doc(_spans())))
    bad = json.loads(json.dumps(good))
    spans = bad["resourceSpans"][0]["scopeSpans"][0]["spans"]
    for s in spans:
        s["traceId"] = "f" * 32
    spans[1]["startTimeUnixNano"] = "not-a-number"
    path = tmp_path / "mixed.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n" + '{"resourceSpans": [x\n')
    result = ingest(sqlite_engine, [path], settings=SETTINGS)
    assert result.ingested == 1 and result.quarantined == 2
    assert any(k.startswith("malformed OTLP span") for k in result.reasons), result.reasons
    assert any(k.startswith("malformed JSON") for k in result.reasons), result.reasons


@pytest.mark.parametrize(
    ("name", "attrs", "kind"),
    [
        ("invoke_agent a", {"gen_ai.operation.name": "invoke_agent"}, "agent"),
        ("chat m", {"gen_ai.operation.name": "chat"}, "llm"),
        ("execute_tool t", {"gen_ai.operation.name": "execute_tool"}, "tool"),
        ("embeddings m", {"gen_ai.operation.name": "embeddings"}, "embeddings"),
        ("retrieval", {"gen_ai.operation.name": "retrieval"}, "retrieval"),
        ("retrieve docs", {}, "retrieval"),
        ("SELECT docs", {"db.system.name": "postgresql", "db.query.text": "SELECT"}, "retrieval"),
        ("Retriever", {"openinference.span.kind": "RETRIEVER"}, "retrieval"),
        ("openai.chat", {"gen_ai.request.model": "m"}, "llm"),
        ("GET /", {"http.request.method": "GET"}, "other"),
    ],
)
def test_span_kinds(name: str, attrs: dict[str, Any], kind: str) -> None:
    assert span_kind(name, attrs) == kind


def test_kind_shares_union_parallel_steps_and_mean_over_groups() -> None:
    steps = [
        {"span_id": "r", "kind": "agent", "start_ns": 0, "end_ns": 1000 * MS},
        {"span_id": "a", "kind": "tool", "start_ns": 0, "end_ns": 500 * MS, "latency_ms": 500.0},
        {"span_id": "b", "kind": "tool", "start_ns": 250 * MS, "end_ns": 500 * MS},
        {"span_id": "c", "kind": "llm", "start_ns": 600 * MS, "end_ns": 900 * MS},
    ]
    assert kind_shares(steps, 1000.0, "r") == pytest.approx(
        {"tool": 0.5, "llm": 0.3, "untraced": 0.2}
    )
    assert kind_shares(steps, None, "r") == {}
    rows = mean_kind_shares([(("bot", "v1"), steps, 1000.0, "r"), (("bot", "v2"), [], 10.0, None)])
    v1 = {r["kind"]: r["mean_share"] for r in rows if r["model_version"] == "v1"}
    assert v1 == pytest.approx({"tool": 0.5, "llm": 0.3, "untraced": 0.2})
    assert [r["kind"] for r in rows if r["model_version"] == "v2"] == ["untraced"]
    assert slowest_step([]) is None


def test_merge_is_order_independent_on_the_row_fields(tmp_path: Path) -> None:
    first, rest = _split(_spans())
    p1, p2 = tmp_path / "1.json", tmp_path / "2.json"
    p1.write_text(_doc(first))
    p2.write_text(_doc(rest))
    [a] = [r.value for r in SourceReader(p1)]
    [b] = [r.value for r in SourceReader(p2)]
    ab, ba = merge_trace_rows(a, b), merge_trace_rows(b, a)
    for key in ("prompt", "response", "context", "latency_ms", "input_tokens", "output_tokens"):
        assert ab[key] == ba[key], key
    assert ab["metadata"]["trace"]["steps"] == ba["metadata"]["trace"]["steps"]


def test_latency_alert_names_the_slowest_step(sqlite_engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "slow.json"
    path.write_text(_doc(_spans(traces=4, tool_ms=2000)))  # each trace 2.4 s, 2 s of it the tool
    assert ingest(sqlite_engine, [path], settings=SETTINGS).ingested == 4
    rule = Rule(
        name="latency-p95-high",
        selector="latency_ms",
        aggregation="p95",
        comparison=">",
        threshold=1000,
        window="1h",
        min_items=1,
        cooldown="0s",
    )
    now = datetime.fromtimestamp(T0 / 1e9, UTC) + timedelta(hours=1, minutes=2)
    events = evaluate_rules(sqlite_engine, RulesFile(rules=[rule]), now=now, deliver=False)
    assert [e.action for e in events] == ["open"]
    with sqlite_engine.connect() as conn:
        ctx = conn.execute(sa.select(Alert.__table__.c.context)).scalar_one()  # type: ignore[attr-defined]
    ctx = json.loads(ctx) if isinstance(ctx, str) else ctx
    slow = ctx["slowest_step"]
    assert (slow["kind"], slow["name"]) == ("tool", "execute_tool lookup_order")
    assert slow["share"] == pytest.approx(2000 / 2400) and slow["of"] == 4
    assert all(i["slowest_step"]["kind"] == "tool" for i in ctx["offending"])
    [alert] = list_alerts(sqlite_engine)
    message = build_message(alert, "open", rule, Redactor())
    assert message.payload["slowest_step"]["name"] == "execute_tool lookup_order"
    assert "Slowest step: tool 'execute_tool lookup_order', 83% of the latency of 4" in message.text


def _script() -> str:
    found = shutil.which("evalwatch") or str(Path(sys.executable).parent / "evalwatch")
    assert Path(found).exists(), "the evalwatch console script is not installed"
    return found


def test_cli_ingest_then_faithfulness_sees_the_retrieved_context(tmp_path: Path) -> None:
    traces = tmp_path / "traces.jsonl"
    traces.write_text(_hex(_doc(_spans(traces=2))) + "\n")
    db = tmp_path / "store.db"
    with FakeJudgeServer() as server:
        env = {
            **os.environ,
            "EVALWATCH_DATABASE_URL": f"sqlite:///{db}",
            "EVALWATCH_HASH_KEY": "cli-key",
            "EVALWATCH_JUDGE__BASE_URL": server.base_url,
            "EVALWATCH_JUDGE__MODEL": "judge-trace",
            "EVALWATCH_JUDGE__API_KEY": "sk-trace-test",
            "COLUMNS": "200",
        }
        run = lambda *args: subprocess.run(  # noqa: E731
            [_script(), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )
        res = run("ingest", str(traces), "--no-progress")
        assert res.returncode == 0, res.stdout + res.stderr
        assert "2 interactions ingested, 0 duplicate, 0 quarantined" in res.stdout
        res = run(
            "evaluate",
            "-e",
            "judge",
            "--rubrics",
            "faithfulness",
            "--since",
            "2026-09-01",
            "--until",
            "2026-09-30",
        )
        assert res.returncode in (0, 1), res.stdout + res.stderr
        seen = [r.all_text for r in server.requests]
        assert seen and all(DOCS[0] in t and DOCS[1] in t for t in seen), seen[:1]
    engine = make_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            run_id = conn.execute(sa.text("SELECT MAX(id) FROM eval_runs")).scalar_one()
        traced = run_traces(engine, run_id)
        assert len(traced) == 2
        assert set(trace_steps(engine, [t.interaction_id for t in traced])) == {
            t.interaction_id for t in traced
        }
        md = run_markdown(engine, run_id)
        assert "## Step latency shares (traced interactions)" in md
        assert "| support-agent | acme-chat-2026-09 | tool |" in md
        assert "Step latency shares (traced interactions)" in render_run_html(engine, run_id)
    finally:
        engine.dispose()


def test_the_bundled_example_ingests_as_two_agent_interactions(sqlite_engine: Engine) -> None:
    example = Path(__file__).resolve().parents[1] / "datasets" / "agent_traces.otlp.jsonl"
    result = ingest(sqlite_engine, [example], settings=SETTINGS)
    assert (result.rows, result.ingested, result.quarantined) == (2, 2, 0)
    rows = _rows(sqlite_engine)
    assert all(r["context"] == "\n\n".join(DOCS) and r["response"] == FINAL for r in rows)
    assert [len(_meta(r)["trace"]["steps"]) for r in rows] == [5, 5]


def test_two_agent_invocations_in_one_trace_are_two_interactions(tmp_path: Path) -> None:
    provider, exporter = _provider()
    tracer = provider.get_tracer("t")
    request = tracer.start_span("POST /ask", start_time=T0, attributes={"http.method": "POST"})
    ctx = trace.set_span_in_context(request)
    for i, t in enumerate((T0 + MS, T0 + 500 * MS)):
        agent = tracer.start_span(
            f"invoke_agent a{i}",
            context=ctx,
            start_time=t,
            attributes={"gen_ai.operation.name": "invoke_agent"},
        )
        chat = tracer.start_span(
            "chat m",
            context=trace.set_span_in_context(agent),
            start_time=t + MS,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "m",
                "gen_ai.prompt": f"question {i}",
                "gen_ai.completion": f"answer {i}",
            },
        )
        chat.end(end_time=t + 100 * MS)
        agent.end(end_time=t + 200 * MS)
    request.end(end_time=T0 + 800 * MS)
    provider.shutdown()
    path = tmp_path / "two.json"
    path.write_text(_doc(list(exporter.get_finished_spans())))
    rows = [r.value for r in SourceReader(path)]
    assert [(r["prompt"], r["response"]) for r in rows] == [
        ("question 0", "answer 0"),
        ("question 1", "answer 1"),
    ]
    agents = [r["metadata"]["trace"]["steps"][0] for r in rows]
    assert [r["request_id"] for r in rows] == [
        f"otel-{r['metadata']['trace']['trace_id']}-{a['span_id']}"
        for r, a in zip(rows, agents, strict=True)
    ]
    assert [r["latency_ms"] for r in rows] == pytest.approx([200.0, 200.0])
    # Each agent span is its interaction's root: its parent (the request) is not missing.
    assert [r["metadata"]["trace"]["partial"] for r in rows] == [False, False]
    assert [r["metadata"]["trace"]["root_span_id"] for r in rows] == [a["span_id"] for a in agents]
