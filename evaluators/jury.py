"""A jury of judge models: combine their verdicts and flag where they disagree.

Pure functions, no I/O. Scale rubrics are combined by the mean of the models' scores;
pass/fail (two-point) rubrics and pairwise outcomes by majority. Models without a verdict
are left out and listed, never counted as a zero.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from statistics import fmean
from typing import Literal

from pydantic import BaseModel, Field

from evalwatch.evaluators.rubrics import RubricScale

__all__ = ["JuryOutcome", "JuryScore", "aggregate_outcomes", "aggregate_scores"]


class JuryScore(BaseModel):
    """The jury's score on a rubric scale, or None with the reason."""

    score: float | None
    method: Literal["single", "mean", "majority"]
    votes: dict[str, float] = Field(description="Model -> its score (mean of its repeats).")
    missing: list[str] = Field(default_factory=list, description="Models without a verdict.")
    disagreement: bool = False
    spread: float | None = Field(None, description="Highest minus lowest vote.")
    reason: str | None = None


class JuryOutcome(BaseModel):
    """The jury's pairwise outcome (win/tie/loss for the candidate), or None with the reason."""

    outcome: Literal["win", "tie", "loss"] | None
    votes: dict[str, str]
    missing: list[str] = Field(default_factory=list)
    disagreement: bool = False
    reason: str | None = None


def aggregate_scores(
    votes: Mapping[str, float | None],
    scale: RubricScale,
    disagreement_points: float = 2.0,
) -> JuryScore:
    """Combine per-model scores: mean on a scale, majority on a pass/fail rubric.

    Args:
        votes: Model -> its score on ``scale``, or None when it gave no verdict.
        scale: The rubric's scale; a two-point scale is pass/fail.
        disagreement_points: On a scale, flag disagreement when the highest and lowest vote
            are at least this many points apart. On pass/fail any split is a disagreement.

    Returns:
        The combined score. ``score`` is None when no model voted, or when a pass/fail jury
        splits evenly (no majority); ``reason`` says which.

    Examples:
        >>> s = RubricScale(min=1, max=5)
        >>> j = aggregate_scores({"a": 5, "b": 2, "c": 5}, s)
        >>> j.score, j.disagreement
        (4.0, True)
        >>> aggregate_scores({"a": 1, "b": 1, "c": 0}, RubricScale(min=0, max=1)).score
        1.0
    """
    given = {m: float(v) for m, v in votes.items() if v is not None}
    missing = sorted(m for m, v in votes.items() if v is None)
    if not given:
        return JuryScore(
            score=None, method="single" if len(votes) <= 1 else "mean", votes={},
            missing=missing, reason="no judge model gave a verdict",
        )
    spread = max(given.values()) - min(given.values())
    if len(given) == 1 and not missing:
        return JuryScore(score=next(iter(given.values())), method="single", votes=given,
                         spread=0.0)
    if scale.binary:
        midpoint = (scale.min + scale.max) / 2
        passes = sum(1 for v in given.values() if v > midpoint)
        fails = sum(1 for v in given.values() if v < midpoint)
        undecided = len(given) - passes - fails
        disagree = len({v > midpoint for v in given.values()}) > 1 or undecided > 0
        if passes == fails:
            return JuryScore(
                score=None, method="majority", votes=given, missing=missing, disagreement=True,
                spread=spread,
                reason=f"jury split evenly ({passes} pass, {fails} fail, {undecided} undecided)",
            )
        return JuryScore(
            score=float(scale.max if passes > fails else scale.min), method="majority",
            votes=given, missing=missing, disagreement=disagree, spread=spread,
        )
    return JuryScore(
        score=fmean(given.values()), method="mean", votes=given, missing=missing,
        disagreement=spread >= disagreement_points, spread=spread,
    )


def aggregate_outcomes(votes: Mapping[str, str | None]) -> JuryOutcome:
    """Majority of per-model pairwise outcomes; without a majority the pair is a tie.

    Examples:
        >>> aggregate_outcomes({"a": "win", "b": "win", "c": "loss"}).outcome
        'win'
        >>> j = aggregate_outcomes({"a": "win", "b": "loss"})
        >>> j.outcome, j.disagreement
        ('tie', True)
    """
    given = {m: v for m, v in votes.items() if v is not None}
    missing = sorted(m for m, v in votes.items() if v is None)
    if not given:
        return JuryOutcome(
            outcome=None, votes={}, missing=missing, reason="no judge model gave a verdict"
        )
    counts = Counter(given.values()).most_common()
    top, n_top = counts[0]
    no_majority = len(counts) > 1 and counts[1][1] == n_top
    outcome = "tie" if no_majority else top
    if outcome not in ("win", "tie", "loss"):
        return JuryOutcome(
            outcome=None, votes=given, missing=missing, reason=f"unknown outcome {outcome!r}"
        )
    return JuryOutcome(
        outcome=outcome,
        votes=given,
        missing=missing,
        disagreement=len(counts) > 1,
    )
