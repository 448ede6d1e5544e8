from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from evalwatch.checks import validation as V
from evalwatch.checks.validation import (
    ValidationEngineError,
    coerce_feedback,
    coerce_traffic,
    parse_timestamp,
    reason_key,
    validate_feedback,
    validate_traffic,
)
from evalwatch.settings import IngestSettings

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
TS = "2026-11-01T00:00:00Z"
R1 = {"request_id": "r1"}


def _row(**kw):
    base = {
        "request_id": "r1",
        "timestamp": "2026-11-01T00:00:00Z",
        "app": "a",
        "model_name": "m",
        "model_version": "v1",
        "prompt": "hi",
        "response": "hello",
    }
    base.update(kw)
    return base


@pytest.mark.parametrize(
    ("changes", "reasons"),
    [
        ({}, []),
        ({"prompt": 3}, ["prompt: expected a string, got number"]),
        ({"response": ["a"]}, ["response: expected a string, got array"]),
        ({"latency_ms": "fast"}, ["latency_ms: expected a number ('fast')"]),
        ({"latency_ms": True}, ["latency_ms: expected a number, got boolean"]),
        ({"cost": float("inf")}, ["cost: not a finite number (inf)"]),
        ({"input_tokens": 1.5}, ["input_tokens: expected an integer (1.5)"]),
        ({"output_tokens": 10**10}, ["output_tokens: too large (10000000000)"]),
        ({"rating": "x"}, ["rating: expected an integer ('x')"]),
        ({"thumbs": 3}, ["thumbs: expected 'up' or 'down', got number"]),
        ({"timestamp": "soon"}, ["timestamp: not ISO-8601 ('soon')"]),
        ({"timestamp": 1.7e9}, ["timestamp: expected an ISO-8601 string, got number"]),
        ({"metadata": "x"}, ["metadata: expected an object, got string"]),
        ({"app": {"a": 1}}, ["app: expected a string, got object"]),
        ({"model_name": "m" * 201}, ["model_name: longer than 200 characters"]),
        ({"prompt": "a\x00b"}, ["prompt: contains NUL characters"]),
        ({"context": [1, 2]}, ["context: expected a string or a list of strings, got array"]),
    ],
)
def test_type_checks_give_reasons(changes, reasons):
    coerced = coerce_traffic([_row(**changes)])
    assert coerced.reasons == [reasons]


def test_coercion_reads_numeric_text_and_aliases_values():
    c = coerce_traffic(
        [
            _row(
                request_id=17,
                user_id=5,
                latency_ms="12.5",
                input_tokens="7",
                output_tokens=3.0,
                rating="4",
                thumbs=True,
                context=["a", "b"],
                timestamp="2026-11-01T02:00:00+02:00",
                metadata={"k": 1},
                _extra={"team": "x", "k": 0},
            )
        ]
    )
    row = c.rows[0]
    assert row is not None
    assert c.reasons == [[]]
    assert row["request_id"] == "17" and row["user_id"] == "5"
    assert (row["latency_ms"], row["input_tokens"], row["output_tokens"]) == (12.5, 7, 3)
    assert row["rating"] == 4 and row["thumbs"] == "up"
    assert row["context"] == "a\n\nb"
    assert row["ts"] == datetime(2026, 11, 1, 0, 0, tzinfo=UTC)
    assert row["metadata"] == {"team": "x", "k": 1}  # the row's own metadata wins


def test_blank_identifiers_count_as_missing():
    c = validate_traffic([_row(app="  ", model_version="")], IngestSettings(), NOW)
    assert c.reasons == [["app: missing", "model_version: missing"]]


@pytest.mark.parametrize(
    ("changes", "reasons"),
    [
        ({"timestamp": None}, ["timestamp: missing"]),
        ({"prompt": None, "response": None}, ["prompt: missing", "response: missing"]),
        ({"prompt": ""}, ["prompt: length outside 1..2000000 characters"]),
        ({"timestamp": "2026-11-27T12:10:00Z"}, ["timestamp: in the future"]),
        ({"timestamp": "2026-11-27T12:04:00Z"}, []),  # within the 300 s tolerance
        ({"rating": 0}, ["rating: outside the 1..5 scale"]),
        ({"rating": 5, "thumbs": "down"}, []),
        ({"thumbs": "meh"}, ["thumbs: not 'up' or 'down'"]),
        ({"latency_ms": -1}, ["latency_ms: negative"]),
        ({"input_tokens": -1, "cost": -0.5}, ["input_tokens: negative", "cost: negative"]),
        (
            {"timestamp": "2099-01-01T00:00:00Z", "rating": 6, "latency_ms": -2},
            ["timestamp: in the future", "rating: outside the 1..5 scale", "latency_ms: negative"],
        ),
        # A wrong type is reported once, not also as "missing".
        ({"prompt": 5}, ["prompt: expected a string, got number"]),
    ],
)
def test_great_expectations_checks(changes, reasons):
    result = validate_traffic([_row(**changes)], IngestSettings(), NOW)
    assert sorted(result.reasons[0]) == sorted(reasons)


def test_bounds_come_from_settings():
    settings = IngestSettings(
        max_prompt_chars=10,
        max_response_chars=3,
        rating_min=0,
        rating_max=10,
        max_future_skew_s=3600,
    )
    rows = [
        _row(prompt="x" * 11, response="long", rating=0, timestamp="2026-11-27T12:30:00Z"),
        _row(request_id="r2", prompt="x" * 10, response="ok", rating=10),
    ]
    result = validate_traffic(rows, settings, NOW)
    assert sorted(result.reasons[0]) == [
        "prompt: length outside 1..10 characters",
        "response: longer than 3 characters",
    ]
    assert result.reasons[1] == []


def test_request_ids_must_be_unique_within_a_chunk():
    rows = [_row(), _row(prompt="other"), _row(request_id="r2"), _row(request_id=None)]
    result = validate_traffic(rows, IngestSettings(), NOW)
    assert result.reasons == [["request_id: not unique"], ["request_id: not unique"], [], []]


def test_many_rows_map_failures_to_the_right_rows():
    rows: list[Any] = [
        _row(request_id=f"r{i}", latency_ms=-1 if i % 97 == 0 else 5) for i in range(3000)
    ]
    rows[1234]["rating"] = 42
    rows.insert(10, "not a row")
    result = validate_traffic(rows, IngestSettings(), NOW)
    failing = {i for i, r in enumerate(result.reasons) if r}
    expected = {i + (i >= 10) for i in range(3000) if i % 97 == 0} | {1235, 10}
    assert failing == expected
    assert result.reasons[1235] == ["rating: outside the 1..5 scale"]
    assert result.reasons[10] == ["row: expected an object, got string"]


def test_empty_chunks_validate():
    assert validate_traffic([], IngestSettings(), NOW).reasons == []
    assert validate_traffic([None], IngestSettings(), NOW).reasons == [
        ["row: expected an object, got NoneType"]
    ]


def test_the_context_is_built_once_with_progress_bars_off():
    first = V._engine()
    validate_traffic([_row()], IngestSettings(), NOW)
    assert V._engine() is first
    bars = first.context.variables.progress_bars
    assert bars is not None and bars.globally is False


def test_an_expectation_that_cannot_run_is_an_error_not_a_pass():
    gxe = pytest.importorskip("great_expectations.expectations")
    suite = V._suite(
        "broken",
        [gxe.ExpectColumnValuesToNotBeNull(column="nope", meta={"field": "x", "reason": "x"})],
    )
    with pytest.raises(ValidationEngineError, match="could not run"):
        V._engine().failures(pd.DataFrame({"a": [1]}), suite, {})


@pytest.mark.parametrize(
    ("row", "reasons"),
    [
        ({**R1, "kind": "rating", "value": 4}, []),
        ({**R1, "kind": "rating", "value": 9}, ["value: rating outside the 1..5 scale"]),
        ({**R1, "kind": "rating"}, ["value: missing"]),
        ({**R1, "kind": "rating", "value": 4.5}, ["value: expected an integer (4.5)"]),
        ({**R1, "kind": "thumbs", "value": "up"}, []),
        ({**R1, "kind": "thumbs", "value": False}, []),
        ({**R1, "kind": "thumbs", "value": "meh"}, ["value: thumbs not 'up' or 'down'"]),
        ({**R1, "kind": "thumbs"}, ["value: missing"]),
        ({**R1, "kind": "follow_up", "value": "and then?"}, []),
        ({**R1, "kind": "abandon"}, []),
        (
            {**R1, "kind": "like"},
            ["kind: not one of rating, thumbs, time_to_rate, follow_up, copy, refinement, abandon"],
        ),
        ({"kind": "abandon"}, ["request_id: missing"]),
        ({"request_id": "r1"}, ["kind: missing"]),
        ({**R1, "kind": "abandon", "timestamp": None}, ["timestamp: missing"]),
        (
            {"request_id": "r1", "kind": "abandon", "timestamp": "2099-01-01T00:00:00Z"},
            ["timestamp: in the future"],
        ),
        ({**R1, "kind": "abandon", "comment": 5}, ["comment: expected a string, got number"]),
    ],
)
def test_feedback_checks(row, reasons):
    row = {"timestamp": "2026-11-01T00:00:00Z", **row}
    assert sorted(validate_feedback([row], IngestSettings(), NOW).reasons[0]) == sorted(reasons)


def test_feedback_values():
    c = coerce_feedback(
        [
            {"request_id": 7, "kind": "Thumbs", "value": "down", "timestamp": TS},
            {"request_id": "r", "kind": "rating", "value": "5", "timestamp": TS},
        ]
    )
    first, second = c.rows
    assert first is not None and second is not None
    assert (first["request_id"], first["kind"], first["value"], first["label"]) == (
        "7",
        "thumbs",
        0.0,
        "down",
    )
    assert second["value"] == 5.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-01T10:00:00Z", datetime(2026, 11, 1, 10, tzinfo=UTC)),
        ("2026-11-01 10:00:00", datetime(2026, 11, 1, 10, tzinfo=UTC)),
        ("2026-11-01T12:00:00+02:00", datetime(2026, 11, 1, 10, tzinfo=UTC)),
        (datetime(2026, 11, 1, 10), datetime(2026, 11, 1, 10, tzinfo=UTC)),
        ("2026-13-01", "not ISO-8601 ('2026-13-01')"),
        (None, "expected an ISO-8601 string, got NoneType"),
    ],
)
def test_parse_timestamp(value, expected):
    assert parse_timestamp(value) == expected


def test_reason_key_strips_details():
    assert reason_key("request_id: not unique (first used on line 3)") == "request_id: not unique"
    assert reason_key("prompt: missing") == "prompt: missing"


def test_now_defaults_to_the_clock():
    soon = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    assert validate_traffic([_row(timestamp=soon)], IngestSettings()).reasons == [
        ["timestamp: in the future"]
    ]


def test_fast_path_gives_the_same_rows_as_the_long_way():
    rows = [
        _row(),
        _row(
            request_id=None,
            user_id="u",
            session_id="s",
            latency_ms=3,
            cost=0.5,
            input_tokens=1,
            output_tokens=2,
            rating=5,
            thumbs="down",
            context="c",
            reference="r",
            metadata={"a": [1, {"b": None}]},
        ),
        _row(timestamp="2026-11-01T02:00:00+02:00", latency_ms=1.5),
        _row(timestamp="2026-11-01 00:00:00", prompt="", response=""),
        # These take the long way even without the marker; they must agree too.
        _row(thumbs="UP"),
        _row(rating=True),
        _row(request_id=7),
        _row(app=" "),
        _row(latency_ms="3"),
        _row(timestamp="bad"),
        _row(prompt=None),
    ]
    fast = coerce_traffic(rows)
    # An (empty) unknown-fields marker sends every row the long way.
    slow = coerce_traffic([{**r, "_extra": {}} for r in rows])
    assert fast.rows == slow.rows
    assert fast.reasons == slow.reasons
    assert fast.bad_fields == slow.bad_fields
    assert V._fast_traffic_row(rows[1]) is not None  # the fast path is taken for clean rows
    assert V._fast_traffic_row(rows[4]) is None
