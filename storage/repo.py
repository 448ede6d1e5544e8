"""Reads and bulk writes of the store. Every write is idempotent (conflicts are skipped).

Bulk writes use one multi-row ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` per chunk
instead of an ORM round-trip per row.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlmodel import SQLModel, select

from storage.db import session_scope
from storage.models import (
    Dataset,
    DatasetItem,
    Embedding,
    EvalRun,
    EvaluatorProfile,
    Feedback,
    Interaction,
    ModelOutput,
    Quarantine,
    RunStatus,
    Score,
    utcnow,
)

__all__ = [
    "content_hash",
    "create_run",
    "dataset_items",
    "finish_run",
    "get_dataset",
    "get_run",
    "insert_feedback",
    "insert_ignore",
    "insert_interactions",
    "insert_model_outputs",
    "insert_quarantine",
    "interaction_ids_for",
    "iter_rows",
    "list_datasets",
    "prune",
    "register_dataset",
    "scored_subject_ids",
    "table_counts",
    "write_embeddings",
    "write_profile",
    "write_scores",
]

# Keeps each statement's bind parameters under SQLite's and psycopg's limits.
_MAX_PARAMS = 30_000


def content_hash(obj: Any) -> str:
    """A stable SHA-256 hex digest of a JSON-serialisable object.

    Examples:
        >>> content_hash({"b": 1, "a": 2}) == content_hash({"a": 2, "b": 1})
        True
    """
    blob = json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def _insert(conn: Connection, table: sa.Table) -> Any:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"unsupported database dialect {conn.dialect.name!r}")


def insert_ignore(
    conn: Connection,
    model: type[SQLModel],
    rows: Sequence[Mapping[str, Any]],
    conflict_cols: Sequence[str],
    returning: str = "id",
) -> list[Any]:
    """Insert rows, skipping those that collide on ``conflict_cols``.

    Args:
        conn: An open connection (the caller owns the transaction).
        model: The SQLModel table class.
        rows: Row dicts keyed by column name; all rows must have the same keys.
        conflict_cols: The unique key whose conflicts are skipped.
        returning: Column whose values are returned for the rows actually inserted.

    Returns:
        The ``returning`` values of inserted rows (skipped duplicates are absent).
    """
    if not rows:
        return []
    table: sa.Table = model.__table__  # type: ignore[attr-defined]
    stmt = (
        _insert(conn, table)
        .on_conflict_do_nothing(index_elements=list(conflict_cols))
        .returning(table.c[returning])
    )
    per_stmt = max(1, _MAX_PARAMS // max(1, len(rows[0])))
    out: list[Any] = []
    for start in range(0, len(rows), per_stmt):
        chunk = [dict(r) for r in rows[start : start + per_stmt]]
        out.extend(r[0] for r in conn.execute(stmt, chunk))
    return out


def insert_interactions(engine: Engine, rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Store interactions; returns the request ids newly stored (duplicates are skipped)."""
    with engine.begin() as conn:
        return insert_ignore(conn, Interaction, rows, ["request_id"], returning="request_id")


def interaction_ids_for(engine: Engine, request_ids: Iterable[str]) -> dict[str, int]:
    """Map request ids to interaction ids (unknown ids are absent)."""
    ids = list(dict.fromkeys(request_ids))
    out: dict[str, int] = {}
    table = Interaction.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        for start in range(0, len(ids), 5_000):
            chunk = ids[start : start + 5_000]
            q = sa.select(table.c.request_id, table.c.id).where(table.c.request_id.in_(chunk))
            out.update({r: i for r, i in conn.execute(q)})
    return out


def insert_feedback(engine: Engine, rows: Sequence[Mapping[str, Any]]) -> int:
    """Store feedback rows (with ``interaction_id`` resolved); returns how many were new."""
    with engine.begin() as conn:
        return len(insert_ignore(conn, Feedback, rows, ["feedback_key"]))


def insert_quarantine(engine: Engine, rows: Sequence[Mapping[str, Any]]) -> int:
    """Quarantine rejected rows (raw text, source, line, reasons); returns how many were new."""
    with engine.begin() as conn:
        return len(insert_ignore(conn, Quarantine, rows, ["source", "line", "raw_hash"]))


def register_dataset(
    engine: Engine, name: str, items: Sequence[Mapping[str, Any]], source: str | None = None
) -> tuple[Dataset, bool]:
    """Register a test-set version; identical content returns the existing version.

    Args:
        engine: The store.
        name: Test-set name.
        items: Item dicts with ``item_key``, ``input`` and optional ``reference``, ``context``,
            ``tags``, ``meta``.
        source: Where the items came from.

    Returns:
        The dataset version and whether it was created now.
    """
    canonical = sorted(
        (
            {
                "item_key": i["item_key"],
                "input": i["input"],
                "reference": i.get("reference"),
                "context": i.get("context"),
                "tags": sorted(i.get("tags") or []),
            }
            for i in items
        ),
        key=lambda d: d["item_key"],
    )
    version = content_hash(canonical)[:16]
    with session_scope(engine) as s:
        existing = s.exec(
            select(Dataset).where(Dataset.name == name, Dataset.version == version)
        ).first()
        if existing is not None:
            return existing, False
    with engine.begin() as conn:
        ds_ids = insert_ignore(
            conn,
            Dataset,
            [{"name": name, "version": version, "n_items": len(items), "source": source,
              "created_at": utcnow()}],
            ["name", "version"],
        )
        if not ds_ids:  # a concurrent loader won the race; its items are complete
            pass
        else:
            rows = [
                {
                    "dataset_id": ds_ids[0],
                    "item_key": i["item_key"],
                    "input": i["input"],
                    "reference": i.get("reference"),
                    "context": i.get("context"),
                    "tags": list(i.get("tags") or []),
                    "meta": i.get("meta"),
                }
                for i in items
            ]
            insert_ignore(conn, DatasetItem, rows, ["dataset_id", "item_key"])
    ds = get_dataset(engine, name, version)
    assert ds is not None
    return ds, bool(ds_ids)


def get_dataset(engine: Engine, name: str, version: str | None = None) -> Dataset | None:
    """A dataset version by name, the newest one when ``version`` is None."""
    with session_scope(engine) as s:
        q = select(Dataset).where(Dataset.name == name)
        if version is not None:
            q = q.where(Dataset.version == version)
        q = q.order_by(Dataset.created_at.desc(), Dataset.id.desc())  # type: ignore[attr-defined,union-attr]
        return s.exec(q).first()


def list_datasets(engine: Engine) -> list[Dataset]:
    """Every dataset version, newest first."""
    with session_scope(engine) as s:
        return list(
            s.exec(select(Dataset).order_by(Dataset.name, Dataset.id.desc()))  # type: ignore[union-attr]
        )


def dataset_items(engine: Engine, dataset_id: int) -> list[DatasetItem]:
    """All items of a dataset version, ordered by item key."""
    with session_scope(engine) as s:
        return list(
            s.exec(
                select(DatasetItem)
                .where(DatasetItem.dataset_id == dataset_id)
                .order_by(DatasetItem.item_key)
            )
        )


def insert_model_outputs(engine: Engine, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """Store model outputs for dataset items; returns the ids of those newly stored."""
    with engine.begin() as conn:
        return insert_ignore(
            conn, ModelOutput, rows, ["dataset_item_id", "model", "output_hash"]
        )


def create_run(
    engine: Engine,
    kind: str,
    *,
    params: Mapping[str, Any] | None = None,
    evaluators: Mapping[str, Any] | None = None,
    model: str | None = None,
    dataset_id: int | None = None,
    run_key: str | None = None,
    flow_run_id: str | None = None,
) -> EvalRun:
    """Start an evaluation run, or resume the one with the same ``run_key``.

    A re-run after a crash passes the same key (e.g. derived from its parameters) and gets
    the same run back, so its scores land in one place without duplicates.
    """
    key = run_key or content_hash({"kind": kind, "at": utcnow().isoformat(), "p": params})[:32]
    with session_scope(engine) as s:
        run = s.exec(select(EvalRun).where(EvalRun.run_key == key)).first()
        if run is not None:
            run.status = RunStatus.running
            run.error = None
            if flow_run_id:
                run.flow_run_id = flow_run_id
            s.add(run)
            return run
        run = EvalRun(
            run_key=key,
            kind=kind,
            params=dict(params or {}),
            evaluators=dict(evaluators or {}),
            model=model,
            dataset_id=dataset_id,
            flow_run_id=flow_run_id,
        )
        s.add(run)
        s.flush()
        return run


def get_run(engine: Engine, run_id: int) -> EvalRun | None:
    """A run by id."""
    with session_scope(engine) as s:
        return s.get(EvalRun, run_id)


def finish_run(
    engine: Engine,
    run_id: int,
    status: RunStatus,
    summary: Mapping[str, Any] | None = None,
    error: str | None = None,
) -> None:
    """Mark a run completed or failed, with its summary."""
    with session_scope(engine) as s:
        run = s.get(EvalRun, run_id)
        if run is None:
            raise KeyError(f"no evaluation run {run_id}")
        run.status = status
        run.finished_at = utcnow()
        if summary is not None:
            run.summary = dict(summary)
        run.error = error
        s.add(run)


def write_scores(conn_or_engine: Engine | Connection, rows: Sequence[Mapping[str, Any]]) -> int:
    """Store scores; a score already stored for the same subject/evaluator/version/metric stays."""
    cols = ["subject_type", "subject_id", "evaluator", "evaluator_version", "metric"]
    if isinstance(conn_or_engine, Engine):
        with conn_or_engine.begin() as conn:
            return len(insert_ignore(conn, Score, rows, cols))
    return len(insert_ignore(conn_or_engine, Score, rows, cols))


def write_embeddings(
    conn_or_engine: Engine | Connection, rows: Sequence[Mapping[str, Any]]
) -> int:
    """Store embeddings (``vector`` as bytes); existing ones stay."""
    cols = ["subject_type", "subject_id", "model"]
    if isinstance(conn_or_engine, Engine):
        with conn_or_engine.begin() as conn:
            return len(insert_ignore(conn, Embedding, rows, cols))
    return len(insert_ignore(conn_or_engine, Embedding, rows, cols))


def write_profile(engine: Engine, profile: EvaluatorProfile) -> int:
    """Store an evaluator profile; returns its id."""
    with session_scope(engine) as s:
        s.add(profile)
        s.flush()
        assert profile.id is not None
        return profile.id


def scored_subject_ids(
    engine: Engine, evaluator: str, version: str, subject_type: str = "interaction"
) -> set[int]:
    """Subjects that already have any score from this evaluator version."""
    table = Score.__table__  # type: ignore[attr-defined]
    q = (
        sa.select(table.c.subject_id)
        .where(
            table.c.evaluator == evaluator,
            table.c.evaluator_version == version,
            table.c.subject_type == subject_type,
        )
        .distinct()
    )
    with engine.connect() as conn:
        return {r[0] for r in conn.execute(q)}


def iter_rows(
    engine: Engine, model: type[SQLModel], ids: Sequence[int], chunk_size: int = 1_000
) -> Iterator[list[dict[str, Any]]]:
    """Stream rows of ``model`` with the given ids, in the order given, chunk by chunk.

    Only one chunk is in memory at a time, so a run over millions of rows stays flat.
    """
    table: sa.Table = model.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        for start in range(0, len(ids), chunk_size):
            chunk = list(ids[start : start + chunk_size])
            rows = {
                r["id"]: dict(r)
                for r in conn.execute(sa.select(table).where(table.c.id.in_(chunk))).mappings()
            }
            yield [rows[i] for i in chunk if i in rows]


def prune(engine: Engine, older_than: timedelta, now: datetime | None = None) -> dict[str, int]:
    """Delete interactions older than the retention period, with their feedback and scores.

    Returns:
        Rows deleted per table.
    """
    cutoff = (now or utcnow()) - older_than
    it = Interaction.__table__  # type: ignore[attr-defined]
    sc = Score.__table__  # type: ignore[attr-defined]
    em = Embedding.__table__  # type: ignore[attr-defined]
    fb = Feedback.__table__  # type: ignore[attr-defined]
    old = sa.select(it.c.id).where(it.c.ts < cutoff)
    out: dict[str, int] = {}
    with engine.begin() as conn:
        for name, table in (("scores", sc), ("embeddings", em)):
            res = conn.execute(
                sa.delete(table).where(
                    table.c.subject_type == "interaction", table.c.subject_id.in_(old)
                )
            )
            out[name] = res.rowcount
        out["feedback"] = conn.execute(sa.delete(fb).where(fb.c.interaction_id.in_(old))).rowcount
        out["interactions"] = conn.execute(sa.delete(it).where(it.c.ts < cutoff)).rowcount
    return out


def table_counts(engine: Engine) -> dict[str, int]:
    """Row counts of the main tables (for summaries and tests)."""
    names = ["interactions", "feedback", "quarantine", "datasets", "dataset_items",
             "model_outputs", "eval_runs", "scores", "embeddings"]
    with engine.connect() as conn:
        return {
            n: int(conn.execute(sa.text(f"SELECT COUNT(*) FROM {n}")).scalar_one()) for n in names
        }
