"""OpenTelemetry GenAI spans (OTLP JSON) to evalwatch traffic rows.

Follows the GenAI semantic conventions in their three generations, so spans from old and new
instrumentations both land:

* attributes ``gen_ai.request.model`` / ``gen_ai.response.model``, ``gen_ai.usage.input_tokens``
  / ``output_tokens`` (older ``prompt_tokens`` / ``completion_tokens``), ``gen_ai.response.id``;
* content as the newest ``gen_ai.input.messages`` / ``gen_ai.output.messages`` attributes (JSON
  messages with ``parts``), also when carried by a ``gen_ai.client.inference.operation.details``
  event;
* content as ``gen_ai.user.message`` / ``gen_ai.system.message`` / ``gen_ai.choice`` events;
* content as the oldest ``gen_ai.prompt`` / ``gen_ai.completion`` attributes (plain, JSON, or
  indexed ``gen_ai.prompt.0.content``) and ``gen_ai.content.prompt`` / ``.completion`` events.

OTLP JSON is protobuf's JSON mapping with lowerCamelCase names; trace and span ids are hex
(OTLP/JSON spec) or base64 (plain protobuf JSON), and 64-bit integers may be strings.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "any_value",
    "attributes",
    "is_genai_span",
    "iter_spans",
    "span_id_hex",
    "span_to_row",
]

_ERROR_STATUS = {2, "2", "STATUS_CODE_ERROR"}
_USER_ROLES = ("user", "human")


def any_value(value: Mapping[str, Any] | None) -> Any:
    """The Python value of an OTLP ``AnyValue`` object.

    Args:
        value: E.g. ``{"stringValue": "x"}``, ``{"intValue": "3"}`` or ``{"arrayValue": {...}}``.

    Returns:
        A str, int, float, bool, bytes, list, dict or None.

    Examples:
        >>> any_value({"intValue": "42"})
        42
        >>> any_value({"arrayValue": {"values": [{"boolValue": True}]}})
        [True]
    """
    if not value:
        return None
    if "stringValue" in value:
        return value["stringValue"]
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "arrayValue" in value:
        return [any_value(v) for v in (value["arrayValue"] or {}).get("values", [])]
    if "kvlistValue" in value:
        return attributes((value["kvlistValue"] or {}).get("values", []))
    if "bytesValue" in value:
        return base64.b64decode(value["bytesValue"])
    return None


def attributes(kvs: Sequence[Mapping[str, Any]] | None) -> dict[str, Any]:
    """OTLP ``KeyValue`` list to a dict.

    Examples:
        >>> attributes([{"key": "gen_ai.request.model", "value": {"stringValue": "gpt"}}])
        {'gen_ai.request.model': 'gpt'}
    """
    return {kv["key"]: any_value(kv.get("value")) for kv in kvs or []}


def span_id_hex(value: str | None, n_bytes: int) -> str | None:
    """A trace or span id as lower-case hex, whether it came hex- or base64-encoded.

    Examples:
        >>> span_id_hex("AAECAwQFBgc=", 8), span_id_hex("0001020304050607", 8)
        ('0001020304050607', '0001020304050607')
    """
    if not value:
        return None
    if len(value) == 2 * n_bytes:
        try:
            bytes.fromhex(value)
            return value.lower()
        except ValueError:
            pass
    try:
        return base64.b64decode(value, validate=True).hex()
    except (binascii.Error, ValueError):
        return value


def iter_spans(
    doc: Mapping[str, Any],
) -> Iterator[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """Every span of an OTLP traces document with its resource attributes and scope.

    Args:
        doc: An ``ExportTracesServiceRequest`` in JSON form (``{"resourceSpans": [...]}``).

    Returns:
        An iterator of (resource attributes, scope, span).

    Raises:
        ValueError: If the document is not an OTLP traces document.

    Examples:
        >>> list(iter_spans({"resourceSpans": []}))
        []
    """
    if not isinstance(doc, Mapping) or "resourceSpans" not in doc:
        raise ValueError("not an OTLP traces document (no 'resourceSpans')")
    for rs in doc.get("resourceSpans") or []:
        resource = attributes((rs.get("resource") or {}).get("attributes"))
        for ss in rs.get("scopeSpans") or rs.get("instrumentationLibrarySpans") or []:
            scope = ss.get("scope") or ss.get("instrumentationLibrary") or {}
            for span in ss.get("spans") or []:
                yield resource, scope, span


def is_genai_span(span: Mapping[str, Any]) -> bool:
    """Whether a span carries any ``gen_ai.*`` attribute or event."""
    for kv in span.get("attributes") or []:
        if str(kv.get("key", "")).startswith("gen_ai."):
            return True
    return any(str(ev.get("name", "")).startswith("gen_ai.") for ev in span.get("events") or [])


def _nanos(value: Any) -> int | None:
    if value in (None, "", 0, "0"):
        return None
    return int(value)


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _part_text(part: Any) -> str | None:
    if isinstance(part, str):
        return part
    if not isinstance(part, Mapping):
        return None
    if part.get("type", "text") in ("text", "output_text", "input_text"):
        text = part.get("content", part.get("text"))
        return text if isinstance(text, str) else None
    return None


def _message_text(message: Any) -> str | None:
    """Text of one chat message in any of the conventions' shapes."""
    if isinstance(message, str):
        return message
    if not isinstance(message, Mapping):
        return None
    if "message" in message and isinstance(message["message"], Mapping | str):
        return _message_text(_maybe_json(message["message"]))  # gen_ai.choice body
    parts = message.get("parts")
    if isinstance(parts, list):
        texts = [t for t in (_part_text(p) for p in parts) if t]
        return "\n".join(texts) if texts else None
    content = _maybe_json(message.get("content"))
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [t for t in (_part_text(p) for p in content) if t]
        return "\n".join(texts) if texts else None
    return None


def _messages(value: Any) -> list[dict[str, Any]]:
    """A list of {role, text} from a messages attribute (JSON string, list or plain text)."""
    value = _maybe_json(value)
    if isinstance(value, str):
        return [{"role": None, "text": value}]
    if isinstance(value, Mapping):
        value = [value]
    out: list[dict[str, Any]] = []
    if isinstance(value, list):
        for m in value:
            text = _message_text(m)
            if text is not None:
                role = m.get("role") if isinstance(m, Mapping) else None
                out.append({"role": role, "text": text})
    return out


def _indexed(attrs: Mapping[str, Any], prefix: str) -> list[dict[str, Any]]:
    """``gen_ai.prompt.0.role`` / ``gen_ai.prompt.0.content`` style flattened messages."""
    found: dict[int, dict[str, Any]] = {}
    for key, value in attrs.items():
        if not key.startswith(prefix + "."):
            continue
        idx, _, field = key[len(prefix) + 1 :].partition(".")
        if not idx.isdigit() or field not in ("role", "content"):
            continue
        found.setdefault(int(idx), {})[field] = value
    return [
        {"role": m.get("role"), "text": m["content"]}
        for _, m in sorted(found.items())
        if isinstance(m.get("content"), str)
    ]


def _prompt_text(messages: list[dict[str, Any]]) -> str | None:
    # The prompt under evaluation is the last thing the user said; without roles, all of it.
    users = [m["text"] for m in messages if m.get("role") in _USER_ROLES]
    if users:
        return str(users[-1])
    texts = [m["text"] for m in messages if m.get("role") not in ("system", "developer")]
    return "\n\n".join(texts) if texts else None


def _event_content(attrs: Mapping[str, Any], body_keys: Sequence[str]) -> Any:
    for key in body_keys:
        if key in attrs and attrs[key] is not None:
            return attrs[key]
    return None


def _span_messages(
    span: Mapping[str, Any], attrs: Mapping[str, Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The span's input and output messages, from whichever convention recorded them.

    Newest first: the ``gen_ai.input/output.messages`` attributes (or the operation-details
    event), then the per-message events, then the older flattened and plain attributes.

    Args:
        span: An OTLP JSON span.
        attrs: Its attributes, decoded.

    Returns:
        The prompt messages and the output messages, each a list of {role, text}.
    """
    prompt_msgs: list[dict[str, Any]] = []
    output_msgs: list[dict[str, Any]] = []
    if attrs.get("gen_ai.input.messages") is not None:
        prompt_msgs = _messages(attrs["gen_ai.input.messages"])
    if attrs.get("gen_ai.output.messages") is not None:
        output_msgs = _messages(attrs["gen_ai.output.messages"])
    for ev in span.get("events") or []:
        name = str(ev.get("name", ""))
        ev_attrs = attributes(ev.get("attributes"))
        if name == "gen_ai.client.inference.operation.details":
            if not prompt_msgs and ev_attrs.get("gen_ai.input.messages") is not None:
                prompt_msgs = _messages(ev_attrs["gen_ai.input.messages"])
            if not output_msgs and ev_attrs.get("gen_ai.output.messages") is not None:
                output_msgs = _messages(ev_attrs["gen_ai.output.messages"])
        elif name == "gen_ai.content.prompt":
            body = _event_content(ev_attrs, ("gen_ai.prompt", "content", "body"))
            prompt_msgs += _messages(body)
        elif name == "gen_ai.content.completion":
            body = _event_content(ev_attrs, ("gen_ai.completion", "content", "body"))
            output_msgs += _messages(body)
        elif name in (
            "gen_ai.user.message",
            "gen_ai.system.message",
            "gen_ai.assistant.message",
            "gen_ai.tool.message",
        ):
            body = _event_content(ev_attrs, ("gen_ai.event.content", "content", "body"))
            role = name.split(".")[1]
            prompt_msgs += [
                {"role": m.get("role") or role, "text": m["text"]} for m in _messages(body)
            ]
        elif name == "gen_ai.choice":
            body = _event_content(ev_attrs, ("gen_ai.event.content", "message", "content", "body"))
            index = ev_attrs.get("index", 0)
            if index in (0, None, "0"):
                output_msgs += _messages(body)
    if not prompt_msgs:
        prompt_msgs = _indexed(attrs, "gen_ai.prompt")
    if not prompt_msgs and attrs.get("gen_ai.prompt") is not None:
        prompt_msgs = _messages(attrs["gen_ai.prompt"])
    if not output_msgs:
        output_msgs = _indexed(attrs, "gen_ai.completion")
    if not output_msgs and attrs.get("gen_ai.completion") is not None:
        output_msgs = _messages(attrs["gen_ai.completion"])
    return prompt_msgs, output_msgs


def _otel_metadata(
    span: Mapping[str, Any], attrs: Mapping[str, Any], trace_id: str | None, span_id: str | None
) -> dict[str, Any]:
    """What the row keeps of the span under ``metadata.otel``: ids, operation, error."""
    otel_meta: dict[str, Any] = {
        "trace_id": trace_id,
        "span_id": span_id,
        "span_name": span.get("name"),
    }
    for key, field in (
        ("gen_ai.operation.name", "operation"),
        ("gen_ai.provider.name", "provider"),
        ("gen_ai.system", "provider"),
        ("gen_ai.response.finish_reasons", "finish_reasons"),
        ("gen_ai.conversation.id", "conversation_id"),
    ):
        if attrs.get(key) is not None and field not in otel_meta:
            otel_meta[field] = attrs[key]
    status = span.get("status") or {}
    if status.get("code") in _ERROR_STATUS:
        otel_meta["error"] = status.get("message") or "error"
    return otel_meta


def span_to_row(span: Mapping[str, Any], resource: Mapping[str, Any]) -> dict[str, Any] | None:
    """One traffic row from one GenAI span, or None for a span that is not a GenAI call.

    Args:
        span: An OTLP JSON span.
        resource: Its resource's attributes (``service.name`` becomes the row's ``app``).

    Returns:
        A traffic row in the canonical schema (unset fields absent), or None.

    Raises:
        ValueError: If the span's timestamps are not integers.

    Examples:
        >>> span = {"traceId": "ab" * 16, "spanId": "cd" * 8, "name": "chat m",
        ...         "startTimeUnixNano": "1700000000000000000",
        ...         "endTimeUnixNano": "1700000000250000000",
        ...         "attributes": [
        ...             {"key": "gen_ai.request.model", "value": {"stringValue": "m"}},
        ...             {"key": "gen_ai.prompt", "value": {"stringValue": "hi"}},
        ...             {"key": "gen_ai.completion", "value": {"stringValue": "hello"}}]}
        >>> row = span_to_row(span, {"service.name": "bot"})
        >>> row["app"], row["prompt"], row["response"], row["latency_ms"]
        ('bot', 'hi', 'hello', 250.0)
    """
    if not is_genai_span(span):
        return None
    attrs = attributes(span.get("attributes"))
    trace_id = span_id_hex(span.get("traceId"), 16)
    span_id = span_id_hex(span.get("spanId"), 8)
    start = _nanos(span.get("startTimeUnixNano"))
    end = _nanos(span.get("endTimeUnixNano"))
    prompt_msgs, output_msgs = _span_messages(span, attrs)
    request_model = attrs.get("gen_ai.request.model")
    response_model = attrs.get("gen_ai.response.model")
    row: dict[str, Any] = {
        "request_id": attrs.get("gen_ai.response.id")
        or (f"otel-{trace_id}-{span_id}" if trace_id and span_id else None),
        "app": resource.get("service.name"),
        "model_name": request_model or response_model,
        "model_version": response_model or request_model,
        "prompt": _prompt_text(prompt_msgs),
        "response": "\n\n".join(m["text"] for m in output_msgs) if output_msgs else None,
        "input_tokens": attrs.get(
            "gen_ai.usage.input_tokens", attrs.get("gen_ai.usage.prompt_tokens")
        ),
        "output_tokens": attrs.get(
            "gen_ai.usage.output_tokens", attrs.get("gen_ai.usage.completion_tokens")
        ),
        "session_id": attrs.get("gen_ai.conversation.id") or attrs.get("session.id"),
        "user_id": attrs.get("user.id") or attrs.get("enduser.id"),
        "metadata": {"otel": _otel_metadata(span, attrs, trace_id, span_id)},
    }
    if start is not None:
        row["timestamp"] = (
            datetime.fromtimestamp(start // 1_000_000_000, UTC)
            .replace(microsecond=(start % 1_000_000_000) // 1000)
            .isoformat()
            .replace("+00:00", "Z")
        )
        if end is not None:
            row["latency_ms"] = (end - start) / 1e6
    return {k: v for k, v in row.items() if v is not None}
