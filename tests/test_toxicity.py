"""The toxicity evaluator: detoxify's real Detoxify class offline, and the embedded backend.

The detoxify model is a tiny random-weight BERT written in detoxify's own checkpoint format,
with a local base-model folder (config + the BERT WordPiece tokenizer of the bundled MiniLM).
The embedded backend is the real alt-profanity-check model (its weights ship in the package).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from detoxify import Detoxify

from evalwatch.evaluators.base import EvaluatorUnavailable, Sample
from evalwatch.evaluators.toxicity import (
    EMBEDDED_BACKEND,
    ToxicityConfig,
    ToxicityEvaluator,
    build_random_checkpoint,
    downloads_allowed,
)

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
    assert ev.metric_names == [*ORIGINAL, "safety"]
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
    assert e.metric_names == [*classes, "safety"]  # documented labels before loading
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
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    e = ToxicityEvaluator(backend="detoxify", device="cpu", model_type="multilingual")
    with pytest.raises(
        EvaluatorUnavailable, match=r"evaluator_options\.toxicity\.checkpoint"
    ) as exc:
        e.load()
    assert "unset HF_HUB_OFFLINE" in str(exc.value)
    forbidden = ToxicityEvaluator(
        backend="detoxify", device="cpu", model_type="multilingual", allow_download=False
    )
    with pytest.raises(EvaluatorUnavailable, match=r"toxicity\.allow_download=true"):
        forbidden.load()


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


# ---------------------------------------------------------------------------------------------
# Choosing the backend, downloads, and the embedded model

CLEARLY = [
    ("you are an idiot, I hate you", "toxic"),
    ("go kill yourself", "toxic"),
    ("thank you, have a nice day", "friendly"),
    ("Thanks for the quick reply, that fixed it!", "friendly"),
]


@pytest.fixture
def no_detoxify_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An offline environment with an empty torch hub cache: detoxify's weights are absent."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_downloads_follow_the_hugging_face_offline_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    assert downloads_allowed(ToxicityConfig()) is True
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "yes")
    assert downloads_allowed(ToxicityConfig()) is False
    assert downloads_allowed(ToxicityConfig(allow_download=True)) is True
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    assert downloads_allowed(ToxicityConfig()) is True
    assert downloads_allowed(ToxicityConfig(allow_download=False)) is False


def test_auto_without_detoxify_weights_scores_with_the_embedded_model_and_says_why(
    no_detoxify_weights: None, caplog: pytest.LogCaptureFixture
) -> None:
    e = ToxicityEvaluator(device="cpu")
    # A warning the first time in a process, then at debug level (one per task otherwise).
    with caplog.at_level("DEBUG", logger="evalwatch.evaluators.toxicity"):
        e.load()
    assert e.backend == EMBEDDED_BACKEND
    assert e.metric_names == ["offensive", "safety"]  # no detoxify label it does not have
    assert e.source is not None
    assert "alt-profanity-check==" in e.source and "detoxify is not available" in e.source
    assert "HF_HUB_OFFLINE" in e.source  # names what to change to get detoxify
    assert any("embedded alt-profanity-check" in r.getMessage() for r in caplog.records)
    out = e.evaluate(_samples([t for t, _ in CLEARLY]))
    safety = {CLEARLY[r.subject_id][0]: r.value for r in out.scores if r.metric == "safety"}
    for text, kind in CLEARLY:
        value = safety[text]
        assert value is not None
        assert (value < 0.5) if kind == "toxic" else (value > 0.8), (text, value)


def test_embedded_scores_equal_the_package_and_keep_input_order(no_detoxify_weights: None) -> None:
    from profanity_check import predict_prob

    texts = [t for t, _ in CLEARLY] + TEXTS
    e = ToxicityEvaluator(backend="alt-profanity-check", batch_size=3)  # several batches
    out = e.evaluate(_samples(texts))
    want = predict_prob(texts)
    assert [r.metric for r in out.scores[:2]] == ["offensive", "safety"]
    assert [r.subject_id for r in out.scores] == [i for i in range(len(texts)) for _ in (0, 1)]
    for i in range(len(texts)):
        offensive, safety = out.scores[2 * i], out.scores[2 * i + 1]
        assert offensive.value == pytest.approx(want[i], abs=1e-12)
        assert safety.value == pytest.approx(1.0 - want[i], abs=1e-12)
    assert out.n_tokens is None  # TF-IDF counts words, not model tokens
    # A text without one known term gets the prior, and says so.
    empty = out.scores[2 * (len(CLEARLY) + 1)]
    assert empty.details is not None and empty.details["known_terms"] == 0
    assert out.scores[0].details is None


def test_the_backend_and_model_are_part_of_the_config_hash(
    tiny: tuple[Path, Path], no_detoxify_weights: None
) -> None:
    ckpt, base = tiny
    detox = ToxicityEvaluator(device="cpu", checkpoint=str(ckpt), huggingface_config_path=str(base))
    auto_embedded = ToxicityEvaluator(device="cpu")
    explicit = ToxicityEvaluator(device="cpu", backend="alt-profanity-check")
    p_detox, p_auto, p_explicit = (e.provenance() for e in (detox, auto_embedded, explicit))
    assert p_detox.config["backend"] == "detoxify"
    assert p_detox.config["model"] == "detoxify:original"
    assert p_auto.config["backend"] == EMBEDDED_BACKEND
    assert p_auto.config["model"].startswith("alt-profanity-check==")
    # auto records what it resolved to: the same scores as asking for that backend by name...
    assert p_auto.config_hash == p_explicit.config_hash
    # ...and never the same as the other backend's; the gate compares these options.
    assert p_auto.config_hash != p_detox.config_hash
    runtime = ToxicityConfig.runtime_fields()
    assert {"device", "dtype", "batch_size", "allow_download"} <= runtime
    assert not {"backend", "model", "model_type", "checkpoint"} & runtime
    # The recorded config rebuilds the same evaluator (as the gate does from a stored run).
    again = ToxicityEvaluator(**p_auto.config)
    assert again.provenance().config_hash == p_auto.config_hash


def test_a_pinned_model_that_does_not_load_is_unavailable(no_detoxify_weights: None) -> None:
    e = ToxicityEvaluator(backend="auto", model="alt-profanity-check==0.0.1")
    with pytest.raises(EvaluatorUnavailable, match=r"toxicity\.model pins"):
        e.load()
    # A pin of the detoxify model under auto asks for detoxify, not a silent fallback.
    d = ToxicityEvaluator(backend="auto", model="detoxify:original")
    with pytest.raises(EvaluatorUnavailable, match=r"toxicity\.checkpoint"):
        d.load()


def test_a_configured_checkpoint_that_fails_is_not_replaced(tmp_path: Path) -> None:
    e = ToxicityEvaluator(device="cpu", checkpoint=str(tmp_path / "nope.ckpt"))  # backend auto
    with pytest.raises(EvaluatorUnavailable, match=r"toxicity\.checkpoint"):
        e.load()


def test_online_default_downloads_detoxify_weights_and_says_so(
    tiny: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # detoxify's own download path (torch.hub) fed from a file:// URL: no network involved.
    import detoxify.detoxify as detox_module

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    served = tmp_path / "served" / "toxic_unbiased-test.ckpt"
    served.parent.mkdir()
    shutil.copy(tiny[0], served)
    monkeypatch.setitem(detox_module.MODEL_URLS, "unbiased", served.as_uri())
    e = ToxicityEvaluator(device="cpu", model_type="unbiased")
    with caplog.at_level("WARNING", logger="evalwatch.evaluators.toxicity"):
        out = e.evaluate(_samples(["hello"]))
    assert e.backend == "detoxify" and len(out.scores) == len(ORIGINAL) + 1
    assert e.source is not None and "downloaded" in e.source
    assert any("downloading detoxify" in r.getMessage() for r in caplog.records)
    assert (tmp_path / "torch-home" / "hub" / "checkpoints" / served.name).is_file()
    # The next process finds it in the cache and says so; offline it still loads.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cached = ToxicityEvaluator(device="cpu", model_type="unbiased", max_length=16)
    cached.load()
    assert cached.source is not None and "torch hub cache" in cached.source


def test_online_default_falls_back_when_the_download_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import detoxify.detoxify as detox_module

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    missing = (tmp_path / "nowhere" / "toxic_multi-test.ckpt").as_uri()
    monkeypatch.setitem(detox_module.MODEL_URLS, "multilingual", missing)
    e = ToxicityEvaluator(device="cpu", model_type="multilingual")
    e.load()
    assert e.backend == EMBEDDED_BACKEND
    assert e.source is not None and "detoxify could not load" in e.source


def test_the_fallback_is_said_once_per_process_not_per_task(
    no_detoxify_weights: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("DEBUG", logger="evalwatch.evaluators.toxicity"):
        for _ in range(3):  # a flow builds one evaluator per task
            ToxicityEvaluator(device="cpu", model_type="multilingual").load()
    said = [r for r in caplog.records if "embedded alt-profanity-check" in r.getMessage()]
    assert len(said) == 3
    assert sum(r.levelname == "WARNING" for r in said) <= 1


def test_a_non_finite_model_output_is_unscored_not_a_value(no_detoxify_weights: None) -> None:
    import numpy as np

    from evalwatch.evaluators._toxicity_embedded import EmbeddedModel

    e = ToxicityEvaluator(backend="alt-profanity-check")
    e.load()
    loaded = e.embedded_model
    assert loaded is not None
    real: EmbeddedModel = loaded

    class Broken(EmbeddedModel):
        def predict(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
            probs, terms = real.predict(texts)
            probs[1] = np.nan
            return probs, terms

    e._embedded = Broken(real.model_id, real.vectorizer, real.classifier)
    out = e.evaluate(_samples(["hello", "thank you", "you idiot"]))
    statuses = [(r.subject_id, r.metric, r.status, r.value is None) for r in out.scores]
    assert statuses[2:4] == [
        (1, "offensive", "error", True),
        (1, "safety", "error", True),
    ]
    assert all(r.status == "ok" and r.value is not None for r in out.scores if r.subject_id != 1)
    assert out.scores[2].reason == "non-finite model output"


def test_a_failed_download_under_auto_is_not_tried_again_by_the_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Each batch task builds its own evaluator; an unreachable host must cost one attempt.

    The download really runs (torch.hub over urllib) through a proxy that refuses at once, as
    a machine without internet would, after its timeout.
    """
    from evalwatch.evaluators import toxicity

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # discard port: connection refused
    monkeypatch.setattr(toxicity, "_DETOXIFY_FAILED", {})
    with caplog.at_level("WARNING", logger="evalwatch.evaluators.toxicity"):
        first = ToxicityEvaluator(device="cpu")
        first.load()
        second = ToxicityEvaluator(device="cpu")
        second.load()
    attempts = [r for r in caplog.records if "downloading detoxify" in r.getMessage()]
    assert len(attempts) == 1
    assert first.backend == second.backend == EMBEDDED_BACKEND
    assert second.source is not None and "detoxify is not available" in second.source
    # A place with other caches (another user, a fresh TORCH_HOME) tries again.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "other-torch-home"))
    with caplog.at_level("WARNING", logger="evalwatch.evaluators.toxicity"):
        ToxicityEvaluator(device="cpu").load()
    attempts = [r for r in caplog.records if "downloading detoxify" in r.getMessage()]
    assert len(attempts) == 2
