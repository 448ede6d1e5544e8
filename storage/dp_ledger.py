"""The privacy-budget ledger: what each dataset has spent, and an atomic charge per release.

A release first asks :func:`charge` for its epsilon; only when the charge is allowed is
anything published. The charge is one transaction: insert the dataset's row if it is new,
then a *conditional* ``UPDATE ... SET spent = spent + :eps WHERE spent + :eps <= :budget``.
The database serialises concurrent updates of one row (PostgreSQL's row lock, re-checking the
``WHERE`` on the row as the first writer committed it; SQLite's single writer), so two
releases that together exceed the budget cannot both pass: the second sees the first's spend.
A refused charge rolls back and writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from evalwatch.storage.models import utcnow
from evalwatch.storage.models_dp import DPBudget, DPRelease

__all__ = [
    "BudgetExceededError",
    "BudgetStatus",
    "Charge",
    "budget_status",
    "charge",
    "list_releases",
]

# Float sums of epsilons (0.1 ten times) must not refuse the release that spends exactly
# the budget; far below any epsilon anyone asks for.
_SLACK = 1e-9


class BudgetExceededError(Exception):
    """A release would spend more than its dataset's budget; nothing was released.

    Attributes:
        dataset: The dataset.
        budget: Its total epsilon.
        spent: What earlier releases spent.
        requested: What this release asked for.
    """

    def __init__(self, dataset: str, budget: float, spent: float, requested: float) -> None:
        self.dataset, self.budget, self.spent, self.requested = dataset, budget, spent, requested
        super().__init__(
            f"privacy budget of dataset {dataset!r} exceeded: spent {spent:.4g} of {budget:.4g}, "
            f"remaining {self.remaining:.4g}, requested {requested:.4g}; nothing was released"
        )

    @property
    def remaining(self) -> float:
        """Epsilon left to the dataset."""
        return max(self.budget - self.spent, 0.0)


@dataclass(frozen=True)
class Charge:
    """An allowed charge: the release's id and the dataset's budget after it."""

    release_id: int
    dataset: str
    epsilon: float
    budget: float
    spent_after: float

    @property
    def remaining(self) -> float:
        """Epsilon left to the dataset after this release."""
        return max(self.budget - self.spent_after, 0.0)


@dataclass(frozen=True)
class BudgetStatus:
    """A dataset's budget, what is spent, and how many releases spent it."""

    dataset: str
    budget: float
    spent: float
    releases: int

    @property
    def remaining(self) -> float:
        """Epsilon left to the dataset."""
        return max(self.budget - self.spent, 0.0)


def _budgets() -> sa.Table:
    return DPBudget.__table__  # type: ignore[attr-defined]


def _releases() -> sa.Table:
    return DPRelease.__table__  # type: ignore[attr-defined]


def _ensure_row(conn: sa.Connection, dataset: str) -> None:
    """Insert the dataset's row with nothing spent, unless it exists (no error when it does)."""
    now = utcnow()
    values = {"dataset": dataset, "spent": 0.0, "created_at": now, "updated_at": now}
    table = _budgets()
    stmt: Any
    if conn.dialect.name == "postgresql":
        stmt = postgresql.insert(table).values(values).on_conflict_do_nothing()
    elif conn.dialect.name == "sqlite":
        stmt = sqlite.insert(table).values(values).on_conflict_do_nothing()
    else:  # pragma: no cover - evalwatch runs on SQLite and PostgreSQL only
        raise NotImplementedError(conn.dialect.name)
    conn.execute(stmt)


def charge(
    engine: Engine,
    dataset: str,
    epsilon: float,
    budget: float,
    *,
    kind: str,
    n_values: int,
    detail: dict[str, Any] | None = None,
) -> Charge:
    """Spend ``epsilon`` of ``dataset``'s budget and record the release, or refuse.

    Args:
        engine: The store.
        dataset: The dataset's name (``traffic``, ``traffic:<app>``, a user's name).
        epsilon: What the release spends (> 0).
        budget: The dataset's total epsilon (from the settings: the cap is configuration,
            what is spent is the store's).
        kind: What is released (``export-daily``, ``overview``, ``executive``).
        n_values: How many noised numbers share the epsilon.
        detail: What else a reviewer of the ledger needs (window, bounds, per-number epsilon).

    Returns:
        The charge, with the release's id.

    Raises:
        BudgetExceededError: ``spent + epsilon`` would exceed ``budget``; nothing is written.
        ValueError: ``epsilon`` is not positive.

    Examples:
        >>> from evalwatch.storage.db import make_engine, upgrade
        >>> e = make_engine("sqlite://"); _ = upgrade(e)
        >>> charge(e, "traffic", 0.5, 1.0, kind="export-daily", n_values=3).remaining
        0.5
        >>> charge(e, "traffic", 0.75, 1.0, kind="export-daily", n_values=3)
        Traceback (most recent call last):
        ...
        evalwatch.storage.dp_ledger.BudgetExceededError: privacy budget of dataset 'traffic' \
exceeded: spent 0.5 of 1, remaining 0.5, requested 0.75; nothing was released
    """
    if not epsilon > 0:
        raise ValueError(f"epsilon must be positive, got {epsilon}")
    b = _budgets()
    with engine.begin() as conn:
        _ensure_row(conn, dataset)
        updated = conn.execute(
            sa.update(b)
            .where(b.c.dataset == dataset, b.c.spent + epsilon <= budget + _SLACK)
            .values(spent=b.c.spent + epsilon, updated_at=utcnow())
        )
        spent = float(conn.execute(sa.select(b.c.spent).where(b.c.dataset == dataset)).scalar_one())
        if updated.rowcount != 1:
            # Raised inside the transaction: it rolls back, the new row included.
            raise BudgetExceededError(dataset, budget, spent, epsilon)
        inserted = conn.execute(
            sa.insert(_releases()).values(
                dataset=dataset,
                kind=kind,
                epsilon=epsilon,
                budget=budget,
                spent_after=spent,
                n_values=n_values,
                detail=detail,
                created_at=utcnow(),
            )
        )
        key = inserted.inserted_primary_key
        assert key is not None  # a single-row insert always has one
        release_id = int(key[0])
    return Charge(release_id, dataset, epsilon, budget, spent)


def budget_status(engine: Engine, dataset: str, budget: float) -> BudgetStatus:
    """What ``dataset`` has spent of ``budget`` (nothing when it never released).

    Examples:
        >>> from evalwatch.storage.db import make_engine, upgrade
        >>> e = make_engine("sqlite://"); _ = upgrade(e)
        >>> budget_status(e, "traffic", 10.0).remaining
        10.0
    """
    b, r = _budgets(), _releases()
    with engine.connect() as conn:
        spent = conn.execute(sa.select(b.c.spent).where(b.c.dataset == dataset)).scalar()
        n = conn.execute(sa.select(sa.func.count()).where(r.c.dataset == dataset)).scalar_one()
    return BudgetStatus(dataset, budget, float(spent or 0.0), int(n))


def list_releases(engine: Engine, dataset: str | None = None) -> list[dict[str, Any]]:
    """The recorded releases, oldest first (of one dataset when given)."""
    r = _releases()
    q = sa.select(r).order_by(r.c.id)
    if dataset is not None:
        q = q.where(r.c.dataset == dataset)
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(q).mappings()]
