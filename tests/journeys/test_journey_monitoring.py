"""Journey: scheduled monitoring, as the README sets it up.

A deployment served by a real Prefect server and a process worker runs the hourly traffic
flow twice over overlapping windows of the store ``make demo`` leaves; the second run reports
the whole window (scores reused, none recomputed), a drift check finds the injected shift
(Nov 12-15 2026), a drift rule opens an alert, and a real HTTP receiver on 127.0.0.1 gets a
valid JSON notification through a saved Prefect webhook block, with no secret or PII in it.
A drift check over a window with no traffic says so in one line, with the newest time the
store holds, in its artifact and on the command line (issue #12, defects 1, 3 and 5).
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.journeys.conftest import REPO, DemoStore, PrefectServer, Receiver, base_env, run_cli
from tests.journeys.test_journey_alerts import (
    EMAIL,
    LUHN_FLOAT,
    payloads,
    save_webhook_block,
    write_rules,
)

# A pool of its own: the deployments journey's worker (another store) serves "evalwatch".
POOL = "journey-monitoring"
NO_DATA = "0 interactions between 2026-11-19 00:00 and 2026-11-20 00:00 UTC; the newest is"


def _count(db: Path, sql: str, *args: Any) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(sql, args).fetchone()[0])


class Api:
    """The Prefect server as the user reaches it: the ``prefect`` CLI and the REST API."""

    def __init__(self, server: PrefectServer, env: dict[str, str]) -> None:
        self.server = server
        self.env = env

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        # The server answers 503 now and then on a loaded machine (its SQLite is busy):
        # retried, as Prefect's own client does.
        for attempt in range(8):
            try:
                got = httpx.request(method, f"{self.server.api_url}{path}", timeout=30, **kw)
                if got.status_code < 500:
                    got.raise_for_status()
                    return got.json()
            except httpx.TransportError:
                pass
            time.sleep(1 + attempt)
        raise AssertionError(f"{method} {path}: the Prefect server kept failing")

    def run(self, deployment: str, parameters: dict[str, Any]) -> str:
        out = self.server.prefect(
            "deployment", "run", deployment, "--params", json.dumps(parameters), env=self.env
        )
        found = re.search(r"UUID: ([0-9a-f-]{36})", out)
        assert found, out
        return found.group(1)

    def wait(self, run_id: str, timeout: float = 420) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self._call("GET", f"/flow_runs/{run_id}")["state"]
            if state["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                return dict(state)
            time.sleep(2)
        raise AssertionError(f"flow run {run_id} did not finish")

    def artifacts(self, run_id: str) -> dict[str, Any]:
        got = self._call(
            "POST", "/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [run_id]}}}
        )
        return {a["key"]: a["data"] for a in got if a.get("key")}


def _traffic(since: str, until: str) -> dict[str, Any]:
    return {
        "params": {
            "sample": {"start": since, "end": until},
            "evaluators": ["heuristics"],
            "batch_size": 512,
        }
    }


@pytest.mark.slow
def test_scheduled_monitoring_reuses_scores_finds_drift_and_notifies(
    store: DemoStore, user_dir: Path, prefect_server: PrefectServer, receiver: Receiver
) -> None:
    block = save_webhook_block(prefect_server, receiver)
    rules = write_rules(
        user_dir / "rules.yaml",
        block,
        {
            "name": "journey-drift",
            "description": f"Traffic drifted; page {EMAIL}",
            "selector": "drift.verdict",
            "comparison": ">=",
            "threshold": LUHN_FLOAT,
        },
    )
    env = prefect_server.env | {
        "EVALWATCH_PROJECT_DIR": str(REPO),
        "EVALWATCH_DATABASE_URL": store.url,
        "EVALWATCH_RULES_FILE": str(rules),
        "EVALWATCH_REPORT_DIR": str(user_dir / "reports"),
    }
    if POOL not in prefect_server.prefect("work-pool", "ls", env=env):
        prefect_server.prefect("work-pool", "create", POOL, "--type", "process", env=env)
    for name in ("evaluate-traffic-hourly", "drift-check-daily"):
        prefect_server.prefect(
            "--no-prompt", "deploy", "--name", name, "--pool", POOL, env=env, cwd=REPO
        )
    prefect_server.spawn("monitoring-worker", "worker", "start", "--pool", POOL, env=env)
    api = Api(prefect_server, env)

    def finish(deployment: str, parameters: dict[str, Any]) -> str:
        run_id = api.run(deployment, parameters)
        state = api.wait(run_id)
        assert state["type"] == "COMPLETED", f"{deployment}: {state}\n" + prefect_server.log(
            "monitoring-worker"
        )
        return run_id

    # Two hourly runs over overlapping windows (Nov 10-12, then Nov 11-13).
    scores_before = _count(store.db, "SELECT count(*) FROM scores")
    traffic = "evaluate-traffic/evaluate-traffic-hourly"
    finish(traffic, _traffic("2026-11-10T00:00:00Z", "2026-11-12T00:00:00Z"))
    second = finish(traffic, _traffic("2026-11-11T00:00:00Z", "2026-11-13T00:00:00Z"))
    window = _count(
        store.db,
        "SELECT count(*) FROM interactions WHERE ts >= ? AND ts < ?",
        "2026-11-11 00:00:00",
        "2026-11-13 00:00:00",
    )
    assert window > 500
    summary = api.artifacts(second)["evalwatch-traffic-summary"]
    # The whole window is reported, and every score was reused: none recomputed.
    assert _count(store.db, "SELECT count(*) FROM scores") == scores_before
    n_subjects = _count(
        store.db,
        "SELECT json_extract(summary, '$.n_subjects') FROM eval_runs "
        "WHERE kind = 'traffic' ORDER BY id DESC LIMIT 1",
    )
    assert n_subjects == window, f"the second run reported {n_subjects} of {window}\n{summary}"
    assert receiver.requests == []  # no drift report judged yet: nothing to notify

    # The drift check finds the injected shift; the drift rule opens an alert and notifies.
    drift = finish(
        "drift-check/drift-check-daily",
        {
            "params": {
                "current_start": "2026-11-12T00:00:00Z",
                "current_end": "2026-11-15T00:00:00Z",
                "baseline_days": 7,
                "scopes": ["overall"],
            }
        },
    )
    assert "drift in" in api.artifacts(drift)["evalwatch-drift-report"]
    receiver.wait_for(1)
    (payload,) = payloads(receiver)  # valid JSON; no e-mail, key or block secret in it
    assert (payload["rule"], payload["event"], payload["status"]) == (
        "journey-drift",
        "open",
        "open",
    )
    assert payload["threshold"] == LUHN_FLOAT and "[REDACTED:email]" in payload["description"]
    assert payload["links"]["report"]

    # A window with no traffic: the artifact says so in one line, with the newest time.
    empty = finish(
        "drift-check/drift-check-daily",
        {"params": {"current_end": "2026-11-20T00:00:00Z", "window": "1d", "scopes": ["overall"]}},
    )
    markdown = api.artifacts(empty)["evalwatch-drift-report"]
    assert NO_DATA in markdown and "23:5" in markdown, markdown
    assert len(receiver.requests) == 1  # nothing judged, nothing notified

    # The same on the command line: one line, exit 2 (nothing to judge is not a pass).
    cli_env = base_env(
        PREFECT_API_URL=prefect_server.api_url,
        EVALWATCH_DATABASE_URL=store.url,
        EVALWATCH_RULES_FILE=str(rules),
    )
    res = run_cli(
        "drift", "--current-until", "2026-11-20", "--window", "1d", cwd=user_dir, env=cli_env
    )
    assert res.code == 2, str(res)
    (line,) = [ln for ln in res.stdout.splitlines() if ln.startswith("0 interactions")]
    assert line.startswith(NO_DATA) and line.endswith(" UTC"), line


def test_drift_on_a_store_without_traffic_says_so(user_dir: Path) -> None:
    env = base_env(EVALWATCH_DATABASE_URL=f"sqlite:///{user_dir / 'empty.db'}")
    res = run_cli("drift", "--current-until", "2026-11-20", "--window", "1d", cwd=user_dir, env=env)
    assert res.code == 2, str(res)
    assert (
        "0 interactions between 2026-11-19 00:00 and 2026-11-20 00:00 UTC; the store holds "
        "no interactions"
    ) in res.stdout
    anchored = run_cli("drift", cwd=user_dir, env=env)  # no --until: nothing to anchor at
    assert anchored.code == 2 and "no interactions stored" in anchored.out, str(anchored)
