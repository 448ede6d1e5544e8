"""What every flow shares: the task runner chosen by settings, the store, artifact keys."""

from __future__ import annotations

from typing import Any

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from sqlalchemy.engine import Engine

from evalwatch.settings import Settings, get_settings
from storage.db import get_engine

__all__ = ["artifact_key", "flow_settings", "make_task_runner", "store"]


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
    # Two threads: evaluators release the GIL in torch and the store, and models are shared.
    return ThreadPoolTaskRunner(max_workers=2)


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
