"""The process of a command's temporary Prefect server: Prefect's API app on a given socket.

:func:`evalwatch.commands.server.use_prefect_server` runs ``python -m
evalwatch.commands._prefect_child FD PARENT_PID``: the parent has already bound and listened
on the socket ``FD`` (so its address is known, and taken, before this process imports
anything), and this process serves Prefect's own app on it, with the settings Prefect's own
temporary server uses (``PREFECT__SERVER_EPHEMERAL``: no UI, only the services a temporary
server needs). It ends by itself when its parent has gone, however the parent ended.

Only the standard library is imported before uvicorn: Prefect is imported by uvicorn, from
the app's import string, in this process only.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
import urllib.request

__all__ = ["APP", "main"]

#: Prefect's app factory, the one its own temporary server runs.
APP = "prefect.server.api.server:create_app"

_PARENT_POLL_S = 0.5
# Long enough for the flow's last writes (final states, logs) to finish; the parent kills
# after a few seconds more.
_GRACEFUL_SHUTDOWN_S = 3
_WARM_TIMEOUT_S = 600  # queued until the server serves, however long its start takes


def _end_with(parent: int) -> None:
    """Stop this server (as on SIGTERM) once ``parent`` is no longer its parent.

    A parent killed with SIGKILL runs no exit handler; without this, the server would live on.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_PARENT_POLL_S)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _warm(port: int) -> None:
    """Have the server answer one API request as soon as it serves, before its client's first.

    FastAPI prepares the API's routes on the first request that reaches them (about a second
    of CPU; a health check does not reach them). This request waits on the socket from the
    start, so that second is spent while the parent is still preparing its run, not in its
    first flow call.
    """

    def request() -> None:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{port}/api/admin/version", timeout=_WARM_TIMEOUT_S
            ) as response:
                response.read()
        except OSError:
            pass  # the server's own start-up failure is what its parent reports

    threading.Thread(target=request, name="warm-up", daemon=True).start()


def main(argv: list[str]) -> None:
    """Serve Prefect's API on the listening socket ``argv[0]`` until told to stop.

    Args:
        argv: The socket's file descriptor and the parent's process id.
    """
    fd, parent = int(argv[0]), int(argv[1])
    sock = socket.socket(fileno=fd)  # family and type are read from the descriptor
    _end_with(parent)
    _warm(int(sock.getsockname()[1]))
    import uvicorn

    config = uvicorn.Config(
        APP,
        factory=True,
        lifespan="on",
        log_level="error",
        timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_S,
    )
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main(sys.argv[1:])
