"""Score identity and run membership, on a real SQLite file and the real PostgreSQL.

A score is unique per subject, evaluator, version, score-relevant options and metric; a run
reports every score of its sample under its evaluators' provenance, computed now or reused.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from evalwatch.evaluators.base import config_hash
from evalwatch.evaluators.embedding import EmbeddingConfig, EmbeddingEvaluator
from evalwatch.evaluators.heuristics import HeuristicsConfig, HeuristicsEvaluator
from evalwatch.evaluators.runner import RunResult, run_evaluation
from evalwatch.runs.common import run_summary_from_store
from evalwatch.runs.summary import RunSummary
from evalwatch.runs.traffic import TrafficParams, evaluate_traffic
from evalwatch.settings import Settings
from evalwatch.storage.alerts import AggSpec, SeriesSpec, run_aggregates
from evalwatch.storage.db import make_engine, upgrade
from evalwatch.storage.frames import output_scores_frame, run_scores_frame
from evalwatch.storage.repo import (
    create_run,
    get_run,
    insert_interactions,
    insert_model_outputs,
    register_dataset,
    write_scores,
)
from evalwatch.storage.sampling import SampleSpec
from evalwatch.storage.traffic_frame import run_subjects

N = 20
T0 = datetime(2026, 11, 1, tzinfo=UTC)
HEURISTICS_METRICS = 6


def _traffic(n: int = N) -> list[dict[str, Any]]:
    return [
        {
            "request_id": f"req-{i}",
            "ts": T0 + timedelta(hours=i),
            "app": "support",
            "model_name": "m",
            "model_version": "v1" if i % 2 else "v2",
            "prompt": f"Question {i}: how do I reset my password?",
            "response": (
                "Sorry, I cannot help with that."
                if i % 4 == 0
                else "Open settings and choose reset password. " * (1 + i % 3)
            ),
        }
        for i in range(n)
    ]


def _ids(engine: Engine) -> list[int]:
    insert_interactions(engine, _traffic())
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(sa.text("SELECT id FROM interactions ORDER BY id"))]


def _count(engine: Engine, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(sql)).scalar_one())


def _run(engine: Engine, evaluators: list[Any], ids: list[int]) -> RunResult:
    run = create_run(engine, "traffic")
    assert run.id is not None
    return run_evaluation(engine, evaluators, ids, run_id=run.id, progress=False, skip_scored=True)


def _metric(result_or_summary: Any, name: str) -> Any:
    metrics = (
        result_or_summary.metrics
        if isinstance(result_or_summary, RunResult | RunSummary)
        else result_or_summary["metrics"]
    )
    for m in metrics:
        m = m if isinstance(m, dict) else m.model_dump()
        if m["metric"] == name:
            return m
    raise AssertionError(f"no metric {name}")


def test_runtime_fields_are_declared_on_the_config_fields() -> None:
    assert {"device", "batch_size", "dtype"} <= EmbeddingConfig.runtime_fields()
    assert "model" not in EmbeddingConfig.runtime_fields()
    assert HeuristicsConfig.runtime_fields() == frozenset()
    # The marker is in the field's schema, where users and tools can see it.
    schema = EmbeddingConfig.model_json_schema()["properties"]
    assert schema["batch_size"]["runtime"] is True and "runtime" not in schema["model"]
    assert config_hash(EmbeddingConfig(device="cpu", batch_size=4)) == config_hash(
        EmbeddingConfig(device="cuda", batch_size=256)
    )
    assert config_hash(HeuristicsConfig(refusal_phrases=["nope"])) != config_hash(
        HeuristicsConfig()
    )


def test_score_relevant_option_change_rescores_and_each_run_reports_its_own(
    engine: Engine,
) -> None:
    ids = _ids(engine)
    first = _run(engine, [HeuristicsEvaluator()], ids)
    assert first.scores_written == N * HEURISTICS_METRICS
    # Nothing in these responses says "zzz": with that phrase list nothing is a refusal.
    other = _run(engine, [HeuristicsEvaluator(refusal_phrases=["zzz"])], ids)
    assert other.scores_written == N * HEURISTICS_METRICS and other.scores_reused == 0
    assert _count(engine, "SELECT COUNT(*) FROM scores") == 2 * N * HEURISTICS_METRICS

    assert _metric(first, "refusal")["mean"] == pytest.approx(0.25)
    assert _metric(other, "refusal")["mean"] == 0.0
    for result, refusals in ((first, N // 4), (other, 0)):
        frame = run_scores_frame(engine, result.run_id, with_text=False)
        assert len(frame) == N * HEURISTICS_METRICS  # its own scores, not the other run's
        assert frame.loc[frame["metric"] == "heuristics.refusal", "value"].sum() == refusals
        stored = run_summary_from_store(engine, result.run_id)
        assert _metric(stored, "refusal")["count"] == N


def test_runtime_only_option_change_reuses_the_scores(engine: Engine) -> None:
    ids = _ids(engine)[:6]
    first = _run(engine, [EmbeddingEvaluator(device="cpu", batch_size=2)], ids)
    assert first.scores_written == 6 * 2  # relevance, reference_similarity
    again = _run(engine, [EmbeddingEvaluator(device="cpu", batch_size=5)], ids)
    assert again.scores_written == 0 and again.scores_reused == 6 * 2
    assert again.profiles[0].n_items == 0  # nothing was embedded again
    assert _metric(again, "relevance")["count"] == 6
    assert _metric(again, "relevance")["mean"] == pytest.approx(_metric(first, "relevance")["mean"])
    assert len(run_scores_frame(engine, again.run_id, with_text=False)) == 6 * 2


def _window(start_h: int, end_h: int) -> TrafficParams:
    return TrafficParams(
        sample=SampleSpec(start=T0 + timedelta(hours=start_h), end=T0 + timedelta(hours=end_h)),
        evaluators=["heuristics"],
    )


def test_rerun_and_overlapping_window_reuse_and_report_the_whole_sample(engine: Engine) -> None:
    _ids(engine)
    settings = Settings()
    first = evaluate_traffic(engine, _window(0, 12), settings, progress=False)
    assert first.summary.scores_written == 12 * HEURISTICS_METRICS

    # The same parameters again: the same run, nothing new to score, the whole run reported.
    rerun = evaluate_traffic(engine, _window(0, 12), settings, progress=False)
    assert rerun.prepared.resumed and rerun.prepared.run_id == first.prepared.run_id
    assert rerun.summary.scores_written == 0
    assert _metric(rerun.summary, "response_chars")["count"] == 12

    # The next window overlaps the first by 6 hours: 6 interactions reused, 6 scored.
    later = evaluate_traffic(engine, _window(6, 18), settings, progress=False)
    assert later.prepared.run_id != first.prepared.run_id
    assert later.summary.scores_written == 6 * HEURISTICS_METRICS
    assert later.summary.scores_reused == 6 * HEURISTICS_METRICS
    assert _metric(later.summary, "response_chars")["count"] == 12
    stored = get_run(engine, later.prepared.run_id)
    assert stored is not None and stored.summary is not None
    assert _metric(stored.summary, "response_chars")["count"] == 12
    from_store = run_summary_from_store(engine, later.prepared.run_id)
    assert from_store["n_subjects"] == 12
    assert from_store["n_scores"] == 12 * HEURISTICS_METRICS
    exists, subjects = run_subjects(engine, later.prepared.run_id)
    assert exists and len(subjects) == 12


def test_subset_run_reports_its_subset_and_alerts_read_it(engine: Engine) -> None:
    ids = _ids(engine)
    _run(engine, [HeuristicsEvaluator()], ids)
    subset = ids[:8]
    part = _run(engine, [HeuristicsEvaluator()], subset)
    assert part.scores_written == 0 and part.scores_reused == 8 * HEURISTICS_METRICS
    assert _metric(part, "response_chars")["count"] == 8
    frame = run_scores_frame(engine, part.run_id)
    assert set(frame["subject_id"]) == set(subset)
    assert run_summary_from_store(engine, part.run_id)["n_subjects"] == 8
    # Alert rules over the run read the run's members, though it computed none of them.
    aggs = run_aggregates(
        engine,
        SeriesSpec("score", evaluator="heuristics", metric="response_chars"),
        AggSpec("count"),
        part.run_id,
    )
    assert sum(a.n for a in aggs) == 8
    volume = run_aggregates(engine, SeriesSpec("volume"), AggSpec("count"), part.run_id)
    assert sum(a.n for a in volume) == 8


def test_output_scores_are_read_under_their_options(engine: Engine) -> None:
    ds, _ = register_dataset(
        engine, "qa", [{"item_key": f"q{i}", "input": f"question {i}"} for i in range(3)]
    )
    assert ds.id is not None
    with engine.connect() as conn:
        items = [r[0] for r in conn.execute(sa.text("SELECT id FROM dataset_items ORDER BY id"))]
    outputs = insert_model_outputs(
        engine,
        [
            {
                "dataset_item_id": i,
                "model": "m",
                "output": "Sorry, I cannot help with that.",
                "output_hash": f"h{i}",
            }
            for i in items
        ],
    )
    evs = [HeuristicsEvaluator(), HeuristicsEvaluator(refusal_phrases=["zzz"])]
    for ev in evs:
        run = create_run(engine, "dataset")
        assert run.id is not None
        run_evaluation(engine, [ev], outputs, "output", run_id=run.id, progress=False)
    for ev, refusals in zip(evs, (3, 0), strict=True):
        frame = output_scores_frame(
            engine, outputs, {"heuristics": ev.version}, {"heuristics": config_hash(ev.config)}
        )
        assert len(frame) == 3 * HEURISTICS_METRICS
        assert frame.loc[frame["metric"] == "heuristics.refusal", "value"].sum() == refusals


def test_written_scores_are_members_of_their_run(engine: Engine) -> None:
    ids = _ids(engine)[:2]
    run = create_run(engine, "traffic")
    assert run.id is not None
    row = {
        "run_id": run.id,
        "subject_type": "interaction",
        "evaluator": "custom",
        "evaluator_version": "1",
        "config_hash": "h",
        "metric": "m",
        "value": 1.0,
        "status": "ok",
    }
    assert write_scores(engine, [{**row, "subject_id": i} for i in ids]) == 2
    assert write_scores(engine, [{**row, "subject_id": i} for i in ids]) == 0
    assert write_scores(engine, [{**row, "subject_id": ids[0], "config_hash": "other"}]) == 1
    assert _count(engine, f"SELECT COUNT(*) FROM run_scores WHERE run_id = {run.id}") == 3


# ---------------------------------------------------------------------------------------------
# Migration from the previous head


@pytest.fixture(params=["sqlite", "postgres"])
def blank_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database with no schema at all."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    # A database of its own on the session's server (the session's one is migrated already).
    server = request.getfixturevalue("pg_database_url")
    name = f"evalwatch_mig_{uuid.uuid4().hex[:10]}"
    admin = make_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield server.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_migration_carries_an_old_store_over(blank_url: str) -> None:
    engine = make_engine(blank_url)
    try:
        assert upgrade(engine, "0001") == "0001"
        ids = _ids(engine)[:3]
        gpu = EmbeddingConfig(device="cuda", batch_size=256).model_dump(mode="json")
        heur = HeuristicsConfig().model_dump(mode="json")

        def old_hash(config: dict[str, Any]) -> str:  # what 0001-era code stored: every option
            return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]

        provenance = {
            "embedding": {"version": "1.0", "config_hash": old_hash(gpu), "config": gpu},
            "heuristics": {"version": "1.0", "config_hash": old_hash(heur), "config": heur},
        }
        with engine.begin() as conn:
            run_id = conn.execute(
                sa.text(
                    "INSERT INTO eval_runs (run_key, kind, status, evaluators, started_at) "
                    "VALUES ('old', 'traffic', 'completed', :ev, :t) RETURNING id"
                ),
                {"ev": json.dumps(provenance), "t": T0.replace(tzinfo=None)},
            ).scalar_one()
            for sid in ids:
                for ev, metric, cfg in (("embedding", "relevance", gpu), ("heuristics", "m", heur)):
                    conn.execute(
                        sa.text(
                            "INSERT INTO scores (run_id, subject_type, subject_id, evaluator, "
                            "evaluator_version, config_hash, metric, value, status, created_at) "
                            "VALUES (:r, 'interaction', :s, :e, '1.0', :h, :m, 0.5, 'ok', :t)"
                        ),
                        {
                            "r": run_id,
                            "s": sid,
                            "e": ev,
                            "h": old_hash(cfg),
                            "m": metric,
                            "t": T0.replace(tzinfo=None),
                        },
                    )
        assert old_hash(gpu) != config_hash(EmbeddingConfig(**gpu))

        upgrade(engine)

        with engine.connect() as conn:
            q = sa.text("SELECT DISTINCT evaluator, config_hash FROM scores")
            hashes: dict[str, str] = {e: h for e, h in conn.execute(q)}
            evaluators = conn.execute(
                sa.text("SELECT evaluators FROM eval_runs WHERE id = :r"), {"r": run_id}
            ).scalar_one()
        # Each score now carries its run's hash of the score-relevant options: the one a
        # run with those options computes today (the device and batch size left out).
        assert hashes == {
            "embedding": config_hash(EmbeddingConfig(device="cpu")),
            "heuristics": config_hash(HeuristicsConfig()),
        }
        if isinstance(evaluators, str):
            evaluators = json.loads(evaluators)
        assert evaluators["embedding"]["config_hash"] == hashes["embedding"]
        # The old run still reports what it wrote.
        assert len(run_scores_frame(engine, run_id, with_text=False)) == 2 * len(ids)
        # And the scores key now has room for other options of the same evaluator.
        run = create_run(engine, "traffic")
        assert run.id is not None
        other = {
            "run_id": run.id,
            "subject_type": "interaction",
            "subject_id": ids[0],
            "evaluator": "heuristics",
            "evaluator_version": "1.0",
            "config_hash": "another",
            "metric": "m",
            "value": 1.0,
            "status": "ok",
        }
        assert write_scores(engine, [other]) == 1
    finally:
        engine.dispose()
