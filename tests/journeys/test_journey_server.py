"""Journey: where ``evalwatch run``'s flow runs go, with and without ``evalwatch server``.

A real ``prefect server start`` process: started by ``evalwatch server start``, found by
``evalwatch run dataset`` (no temporary server is started: the flow run is on the server), and
ended by ``evalwatch server stop``. Without it, the command's own temporary server puts the
run in Prefect's database and goes with the command.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.journeys.conftest import base_env, run_cli

pytestmark = [pytest.mark.journey, pytest.mark.slow]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_server_start_is_used_by_later_commands_and_stops(user_dir: Path) -> None:
    home = user_dir / "evalwatch-home"
    env = base_env(
        PREFECT_HOME=str(user_dir / "prefect-home"),
        EVALWATCH_HOME=str(home),
        EVALWATCH_DATABASE_URL=f"sqlite:///{user_dir / 'store.db'}",
    )
    state = home / "prefect-server.json"
    try:
        started = run_cli("server", "start", "--no-ui", cwd=user_dir, env=env, timeout=300)
        assert started.code == 0, str(started)
        server = json.loads(state.read_text())
        assert _alive(server["pid"]) and server["url"] in started.out
        assert run_cli("server", "status", cwd=user_dir, env=env).code == 0

        loaded = run_cli("datasets", "load", "datasets/support-qa.jsonl", cwd=user_dir, env=env)
        assert loaded.code == 0, str(loaded)
        ran = run_cli(
            "run",
            "dataset",
            "support-qa",
            "--outputs",
            "datasets/support-qa.predictions.baseline.jsonl",
            "--evaluators",
            "heuristics",
            cwd=user_dir,
            env=env,
        )
        assert ran.code == 0, str(ran)
        assert "temporary server" not in ran.out  # neither Prefect's nor evalwatch's
        # The flow ran on the server evalwatch started: its API holds the run, completed.
        runs = httpx.post(f"{server['url']}/api/flow_runs/filter", json={}, timeout=30).json()
        assert [r["state_type"] for r in runs] == ["COMPLETED"]

        stopped = run_cli("server", "stop", cwd=user_dir, env=env)
        assert stopped.code == 0, str(stopped)
        deadline = time.monotonic() + 30
        while _alive(server["pid"]) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(server["pid"]) and not state.exists()
        status = run_cli("server", "status", cwd=user_dir, env=env)
        assert status.code == 3 and "no local Prefect server" in status.out
    finally:  # never leave a server behind, whatever failed
        if state.exists():
            pid = json.loads(state.read_text())["pid"]
            if _alive(pid):
                os.killpg(pid, signal.SIGKILL)


def _processes_with_home(home: Path) -> list[int]:
    """Running processes started with this Prefect home (a server left behind)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("PREFECT_HOME") == str(home) and proc.status() != "zombie":
                found.append(proc.pid)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found


def test_run_without_a_server_is_a_flow_run_in_prefect_and_leaves_no_server(
    user_dir: Path,
) -> None:
    # No PREFECT_API_URL, no `evalwatch server`: the command starts a temporary server of its
    # own, on Prefect's database, and stops it. The run is in that database for `prefect
    # server start` to show later: completed, with its task runs, logs and artifacts.
    prefect_home = user_dir / "prefect-home"
    env = base_env(
        PREFECT_HOME=str(prefect_home),
        EVALWATCH_HOME=str(user_dir / "evalwatch-home"),
        EVALWATCH_DATABASE_URL=f"sqlite:///{user_dir / 'store.db'}",
    )
    loaded = run_cli("datasets", "load", "datasets/support-qa.jsonl", cwd=user_dir, env=env)
    assert loaded.code == 0, str(loaded)
    ran = run_cli(
        "run",
        "dataset",
        "support-qa",
        "--outputs",
        "datasets/support-qa.predictions.baseline.jsonl",
        "--evaluators",
        "heuristics",
        cwd=user_dir,
        env=env,
    )
    assert ran.code == 0, str(ran)
    assert "a temporary server for this command" in ran.out
    assert "View at" not in ran.out  # no link to a server that is gone
    assert _processes_with_home(prefect_home) == []
    with sqlite3.connect(prefect_home / "prefect.db") as db:
        runs = db.execute("SELECT id, state_type FROM flow_run").fetchall()
        assert [state for _, state in runs] == ["COMPLETED"]
        run_id = runs[0][0]
        artifacts = {
            key
            for (key,) in db.execute("SELECT key FROM artifact WHERE flow_run_id = ?", (run_id,))
        }
        tasks = db.execute("SELECT COUNT(*) FROM task_run WHERE flow_run_id = ?", (run_id,))
        logs = db.execute("SELECT COUNT(*) FROM log WHERE flow_run_id = ?", (run_id,))
        assert tasks.fetchone()[0] > 0 and logs.fetchone()[0] > 0
    assert "evalwatch-dataset-summary" in artifacts and "evalwatch-dataset-report" in artifacts
