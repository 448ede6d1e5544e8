"""Differential-privacy release ledger (issue #17, section 1). See migration 0005.

Every differentially private release (an ``evalwatch export daily`` file, a ``report
--overview --dp-epsilon`` page) spends epsilon from one *dataset*'s budget. ``dp_budgets``
holds what each dataset has spent so far (one row per dataset, updated with a conditional
``UPDATE`` so two releases cannot both pass when together they exceed the budget, see
:mod:`evalwatch.storage.dp_ledger`); ``dp_releases`` records each release that was allowed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from evalwatch.storage.models import _json, _now

__all__ = ["DPBudget", "DPRelease"]


class DPBudget(SQLModel, table=True):
    """The epsilon one dataset has spent over all its releases."""

    __tablename__ = "dp_budgets"
    __table_args__ = (sa.UniqueConstraint("dataset", name="uq_dp_budget_dataset"),)

    id: int | None = Field(default=None, primary_key=True)
    dataset: str = Field(max_length=200)  # "traffic", "traffic:<app>" or a user's name
    spent: float = 0.0
    created_at: datetime = _now()
    updated_at: datetime = _now()


class DPRelease(SQLModel, table=True):
    """One release that was allowed: its epsilon, what it published, the budget after it."""

    __tablename__ = "dp_releases"

    id: int | None = Field(default=None, primary_key=True)
    dataset: str = Field(max_length=200, index=True)
    kind: str = Field(max_length=32)  # export-daily | overview | executive
    epsilon: float
    budget: float  # the dataset's total epsilon when the release was allowed
    spent_after: float
    n_values: int  # how many noised numbers the epsilon was split across
    # Window, contribution bound, bounds, per-number epsilon: what a reviewer needs.
    detail: dict[str, Any] | None = _json()
    created_at: datetime = _now()
