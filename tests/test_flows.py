"""The Prefect flows on a real (temporary) Prefect server and a real store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from evalwatch.settings import reset_settings
from evalwatch.storage.db import make_engine
from evalwatch.storage.repo import insert_interactions, register_dataset, table_counts

REPO = Path(__file__).resolve().parent.parent
TOPICS = [
    ("How do I reset my password?", "Open Settings, choose Security and click Reset password."),
    ("Where is my parcel?", "Your parcel left our warehouse and arrives in two days."),
    ("Can I return shoes?", "Yes, returns are free within 30 days with the receipt."),
]


def _traffic(n: int) -> list[dict]:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    rows = []
    for i in range(n):
        prompt, response = TOPICS[i % len(TOPICS)]
        if i % 9 == 0:
            response = "I'm sorry, but I can't help with that."
        rows.append(
            {
                "request_id": f"req-{i}",
                "ts": start + timedelta(minutes=7 * i),
                "app": "support",
                "model_name": "acme",
                "model_version": f"v{i % 2}",
                "prompt": f"{prompt} ({i})",
                "response": response,
            }
        )
    return rows


@pytest.fixture
def api_url(prefect_harness) -> str:
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    assert url, "the Prefect test harness should provide an API URL"
    return str(url)


def _artifacts(flow_run_id: str) -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: a for a in arts if a.key}


def test_evaluate_traffic_flow_scores_in_batches_and_publishes_artifacts(
    db_url, prefect_harness, tmp_path, monkeypatch
):
    from evalwatch.flows.traffic import evaluate_traffic
    from evalwatch.runs.traffic import TrafficParams
    from evalwatch.storage.models import EvalRun

    monkeypatch.setenv("EVALWATCH_REPORT_DIR", str(tmp_path / "reports"))
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "version: 1\nchannels: {}\nrules:\n"
        "  - {name: refusal-seen, selector: heuristics.refusal, aggregation: any,\n"
        "     comparison: '>', threshold: 0.5, window: run, consecutive: 1, severity: warning}\n"
    )
    monkeypatch.setenv("EVALWATCH_RULES_FILE", str(rules))
    reset_settings()
    engine = make_engine(db_url)
    insert_interactions(engine, _traffic(60))
    state = evaluate_traffic(
        params=TrafficParams(evaluators=["heuristics"], batch_size=25),
        database_url=db_url,
        return_state=True,
    )
    assert state.is_completed()
    summary = state.result()
    assert summary["n_subjects"] == 60
    assert summary["n_scores"] == 60 * 6
    assert [a["rule"] for a in summary["alerts"]] == ["refusal-seen"]
    assert summary["alerts"][0]["action"] == "open"
    refusal = next(m for m in summary["metrics"] if m["metric"] == "refusal")
    assert refusal["count"] == 60 and abs(refusal["mean"] - 7 / 60) < 1e-9
    with engine.connect() as conn:
        run = conn.execute(sa.select(EvalRun.__table__)).mappings().one()  # type: ignore[attr-defined]
    assert run["status"] == "completed" and run["flow_run_id"] == str(
        state.state_details.flow_run_id
    )
    report = Path(summary["report"])
    assert report.is_file() and "<img" in report.read_text() and "<script" not in report.read_text()
    arts = _artifacts(str(state.state_details.flow_run_id))
    assert {
        "evalwatch-traffic-summary",
        "evalwatch-traffic-metrics",
        "evalwatch-traffic-report",
        "evalwatch-traffic-progress",
    } <= set(arts)
    md = arts["evalwatch-traffic-summary"].data
    assert "heuristics.refusal" in md and "Worst items" in md
    assert arts["evalwatch-traffic-progress"].data == 100.0
    # Three batches of at most 25: one task each.
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
            )
        )
    assert sum(t.name.startswith("evaluate-batch") for t in tasks) == 3
    # Each batch task profiled its own batch; the store keeps one profile for the run.
    with engine.connect() as conn:
        profiles = conn.execute(
            sa.text("SELECT evaluator, n_items, details FROM evaluator_profiles")
        ).all()
    assert len(profiles) == 1 and profiles[0][0] == "heuristics" and profiles[0][1] == 60
    details = profiles[0][2]
    details = json.loads(details) if isinstance(details, str) else details
    assert details["merged_batches"] == 3


def test_a_traffic_run_over_an_empty_window_says_so_in_summary_and_artifact(
    db_url, prefect_harness, tmp_path, monkeypatch
):
    from evalwatch.flows.traffic import evaluate_traffic
    from evalwatch.runs.traffic import TrafficParams
    from evalwatch.storage.sampling import SampleSpec

    monkeypatch.setenv("EVALWATCH_REPORT_DIR", str(tmp_path / "reports"))
    reset_settings()
    engine = make_engine(db_url)
    insert_interactions(engine, _traffic(10))  # 2026-11-01 00:00 .. 01:03
    window = SampleSpec(
        start=datetime(2026, 11, 20, tzinfo=UTC), end=datetime(2026, 11, 21, tzinfo=UTC)
    )
    state = evaluate_traffic(
        params=TrafficParams(sample=window, evaluators=["heuristics"]),
        database_url=db_url,
        return_state=True,
    )
    assert state.is_completed()  # a quiet window is not a failed run...
    line = (
        "0 interactions between 2026-11-20 00:00 and 2026-11-21 00:00 UTC; "
        "the newest is 2026-11-01 01:03 UTC"
    )
    summary = state.result()
    assert summary["no_data"] == line  # ...but it says so, in one line
    md = _artifacts(str(state.state_details.flow_run_id))["evalwatch-traffic-summary"].data
    assert f"**{line}**" in md


def test_an_unavailable_evaluator_is_reported_once_not_per_batch(prefect_harness, tmp_path, capfd):
    from evalwatch.flows.traffic import evaluate_traffic
    from evalwatch.runs.traffic import TrafficParams
    from evalwatch.storage.db import upgrade

    url = f"sqlite:///{tmp_path / 'once.db'}"
    engine = make_engine(url)
    upgrade(engine)
    insert_interactions(engine, _traffic(60))
    missing = {"toxicity": {"checkpoint": str(tmp_path / "missing.ckpt"), "device": "cpu"}}
    summary = evaluate_traffic(
        params=TrafficParams(
            evaluators=["heuristics", "toxicity"], evaluator_options=missing, batch_size=25
        ),
        database_url=url,
    )
    assert summary["n_scores"] == 60 * 6
    assert "evaluator_options.toxicity.checkpoint" in summary["unavailable"]["toxicity"]
    out = capfd.readouterr()
    # Three batch tasks each found toxicity unavailable; none of them printed it (the flow
    # logs it once, and returns it in the summary above).
    assert "unavailable, skipped" not in out.out + out.err


def test_evaluate_dataset_flow_from_predictions_file(
    db_url, prefect_harness, tmp_path, monkeypatch
):
    import json

    from evalwatch.flows.dataset import evaluate_dataset
    from evalwatch.runs.dataset import DatasetParams

    monkeypatch.setenv("EVALWATCH_REPORT_DIR", str(tmp_path / "reports"))
    reset_settings()
    engine = make_engine(db_url)
    items = [
        {
            "item_key": f"q{i}",
            "input": f"question {i}?",
            "reference": f"answer {i}",
            "tags": ["a" if i % 2 else "b"],
        }
        for i in range(12)
    ]
    ds, _ = register_dataset(engine, "qa", items)
    preds = tmp_path / "preds.jsonl"
    preds.write_text(
        "".join(
            json.dumps({"id": f"q{i}", "model": "m1", "output": f"answer {i}" if i else ""}) + "\n"
            for i in range(12)
        )
    )
    summary = evaluate_dataset(
        params=DatasetParams(
            dataset="qa", outputs_file=str(preds), evaluators=["heuristics"], batch_size=5
        ),
        database_url=db_url,
    )
    assert summary["dataset_version"] == ds.version and summary["model"] == "m1"
    empty = next(m for m in summary["metrics"] if m["metric"] == "empty_response")
    assert empty["count"] == 12 and abs(empty["mean"] - 1 / 12) < 1e-9
    assert table_counts(engine)["model_outputs"] == 12


def test_run_commands_start_the_flows_and_print_run_id_and_summary(api_url, tmp_path):
    import json

    from evalwatch.storage.db import upgrade

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    engine = make_engine(url)
    upgrade(engine)
    insert_interactions(engine, _traffic(30))
    # The installed console script, against the test's Prefect server, as a user runs it.
    evalwatch = str(Path(sys.executable).with_name("evalwatch"))
    env = dict(os.environ, PREFECT_API_URL=api_url, EVALWATCH_REPORT_DIR=str(tmp_path / "reports"))

    def run(*args: str) -> Any:
        done = subprocess.run(
            [evalwatch, "--db", url, "run", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        done.output = done.stdout + done.stderr  # type: ignore[attr-defined]
        done.exit_code = done.returncode  # type: ignore[attr-defined]
        return done

    res = run("traffic", "--evaluators", "heuristics", "--batch-size", "10", "--max-items", "20")
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    assert "run 1" in out and "heuristics.refusal" in out and "report:" in out
    with engine.connect() as conn:
        (flow_run_id,) = conn.execute(sa.text("SELECT flow_run_id FROM eval_runs")).one()
    assert flow_run_id  # visible in Prefect

    items = [{"item_key": f"q{i}", "input": f"question {i}?"} for i in range(6)]
    register_dataset(engine, "qa", items)
    preds = tmp_path / "preds.jsonl"
    preds.write_text(
        "".join(json.dumps({"id": f"q{i}", "model": "m1", "output": "ok"}) + "\n" for i in range(6))
    )
    res = run("dataset", "qa", "--outputs", str(preds), "--evaluators", "heuristics")
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    assert "m1 on qa@" in out and "run 2" in out and "heuristics.empty_response" in out

    # Bad usage is exit 2 with the reason, and starts no flow.
    res = run("dataset", "qa", "--outputs", str(preds), "--model", "m1")
    assert res.exit_code == 2
    res = run("traffic", "--evaluators", "nope")
    assert res.exit_code == 2 and "unknown evaluator(s): nope" in " ".join(res.output.split())
    res = run("dataset", "nosuch", "--outputs", str(preds), "--evaluators", "heuristics")
    assert res.exit_code == 2 and "nosuch" in res.output
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM eval_runs")).scalar_one() == 2


def test_killed_flow_run_rerun_finishes_without_duplicates_or_gaps(api_url, tmp_path):
    db = tmp_path / "crash.db"
    url = f"sqlite:///{db}"
    engine = make_engine(url)
    from evalwatch.storage.db import upgrade

    upgrade(engine)
    n = 300
    insert_interactions(engine, _traffic(n))
    env = dict(
        os.environ,
        PREFECT_API_URL=api_url,
        EVALWATCH_REPORT_DIR=str(tmp_path / "r"),
        PYTHONPATH=str(REPO),
    )
    script = str(REPO / "tests" / "scripts" / "slow_traffic_flow.py")
    proc = subprocess.Popen(
        [sys.executable, script, url],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    scored = 0
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            with engine.connect() as conn:
                scored = conn.execute(
                    sa.text("SELECT COUNT(*) FROM scores WHERE evaluator='slow-length'")
                ).scalar_one()
            if scored >= 40:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the flow finished before it could be killed"
        assert 0 < scored < n
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    with engine.connect() as conn:
        status = conn.execute(sa.text("SELECT status FROM eval_runs")).scalar_one()
    assert status == "running"  # killed: nobody could mark it
    done = subprocess.run(
        [sys.executable, script, url], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with engine.connect() as conn:
        per_metric: dict[str, int] = dict(
            conn.execute(
                sa.text("SELECT evaluator || '.' || metric, COUNT(*) FROM scores GROUP BY 1")
            ).all()
        )
        distinct = conn.execute(
            sa.text("SELECT COUNT(DISTINCT subject_id) FROM scores WHERE evaluator='slow-length'")
        ).scalar_one()
        runs = conn.execute(sa.text("SELECT id, status FROM eval_runs")).all()
    assert per_metric["slow-length.chars"] == n and distinct == n
    assert all(count == n for count in per_metric.values()), per_metric
    assert len(runs) == 1 and runs[0][1] == "completed"  # the same run was resumed


def test_traffic_flow_runs_unchanged_on_a_local_dask_cluster(api_url, tmp_path, monkeypatch):
    from evalwatch.flows._runtime import make_task_runner
    from evalwatch.flows.traffic import evaluate_traffic
    from evalwatch.runs.traffic import TrafficParams
    from evalwatch.settings import Settings

    # Dask's worker processes inherit the environment: point them at this test's server.
    monkeypatch.setenv("PREFECT_API_URL", api_url)
    monkeypatch.setenv("EVALWATCH_REPORT_DIR", str(tmp_path / "reports"))
    reset_settings()
    url = f"sqlite:///{tmp_path / 'dask.db'}"
    engine = make_engine(url)
    from evalwatch.storage.db import upgrade

    upgrade(engine)
    insert_interactions(engine, _traffic(50))
    runner = make_task_runner(Settings(task_runner="dask", dask_workers=2))
    from prefect_dask import DaskTaskRunner

    assert isinstance(runner, DaskTaskRunner)
    summary = evaluate_traffic.with_options(task_runner=runner)(  # type: ignore[arg-type]
        params=TrafficParams(evaluators=["heuristics"], batch_size=10), database_url=url
    )
    assert summary["n_subjects"] == 50 and summary["n_scores"] == 50 * 6
    with engine.connect() as conn:
        dupes = conn.execute(
            sa.text(
                "SELECT COUNT(*) FROM (SELECT subject_id, metric FROM scores "
                "GROUP BY subject_id, metric HAVING COUNT(*) > 1) d"
            )
        ).scalar_one()
    assert dupes == 0
