"""Tests for the bundled synthetic data in ``datasets/`` and its generator script.

The committed files must be exactly what ``scripts/generate_sample_data.py`` produces, and they
must carry the properties later checks rely on: a clear shift in the last three days (longer
answers, more refusals, a new topic), statistically alike shift-free windows, a sliced test set
with predictions from three models, and human labels that follow response quality.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import re
import string
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from scipy import stats

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ROOT / "datasets"
SCRIPT = ROOT / "scripts" / "generate_sample_data.py"
GENERATED_FILES = (
    "sample_traffic.jsonl",
    "support-qa.jsonl",
    "support-qa.predictions.baseline.jsonl",
    "support-qa.predictions.candidate-equivalent.jsonl",
    "support-qa.predictions.candidate-degraded.jsonl",
    "human_labels.jsonl",
)
PREDICTION_MODELS = {
    "baseline": "acme-chat-v1.0",
    "candidate-equivalent": "acme-chat-v1.1",
    "candidate-degraded": "acme-chat-v2.0-bad",
}
TRAFFIC_KEYS = {
    "timestamp",
    "app",
    "model_name",
    "model_version",
    "prompt",
    "response",
    "context",
    "reference",
    "latency_ms",
    "input_tokens",
    "output_tokens",
    "cost",
    "user_id",
    "session_id",
    "rating",
    "thumbs",
    "metadata",
}
REFUSAL_RE = re.compile(r"^(I'm sorry|I apologize|Unfortunately, I can't)")
INSULT_RE = re.compile(r"\b(idiot|idiots|stupid|moron|pathetic|dumbest|clown|clueless)\b", re.I)
EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
PHONE_RE = re.compile(r"(\+1 )?\(?\d{3}\)?[ -]555[ -]01\d\d")
CARD_RE = re.compile(r"\b(?:\d{4} ){3}\d{4}\b")


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_sample_data", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


gen = _load_generator()


def _read(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def _day(row: dict[str, Any]) -> int:
    return int(row["timestamp"][8:10])


def _window(rows: list[dict[str, Any]], first: int, last: int) -> list[dict[str, Any]]:
    return [r for r in rows if first <= _day(r) <= last]


def _mean(rows: list[dict[str, Any]], value: Callable[[dict[str, Any]], float]) -> float:
    assert rows, "empty window"
    return float(np.mean([value(r) for r in rows]))


def _share(rows: list[dict[str, Any]], flag: str) -> float:
    return _mean(rows, lambda r: float(flag in r["metadata"]["injected"]))


def _luhn_ok(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return total % 10 == 0


@pytest.fixture(scope="module")
def traffic() -> list[dict[str, Any]]:
    return _read(DATASETS / "sample_traffic.jsonl")


@pytest.fixture(scope="module")
def test_set() -> list[dict[str, Any]]:
    return _read(DATASETS / "support-qa.jsonl")


@pytest.fixture(scope="module")
def predictions() -> dict[str, list[dict[str, Any]]]:
    return {
        name: _read(DATASETS / f"support-qa.predictions.{name}.jsonl") for name in PREDICTION_MODELS
    }


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("regenerated")
    subprocess.run(
        [sys.executable, str(SCRIPT), "--out-dir", str(out)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return out


# ---------------------------------------------------------------------------- reproducibility


@pytest.mark.parametrize("name", GENERATED_FILES)
def test_committed_file_is_what_the_generator_writes(regenerated: Path, name: str) -> None:
    assert (regenerated / name).read_bytes() == (DATASETS / name).read_bytes(), (
        f"datasets/{name} is stale: rerun python scripts/generate_sample_data.py"
    )


def test_generator_help_lists_its_options() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--help"], check=True, capture_output=True, text=True
    )
    for option in ("--out-dir", "--seed", "--rows"):
        assert option in result.stdout


def test_datasets_stay_small() -> None:
    total = sum((DATASETS / name).stat().st_size for name in GENERATED_FILES)
    assert total < 8 * 1024 * 1024


def test_readme_documents_generator_and_degraded_slice() -> None:
    readme = (DATASETS / "README.md").read_text(encoding="utf-8")
    assert "scripts/generate_sample_data.py" in readme
    assert f"`{gen.DEGRADED_SLICE}`" in readme
    for name in GENERATED_FILES:
        assert name in readme


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


@pytest.mark.parametrize("intent", gen.INTENTS, ids=lambda i: i.name)
def test_answers_only_use_slots_the_question_provides(intent: Any) -> None:
    # An answer that names an order number the user never gave would be a hallucinated reference.
    common = set.intersection(*(_fields(p) for p in intent.prompts))
    allowed = set(common) | set(gen.LOOKUP_SLOTS)
    for slot in common:
        allowed |= set(gen.DERIVED_SLOTS.get(slot, ()))
    for template in (*intent.answers, *intent.wrong, *intent.details, intent.kb):
        assert _fields(template) <= allowed, (intent.name, template)
    assert len(intent.answers) >= 3


# ---------------------------------------------------------------------------- traffic basics


def test_traffic_rows_follow_the_schema(traffic: list[dict[str, Any]]) -> None:
    assert 4000 <= len(traffic) <= 6000
    for row in traffic:
        assert set(row) - {"request_id"} == TRAFFIC_KEYS
        assert row["app"] in {"support-bot", "sales-assistant"}
        assert row["model_name"] == "acme-chat"
        assert row["prompt"] and row["response"]
        assert row["reference"] is None
        assert row["rating"] is None or row["rating"] in {1, 2, 3, 4, 5}
        assert row["thumbs"] in {None, "up", "down"}
        assert row["latency_ms"] > 0 and row["input_tokens"] > 0 and row["output_tokens"] > 0
        assert isinstance(row["metadata"]["expects_json"], bool)


def test_timestamps_cover_fourteen_past_days_in_order(traffic: list[dict[str, Any]]) -> None:
    stamps = [datetime.fromisoformat(r["timestamp"]) for r in traffic]
    assert all(r["timestamp"].endswith("Z") for r in traffic)
    assert stamps == sorted(stamps)
    assert stamps[0] >= datetime(2026, 11, 1, tzinfo=UTC)
    assert stamps[-1] < datetime(2026, 11, 15, tzinfo=UTC) <= datetime.now(UTC)
    assert sorted({_day(r) for r in traffic}) == list(range(1, 15))


def test_volume_is_diurnal_and_even_across_days(traffic: list[dict[str, Any]]) -> None:
    hours = np.bincount([int(r["timestamp"][11:13]) for r in traffic], minlength=24)
    assert hours[12:19].sum() > 2.5 * hours[0:7].sum()
    per_day = np.bincount([_day(r) for r in traffic], minlength=15)[1:]
    assert per_day.min() > 0.75 * per_day.mean()


def test_request_ids_are_unique_and_rarely_missing(traffic: list[dict[str, Any]]) -> None:
    ids = [r["request_id"] for r in traffic if "request_id" in r]
    assert len(ids) == len(set(ids))
    assert 0.01 <= 1 - len(ids) / len(traffic) <= 0.035


def test_tokens_and_cost_follow_text_length(traffic: list[dict[str, Any]]) -> None:
    for row in traffic:
        expected = len(row["response"]) / 4
        assert 0.9 * expected - 1 <= row["output_tokens"] <= 1.1 * expected + 1
        cost = row["input_tokens"] * 0.60e-6 + row["output_tokens"] * 2.40e-6
        assert row["cost"] == pytest.approx(cost, abs=1e-8)
    tokens = [r["output_tokens"] for r in traffic]
    latency = [r["latency_ms"] for r in traffic]
    assert stats.spearmanr(tokens, latency).statistic > 0.6


def test_feedback_shares(traffic: list[dict[str, Any]]) -> None:
    assert 0.25 <= _mean(traffic, lambda r: float(r["rating"] is not None)) <= 0.35
    assert 0.10 <= _mean(traffic, lambda r: float(r["thumbs"] is not None)) <= 0.20
    good = [r["rating"] for r in traffic if r["rating"] and not r["metadata"]["injected"]]
    bad = [
        r["rating"]
        for r in traffic
        if r["rating"] and {"refusal", "toxic"} & set(r["metadata"]["injected"])
    ]
    assert np.mean(good) > np.mean(bad) + 1.5


def test_model_versions_roll_out_progressively(traffic: list[dict[str, Any]]) -> None:
    versions = Counter(r["model_version"] for r in traffic)
    assert set(versions) == {"v1.0", "v1.1", "v2.0-canary"}
    assert all(_day(r) >= 12 for r in traffic if r["model_version"] == "v2.0-canary")
    early, late = _window(traffic, 1, 3), _window(traffic, 9, 11)
    v11_early = _mean(early, lambda r: float(r["model_version"] == "v1.1"))
    v11_late = _mean(late, lambda r: float(r["model_version"] == "v1.1"))
    assert v11_late > v11_early + 0.3


# ---------------------------------------------------------------------------- injected content


def test_refusal_flags_match_the_text(traffic: list[dict[str, Any]]) -> None:
    for row in traffic:
        flagged = "refusal" in row["metadata"]["injected"]
        assert flagged == bool(REFUSAL_RE.match(row["response"])), row["response"]
    assert 0.02 <= _share(_window(traffic, 1, 11), "refusal") <= 0.045


def test_toxic_rows_are_insulting_and_only_they_are(traffic: list[dict[str, Any]]) -> None:
    for row in traffic:
        flagged = "toxic" in row["metadata"]["injected"]
        assert flagged == bool(INSULT_RE.search(row["response"])), row["response"]
    assert 0.005 <= _share(traffic, "toxic") <= 0.02


def test_json_rows_parse_unless_flagged_invalid(traffic: list[dict[str, Any]]) -> None:
    json_rows = [r for r in traffic if r["metadata"]["expects_json"]]
    assert 0.03 <= len(json_rows) / len(traffic) <= 0.07
    invalid = 0
    for row in json_rows:
        try:
            json.loads(row["response"])
            parsed = True
        except json.JSONDecodeError:
            parsed = False
        assert parsed != ("invalid_json" in row["metadata"]["injected"])
        invalid += not parsed
    assert 0.05 <= invalid / len(json_rows) <= 0.4


def test_pii_is_present_only_where_injected(traffic: list[dict[str, Any]]) -> None:
    email_rows = [r for r in traffic if EMAIL_RE.search(r["prompt"] + " " + r["response"])]
    phone_rows = [r for r in traffic if PHONE_RE.search(r["prompt"] + " " + r["response"])]
    assert len(email_rows) >= 20 and len(phone_rows) >= 20
    assert sum(bool(EMAIL_RE.search(r["response"])) for r in traffic) >= 10
    pii_flags = {"pii_prompt", "pii_response"}
    for row in email_rows + phone_rows:
        assert pii_flags & set(row["metadata"]["injected"])
    cards = [m.group(0) for r in traffic for m in CARD_RE.finditer(r["prompt"])]
    assert cards and all(_luhn_ok(c) for c in cards)
    assert any("pii_ip" in r["metadata"]["injected"] for r in traffic)
    assert any("sk-live-" in r["prompt"] for r in traffic)


# ---------------------------------------------------------------------------- the shift


def test_shift_makes_responses_longer_slower_and_costlier(traffic: list[dict[str, Any]]) -> None:
    before, after = _window(traffic, 1, 11), _window(traffic, 12, 14)

    def length(r: dict[str, Any]) -> float:
        return len(r["response"])

    assert 1.4 < _mean(after, length) / _mean(before, length) < 2.0
    for field in ("output_tokens", "latency_ms", "cost"):
        after_mean = float(np.mean([r[field] for r in after]))
        before_mean = float(np.mean([r[field] for r in before]))
        assert after_mean > 1.3 * before_mean, field


def test_shift_multiplies_refusals(traffic: list[dict[str, Any]]) -> None:
    before, after = _window(traffic, 1, 11), _window(traffic, 12, 14)
    assert _share(after, "refusal") >= 3 * _share(before, "refusal")


def test_new_topic_appears_only_in_the_last_three_days(traffic: list[dict[str, Any]]) -> None:
    crypto = [r for r in traffic if r["metadata"]["topic"] == "crypto"]
    assert crypto and all(_day(r) >= 12 for r in crypto)
    after = _window(traffic, 12, 14)
    assert 0.10 <= len(crypto) / len(after) <= 0.20
    words = re.compile(r"crypto|bitcoin|ethereum|solana|wallet|coin|token|staking|usdt", re.I)
    assert all(words.search(r["prompt"]) for r in crypto)
    assert not any(words.search(r["prompt"]) for r in _window(traffic, 1, 11))


def test_shift_free_windows_look_alike(traffic: list[dict[str, Any]]) -> None:
    first, second = _window(traffic, 1, 5), _window(traffic, 6, 10)
    len_a = _mean(first, lambda r: len(r["response"]))
    len_b = _mean(second, lambda r: len(r["response"]))
    assert abs(len_a / len_b - 1) < 0.05
    for field in ("latency_ms", "output_tokens"):
        sample_a = [r[field] for r in first]
        sample_b = [r[field] for r in second]
        assert stats.ks_2samp(sample_a, sample_b).pvalue > 0.05
    for flag in ("refusal", "toxic"):
        assert abs(_share(first, flag) - _share(second, flag)) < 0.015
    topics = sorted({r["metadata"]["topic"] for r in first + second})
    table = [[sum(r["metadata"]["topic"] == t for r in w) for t in topics] for w in (first, second)]
    assert stats.chi2_contingency(table).pvalue > 0.05


# ---------------------------------------------------------------------------- generate_traffic


START = datetime(2026, 6, 1, tzinfo=UTC)


def test_generate_traffic_is_deterministic_and_windowed() -> None:
    rows = list(gen.generate_traffic(600, START, 4, 11, 1))
    assert rows == list(gen.generate_traffic(600, START, 4, 11, 1))
    assert rows != list(gen.generate_traffic(600, START, 4, 12, 1))
    assert len(rows) == 600
    stamps = [datetime.fromisoformat(r["timestamp"]) for r in rows]
    assert min(stamps) >= START and max(stamps) < datetime(2026, 6, 5, tzinfo=UTC)
    crypto_days = {r["timestamp"][:10] for r in rows if r["metadata"]["topic"] == "crypto"}
    assert crypto_days == {"2026-06-04"}


def test_generate_traffic_without_shift_has_no_shift_markers() -> None:
    rows = list(gen.generate_traffic(800, START.replace(tzinfo=None), 2, 3, 0))
    assert all(r["timestamp"].startswith("2026-06-0") for r in rows)
    assert not any(r["metadata"]["topic"] == "crypto" for r in rows)
    assert not any(r["model_version"] == "v2.0-canary" for r in rows)


@pytest.mark.parametrize(
    ("n", "days", "shift"),
    [(-1, 3, 0), (10, 0, 0), (10, 3, 4), (10, 3, -1)],
)
def test_generate_traffic_rejects_bad_arguments(n: int, days: int, shift: int) -> None:
    with pytest.raises(ValueError):
        list(gen.generate_traffic(n, START, days, 1, shift))


# ---------------------------------------------------------------------------- test set


def test_test_set_has_enough_sliced_items(test_set: list[dict[str, Any]]) -> None:
    assert len(test_set) >= 240
    assert len({i["id"] for i in test_set}) == len(test_set)
    assert len({i["input"] for i in test_set}) == len(test_set)
    for item in test_set:
        assert set(item) == {"id", "input", "reference", "context", "tags"}
        assert item["input"] and item["reference"] and item["tags"]
    tags = Counter(t for item in test_set for t in item["tags"])
    assert sum(count >= 40 for count in tags.values()) >= 4
    with_context = sum(item["context"] is not None for item in test_set) / len(test_set)
    assert 0.2 <= with_context <= 0.6


@pytest.mark.parametrize("name", list(PREDICTION_MODELS))
def test_predictions_cover_every_item_once(
    name: str, test_set: list[dict[str, Any]], predictions: dict[str, list[dict[str, Any]]]
) -> None:
    rows = predictions[name]
    assert sorted(r["id"] for r in rows) == sorted(i["id"] for i in test_set)
    assert {r["model"] for r in rows} == {PREDICTION_MODELS[name]}
    assert all(isinstance(r["output"], str) and r["output"] for r in rows)


def _similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a.split(), b.split()).ratio()


def test_equivalent_candidate_paraphrases_without_drifting_from_reference(
    test_set: list[dict[str, Any]], predictions: dict[str, list[dict[str, Any]]]
) -> None:
    reference = {i["id"]: i["reference"] for i in test_set}
    base = {r["id"]: r["output"] for r in predictions["baseline"]}
    cand = {r["id"]: r["output"] for r in predictions["candidate-equivalent"]}
    assert all(base[k] != cand[k] for k in reference)
    base_sim = np.mean([_similarity(base[k], reference[k]) for k in reference])
    cand_sim = np.mean([_similarity(cand[k], reference[k]) for k in reference])
    assert abs(base_sim - cand_sim) < 0.05


def test_degraded_candidate_differs_only_in_its_slice(
    test_set: list[dict[str, Any]], predictions: dict[str, list[dict[str, Any]]]
) -> None:
    slice_ids = {i["id"] for i in test_set if gen.DEGRADED_SLICE in i["tags"]}
    reference = {i["id"]: i["reference"] for i in test_set}
    base = {r["id"]: r["output"] for r in predictions["baseline"]}
    bad = {r["id"]: r["output"] for r in predictions["candidate-degraded"]}
    assert len(slice_ids) >= 40
    for item_id in reference:
        assert (bad[item_id] != base[item_id]) == (item_id in slice_ids)
    base_sim = np.mean([_similarity(base[k], reference[k]) for k in slice_ids])
    bad_sim = np.mean([_similarity(bad[k], reference[k]) for k in slice_ids])
    assert bad_sim < base_sim - 0.2


# ---------------------------------------------------------------------------- human labels


def test_human_labels_spread_and_follow_quality() -> None:
    rows = _read(DATASETS / "human_labels.jsonl")
    assert len(rows) >= 120
    rubrics = Counter(r["rubric"] for r in rows)
    assert rubrics["helpfulness"] > rubrics["correctness"] >= 20
    assert all(r.get("reference") for r in rows if r["rubric"] == "correctness")
    scores = Counter(r["human_score"] for r in rows)
    assert set(scores) == {1, 2, 3, 4, 5} and min(scores.values()) >= 15
    for row in rows:
        empty = not row["response"].strip()
        if empty or REFUSAL_RE.match(row["response"]) or INSULT_RE.search(row["response"]):
            assert row["human_score"] <= 2, row
    high = [len(r["response"]) for r in rows if r["human_score"] == 5]
    low = [len(r["response"]) for r in rows if r["human_score"] == 1]
    assert np.mean(high) > 2 * np.mean(low)
    correctness = [r for r in rows if r["rubric"] == "correctness"]
    similarity = {r["id"]: _similarity(r["response"], r["reference"]) for r in correctness}
    good = [similarity[r["id"]] for r in correctness if r["human_score"] >= 4]
    poor = [similarity[r["id"]] for r in correctness if r["human_score"] <= 2]
    assert np.mean(good) > np.mean(poor)
