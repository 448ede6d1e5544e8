"""End to end: a real `prefect server`, deployments from prefect.yaml, a process worker."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from evalwatch.storage.db import make_engine, upgrade
from evalwatch.storage.repo import insert_interactions, register_dataset

REPO = Path(__file__).resolve().parent.parent
PREFECT = str(Path(sys.executable).with_name("prefect"))

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prefect server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise TimeoutError(f"prefect server at {url} did not become healthy")


@pytest.fixture
def prefect_stack(tmp_path):
    """A real Prefect server and (later) a worker, torn down with every child process."""
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "1",
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "",
        "DO_NOT_TRACK": "1",
        "EVALWATCH_PROJECT_DIR": str(REPO),
        "EVALWATCH_REPORT_DIR": str(tmp_path / "reports"),
        "PYTHONPATH": str(REPO),
    }
    env.pop("PREFECT_FLOWS_HEARTBEAT_FREQUENCY")
    procs: list[subprocess.Popen[bytes]] = []
    logs = tmp_path / "logs"
    logs.mkdir()

    def spawn(name: str, *args: str) -> subprocess.Popen[bytes]:
        out = open(logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        p = subprocess.Popen(
            [PREFECT, *args],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        procs.append(p)
        return p

    server = spawn("server", "server", "start", "--host", "127.0.0.1", "--port", str(port))
    try:
        _wait_healthy(api, server)
        yield env, spawn, logs
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=10)


def _run(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [PREFECT, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_deploy_from_prefect_yaml_and_run_on_a_process_worker(prefect_stack, tmp_path):
    env, spawn, logs = prefect_stack
    db_url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = make_engine(db_url)
    upgrade(engine)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    insert_interactions(
        engine,
        [
            {
                "request_id": f"r{i}",
                "ts": start + timedelta(minutes=i),
                "app": "support",
                "model_name": "acme",
                "model_version": "v1",
                "prompt": f"question {i}?",
                "response": "I'm sorry, but I can't help with that."
                if i % 4 == 0
                else f"answer {i}",
            }
            for i in range(40)
        ],
    )
    register_dataset(
        engine,
        "support-qa",
        [
            {
                "item_key": f"q{i}",
                "input": f"question {i}?",
                "reference": f"answer {i}",
                "tags": ["t"],
            }
            for i in range(8)
        ],
    )
    preds = tmp_path / "preds.jsonl"
    preds.write_text(
        "".join(
            json.dumps({"id": f"q{i}", "model": "m", "output": f"answer {i}"}) + "\n"
            for i in range(8)
        )
    )
    env["EVALWATCH_DATABASE_URL"] = db_url

    _run(env, "work-pool", "create", "evalwatch", "--type", "process")
    out = _run(env, "--no-prompt", "deploy", "--all")
    assert "evaluate-traffic-hourly" in out and "evaluate-dataset-nightly" in out
    spawn("worker", "worker", "start", "--pool", "evalwatch", "--limit", "2")

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with (
        temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}),
        get_client(sync_client=True) as client,
    ):
        traffic = client.read_deployment_by_name("evaluate-traffic/evaluate-traffic-hourly")
        assert traffic.schedules, "the hourly deployment should carry its schedule"
        dataset = client.read_deployment_by_name("evaluate-dataset/evaluate-dataset-nightly")
        runs = {
            "traffic": client.create_flow_run_from_deployment(
                traffic.id, parameters={"params": {"evaluators": ["heuristics"], "batch_size": 16}}
            ),
            "dataset": client.create_flow_run_from_deployment(
                dataset.id,
                parameters={
                    "params": {
                        "dataset": "support-qa",
                        "outputs_file": str(preds),
                        "evaluators": ["heuristics"],
                    }
                },
            ),
        }
        deadline = time.monotonic() + 420
        states = {}
        while time.monotonic() < deadline:
            states = {k: client.read_flow_run(r.id).state for k, r in runs.items()}
            if all(s is not None and s.is_final() for s in states.values()):
                break
            time.sleep(2)
        worker_log = (logs / "worker.log").read_text(errors="replace")[-4000:]
        for name, state in states.items():
            assert state is not None and state.is_completed(), f"{name}: {state}\n{worker_log}"
        keys: dict[str, dict[str, Any]] = {}
        for name, r in runs.items():
            arts = client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[r.id]))
            )
            keys[name] = {a.key: a for a in arts if a.key}
    assert {
        "evalwatch-traffic-summary",
        "evalwatch-traffic-metrics",
        "evalwatch-traffic-report",
    } <= set(keys["traffic"])
    assert "heuristics.refusal" in keys["traffic"]["evalwatch-traffic-summary"].data
    assert {"evalwatch-dataset-summary", "evalwatch-dataset-metrics"} <= set(keys["dataset"])
    with engine.connect() as conn:
        import sqlalchemy as sa

        rows = conn.execute(sa.text("SELECT kind, status FROM eval_runs")).all()
        kinds: dict[str, str] = {k: v for k, v in rows}
    assert kinds == {"traffic": "completed", "dataset": "completed"}
    shutil.rmtree(tmp_path / "prefect-home", ignore_errors=True)
