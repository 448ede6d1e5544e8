from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from evalwatch.core import ScoreStatus
from evalwatch.evaluators.base import EvaluatorUnavailable, Sample
from evalwatch.evaluators.embedding import (
    DEFAULT_MODEL_ID,
    EmbeddingEvaluator,
    default_model_path,
)

PAIRS = [
    ("How do I reset my password?", "Open Settings, choose Security, then Reset password.", None),
    ("What is the capital of France?", "Paris is the capital of France.", "Paris"),
    ("What is the capital of France?", "Bananas are rich in potassium.", "Paris"),
    ("Translate 'cat' into German.", "Katze", "Die Katze"),
    ("Summarise the meeting.", "", "The team agreed to ship on Friday."),
    (
        "Explain photosynthesis in detail.",
        "Photosynthesis converts light energy into chemical energy. " * 40,
        None,
    ),
]


@pytest.fixture(scope="module")
def ev() -> EmbeddingEvaluator:
    e = EmbeddingEvaluator(device="cpu", batch_size=4)
    e.load()
    return e


def _samples() -> list[Sample]:
    return [
        Sample(subject_id=i, prompt=p, response=r, reference=ref)
        for i, (p, r, ref) in enumerate(PAIRS)
    ]


def test_default_model_is_the_bundled_minilm(ev: EmbeddingEvaluator) -> None:
    path = default_model_path()
    assert path is not None and (path / "model.safetensors").is_file()
    assert ev.model_path == str(path)
    assert ev.model_id == DEFAULT_MODEL_ID
    assert ev.config.model is None  # the config (and its hash) holds no machine path
    assert ev.device == "cpu" and ev.dtype == "float32"
    assert EmbeddingEvaluator(device="cpu").batch_size == 32


def test_scores_match_raw_sentence_transformer(ev: EmbeddingEvaluator) -> None:
    samples = _samples()
    out = ev.evaluate(samples)
    model = ev.model
    p = model.encode([s.prompt for s in samples], normalize_embeddings=True)
    r = model.encode([s.response for s in samples], normalize_embeddings=True)
    by = {(x.subject_id, x.metric): x for x in out.scores}
    for i, s in enumerate(samples):
        rel = by[(i, "relevance")]
        if s.response:
            assert rel.status == ScoreStatus.ok
            assert rel.value == pytest.approx(float(p[i] @ r[i]), abs=1e-4)
        else:
            assert rel.status == ScoreStatus.skipped and rel.reason == "empty response"
        ref = by[(i, "reference_similarity")]
        if s.reference is None:
            assert ref.status == ScoreStatus.skipped and ref.reason == "no reference"
        elif s.response:
            expected = float(r[i] @ model.encode(s.reference, normalize_embeddings=True))
            assert ref.value == pytest.approx(expected, abs=1e-4)
    # The response embeddings come back in input order, unit-normalised.
    assert out.embeddings is not None and out.embeddings.shape == (len(samples), 384)
    assert out.embeddings.dtype == np.float32
    np.testing.assert_allclose(out.embeddings, r, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(out.embeddings, axis=1), 1.0, atol=1e-4)


def test_relevance_ranks_on_topic_answers_higher(ev: EmbeddingEvaluator) -> None:
    out = ev.evaluate(_samples())
    by = {(x.subject_id, x.metric): x.value for x in out.scores if x.value is not None}
    assert by[(1, "relevance")] > by[(2, "relevance")] + 0.3
    assert by[(1, "reference_similarity")] > by[(2, "reference_similarity")] + 0.3


def test_results_do_not_depend_on_batch_composition(ev: EmbeddingEvaluator) -> None:
    samples = _samples()
    together = ev.evaluate(samples)
    alone = [x for s in samples for x in ev.evaluate([s]).scores]
    assert [(x.subject_id, x.metric) for x in together.scores] == [
        (x.subject_id, x.metric) for x in alone
    ]
    for a, b in zip(together.scores, alone, strict=True):
        assert a.status == b.status
        if a.value is not None:
            assert a.value == pytest.approx(b.value, abs=1e-4)


def test_counts_the_tokens_the_model_processed(ev: EmbeddingEvaluator) -> None:
    samples = _samples()
    out = ev.evaluate(samples)
    tok = ev.model.tokenizer
    texts = [s.prompt for s in samples] + [s.response for s in samples]
    texts += [s.reference for s in samples if s.reference]
    limit = ev.model.max_seq_length
    expected = sum(min(len(ids), limit) for ids in tok(texts)["input_ids"])
    assert out.n_tokens == expected


def test_model_is_loaded_once_per_process(ev: EmbeddingEvaluator) -> None:
    other = EmbeddingEvaluator(device="cpu", batch_size=16)
    other.load()
    assert other.model is ev.model
    # batch_size is runtime-only: the same scores, so the same score identity.
    assert other.provenance().config_hash == ev.provenance().config_hash
    assert other.provenance().config != ev.provenance().config


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"model": "/nonexistent/sentence-model"}, "evaluator_options.embedding.model"),
        ({"device": "cuda:99"}, "evaluator_options.embedding"),
    ],
)
def test_unloadable_model_is_unavailable_naming_the_setting(
    options: dict[str, Any], needle: str
) -> None:
    e = EmbeddingEvaluator(None, **options)
    with pytest.raises(EvaluatorUnavailable, match=needle.replace(".", r"\.")):
        e.load()
