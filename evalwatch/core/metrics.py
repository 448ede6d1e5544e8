"""What a metric means: its kind, its direction and its range, declared once by its evaluator.

Every evaluator declares a :class:`MetricSpec` per metric it stores (the evaluator contract's
``metrics``); :func:`evalwatch.evaluators.metrics.metric_catalogue` collects them from the
registry, built-in evaluators and plug-ins alike. The gate, the alert rules, the reports and
the drift check read a metric's meaning from there, never from a list of names of their own.
This module is dependency-free (pydantic only), so every layer can use the type.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["UNDECLARED_DESCRIPTION", "MetricKind", "MetricSpec"]

#: The description of the spec a metric gets when no registered evaluator declares it.
UNDECLARED_DESCRIPTION = (
    "not declared by any registered evaluator (e.g. stored by a plug-in since removed): "
    "read as a score where higher is better"
)


class MetricKind(StrEnum):
    """How a metric's values are read and compared."""

    score = "score"  # a grade on a scale: compared as a mean
    rate = "rate"  # 1/0 per item (it happened or not): compared as a proportion
    descriptive = "descriptive"  # describes a response (its length): compared only on request


class MetricSpec(BaseModel):
    """The meaning of one metric, as the evaluator that stores it declares it.

    Attributes:
        name: The metric's name within its evaluator (``refusal``); stored and gated as
            ``evaluator.metric`` (``heuristics.refusal``).
        kind: ``score``, ``rate`` (values 0/1) or ``descriptive``.
        higher_is_better: Which end is good. For a descriptive metric, the end a "worst items"
            list reads as worse; the gate compares it only when a policy lists it.
        range: ``(lo, hi)`` bounds of the values, or None when unbounded (a length, a latency)
            or unknown.
        description: One line for people (reports, ``--help``-like listings).

    Examples:
        >>> s = MetricSpec(name="refusal", kind="rate", higher_is_better=False, range=(0, 1))
        >>> s.kind, s.range
        (<MetricKind.rate: 'rate'>, (0.0, 1.0))
        >>> MetricSpec.undeclared("mine.score").higher_is_better
        True
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    kind: MetricKind = MetricKind.score
    higher_is_better: bool = True
    range: tuple[float, float] | None = None
    description: str = ""

    @model_validator(mode="after")
    def _check_range(self) -> MetricSpec:
        if self.range is not None:
            lo, hi = self.range
            if not lo < hi:
                raise ValueError(f"metric {self.name!r}: range low {lo} must be below high {hi}")
            if self.kind == MetricKind.rate and not 0 <= lo < hi <= 1:
                raise ValueError(f"metric {self.name!r}: a rate's range lies within [0, 1]")
        return self

    @classmethod
    def undeclared(cls, name: str) -> MetricSpec:
        """The spec of a metric that no registered evaluator declares.

        A score where higher is better, unbounded: what the gate assumed of any metric before
        metrics declared their meaning, so stored scores of a removed plug-in still compare.
        """
        return cls(name=name, description=UNDECLARED_DESCRIPTION)
