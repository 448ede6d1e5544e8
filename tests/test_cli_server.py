"""How commands find the server ``evalwatch server start`` left (without starting one).

The real start, use and stop are in ``tests/journeys/test_journey_server.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from evalwatch.commands.server import (
    EPHEMERAL_STARTUP_TIMEOUT_S,
    running_server,
    use_prefect_server,
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    for name in ("PREFECT_API_URL", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("EVALWATCH_HOME", str(tmp_path))
    from evalwatch.settings import reset_settings

    reset_settings()
    yield tmp_path
    reset_settings()


def _ended_pid() -> int:
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    return done.pid


def test_without_a_server_a_temporary_one_gets_time_to_start(clean_env: Path) -> None:
    assert use_prefect_server() is None
    assert "PREFECT_API_URL" not in os.environ
    timeout = os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"]
    assert int(timeout) == EPHEMERAL_STARTUP_TIMEOUT_S


def test_a_state_file_whose_process_ended_is_removed_not_used(clean_env: Path) -> None:
    state = clean_env / "prefect-server.json"
    state.write_text(json.dumps({"pid": _ended_pid(), "url": "http://127.0.0.1:9", "log": ""}))
    assert running_server() is None and not state.exists()
    assert use_prefect_server() is None and "PREFECT_API_URL" not in os.environ


def test_prefect_api_url_set_by_hand_wins(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://example.invalid/api")
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "7")
    assert use_prefect_server() == "http://example.invalid/api"
    assert os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] == "7"
