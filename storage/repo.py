"""Reads and bulk writes of the store. Every write is idempotent (conflicts are skipped).

Bulk writes use one multi-row ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` per chunk
instead of an ORM round-trip per row.
"""

from __future__ import annotations

import hashlib
import json
import uuid
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
    JudgeCache,
    JudgeCalibration,
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
    "get_judge_cache",
    "get_run",
    "insert_feedback",
    "insert_ignore",
    "insert_interactions",
    "insert_judge_calibration",
    "insert_model_outputs",
    "insert_quarantine",
    "interaction_ids_for",
    "iter_rows",
    "list_datasets",
    "prune",
    "put_judge_cache",
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
    if len(rows) >= _STAGE_MIN_ROWS and conn.dialect.name in ("postgresql", "sqlite"):
        return _staged_insert_ignore(conn, table, rows, conflict_cols, returning)
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


# From this many rows on, bulk inserts go through a staging table (see _staged_insert_ignore).
_STAGE_MIN_ROWS = 500


def _staged_insert_ignore(
    conn: Connection,
    table: sa.Table,
    rows: Sequence[Mapping[str, Any]],
    conflict_cols: Sequence[str],
    returning: str,
) -> list[Any]:
    """The fast path of :func:`insert_ignore` for large batches.

    Rows go into an unindexed temporary table with the driver's bulk path (``COPY`` on
    PostgreSQL, ``executemany`` on SQLite), then one ``INSERT ... SELECT ... ON CONFLICT DO
    NOTHING RETURNING`` moves them. Multi-row ``VALUES`` statements cost a statement parse per
    batch in psycopg and SQLAlchemy; this costs about what the raw driver does. Values pass
    through the same SQLAlchemy type processors, and Python column defaults are filled, so the
    stored rows are the same as the other path's.
    """
    dialect = conn.dialect
    cols = [c for c in rows[0] if c in table.c]
    fill: dict[str, Any] = {}
    for col in table.c:
        if col.key in rows[0] or col.primary_key or col.default is None:
            continue
        default: Any = col.default
        if getattr(default, "is_sequence", False):
            continue
        fill[col.key] = default.arg(None) if default.is_callable else default.arg
    names = cols + list(fill)
    procs = [table.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in names]
    todo = [(i, p) for i, p in enumerate(procs) if p is not None]
    fixed = list(fill.values())

    def values() -> Iterator[list[Any]]:
        for r in rows:
            v = [r[c] for c in cols]
            v.extend(fixed)
            for i, p in todo:
                v[i] = p(v[i])
            yield v

    q = dialect.identifier_preparer.quote
    stage = f"_evalwatch_stage_{uuid.uuid4().hex[:12]}"
    collist = ", ".join(q(table.c[c].name) for c in names)
    target = q(table.name)
    conflict = ", ".join(q(table.c[c].name) for c in conflict_cols)
    ret = q(table.c[returning].name)
    dbapi_conn: Any = conn.connection.driver_connection
    if dialect.name == "postgresql":
        conn.exec_driver_sql(
            f"CREATE TEMP TABLE {stage} ON COMMIT DROP AS "
            f"SELECT {collist} FROM {target} WITH NO DATA"
        )
        with dbapi_conn.cursor() as cur, cur.copy(f"COPY {stage} ({collist}) FROM STDIN") as cp:
            for v in values():
                cp.write_row(v)
        out = [
            r[0]
            for r in conn.exec_driver_sql(
                f"INSERT INTO {target} ({collist}) SELECT {collist} FROM {stage} "
                f"ON CONFLICT ({conflict}) DO NOTHING RETURNING {ret}"
            )
        ]
        conn.exec_driver_sql(f"DROP TABLE {stage}")
        return out
    conn.exec_driver_sql(f"CREATE TEMP TABLE {stage} AS SELECT {collist} FROM {target} WHERE 0")
    try:
        cur = dbapi_conn.cursor()
        marks = ", ".join("?" * len(names))
        cur.executemany(f"INSERT INTO {stage} ({collist}) VALUES ({marks})", values())
        cur.close()
        # "WHERE true" keeps SQLite from reading ON CONFLICT as a join constraint.
        return [
            r[0]
            for r in conn.exec_driver_sql(
                f"INSERT INTO {target} ({collist}) SELECT {collist} FROM {stage} WHERE true "
                f"ON CONFLICT ({conflict}) DO NOTHING RETURNING {ret}"
            )
        ]
    finally:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {stage}")


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
            [
                {
                    "name": name,
                    "version": version,
                    "n_items": len(items),
                    "source": source,
                    "created_at": utcnow(),
                }
            ],
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
                    "metadata": i.get("meta"),  # the column behind DatasetItem.meta
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
        return insert_ignore(conn, ModelOutput, rows, ["dataset_item_id", "model", "output_hash"])


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


def write_embeddings(conn_or_engine: Engine | Connection, rows: Sequence[Mapping[str, Any]]) -> int:
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
    names = [
        "interactions",
        "feedback",
        "quarantine",
        "datasets",
        "dataset_items",
        "model_outputs",
        "eval_runs",
        "scores",
        "embeddings",
    ]
    with engine.connect() as conn:
        return {
            n: int(conn.execute(sa.text(f"SELECT COUNT(*) FROM {n}")).scalar_one()) for n in names
        }


def get_judge_cache(engine: Engine, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Cached judge answers for the given keys (absent keys are not in the result)."""
    table = JudgeCache.__table__  # type: ignore[attr-defined]
    out: dict[str, dict[str, Any]] = {}
    unique = list(dict.fromkeys(keys))
    with engine.connect() as conn:
        for start in range(0, len(unique), 5_000):
            chunk = unique[start : start + 5_000]
            q = sa.select(table).where(table.c.key.in_(chunk))
            out.update({r["key"]: dict(r) for r in conn.execute(q).mappings()})
    return out


def put_judge_cache(engine: Engine, rows: Sequence[Mapping[str, Any]]) -> int:
    """Store judge answers; a key already cached keeps its first answer. Returns how many new."""
    with engine.begin() as conn:
        return len(insert_ignore(conn, JudgeCache, rows, ["key"], returning="key"))


def insert_judge_calibration(engine: Engine, row: Mapping[str, Any]) -> int:
    """Store one judge-vs-human calibration result; returns its id."""
    with session_scope(engine) as s:
        cal = JudgeCalibration(**dict(row))
        s.add(cal)
        s.flush()
        assert cal.id is not None
        return cal.id
