"""Test-set runs from a predictions file: resuming a run reports all of it."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from evalwatch.settings import Settings
from runs.dataset import DatasetParams, evaluate_dataset
from storage.repo import get_run, register_dataset


def test_rerun_resumes_the_run_and_reports_every_item(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    register_dataset(
        sqlite_engine, "qa", [{"item_key": f"q{i}", "input": f"question {i}?"} for i in range(10)]
    )
    preds = tmp_path / "p.jsonl"
    preds.write_text(
        "".join(
            json.dumps({"id": f"q{i}", "model": "m", "output": "" if i < 2 else "an answer"})
            + "\n"
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
