"""Run <-> score membership: which stored scores a run reports.

A score is unique per subject, evaluator, version, score-relevant options hash and metric,
whichever run computed it. A run reports every score of its sample under its evaluators'
provenance: those it computed and those it found already stored. :func:`link_run_scores`
records both in ``run_scores``; every read of "a run's scores" goes through that table
(:func:`run_score_ids`, :func:`run_subject_ids`), never through ``scores.run_id``, which only
says who computed a score.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from evalwatch.core import SubjectType
from evalwatch.storage.db import hold_against_prune
from evalwatch.storage.models import RunScore, Score

__all__ = [
    "ScoreKey",
    "link_run_scores",
    "link_written",
    "run_score_ids",
    "run_subject_ids",
    "stored_scores",
]

# Bound parameters per IN list, under SQLite's and psycopg's limits.
_IN_CHUNK = 5_000

_sc: sa.Table = Score.__table__  # type: ignore[attr-defined]
_rs: sa.Table = RunScore.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ScoreKey:
    """The provenance part of a score's key: which evaluator, version and options."""

    subject_type: str
    evaluator: str
    evaluator_version: str
    config_hash: str

    def where(self) -> list[sa.ColumnElement[bool]]:
        """Conditions selecting the scores of this provenance."""
        return [
            _sc.c.subject_type == self.subject_type,
            _sc.c.evaluator == self.evaluator,
            _sc.c.evaluator_version == self.evaluator_version,
            _sc.c.config_hash == self.config_hash,
        ]


def _chunks(ids: Sequence[int]) -> list[list[int]]:
    unique = sorted({int(i) for i in ids})
    return [unique[i : i + _IN_CHUNK] for i in range(0, len(unique), _IN_CHUNK)]


def link_run_scores(
    conn: Connection, run_id: int, key: ScoreKey, subject_ids: Sequence[int]
) -> int:
    """Make every stored score of ``key`` about ``subject_ids`` a member of the run.

    Scores the run computed and scores it reused are linked alike; linking twice is a no-op.

    Args:
        conn: An open connection (the caller owns the transaction, e.g. the one that wrote
            the scores).
        run_id: The run.
        key: Evaluator, version and options hash of the scores.
        subject_ids: Subjects of the run's sample.

    Returns:
        Links added.
    """
    return _insert_links(
        conn,
        (
            sa.select(sa.literal(run_id, sa.Integer), _sc.c.id).where(
                *key.where(), _sc.c.subject_id.in_(chunk)
            )
            for chunk in _chunks(subject_ids)
        ),
    )


def _insert_links(conn: Connection, selects: Iterable[sa.Select[Any]]) -> int:
    """Insert the ``(run_id, score_id)`` rows each select gives, skipping existing links.

    Returns:
        Links added.
    """
    insert: Any = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    # A link's foreign key on a score that a prune batch is deleting would fail: hold them off.
    hold_against_prune(conn)
    added = 0
    for members in selects:
        stmt = (
            insert(_rs)
            .from_select(["run_id", "score_id"], members)
            .on_conflict_do_nothing(index_elements=["run_id", "score_id"])
        )
        added += max(0, conn.execute(stmt).rowcount or 0)
    return added


def _bulk_link(conn: Connection, run_id: int, score_ids: Sequence[int]) -> None:
    """Insert links of just-inserted scores through the driver's bulk path.

    A score id returned by this transaction's insert has no link yet, so there is no conflict
    to look for; ``COPY`` (PostgreSQL) or one ``executemany`` (SQLite) costs a fraction of a
    statement per row (links are as many as scores).
    """
    dbapi_conn: Any = conn.connection.driver_connection
    table = conn.dialect.identifier_preparer.quote(_rs.name)
    if conn.dialect.name == "postgresql":
        with (
            dbapi_conn.cursor() as cur,
            cur.copy(f"COPY {table} (run_id, score_id) FROM STDIN") as cp,
        ):
            for i in score_ids:
                cp.write_row((run_id, int(i)))
        return
    cur = dbapi_conn.cursor()
    try:
        cur.executemany(
            f"INSERT INTO {table} (run_id, score_id) VALUES (?, ?)",
            ((run_id, int(i)) for i in score_ids),
        )
    finally:
        cur.close()


def link_written(conn: Connection, score_ids: Sequence[int], run_id: int | None = None) -> int:
    """Make newly written scores members of the run that wrote them (their ``run_id``).

    Args:
        conn: The connection that wrote them (its transaction).
        score_ids: Ids of the scores just inserted.
        run_id: The run all of them belong to, when they share one (the usual case: the
            links are then inserted as they are, without reading the scores back).

    Returns:
        Links added.
    """
    if run_id is not None:
        if score_ids:
            _bulk_link(conn, run_id, score_ids)
        return len(score_ids)
    return _insert_links(
        conn,
        (
            sa.select(_sc.c.run_id, _sc.c.id).where(_sc.c.id.in_(chunk))
            for chunk in _chunks(score_ids)
        ),
    )


def stored_scores(
    conn: Connection, key: ScoreKey, subject_ids: Sequence[int]
) -> list[tuple[int, str, float | None, str, str | None]]:
    """The stored scores of ``key`` about ``subject_ids`` (what a run reuses).

    Returns:
        Rows of ``subject_id, metric, value, status, reason``, by subject then score id.
    """
    out: list[tuple[int, str, float | None, str, str | None]] = []
    for chunk in _chunks(subject_ids):
        q = (
            sa.select(_sc.c.subject_id, _sc.c.metric, _sc.c.value, _sc.c.status, _sc.c.reason)
            .where(*key.where(), _sc.c.subject_id.in_(chunk))
            .order_by(_sc.c.subject_id, _sc.c.id)
        )
        out.extend((int(i), m, v, st, r) for i, m, v, st, r in conn.execute(q))
    return out


def run_score_ids(run_id: int) -> sa.Select[Any]:
    """A subquery of the ids of the scores a run reports.

    Examples:
        >>> "run_scores" in str(run_score_ids(1))
        True
    """
    return sa.select(_rs.c.score_id).where(_rs.c.run_id == run_id)


def run_subject_ids(
    run_id: int, subject_type: SubjectType = SubjectType.interaction
) -> sa.Select[Any]:
    """A subquery of the subjects a run has scores about (its scored sample)."""
    return (
        sa.select(_sc.c.subject_id)
        .join(_rs, _rs.c.score_id == _sc.c.id)
        .where(_rs.c.run_id == run_id, _sc.c.subject_type == subject_type)
        .distinct()
    )
