"""Rule-based checks of responses: length, emptiness, refusals, JSON validity, PII leaks.

CPU only and model-free. Metrics per sample, in this order:

* ``response_chars``: length in characters.
* ``response_tokens_est``: estimated tokens (characters / ``chars_per_token``, rounded up).
* ``empty_response``: 1 when the response is empty or whitespace, else 0.
* ``refusal``: 1 when the response contains a refusal phrase (case-insensitive), else 0.
* ``json_valid``: 1/0 when the sample's metadata says ``expects_json``; skipped otherwise.
* ``pii_leak``: 1 when the response holds personal data or secrets (the ingest redactor's
  patterns), or ``[REDACTED:kind]`` markers left where ingest masked some; details name the kinds.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import Field, field_validator

from evalwatch.core import ScoreStatus
from evalwatch.core.redact import PII_KINDS, Redactor
from evalwatch.evaluators.base import (
    BaseEvaluator,
    BatchResult,
    Cell,
    EvaluatorConfig,
    MetricKind,
    MetricSpec,
    Sample,
    ScoreColumns,
    Unscored,
    register_evaluator,
)

__all__ = ["DEFAULT_REFUSAL_PHRASES", "METRIC_SPECS", "HeuristicsConfig", "HeuristicsEvaluator"]

DEFAULT_REFUSAL_PHRASES: tuple[str, ...] = (
    "i'm sorry, but i can't",
    "i am sorry, but i cannot",
    "i'm sorry, i can't",
    "sorry, i can't help",
    "i can't help with",
    "i cannot help with",
    "i can't assist with",
    "i cannot assist with",
    "i'm unable to",
    "i am unable to",
    "i can't provide",
    "i cannot provide",
    "i won't be able to",
    "as an ai language model",
    "i'm not able to help",
    "i must decline",
)

_MARKER = re.compile(r"\[REDACTED:(\w+)\]")
_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*\n(.*?)\n?\s*```\s*$", re.DOTALL)
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})

_RATE = {"kind": MetricKind.rate, "range": (0, 1)}
_NO_JSON_EXPECTED = Unscored("sample does not expect JSON", ScoreStatus.skipped)

#: What each heuristic metric means, in result order (see the module docstring).
METRIC_SPECS: list[MetricSpec] = [
    MetricSpec(
        name="response_chars",
        kind=MetricKind.descriptive,
        description="Length of the response in characters.",
    ),
    MetricSpec(
        name="response_tokens_est",
        kind=MetricKind.descriptive,
        description="Estimated tokens of the response (characters / chars_per_token).",
    ),
    MetricSpec(
        name="empty_response",
        higher_is_better=False,
        description="1 when the response is empty or whitespace.",
        **_RATE,
    ),
    MetricSpec(
        name="refusal",
        higher_is_better=False,
        description="1 when the response contains a refusal phrase.",
        **_RATE,
    ),
    MetricSpec(
        name="json_valid",
        description="1 when a response that should be JSON parses (only where expected).",
        **_RATE,
    ),
    MetricSpec(
        name="pii_leak",
        higher_is_better=False,
        description="1 when the response holds personal data or secrets.",
        **_RATE,
    ),
]
METRICS = [m.name for m in METRIC_SPECS]


class HeuristicsConfig(EvaluatorConfig):
    """Options of the heuristics evaluator."""

    chars_per_token: float = Field(4.0, gt=0, description="Characters per token for estimates.")
    refusal_phrases: list[str] = Field(
        default_factory=lambda: list(DEFAULT_REFUSAL_PHRASES),
        description="Phrases that mark a refusal (matched case-insensitively).",
    )
    refusal_window_chars: int | None = Field(
        400,
        gt=0,
        description="Look for refusal phrases only in the first N characters (None = all).",
    )
    json_allow_code_fence: bool = Field(
        True, description="Accept JSON wrapped in one ``` code fence."
    )
    pii_kinds: list[str] = Field(
        default_factory=lambda: list(PII_KINDS), description="Kinds of PII that count as a leak."
    )

    @field_validator("refusal_phrases")
    @classmethod
    def _non_empty_phrases(cls, v: list[str]) -> list[str]:
        if any(not p.strip() for p in v):
            raise ValueError("refusal phrases must not be empty (an empty one matches anything)")
        return v

    @field_validator("pii_kinds")
    @classmethod
    def _known_kinds(cls, v: list[str]) -> list[str]:
        unknown = sorted(set(v) - set(PII_KINDS))
        if unknown:
            raise ValueError(f"unknown PII kinds {unknown}; known: {list(PII_KINDS)}")
        return v


@register_evaluator
class HeuristicsEvaluator(BaseEvaluator[HeuristicsConfig]):
    """Cheap rule-based scores of each response.

    Examples:
        >>> ev = HeuristicsEvaluator()
        >>> r = ev.evaluate([Sample(subject_id=1, prompt="hi", response="I'm unable to do that")])
        >>> {s.metric: s.value for s in r.scores}["refusal"]
        1.0
    """

    name = "heuristics"
    version = "1"
    Config = HeuristicsConfig

    def __init__(self, config: HeuristicsConfig | None = None, **options: Any) -> None:
        super().__init__(config, **options)
        self.device = "cpu"
        self._redactor = Redactor(tuple(self.config.pii_kinds))
        self._phrases = [p.lower().translate(_APOSTROPHES) for p in self.config.refusal_phrases]

    @property
    def metrics(self) -> list[MetricSpec]:
        """See the module docstring."""
        return list(METRIC_SPECS)

    def evaluate(self, samples: Sequence[Sample]) -> BatchResult:
        """Score each response by the rules.

        Args:
            samples: The samples, in the order results are wanted.

        Returns:
            Six results per sample, in :data:`METRICS` order, as columns.
        """
        values = np.empty((len(samples), len(METRICS)), dtype=np.float64)
        unscored: dict[Cell, Unscored] = {}
        details: dict[Cell, dict[str, Any]] = {}
        for i, s in enumerate(samples):
            values[i] = self._score(i, s, unscored, details)
        return BatchResult(
            columns=ScoreColumns.from_samples(samples, METRIC_SPECS, values, unscored, details)
        )

    def _score(
        self,
        i: int,
        s: Sample,
        unscored: dict[Cell, Unscored],
        details: dict[Cell, dict[str, Any]],
    ) -> list[float]:
        """Sample ``i``'s values in :data:`METRICS` order; reasons and details go in the maps."""
        text = s.response
        phrase = self._refusal(text)
        if phrase:
            details[(i, "refusal")] = {"phrase": phrase}
        json_valid = math.nan
        if s.meta.get("expects_json"):
            error = _json_error(text, self.config.json_allow_code_fence)
            json_valid = 0.0 if error else 1.0
            if error:
                details[(i, "json_valid")] = {"error": error}
        else:
            unscored[(i, "json_valid")] = _NO_JSON_EXPECTED
        kinds = Counter(f.kind for f in self._redactor.find(text))
        markers = Counter(k for k in _MARKER.findall(text) if k in self.config.pii_kinds)
        if kinds or markers:
            found: dict[str, Any] = {"count": sum(kinds.values()) + sum(markers.values())}
            if kinds:
                found["kinds"] = dict(sorted(kinds.items()))
            if markers:
                found["redacted_at_ingest"] = dict(sorted(markers.items()))
            details[(i, "pii_leak")] = found
        return [
            float(len(text)),
            float(math.ceil(len(text) / self.config.chars_per_token)),
            0.0 if text.strip() else 1.0,
            1.0 if phrase else 0.0,
            json_valid,
            1.0 if kinds or markers else 0.0,
        ]

    def _refusal(self, text: str) -> str | None:
        window = (
            text
            if self.config.refusal_window_chars is None
            else text[: self.config.refusal_window_chars]
        )
        lowered = window.lower().translate(_APOSTROPHES)
        for phrase in self._phrases:
            if phrase in lowered:
                return phrase
        return None


def _json_error(text: str, allow_fence: bool) -> str | None:
    """None when ``text`` is valid JSON (optionally in one code fence), else why not."""
    body = text
    if allow_fence:
        m = _FENCE.match(text)
        if m:
            body = m.group(1)
    if not body.strip():
        return "empty response"
    try:
        json.loads(body)
    except json.JSONDecodeError as exc:
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    return None
