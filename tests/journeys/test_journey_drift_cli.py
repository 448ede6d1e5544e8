"""Journey: ``evalwatch drift`` on a copy of the demo store, with no Prefect server configured.

A user runs the drift check from a shell without ``PREFECT_API_URL``. The drift-found rule
opens alerts, whose notifications go through Prefect blocks. Before, loading a block started
Prefect's temporary server inside the command, with a start-up wait that is not bounded in
wall-clock time (uvicorn restarted on every start-up failure, a port race with other temporary
servers, four tries per channel): on a busy machine the command printed its alerts and then
hung for over ten minutes. Now the command ends in bounded time with the check's exit code (1:
drift found), the alerts are stored with their notifications queued, and one line says why they
were not sent; with a block saved locally, a temporary server started by evalwatch itself
delivers it and is stopped.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.journeys.conftest import DemoStore, Receiver, base_env, run_cli

# The demo's shift is in its last days (Nov 12-15 2026).
SHIFTED = ["--current-since", "2026-11-12", "--current-until", "2026-11-15"]
QUEUED = "queued for retry at the next evaluation"


def _printed_alerts(db: Path, stdout: str) -> dict[int, tuple[str, dict[str, Any]]]:
    """The drift-found alerts the command printed: id -> (stored status, stored context)."""
    ids = [int(m) for m in re.findall(r"^alert (\d+) \w+ \[\w+\] drift-found ", stdout, re.M)]
    assert ids, stdout
    with sqlite3.connect(db) as con:
        rows = con.execute(
            f"SELECT id, status, context FROM alerts WHERE id IN ({','.join('?' * len(ids))})",
            ids,
        ).fetchall()
    return {i: (status, json.loads(ctx or "{}")) for i, status, ctx in rows}


def _servers_of(home: Path) -> list[psutil.Process]:
    """Running processes started with this Prefect home (a temporary server left behind)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("PREFECT_HOME") == str(home):
                found.append(proc)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found


def test_drift_without_a_prefect_server_ends_and_queues_the_notifications(
    store: DemoStore, user_dir: Path
) -> None:
    home = user_dir / "prefect-home"  # a user who never saved a Prefect block
    t0 = time.monotonic()
    res = run_cli(
        "--db",
        f"sqlite:///{store.db}",
        "drift",
        *SHIFTED,
        "--html",
        "drift.html",
        cwd=user_dir,
        env=base_env(PREFECT_HOME=str(home)),
        timeout=300,
    )
    elapsed = time.monotonic() - t0
    assert res.code == 1, res.out  # drift found: the check's exit code, not 3, not a hang
    assert res.stdout.startswith("drift in "), res.out
    assert "alert " in res.stdout and "drift-found" in res.stdout
    queued = [line for line in res.stdout.splitlines() if QUEUED in line]
    assert len(queued) == 1, res.out
    assert "PREFECT_API_URL is not set" in queued[0]
    assert (user_dir / "drift.html").is_file()
    alerts = _printed_alerts(store.db, res.stdout)
    assert all(status == "open" for status, _ in alerts.values())
    assert all(ctx["pending_delivery"]["channels"] == ["ops"] for _, ctx in alerts.values())
    assert not (home / "prefect.db").exists()  # no temporary server started for nothing
    assert elapsed < 240, elapsed


@pytest.mark.slow
def test_drift_delivers_through_a_temporary_server_it_stops(
    store: DemoStore, user_dir: Path, receiver: Receiver
) -> None:
    home = user_dir / "prefect-home"
    env = base_env(PREFECT_HOME=str(home), PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180")
    # What checks/rules/default.yaml tells a user to do: save the "ops" block, no server set up.
    save = (
        "from prefect.blocks.notifications import CustomWebhookNotificationBlock as B\n"
        f"B(name='evalwatch-ops', url={receiver.url!r}, json_data={{'text': '{{{{subject}}}}'}})"
        ".save('evalwatch-ops', overwrite=True)\n"
    )
    subprocess.run([sys.executable, "-c", save], env=env, check=True, timeout=300)
    res = run_cli(
        "--db", f"sqlite:///{store.db}", "drift", *SHIFTED, cwd=user_dir, env=env, timeout=300
    )
    assert res.code == 1, res.out
    assert QUEUED not in res.stdout, res.out
    texts = [r["json"]["text"] for r in receiver.requests if r["json"]]
    assert any("drift-found opened" in t for t in texts), texts
    alerts = _printed_alerts(store.db, res.stdout)
    assert all("pending_delivery" not in ctx for _, ctx in alerts.values())
    assert _servers_of(home) == []  # the temporary server went with the command
