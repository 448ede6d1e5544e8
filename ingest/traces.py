"""Multi-span OTLP traces to one interaction each, and completing them when more spans arrive.

An agent request is traced as several spans: a root (``invoke_agent``, or the app's own span),
retrieval steps, tool calls and one or more LLM calls. :func:`trace_rows` turns the spans of one
trace into ONE traffic row:

* ``prompt``: the user's input: the root span's input messages, else the first LLM call's last
  user message;
* ``response``: the final answer: the root span's output messages, else the output of the LLM
  call that ended last;
* ``context``: the documents of the retrieval steps, in start order, so ``faithfulness`` and
  the other grounded metrics judge the answer against what was retrieved;
* ``latency_ms``: the root span's duration; ``input_tokens`` / ``output_tokens``: sums over
  the LLM steps; model: the answering LLM call's;
* ``metadata.trace``: ``trace_id``, ``root_span_id``, the ``steps`` (kind, name, span ids,
  start/end, latency, tokens, model, error) and the ``errors``.

A trace with several top-level ``invoke_agent`` spans (one request running two agents) gives one
row per such span, request id ``otel-<trace>-<agent span>``; otherwise the trace's request id is
``otel-trace-<trace id>``. A trace of one parentless, non-agent span keeps the one-span-one-row
mapping of :func:`evalwatch.ingest.otel.span_to_row`.

Robustness:

* spans may come in any order (steps are sorted by start time);
* a span whose parent is not in the trace (an *orphan*) is attached to the trace's root and
  flagged ``orphan``; its missing parent is listed in ``missing_parents``. A trace without a
  parentless span is ``partial``: its latency is the envelope of the spans it has;
* spans of one trace may arrive in several ingests: :func:`merge_trace_rows` merges a stored
  row with a new one by span id (the new copy of a span wins) and recomputes everything, and
  :func:`store_trace_rows` inserts new rows and updates stored ones, dropping the scores and
  embeddings of an interaction whose prompt, answer or context changed (they described the
  partial trace).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy.engine import Engine

from evalwatch.ingest.otel import (
    _ERROR_STATUS,
    _maybe_json,
    _messages,
    _nanos,
    _prompt_text,
    _span_messages,
    attributes,
    is_genai_span,
    span_id_hex,
)
from evalwatch.storage.traces import upsert_trace_interactions

__all__ = [
    "StepKind",
    "is_trace_row",
    "merge_trace_rows",
    "span_kind",
    "store_trace_rows",
    "trace_rows",
]

StepKind = Literal["agent", "llm", "tool", "retrieval", "embeddings", "other"]

_OPERATION_KINDS: dict[str, StepKind] = {
    "invoke_agent": "agent",
    "create_agent": "agent",
    "chat": "llm",
    "text_completion": "llm",
    "generate_content": "llm",
    "completion": "llm",
    "execute_tool": "tool",
    "embeddings": "embeddings",
    "embedding": "embeddings",
    "retrieval": "retrieval",
    "retrieve": "retrieval",
}
# OpenInference (Arize/Phoenix instrumentations) names the kind in one attribute.
_OPENINFERENCE_KINDS: dict[str, StepKind] = {
    "AGENT": "agent",
    "LLM": "llm",
    "TOOL": "tool",
    "RETRIEVER": "retrieval",
    "EMBEDDING": "embeddings",
}
_NANOS_PER_MS = 1_000_000


def span_kind(name: str | None, attrs: Mapping[str, Any]) -> StepKind:
    """What kind of step a span is: agent, llm, tool, retrieval, embeddings or other.

    ``gen_ai.operation.name`` decides where set (``invoke_agent``, ``chat``, ``execute_tool``,
    ``embeddings``, ``retrieval``); then OpenInference's ``openinference.span.kind``; then
    retrieval attributes (``gen_ai.retrieval.*``, ``retrieval.documents.*``, any ``db.*``
    attribute: a database call inside an LLM trace is a lookup) or a span name starting with
    ``retriev``; then a model attribute makes an LLM call.

    Examples:
        >>> span_kind("execute_tool lookup", {"gen_ai.operation.name": "execute_tool"})
        'tool'
        >>> span_kind("vector search", {"db.system.name": "qdrant"})
        'retrieval'
        >>> span_kind("GET /", {"http.request.method": "GET"})
        'other'
    """
    op = attrs.get("gen_ai.operation.name")
    if isinstance(op, str) and op.lower() in _OPERATION_KINDS:
        return _OPERATION_KINDS[op.lower()]
    oi = attrs.get("openinference.span.kind")
    if isinstance(oi, str) and oi.upper() in _OPENINFERENCE_KINDS:
        return _OPENINFERENCE_KINDS[oi.upper()]
    if any(k.startswith(("gen_ai.retrieval.", "retrieval.documents", "db.")) for k in attrs) or str(
        name or ""
    ).lower().startswith("retriev"):
        return "retrieval"
    if attrs.get("gen_ai.request.model") or attrs.get("gen_ai.response.model"):
        return "llm"
    return "other"


def _doc_text(doc: Any) -> str | None:
    if isinstance(doc, str):
        return doc
    if isinstance(doc, Mapping):
        for key in ("content", "text", "page_content", "document"):
            value = doc.get(key)
            if isinstance(value, Mapping):
                value = _doc_text(value)
            if isinstance(value, str) and value:
                return value
    return None


def _retrieved_documents(attrs: Mapping[str, Any]) -> list[str]:
    """Document texts a retrieval span recorded, in the conventions' shapes.

    ``gen_ai.retrieval.documents`` (JSON list of objects with ``content`` or ``text``),
    OpenInference's flattened ``retrieval.documents.<i>.document.content``, else the span's
    output messages (``gen_ai.output.messages`` / ``gen_ai.completion``).
    """
    docs = attrs.get("gen_ai.retrieval.documents")
    if isinstance(docs, str):
        docs = _maybe_json(docs)
    if isinstance(docs, Mapping):
        docs = [docs]
    if isinstance(docs, list):
        texts = [t for t in (_doc_text(d) for d in docs) if t]
        if texts:
            return texts
    flat: dict[int, str] = {}
    for key, value in attrs.items():
        if key.startswith("retrieval.documents.") and key.endswith(".document.content"):
            idx = key.split(".")[2]
            if idx.isdigit() and isinstance(value, str):
                flat[int(idx)] = value
    if flat:
        return [text for _, text in sorted(flat.items())]
    for key in ("gen_ai.output.messages", "gen_ai.completion"):
        if attrs.get(key) is not None:
            return [m["text"] for m in _messages(attrs[key]) if m.get("text")]
    return []


@dataclass
class _Span:
    """One decoded span, with what the row needs from its content."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    kind: StepKind
    start: int | None
    end: int | None
    attrs: dict[str, Any]
    resource: Mapping[str, Any]
    prompt: str | None = None
    answer: str | None = None
    documents: list[str] = field(default_factory=list)
    error: str | None = None
    genai: bool = False


def _decode(span: Mapping[str, Any], resource: Mapping[str, Any]) -> _Span:
    attrs = attributes(span.get("attributes"))
    name = str(span.get("name") or "")
    kind = span_kind(name, attrs)
    status = span.get("status") or {}
    out = _Span(
        trace_id=span_id_hex(span.get("traceId"), 16) or "",
        span_id=span_id_hex(span.get("spanId"), 8) or "",
        parent_id=span_id_hex(span.get("parentSpanId"), 8),
        name=name,
        kind=kind,
        start=_nanos(span.get("startTimeUnixNano")),
        end=_nanos(span.get("endTimeUnixNano")),
        attrs=attrs,
        resource=resource,
        error=(status.get("message") or "error") if status.get("code") in _ERROR_STATUS else None,
        genai=is_genai_span(span),
    )
    if kind == "retrieval":
        out.documents = _retrieved_documents(attrs)
    elif kind in ("agent", "llm") or out.genai:
        prompt_msgs, output_msgs = _span_messages(span, attrs)
        out.prompt = _prompt_text(prompt_msgs)
        texts = [m["text"] for m in output_msgs if m.get("text")]
        out.answer = "\n\n".join(texts) if texts else None
    return out


def _step(s: _Span) -> dict[str, Any]:
    a = s.attrs
    step: dict[str, Any] = {
        "span_id": s.span_id,
        "parent_span_id": s.parent_id,
        "kind": s.kind,
        "name": s.name,
        "operation": a.get("gen_ai.operation.name"),
        "start_ns": s.start,
        "end_ns": s.end,
        "latency_ms": (s.end - s.start) / _NANOS_PER_MS
        if s.start is not None and s.end is not None
        else None,
        "input_tokens": a.get("gen_ai.usage.input_tokens", a.get("gen_ai.usage.prompt_tokens")),
        "output_tokens": a.get(
            "gen_ai.usage.output_tokens", a.get("gen_ai.usage.completion_tokens")
        ),
        "model": a.get("gen_ai.response.model") or a.get("gen_ai.request.model"),
        "tool": a.get("gen_ai.tool.name"),
        "agent": a.get("gen_ai.agent.name"),
        "documents": len(s.documents) if s.kind == "retrieval" else None,
        "error": s.error,
        # Whether the span carries the user's input / an answer (chooses prompt and response
        # again when a later part of the trace is merged in; the texts are in the row).
        "has_prompt": s.prompt is not None,
        "has_answer": s.answer is not None,
    }
    return {k: v for k, v in step.items() if v is not None}


def _is_root(step: Mapping[str, Any], unit_root: str | None) -> bool:
    if unit_root is not None:
        return bool(step.get("span_id") == unit_root)
    return step.get("parent_span_id") is None


def _prompt_rank(step: Mapping[str, Any], unit_root: str | None) -> tuple[int, int]:
    # The root's own input first (the agent's user message), then the earliest LLM call.
    return (0 if _is_root(step, unit_root) else 1, int(step.get("start_ns") or 0))


def _answer_rank(step: Mapping[str, Any], unit_root: str | None) -> tuple[int, int]:
    # The root's output first, then the LLM call that ended last.
    return (0 if _is_root(step, unit_root) else 1, -int(step.get("end_ns") or 0))


def _is_source(step: Mapping[str, Any], flag: str, unit_root: str | None) -> bool:
    return bool(step.get(flag)) and (step["kind"] == "llm" or _is_root(step, unit_root))


def _iso(ns: int) -> str:
    return (
        datetime.fromtimestamp(ns // 1_000_000_000, UTC)
        .replace(microsecond=(ns % 1_000_000_000) // 1000)
        .isoformat()
        .replace("+00:00", "Z")
    )


def summarise_steps(
    trace_id: str, steps: Sequence[Mapping[str, Any]], unit_root: str | None = None
) -> dict[str, Any]:
    """``metadata.trace`` of a set of steps: root, orphans, errors, latency and token totals.

    Args:
        trace_id: The trace id (hex).
        steps: Step dicts (as :func:`trace_rows` stores them), any order, unique span ids.
        unit_root: The root of an interaction that is one agent invocation of a trace with
            several (its parent, outside the interaction, is not missing); None: the
            parentless span.

    Returns:
        ``trace_id``, ``root_span_id`` (None when no parentless span), ``partial``,
        ``latency_ms``, ``input_tokens``, ``output_tokens`` (None when no LLM step has any),
        ``missing_parents``, ``errors`` and the ``steps`` sorted by start, orphans flagged,
        plus the span ids the prompt, answer and context come from.

    Examples:
        >>> s = summarise_steps("t", [
        ...     {"span_id": "b", "parent_span_id": "a", "kind": "llm", "name": "chat",
        ...      "start_ns": 2, "end_ns": 5_000_002, "input_tokens": 3},
        ...     {"span_id": "a", "kind": "agent", "name": "invoke_agent",
        ...      "start_ns": 0, "end_ns": 9_000_000}])
        >>> s["root_span_id"], s["latency_ms"], s["input_tokens"]
        ('a', 9.0, 3)
        >>> [x["span_id"] for x in s["steps"]], s["steps"][1]["kind"]
        (['a', 'b'], 'llm')
    """
    ordered = sorted(
        (dict(s) for s in steps), key=lambda s: (s.get("start_ns") or 0, s.get("span_id", ""))
    )
    ids = {s["span_id"] for s in ordered}
    roots = [s for s in ordered if _is_root(s, unit_root)]
    root = roots[0] if roots else None
    missing: set[str] = set()
    for s in ordered:
        s.pop("orphan", None)
        parent = s.get("parent_span_id")
        if parent is not None and parent not in ids and s is not root:
            s["orphan"] = True
            missing.add(parent)
    latency: float | None
    if root is not None and root.get("latency_ms") is not None:
        latency = float(root["latency_ms"])
    else:
        starts = [s["start_ns"] for s in ordered if s.get("start_ns") is not None]
        ends = [s["end_ns"] for s in ordered if s.get("end_ns") is not None]
        latency = (max(ends) - min(starts)) / _NANOS_PER_MS if starts and ends else None
    llm = [s for s in ordered if s["kind"] == "llm"]
    totals: dict[str, int | None] = {}
    for key in ("input_tokens", "output_tokens"):
        values = [int(s[key]) for s in llm if s.get(key) is not None]
        totals[key] = sum(values) if values else None
    prompt_from = min(
        (s for s in ordered if _is_source(s, "has_prompt", unit_root)),
        key=lambda s: _prompt_rank(s, unit_root),
        default=None,
    )
    answer_from = min(
        (s for s in ordered if _is_source(s, "has_answer", unit_root)),
        key=lambda s: _answer_rank(s, unit_root),
        default=None,
    )
    answering = answer_from if answer_from is not None and answer_from.get("model") else None
    if answering is None:
        with_model = [s for s in llm if s.get("model")]
        answering = max(with_model, key=lambda s: s.get("end_ns") or 0) if with_model else root
    return {
        "trace_id": trace_id,
        **({"unit_root": unit_root} if unit_root is not None else {}),
        "root_span_id": root["span_id"] if root else None,
        "partial": root is None or bool(missing),
        "latency_ms": latency,
        "start_ns": root.get("start_ns")
        if root
        else min((s["start_ns"] for s in ordered if s.get("start_ns") is not None), default=None),
        "input_tokens": totals["input_tokens"],
        "output_tokens": totals["output_tokens"],
        "model": (answering or {}).get("model"),
        "missing_parents": sorted(missing),
        "errors": [
            {"span_id": s["span_id"], "kind": s["kind"], "name": s["name"], "error": s["error"]}
            for s in ordered
            if s.get("error")
        ],
        "prompt_from": prompt_from["span_id"] if prompt_from else None,
        "answer_from": answer_from["span_id"] if answer_from else None,
        "context_from": [s["span_id"] for s in ordered if s.get("documents")],
        "steps": ordered,
    }


def _units(spans: Sequence[_Span]) -> list[tuple[str, list[_Span], str | None]]:
    """The interactions in one trace: (request id, spans, agent root), see the module docstring."""
    by_id = {s.span_id: s for s in spans}

    def agent_above(s: _Span) -> bool:
        seen: set[str] = set()
        parent = by_id.get(s.parent_id or "")
        while parent is not None and parent.span_id not in seen:
            if parent.kind == "agent":
                return True
            seen.add(parent.span_id)
            parent = by_id.get(parent.parent_id or "")
        return False

    trace_id = spans[0].trace_id
    tops = [s for s in spans if s.kind == "agent" and not agent_above(s)]
    if len(tops) < 2:
        return [(f"otel-trace-{trace_id}", list(spans), None)]

    def top_of(s: _Span) -> str | None:
        seen: set[str] = set()
        cur: _Span | None = s
        top_ids = {t.span_id for t in tops}
        while cur is not None and cur.span_id not in seen:
            if cur.span_id in top_ids:
                return cur.span_id
            seen.add(cur.span_id)
            cur = by_id.get(cur.parent_id or "")
        return None

    groups: dict[str, list[_Span]] = {t.span_id: [] for t in tops}
    rest: list[_Span] = []
    for s in spans:
        top = top_of(s)
        (groups[top] if top is not None else rest).append(s)
    out: list[tuple[str, list[_Span], str | None]] = [
        (f"otel-{trace_id}-{top}", members, top) for top, members in groups.items()
    ]
    # Spans under no agent (the request's own span, say) are kept only when they hold an LLM
    # call or a retrieval of their own; then they are the trace-level interaction.
    if any(s.kind in ("llm", "retrieval") for s in rest):
        out.append((f"otel-trace-{trace_id}", rest, None))
    return out


def _unit_row(request_id: str, spans: Sequence[_Span], unit_root: str | None) -> dict[str, Any]:
    trace_id = spans[0].trace_id
    # A unit from a split trace may hold some span twice (a retried export): the later wins.
    unique = {s.span_id: s for s in spans}
    decoded = list(unique.values())
    steps = [_step(s) for s in decoded]
    summary = summarise_steps(trace_id, steps, unit_root)
    root = unique.get(summary["root_span_id"] or "")
    prompt_span = unique.get(summary["prompt_from"] or "")
    answer_span = unique.get(summary["answer_from"] or "")
    ctx_spans = [unique[i] for i in summary["context_from"]]
    context = "\n\n".join(d for s in ctx_spans for d in s.documents) or None
    first = root or min(decoded, key=lambda s: s.start or 0)

    def attr(*keys: str) -> Any:
        for s in ([root] if root else []) + decoded:
            for key in keys:
                if s.attrs.get(key) is not None:
                    return s.attrs[key]
        return None

    models = answer_span or first
    request_model = models.attrs.get("gen_ai.request.model") if models else None
    response_model = models.attrs.get("gen_ai.response.model") if models else None
    if not (request_model or response_model):
        request_model = summary["model"]
    row: dict[str, Any] = {
        "request_id": request_id,
        "app": first.resource.get("service.name"),
        "model_name": request_model or response_model,
        "model_version": response_model or request_model,
        "prompt": prompt_span.prompt if prompt_span else None,
        "response": answer_span.answer if answer_span else None,
        "context": context,
        "latency_ms": summary["latency_ms"],
        "input_tokens": summary["input_tokens"],
        "output_tokens": summary["output_tokens"],
        "session_id": attr("gen_ai.conversation.id", "session.id"),
        "user_id": attr("user.id", "enduser.id"),
        "metadata": {
            "otel": {"trace_id": trace_id, "span_id": first.span_id, "span_name": first.name},
            "trace": summary,
        },
    }
    if summary["start_ns"] is not None:
        row["timestamp"] = _iso(summary["start_ns"])
    return {k: v for k, v in row.items() if v is not None}


def trace_rows(
    spans: Iterable[tuple[Mapping[str, Any], Mapping[str, Any]]],
) -> list[dict[str, Any]]:
    """Traffic rows (one per interaction, see the module docstring) from the spans of ONE trace.

    Args:
        spans: (resource attributes, OTLP JSON span) pairs of one trace, any order.

    Returns:
        Rows in the canonical traffic schema with ``metadata.trace``; empty when no span is a
        GenAI call or a retrieval.

    Raises:
        ValueError: If a span's timestamps are not integers.

    Examples:
        >>> op = lambda name: {"key": "gen_ai.operation.name", "value": {"stringValue": name}}
        >>> root = {"traceId": "ab" * 16, "spanId": "01" * 8, "name": "invoke_agent a",
        ...     "startTimeUnixNano": "1700000000000000000",
        ...     "endTimeUnixNano": "1700000001000000000", "attributes": [op("invoke_agent")]}
        >>> chat = {"traceId": "ab" * 16, "spanId": "02" * 8, "parentSpanId": "01" * 8,
        ...     "name": "chat m", "startTimeUnixNano": "1700000000100000000",
        ...     "endTimeUnixNano": "1700000000600000000", "attributes": [
        ...         op("chat"), {"key": "gen_ai.request.model", "value": {"stringValue": "m"}},
        ...         {"key": "gen_ai.prompt", "value": {"stringValue": "hi"}},
        ...         {"key": "gen_ai.completion", "value": {"stringValue": "hello"}}]}
        >>> [row] = trace_rows([({"service.name": "bot"}, chat), ({"service.name": "bot"}, root)])
        >>> row["request_id"][:11], row["prompt"], row["response"], row["latency_ms"]
        ('otel-trace-', 'hi', 'hello', 1000.0)
        >>> [s["kind"] for s in row["metadata"]["trace"]["steps"]]
        ['agent', 'llm']
    """
    decoded = [_decode(span, resource) for resource, span in spans]
    # A span exported twice (a retried export, overlapping files) counts once: the later copy.
    decoded = list({s.span_id: s for s in decoded if s.span_id}.values())
    if not any(s.kind != "other" or s.genai for s in decoded):
        return []
    if not decoded:
        return []
    return [_unit_row(rid, members, top) for rid, members, top in _units(decoded) if members]


def is_trace_row(row: Mapping[str, Any]) -> bool:
    """Whether a traffic row came from a multi-span trace (and may be completed later)."""
    meta = row.get("metadata")
    return isinstance(meta, Mapping) and isinstance(meta.get("trace"), Mapping)


def _ts(ns: int) -> datetime:
    return datetime.fromtimestamp(ns // 1_000_000_000, UTC).replace(
        microsecond=(ns % 1_000_000_000) // 1000
    )


def merge_trace_rows(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """One interaction row from two rows of the same trace (stored, and newly arrived).

    Steps are merged by span id (the new copy wins) and the summary recomputed; prompt, answer
    and context are taken from whichever row holds the span that now supplies them (the
    choice is a total order over spans, so the best of the union is one row's own choice); when
    both rows have retrieval steps, their contexts are joined in the order of their first
    retrieval. Other fields: the new row's where set, else the old row's.

    Args:
        old: An interaction row (``ts``, ``metadata`` with ``trace``), e.g. as stored.
        new: Another row of the same trace, prepared for storing.

    Returns:
        The merged interaction row.

    Examples:
        >>> a = {"request_id": "r", "prompt": "q", "response": "partial", "context": None,
        ...      "metadata": {"trace": {"trace_id": "t", "steps": [
        ...          {"span_id": "b", "parent_span_id": "a", "kind": "llm", "name": "chat",
        ...           "start_ns": 1, "end_ns": 2, "has_prompt": True, "has_answer": True}]}}}
        >>> b = {"request_id": "r", "prompt": "q", "response": "final", "context": None,
        ...      "metadata": {"trace": {"trace_id": "t", "steps": [
        ...          {"span_id": "a", "kind": "agent", "name": "invoke_agent",
        ...           "start_ns": 0, "end_ns": 3_000_000, "has_answer": True}]}}}
        >>> m = merge_trace_rows(a, b)
        >>> m["response"], m["latency_ms"], m["metadata"]["trace"]["partial"]
        ('final', 3.0, False)
    """
    old_trace = dict((old.get("metadata") or {}).get("trace") or {})
    new_trace = dict((new.get("metadata") or {}).get("trace") or {})
    steps: dict[str, dict[str, Any]] = {s["span_id"]: s for s in old_trace.get("steps") or []}
    steps.update({s["span_id"]: s for s in new_trace.get("steps") or []})
    summary = summarise_steps(
        str(new_trace.get("trace_id") or old_trace.get("trace_id") or ""),
        list(steps.values()),
        new_trace.get("unit_root") or old_trace.get("unit_root"),
    )
    merged: dict[str, Any] = {**old, **{k: v for k, v in new.items() if v is not None}}

    def pick(field_name: str, source_key: str) -> None:
        want = summary[source_key]
        for row, tr in ((new, new_trace), (old, old_trace)):
            if want is not None and tr.get(source_key) == want:
                merged[field_name] = row.get(field_name)
                return

    pick("prompt", "prompt_from")
    pick("response", "answer_from")
    new_ctx = set(new_trace.get("context_from") or [])
    old_ctx = set(old_trace.get("context_from") or [])
    if new_ctx <= old_ctx:
        merged["context"] = old.get("context")
    elif old_ctx <= new_ctx:
        merged["context"] = new.get("context")
    else:
        order = summary["context_from"]
        blocks = sorted(
            (
                (order.index(min(ids, key=order.index)), row.get("context"))
                for ids, row in ((old_ctx, old), (new_ctx, new))
            ),
            key=lambda b: b[0],
        )
        merged["context"] = "\n\n".join(text for _, text in blocks if text) or None
    merged["latency_ms"] = summary["latency_ms"]
    merged["input_tokens"] = summary["input_tokens"]
    merged["output_tokens"] = summary["output_tokens"]
    if summary["start_ns"] is not None and "ts" in merged:
        merged["ts"] = _ts(summary["start_ns"])
    meta = {**(old.get("metadata") or {}), **(new.get("metadata") or {})}
    meta["trace"] = summary
    if summary["root_span_id"] is not None and isinstance(meta.get("otel"), Mapping):
        root = steps[summary["root_span_id"]]
        meta["otel"] = {**meta["otel"], "span_id": root["span_id"], "span_name": root["name"]}
    merged["metadata"] = meta
    # Only where the merge changed the answer's model (the root arrived) does the row take it.
    return merged


_TEXTS = ("prompt", "response", "context")


def _completed(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any] | None:
    """``merge_trace_rows(old, new)``, or None when ``new`` adds no span (a duplicate)."""
    old_trace = (old.get("metadata") or {}).get("trace") or {}
    old_ids = {s["span_id"] for s in old_trace.get("steps") or []}
    if {s["span_id"] for s in new["metadata"]["trace"]["steps"]} <= old_ids:
        return None
    merged = merge_trace_rows(old, new)
    # Masks found in either part; the merged texts come from one part or the other.
    merged["redactions"] = max(int(old.get("redactions") or 0), int(new.get("redactions") or 0))
    return merged


def store_trace_rows(
    engine: Engine, rows: Sequence[Mapping[str, Any]]
) -> tuple[list[str], list[str]]:
    """Store interaction rows from traces: insert new ones, complete stored ones.

    Rows with the same request id (parts of one trace in one chunk) are merged first; a row
    whose trace is already stored is merged with it and the stored row updated when the merge
    added spans (a row adding none is a duplicate).

    Args:
        engine: The store.
        rows: Interaction rows (redacted, hashed) with ``metadata.trace``.

    Returns:
        The request ids newly stored and those updated.
    """
    combined: dict[str, dict[str, Any]] = {}
    for row in rows:
        rid = row["request_id"]
        combined[rid] = merge_trace_rows(combined[rid], row) if rid in combined else dict(row)
    return upsert_trace_interactions(engine, list(combined.values()), _completed, _TEXTS)
