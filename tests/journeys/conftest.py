"""Journey fixtures: the installed ``evalwatch`` script, run as a user runs it.

Every journey runs the console script in a subprocess, from a directory that is not the
checkout, with relative paths, against a real SQLite file (a copy of the store that
``evalwatch demo`` leaves) or the real PostgreSQL, a real ``prefect server`` where a flow runs,
and a real HTTP receiver for notifications.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
EVALWATCH = str(BIN / "evalwatch")
PREFECT = str(BIN / "prefect")
TRACEBACK = "Traceback (most recent call last)"


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Result:
    """What one console-script call did."""

    args: list[str]
    code: int
    stdout: str
    stderr: str

    @property
    def out(self) -> str:
        """Stdout and stderr with whitespace folded (rich wraps lines at the terminal width)."""
        return " ".join((self.stdout + "\n" + self.stderr).split())

    def __str__(self) -> str:
        return f"$ {' '.join(self.args)}\nexit {self.code}\n{self.stdout}\n{self.stderr}"


def base_env(**extra: str) -> dict[str, str]:
    """The environment a user's shell would have: no store, no Prefect server configured."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("EVALWATCH_DATABASE", "PREFECT_API"))
    }
    env.update(
        {
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "COLUMNS": "120",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.pop("EVALWATCH_DEBUG", None)
    env.update(extra)
    return env


def run_cli(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = 600,
    input: str | None = None,
    traceback_ok: bool = False,
) -> Result:
    """Run the installed ``evalwatch`` with ``args`` from ``cwd``.

    A traceback in the output fails the test unless ``traceback_ok`` (e.g. with ``--debug``).
    """
    done = subprocess.run(
        [EVALWATCH, *args],
        cwd=cwd,
        env=env if env is not None else base_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
    )
    res = Result([EVALWATCH, *args], done.returncode, done.stdout, done.stderr)
    if not traceback_ok:
        assert TRACEBACK not in res.stdout + res.stderr, f"a traceback reached the user:\n{res}"
    return res


@pytest.fixture
def user_dir(tmp_path: Path) -> Path:
    """A working directory outside the checkout, holding a copy of the bundled data."""
    d = tmp_path / "user"
    d.mkdir()
    shutil.copytree(REPO / "datasets", d / "datasets")
    assert not d.resolve().is_relative_to(REPO)
    return d


# --- a real Prefect server --------------------------------------------------------------------


@dataclass
class PrefectServer:
    """A running ``prefect server`` and the environment that points at it."""

    api_url: str
    env: dict[str, str]
    home: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(
        self, name: str, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``prefect ARGS`` (e.g. a worker) in its own session; stopped at teardown."""
        log = open(self.home / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        p = subprocess.Popen(
            [PREFECT, *args],
            env=env or self.env,
            cwd=self.home,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(p)
        return p

    def log(self, name: str) -> str:
        """The tail of a spawned process's log."""
        path = self.home / f"{name}.log"
        return path.read_text(errors="replace")[-6000:] if path.exists() else ""

    def prefect(
        self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> str:
        """Run a ``prefect`` CLI command against this server; fail the test if it fails."""
        done = subprocess.run(
            [PREFECT, *args],
            env=env or self.env,
            cwd=cwd or self.home,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout


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


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in reversed(procs):
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """One real ``prefect server start`` for the journeys, as a user runs it beside evalwatch."""
    home = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = base_env(
        PREFECT_HOME=str(home / "home"),
        PREFECT_API_URL=api,
        PREFECT_WORKER_QUERY_SECONDS="1",
        PREFECT_WORKER_PREFETCH_SECONDS="1",
    )
    server = PrefectServer(api, env, home)
    proc = server.spawn("server", "server", "start", "--host", "127.0.0.1", "--port", str(port))
    try:
        _wait_healthy(api, proc)
        yield server
    finally:
        _stop(server.procs)


# --- the store `make demo` leaves -------------------------------------------------------------


@dataclass
class DemoStore:
    """The folder ``evalwatch demo`` wrote, with the store file in it."""

    out: Path
    db: Path
    output: str

    @property
    def url(self) -> str:
        return f"sqlite:///{self.db}"


@pytest.fixture(scope="session")
def demo_store(
    tmp_path_factory: pytest.TempPathFactory, prefect_server: PrefectServer
) -> DemoStore:
    """Run ``evalwatch demo`` once, as ``make demo`` does, from a user's directory.

    The traffic run leaves out the embedding evaluator (MiniLM over 10k texts is minutes on two
    cores) so the suite stays inside CI's time; toxicity scores with the embedded model, and
    everything else (ingest, test set, flows, drift, gate, reports) is the demo as shipped.
    """
    cwd = tmp_path_factory.mktemp("demo-user")
    env = base_env(PREFECT_API_URL=prefect_server.api_url)
    res = run_cli(
        "demo",
        "--out",
        "demo-out",
        "--evaluators",
        "heuristics,toxicity",
        cwd=cwd,
        env=env,
        timeout=1200,
    )
    assert res.code == 0, str(res)
    out = cwd / "demo-out"
    return DemoStore(out=out, db=out / "evalwatch.db", output=res.stdout + res.stderr)


@pytest.fixture
def store(demo_store: DemoStore, user_dir: Path) -> DemoStore:
    """A private copy of the demo store in the user's directory (journeys may change it)."""
    out = user_dir / "demo-out"
    out.mkdir()
    shutil.copy2(demo_store.db, out / "evalwatch.db")
    return DemoStore(out=out, db=out / "evalwatch.db", output=demo_store.output)


# --- a real HTTP receiver for notifications ---------------------------------------------------


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 that keeps every request it gets."""

    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)

    def wait_for(self, n: int = 1, timeout: float = 60) -> list[dict[str, Any]]:
        """Wait until ``n`` requests arrived; return them."""
        deadline = time.monotonic() + timeout
        while len(self.requests) < n and time.monotonic() < deadline:
            time.sleep(0.2)
        return list(self.requests)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real webhook receiver; each request's path, headers, raw body and parsed JSON."""
    got: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode(
                "utf-8", "replace"
            )
            try:
                parsed: Any = json.loads(body)
            except ValueError:
                parsed = None
            got.append(
                {"path": self.path, "headers": dict(self.headers), "body": body, "json": parsed}
            )
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield Receiver(url=f"http://127.0.0.1:{httpd.server_address[1]}/hook", requests=got)
    finally:
        httpd.shutdown()
        httpd.server_close()
