"""Where a command's Prefect flows run: ``evalwatch server``'s server, or a temporary one.

``evalwatch server start`` starts ``prefect server start`` once, in the background, and writes
its process id and address to ``<EVALWATCH_HOME>/prefect-server.json``; later commands find
that file and, while the process lives and answers, set ``PREFECT_API_URL`` to it (see
:func:`use_prefect_server`): no start-up per command. ``PREFECT_API_URL`` set by hand, or an
API URL in Prefect's settings files, always wins.

Without either, a command that runs a flow (``run traffic``, ``run dataset``, ``demo``) starts
a temporary server of its own as its first step, and stops it at exit. Prefect would start one
too, inside the first flow call, but only after importing its whole server in the command's
process (about 2.5 s) and then waiting for the server process to import it again (3.5-4 s):
evalwatch instead starts the server process at once, on a socket it has already opened (so
the address is known before anything is imported), and goes on with its own preparation
(evaluators, the store, the sample) meanwhile; :func:`wait_for_prefect`, just before the first
flow, waits for what is left of the start. The server is Prefect's own app, with the settings
of Prefect's temporary server, on Prefect's database (``PREFECT_HOME``): the flow runs, their
logs and artifacts are there for ``prefect server start`` to show later.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import typer

from evalwatch.commands.common import bad_input, console, err_console, unavailable
from evalwatch.core.prefect_settings import DEFAULT_PROFILE, prefect_home, prefect_setting_source

__all__ = [
    "EPHEMERAL_STARTUP_TIMEOUT_S",
    "LocalServer",
    "TemporaryServer",
    "register",
    "running_server",
    "server_app",
    "start_temporary_server",
    "use_prefect_server",
    "wait_for_prefect",
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


def _healthy(api_url: str, timeout: float = 2.0) -> bool:
    """Whether the API at ``api_url`` answers its health check (stdlib HTTP: no Prefect import)."""
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout) as response:
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


# --- what Prefect's own settings say --------------------------------------------------------


def _deciding(key: str, value: object) -> bool:
    """Whether the setting ``key = value`` could give Prefect an API or forbid a temporary one."""
    name = key.upper()
    if "API_URL" in name:
        return bool(value)
    if "EPHEMERAL_ENABLED" in name or "ALLOW_EPHEMERAL_MODE" in name:
        return str(value).strip().lower() in ("0", "false", "no", "off")
    return name == "PREFECT_PROFILE" and str(value) != DEFAULT_PROFILE


def _prefect_settings_decide(cwd: Path | None = None) -> str | None:
    """Why Prefect's own settings must choose the API, or None when evalwatch may start one.

    The settings that matter: an API URL, temporary servers turned off, or another profile,
    wherever Prefect would read them (see :mod:`evalwatch.core.prefect_settings`).

    Args:
        cwd: The working directory (default: the process's).

    Returns:
        The source that decides (one short phrase), or None.
    """
    return prefect_setting_source(_deciding, cwd)


# --- a temporary server for one command -----------------------------------------------------


@dataclass
class TemporaryServer:
    """The Prefect server this command started for its own flows, stopped when it exits."""

    process: subprocess.Popen[bytes]
    api_url: str
    log: Path  # its output; removed once it has stopped, kept when it failed
    started: float  # time.monotonic() when its process was started
    timeout_s: float  # seconds from ``started`` it may take to answer
    ready: bool = False
    failed: bool = False  # it exited during start-up: its log is kept, and the error names it

    def stop(self, wait_s: float = 5.0) -> None:
        """End the server (SIGTERM, SIGKILL after ``wait_s``) and reap it; idempotent."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not self.failed:
            self.log.unlink(missing_ok=True)


_temporary: TemporaryServer | None = None


def _startup_timeout() -> float:
    raw = os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS")
    try:
        return float(raw) if raw else float(EPHEMERAL_STARTUP_TIMEOUT_S)
    except ValueError:
        raise bad_input(
            f"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS={raw!r} is not a number of seconds"
        ) from None


def _blocks_registered_before() -> bool:
    """Whether a Prefect server has registered the block types in Prefect's database already.

    Prefect records each registration in its memo store (``PREFECT_HOME/memo_store.toml``).
    Once they are there, a temporary server can skip registering them: block types from a
    collection installed since are registered by the next ``prefect server start``, and a
    block saved from code registers its own type. A block setting given by hand is kept.
    """
    if any(("REGISTER" in k and "BLOCKS" in k) or "MEMOIZE_BLOCK" in k for k in os.environ):
        return False
    home = prefect_home()
    memo = (
        os.environ.get("PREFECT_SERVER_MEMO_STORE_PATH")
        or os.environ.get("PREFECT_MEMO_STORE_PATH")
        or home / "memo_store.toml"
    )
    try:
        text = Path(memo).expanduser().read_text(encoding="utf-8")
        return "block_auto_registration" in tomllib.loads(text)
    except (OSError, ValueError):
        return False


def start_temporary_server(timeout_s: float | None = None) -> TemporaryServer:
    """Start a Prefect server for this command, without waiting for it; stopped at exit.

    The socket is bound (a port the system hands out on 127.0.0.1) and listening before the
    server process starts, so the address is final and requests made early wait in its queue
    instead of failing. The process is in a session of its own: a Ctrl-C reaches this command,
    which still reports its flow run's end to the server, and not the server first.

    Args:
        timeout_s: Seconds it may take to answer (default: ``PREFECT_SERVER_EPHEMERAL_
            STARTUP_TIMEOUT_SECONDS``, else :data:`EPHEMERAL_STARTUP_TIMEOUT_S`).

    Returns:
        The server; :func:`wait_for_prefect` waits for it.
    """
    import atexit
    import socket
    import tempfile

    timeout = _startup_timeout() if timeout_s is None else timeout_s
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        port = int(sock.getsockname()[1])
        fd, log_name = tempfile.mkstemp(prefix="evalwatch-prefect-", suffix=".log")
        env = {
            **os.environ,
            # What Prefect's own temporary server runs with: no UI, only its services.
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
        }
        env.pop("PREFECT_API_URL", None)
        if _blocks_registered_before():
            # Registering them again first imports every installed Prefect collection (Dask
            # among them) and hashes the block registry: over a second of the start's CPU.
            env["PREFECT_SERVER_REGISTER_BLOCKS_ON_START"] = "false"
            env["PREFECT_SERVER_MEMOIZE_BLOCK_AUTO_REGISTRATION"] = "false"
        with os.fdopen(fd, "wb") as out:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "evalwatch.commands._prefect_child",
                    str(sock.fileno()),
                    str(os.getpid()),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                pass_fds=(sock.fileno(),),
                start_new_session=True,
            )
    finally:
        # The child holds the socket now: were this copy kept, requests would queue on it
        # (and hang) after the server has gone.
        sock.close()
    server = TemporaryServer(
        process=process,
        api_url=f"http://127.0.0.1:{port}/api",
        log=Path(log_name),
        started=time.monotonic(),
        timeout_s=timeout,
    )
    # Registered before Prefect's own exit handlers, so it runs after them: the logs and
    # events they send at exit still find the server.
    atexit.register(server.stop)
    return server


def _log_tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:] if line.strip())


def wait_for_prefect() -> float:
    """Wait until this command's temporary Prefect server answers; at once if there is none.

    Call it just before the first flow: the server has started meanwhile.

    Returns:
        The seconds waited here (0.0 when no temporary server runs or it already answered).

    Raises:
        typer.Exit: Code 3, with one line saying why, when the server exited during start-up
            or did not answer within its start-up timeout (it is stopped first).
    """
    server = _temporary
    if server is None or server.ready:
        return 0.0
    # Said here, when a flow is about to use it: a command that stops at bad input before
    # its first flow prints its one error line and nothing about a server it never used.
    err_console.print(
        f"Prefect: a temporary server for this command at {server.api_url[:-4]} "
        "(`evalwatch server start` keeps one for later commands)",
        highlight=False,
        soft_wrap=True,
        style="dim",
    )
    t0 = time.monotonic()
    deadline = server.started + server.timeout_s
    while True:
        remaining = deadline - time.monotonic()
        code = server.process.poll()
        if code is not None:
            server.failed = True
            tail = _log_tail(server.log)
            raise unavailable(
                f"the temporary Prefect server exited during start-up (code {code})"
                + (f": {tail}" if tail else "")
                + f"; its output is in {server.log}"
            )
        if remaining <= 0:
            server.stop()
            raise unavailable(
                f"the temporary Prefect server did not start within {server.timeout_s:g}s "
                "(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS); raise that, or start one "
                "local server that later commands use: `evalwatch server start`"
            )
        # The socket listens already: a probe waits in its queue until the server serves it.
        if _healthy(server.api_url, timeout=min(remaining, 10.0)):
            break
        time.sleep(0.05)
    server.ready = True
    return time.monotonic() - t0


def use_prefect_server() -> str | None:
    """Choose the Prefect API this command's flows run on, and put it in ``PREFECT_API_URL``.

    In order: ``PREFECT_API_URL`` set by hand, or Prefect settings files that name an API or
    forbid temporary servers (Prefect then decides); the server ``evalwatch server start``
    left, while it answers; else a temporary server started now for this command
    (:func:`start_temporary_server`), which :func:`wait_for_prefect` waits for. Call before
    Prefect is imported: it reads ``PREFECT_API_URL`` once. Analytics are off unless set.

    Returns:
        The API URL now in ``PREFECT_API_URL``; None when Prefect's settings decide.
    """
    global _temporary
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    if _temporary is not None and _temporary.process.poll() is None:
        os.environ["PREFECT_API_URL"] = _temporary.api_url
        return _temporary.api_url
    if os.name == "nt" or _prefect_settings_decide() is not None:
        # Prefect's own temporary server, if it comes to one, gets as long to start as ours.
        os.environ.setdefault(
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", str(EPHEMERAL_STARTUP_TIMEOUT_S)
        )
        return None
    server = running_server()
    if server is not None:
        if _healthy(server.api_url):
            os.environ["PREFECT_API_URL"] = server.api_url
            return server.api_url
        err_console.print(
            f"[yellow]note:[/yellow] the Prefect server at {server.url} (pid {server.pid}) does "
            "not answer; using a temporary one (`evalwatch server status`)",
            highlight=False,
            soft_wrap=True,
        )
    _temporary = start_temporary_server()
    os.environ["PREFECT_API_URL"] = _temporary.api_url
    # No UI, and its address ends with the command: no "View at" link to print or to store
    # on an alert (Prefect's own temporary server gives none either).
    os.environ.setdefault("PREFECT_UI_URL", "")
    return _temporary.api_url


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
    while not _healthy(server.api_url, timeout=1.0):
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
    if not _healthy(server.api_url):
        raise unavailable(f"the Prefect server at {server.url} (pid {server.pid}) does not answer")
    console.print(f"Prefect server at {server.url} (pid {server.pid}) answers", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the ``server`` group."""
    app.add_typer(server_app, name="server")
