"""Pairwise judging: is the candidate's answer better than the baseline's?

Every pair is judged twice, candidate shown first and baseline shown first. A verdict that
flips with the order is position bias, not preference: the pair counts as a tie, and the
share of such pairs is reported as the position-inconsistency rate. The per-item
win/tie/loss verdicts feed the regression gate
(:func:`evalwatch.checks.regression.compare_pairwise`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from evalwatch.core import ScoreStatus
from evalwatch.evaluators.judge_client import JudgeClient, JudgeOutcome, JudgeRequest, RunStats
from evalwatch.evaluators.jury import aggregate_outcomes
from evalwatch.evaluators.rubrics import Rubric, build_pairwise_messages

__all__ = [
    "Order",
    "Outcome",
    "PairItem",
    "PairResult",
    "PairwiseReport",
    "build_report",
    "judge_pairs",
    "judged_share",
    "pair_requests",
    "position_inconsistency_rate",
    "resolve_pair",
    "resolve_pairs",
]

Outcome = Literal["win", "tie", "loss"]
Order = Literal["candidate_first", "baseline_first"]
ORDERS: tuple[Order, Order] = ("candidate_first", "baseline_first")

_FIRST = {"A": "win", "B": "loss", "tie": "tie"}  # candidate shown as A
_SECOND = {"B": "win", "A": "loss", "tie": "tie"}  # candidate shown as B


def resolve_pair(
    candidate_first: str | None, baseline_first: str | None
) -> tuple[Outcome | None, bool | None]:
    """The candidate's outcome from the two orders' winners ("A", "B" or "tie").

    Args:
        candidate_first: Winner when the candidate was response A.
        baseline_first: Winner when the baseline was response A.

    Returns:
        ``(outcome, consistent)``: both orders agreeing gives their outcome and True; a flip
        gives ``"tie"`` and False; a missing verdict gives ``(None, None)``.

    Examples:
        >>> resolve_pair("A", "B")
        ('win', True)
        >>> resolve_pair("A", "A")
        ('tie', False)
    """
    if candidate_first is None or baseline_first is None:
        return None, None
    first = _FIRST.get(candidate_first)
    second = _SECOND.get(baseline_first)
    if first is None or second is None:
        return None, None
    if first == second:
        return first, True  # type: ignore[return-value]
    return "tie", False


def judged_share(consistent: Sequence[bool | None], value: bool) -> float | None:
    """Share of the judged pairs (flag not None) whose consistency flag is ``value``.

    Examples:
        >>> judged_share([True, False, None, True], True), judged_share([None], False)
        (0.6666666666666666, None)
    """
    judged = [c for c in consistent if c is not None]
    if not judged:
        return None
    return sum(1 for c in judged if bool(c) == value) / len(judged)


def position_inconsistency_rate(consistent: Sequence[bool | None]) -> float | None:
    """Share of judged pairs whose verdict flipped with the order; None if none was judged.

    Examples:
        >>> position_inconsistency_rate([True, False, None, True])
        0.3333333333333333
    """
    return judged_share(consistent, False)


class PairItem(BaseModel):
    """One candidate-vs-baseline comparison."""

    item_id: str
    prompt: str
    candidate: str
    baseline: str
    reference: str | None = None
    context: str | None = None


class PairResult(BaseModel):
    """The verdict on one pair: the jury's outcome and each model's view."""

    item_id: str
    status: ScoreStatus
    outcome: Outcome | None = None
    reason: str | None = None
    consistent: bool | None = Field(
        None, description="All models gave the same verdict in both orders."
    )
    per_model: dict[str, dict[str, Any]] = Field(default_factory=dict)
    disagreement: bool = False
    reasoning: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = 0.0
    cached_calls: int = 0


class PairwiseReport(BaseModel):
    """Pairwise results with wins, ties, losses and the position-inconsistency rate."""

    rubric: str
    rubric_version: str
    models: list[str]
    items: list[PairResult]
    wins: int
    ties: int
    losses: int
    errors: int
    skipped: int
    inconsistent: int
    position_inconsistency_rate: float | None
    net_win_rate: float | None = Field(description="(wins - losses) / decided items.")
    stats: dict[str, Any] = Field(default_factory=dict)

    def verdicts(self) -> dict[str, Outcome | None]:
        """Item id -> win/tie/loss (None when not judged), for the regression gate.

        Examples:
            >>> r = PairwiseReport(rubric="h", rubric_version="1", models=["m"], items=[
            ...     PairResult(item_id="q1", status="ok", outcome="win")], wins=1, ties=0,
            ...     losses=0, errors=0, skipped=0, inconsistent=0,
            ...     position_inconsistency_rate=0.0, net_win_rate=1.0)
            >>> r.verdicts()
            {'q1': 'win'}
        """
        return {i.item_id: i.outcome for i in self.items}


def pair_requests(
    item: PairItem,
    rubric: Rubric,
    model: str,
    temperature: float = 0.0,
    max_tokens: int | None = None,
    text: Callable[[str], str] | None = None,
) -> dict[Order, JudgeRequest]:
    """The two requests (candidate first, baseline first) for one pair and model.

    Args:
        item: The pair.
        rubric: The rubric deciding which is better.
        model: Judge model.
        temperature: Sampling temperature.
        max_tokens: Output cap.
        text: Applied to every text before it is sent (e.g. redaction).
    """
    f = text or (lambda s: s)
    ref = f(item.reference) if item.reference is not None else None
    ctx = f(item.context) if item.context is not None else None
    cand, base, prompt = f(item.candidate), f(item.baseline), f(item.prompt)
    out: dict[Order, JudgeRequest] = {}
    for order, (a, b) in zip(ORDERS, ((cand, base), (base, cand)), strict=True):
        out[order] = JudgeRequest(
            model=model,
            rubric=rubric.name,
            rubric_version=rubric.version,
            messages=build_pairwise_messages(rubric, prompt, a, b, ref, ctx),
            kind="pairwise",
            scale_min=rubric.scale.min,
            scale_max=rubric.scale.max,
            temperature=temperature,
            max_tokens=max_tokens,
        )
    return out


def resolve_pairs(
    items: Sequence[PairItem],
    models: Sequence[str],
    outcomes: Mapping[tuple[str, str, Order], JudgeOutcome],
) -> list[PairResult]:
    """Turn both orders' judge outcomes into one result per item (jury by majority).

    Args:
        items: The pairs.
        models: Judge models.
        outcomes: (item id, model, order) -> the judge's outcome.
    """
    results: list[PairResult] = []
    for item in items:
        per_model: dict[str, dict[str, Any]] = {}
        model_outcomes: dict[str, str | None] = {}
        consistent: list[bool] = []
        reasons: list[str] = []
        statuses: list[ScoreStatus] = []
        tin = tout = cached = 0
        cost: float | None = 0.0
        reasoning: str | None = None
        for m in models:
            got = {o: outcomes[(item.item_id, m, o)] for o in ORDERS}
            for o in got.values():
                tin += o.input_tokens
                tout += o.output_tokens
                cached += int(o.cached)
                cost = None if cost is None or o.cost is None else cost + o.cost
            winners: dict[str, Any] = {
                o: (g.verdict or {}).get("winner") if g.status == ScoreStatus.ok else None
                for o, g in got.items()
            }
            outcome, cons = resolve_pair(winners["candidate_first"], winners["baseline_first"])
            model_outcomes[m] = outcome
            entry: dict[str, Any] = {"outcome": outcome, "position_consistent": cons, **winners}
            if outcome is None:
                failed = [g for g in got.values() if g.status != ScoreStatus.ok]
                statuses += [g.status for g in failed]
                why = "; ".join(f"{o}: {g.reason}" for o, g in got.items() if g.reason)
                entry["reason"] = why
                reasons.append(f"{m}: {why}" if len(models) > 1 else why)
                raw = next((g.raw for g in failed if g.raw), None)
                if raw:
                    entry["raw"] = raw
            else:
                consistent.append(bool(cons))
                if reasoning is None:
                    v = got["candidate_first"].verdict or {}
                    reasoning = str(v.get("reasoning") or "") or None
            per_model[m] = entry
        jury = aggregate_outcomes(model_outcomes)
        if jury.outcome is None:
            status = (
                ScoreStatus.skipped
                if statuses and all(s == ScoreStatus.skipped for s in statuses)
                else ScoreStatus.error
            )
            reason = "budget" if status == ScoreStatus.skipped else "; ".join(reasons)
        else:
            status, reason = ScoreStatus.ok, None
        results.append(
            PairResult(
                item_id=item.item_id,
                status=status,
                outcome=jury.outcome,
                reason=reason or jury.reason,
                consistent=all(consistent) if consistent else None,
                per_model=per_model,
                disagreement=jury.disagreement,
                reasoning=reasoning,
                input_tokens=tin,
                output_tokens=tout,
                cost_usd=cost,
                cached_calls=cached,
            )
        )
    return results


def build_report(
    rubric: Rubric, models: Sequence[str], results: list[PairResult], stats: RunStats | None
) -> PairwiseReport:
    """Count wins, ties, losses and position flips of resolved pairs."""
    wins = sum(r.outcome == "win" for r in results)
    losses = sum(r.outcome == "loss" for r in results)
    ties = sum(r.outcome == "tie" for r in results)
    flags: list[bool | None] = [
        e.get("position_consistent") for r in results for e in r.per_model.values()
    ]
    decided = wins + losses + ties
    return PairwiseReport(
        rubric=rubric.name,
        rubric_version=rubric.version,
        models=list(models),
        items=results,
        wins=wins,
        ties=ties,
        losses=losses,
        errors=sum(r.status == ScoreStatus.error for r in results),
        skipped=sum(r.status == ScoreStatus.skipped for r in results),
        inconsistent=sum(1 for f in flags if f is False),
        position_inconsistency_rate=position_inconsistency_rate(flags),
        net_win_rate=(wins - losses) / decided if decided else None,
        stats=stats.model_dump() if stats is not None else {},
    )


def judge_pairs(
    client: JudgeClient,
    rubric: Rubric,
    models: Sequence[str],
    items: Sequence[PairItem],
    temperature: float = 0.0,
    max_tokens: int | None = None,
    text: Callable[[str], str] | None = None,
) -> PairwiseReport:
    """Judge candidate-vs-baseline pairs in both orders and report win/tie/loss per item.

    Args:
        client: The judge client.
        rubric: The rubric deciding which answer is better.
        models: Judge models (more than one makes a jury, decided by majority).
        items: The pairs; ``item_id`` must be unique.
        temperature: Sampling temperature.
        max_tokens: Output cap per verdict.
        text: Applied to every text before sending (e.g. the redactor).

    Returns:
        The report; :meth:`PairwiseReport.verdicts` is the regression gate's input.
    """
    ids = [i.item_id for i in items]
    if len(set(ids)) != len(ids):
        raise ValueError("pair item ids must be unique")
    index: list[tuple[str, str, Order]] = []
    requests: list[JudgeRequest] = []
    for item in items:
        for m in models:
            for order, req in pair_requests(
                item, rubric, m, temperature, max_tokens, text
            ).items():
                index.append((item.item_id, m, order))
                requests.append(req)
    batch = client.judge(requests)
    outcomes = dict(zip(index, batch.outcomes, strict=True))
    return build_report(rubric, models, resolve_pairs(items, models, outcomes), batch.stats)
