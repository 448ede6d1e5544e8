"""The Prefect API that alert delivery loads notification blocks from, reached in bounded time.

With ``PREFECT_API_URL`` set, that server is used as it is. Without it, Prefect would start a
temporary (ephemeral) server inside the first block load, and that start is not bounded in
wall-clock time: its wait counts only its own 0.1 s sleeps, not the health probes nor the
uvicorn restarts it makes (on another random port of 8000-8999) whenever uvicorn exits with a
start-up failure, e.g. a bind error on a port another process took meanwhile; a probe may even
reach that other process's server and use it. A failed start was then retried by every load
attempt, and events sent at interpreter exit could address a server already gone. On a busy
machine a command could hang for many minutes after its report.

So delivery starts the temporary server itself, once per delivery, with a wall-clock deadline
(``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``), on a port the operating system hands out
(outside the 8000-8999 range Prefect's own temporary servers race for), and stops it when
delivery is done (a temporary server Prefect already runs in this process, a flow run's, is
used instead). When no saved block can exist (the temporary server's SQLite database does
not exist yet, or holds no saved block and no deployment), no server is started at all. A
server that cannot be had leaves the notifications queued on their alerts, with the reason.

Importing Prefect to read its settings costs about 2 s, so a process that has not imported it
first asks the environment and the files Prefect's settings come from: when none of them can
point at an API or another database, and the default database holds nothing to load, the
answer is known without Prefect.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalwatch.core.prefect_settings import prefect_home, prefect_setting_source

__all__ = ["PrefectApi", "prefect_api"]

log = logging.getLogger(__name__)

_PROBE_TIMEOUT_S = 2.0  # one health probe; the deadline bounds them all
_STOP_TIMEOUT_S = 5.0
_EVENTS_DRAIN_S = 5.0


@dataclass(frozen=True)
class PrefectApi:
    """Where blocks are loaded from, or why there is nowhere to load them from.

    Attributes:
        url: The API URL in force (None: no API could be had).
        reason: Why there is no API (one line, no secret), when ``url`` is None.
        temporary: The URL is a temporary server started for this delivery.
    """

    url: str | None
    reason: str | None = None
    temporary: bool = False


def _settings() -> Any:
    from prefect.settings import get_current_settings

    return get_current_settings()


def _sqlite_file(connection_url: str) -> Path | None:
    """The file of a SQLite database URL (None: not a SQLite file URL)."""
    from sqlalchemy.engine import make_url

    try:
        url = make_url(connection_url)
    except Exception:  # not a URL SQLAlchemy reads: let the server judge it
        return None
    if not url.get_backend_name().startswith("sqlite") or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database).expanduser()


# Settings that could point Prefect at an API, another database or another profile: with any of
# them set, only Prefect's own settings can say where blocks live.
_SETTINGS_THAT_MOVE = ("API_URL", "DATABASE", "EPHEMERAL", "PROFILE")
_NO_BLOCKS = "no Prefect API: PREFECT_API_URL is not set and no notification block is saved locally"


def _holds_saved_objects(db: Path) -> bool:
    """Whether a temporary server's SQLite database may hold a saved block or a deployment.

    Args:
        db: The database file (it exists).

    Returns:
        False only when the database reads and has neither; True when it cannot be read as a
        Prefect database (an empty or foreign file): starting a server is then worth a try.
    """
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1.0)
    except sqlite3.Error:
        return True
    try:
        row = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM block_document WHERE is_anonymous = 0)"
            " OR EXISTS (SELECT 1 FROM deployment)"
        ).fetchone()
    except sqlite3.Error:
        return True
    finally:
        conn.close()
    return bool(row and row[0])


def _nothing_to_reach_without_prefect() -> bool:
    """True when, without importing Prefect, it is certain that no Prefect API can be had.

    Only in a process that has not imported Prefect (its settings are then exactly what the
    environment and files say), with no setting that moves the API, the database or the
    profile anywhere Prefect reads settings from, and a default database that holds nothing to
    load.
    """
    if "prefect" in sys.modules:
        return False
    moves = prefect_setting_source(lambda k, _: any(t in k for t in _SETTINGS_THAT_MOVE))
    if moves is not None:
        return False
    db = prefect_home() / "prefect.db"
    return not db.exists() or not _holds_saved_objects(db)


def _running_temporary_server() -> str | None:
    """The API of a temporary server Prefect already runs in this process (a flow run's)."""
    server_module = sys.modules.get("prefect.server.api.server")  # not imported: none runs
    if server_module is None:
        return None
    server = server_module.SubprocessASGIServer._instances.get(None)
    return str(server.api_url) if server is not None and server.running else None


def _free_port() -> int:
    # Port 0: the kernel picks one from its ephemeral range, which Prefect's temporary servers
    # (random ports in 8000-8999) never use, so concurrent starts do not collide.
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spawn(port: int) -> subprocess.Popen[bytes]:
    """Start Prefect's API app under uvicorn, as Prefect's own temporary server does."""
    import prefect

    env = {
        **os.environ,
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
        **_settings().to_environment_variables(exclude_unset=True),
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--app-dir",
            str(Path(prefect.__file__).parent.parent),
            "--factory",
            "prefect.server.api.server:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "critical",  # its start-up errors are summarised by the caller
            "--lifespan",
            "on",
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, timeout: float) -> str | None:
    """None once the server answers its health check; else why it did not within ``timeout``."""
    import httpx

    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=_PROBE_TIMEOUT_S) as client:
        while True:
            code = proc.poll()
            if code is not None:
                return f"the temporary Prefect server exited during start-up (code {code})"
            try:
                if client.get(f"{url}/health").status_code == 200:
                    return None
            except httpx.HTTPError:
                pass  # not listening yet, or still starting
            if time.monotonic() >= deadline:
                return (
                    f"the temporary Prefect server did not start within {timeout:g}s "
                    "(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS)"
                )
            time.sleep(0.2)


def _drain_events() -> None:
    # Loading a block emits an event; Prefect sends queued events when the interpreter exits,
    # waiting without a bound. Send them now, while the server they are addressed to runs.
    try:
        from prefect.events.worker import EventsWorker

        EventsWorker.drain_all(timeout=_EVENTS_DRAIN_S)
    except Exception:  # events are best effort; delivery has already happened
        log.debug("could not drain Prefect events", exc_info=True)


@contextlib.contextmanager
def prefect_api(startup_timeout_s: float | None = None) -> Iterator[PrefectApi]:
    """The Prefect API to deliver through, for the duration of the ``with`` block.

    Args:
        startup_timeout_s: The most seconds a temporary server may take to start (default:
            ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``). It bounds the wall-clock
            wait, unlike Prefect's own start-up loop.

    Yields:
        The API; while the block runs, ``PREFECT_API_URL`` points at a temporary server when
        one was started. ``url`` is None (with the reason) when there is no API to use.

    Examples:
        >>> import os
        >>> from prefect.settings import PREFECT_API_URL, temporary_settings
        >>> with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:4200/api"}):
        ...     with prefect_api() as api:
        ...         api.url
        'http://127.0.0.1:4200/api'
    """
    if _nothing_to_reach_without_prefect():
        yield PrefectApi(None, _NO_BLOCKS)
        return
    settings = _settings()
    if settings.api.url:
        yield PrefectApi(str(settings.api.url))
        return
    running = _running_temporary_server()
    if running is not None:
        yield PrefectApi(running)
        return
    if not settings.server.ephemeral.enabled:
        yield PrefectApi(None, "no Prefect API: PREFECT_API_URL is not set")
        return
    db = _sqlite_file(settings.server.database.connection_url.get_secret_value())
    if db is not None and (not db.exists() or not _holds_saved_objects(db)):
        # No block (nor deployment) was ever saved there: starting a server (tens of seconds
        # on a busy machine) could only fail to load one.
        yield PrefectApi(None, _NO_BLOCKS)
        return
    timeout = float(
        settings.server.ephemeral.startup_timeout_seconds
        if startup_timeout_s is None
        else startup_timeout_s
    )
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    proc = _spawn(port)
    try:
        why = _wait_healthy(proc, url, timeout)
        if why is not None:
            yield PrefectApi(None, why)
            return
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: url}):
            try:
                yield PrefectApi(url, temporary=True)
            finally:
                _drain_events()
    finally:
        _stop(proc)
