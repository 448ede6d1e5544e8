"""run_evaluation over a real store (SQLite file and PostgreSQL).

The runner scores and stores; marking the run completed or failed is its job's
(:func:`evalwatch.runs.lifecycle.run_lifecycle`), tested at the end through the shared steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from evalwatch.evaluators.base import (
    BaseEvaluator,
    BatchResult,
    EvaluatorConfig,
    MetricSpec,
    Sample,
    ScoreResult,
)
from evalwatch.evaluators.embedding import DEFAULT_MODEL_ID, EmbeddingEvaluator
from evalwatch.evaluators.heuristics import HeuristicsEvaluator
from evalwatch.evaluators.runner import run_evaluation
from evalwatch.evaluators.summary import summarize
from evalwatch.evaluators.toxicity import ToxicityEvaluator
from evalwatch.runs.common import evaluate_here
from evalwatch.runs.summary import RunPlan
from evalwatch.storage.models import DatasetItem, RunStatus
from evalwatch.storage.repo import (
    create_run,
    get_run,
    insert_interactions,
    insert_model_outputs,
    register_dataset,
)
from tests.evaluator_factories import tiny_detoxify_checkpoint

N = 12


def _traffic(n: int = N) -> list[dict[str, Any]]:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    rows = []
    for i in range(n):
        rows.append(
            {
                "request_id": f"req-{i}",
                "ts": start + timedelta(minutes=i),
                "app": "support",
                "model_name": "m",
                "model_version": "v1" if i % 3 else "v2",
                "prompt": f"Question {i}: how do I reset my password?",
                "response": (
                    "" if i == 4 else "Open settings and choose reset password. " * (1 + i % 4)
                ),
                "reference": "Use the reset password link in settings." if i % 2 else None,
                "metadata": {"expects_json": True} if i == 5 else {"topic": "account"},
            }
        )
    return rows


def _ids(engine: Engine) -> list[int]:
    insert_interactions(engine, _traffic())
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(sa.text("SELECT id FROM interactions ORDER BY id"))]


def _scores(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        q = sa.text("SELECT * FROM scores ORDER BY subject_id, evaluator, metric")
        return [dict(r) for r in conn.execute(q).mappings()]


def _count(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one())


@pytest.fixture(scope="module")
def toxicity_options(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    ckpt, base = tiny_detoxify_checkpoint(tmp_path_factory.getbasetemp() / "detoxify-tiny")
    return {
        "device": "cpu",
        "checkpoint": str(ckpt),
        "huggingface_config_path": str(base),
        "batch_size": 4,
    }


class Exploding(BaseEvaluator[EvaluatorConfig]):
    """Fails on any batch holding a response with 'BOOM' (not registered)."""

    name = "exploding"
    version = "1"
    Config = EvaluatorConfig

    @property
    def metrics(self) -> list[MetricSpec]:
        return [MetricSpec(name="length")]

    def evaluate(self, samples: Sequence[Sample]) -> BatchResult:
        if any("BOOM" in s.response for s in samples):
            raise RuntimeError("kaboom in the model")
        return BatchResult(
            scores=[
                ScoreResult(
                    subject_id=s.subject_id,
                    subject_type=s.subject_type,
                    metric="length",
                    value=float(len(s.response)),
                )
                for s in samples
            ]
        )


class Miscounting(Exploding):
    """Breaks the contract: returns one result too few."""

    name = "miscounting"

    def evaluate(self, samples: Sequence[Sample]) -> BatchResult:
        scores = [ScoreResult(subject_id=s.subject_id, metric="length", value=1.0) for s in samples]
        return BatchResult(scores=scores[:-1])


def test_scores_embeddings_profiles_with_provenance(
    engine: Engine, toxicity_options: dict[str, Any]
) -> None:
    ids = _ids(engine)
    evs: list[BaseEvaluator[Any]] = [
        HeuristicsEvaluator(),
        EmbeddingEvaluator(device="cpu", batch_size=8),
        ToxicityEvaluator(**toxicity_options),
    ]
    run = create_run(engine, "traffic")
    assert run.id is not None
    res = run_evaluation(engine, evs, ids, run_id=run.id, chunk_size=5, progress=False)

    per_subject = sum(len(e.metrics) for e in evs)
    assert per_subject == 6 + 2 + 7
    assert res.scores_written == N * per_subject == _count(engine, "scores")
    assert res.unavailable == {} and all(v == 0 for v in res.failed_batches.values())

    rows = _scores(engine)
    hashes = {e.name: (e.version, e.provenance().config_hash) for e in evs}
    for r in rows:
        assert r["run_id"] == run.id and r["subject_type"] == "interaction"
        assert (r["evaluator_version"], r["config_hash"]) == hashes[r["evaluator"]]
        assert (r["value"] is None) == (r["status"] != "ok")
        if r["status"] != "ok":
            assert r["reason"]
    by = {(r["subject_id"], r["evaluator"], r["metric"]): r for r in rows}
    empty_id, json_id = ids[4], ids[5]
    assert by[(empty_id, "heuristics", "empty_response")]["value"] == 1.0
    assert by[(empty_id, "embedding", "relevance")]["reason"] == "empty response"
    assert by[(ids[0], "embedding", "reference_similarity")]["reason"] == "no reference"
    assert by[(json_id, "heuristics", "json_valid")]["value"] == 0.0
    assert by[(ids[0], "heuristics", "json_valid")]["status"] == "skipped"

    # One float16 embedding per interaction, matching the evaluator's own vectors.
    with engine.connect() as conn:
        embs = conn.execute(
            sa.text(
                "SELECT subject_id, model, dim, dtype, vector FROM embeddings ORDER BY subject_id"
            )
        ).all()
    assert [e[0] for e in embs] == ids
    assert {(e[1], e[2], e[3]) for e in embs} == {(DEFAULT_MODEL_ID, 384, "float16")}
    vec = np.frombuffer(bytes(embs[0][4]), dtype="<f2").astype(np.float32)
    direct = (
        evs[1]
        .evaluate(
            [
                Sample(
                    subject_id=ids[0],
                    prompt=_traffic()[0]["prompt"],
                    response=_traffic()[0]["response"],
                )
            ]
        )
        .embeddings
    )
    assert direct is not None
    np.testing.assert_allclose(vec, direct[0], atol=2e-3)

    # One profile per evaluator, CPU figures (no GPU here, or honest GPU ones on a GPU box).
    assert _count(engine, "evaluator_profiles") == 3
    assert {p.evaluator for p in res.profiles} == {"heuristics", "embedding", "toxicity"}
    for p in res.profiles:
        assert p.n_items == N and p.run_id == run.id and p.load_seconds is not None
        assert p.rss_peak_mb is not None
    tox = next(p for p in res.profiles if p.evaluator == "toxicity")
    assert tox.n_tokens and tox.tokens_per_s

    # The summary matches the stored scores; the run's status is left to its job.
    relevance = [r["value"] for r in rows if r["metric"] == "relevance"]
    expected = summarize("embedding", "relevance", relevance)
    got = next(m for m in res.metrics if m.metric == "relevance")
    assert got.count == expected.count == N - 1 and got.unscored == 1
    assert got.mean == pytest.approx(expected.mean)
    assert got.ci_low == pytest.approx(expected.ci_low)
    assert {m.model_version for m in res.by_model_version} == {"v1", "v2"}
    stored = get_run(engine, run.id)
    assert stored is not None and stored.status == RunStatus.running


def test_rerun_is_idempotent(engine: Engine, toxicity_options: dict[str, Any]) -> None:
    ids = _ids(engine)
    for _ in range(2):
        run = create_run(engine, "traffic")
        assert run.id is not None
        evs: list[BaseEvaluator[Any]] = [
            HeuristicsEvaluator(),
            ToxicityEvaluator(**toxicity_options),
        ]
        res = run_evaluation(engine, evs, ids, run_id=run.id, chunk_size=7, progress=False)
    assert res.scores_written == 0  # the second run found everything stored
    assert _count(engine, "scores") == N * (6 + 7)
    # Its summary still covers every subject it looked at.
    assert next(m for m in res.metrics if m.metric == "safety").count == N
    # And a run that skips already-scored subjects scores nothing, yet reports them all.
    run = create_run(engine, "traffic")
    assert run.id is not None
    res = run_evaluation(
        engine, [HeuristicsEvaluator()], ids, run_id=run.id, progress=False, skip_scored=True
    )
    assert res.profiles[0].n_items == 0 and res.scores_written == 0
    assert res.scores_reused == N * 6
    assert {m.metric: m.count for m in res.metrics}["response_chars"] == N


def test_unavailable_evaluator_does_not_stop_the_others(engine: Engine, tmp_path: Any) -> None:
    ids = _ids(engine)
    run = create_run(engine, "traffic")
    assert run.id is not None
    broken = ToxicityEvaluator(device="cpu", checkpoint=str(tmp_path / "missing.ckpt"))
    res = run_evaluation(
        engine, [broken, HeuristicsEvaluator()], ids, run_id=run.id, progress=False
    )
    assert set(res.unavailable) == {"toxicity"}
    assert "evaluator_options.toxicity.checkpoint" in res.unavailable["toxicity"]
    assert res.scores_written == N * 6
    assert {r["evaluator"] for r in _scores(engine)} == {"heuristics"}


def test_only_unavailable_evaluators_fail_the_run(engine: Engine, tmp_path: Any) -> None:
    ids = _ids(engine)
    run = create_run(engine, "traffic")
    assert run.id is not None
    broken = ToxicityEvaluator(device="cpu", checkpoint=str(tmp_path / "missing.ckpt"))
    plan = RunPlan(
        run_id=run.id,
        kind="traffic",
        subject_type="interaction",
        evaluators=["toxicity"],
        batch_size=5,
    )
    finished = evaluate_here(engine, plan, [broken], ids, progress=False)
    assert finished.summary.scores_written == 0 and "toxicity" in finished.summary.unavailable
    stored = get_run(engine, run.id)
    assert stored is not None and stored.status == RunStatus.failed
    assert stored.error and "no evaluator could start" in stored.error


def test_failing_batch_becomes_unscored_errors(engine: Engine) -> None:
    rows = _traffic()
    rows[7]["response"] = "BOOM"
    insert_interactions(engine, rows)
    with engine.connect() as conn:
        ids = [r[0] for r in conn.execute(sa.text("SELECT id FROM interactions ORDER BY id"))]
    run = create_run(engine, "traffic")
    assert run.id is not None
    res = run_evaluation(
        engine,
        [Exploding(), Miscounting(), HeuristicsEvaluator()],
        ids,
        run_id=run.id,
        chunk_size=4,
        progress=False,
    )
    assert res.failed_batches["exploding"] == 1  # only the chunk holding ids[4:8]
    assert res.failed_batches["miscounting"] == 3  # every chunk
    by = {(r["subject_id"], r["evaluator"]): r for r in _scores(engine)}
    for i, sid in enumerate(ids):
        r = by[(sid, "exploding")]
        if 4 <= i < 8:
            assert r["status"] == "error" and r["value"] is None
            assert "RuntimeError: kaboom in the model" in r["reason"]
        else:
            assert r["status"] == "ok" and r["value"] == len(rows[i]["response"])
        m = by[(sid, "miscounting")]
        assert m["status"] == "error" and m["reason"].startswith("contract violation")
    assert _count(engine, "scores") == N * (1 + 1 + 6)  # nothing lost
    summary = next(m for m in res.metrics if m.evaluator == "exploding")
    assert summary.count == N - 4 and summary.unscored == 4
    assert any("kaboom" in k for k in summary.unscored_reasons)


def test_model_outputs_are_scored_with_their_dataset_items(engine: Engine) -> None:
    ds, _ = register_dataset(
        engine,
        "qa",
        [
            {"item_key": "a", "input": "2+2?", "reference": "4"},
            {
                "item_key": "b",
                "input": "Capital of France?",
                "reference": "Paris",
                "meta": {"expects_json": True},
            },
        ],
    )
    table = DatasetItem.__table__  # type: ignore[attr-defined]
    with engine.begin() as conn:
        # Set directly: the sample's meta must come from the item's stored metadata column.
        conn.execute(
            sa.update(table)
            .where(table.c.item_key == "b")
            .values({table.c.metadata: {"expects_json": True}})
        )
        keyed = conn.execute(sa.text("SELECT item_key, id FROM dataset_items")).all()
    items: dict[str, int] = {key: int(i) for key, i in keyed}
    outs = [  # bulk inserts need the same keys in every row
        {"dataset_item_id": items["a"], "model": "m-1", "output": "4", "error": None},
        {"dataset_item_id": items["b"], "model": "m-1", "output": '{"c": "Paris"}', "error": None},
        {"dataset_item_id": items["a"], "model": "m-2", "output": "", "error": "timeout"},
    ]
    for k, o in enumerate(outs):
        o["output_hash"] = f"h{k}"
    out_ids = insert_model_outputs(engine, outs)
    run = create_run(engine, "dataset", dataset_id=ds.id)
    assert run.id is not None
    res = run_evaluation(
        engine,
        [HeuristicsEvaluator()],
        out_ids,
        subject_type="output",
        run_id=run.id,
        progress=False,
    )
    rows = _scores(engine)
    assert {r["subject_type"] for r in rows} == {"output"}
    by = {(r["subject_id"], r["metric"]): r for r in rows}
    assert by[(out_ids[1], "json_valid")]["value"] == 1.0  # meta comes from the dataset item
    assert by[(out_ids[0], "json_valid")]["status"] == "skipped"
    failed = [r for r in rows if r["subject_id"] == out_ids[2]]
    assert len(failed) == 6
    assert all(
        r["status"] == "skipped" and r["reason"] == "model output failed: timeout" for r in failed
    )
    assert {m.model_version for m in res.by_model_version} == {"m-1", "m-2"}


def test_bad_arguments(sqlite_engine: Engine) -> None:
    with pytest.raises(ValueError, match="subject_type"):
        run_evaluation(sqlite_engine, [], [], subject_type="user", run_id=1, progress=False)
    with pytest.raises(ValueError, match="chunk_size"):
        run_evaluation(sqlite_engine, [], [], run_id=1, chunk_size=0, progress=False)
