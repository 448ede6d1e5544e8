"""``evalwatch server``: one local Prefect server that every later command runs its flows on.

Without a server, each command that runs a flow (``run traffic``, ``run dataset``, ``demo``)
has Prefect start a temporary one and stop it at exit: seconds of start-up every time
(importing Prefect's server, then starting it in a subprocess). ``evalwatch server start``
starts ``prefect server start`` once, in the background, and writes its process id and
address to ``<EVALWATCH_HOME>/prefect-server.json``; later commands find that file and, while
the process lives, set ``PREFECT_API_URL`` to it (see :func:`use_prefect_server`).
``PREFECT_API_URL`` set by hand always wins.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import typer

from evalwatch.commands.common import bad_input, console, err_console, unavailable

__all__ = [
    "EPHEMERAL_STARTUP_TIMEOUT_S",
    "LocalServer",
    "register",
    "running_server",
    "server_app",
    "use_prefect_server",
]

server_app = typer.Typer(
    help="A local Prefect server that later commands use (no start-up per command).",
    no_args_is_help=True,
)

#: Seconds a temporary Prefect server may take to start (Prefect's default, 20, fails under
#: load: its start is mostly imports, and a busy 2-core machine takes 5-15 s for them).
EPHEMERAL_STARTUP_TIMEOUT_S = 180

_STATE_FILE = "prefect-server.json"
_LOG_FILE = "prefect-server.log"


@dataclass(frozen=True)
class LocalServer:
    """A Prefect server ``evalwatch server start`` started: its process and its address."""

    pid: int
    url: str  # the server's address, http://HOST:PORT
    log: str  # the file its output goes to

    @property
    def api_url(self) -> str:
        """The ``PREFECT_API_URL`` that reaches it."""
        return f"{self.url}/api"


def _home() -> Path:
    from evalwatch.settings import get_settings

    return Path(get_settings().home)


def _state_path(home: Path | None = None) -> Path:
    return (home or _home()) / _STATE_FILE


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists (and is not a zombie left by this process)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)  # reap it if this process started it
        if done == pid:
            return False
    except ChildProcessError:
        pass  # not our child: ask the system
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _healthy(server: LocalServer, timeout: float = 2.0) -> bool:
    """Whether the server answers its health check (stdlib HTTP: no Prefect import)."""
    try:
        with urllib.request.urlopen(f"{server.api_url}/health", timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def running_server(home: Path | None = None) -> LocalServer | None:
    """The server ``evalwatch server start`` left running, or None (no file, process gone).

    A state file whose process has ended is removed, so a stale address is never used.

    Args:
        home: The evalwatch state folder (default: the settings' ``home``).
    """
    path = _state_path(home)
    try:
        server = LocalServer(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
    if not _alive(server.pid):
        path.unlink(missing_ok=True)
        return None
    return server


def use_prefect_server() -> str | None:
    """Point Prefect at the local server when one runs; else let a temporary one start patiently.

    Call before Prefect is imported: Prefect reads its settings from the environment once.
    ``PREFECT_API_URL`` set by hand is kept. Without a server, a temporary one starts with
    :data:`EPHEMERAL_STARTUP_TIMEOUT_S` to start in (``PREFECT_SERVER_EPHEMERAL_STARTUP_
    TIMEOUT_SECONDS`` set by hand is kept), and analytics off.

    Returns:
        The API URL now in ``PREFECT_API_URL``, or None for a temporary server.
    """
    os.environ.setdefault(
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", str(EPHEMERAL_STARTUP_TIMEOUT_S)
    )
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    server = running_server()
    if server is None:
        return None
    if not _healthy(server):
        err_console.print(
            f"[yellow]note:[/yellow] the Prefect server at {server.url} (pid {server.pid}) does "
            "not answer; using a temporary one (`evalwatch server status`)",
            highlight=False,
            soft_wrap=True,
        )
        return None
    os.environ["PREFECT_API_URL"] = server.api_url
    return server.api_url


def _free_port(host: str) -> int:
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@server_app.command("start")
def server_start(
    port: Annotated[
        int | None, typer.Option("--port", help="Port (default: a free one).", show_default=False)
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    ui: Annotated[bool, typer.Option("--ui/--no-ui", help="Serve the Prefect UI too.")] = True,
    timeout: Annotated[
        float, typer.Option("--timeout", min=1, help="Seconds to wait for it to answer.")
    ] = 180.0,
) -> None:
    """Start a local Prefect server in the background; later commands run their flows on it.

    Its database is Prefect's own (``PREFECT_HOME``, default ``~/.prefect``); its output goes
    to ``<EVALWATCH_HOME>/prefect-server.log``. Exit 3 when it does not answer in time.
    """
    home = _home()
    existing = running_server(home)
    if existing is not None:
        console.print(f"a Prefect server already runs at {existing.url} (pid {existing.pid})")
        return
    home.mkdir(parents=True, exist_ok=True)
    chosen = port or _free_port(host)
    log = home / _LOG_FILE
    env = {
        **os.environ,
        "PREFECT_SERVER_ANALYTICS_ENABLED": os.environ.get(
            "PREFECT_SERVER_ANALYTICS_ENABLED", "false"
        ),
        "PREFECT_UI_ENABLED": "true" if ui else "false",
    }
    env.pop("PREFECT_API_URL", None)  # the server itself needs none
    with log.open("ab") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "prefect",
                "server",
                "start",
                "--host",
                host,
                "--port",
                str(chosen),
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # outlives this command and its terminal's Ctrl-C
        )
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    server = LocalServer(pid=process.pid, url=f"http://{shown}:{chosen}", log=str(log))
    deadline = time.monotonic() + timeout
    while not _healthy(server, timeout=1.0):
        if process.poll() is not None:
            raise unavailable(
                f"the Prefect server exited with code {process.returncode}; see {log}"
            )
        if time.monotonic() > deadline:
            _stop(server)
            raise unavailable(f"the Prefect server did not answer within {timeout:g}s; see {log}")
        time.sleep(0.2)
    _state_path(home).write_text(json.dumps(asdict(server)), encoding="utf-8")
    console.print(
        f"Prefect server at {server.url} (pid {server.pid}); later commands use it. "
        "Stop it with `evalwatch server stop`.",
        highlight=False,
        soft_wrap=True,
    )


def _stop(server: LocalServer, wait_s: float = 20.0) -> None:
    """End the server's process group: SIGTERM, then SIGKILL after ``wait_s``."""
    try:
        os.killpg(server.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + wait_s
    while _alive(server.pid):
        if time.monotonic() > deadline:
            os.killpg(server.pid, signal.SIGKILL)
            break
        time.sleep(0.1)


@server_app.command("stop")
def server_stop() -> None:
    """Stop the server ``evalwatch server start`` started (exit 2 when none runs)."""
    home = _home()
    server = running_server(home)
    if server is None:
        raise bad_input("no Prefect server started by `evalwatch server start` is running")
    _stop(server)
    _state_path(home).unlink(missing_ok=True)
    console.print(f"stopped the Prefect server at {server.url} (pid {server.pid})")


@server_app.command("status")
def server_status() -> None:
    """Say whether a server runs and answers; exit 3 when none does."""
    server = running_server()
    if server is None:
        raise unavailable(
            "no local Prefect server: commands start a temporary one each "
            "(`evalwatch server start` starts one they share)"
        )
    if not _healthy(server):
        raise unavailable(f"the Prefect server at {server.url} (pid {server.pid}) does not answer")
    console.print(f"Prefect server at {server.url} (pid {server.pid}) answers", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the ``server`` group."""
    app.add_typer(server_app, name="server")
