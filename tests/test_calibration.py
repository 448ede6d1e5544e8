"""Judge calibration: agreement statistics, and judging human-labelled rows end to end."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import SecretStr
from sklearn.metrics import cohen_kappa_score
from sqlalchemy.engine import Engine

from evalwatch.evaluators.calibration import (
    HumanLabel,
    agreement_rate,
    calibrate,
    calibration_stats,
    cohen_kappa,
    confusion,
    position_consistency_rate,
    read_human_labels,
    within_one_rate,
)
from evalwatch.evaluators.judge import JudgeEvaluator
from evalwatch.settings import JudgeSettings
from evalwatch.testing import FakeJudgeServer

LABELS = list(range(1, 6))


def test_agreement_and_within_one() -> None:
    assert agreement_rate([1, 2, 3, 4], [1, 2, 4, 1]) == 0.5
    assert within_one_rate([1, 2, 3, 4], [1, 2, 4, 1]) == 0.75
    assert agreement_rate([], []) is None
    with pytest.raises(ValueError, match="2 human scores but 1"):
        agreement_rate([1, 2], [1])


def test_quadratic_kappa_matches_sklearn_and_penalises_distance() -> None:
    human = [1, 2, 3, 4, 5, 5, 4, 3, 2, 1]
    near = [1, 2, 3, 5, 5, 4, 4, 3, 2, 1]
    far = [5, 2, 3, 4, 5, 1, 4, 3, 2, 1]
    k_near, _ = cohen_kappa(human, near, LABELS)
    k_far, _ = cohen_kappa(human, far, LABELS)
    assert k_near == pytest.approx(
        cohen_kappa_score(human, near, weights="quadratic", labels=LABELS)
    )
    # Same number of exact matches; far-off disagreements cost more under quadratic weights.
    assert agreement_rate(human, near) == agreement_rate(human, far)
    assert k_near is not None and k_far is not None and k_near > k_far
    k_plain, _ = cohen_kappa(human, near, LABELS, weighting="none")
    assert k_plain == pytest.approx(cohen_kappa_score(human, near, labels=LABELS))


@pytest.mark.parametrize(
    ("human", "judge", "why"),
    [([], [], "without items"), ([4, 4, 4], [4, 4, 4], "same score")],
)
def test_kappa_undefined_is_none_with_reason(human: list[int], judge: list[int], why: str) -> None:
    k, note = cohen_kappa(human, judge, LABELS)
    assert k is None and note is not None and why in note


def test_confusion_covers_the_whole_scale() -> None:
    c = confusion([1, 1, 5], [1, 2, 5], LABELS)
    assert c["labels"] == LABELS
    assert c["matrix"][0] == [1, 1, 0, 0, 0] and c["matrix"][4] == [0, 0, 0, 0, 1]
    assert sum(map(sum, c["matrix"])) == 3


def test_position_consistency_rate() -> None:
    assert position_consistency_rate([True, False, True, None]) == pytest.approx(2 / 3)
    assert position_consistency_rate([None]) is None


def test_calibration_stats_bundle() -> None:
    s = calibration_stats([1, 2, 3, 4], [1, 2, 3, 4], LABELS)
    assert s["agreement"] == 1.0 and s["kappa"] == pytest.approx(1.0)
    assert s["kappa_weighting"] == "quadratic" and s["kappa_note"] is None


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_read_human_labels_reports_the_bad_line(tmp_path: Path) -> None:
    good = {"id": "a", "rubric": "helpfulness", "prompt": "p", "response": "r", "human_score": 4}
    path = write_jsonl(tmp_path / "l.jsonl", [good, {"id": "b", "rubric": "helpfulness"}])
    with pytest.raises(ValueError, match=r"l.jsonl:2: not a valid human label row"):
        read_human_labels(path)
    path.write_text(json.dumps(good) + "\n\n" + json.dumps(good) + "\n")
    with pytest.raises(ValueError, match=r":3: duplicate row id 'a'"):
        read_human_labels(path)
    path.write_text(json.dumps(good) + "\nnot json\n")
    with pytest.raises(ValueError, match=":2:"):
        read_human_labels(path)
    path.write_text(json.dumps(good) + "\n")
    assert read_human_labels(path) == [HumanLabel(**good)]


@pytest.fixture
def server() -> Iterator[FakeJudgeServer]:
    with FakeJudgeServer() as srv:
        yield srv


def judge_for(srv: FakeJudgeServer, engine: Engine | None = None, **opts: Any) -> JudgeEvaluator:
    s = JudgeSettings(base_url=srv.base_url, model="judge-1", api_key=SecretStr("k"))
    return JudgeEvaluator(settings=s, engine=engine, **opts)


def labelled(
    judge_scores: list[int], human_scores: list[int], prompts: list[str]
) -> list[HumanLabel]:
    return [
        HumanLabel(
            id=f"r{i}",
            rubric="helpfulness",
            prompt=p,
            response=f"answer {i} [[score={j}]]",
            human_score=h,
        )
        for i, (j, h, p) in enumerate(zip(judge_scores, human_scores, prompts, strict=True))
    ]


def test_calibrate_end_to_end_stores_a_calibration(
    server: FakeJudgeServer, sqlite_engine: Engine
) -> None:
    judge_scores = [1, 2, 3, 4, 5, 5, 2, 4]
    human_scores = [1, 2, 3, 4, 5, 4, 2, 5]
    prompts = ["p1", "p1", "p2", "p2", "p3", "p4", "p5", "p6"]  # two same-prompt pairs
    rows = labelled(judge_scores, human_scores, prompts)
    rows.append(
        HumanLabel(id="c1", rubric="correctness", prompt="p", response="r", human_score=3)
    )  # another rubric: ignored by this judge
    judge = judge_for(server, sqlite_engine, rubrics=["helpfulness"])
    (result,) = calibrate(rows, judge, engine=sqlite_engine)
    judge.close()

    assert result.rubric == "helpfulness" and result.n == 8 and result.n_failed == 0
    assert result.agreement == pytest.approx(6 / 8)
    assert result.kappa == pytest.approx(
        cohen_kappa_score(human_scores, judge_scores, weights="quadratic", labels=LABELS)
    )
    assert result.kappa_weighting == "quadratic"
    assert result.confusion["matrix"][3] == [0, 0, 0, 1, 1]  # human 4: judged 4 and 5
    assert result.n_pairs == 2 and result.position_consistency == 1.0
    with sqlite_engine.connect() as conn:
        stored = conn.execute(
            sa.text(
                "SELECT judge_model, rubric, rubric_version, n, agreement, kappa, kappa_weighting,"
                " position_consistency FROM judge_calibrations"
            )
        ).one()
    assert stored[:4] == ("judge-1", "helpfulness", "1", 8)
    assert stored[4] == pytest.approx(0.75) and stored[5] == pytest.approx(result.kappa)
    assert stored[6] == "quadratic" and stored[7] == 1.0
    assert result.calibration_id is not None


def test_calibrate_position_bias_lowers_consistency(sqlite_engine: Engine) -> None:
    rows = labelled([5, 1, 4, 2], [5, 1, 4, 2], ["p1", "p1", "p2", "p2"])
    with FakeJudgeServer(position_bias="first") as srv:
        judge = judge_for(srv, rubrics=["helpfulness"])
        (result,) = calibrate(rows, judge)
        judge.close()
    assert result.agreement == 1.0
    assert result.n_pairs == 2 and result.position_consistency == 0.0


def test_calibrate_without_shared_prompts_says_why(server: FakeJudgeServer) -> None:
    rows = labelled([3, 4], [3, 4], ["a", "b"])
    judge = judge_for(server, rubrics=["helpfulness"])
    (result,) = calibrate(rows, judge)
    judge.close()
    assert result.position_consistency is None and result.n_pairs == 0
    assert result.position_note is not None and "share a prompt" in result.position_note


def test_calibrate_judge_failures_are_counted_not_scored(server: FakeJudgeServer) -> None:
    rows = labelled([3, 4, 5], [3, 4, 5], ["a", "b", "c"])
    rows[1] = rows[1].model_copy(update={"response": "broken [[fault=500]]"})
    judge = judge_for(server, rubrics=["helpfulness"], max_retries=0)
    (result,) = calibrate(rows, judge, max_pairs=0)
    judge.close()
    assert result.n == 2 and result.n_failed == 1
    assert result.failures[0]["id"] == "r1" and "HTTP 500" in result.failures[0]["reason"]
    assert result.agreement == 1.0


def test_calibrate_rejects_human_scores_off_the_scale(server: FakeJudgeServer) -> None:
    rows = labelled([3], [7], ["a"])
    judge = judge_for(server, rubrics=["helpfulness"])
    with pytest.raises(ValueError, match="outside the helpfulness scale"):
        calibrate(rows, judge)
    judge.close()
