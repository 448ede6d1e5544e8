"""Inputs and results of the drift tests: one window's columns, one test's outcome, a report."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from evalwatch.checks.drift.config import DriftConfig, TestName

__all__ = ["DriftInput", "DriftReport", "DriftTestResult", "Family", "Verdict"]

Family = Literal["embedding", "numeric", "rate", "rating"]
Verdict = Literal["drift", "no_drift", "insufficient_data"]


@dataclass
class DriftInput:
    """One window of traffic, column by column.

    Missing values are explicit: a numeric array may hold NaN (unscored rows are dropped from
    its tests, their share is a rate of its own), ``ratings`` may hold NaN for rows without a
    rating.

    Attributes:
        embeddings: ``n x d`` response embeddings (float32), or ``None``.
        numeric: Numeric columns by name, e.g. ``response_length``, ``latency_ms``,
            ``embedding.relevance``.
        rates: Boolean columns by name, e.g. ``refusal``, ``unsafe``, ``unscored``.
        ratings: User ratings on a 1-5 scale (NaN where absent), or ``None``.
        texts: Response texts aligned with ``embeddings`` rows (cluster examples), or ``None``.
        timestamps: Times aligned with ``ratings`` (datetime64 or seconds), for the trend.

    Examples:
        >>> import numpy as np
        >>> window = DriftInput(numeric={"latency_ms": np.array([120.0, 95.0])})
        >>> sorted(window.numeric)
        ['latency_ms']
    """

    embeddings: npt.NDArray[np.floating[Any]] | None = None
    numeric: dict[str, npt.NDArray[Any]] = field(default_factory=dict)
    rates: dict[str, npt.NDArray[Any]] = field(default_factory=dict)
    ratings: npt.NDArray[Any] | None = None
    texts: list[str] | None = None
    timestamps: npt.NDArray[Any] | None = None

    def __post_init__(self) -> None:
        """Validate shapes and alignment."""
        if self.embeddings is not None:
            self.embeddings = np.asarray(self.embeddings)
            if self.embeddings.ndim != 2:
                raise ValueError(
                    f"embeddings must be 2-D (n x d), got shape {self.embeddings.shape}"
                )
            if self.texts is not None and len(self.texts) != self.embeddings.shape[0]:
                raise ValueError(
                    f"texts ({len(self.texts)}) must align with embeddings "
                    f"({self.embeddings.shape[0]} rows)"
                )
        for name, values in self.numeric.items():
            if np.asarray(values).ndim != 1:
                raise ValueError(f"numeric column {name!r} must be 1-D")
        for name, values in self.rates.items():
            arr = np.asarray(values)
            if arr.ndim != 1 or not (arr.dtype == np.bool_ or np.isin(arr, (0, 1)).all()):
                raise ValueError(f"rate column {name!r} must be a 1-D boolean array")
        if (
            self.ratings is not None
            and self.timestamps is not None
            and len(self.ratings) != len(self.timestamps)
        ):
            raise ValueError(
                f"timestamps ({len(self.timestamps)}) must align with ratings ({len(self.ratings)})"
            )


class DriftTestResult(BaseModel):
    """The outcome of one test on one feature.

    Attributes:
        test: Test name.
        feature: Compared column (``"embeddings"`` for the embedding tests).
        family: ``"embedding"``, ``"numeric"``, ``"rate"`` or ``"rating"``.
        n_baseline: Usable baseline rows (0 for the within-window trend).
        n_current: Usable current rows.
        statistic: The test statistic (``None`` when not computed).
        effect_size: Effect size compared with the floor (``None`` when not computed).
        effect_name: What ``effect_size`` measures.
        effect_floor: The floor ``effect_size`` must reach for ``"drift"``.
        p_value: Raw p-value (``None`` when not computed).
        p_adjusted: Benjamini-Hochberg adjusted p-value across the report (a standalone test
            is its own report of one, so there it equals ``p_value``).
        verdict: ``"drift"``, ``"no_drift"`` or ``"insufficient_data"``.
        ci: Confidence interval of the main quantity (see ``details["ci_of"]``).
        details: Test-specific figures (JSON-serialisable).
        summary: One line saying what moved and by how much.
    """

    model_config = ConfigDict(extra="forbid")

    test: TestName
    feature: str
    family: Family
    n_baseline: int
    n_current: int
    statistic: float | None
    effect_size: float | None
    effect_name: str
    effect_floor: float
    p_value: float | None
    p_adjusted: float | None = None
    verdict: Verdict
    ci: tuple[float, float] | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    summary: str

    @property
    def effect_ratio(self) -> float:
        """Effect size in multiples of its floor (0 when not computed); comparable across tests.

        Returns:
            ``effect_size / effect_floor`` (``inf`` for a zero floor and positive effect).
        """
        if self.effect_size is None:
            return 0.0
        if self.effect_floor <= 0:
            return math.inf if self.effect_size > 0 else 0.0
        return self.effect_size / self.effect_floor


class DriftReport(BaseModel):
    """All tests of one baseline/current comparison.

    Attributes:
        results: One entry per (test, feature).
        config: Settings the report ran with.
        drift_found: Whether any test's verdict is ``"drift"``.
    """

    model_config = ConfigDict(extra="forbid")

    results: list[DriftTestResult]
    config: DriftConfig
    drift_found: bool

    @model_validator(mode="after")
    def _drift_found_matches(self) -> DriftReport:
        if self.drift_found != any(r.verdict == "drift" for r in self.results):
            raise ValueError("drift_found must be True exactly when a result says 'drift'")
        return self

    def moved(self) -> list[DriftTestResult]:
        """Return the ``"drift"`` results, largest effect (in multiples of its floor) first.

        Returns:
            The drifted results, sorted.

        Examples:
            >>> DriftReport(results=[], config=DriftConfig(), drift_found=False).moved()
            []
        """
        drifted = [r for r in self.results if r.verdict == "drift"]
        return sorted(drifted, key=lambda r: r.effect_ratio, reverse=True)
