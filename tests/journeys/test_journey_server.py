"""Journey: ``evalwatch server`` starts one Prefect server that later commands run flows on.

A real ``prefect server start`` process: started by ``evalwatch server start``, found by
``evalwatch run dataset`` (no temporary server is started: the flow run is on the server), and
ended by ``evalwatch server stop``.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx
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
        assert "Starting temporary server" not in ran.out
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
