"""Publish a differentially private release: compute, charge the budget, then write.

The order is what makes a refusal release nothing: the noised numbers are computed in memory,
the ledger is charged (:func:`evalwatch.storage.dp_ledger.charge`, atomic), and only an
allowed charge is followed by the file being written. Should writing fail after the charge,
the epsilon stays spent: the safe direction (a budget may be under-used, never overspent).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from sqlalchemy.engine import Engine

from evalwatch.reporting.dp_release import (
    EXPORT_WRITERS,
    DPParams,
    DPRelease,
    daily_release,
    executive_dp_html,
    executive_release,
    overview_dp_html,
    overview_release,
)
from evalwatch.settings import DPSettings
from evalwatch.storage.dp_data import load_dp_frames
from evalwatch.storage.dp_ledger import Charge, charge

__all__ = ["Published", "default_dataset", "dp_params", "publish_daily_export", "publish_overview"]


@dataclass(frozen=True)
class Published:
    """A release that was allowed and written."""

    path: Path
    charge: Charge
    release: DPRelease


def default_dataset(apps: list[str] | None) -> str:
    """The budget a release of traffic is charged to: ``traffic`` or ``traffic:<app>``.

    Examples:
        >>> default_dataset(["shop"]), default_dataset(None), default_dataset(["b", "a"])
        ('traffic:shop', 'traffic', 'traffic:a,b')
    """
    return "traffic:" + ",".join(sorted(apps)) if apps else "traffic"


def dp_params(settings: DPSettings, epsilon: float, dataset: str) -> DPParams:
    """The privacy parameters of a release from the settings.

    Raises:
        ValueError: ``epsilon`` is not positive or above ``max_epsilon_per_release``.
    """
    if not epsilon > 0:
        raise ValueError(f"--dp-epsilon must be positive, got {epsilon:g}")
    if epsilon > settings.max_epsilon_per_release:
        raise ValueError(
            f"--dp-epsilon {epsilon:g} is above the largest one release may spend "
            f"({settings.max_epsilon_per_release:g}, dp.max_epsilon_per_release)"
        )
    if not dataset.strip():
        raise ValueError("--dataset must not be empty")
    return DPParams(epsilon, dataset, settings.max_contributions_per_day, dict(settings.bounds))


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all (a temp file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _charge(engine: Engine, settings: DPSettings, r: DPRelease) -> Charge:
    return charge(
        engine,
        r.params.dataset,
        r.epsilon,
        settings.budget_for(r.params.dataset),
        kind=r.kind,
        n_values=r.n_values,
        detail=r.detail(),
    )


def publish_daily_export(
    engine: Engine,
    settings: DPSettings,
    params: DPParams,
    start: datetime,
    end: datetime,
    out: Path,
    fmt: Literal["csv", "json"],
    apps: list[str] | None = None,
) -> Published:
    """Noise the daily aggregates of ``[start, end)``, charge the budget, write ``out``.

    Raises:
        BudgetExceededError: The dataset's budget would be exceeded; nothing is written.
    """
    r = daily_release(load_dp_frames(engine, start, end, apps), params, apps)
    c = _charge(engine, settings, r)
    text = EXPORT_WRITERS[fmt](r, release_id=c.release_id, spent=c.spent_after, budget=c.budget)
    _write_atomic(out, text)
    return Published(out, c, r)


def publish_overview(
    engine: Engine,
    settings: DPSettings,
    params: DPParams,
    start: datetime,
    end: datetime,
    out: Path,
    apps: list[str] | None = None,
    *,
    kind: Literal["overview", "executive"] = "overview",
) -> Published:
    """Noise the overview (or executive view) of ``[start, end)``, charge, write the page.

    Raises:
        BudgetExceededError: The dataset's budget would be exceeded; nothing is written.
    """
    frames = load_dp_frames(engine, start, end, apps)
    if kind == "executive":
        r, render = executive_release(frames, params), executive_dp_html
    else:
        r, render = overview_release(frames, params), overview_dp_html
    c = _charge(engine, settings, r)
    _write_atomic(out, render(r, spent=c.spent_after, budget=c.budget))
    return Published(out, c, r)
