"""How far to trust a judge: agreement with human labels, and position consistency.

The statistics are pure functions. :func:`calibrate` judges human-labelled rows with a
:class:`~evaluators.judge.JudgeEvaluator`, computes the statistics per rubric and stores a
``JudgeCalibration`` row each, so alert rules can fire when kappa falls below a threshold.

* Agreement: share of rows where the judge's score equals the human's (and within one point).
* Cohen's kappa: agreement corrected for chance (``sklearn.metrics.cohen_kappa_score``),
  quadratic-weighted for ordinal scales so a 4-vs-5 disagreement costs less than 1-vs-5.
* Confusion matrix: rows are human scores, columns judge scores, over the whole scale.
* Position consistency: share of same-prompt response pairs whose pairwise verdict is the
  same in both presentation orders.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sklearn.metrics import cohen_kappa_score
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from sqlalchemy.engine import Engine

from evalwatch.core import ScoreStatus, SubjectType
from evalwatch.evaluators.base import Sample
from evalwatch.evaluators.judge import JudgeEvaluator
from evalwatch.evaluators.pairwise import PairItem, judge_pairs, judged_share
from evalwatch.evaluators.rubrics import Rubric
from evalwatch.files import read_input_text
from evalwatch.storage.repo import insert_judge_calibration

__all__ = [
    "CalibrationResult",
    "HumanLabel",
    "agreement_rate",
    "calibrate",
    "calibration_stats",
    "cohen_kappa",
    "confusion",
    "position_consistency_rate",
    "read_human_labels",
    "within_one_rate",
]

Weighting = Literal["quadratic", "linear", "none"]


def _check(human: Sequence[int], judge: Sequence[int]) -> None:
    if len(human) != len(judge):
        raise ValueError(f"{len(human)} human scores but {len(judge)} judge scores")


def agreement_rate(human: Sequence[int], judge: Sequence[int]) -> float | None:
    """Share of items where judge and human gave the same score; None without items.

    Examples:
        >>> agreement_rate([1, 2, 3, 4], [1, 2, 3, 5])
        0.75
    """
    _check(human, judge)
    if not human:
        return None
    return sum(h == j for h, j in zip(human, judge, strict=True)) / len(human)


def within_one_rate(human: Sequence[int], judge: Sequence[int]) -> float | None:
    """Share of items where judge and human are at most one point apart.

    Examples:
        >>> within_one_rate([1, 2, 3], [2, 4, 3])
        0.6666666666666666
    """
    _check(human, judge)
    if not human:
        return None
    return sum(abs(h - j) <= 1 for h, j in zip(human, judge, strict=True)) / len(human)


def cohen_kappa(
    human: Sequence[int],
    judge: Sequence[int],
    labels: Sequence[int],
    weighting: Weighting = "quadratic",
) -> tuple[float | None, str | None]:
    """Cohen's kappa between human and judge scores.

    Args:
        human: Human scores.
        judge: Judge scores, same items and order.
        labels: Every point of the scale (so weights use the scale's true distances).
        weighting: ``quadratic`` (ordinal scales), ``linear``, or ``none`` (nominal).

    Returns:
        ``(kappa, None)``, or ``(None, why)`` when kappa is undefined: no items, or both
        raters used one and the same score for everything (chance agreement is 1).

    Examples:
        >>> round(cohen_kappa([1, 2, 3, 4, 5], [1, 2, 3, 4, 4], range(1, 6))[0], 3)
        0.941
        >>> cohen_kappa([3, 3], [3, 3], range(1, 6))
        (None, 'kappa is undefined: both raters gave every item the same score')
    """
    _check(human, judge)
    if not human:
        return None, "kappa is undefined without items"
    weights = None if weighting == "none" else weighting
    if len(set(human) | set(judge)) == 1:
        return None, "kappa is undefined: both raters gave every item the same score"
    k = float(cohen_kappa_score(human, judge, labels=list(labels), weights=weights))
    if math.isnan(k):
        return None, "kappa is undefined for these scores (expected agreement is 1)"
    return k, None


def confusion(human: Sequence[int], judge: Sequence[int], labels: Sequence[int]) -> dict[str, Any]:
    """Confusion matrix over the whole scale: rows human scores, columns judge scores.

    Examples:
        >>> confusion([1, 2, 2], [1, 2, 1], [1, 2])["matrix"]
        [[1, 0], [1, 1]]
    """
    _check(human, judge)
    labs = list(labels)
    if not human:
        return {"labels": labs, "matrix": [[0] * len(labs) for _ in labs]}
    m = sk_confusion_matrix(human, judge, labels=labs)
    return {"labels": labs, "matrix": [[int(x) for x in row] for row in m]}


def position_consistency_rate(flags: Sequence[bool | None]) -> float | None:
    """Share of judged pairs with the same verdict in both orders; None without pairs.

    Examples:
        >>> position_consistency_rate([True, True, False, None])
        0.6666666666666666
    """
    return judged_share(flags, True)


class CalibrationResult(BaseModel):
    """A judge's agreement with human labels on one rubric."""

    rubric: str
    rubric_version: str
    judge_model: str
    n: int = Field(description="Rows with both a human and a judge score.")
    n_failed: int = Field(0, description="Rows the judge could not score.")
    agreement: float | None
    within_one: float | None
    kappa: float | None
    kappa_weighting: Weighting
    kappa_note: str | None = None
    confusion: dict[str, Any]
    position_consistency: float | None
    n_pairs: int = 0
    position_note: str | None = None
    failures: list[dict[str, Any]] = Field(default_factory=list)
    calibration_id: int | None = None


def calibration_stats(
    human: Sequence[int],
    judge: Sequence[int],
    labels: Sequence[int],
    weighting: Weighting = "quadratic",
) -> dict[str, Any]:
    """Agreement, within-one agreement, kappa (with its note) and the confusion matrix.

    Examples:
        >>> s = calibration_stats([1, 2, 3], [1, 2, 2], [1, 2, 3])
        >>> s["agreement"], s["confusion"]["matrix"][2]
        (0.6666666666666666, [0, 1, 0])
    """
    kappa, note = cohen_kappa(human, judge, labels, weighting)
    return {
        "agreement": agreement_rate(human, judge),
        "within_one": within_one_rate(human, judge),
        "kappa": kappa,
        "kappa_weighting": weighting,
        "kappa_note": note,
        "confusion": confusion(human, judge, labels),
    }


class HumanLabel(BaseModel):
    """One human-labelled row (``datasets/human_labels.jsonl``)."""

    model_config = ConfigDict(extra="ignore")

    id: str
    rubric: str
    prompt: str
    response: str
    reference: str | None = None
    context: str | None = None
    human_score: int


def read_human_labels(path: str | Path) -> list[HumanLabel]:
    """Read a human-labels JSONL file.

    Raises:
        evalwatch.files.InputFileError: The file is missing, not a regular file or not UTF-8.
        ValueError: A line is not JSON or not a valid label row (the message names the line),
            or two rows share an id and rubric.
    """
    p = Path(path)
    rows: list[HumanLabel] = []
    seen: set[tuple[str, str]] = set()
    # InputFileError (a ValueError) names the path: missing, not a regular file, not UTF-8.
    for n, line in enumerate(read_input_text(p).split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = HumanLabel.model_validate(json.loads(line))
        except (ValueError, ValidationError) as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ValueError(f"{p}:{n}: not a valid human label row: {msg}") from exc
        if (row.id, row.rubric) in seen:
            raise ValueError(f"{p}:{n}: duplicate row id {row.id!r} for {row.rubric!r}")
        seen.add((row.id, row.rubric))
        rows.append(row)
    return rows


def _pairs(rows: Sequence[HumanLabel], limit: int) -> list[PairItem]:
    by_prompt: dict[str, list[HumanLabel]] = defaultdict(list)
    for r in rows:
        by_prompt[r.prompt].append(r)
    items: list[PairItem] = []
    for group in by_prompt.values():
        for a, b in combinations(group, 2):
            if a.response == b.response:
                continue
            items.append(
                PairItem(
                    item_id=f"{a.id}|{b.id}",
                    prompt=a.prompt,
                    candidate=a.response,
                    baseline=b.response,
                    reference=a.reference,
                    context=a.context,
                )
            )
            if len(items) >= limit:
                return items
    return items


def calibrate(
    labels: Sequence[HumanLabel],
    judge: JudgeEvaluator,
    engine: Engine | None = None,
    max_pairs: int = 100,
    weighting: Weighting | None = None,
) -> list[CalibrationResult]:
    """Judge human-labelled rows and measure agreement per rubric (and store it).

    Args:
        labels: The labelled rows; only rubrics that ``judge`` is configured with are used.
        judge: A judge evaluator (its first model is the one calibrated).
        engine: Where to store one ``JudgeCalibration`` row per rubric; None stores nothing.
        max_pairs: Same-prompt pairs judged in both orders for position consistency
            (0 skips it).
        weighting: Kappa weighting; default quadratic, or none for pass/fail scales.

    Returns:
        One result per rubric with labelled rows.

    Raises:
        ValueError: A human score lies outside its rubric's scale.
        EvaluatorUnavailable: No judge endpoint or model is configured.
    """
    judge.load()  # one client (and one budget) shared by every rubric's calls
    results: list[CalibrationResult] = []
    model = judge.judge_models()[0]
    for rubric in judge.rubrics:
        rows = [r for r in labels if r.rubric == rubric.name]
        if not rows:
            continue
        results.append(_calibrate_rubric(rows, rubric, judge, model, engine, max_pairs, weighting))
    return results


def _calibrate_rubric(
    rows: Sequence[HumanLabel],
    rubric: Rubric,
    judge: JudgeEvaluator,
    model: str,
    engine: Engine | None,
    max_pairs: int,
    weighting: Weighting | None,
) -> CalibrationResult:
    s = rubric.scale
    bad = [r.id for r in rows if not s.min <= r.human_score <= s.max]
    if bad:
        raise ValueError(
            f"human scores outside the {rubric.name} scale {s.min}-{s.max} in rows {bad[:10]}"
        )
    single = judge.derive(rubrics=[rubric.name], mode="single", models=[model])
    human, judged, failures = _judge_rows(rows, single)
    w: Weighting = weighting or ("none" if s.binary else "quadratic")
    stats = calibration_stats(human, judged, s.points(), w)
    consistency, n_pairs, note = _position_consistency(rows, rubric, single, model, max_pairs)
    result = CalibrationResult(
        rubric=rubric.name,
        rubric_version=rubric.version,
        judge_model=model,
        n=len(human),
        n_failed=len(failures),
        position_consistency=consistency,
        n_pairs=n_pairs,
        position_note=note,
        failures=failures[:50],
        **stats,
    )
    if engine is not None:
        result.calibration_id = _store_calibration(engine, result, rubric, model, single)
    return result


def _judge_rows(
    rows: Sequence[HumanLabel], single: JudgeEvaluator
) -> tuple[list[int], list[int], list[dict[str, Any]]]:
    """Score each labelled row with the single-mode judge.

    Args:
        rows: One rubric's labelled rows.
        single: The judge, in single mode with that rubric and one model.

    Returns:
        The human and the judge's (rounded) score of each row the judge scored, and a
        record of each row it failed on.
    """
    samples = [
        Sample(
            subject_id=i,
            subject_type=SubjectType.output,
            prompt=r.prompt,
            response=r.response,
            reference=r.reference,
            context=r.context,
        )
        for i, r in enumerate(rows)
    ]
    batch = single.evaluate(samples)
    human: list[int] = []
    judged: list[int] = []
    failures: list[dict[str, Any]] = []
    for row, score in zip(rows, batch.scores, strict=True):
        if score.status != ScoreStatus.ok or not score.details:
            failures.append({"id": row.id, "status": str(score.status), "reason": score.reason})
            continue
        human.append(row.human_score)
        judged.append(round(float(score.details["score"])))
    return human, judged, failures


def _position_consistency(
    rows: Sequence[HumanLabel],
    rubric: Rubric,
    single: JudgeEvaluator,
    model: str,
    max_pairs: int,
) -> tuple[float | None, int, str | None]:
    """Judge same-prompt pairs in both orders and measure how often the verdict holds.

    Args:
        rows: One rubric's labelled rows.
        rubric: The rubric.
        single: The single-mode judge (its client and settings are used).
        model: The judge model.
        max_pairs: At most this many pairs; 0 measures nothing.

    Returns:
        The consistency rate (None when not measured), the pairs judged, and a note saying
        why it was not measured.
    """
    pairs = _pairs(rows, max_pairs) if max_pairs > 0 else []
    if max_pairs <= 0:
        return None, 0, "position consistency not measured (max_pairs=0)"
    if not pairs:
        return None, 0, "no two labelled rows of this rubric share a prompt; nothing to compare"
    report = judge_pairs(
        single.client,
        rubric,
        [model],
        pairs,
        single.config.temperature,
        single.config.max_tokens,
        text=single.text_filter(),
    )
    flags = [i.consistent for i in report.items]
    consistency = position_consistency_rate(flags)
    n_pairs = sum(1 for f in flags if f is not None)
    return consistency, n_pairs, "every pair failed to be judged" if n_pairs == 0 else None


def _store_calibration(
    engine: Engine,
    result: CalibrationResult,
    rubric: Rubric,
    model: str,
    single: JudgeEvaluator,
) -> int:
    """Store one rubric's calibration result; returns its id."""
    return insert_judge_calibration(
        engine,
        {
            "judge_model": model[:200],
            "rubric": rubric.name,
            "rubric_version": rubric.version,
            "n": result.n,
            "agreement": result.agreement,
            "kappa": result.kappa,
            "kappa_weighting": result.kappa_weighting,
            "position_consistency": result.position_consistency,
            "confusion": result.confusion,
            "details": {
                "within_one": result.within_one,
                "kappa_note": result.kappa_note,
                "n_failed": result.n_failed,
                "n_pairs": result.n_pairs,
                "position_note": result.position_note,
                "judge": single.provenance().model_dump(),
                "failures": result.failures,
            },
        },
    )
