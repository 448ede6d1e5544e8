from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from evalwatch.core import ScoreStatus
from evalwatch.evaluators.base import Sample
from evalwatch.evaluators.heuristics import METRICS, HeuristicsEvaluator


def _scores(response: str, meta: dict[str, Any] | None = None, **options: Any) -> dict[str, Any]:
    ev = HeuristicsEvaluator(**options)
    out = ev.evaluate([Sample(subject_id=1, prompt="p", response=response, meta=meta or {})])
    assert [r.metric for r in out.scores] == METRICS
    return {r.metric: r for r in out.scores}


@pytest.mark.parametrize(
    ("response", "chars", "tokens"),
    [
        ("", 0, 0),
        ("abcd", 4, 1),
        ("abcde", 5, 2),
        ("é" * 9, 9, 3),
    ],
)
def test_lengths(response: str, chars: int, tokens: int) -> None:
    s = _scores(response)
    assert s["response_chars"].value == chars
    assert s["response_tokens_est"].value == tokens


@pytest.mark.parametrize(
    ("response", "empty"),
    [("", 1.0), ("   \n\t", 1.0), ("ok", 0.0), (" . ", 0.0)],
)
def test_empty_response(response: str, empty: float) -> None:
    assert _scores(response)["empty_response"].value == empty


@pytest.mark.parametrize(
    ("response", "refusal", "phrase"),
    [
        ("I'm sorry, but I can't help with that.", 1.0, "i'm sorry, but i can't"),
        ("I\u2019m unable to share that.", 1.0, "i'm unable to"),  # curly apostrophe
        ("AS AN AI LANGUAGE MODEL, I have no opinions.", 1.0, "as an ai language model"),
        ("Sure! Here is the recipe you asked for.", 0.0, None),
        ("Happy to help. " + "x" * 500 + " I cannot provide more.", 0.0, None),  # past window
    ],
)
def test_refusal_default_phrases(response: str, refusal: float, phrase: str | None) -> None:
    r = _scores(response)["refusal"]
    assert r.value == refusal
    assert (r.details or {}).get("phrase") == phrase


def test_refusal_phrases_and_window_are_configurable() -> None:
    text = "Nope, not doing that. " + "x" * 500 + " I cannot provide more."
    assert _scores(text, refusal_phrases=["nope, not doing"])["refusal"].value == 1.0
    assert _scores(text)["refusal"].value == 0.0
    assert _scores(text, refusal_window_chars=None)["refusal"].value == 1.0


def test_empty_refusal_phrase_is_rejected() -> None:
    with pytest.raises(ValidationError, match="must not be empty"):
        HeuristicsEvaluator(refusal_phrases=["  "])


@pytest.mark.parametrize(
    ("response", "meta", "status", "value"),
    [
        ('{"a": 1}', {"expects_json": True}, ScoreStatus.ok, 1.0),
        ("[1, 2, 3]", {"expects_json": True}, ScoreStatus.ok, 1.0),
        ('```json\n{"a": 1}\n```', {"expects_json": True}, ScoreStatus.ok, 1.0),
        ('{"a": 1,}', {"expects_json": True}, ScoreStatus.ok, 0.0),
        ("", {"expects_json": True}, ScoreStatus.ok, 0.0),
        ("Here you go: {'a': 1}", {"expects_json": True}, ScoreStatus.ok, 0.0),
        ('{"a": 1}', {}, ScoreStatus.skipped, None),
        ('{"a": 1}', {"expects_json": False}, ScoreStatus.skipped, None),
    ],
)
def test_json_valid(
    response: str, meta: dict[str, Any], status: ScoreStatus, value: float | None
) -> None:
    r = _scores(response, meta)["json_valid"]
    assert r.status == status
    assert r.value == value
    if status == ScoreStatus.skipped:
        assert r.reason == "sample does not expect JSON"
    elif value == 0.0:
        assert r.details and r.details["error"]


def test_json_code_fence_can_be_refused() -> None:
    fenced = '```json\n{"a": 1}\n```'
    r = _scores(fenced, {"expects_json": True}, json_allow_code_fence=False)["json_valid"]
    assert r.value == 0.0


@pytest.mark.parametrize(
    ("response", "leak", "kinds"),
    [
        ("Write to bob@example.com for access.", 1.0, {"email": 1}),
        ("Card 4111 1111 1111 1111 and 4111111111111112", 1.0, {"card": 1}),
        ("Use key sk-proj-abcdefghijklmnop1234 and server 10.1.2.3", 1.0, {"ip": 1, "secret": 1}),
        ("Call +1 415 555 0100 today", 1.0, {"phone": 1}),
        ("No personal data here, version 1.2.3.", 0.0, None),
    ],
)
def test_pii_leak(response: str, leak: float, kinds: dict[str, int] | None) -> None:
    r = _scores(response)["pii_leak"]
    assert r.value == leak
    if kinds is None:
        assert r.details is None
    else:
        assert r.details is not None
        assert r.details["kinds"] == kinds
        assert r.details["count"] == sum(kinds.values())


def test_pii_markers_left_by_ingest_count_as_leak() -> None:
    r = _scores("Contact [REDACTED:email] or [REDACTED:phone].")["pii_leak"]
    assert r.value == 1.0
    assert r.details == {"count": 2, "redacted_at_ingest": {"email": 1, "phone": 1}}


def test_pii_kinds_are_configurable_and_validated() -> None:
    text = "Write to bob@example.com"
    assert _scores(text, pii_kinds=["card"])["pii_leak"].value == 0.0
    with pytest.raises(ValidationError, match="unknown PII kinds"):
        HeuristicsEvaluator(pii_kinds=["ssn"])


def test_unknown_option_is_an_error() -> None:
    with pytest.raises(ValidationError):
        HeuristicsEvaluator(refusal_phrase=["typo"])
