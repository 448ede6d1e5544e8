"""Writes datasets/bad_traffic.jsonl and its expected outcomes (one per line)."""

import json
from collections import Counter
from pathlib import Path
from typing import Any


def row(**kw):
    base = {
        "request_id": None,
        "timestamp": "2026-10-01T12:00:00Z",
        "app": "support-bot",
        "model_name": "acme-chat",
        "model_version": "v1.0",
        "prompt": "Where is my order?",
        "response": "It ships tomorrow.",
        "context": None,
        "reference": None,
        "latency_ms": 812.5,
        "input_tokens": 120,
        "output_tokens": 24,
        "cost": 0.0002,
        "user_id": "user_00001",
        "session_id": "sess_000001",
        "rating": None,
        "thumbs": None,
        "metadata": {"topic": "shipping"},
    }
    base.update(kw)
    return base


def j(obj):
    return json.dumps(obj, ensure_ascii=False).encode()


lines: list[tuple[bytes, dict[str, Any]]] = []  # (bytes, expected)


def add(b, outcome, reasons=(), note=""):
    lines.append((b, {"outcome": outcome, "reasons": list(reasons), "case": note}))


add(j(row(request_id="bad-001")), "stored", note="a valid row")
add(
    j(
        row(
            request_id="bad-002",
            prompt="I'm jane.doe@example.com, call me on +1 415-555-0100; card 4111 1111 1111 1111, from 203.0.113.7",
            response="Noted. Your key sk-proj-abcdefghijklmnopqrstuv1234 is now revoked.",
        )
    ),
    "stored",
    note="PII and a secret in prompt and response: stored redacted",
)
add(
    b'{"request_id": "bad-003", "timestamp": "2026-10-01T12:00:00Z", "prompt": "cut off',
    "quarantined",
    ["malformed JSON"],
    "malformed JSON (truncated line)",
)
add(b"", "skipped", ["blank line"], "an empty line")
add(
    b'["bad-005", "a JSON array"]',
    "quarantined",
    ["row: expected an object"],
    "JSON array instead of an object",
)
add(b'"just a string"', "quarantined", ["row: expected an object"], "JSON scalar")
add(
    j(
        row(
            request_id="bad-007",
            prompt=42,
            latency_ms="fast",
            input_tokens=12.5,
            metadata="topic=billing",
        )
    ),
    "quarantined",
    [
        "prompt: expected a string",
        "latency_ms: expected a number",
        "input_tokens: expected an integer",
        "metadata: expected an object",
    ],
    "wrong types in four fields",
)
add(
    j({"request_id": "bad-008", "prompt": "only a prompt"}),
    "quarantined",
    [
        "timestamp: missing",
        "app: missing",
        "model_name: missing",
        "model_version: missing",
        "response: missing",
    ],
    "missing required fields",
)
add(
    j(row(request_id="bad-009", prompt="PLACEHOLDER")).replace(
        b"PLACEHOLDER", b"Caf\xe9 au lait, s'il vous pla\xeet"
    ),
    "stored",
    note="latin-1 bytes (not UTF-8): decoded with U+FFFD and flagged",
)
add(
    j(
        row(
            request_id="bad-010",
            prompt="please summarise: "
            + ("lorem ipsum dolor sit amet " * 38_836)[: 1_048_576 - 18],
        )
    ),
    "stored",
    note="a 1 MiB prompt",
)
add(
    j(
        {
            "id": "bad-011",
            "ts": "2026-10-02T08:30:00+02:00",
            "application": "sales-assistant",
            "model": "acme-chat",
            "version": "v1.1",
            "input": "Do you ship to Norway?",
            "output": "Yes, in 3-5 days.",
            "latency_s": 0.64,
            "prompt_tokens": 40,
            "completion_tokens": 9,
            "user": "user_00002",
        }
    ),
    "stored",
    note="mixed schema: aliases (id, ts, application, model, version, input, output, latency_s, ...)",
)
add(
    j(row(request_id="bad-012", timestamp="2099-01-01T00:00:00Z")),
    "quarantined",
    ["timestamp: in the future"],
    "future timestamp",
)
add(
    j(row(request_id="bad-013", latency_ms=-35.0)),
    "quarantined",
    ["latency_ms: negative"],
    "negative latency",
)
add(
    j(row(request_id="bad-014", rating=9)),
    "quarantined",
    ["rating: outside the 1..5 scale"],
    "rating out of scale",
)
add(j(row(request_id="bad-001")), "duplicate", note="the same request id and content as line 1")
add(
    j(row(request_id="bad-001", response="A different answer.")),
    "quarantined",
    ["request_id: not unique"],
    "the request id of line 1 with different content",
)
add(
    j(row(request_id="bad-017", timestamp="yesterday")),
    "quarantined",
    ["timestamp: not ISO-8601"],
    "unparseable timestamp",
)
add(
    j(row(request_id="bad-018", prompt="")),
    "quarantined",
    ["prompt: length outside"],
    "empty prompt",
)
add(
    j(row(request_id="bad-019", thumbs="sideways")),
    "quarantined",
    ["thumbs: not 'up' or 'down'"],
    "bad thumbs",
)
add(
    j(row(prompt="no request id here", timestamp="2026-10-03T09:00:00Z")),
    "stored",
    note="no request id: a content-derived id is given",
)
add(
    j(row(prompt="no request id here", timestamp="2026-10-03T09:00:00Z")),
    "duplicate",
    note="the same row again: the same derived id",
)
add(
    j(row(request_id="bad-022", latency_ms=1.0)).replace(
        b'"latency_ms": 1.0', b'"latency_ms": NaN'
    ),
    "quarantined",
    ["latency_ms: not a finite number"],
    "NaN latency",
)
add(
    j(row(request_id="bad-023", rating=True)),
    "quarantined",
    ["rating: expected an integer"],
    "boolean rating",
)
add(b"   \t ", "skipped", ["blank line"], "a whitespace-only line")
add(
    j(row(request_id="bad-025", rating=5, thumbs="up")),
    "stored",
    note="rating and thumbs: two feedback rows",
)
add(
    j(row(request_id="bad-026", output_tokens=-3, cost=-0.01)),
    "quarantined",
    ["output_tokens: negative", "cost: negative"],
    "negative tokens and cost",
)
add(b"null", "quarantined", ["row: expected an object"], "JSON null")
add(
    j(row(request_id="bad-028", team="payments", region="eu-west")),
    "stored",
    note="unknown fields are kept in metadata",
)
add(
    j(row(request_id="bad-029", timestamp="2099-06-01T00:00:00Z", rating=0, latency_ms=-1)),
    "quarantined",
    ["timestamp: in the future", "rating: outside the 1..5 scale", "latency_ms: negative"],
    "three problems at once",
)
add(
    j(row(request_id="bad-030", timestamp=1790000000)),
    "quarantined",
    ["timestamp: expected an ISO-8601 string"],
    "epoch number as timestamp",
)
add(
    j(row(request_id="bad-031", prompt="X")).replace(
        b'"prompt": "X"', b'"prompt": "bad \\ud800 surrogate"'
    ),
    "quarantined",
    ["lone surrogate"],
    "a lone UTF-16 surrogate escape",
)
add(
    j(row(request_id="bad-032", prompt="nul \u0000 inside")).replace(b"\x00", b"\\u0000"),
    "quarantined",
    ["prompt: contains NUL characters"],
    "a NUL character in the prompt",
)
add(
    j(row(request_id="bad-033", model_name="m" * 300)),
    "quarantined",
    ["model_name: longer than 200"],
    "an identifier too long for the store",
)
add(
    j(row(request_id="bad-034", context=["Refunds take 5-7 days.", "Shipping is free over $50."])),
    "stored",
    note="context as a list of passages",
)
add(
    j(row(request_id="bad-035", input_tokens=10**12)),
    "quarantined",
    ["input_tokens: too large"],
    "a token count beyond a 32-bit integer",
)
add(j(row(request_id="bad-036")) + b"\r", "stored", note="a Windows line ending")
add(
    b'{"request_id": "bad-037", "prompt": "x",}',
    "quarantined",
    ["malformed JSON"],
    "trailing comma",
)
add(
    b"request_id,prompt,response", "quarantined", ["malformed JSON"], "a CSV header in a JSONL file"
)
add(
    j(row(request_id="bad-039", response="")),
    "stored",
    note="an empty response is a (bad) answer, stored",
)
add(
    j(row(request_id="bad-040", user_id=12345, session_id=None, rating="4")),
    "stored",
    note="numeric user id and numeric-text rating are read",
)

DATA = Path(__file__).resolve().parent.parent / "datasets"
out = DATA / "bad_traffic.jsonl"
with out.open("wb") as f:
    for b, _ in lines:
        f.write(b + b"\n")
expected: dict[str, Any] = {
    "file": "bad_traffic.jsonl",
    "description": "Expected outcome of `evalwatch ingest datasets/bad_traffic.jsonl` for every line "
    "(1-based), with default settings. Outcomes: stored, duplicate (already stored, "
    "nothing new), quarantined (with these reason substrings among its reasons; "
    "the reasons list is complete for quarantined lines), skipped (not a row).",
    "totals": {},
    "lines": {str(i): e for i, (_, e) in enumerate(lines, start=1)},
}
c = Counter(e["outcome"] for _, e in lines)
expected["totals"] = {k: c.get(k, 0) for k in ("stored", "duplicate", "quarantined", "skipped")}
expected["feedback"] = 3  # bad-025: rating + thumbs; bad-040: rating
(DATA / "bad_traffic.expected.json").write_text(
    json.dumps(expected, indent=2, ensure_ascii=False) + "\n"
)
print(len(lines), expected["totals"], out.stat().st_size)
