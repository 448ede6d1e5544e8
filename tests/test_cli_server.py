"""Where a command's flows run: the server ``evalwatch server start`` left, or a temporary one.

The temporary server tests start the real one (Prefect's app in a child process) and check
what a user relies on: it answers requests made before it has finished starting, a start that
fails or takes too long is exit 3 with one line, and it never outlives its command, however the
command ended. The real ``evalwatch server start``, use and stop are in
``tests/journeys/test_journey_server.py``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import typer

from evalwatch.commands import server as srv
from evalwatch.commands.server import (
    EPHEMERAL_STARTUP_TIMEOUT_S,
    running_server,
    use_prefect_server,
    wait_for_prefect,
)

# Settings that move Prefect's API; each test starts without them and gets them back after.
_PREFECT_VARS = (
    "PREFECT_API_URL",
    "PREFECT_UI_URL",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS",
    "PREFECT_PROFILE",
    "PREFECT_PROFILES_PATH",
    "PREFECT_SERVER_EPHEMERAL_ENABLED",
    "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No Prefect API configured anywhere; a temporary server started here is stopped after."""
    for name in _PREFECT_VARS:
        # set, then delete: the variable is removed again after the test even if code sets it
        monkeypatch.setenv(name, "unset")
        monkeypatch.delenv(name)
    monkeypatch.setenv("EVALWATCH_HOME", str(tmp_path / "evalwatch-home"))
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    monkeypatch.chdir(tmp_path)
    from evalwatch.settings import reset_settings

    reset_settings()
    yield tmp_path
    if srv._temporary is not None:
        srv._temporary.stop()
        srv._temporary = None
    reset_settings()


def _ended_pid() -> int:
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    return done.pid


def _health(api_url: str, timeout: float) -> int:
    with urllib.request.urlopen(f"{api_url}/health", timeout=timeout) as response:
        return int(response.status)


def _gone(pid: int, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True  # ended; only its parent (already gone or reaping) holds the entry
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.2)
    return False


# --- which server ---------------------------------------------------------------------------


def test_a_state_file_whose_process_ended_is_removed_not_used(clean_env: Path) -> None:
    home = clean_env / "evalwatch-home"
    home.mkdir()
    state = home / "prefect-server.json"
    state.write_text(json.dumps({"pid": _ended_pid(), "url": "http://127.0.0.1:9", "log": ""}))
    assert running_server() is None and not state.exists()


def test_prefect_api_url_set_by_hand_wins(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://example.invalid/api")
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "7")
    assert use_prefect_server() == "http://example.invalid/api"
    assert os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] == "7"
    assert srv._temporary is None


@pytest.mark.parametrize(
    ("file", "text"),
    [
        ("prefect-home/profiles.toml", 'active = "mine"\n[profiles.mine]\nPREFECT_API_URL = "u"\n'),
        ("prefect-home/profiles.toml", 'active = "local"\n'),  # Prefect's bundled, with an API
        (
            "prefect-home/profiles.toml",
            '[profiles.ephemeral]\nPREFECT_SERVER_ALLOW_EPHEMERAL_MODE = "false"\n',
        ),
        ("prefect.toml", '[api]\nurl = "http://127.0.0.1:4200/api"\n'),
        ("pyproject.toml", '[tool.prefect.api]\nurl = "http://127.0.0.1:4200/api"\n'),
        (".env", "PREFECT_API_URL=http://127.0.0.1:4200/api\n"),
        ("prefect.toml", "not [ toml"),  # unreadable: Prefect reads it, not evalwatch
    ],
)
def test_an_api_in_prefects_settings_files_is_left_to_prefect(
    clean_env: Path, file: str, text: str
) -> None:
    path = clean_env / file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    assert srv._prefect_settings_decide() is not None
    assert use_prefect_server() is None
    assert "PREFECT_API_URL" not in os.environ and srv._temporary is None
    # Prefect's own temporary server, if it comes to one, gets the same time to start.
    timeout = os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"]
    assert int(timeout) == EPHEMERAL_STARTUP_TIMEOUT_S


def test_settings_files_that_name_no_api_leave_the_choice_to_evalwatch(clean_env: Path) -> None:
    # What `prefect config set` writes for a user who only changed the logging level.
    profiles = clean_env / "prefect-home" / "profiles.toml"
    profiles.parent.mkdir()
    profiles.write_text(
        'active = "ephemeral"\n[profiles.ephemeral]\n'
        'PREFECT_SERVER_ALLOW_EPHEMERAL_MODE = "true"\nPREFECT_LOGGING_LEVEL = "DEBUG"\n'
    )
    (clean_env / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert srv._prefect_settings_decide() is None


def test_block_types_are_registered_by_the_first_server_only(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not srv._blocks_registered_before()  # a fresh Prefect home: register them
    memo = clean_env / "prefect-home" / "memo_store.toml"
    memo.parent.mkdir()
    memo.write_text('block_auto_registration = "262d79"\n')  # what Prefect writes after
    assert srv._blocks_registered_before()
    monkeypatch.setenv("PREFECT_API_BLOCKS_REGISTER_ON_START", "true")  # the user's choice
    assert not srv._blocks_registered_before()


# --- a temporary server ---------------------------------------------------------------------


@pytest.mark.slow
def test_without_a_server_one_starts_at_once_answers_early_requests_and_stops(
    clean_env: Path,
) -> None:
    url = use_prefect_server()
    server = srv._temporary
    assert server is not None and url == server.api_url == os.environ["PREFECT_API_URL"]
    assert os.environ["PREFECT_UI_URL"] == ""  # no dead "View at" link for a server that ends
    # Asked at once, before Prefect has even been imported there: the request waits, no error.
    assert _health(url, timeout=EPHEMERAL_STARTUP_TIMEOUT_S) == 200
    wait_for_prefect()
    assert server.ready and wait_for_prefect() == 0.0
    assert use_prefect_server() == url and srv._temporary is server  # one per command
    server.stop()
    assert server.process.returncode is not None and not server.log.exists()
    with pytest.raises(OSError):
        _health(url, timeout=5)  # refused: nothing kept the address open


@pytest.mark.slow
def test_a_server_not_answering_within_its_start_up_timeout_is_exit_3_and_stopped(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "0")
    use_prefect_server()
    server = srv._temporary
    assert server is not None and server.timeout_s == 0
    with pytest.raises(typer.Exit) as exc:
        wait_for_prefect()
    assert exc.value.exit_code == 3
    err = " ".join(capsys.readouterr().err.split())
    assert "did not start within 0s" in err
    assert "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" in err
    assert server.process.returncode is not None  # stopped, not left running


@pytest.mark.slow
def test_a_server_that_exits_during_start_up_is_exit_3_naming_its_output(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PREFECT_API_DATABASE_CONNECTION_URL", "nonsense://")
    use_prefect_server()
    server = srv._temporary
    assert server is not None
    with pytest.raises(typer.Exit) as exc:
        wait_for_prefect()
    assert exc.value.exit_code == 3
    err = " ".join(capsys.readouterr().err.split())
    assert "exited during start-up" in err and str(server.log) in err
    assert server.log.exists()
    server.log.unlink()


@pytest.mark.slow
def test_the_server_ends_when_its_command_is_killed(clean_env: Path) -> None:
    # SIGKILL runs no exit handler: the server, serving, notices its parent has gone and stops.
    command = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\n"
            "from evalwatch.commands import server as srv\n"
            "srv.use_prefect_server()\n"
            "srv.wait_for_prefect()\n"  # serving, as during a flow run
            "print(srv._temporary.process.pid, srv._temporary.log, flush=True)\n"
            "time.sleep(600)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert command.stdout is not None
        pid, log = command.stdout.readline().split(maxsplit=1)
        child = int(pid)
        assert psutil.pid_exists(child)
    finally:
        command.send_signal(signal.SIGKILL)
        command.wait()
    assert _gone(child, within_s=60)
    Path(log.strip()).unlink(missing_ok=True)  # its command never got to remove it
