"""What every flow shares: the task runner chosen by settings, the store, artifact keys.

The flows are declared with the default task runner (:func:`default_task_runner`); the one
``EVALWATCH_TASK_RUNNER`` names is chosen when a flow is called, with :func:`with_task_runner`
(``flow.with_options(task_runner=...)``), so importing a flow reads no settings.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

from prefect import Flow
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from sqlalchemy.engine import Engine

from evalwatch.settings import Settings, get_settings
from evalwatch.storage.db import get_engine

__all__ = [
    "artifact_key",
    "default_task_runner",
    "flow_settings",
    "make_task_runner",
    "prefect_failure",
    "store",
    "with_task_runner",
]

F = TypeVar("F", bound=Flow[Any, Any])

# Prefect reports an unreachable or unstartable API as a bare RuntimeError; these are its words.
_UNREACHABLE = re.compile(r"Failed to reach API at (?P<url>\S+)")
_EPHEMERAL = ("ephemeral Prefect API server", "Unable to find an available port")
_VERSIONS = "Found incompatible versions"


def default_task_runner() -> TaskRunner[Any]:
    """Two threads: evaluators release the GIL in torch and the store, and models are shared."""
    return ThreadPoolTaskRunner(max_workers=2)


def make_task_runner(settings: Settings | None = None) -> TaskRunner[Any]:
    """The task runner named by ``EVALWATCH_TASK_RUNNER``: threads, or Dask processes.

    With ``dask``, tasks run on a local cluster of ``EVALWATCH_DASK_WORKERS`` process workers,
    or on the scheduler at ``EVALWATCH_DASK_ADDRESS``. Workers inherit ``PREFECT_API_URL``
    and the ``EVALWATCH_*`` variables from the process that starts the cluster.
    """
    s = settings or Settings()
    if s.task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        if s.dask_address:
            return DaskTaskRunner(address=s.dask_address)
        return DaskTaskRunner(
            cluster_kwargs={
                "n_workers": s.dask_workers,
                "threads_per_worker": 1,
                "processes": True,
                "dashboard_address": None,
            },
        )
    return default_task_runner()


def with_task_runner(flow: F, settings: Settings | None = None) -> F:
    """``flow`` with the task runner the settings name, chosen now (at call time).

    Examples:
        >>> from evalwatch.flows.traffic import evaluate_traffic
        >>> type(with_task_runner(evaluate_traffic, Settings()).task_runner).__name__
        'ThreadPoolTaskRunner'
    """
    return flow.with_options(task_runner=make_task_runner(settings))  # type: ignore[return-value]


def flow_settings(database_url: str | None) -> Settings:
    """Settings with a flow's ``database_url`` parameter applied."""
    s = get_settings()
    return s.model_copy(update={"database_url": database_url}) if database_url else s


def store(database_url: str | None) -> Engine:
    """The (cached, migrated) store engine for a flow or task."""
    return get_engine(flow_settings(database_url).database_url)


def artifact_key(*parts: str) -> str:
    """A stable artifact key (lowercase letters, digits and dashes) so the UI keeps history.

    Examples:
        >>> artifact_key("evalwatch", "traffic", "Summary")
        'evalwatch-traffic-summary'
    """
    raw = "-".join(parts).lower()
    return "".join(c if c.isalnum() else "-" for c in raw).strip("-")


def prefect_failure(exc: BaseException) -> str | None:
    """One line saying why Prefect could not run a flow, or None if ``exc`` is not that.

    Recognises an unreachable ``PREFECT_API_URL``, a temporary (ephemeral) server that did not
    start in time, and a server of another major version, so that the CLI can report "the run
    could not be carried out" instead of a traceback.

    Args:
        exc: An exception that ended a command.

    Returns:
        The message, naming what was unavailable and the setting to change; None otherwise.

    Examples:
        >>> prefect_failure(RuntimeError("Failed to reach API at http://127.0.0.1:9/api/"))[:44]
        'cannot reach the Prefect API at http://127.0'
        >>> prefect_failure(ValueError("x")) is None
        True
    """
    if not isinstance(exc, RuntimeError):
        return None
    text = str(exc)
    if m := _UNREACHABLE.search(text):
        return (
            f"cannot reach the Prefect API at {m.group('url')} (PREFECT_API_URL); start it "
            "(`prefect server start`) or unset PREFECT_API_URL to run with a temporary server"
        )
    if any(marker in text for marker in _EPHEMERAL):
        from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

        timeout = PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()
        return (
            f"the temporary Prefect server did not start within {timeout:g}s "
            "(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS); raise that, or start one "
            "local server that later commands use: `evalwatch server start`"
        )
    if _VERSIONS in text:
        return f"the Prefect server cannot serve this client: {text}"
    return None
