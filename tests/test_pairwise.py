"""Pairwise judging: both orders, flips become ties, position inconsistency is reported."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from evalwatch.checks.regression import MetricPolicy, compare_pairwise
from evalwatch.core import ScoreStatus
from evalwatch.evaluators.base import Sample
from evalwatch.evaluators.judge import JudgeEvaluator
from evalwatch.evaluators.judge_client import ClientOptions, JudgeClient
from evalwatch.evaluators.pairwise import (
    PairItem,
    judge_pairs,
    position_inconsistency_rate,
    resolve_pair,
)
from evalwatch.evaluators.rubrics import load_rubric
from evalwatch.settings import JudgeSettings
from evalwatch.testing import FakeJudgeServer


@pytest.fixture
def server() -> Iterator[FakeJudgeServer]:
    with FakeJudgeServer() as srv:
        yield srv


def client_for(srv: FakeJudgeServer) -> JudgeClient:
    return JudgeClient.for_endpoint(
        srv.base_url,
        None,
        ClientOptions(concurrency=4, timeout_s=5.0),
    )


def pair(i: int, cand: int, base: int) -> PairItem:
    return PairItem(
        item_id=f"q{i}",
        prompt=f"question {i}",
        candidate=f"candidate {i} [[score={cand}]]",
        baseline=f"baseline {i} [[score={base}]]",
    )


@pytest.mark.parametrize(
    ("candidate_first", "baseline_first", "outcome", "consistent"),
    [
        ("A", "B", "win", True),
        ("B", "A", "loss", True),
        ("tie", "tie", "tie", True),
        ("A", "A", "tie", False),  # always the first: position bias
        ("B", "B", "tie", False),  # always the second
        ("A", "tie", "tie", False),
        ("tie", "A", "tie", False),
        (None, "B", None, None),
        ("A", "Z", None, None),
    ],
)
def test_resolve_pair(
    candidate_first: str | None, baseline_first: str | None, outcome: Any, consistent: Any
) -> None:
    assert resolve_pair(candidate_first, baseline_first) == (outcome, consistent)


def test_position_inconsistency_rate() -> None:
    assert position_inconsistency_rate([]) is None
    assert position_inconsistency_rate([None]) is None
    assert position_inconsistency_rate([True, True, False, False]) == 0.5


def test_both_orders_are_judged_and_resolved(server: FakeJudgeServer) -> None:
    items = [pair(1, 5, 2), pair(2, 1, 4), pair(3, 3, 3)]
    jc = client_for(server)
    report = judge_pairs(jc, load_rubric("helpfulness"), ["judge-1"], items)
    jc.close()
    assert report.verdicts() == {"q1": "win", "q2": "loss", "q3": "tie"}
    assert (report.wins, report.ties, report.losses) == (1, 1, 1)
    assert report.position_inconsistency_rate == 0.0 and report.inconsistent == 0
    assert report.net_win_rate == 0.0
    assert server.request_count == 6
    # The candidate really appeared first in one request and second in the other.
    firsts = []
    for r in server.requests:
        if "candidate 1 " in r.user_text:
            text = r.user_text
            firsts.append(text.index("candidate 1") < text.index("baseline 1"))
    assert sorted(firsts) == [False, True]


def test_position_biased_judge_gives_ties_and_full_inconsistency() -> None:
    with FakeJudgeServer(position_bias="first") as srv:
        jc = client_for(srv)
        report = judge_pairs(
            jc, load_rubric("helpfulness"), ["judge-1"], [pair(i, 5, 1) for i in range(4)]
        )
        jc.close()
    assert set(report.verdicts().values()) == {"tie"}
    assert report.position_inconsistency_rate == 1.0 and report.inconsistent == 4
    assert all(i.consistent is False for i in report.items)


def test_failed_order_is_an_error_not_a_verdict(server: FakeJudgeServer) -> None:
    items = [
        pair(1, 5, 1),
        PairItem(item_id="bad", prompt="p", candidate="c [[fault=500]]", baseline="b"),
    ]
    jc = JudgeClient.for_endpoint(
        server.base_url,
        None,
        ClientOptions(max_retries=1, timeout_s=5.0),
    )
    report = judge_pairs(jc, load_rubric("helpfulness"), ["judge-1"], items)
    jc.close()
    bad = report.items[1]
    assert bad.status == ScoreStatus.error and bad.outcome is None
    assert bad.reason is not None and "HTTP 500" in bad.reason
    assert report.verdicts() == {"q1": "win", "bad": None}
    assert report.errors == 1 and report.position_inconsistency_rate == 0.0


def test_verdicts_feed_the_regression_gate(server: FakeJudgeServer) -> None:
    items = [pair(i, 1, 5) for i in range(25)]  # the candidate loses everywhere
    jc = client_for(server)
    report = judge_pairs(jc, load_rubric("helpfulness"), ["judge-1"], items)
    jc.close()
    cmp = compare_pairwise(
        report.verdicts(), MetricPolicy(metric="judge.helpfulness", kind="pairwise")
    )
    assert cmp.losses == 25 and cmp.decision == "regression"


def test_duplicate_item_ids_are_refused(server: FakeJudgeServer) -> None:
    jc = client_for(server)
    with pytest.raises(ValueError, match="unique"):
        judge_pairs(jc, load_rubric("helpfulness"), ["judge-1"], [pair(1, 1, 1), pair(1, 2, 2)])
    jc.close()


def test_evaluator_pairwise_mode(server: FakeJudgeServer) -> None:
    s = JudgeSettings(base_url=server.base_url, model="judge-1", api_key=SecretStr("k"))
    judge = JudgeEvaluator(rubrics=["helpfulness"], mode="pairwise", settings=s)
    samples = [
        Sample(
            subject_id=1,
            prompt="q",
            response="[[score=5]]",
            meta={"baseline_response": "[[score=3]]"},
        ),
        Sample(
            subject_id=2,
            prompt="q",
            response="[[score=2]]",
            meta={"baseline_response": "[[score=2]] same"},
        ),
        Sample(
            subject_id=3,
            prompt="q",
            response="[[score=1]]",
            meta={"baseline_response": "[[score=4]]"},
        ),
        Sample(subject_id=4, prompt="q", response="no baseline here"),
    ]
    scores = judge.evaluate(samples).scores
    report = judge.last_pairwise["helpfulness"]
    judge.close()
    assert judge.metric_names == ["helpfulness_pairwise"]
    assert [(s.label, s.value) for s in scores[:3]] == [("win", 1.0), ("tie", 0.5), ("loss", 0.0)]
    assert all(s.details and s.details["position_consistent"] is True for s in scores[:3])
    assert scores[3].status == ScoreStatus.skipped
    assert scores[3].reason is not None and "baseline_response" in scores[3].reason
    assert report.position_inconsistency_rate == 0.0 and report.wins == 1
    assert server.request_count == 6
