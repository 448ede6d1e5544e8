"""The OTLP path on spans made by the real OpenTelemetry SDK and encoded by the OTLP exporter."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from evalwatch.ingest.otel import span_to_row
from evalwatch.ingest.pipeline import ingest
from evalwatch.ingest.readers import SourceReader
from evalwatch.settings import Settings

T0 = 1_790_000_000_000_000_000  # 2026-09-21T14:13:20Z, in nanoseconds


def _make_spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("evalwatch-test")

    # Newest conventions: structured messages as span attributes.
    span = tracer.start_span("chat acme-chat", start_time=T0)
    span.set_attributes(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "acme",
            "gen_ai.request.model": "acme-chat",
            "gen_ai.response.model": "acme-chat-2026-09-01",
            "gen_ai.response.id": "chatcmpl-new-1",
            "gen_ai.usage.input_tokens": 42,
            "gen_ai.usage.output_tokens": 7,
            "gen_ai.conversation.id": "conv-9",
            "user.id": "user-77",
            "gen_ai.input.messages": json.dumps(
                [
                    {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
                    {"role": "user", "parts": [{"type": "text", "content": "Where is my order?"}]},
                ]
            ),
            "gen_ai.output.messages": json.dumps(
                [
                    {
                        "role": "assistant",
                        "parts": [{"type": "text", "content": "It ships tomorrow."}],
                        "finish_reason": "stop",
                    }
                ]
            ),
        }
    )
    span.end(end_time=T0 + 250_000_000)

    # Event-based conventions: gen_ai.user.message / gen_ai.choice events, older token names.
    span = tracer.start_span("chat acme-chat", start_time=T0 + 10**9)
    span.set_attributes(
        {
            "gen_ai.system": "acme",
            "gen_ai.request.model": "acme-chat",
            "gen_ai.usage.prompt_tokens": 11,
            "gen_ai.usage.completion_tokens": 5,
        }
    )
    span.add_event("gen_ai.system.message", {"content": "You are helpful."})
    span.add_event("gen_ai.user.message", {"content": "Do you ship to Norway?"})
    span.add_event(
        "gen_ai.choice",
        {"index": 0, "message": json.dumps({"role": "assistant", "content": "Yes, in 3-5 days."})},
    )
    span.end(end_time=T0 + 10**9 + 1_500_000_000)

    # Oldest conventions: indexed gen_ai.prompt / completion attributes and content events.
    span = tracer.start_span("openai.chat", start_time=T0 + 2 * 10**9)
    span.set_attributes(
        {
            "gen_ai.request.model": "acme-chat",
            "gen_ai.response.model": "acme-chat-old",
            "gen_ai.prompt.0.role": "user",
            "gen_ai.prompt.0.content": "Cancel my plan. My email is jane@example.com",
            "gen_ai.completion.0.role": "assistant",
            "gen_ai.completion.0.content": "Your plan is cancelled.",
        }
    )
    span.end(end_time=T0 + 2 * 10**9 + 80_000_000)

    span = tracer.start_span("legacy events", start_time=T0 + 3 * 10**9)
    span.set_attribute("gen_ai.request.model", "acme-chat")
    span.add_event("gen_ai.content.prompt", {"gen_ai.prompt": "What is the warranty?"})
    span.add_event("gen_ai.content.completion", {"gen_ai.completion": "Two years."})
    span.end(end_time=T0 + 3 * 10**9 + 10**8)

    # A failed call: no completion, error status.
    span = tracer.start_span("chat acme-chat", start_time=T0 + 4 * 10**9)
    span.set_attributes({"gen_ai.request.model": "acme-chat", "gen_ai.prompt": "hello?"})
    span.set_status(Status(StatusCode.ERROR, "upstream timeout"))
    span.end(end_time=T0 + 4 * 10**9 + 30 * 10**9)

    # Not a GenAI span at all.
    span = tracer.start_span("GET /orders", start_time=T0 + 5 * 10**9)
    span.set_attribute("http.request.method", "GET")
    span.end(end_time=T0 + 5 * 10**9 + 10**6)

    provider.shutdown()
    spans = exporter.get_finished_spans()
    assert len(spans) == 6
    return spans


def _hex_ids(obj):
    # The OTLP/JSON encoding (and the collector's file exporter) writes ids as hex, where
    # protobuf's generic JSON mapping writes bytes as base64.
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k in ("traceId", "spanId", "parentSpanId") and isinstance(v, str) and v:
                out[k] = base64.b64decode(v).hex()
            else:
                out[k] = _hex_ids(v)
        return out
    if isinstance(obj, list):
        return [_hex_ids(v) for v in obj]
    return obj


@pytest.fixture(scope="module")
def otlp_request():
    return json_format.MessageToDict(encode_spans(_make_spans()))


@pytest.fixture
def otlp_files(tmp_path, otlp_request):
    # Collector file exporter style: one ExportTraceServiceRequest per line, hex ids.
    jsonl = tmp_path / "traces.jsonl"
    jsonl.write_text(json.dumps(_hex_ids(otlp_request)) + "\n")
    # Plain protobuf JSON, pretty-printed over many lines, base64 ids.
    pretty = tmp_path / "traces.json"
    pretty.write_text(json.dumps(otlp_request, indent=2))
    return jsonl, pretty


def _by_prompt(engine):
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM interactions ORDER BY ts")).mappings().all()
    return {r["prompt"]: dict(r) for r in rows}


def test_reader_turns_genai_spans_into_rows(otlp_files):
    for path in otlp_files:
        reader = SourceReader(path)
        assert reader.fmt == "otlp"
        recs = list(reader)
        assert len(recs) == 6
        assert [r.skip for r in recs].count("not a GenAI span") == 1
        assert all(r.error is None for r in recs)
        rows = [r.value for r in recs if r.value is not None]
        first = rows[0]
        assert first["request_id"] == "chatcmpl-new-1"
        assert first["app"] == "support-bot"
        assert first["model_name"] == "acme-chat"
        assert first["model_version"] == "acme-chat-2026-09-01"
        assert first["prompt"] == "Where is my order?"
        assert first["response"] == "It ships tomorrow."
        assert (first["input_tokens"], first["output_tokens"]) == (42, 7)
        assert first["latency_ms"] == pytest.approx(250.0)
        assert first["timestamp"] == "2026-09-21T14:13:20Z"
        assert first["session_id"] == "conv-9" and first["user_id"] == "user-77"
        otel = first["metadata"]["otel"]
        assert len(otel["trace_id"]) == 32 and len(otel["span_id"]) == 16
        assert otel["operation"] == "chat" and otel["provider"] == "acme"


def test_hex_and_base64_ids_give_the_same_rows(otlp_files):
    jsonl, pretty = otlp_files
    a = [r.value for r in SourceReader(jsonl) if r.value]
    b = [r.value for r in SourceReader(pretty) if r.value]
    assert a == b
    # Without gen_ai.response.id the request id comes from the trace and span ids.
    assert (
        a[1]["request_id"]
        == f"otel-{a[1]['metadata']['otel']['trace_id']}-" + a[1]["metadata"]["otel"]["span_id"]
    )


def test_ingest_otlp_on_both_backends(engine, otlp_files):
    jsonl, _ = otlp_files
    settings = Settings(hash_key="otel-key")
    result = ingest(engine, [jsonl], settings=settings, collect_outcomes=True)
    assert result.rows == 5 and result.skipped == {"not a GenAI span": 1}
    assert result.ingested == 4
    assert result.quarantined == 1  # the failed call has no completion
    assert result.reasons == {"response: missing": 1}
    rows = _by_prompt(engine)
    assert set(rows) == {
        "Where is my order?",
        "Do you ship to Norway?",
        "Cancel my plan. My email is [REDACTED:email]",
        "What is the warranty?",
    }
    events = rows["Do you ship to Norway?"]
    assert events["response"] == "Yes, in 3-5 days."
    assert (events["input_tokens"], events["output_tokens"]) == (11, 5)
    assert events["latency_ms"] == pytest.approx(1500.0)
    assert events["model_version"] == "acme-chat"
    legacy = rows["Cancel my plan. My email is [REDACTED:email]"]
    assert legacy["response"] == "Your plan is cancelled."
    assert legacy["model_version"] == "acme-chat-old"
    assert legacy["redactions"] == 1
    assert rows["What is the warranty?"]["response"] == "Two years."
    assert rows["Where is my order?"]["user_hash"] not in (None, "user-77")
    # The same spans again (now base64-encoded ids): nothing new.
    again = ingest(engine, [otlp_files[1]], settings=settings)
    assert (again.ingested, again.duplicates, again.quarantined) == (0, 4, 1)
    with engine.connect() as conn:
        raw = conn.execute(sa.text("SELECT raw, reasons FROM quarantine")).mappings().first()
    assert "upstream timeout" in raw["raw"]


def test_malformed_otlp_documents_are_quarantined(engine, tmp_path, otlp_request):
    p = tmp_path / "broken.jsonl"
    good = json.dumps(_hex_ids(otlp_request))
    p.write_text(good + "\n" + '{"resourceSpans": [oops\n' + '{"something": "else"}\n' + "\n")
    result = ingest(engine, [p], fmt="otlp", settings=Settings(hash_key="k"))
    assert result.ingested == 4
    assert result.quarantined == 3  # the failed call, the broken line, the non-OTLP document
    assert result.reasons["not an OTLP traces document"] == 1
    assert any(k.startswith("malformed JSON") for k in result.reasons)
    assert result.skipped == {"not a GenAI span": 1, "blank line": 1}


def test_span_to_row_ignores_non_genai_spans():
    assert span_to_row({"name": "GET /", "attributes": []}, {}) is None


def test_otlp_reader_accepts_an_empty_document(tmp_path):
    p: Path = tmp_path / "empty.json"
    p.write_text('{"resourceSpans": []}')
    assert list(SourceReader(p)) == []
