"""Calling the model under test over real HTTP (a fake OpenAI-compatible server) for test sets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from evalwatch.core import RunStatus
from evalwatch.runs.dataset import DatasetParams, DatasetRunError, evaluate_dataset
from evalwatch.runs.generate import generate_outputs
from evalwatch.settings import Settings, TargetSettings
from evalwatch.storage.repo import get_run, latest_outputs, register_dataset, table_counts
from evalwatch.testing import FakeJudgeServer

KEY = "sk-target-0123456789"
PRICES = {"model-x": (2.0, 4.0)}  # USD per 1M input / output tokens


@pytest.fixture
def server() -> Iterator[FakeJudgeServer]:
    with FakeJudgeServer(
        latency_s=0.05, expected_api_key=KEY, send_retry_after_ms=True, retry_after_s=0.2
    ) as srv:
        yield srv


def _target(srv: FakeJudgeServer, **kw: object) -> TargetSettings:
    base: dict[str, object] = {
        "base_url": srv.base_url,
        "api_key": SecretStr(KEY),
        "timeout_s": 5.0,
        "max_retries": 2,
        "concurrency": 4,
        "prices": PRICES,
    }
    return TargetSettings(**{**base, **kw})


def test_answers_come_back_in_order_with_retries_cost_and_bounded_concurrency(
    server: FakeJudgeServer,
) -> None:
    prompts = [(f"q{i}", f"question {i}?") for i in range(12)]
    prompts[3] = ("q3", "question 3? [[fault=500x2]]")  # fails twice, then answers
    prompts[5] = ("q5", "question 5? [[fault=429x1]]")  # rate limited once
    prompts[7] = ("q7", "question 7? [[fault=500]]")  # never answers
    gens = generate_outputs("model-x", prompts, _target(server))
    assert [g.key for g in gens] == [k for k, _ in prompts]
    failed = [g for g in gens if g.error]
    assert [g.key for g in failed] == ["q7"]
    assert "failed after retries" in str(failed[0].error) and "HTTP 500" in str(failed[0].error)
    assert failed[0].attempts == 3
    by_key = {g.key: g for g in gens}
    assert by_key["q3"].output and by_key["q3"].attempts == 3
    assert by_key["q5"].output and by_key["q5"].attempts == 2
    for g in gens:
        if g.error is None:
            assert g.input_tokens and g.output_tokens
            expected = (g.input_tokens * 2.0 + g.output_tokens * 4.0) / 1e6
            assert g.cost == pytest.approx(expected)
    # 11 answered + 2 + 1 + 2 retried calls, never more than 4 at once.
    assert server.request_count == 12 + 2 + 1 + 2
    assert 1 < server.max_in_flight <= 4
    assert all(r.authorized for r in server.requests)


def test_unpriced_model_has_no_cost(server: FakeJudgeServer) -> None:
    gens = generate_outputs("model-y", [("a", "hi?")], _target(server))
    assert gens[0].output and gens[0].cost is None


def test_dataset_run_calls_the_model_stores_cost_and_a_rerun_fills_the_gaps(
    sqlite_engine: Engine, server: FakeJudgeServer, tmp_path: Path
) -> None:
    items = [{"item_key": f"q{i}", "input": f"question {i}?"} for i in range(8)]
    items[2]["input"] = "question 2? [[fault=500x3]]"  # fails the first run's 3 attempts
    ds, _ = register_dataset(sqlite_engine, "qa", items)
    assert ds.id is not None
    settings = Settings(database_url=str(sqlite_engine.url), target=_target(server))
    params = DatasetParams(dataset="qa", model="model-x", evaluators=["heuristics"])

    prepared, result = evaluate_dataset(sqlite_engine, params, settings, progress=False)
    assert prepared.generation_errors == 1 and prepared.model == "model-x"
    run = get_run(sqlite_engine, prepared.run_id)
    assert run is not None and run.status == RunStatus.completed and run.summary
    assert run.summary["generation_errors"] == 1
    assert run.summary["generation_cost_usd"] > 0
    # No judge ran, so the run's cost is what the model under test cost.
    assert run.summary["cost_usd"] == pytest.approx(run.summary["generation_cost_usd"])
    assert run.summary["scoring_cost_usd"] is None
    # The failed item is kept, as unscored with the reason, not dropped.
    assert result.n_subjects == 8
    empty = next(m for m in result.metrics if m.metric == "empty_response")
    assert empty.count == 7 and empty.unscored == 1
    assert any("model output failed" in r for r in empty.unscored_reasons)
    assert len(latest_outputs(sqlite_engine, ds.id, "model-x", answered_only=True)) == 7

    # Run again: only the failed item is asked, and it now answers.
    calls = server.request_count
    prepared2, result2 = evaluate_dataset(sqlite_engine, params, settings, progress=False)
    assert server.request_count == calls + 1
    assert prepared2.generation_errors == 0 and prepared2.run_id != prepared.run_id
    assert len(latest_outputs(sqlite_engine, ds.id, "model-x", answered_only=True)) == 8
    empty2 = next(m for m in result2.metrics if m.metric == "empty_response")
    assert empty2.unscored == 0
    assert table_counts(sqlite_engine)["model_outputs"] == 9  # 8 answers + the recorded failure


def test_no_endpoint_is_bad_input(sqlite_engine: Engine) -> None:
    register_dataset(sqlite_engine, "qa", [{"item_key": "a", "input": "hi?"}])
    with pytest.raises(DatasetRunError, match="EVALWATCH_TARGET__BASE_URL"):
        evaluate_dataset(
            sqlite_engine,
            DatasetParams(dataset="qa", model="m", evaluators=["heuristics"]),
            Settings(database_url=str(sqlite_engine.url)),
            progress=False,
        )
