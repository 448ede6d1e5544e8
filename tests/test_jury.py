"""A jury of judge models: mean on scales, majority on pass/fail, disagreement flagged."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from evalwatch.core import ScoreStatus
from evalwatch.evaluators.base import Sample
from evalwatch.evaluators.judge import JudgeEvaluator
from evalwatch.evaluators.jury import aggregate_outcomes, aggregate_scores
from evalwatch.evaluators.rubrics import RubricScale
from evalwatch.settings import JudgeSettings
from evalwatch.testing import FakeJudgeServer, fake_score

SCALE = RubricScale(min=1, max=5)
BINARY = RubricScale(min=0, max=1)


@pytest.mark.parametrize(
    ("votes", "scale", "score", "disagreement", "missing"),
    [
        ({"a": 4}, SCALE, 4.0, False, []),
        ({"a": 4, "b": 5}, SCALE, 4.5, False, []),
        ({"a": 5, "b": 3}, SCALE, 4.0, True, []),
        ({"a": 5, "b": None, "c": 4}, SCALE, 4.5, False, ["b"]),
        ({"a": 1, "b": 1, "c": 0}, BINARY, 1.0, True, []),
        ({"a": 0, "b": 0, "c": 0}, BINARY, 0.0, False, []),
        ({"a": 0, "b": 1}, BINARY, None, True, []),
        ({"a": None, "b": None}, SCALE, None, False, ["a", "b"]),
    ],
)
def test_aggregate_scores(
    votes: dict[str, Any],
    scale: RubricScale,
    score: float | None,
    disagreement: bool,
    missing: list[str],
) -> None:
    j = aggregate_scores(votes, scale, disagreement_points=2.0)
    assert j.score == score
    assert j.disagreement is disagreement
    assert j.missing == missing
    if score is None:
        assert j.reason


def test_disagreement_threshold_is_configurable() -> None:
    assert aggregate_scores({"a": 5, "b": 4}, SCALE, disagreement_points=1.0).disagreement
    assert not aggregate_scores({"a": 5, "b": 4}, SCALE, disagreement_points=2.0).disagreement


@pytest.mark.parametrize(
    ("votes", "outcome", "disagreement"),
    [
        ({"a": "win", "b": "win", "c": "loss"}, "win", True),
        ({"a": "loss", "b": "loss"}, "loss", False),
        ({"a": "win", "b": "loss"}, "tie", True),
        ({"a": "win", "b": None}, "win", False),
        ({"a": None}, None, False),
    ],
)
def test_aggregate_outcomes(votes: dict[str, Any], outcome: Any, disagreement: bool) -> None:
    j = aggregate_outcomes(votes)
    assert j.outcome == outcome and j.disagreement is disagreement


@pytest.fixture
def server() -> Iterator[FakeJudgeServer]:
    with FakeJudgeServer(
        model_offsets={"judge-harsh": -2, "judge-kind": 1}, model_faults={"judge-down": "500"}
    ) as srv:
        yield srv


def jury(srv: FakeJudgeServer, models: list[str], **options: Any) -> JudgeEvaluator:
    s = JudgeSettings(base_url=srv.base_url, model="unused", api_key=SecretStr("k"), max_retries=1)
    return JudgeEvaluator(models=models, settings=s, **options)


def test_jury_mean_and_disagreement_flag(server: FakeJudgeServer) -> None:
    judge = jury(server, ["judge-1", "judge-harsh", "judge-kind"], rubrics=["helpfulness"])
    # Offsets apply to hash-derived scores (a marker is the same for every model).
    text = next(t for t in (f"answer {i}" for i in range(50)) if fake_score(t) == 3)
    (score,) = judge.evaluate([Sample(subject_id=1, prompt="q", response=text)]).scores
    judge.close()
    assert score.status == ScoreStatus.ok and score.details is not None
    votes = {m: v["score"] for m, v in score.details["models"].items()}
    assert votes == {"judge-1": 3.0, "judge-harsh": 1.0, "judge-kind": 4.0}
    assert score.details["score"] == pytest.approx(8 / 3)
    assert score.value == pytest.approx((8 / 3 - 1) / 4)
    assert score.details["jury"]["disagreement"] is True
    assert score.details["jury"]["spread"] == 3.0
    assert score.explanation is not None and "[judge-harsh]" in score.explanation
    assert {r.model for r in server.requests} == {"judge-1", "judge-harsh", "judge-kind"}


def test_jury_agreeing_models_are_not_flagged(server: FakeJudgeServer) -> None:
    judge = jury(server, ["judge-1", "judge-2"], rubrics=["helpfulness"])
    (score,) = judge.evaluate([Sample(subject_id=1, prompt="q", response="[[score=4]]")]).scores
    judge.close()
    assert score.details is not None and score.details["jury"]["disagreement"] is False
    assert score.details["score"] == 4.0


def test_jury_member_failing_is_left_out_and_listed(server: FakeJudgeServer) -> None:
    judge = jury(server, ["judge-1", "judge-down"], rubrics=["helpfulness"])
    (score,) = judge.evaluate([Sample(subject_id=1, prompt="q", response="[[score=5]]")]).scores
    judge.close()
    assert score.status == ScoreStatus.ok and score.details is not None
    assert score.details["score"] == 5.0
    assert score.details["jury"]["missing"] == ["judge-down"]
    assert score.details["failures"][0]["model"] == "judge-down"


def test_whole_jury_failing_is_an_error(server: FakeJudgeServer) -> None:
    judge = jury(server, ["judge-down"], rubrics=["helpfulness"])
    (score,) = judge.evaluate([Sample(subject_id=1, prompt="q", response="x")]).scores
    judge.close()
    assert score.status == ScoreStatus.error and score.value is None
    assert score.reason is not None and "HTTP 500" in score.reason


def test_pass_fail_rubric_uses_majority(server: FakeJudgeServer, tmp_path: Path) -> None:
    rubric = {
        "name": "grounded",
        "version": "3",
        "description": "Is every claim supported?",
        "criteria": ["Every claim is in the context."],
        "scale": {"min": 0, "max": 1, "labels": {0: "fail", 1: "pass"}},
    }
    (tmp_path / "grounded.yaml").write_text(yaml.safe_dump(rubric))
    judge = jury(
        server,
        ["judge-1", "judge-harsh", "judge-kind"],
        rubrics=["grounded"],
        rubric_paths=[str(tmp_path)],
    )
    # Hash score 1 ("pass") for judge-1 and judge-kind; judge-harsh is pushed down to 0.
    text = next(t for t in (f"claim {i}" for i in range(50)) if fake_score(t, 0, 1) == 1)
    (score,) = judge.evaluate([Sample(subject_id=1, prompt="q", response=text)]).scores
    judge.close()
    assert score.status == ScoreStatus.ok and score.details is not None
    assert score.details["jury"]["method"] == "majority"
    assert score.details["score"] == 1.0 and score.value == 1.0 and score.label == "pass"
    assert score.details["jury"]["disagreement"] is True
    assert score.details["rubric_version"] == "3"
