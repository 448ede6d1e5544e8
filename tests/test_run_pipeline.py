"""One run pipeline: the CLI's in-process path and the Prefect flows store one summary shape.

Real SQLite stores and the session's Prefect test server. Every evaluation run goes through the
same steps (prepare -> score batches -> finish) and its ending through one context manager
(:func:`evalwatch.runs.lifecycle.run_lifecycle`), so a traffic or test-set run stores the same
:class:`~evalwatch.runs.summary.RunSummary` whichever path started it, and a run that crashes
while scoring is marked failed with the reason and completes when run again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from evalwatch.cli import app
from evalwatch.evaluators.base import (
    BaseEvaluator,
    BatchResult,
    EvaluatorConfig,
    MetricSpec,
    Sample,
    ScoreResult,
    register_evaluator,
)
from evalwatch.runs.lifecycle import run_lifecycle
from evalwatch.runs.summary import RunSummary
from evalwatch.settings import Settings, reset_settings
from evalwatch.storage.db import make_engine, upgrade
from evalwatch.storage.models import RunStatus
from evalwatch.storage.repo import create_run, get_run, insert_interactions, register_dataset

N = 24
HEURISTICS_METRICS = 6
# Figures that measure this pass (wall time, per-batch profiles), not what the run holds.
VOLATILE = {"seconds", "profiles"}


def _traffic(n: int = N) -> list[dict[str, Any]]:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    return [
        {
            "request_id": f"req-{i}",
            "ts": start + timedelta(minutes=5 * i),
            "app": "support",
            "model_name": "acme",
            "model_version": f"v{i % 2}",
            "prompt": f"How do I reset my password? ({i})",
            "response": (
                "I'm sorry, but I can't help with that."
                if i % 6 == 0
                else "Open Settings, choose Security and click Reset password. " * (1 + i % 3)
            ),
        }
        for i in range(n)
    ]


def _store(path: Path, traffic: bool = True) -> tuple[str, Engine]:
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    upgrade(engine)
    if traffic:
        insert_interactions(engine, _traffic())
    return url, engine


def _only_run(engine: Engine) -> Any:
    with engine.connect() as conn:
        (run_id,) = conn.execute(sa.text("SELECT id FROM eval_runs")).one()
    run = get_run(engine, int(run_id))
    assert run is not None and run.summary is not None
    return run


def _shape(summary: dict[str, Any]) -> dict[str, str]:
    return {k: type(v).__name__ for k, v in summary.items()}


def _assert_same_summary(direct: dict[str, Any], flow: dict[str, Any]) -> None:
    """Same keys, same types, same figures (but this pass's timings)."""
    assert set(direct) == set(RunSummary.model_fields) == set(flow)
    assert _shape(direct) == _shape(flow)
    for k in direct.keys() - VOLATILE - {"metrics", "by_model_version"}:
        assert direct[k] == flow[k], k
    for k in ("metrics", "by_model_version"):
        assert len(direct[k]) == len(flow[k]) > 0
        for a, b in zip(direct[k], flow[k], strict=True):
            assert a.keys() == b.keys()
            # The store returns scores in another order: sums may differ in the last digit.
            assert a == {m: pytest.approx(v) if isinstance(v, float) else v for m, v in b.items()}
    assert [p["evaluator"] for p in direct["profiles"]] == [
        p["evaluator"] for p in flow["profiles"]
    ]
    assert {k for p in direct["profiles"] for k in p} == {k for p in flow["profiles"] for k in p}


@pytest.fixture
def prefect(prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The session's Prefect server, and reports written under this test's folder."""
    monkeypatch.setenv("EVALWATCH_REPORT_DIR", str(tmp_path / "reports"))
    reset_settings()


def test_traffic_flow_and_direct_run_store_the_same_summary(prefect: None, tmp_path: Path) -> None:
    from evalwatch.flows.traffic import evaluate_traffic as traffic_flow
    from evalwatch.runs.traffic import TrafficParams, evaluate_traffic

    url_a, direct_engine = _store(tmp_path / "direct.db")
    url_b, flow_engine = _store(tmp_path / "flow.db")
    params = TrafficParams(evaluators=["heuristics"])

    outcome = evaluate_traffic(direct_engine, params, Settings(database_url=url_a), progress=False)
    # The flow scores the same sample in five batches, one task each.
    returned = traffic_flow(params=params.model_copy(update={"batch_size": 5}), database_url=url_b)

    direct, flow = _only_run(direct_engine), _only_run(flow_engine)
    assert direct.status == flow.status == RunStatus.completed
    _assert_same_summary(direct.summary, flow.summary)
    assert direct.summary["n_subjects"] == N
    assert direct.summary["n_scores"] == N * HEURISTICS_METRICS
    assert direct.summary["kind"] == "traffic" and direct.summary["n_sampled"] == N
    refusal = next(m for m in direct.summary["metrics"] if m["metric"] == "refusal")
    assert refusal["count"] == N and refusal["mean"] == pytest.approx(4 / N)
    # What each path returns is what it stored (the flow adds the report and the alerts).
    assert outcome.summary.stored() == direct.summary
    assert {k: v for k, v in returned.items() if k not in ("report", "alerts")} == flow.summary
    assert Path(returned["report"]).is_file()


def test_dataset_flow_and_direct_run_store_the_same_summary(prefect: None, tmp_path: Path) -> None:
    from evalwatch.flows.dataset import evaluate_dataset as dataset_flow
    from evalwatch.runs.dataset import DatasetParams, evaluate_dataset

    items = [{"item_key": f"q{i}", "input": f"question {i}?"} for i in range(8)]
    preds = tmp_path / "preds.jsonl"
    preds.write_text(
        "".join(
            json.dumps({"id": f"q{i}", "model": "m1", "output": "" if i == 2 else f"answer {i}"})
            + "\n"
            for i in range(8)
        )
    )
    stores = [_store(tmp_path / f"{name}.db", traffic=False) for name in ("direct", "flow")]
    for _, engine in stores:
        register_dataset(engine, "qa", items)
    (url_a, direct_engine), (url_b, flow_engine) = stores
    params = DatasetParams(dataset="qa", outputs_file=str(preds), evaluators=["heuristics"])

    prepared, summary = evaluate_dataset(
        direct_engine, params, Settings(database_url=url_a), progress=False
    )
    returned = dataset_flow(params=params.model_copy(update={"batch_size": 3}), database_url=url_b)

    direct, flow = _only_run(direct_engine), _only_run(flow_engine)
    assert direct.status == flow.status == RunStatus.completed
    _assert_same_summary(direct.summary, flow.summary)
    assert direct.summary["kind"] == "dataset" and direct.summary["subject_type"] == "output"
    assert direct.summary["model"] == "m1" and direct.summary["dataset"] == "qa"
    assert direct.summary["n_subjects"] == 8 and direct.summary["n_sampled"] is None
    empty = next(m for m in direct.summary["metrics"] if m["metric"] == "empty_response")
    assert empty["count"] == 8 and empty["mean"] == pytest.approx(1 / 8)
    assert summary.stored() == direct.summary and prepared.run_id == direct.id
    assert {k: v for k, v in returned.items() if k not in ("report", "alerts")} == flow.summary


class ScorerCrash(BaseException):
    """Stands for an interrupt while scoring (not an evaluator error, which is stored unscored)."""


@register_evaluator
class CrashingLength(BaseEvaluator[EvaluatorConfig]):
    """Response length; crashes on a batch holding ``crash_on`` while that is set."""

    name = "test-crashing-length"
    version = "1"
    Config = EvaluatorConfig
    crash_on: ClassVar[str | None] = None
    refuse_to_load: ClassVar[bool] = False

    def load(self) -> None:
        if type(self).refuse_to_load:
            raise RuntimeError("model files are corrupt")

    @property
    def metrics(self) -> list[MetricSpec]:
        return [MetricSpec(name="chars")]

    def evaluate(self, samples: Sequence[Sample]) -> BatchResult:
        crash = type(self).crash_on
        if crash is not None and any(crash in s.prompt for s in samples):
            raise ScorerCrash(f"interrupted at {crash!r}")
        return BatchResult(
            scores=[
                ScoreResult(
                    subject_id=s.subject_id,
                    subject_type=s.subject_type,
                    metric="chars",
                    value=float(len(s.response)),
                )
                for s in samples
            ]
        )


def _score_counts(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        total = conn.execute(
            sa.text("SELECT COUNT(*) FROM scores WHERE evaluator = 'test-crashing-length'")
        ).scalar_one()
        distinct = conn.execute(
            sa.text(
                "SELECT COUNT(DISTINCT subject_id) FROM scores "
                "WHERE evaluator = 'test-crashing-length'"
            )
        ).scalar_one()
    return int(total), int(distinct)


def test_a_run_that_crashes_while_scoring_is_failed_and_a_rerun_completes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from evalwatch.runs.traffic import TrafficParams, evaluate_traffic

    url, engine = _store(tmp_path / "crash.db")
    settings = Settings(database_url=url)
    # Chunks of 5 in request order: the chunk holding interaction 12 crashes, after two were
    # written.
    params = TrafficParams(evaluators=["test-crashing-length", "heuristics"], batch_size=5)
    monkeypatch.setattr(CrashingLength, "crash_on", "(12)")
    with pytest.raises(ScorerCrash):
        evaluate_traffic(engine, params, settings, progress=False)
    failed = get_run(engine, 1)
    assert failed is not None and failed.status == RunStatus.failed
    assert failed.error == "ScorerCrash: interrupted at '(12)'"
    partial, _ = _score_counts(engine)
    assert 0 < partial < N

    monkeypatch.setattr(CrashingLength, "crash_on", None)
    again = evaluate_traffic(engine, params, settings, progress=False)
    assert again.prepared.resumed and again.prepared.run_id == failed.id
    assert again.summary.scores_written == (N - partial) + (N - partial) * HEURISTICS_METRICS
    done = get_run(engine, failed.id)
    assert done is not None and done.status == RunStatus.completed and done.error is None
    # No duplicate and no gap: one score per interaction, and the run reports them all.
    assert _score_counts(engine) == (N, N)
    assert done.summary is not None
    assert done.summary["n_scores"] == N * (1 + HEURISTICS_METRICS)
    chars = next(m for m in done.summary["metrics"] if m["metric"] == "chars")
    assert chars["count"] == N


def test_a_flow_whose_batches_fail_marks_the_run_failed_and_a_rerun_completes_it(
    prefect: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from evalwatch.flows import _tasks
    from evalwatch.flows.traffic import evaluate_traffic as traffic_flow
    from evalwatch.runs.traffic import TrafficParams

    url, engine = _store(tmp_path / "flow-crash.db")
    # No retries: the failure is the point here, not Prefect's patience.
    monkeypatch.setattr(_tasks, "evaluate_batch", _tasks.evaluate_batch.with_options(retries=0))
    params = TrafficParams(evaluators=["heuristics", "test-crashing-length"], batch_size=8)
    monkeypatch.setattr(CrashingLength, "refuse_to_load", True)
    with pytest.raises(RuntimeError, match="model files are corrupt"):
        traffic_flow(params=params, database_url=url)
    failed = get_run(engine, 1)
    assert failed is not None and failed.status == RunStatus.failed
    assert failed.error == "RuntimeError: model files are corrupt"

    monkeypatch.setattr(CrashingLength, "refuse_to_load", False)
    summary = traffic_flow(params=params, database_url=url)
    assert summary["run_id"] == 1
    done = get_run(engine, 1)
    assert done is not None and done.status == RunStatus.completed and done.error is None
    assert _score_counts(engine) == (N, N)
    assert summary["n_scores"] == N * (1 + HEURISTICS_METRICS)


def test_the_lifecycle_keeps_a_stored_summary_when_a_later_step_fails(tmp_path: Path) -> None:
    _, engine = _store(tmp_path / "life.db", traffic=False)
    run = create_run(engine, "traffic")
    assert run.id is not None
    summary = RunSummary(
        run_id=run.id, kind="traffic", subject_type="interaction", n_subjects=0, n_scores=0
    )
    with pytest.raises(OSError, match="disk full"), run_lifecycle(engine, run.id) as life:
        stored = life.complete(summary)
        assert get_run(engine, run.id).status == RunStatus.completed  # type: ignore[union-attr]
        raise OSError("disk full while writing the report")
    after = get_run(engine, run.id)
    assert after is not None and after.status == RunStatus.failed
    assert after.error == "OSError: disk full while writing the report"
    assert after.summary == stored.stored()


def test_evaluate_cli_and_run_traffic_store_the_same_summary(prefect: None, tmp_path: Path) -> None:
    url_a, evaluate_engine = _store(tmp_path / "evaluate.db")
    url_b, flow_engine = _store(tmp_path / "run.db")
    runner = CliRunner()
    sample = ["--since", "2026-11-01T00:00:00Z", "--rate", "0.5", "--seed", "3"]

    res = runner.invoke(
        app, ["--db", url_a, "evaluate", "-e", "heuristics", "--no-progress", *sample]
    )
    assert res.exit_code == 0, res.output
    reset_settings()
    res = runner.invoke(
        app, ["--db", url_b, "run", "traffic", "--evaluators", "heuristics", *sample]
    )
    assert res.exit_code == 0, res.output

    evaluated, flowed = _only_run(evaluate_engine), _only_run(flow_engine)
    _assert_same_summary(evaluated.summary, flowed.summary)
    # The same sample on both paths (rate and seed), a strict part of the traffic.
    assert evaluated.run_key == flowed.run_key
    assert 0 < evaluated.summary["n_subjects"] < N
