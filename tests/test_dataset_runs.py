"""Test-set runs: resuming reports all of it; outputs are known by content, not by path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from evalwatch.runs.dataset import DatasetParams, DatasetRunError, evaluate_dataset
from evalwatch.settings import Settings
from evalwatch.storage.repo import get_run, register_dataset


def test_rerun_resumes_the_run_and_reports_every_item(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    register_dataset(
        sqlite_engine, "qa", [{"item_key": f"q{i}", "input": f"question {i}?"} for i in range(10)]
    )
    preds = tmp_path / "p.jsonl"
    preds.write_text(
        "".join(
            json.dumps({"id": f"q{i}", "model": "m", "output": "" if i < 2 else "an answer"}) + "\n"
            for i in range(10)
        )
    )
    settings = Settings(database_url=str(sqlite_engine.url))
    params = DatasetParams(dataset="qa", outputs_file=str(preds), evaluators=["heuristics"])
    first, _ = evaluate_dataset(sqlite_engine, params, settings, progress=False)
    assert not first.resumed
    # A crash lost the scores of half the items.
    with sqlite_engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM scores WHERE subject_id > 5"))
    second, result = evaluate_dataset(sqlite_engine, params, settings, progress=False)
    assert second.resumed and second.run_id == first.run_id
    assert result.scores_written == 5 * 6
    empty = next(m for m in result.metrics if m.metric == "empty_response")
    assert empty.count == 10 and abs((empty.mean or 0) - 0.2) < 1e-9
    run = get_run(sqlite_engine, first.run_id)
    assert run is not None and run.summary is not None
    stored = next(m for m in run.summary["metrics"] if m["metric"] == "empty_response")
    assert stored["count"] == 10


def _qa_and_predictions(engine: Engine, path: Path, model: str, answer: str) -> None:
    register_dataset(
        engine, "qa", [{"item_key": f"q{i}", "input": f"question {i}?"} for i in range(6)]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join(
            json.dumps({"id": f"q{i}", "model": model, "output": f"{answer} {i}"}) + "\n"
            for i in range(6)
        )
    )


def _count(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one())


def test_the_same_predictions_from_another_path_resolve_to_the_same_outputs(
    engine: Engine, tmp_path: Path
) -> None:
    first_path = tmp_path / "checkout-a" / "p.jsonl"
    _qa_and_predictions(engine, first_path, "m", "an answer")
    settings = Settings(database_url=str(engine.url))
    first, _ = evaluate_dataset(
        engine,
        DatasetParams(dataset="qa", outputs_file=str(first_path), evaluators=["heuristics"]),
        settings,
        progress=False,
    )
    stored = _count(engine, "model_outputs")
    # CI's clone: the same content at another absolute path.
    copy = tmp_path / "clone" / "datasets" / "renamed.jsonl"
    copy.parent.mkdir(parents=True)
    copy.write_bytes(first_path.read_bytes())
    again, result = evaluate_dataset(
        engine,
        DatasetParams(dataset="qa", outputs_file=str(copy), evaluators=["heuristics"]),
        settings,
        progress=False,
    )
    assert again.model == "m" and again.outputs == first.outputs and len(again.outputs) == 6
    assert again.resumed and again.run_id == first.run_id and result.scores_written == 0
    assert _count(engine, "model_outputs") == stored


def test_a_file_evaluates_its_own_answers_not_the_models_newest(
    engine: Engine, tmp_path: Path
) -> None:
    old, new = tmp_path / "old.jsonl", tmp_path / "new.jsonl"
    _qa_and_predictions(engine, old, "m", "first answer")
    new.write_text(old.read_text().replace("first answer", "second answer"))
    settings = Settings(database_url=str(engine.url))

    def run(path: Path) -> dict[str, int]:
        params = DatasetParams(dataset="qa", outputs_file=str(path), evaluators=["heuristics"])
        return evaluate_dataset(engine, params, settings, progress=False)[0].outputs

    first, second, first_again = run(old), run(new), run(old)
    assert set(first.values()).isdisjoint(second.values())
    assert first_again == first


def test_a_model_without_stored_answers_is_named_with_the_stored_models(
    engine: Engine, tmp_path: Path
) -> None:
    preds = tmp_path / "p.jsonl"
    _qa_and_predictions(engine, preds, "acme-chat-v1.0", "an answer")
    settings = Settings(database_url=str(engine.url))
    evaluate_dataset(
        engine,
        DatasetParams(dataset="qa", outputs_file=str(preds), evaluators=["heuristics"]),
        settings,
        progress=False,
    )
    with pytest.raises(DatasetRunError) as err:
        evaluate_dataset(
            engine,
            DatasetParams(dataset="qa", model="production", evaluators=["heuristics"]),
            settings,
            progress=False,
        )
    message = str(err.value)
    assert "model 'production' has no stored answers for qa@" in message
    assert "stored models: acme-chat-v1.0 (6 items)" in message
    assert "EVALWATCH_TARGET__BASE_URL" in message
    # A model with stored answers and no endpoint: its stored answers are evaluated.
    prepared, _ = evaluate_dataset(
        engine,
        DatasetParams(dataset="qa", model="acme-chat-v1.0", evaluators=["heuristics"]),
        settings,
        progress=False,
    )
    assert len(prepared.outputs) == 6
