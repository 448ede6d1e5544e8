"""Trace steps in the store: interactions built from multi-span traces keep them in metadata.

An interaction made from an OTLP trace (:mod:`evalwatch.ingest.traces`) holds its steps under
``metadata.trace`` (``trace_id``, ``root_span_id``, ``steps``, ``errors``, ...); no table of its
own. This module reads them back (for latency shares in run reports and the slowest step in
latency alerts) and rewrites a stored interaction when more of its trace arrives.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from evalwatch.core import SubjectType
from evalwatch.storage.membership import run_subject_ids
from evalwatch.storage.models import Embedding, Interaction, Score
from evalwatch.storage.repo import insert_ignore

__all__ = [
    "TracedInteraction",
    "run_traces",
    "trace_steps",
    "upsert_trace_interactions",
]

_it: sa.Table = Interaction.__table__  # type: ignore[attr-defined]
_sc: sa.Table = Score.__table__  # type: ignore[attr-defined]
_em: sa.Table = Embedding.__table__  # type: ignore[attr-defined]
_IN_CHUNK = 5_000
# Interaction columns an ingest row carries (``metadata`` is the column of ``meta``).
_ROW_COLUMNS = (
    "request_id",
    "ts",
    "app",
    "model_name",
    "model_version",
    "prompt",
    "response",
    "context",
    "reference",
    "latency_ms",
    "input_tokens",
    "output_tokens",
    "cost",
    "user_hash",
    "session_hash",
    "metadata",
    "redactions",
    "source",
)


@dataclass(frozen=True)
class TracedInteraction:
    """One stored interaction with trace steps.

    Attributes:
        interaction_id: ``interactions.id``.
        app: Its app.
        model_version: Its model version.
        latency_ms: Its total latency (the trace's root span).
        steps: The step dicts of ``metadata.trace.steps`` (kind, name, span ids, start_ns,
            end_ns, latency_ms, tokens, ...).
        root_span_id: The root span's id, or None for a partial trace.
    """

    interaction_id: int
    app: str
    model_version: str
    latency_ms: float | None
    steps: list[dict[str, Any]]
    root_span_id: str | None


def _chunks(values: Sequence[Any]) -> Iterable[list[Any]]:
    for start in range(0, len(values), _IN_CHUNK):
        yield list(values[start : start + _IN_CHUNK])


def _traced(rows: Iterable[sa.RowMapping]) -> list[TracedInteraction]:
    out: list[TracedInteraction] = []
    for r in rows:
        trace = (r["metadata"] or {}).get("trace") if isinstance(r["metadata"], dict) else None
        if not isinstance(trace, dict) or not trace.get("steps"):
            continue
        out.append(
            TracedInteraction(
                int(r["id"]),
                r["app"],
                r["model_version"],
                None if r["latency_ms"] is None else float(r["latency_ms"]),
                list(trace["steps"]),
                trace.get("root_span_id"),
            )
        )
    return out


def _columns() -> list[sa.ColumnElement[Any]]:
    return [_it.c.id, _it.c.app, _it.c.model_version, _it.c.latency_ms, _it.c["metadata"]]


def trace_steps(
    conn_or_engine: Connection | Engine, interaction_ids: Iterable[int]
) -> dict[int, TracedInteraction]:
    """The traced interactions among ``interaction_ids`` (others, untraced, are absent).

    Args:
        conn_or_engine: The store (a connection inside a transaction reads what it sees).
        interaction_ids: Interaction ids.

    Returns:
        Interaction id to its :class:`TracedInteraction`.
    """
    ids = list(dict.fromkeys(interaction_ids))
    if isinstance(conn_or_engine, Engine):
        with conn_or_engine.connect() as conn:
            return trace_steps(conn, ids)
    out: dict[int, TracedInteraction] = {}
    for chunk in _chunks(ids):
        q = sa.select(*_columns()).where(_it.c.id.in_(chunk))
        out.update({t.interaction_id: t for t in _traced(conn_or_engine.execute(q).mappings())})
    return out


def run_traces(engine: Engine, run_id: int) -> list[TracedInteraction]:
    """The traced interactions of a run's scored sample.

    Args:
        engine: The store.
        run_id: The run.

    Returns:
        One :class:`TracedInteraction` per traced interaction the run has scores about.
    """
    q = sa.select(*_columns()).where(_it.c.id.in_(run_subject_ids(run_id))).order_by(_it.c.id)
    with engine.connect() as conn:
        return _traced(conn.execute(q).mappings())


def _stored_rows(conn: Connection, request_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Stored interactions by request id as ingest rows, locked for update (PostgreSQL)."""
    out: dict[str, dict[str, Any]] = {}
    cols = [_it.c[name] for name in _ROW_COLUMNS]
    for chunk in _chunks(list(dict.fromkeys(request_ids))):
        q = sa.select(_it.c.id, *cols).where(_it.c.request_id.in_(chunk))
        if conn.dialect.name == "postgresql":
            q = q.with_for_update()
        out.update({r["request_id"]: dict(r) for r in conn.execute(q).mappings()})
    return out


def upsert_trace_interactions(
    engine: Engine,
    rows: Sequence[Mapping[str, Any]],
    merge: Callable[[Mapping[str, Any], Mapping[str, Any]], dict[str, Any] | None],
    texts: Sequence[str],
) -> tuple[list[str], list[str]]:
    """Store interactions from traces: insert new request ids, complete stored ones.

    In one transaction: the stored rows with these request ids are read (locked on
    PostgreSQL), the others inserted (a row another ingest inserted meanwhile is then read and
    completed like a stored one), and each stored row rewritten with ``merge(stored, new)``
    unless that returns None (nothing new). An interaction whose ``texts`` fields changed
    loses its scores and embeddings: they judged the partial trace, and the next evaluation
    scores the complete one.

    Args:
        engine: The store.
        rows: Interaction rows (every column of an ingest row), unique request ids.
        merge: Combines a stored row and a new one of the same trace (pure).
        texts: The fields whose change makes the stored scores stale.

    Returns:
        The request ids newly stored and those updated.
    """
    with engine.begin() as conn:
        by_id = {r["request_id"]: r for r in rows}
        stored = _stored_rows(conn, list(by_id))
        fresh = [r for rid, r in by_id.items() if rid not in stored]
        inserted: list[str] = []
        if fresh:
            inserted = list(
                insert_ignore(conn, Interaction, fresh, ["request_id"], returning="request_id")
            )
            raced = [r["request_id"] for r in fresh if r["request_id"] not in set(inserted)]
            if raced:
                stored.update(_stored_rows(conn, raced))
        updated: list[str] = []
        for rid, old in stored.items():
            merged = merge(old, by_id[rid])
            if merged is None:
                continue
            values = {k: merged[k] for k in _ROW_COLUMNS if k in merged and k != "request_id"}
            conn.execute(sa.update(_it).where(_it.c.id == old["id"]).values(**values))
            if any(old.get(t) != merged.get(t) for t in texts):
                for table in (_sc, _em):
                    conn.execute(
                        sa.delete(table).where(
                            table.c.subject_type == SubjectType.interaction,
                            table.c.subject_id == old["id"],
                        )
                    )
            updated.append(rid)
    return inserted, updated
