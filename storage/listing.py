"""Read-only listings for people: evaluation runs and quarantined rows, newest first."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from evalwatch.storage.models import EvalRun, Quarantine

__all__ = ["Page", "get_quarantined", "get_run", "list_quarantine", "list_runs"]

T = TypeVar("T")
M = TypeVar("M", EvalRun, Quarantine)


@dataclass(frozen=True)
class Page(Generic[T]):
    """Up to ``limit`` rows of a listing, and how many rows match in all."""

    rows: Sequence[T]
    total: int


def list_runs(
    engine: Engine,
    *,
    kind: str | None = None,
    status: str | None = None,
    limit: int = 50,
) -> Page[EvalRun]:
    """Evaluation runs, newest first.

    Args:
        engine: The store.
        kind: Only runs of this kind (``traffic``, ``dataset``, ``gate``...).
        status: Only runs in this status (``running``, ``completed``, ``failed``...).
        limit: At most this many rows.

    Returns:
        The newest matching runs and the number of matching runs.
    """
    where = []
    if kind is not None:
        where.append(col(EvalRun.kind) == kind)
    if status is not None:
        where.append(col(EvalRun.status) == status)
    return _newest(engine, EvalRun, where, limit)


def get_run(engine: Engine, run_id: int) -> EvalRun | None:
    """One evaluation run, or None if there is none with this id."""
    return _get(engine, EvalRun, run_id)


def list_quarantine(
    engine: Engine,
    *,
    reason: str | None = None,
    kind: str | None = None,
    limit: int = 50,
) -> Page[Quarantine]:
    """Quarantined rows, newest first.

    Args:
        engine: The store.
        reason: Only rows with a reason containing this text (case-insensitive).
        kind: Only rows of this kind (``traffic``, ``feedback``, ``dataset``).
        limit: At most this many rows.

    Returns:
        The newest matching rows and the number of matching rows.
    """
    where = []
    if kind is not None:
        where.append(col(Quarantine.kind) == kind)
    if reason:
        # Reasons are a JSON list; its text holds each reason (JSON-escaped, which leaves the
        # words people filter on as they are) on SQLite and PostgreSQL alike.
        reasons_text = sa.cast(Quarantine.__table__.c.reasons, sa.Text)  # type: ignore[attr-defined]
        where.append(func.lower(reasons_text).contains(reason.lower(), autoescape=True))
    return _newest(engine, Quarantine, where, limit)


def get_quarantined(engine: Engine, row_id: int) -> Quarantine | None:
    """One quarantined row, or None if there is none with this id."""
    return _get(engine, Quarantine, row_id)


def _newest(
    engine: Engine, table: type[M], where: Sequence[sa.ColumnElement[bool]], limit: int
) -> Page[M]:
    """The newest ``limit`` rows of ``table`` matching ``where`` (by id), and their count."""
    with Session(engine) as session:
        total = session.exec(select(func.count()).select_from(table).where(*where)).one()
        rows = session.exec(
            select(table).where(*where).order_by(col(table.id).desc()).limit(limit)
        ).all()
    return Page(rows=list(rows), total=int(total))


def _get(engine: Engine, table: type[M], row_id: int) -> M | None:
    with Session(engine) as session:
        return session.get(table, row_id)
