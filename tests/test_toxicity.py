"""The toxicity evaluator driven through detoxify's real Detoxify class, offline.

The model is a tiny random-weight BERT written in detoxify's own checkpoint format, with a local
base-model folder (config + the BERT WordPiece tokenizer of the bundled MiniLM).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from detoxify import Detoxify

from evaluators.base import EvaluatorUnavailable, Sample
from evaluators.toxicity import ToxicityEvaluator, build_random_checkpoint

ORIGINAL = ["toxicity", "severe_toxicity", "obscene", "threat", "insult", "identity_attack"]
MAX_LEN = 32

TEXTS = [
    "You are wonderful.",
    "",
    "I will find you.",
    "word " * 100,  # far past the 32-token limit
    "Thanks for the quick reply, that fixed it!",
    "short",
    "A medium length answer about the weather tomorrow in Paris and Berlin.",
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_random_checkpoint(
        tmp_path_factory.mktemp("detox"), size="tiny", max_length=MAX_LEN
    )


@pytest.fixture(scope="module")
def ev(tiny: tuple[Path, Path]) -> ToxicityEvaluator:
    ckpt, base = tiny
    e = ToxicityEvaluator(
        device="cpu", checkpoint=str(ckpt), huggingface_config_path=str(base), batch_size=2
    )
    e.load()
    return e


def _samples(texts: list[str] = TEXTS) -> list[Sample]:
    return [Sample(subject_id=i, prompt="p", response=t) for i, t in enumerate(texts)]


def test_labels_come_from_the_checkpoint_with_detoxify_names(ev: ToxicityEvaluator) -> None:
    assert isinstance(ev.detoxify, Detoxify)
    assert ev.labels == ORIGINAL
    assert ev.metrics == [*ORIGINAL, "safety"]
    assert ev.max_tokens == MAX_LEN


def test_scores_equal_detoxify_predict_and_safety_is_one_minus_max(
    ev: ToxicityEvaluator, tiny: tuple[Path, Path]
) -> None:
    out = ev.evaluate(_samples())
    # An independent Detoxify instance on the same checkpoint, one text at a time.
    ckpt, _ = tiny
    raw = Detoxify(checkpoint=str(ckpt), device="cpu")
    k = len(ev.metrics)
    for i, text in enumerate(TEXTS):
        got = {r.metric: float(r.value or 0.0) for r in out.scores[i * k : (i + 1) * k]}
        assert all(r.value is not None for r in out.scores[i * k : (i + 1) * k])
        want = raw.predict(text)
        for label in ORIGINAL:
            assert got[label] == pytest.approx(want[label], abs=1e-4)
        assert got["safety"] == pytest.approx(1.0 - max(got[lbl] for lbl in ORIGINAL), abs=1e-9)
    # The random model still tells texts apart, so the order check above means something.
    safeties = {round(r.value or 0.0, 3) for r in out.scores if r.metric == "safety"}
    assert len(safeties) >= 4


def test_results_keep_input_order_across_sorted_batches(ev: ToxicityEvaluator) -> None:
    samples = _samples()
    together = ev.evaluate(samples).scores
    reversed_ = ev.evaluate(list(reversed(samples))).scores
    k = len(ev.metrics)
    n = len(samples)
    for i in range(n):
        a = together[i * k : (i + 1) * k]
        b = reversed_[(n - 1 - i) * k : (n - i) * k]
        assert [r.subject_id for r in a] == [i] * k
        assert [r.subject_id for r in b] == [i] * k
        for x, y in zip(a, b, strict=True):
            assert x.metric == y.metric
            assert x.value == pytest.approx(y.value, abs=1e-4)


def test_truncation_is_recorded_with_the_full_token_count(ev: ToxicityEvaluator) -> None:
    out = ev.evaluate(_samples())
    tok = ev.detoxify.tokenizer
    full = len(tok(TEXTS[3], truncation=False, verbose=False)["input_ids"])
    assert full > MAX_LEN
    k = len(ev.metrics)
    for i, text in enumerate(TEXTS):
        details = [r.details for r in out.scores[i * k : (i + 1) * k]]
        if i == 3:
            assert all(
                d == {"truncated": True, "tokens": full, "max_tokens": MAX_LEN} for d in details
            )
        else:
            assert len(tok(text)["input_ids"]) <= MAX_LEN
            assert all(d is None for d in details)
    # Tokens processed: every text, capped at the limit.
    expected = sum(min(len(ids), MAX_LEN) for ids in tok(TEXTS)["input_ids"])
    assert out.n_tokens == expected


def test_max_length_option_truncates_earlier(tiny: tuple[Path, Path]) -> None:
    ckpt, base = tiny
    e = ToxicityEvaluator(
        device="cpu", checkpoint=str(ckpt), huggingface_config_path=str(base), max_length=8
    )
    out = e.evaluate(_samples(["one two three four five six seven eight nine ten", "hi"]))
    assert e.max_tokens == 8
    k = len(e.metrics)
    assert out.scores[0].details is not None and out.scores[0].details["truncated"] is True
    assert out.scores[0].details["tokens"] == 12  # ten words + [CLS] + [SEP]
    assert out.scores[k].details is None


def test_class_list_of_the_checkpoint_decides_the_metrics(tmp_path: Path) -> None:
    classes = [
        "toxicity",
        "severe_toxicity",
        "obscene",
        "identity_attack",
        "insult",
        "threat",
        "sexual_explicit",
    ]
    ckpt, _base = build_random_checkpoint(tmp_path, classes=classes, max_length=MAX_LEN)
    e = ToxicityEvaluator(model_type="unbiased", device="cpu", checkpoint=str(ckpt))
    assert e.metrics == [*classes, "safety"]  # documented labels before loading
    out = e.evaluate(_samples(["hello there"]))
    assert [r.metric for r in out.scores] == [*classes, "safety"]


def test_checkpoint_naming_a_hub_model_is_pointed_at_the_local_folder(
    tiny: tuple[Path, Path], tmp_path: Path
) -> None:
    # Real detoxify checkpoints record a Hub name (bert-base-uncased); offline, the base model
    # must come from huggingface_config_path without detoxify asking the Hub.
    ckpt, base = tiny
    loaded = torch.load(ckpt, weights_only=False)
    loaded["config"]["arch"]["args"]["model_type"] = "evalwatch-tests/no-such-model"
    hub_named = tmp_path / "hub-named.ckpt"
    torch.save(loaded, hub_named)

    e = ToxicityEvaluator(
        device="cpu", checkpoint=str(hub_named), huggingface_config_path=str(base)
    )
    out = e.evaluate(_samples(["hello"]))
    assert len(out.scores) == len(ORIGINAL) + 1

    missing = ToxicityEvaluator(device="cpu", checkpoint=str(hub_named))
    with pytest.raises(EvaluatorUnavailable, match=r"toxicity\.huggingface_config_path"):
        missing.load()


def test_without_a_checkpoint_it_is_unavailable_and_says_how_to_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    e = ToxicityEvaluator(device="cpu", model_type="multilingual")
    with pytest.raises(EvaluatorUnavailable, match=r"evaluator_options\.toxicity\.checkpoint"):
        e.load()


def test_checkpoint_in_torch_hub_cache_is_used_offline(
    tiny: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Where detoxify's own download would have put the 'original' checkpoint.
    hub = tmp_path / "torch-home" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    shutil.copy(tiny[0], hub / "toxic_original-c1212f89.ckpt")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    e = ToxicityEvaluator(device="cpu", model_type="original")
    out = e.evaluate(_samples(["hello"]))
    assert e.labels == ORIGINAL and len(out.scores) == 7


def test_missing_checkpoint_file_is_unavailable(tmp_path: Path) -> None:
    e = ToxicityEvaluator(device="cpu", checkpoint=str(tmp_path / "nope.ckpt"))
    with pytest.raises(EvaluatorUnavailable, match=r"toxicity\.checkpoint"):
        e.load()


def test_not_a_detoxify_checkpoint_is_unavailable(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ckpt"
    torch.save({"weights": torch.zeros(2)}, bad)
    e = ToxicityEvaluator(device="cpu", checkpoint=str(bad))
    with pytest.raises(EvaluatorUnavailable, match="not a detoxify checkpoint"):
        e.load()
