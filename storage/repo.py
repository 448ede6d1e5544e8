"""Reads and bulk writes of the store. Every write is idempotent (conflicts are skipped).

Bulk writes use one multi-row ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` per chunk
instead of an ORM round-trip per row.
"""

from __future__ import annotations

import hashlib
import json
import operator
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlmodel import SQLModel, select

from evalwatch.core import SubjectType
from evalwatch.storage.db import (
    hold_against_prune,
    lock_for_prune,
    retry_transient,
    session_scope,
)
from evalwatch.storage.membership import link_written
from evalwatch.storage.models import (
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
    RegressionReport,
    RunStatus,
    Score,
    UTCDateTime,
    utcnow,
)

__all__ = [
    "COSTED_EVALUATORS",
    "OutputKey",
    "RunMark",
    "checkpoint",
    "content_hash",
    "create_run",
    "dataset_items",
    "evaluator_configs",
    "finish_run",
    "get_dataset",
    "get_judge_cache",
    "get_run",
    "get_run_by_key",
    "insert_feedback",
    "insert_ignore",
    "insert_interactions",
    "insert_judge_calibration",
    "insert_model_outputs",
    "insert_quarantine",
    "insert_regression_report",
    "interaction_groups",
    "interaction_ids_for",
    "iter_rows",
    "latest_outputs",
    "list_datasets",
    "open_run",
    "output_ids",
    "output_models",
    "prune",
    "put_judge_cache",
    "register_dataset",
    "replace_profiles",
    "run_mark",
    "run_profiles",
    "scored_subject_ids",
    "scoring_cost",
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
    raise ValueError(f"unsupported database {conn.dialect.name!r}; use SQLite or PostgreSQL")


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
        return _bulk_insert_ignore(conn, table, rows, conflict_cols, returning)
    stmt = (
        _insert(conn, table)
        .on_conflict_do_nothing(index_elements=list(conflict_cols))
        .returning(table.c[returning])
    )
    keysets = list(dict.fromkeys(frozenset(r) for r in rows))
    if len(keysets) > 1:
        # One statement per key set: no column is dropped, and absent ones keep their defaults.
        out_all: list[Any] = []
        for ks in keysets:
            same = [r for r in rows if frozenset(r) == ks]
            out_all.extend(insert_ignore(conn, model, same, conflict_cols, returning))
        return out_all
    per_stmt = max(1, _MAX_PARAMS // max(1, len(rows[0])))
    out: list[Any] = []
    for start in range(0, len(rows), per_stmt):
        chunk = [dict(r) for r in rows[start : start + per_stmt]]
        out.extend(r[0] for r in conn.execute(stmt, chunk))
    return out


# From this many rows on, bulk inserts take the driver's bulk path (see _bulk_insert_ignore).
_STAGE_MIN_ROWS = 500
# Keys per "IN (...)" lookup, under SQLite's bound-parameter limit.
_KEYS_PER_LOOKUP = 30_000


def _bulk_insert_ignore(
    conn: Connection,
    table: sa.Table,
    rows: Sequence[Mapping[str, Any]],
    conflict_cols: Sequence[str],
    returning: str,
) -> list[Any]:
    """The fast path of :func:`insert_ignore` for large batches.

    Multi-row ``VALUES`` statements cost a statement parse per batch in psycopg and
    SQLAlchemy; the driver's bulk paths cost about what the raw driver does:

    * PostgreSQL, when the conflict key is a single column and is what is returned: look up
      which keys exist and ``COPY`` the rest straight into the table (under a savepoint: if a
      concurrent writer added one of the keys meanwhile, the copy is undone and the next
      path runs);
    * PostgreSQL otherwise: ``COPY`` into an unindexed temporary table, then one
      ``INSERT ... SELECT ... ON CONFLICT DO NOTHING RETURNING``;
    * SQLite, when the conflict key is a single column and is what is returned: take the write
      lock, look up which keys exist, then one ``executemany`` of ``INSERT ... ON CONFLICT DO
      NOTHING``; otherwise through a staging table as on PostgreSQL.

    Values pass through the same SQLAlchemy type processors and Python column defaults are
    filled, so the stored rows are the same as the other path's.
    """
    bulk = _BulkInsert(conn, table, rows, conflict_cols, returning)
    direct = list(conflict_cols) == [returning] and returning in bulk.cols
    if conn.dialect.name == "postgresql":
        if direct:
            copied = _copy_new_rows(conn, table, rows, bulk.names, bulk.values, returning)
            if copied is not None:
                return copied
        return bulk.postgres_staged()
    if direct:
        return bulk.sqlite_direct(returning)
    return bulk.sqlite_staged()


class _BulkInsert:
    """One large batch for :func:`_bulk_insert_ignore`: its columns, bound values and SQL names."""

    def __init__(
        self,
        conn: Connection,
        table: sa.Table,
        rows: Sequence[Mapping[str, Any]],
        conflict_cols: Sequence[str],
        returning: str,
    ) -> None:
        """Prepare the batch: the given columns, then the Python defaults of the others.

        Args:
            conn: An open connection (the caller owns the transaction).
            table: The table.
            rows: Row dicts, all with the same keys.
            conflict_cols: The unique key whose conflicts are skipped.
            returning: Column whose values are returned for the rows inserted.
        """
        self.conn, self.table, self.rows = conn, table, rows
        self.cols = [c for c in rows[0] if c in table.c]
        fill: dict[str, Any] = {}
        for col in table.c:
            if col.key in rows[0] or col.primary_key or col.default is None:
                continue
            default: Any = col.default
            if getattr(default, "is_sequence", False):
                continue
            fill[col.key] = default.arg(None) if default.is_callable else default.arg
        self.names = self.cols + list(fill)
        cols = self.cols
        self._todo = [(i, p) for i, c in enumerate(cols) if (p := self.processor(c)) is not None]
        self._fixed = [
            self.processor(c)(v) if self.processor(c) is not None else v for c, v in fill.items()
        ]
        self._pick = operator.itemgetter(*cols) if len(cols) > 1 else (lambda r: (r[cols[0]],))
        q = conn.dialect.identifier_preparer.quote
        self.stage = f"_evalwatch_stage_{uuid.uuid4().hex[:12]}"
        self.collist = ", ".join(q(table.c[c].name) for c in self.names)
        self.target = q(table.name)
        self.conflict = ", ".join(q(table.c[c].name) for c in conflict_cols)
        self.ret = q(table.c[returning].name)
        self.dbapi_conn: Any = conn.connection.driver_connection

    def processor(self, name: str) -> Any:
        """The bind processor of a column (None when values pass as they are)."""
        dialect = self.conn.dialect
        col_type = self.table.c[name].type
        if isinstance(col_type, UTCDateTime) and dialect.name == "sqlite":
            return _sqlite_utc  # the same text SQLAlchemy writes, without its generic chain
        return col_type.dialect_impl(dialect).bind_processor(dialect)

    def values(self) -> Iterator[list[Any]]:
        """Each row's bound values, in :attr:`names` order."""
        pick, todo, fixed = self._pick, self._todo, self._fixed  # locals: this is per row
        for r in self.rows:
            v = list(pick(r))
            for i, p in todo:
                v[i] = p(v[i])
            v.extend(fixed)
            yield v

    def postgres_staged(self) -> list[Any]:
        """PostgreSQL: ``COPY`` into a temporary table, then insert what does not collide."""
        stage, collist, target = self.stage, self.collist, self.target
        self.conn.exec_driver_sql(
            f"CREATE TEMP TABLE {stage} ON COMMIT DROP AS "
            f"SELECT {collist} FROM {target} WITH NO DATA"
        )
        with (
            self.dbapi_conn.cursor() as cur,
            cur.copy(f"COPY {stage} ({collist}) FROM STDIN") as cp,
        ):
            for v in self.values():
                cp.write_row(v)
        out = [
            r[0]
            for r in self.conn.exec_driver_sql(
                f"INSERT INTO {target} ({collist}) SELECT {collist} FROM {stage} "
                f"ON CONFLICT ({self.conflict}) DO NOTHING RETURNING {self.ret}"
            )
        ]
        self.conn.exec_driver_sql(f"DROP TABLE {stage}")
        return out

    def sqlite_direct(self, returning: str) -> list[Any]:
        """SQLite, keyed by the returned column: look up the stored keys, then insert the rest."""
        dbapi_conn, ret, target = self.dbapi_conn, self.ret, self.target
        if not dbapi_conn.in_transaction:
            # Take the write lock before looking: no writer can add a key in between.
            dbapi_conn.execute("BEGIN IMMEDIATE")
        key_proc = self.processor(returning)
        keys = [r[returning] for r in self.rows]
        bound = [key_proc(k) for k in keys] if key_proc is not None else keys
        existing: set[Any] = set()
        for start in range(0, len(bound), _KEYS_PER_LOOKUP):
            part = list(dict.fromkeys(bound[start : start + _KEYS_PER_LOOKUP]))
            found = dbapi_conn.execute(
                f"SELECT {ret} FROM {target} WHERE {ret} IN ({', '.join('?' * len(part))})",
                part,
            )
            existing.update(k for (k,) in found)
        cur = dbapi_conn.cursor()
        cur.executemany(
            f"INSERT INTO {target} ({self.collist}) VALUES ({self._marks()}) "
            f"ON CONFLICT ({self.conflict}) DO NOTHING",
            self.values(),
        )
        cur.close()
        inserted: list[Any] = []
        for key, b in zip(keys, bound, strict=True):
            if b not in existing:
                existing.add(b)  # a repeat later in the batch was skipped
                inserted.append(key)
        return inserted

    def sqlite_staged(self) -> list[Any]:
        """SQLite: through a temporary table, then insert what does not collide."""
        stage, collist, target = self.stage, self.collist, self.target
        self.conn.exec_driver_sql(
            f"CREATE TEMP TABLE {stage} AS SELECT {collist} FROM {target} WHERE 0"
        )
        try:
            cur = self.dbapi_conn.cursor()
            cur.executemany(
                f"INSERT INTO {stage} ({collist}) VALUES ({self._marks()})", self.values()
            )
            cur.close()
            # "WHERE true" keeps SQLite from reading ON CONFLICT as a join constraint.
            return [
                r[0]
                for r in self.conn.exec_driver_sql(
                    f"INSERT INTO {target} ({collist}) SELECT {collist} FROM {stage} WHERE true "
                    f"ON CONFLICT ({self.conflict}) DO NOTHING RETURNING {self.ret}"
                )
            ]
        finally:
            self.conn.exec_driver_sql(f"DROP TABLE IF EXISTS {stage}")

    def _marks(self) -> str:
        return ", ".join("?" * len(self.names))


def _sqlite_utc(value: datetime | None) -> str | None:
    """A datetime as SQLAlchemy stores a ``UTCDateTime`` in SQLite: naive UTC text.

    Examples:
        >>> from datetime import UTC, datetime, timedelta, timezone
        >>> _sqlite_utc(datetime(2026, 1, 1, 2, tzinfo=timezone(timedelta(hours=2))))
        '2026-01-01 00:00:00.000000'
    """
    if value is None:
        return None
    if value.tzinfo is not None:
        if value.tzinfo is not UTC:
            value = value.astimezone(UTC)
        # "+00:00" cut off: a bulk insert formats every timestamp, and isoformat is C.
        return value.isoformat(" ", "microseconds")[:-6]
    return value.isoformat(" ", "microseconds")


def _existing_keys(conn: Connection, table: sa.Table, key: str, keys: Sequence[Any]) -> set[Any]:
    """PostgreSQL: which of ``keys`` are stored already."""
    lookup = sa.select(table.c[key]).where(
        table.c[key] == sa.any_(sa.bindparam("keys", type_=postgresql.ARRAY(table.c[key].type)))
    )
    unique = list(dict.fromkeys(keys))
    existing: set[Any] = set()
    for start in range(0, len(unique), 50_000):
        existing.update(conn.execute(lookup, {"keys": unique[start : start + 50_000]}).scalars())
    return existing


def _copy_new_rows(
    conn: Connection,
    table: sa.Table,
    rows: Sequence[Mapping[str, Any]],
    names: Sequence[str],
    values: Callable[[], Iterator[list[Any]]],
    key: str,
) -> list[Any] | None:
    """PostgreSQL: ``COPY`` the rows whose key is not stored yet; None if a key collided."""
    import psycopg

    q = conn.dialect.identifier_preparer.quote
    keys = [r[key] for r in rows]
    existing = _existing_keys(conn, table, key, keys)
    keep: list[bool] = []
    inserted: list[Any] = []
    for k in keys:
        new = k not in existing
        keep.append(new)
        if new:
            existing.add(k)  # a repeat later in the batch is a duplicate
            inserted.append(k)
    if not inserted:
        return []
    collist = ", ".join(q(table.c[c].name) for c in names)
    savepoint = conn.begin_nested()
    try:
        dbapi_conn: Any = conn.connection.driver_connection
        with (
            dbapi_conn.cursor() as cur,
            cur.copy(f"COPY {q(table.name)} ({collist}) FROM STDIN") as cp,
        ):
            for v, ok in zip(values(), keep, strict=True):
                if ok:
                    cp.write_row(v)
    except psycopg.errors.UniqueViolation:
        savepoint.rollback()
        return None
    savepoint.commit()
    return inserted


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
        if conn.dialect.name == "postgresql":
            # One array parameter instead of thousands of bound values per statement.
            q = sa.select(table.c.request_id, table.c.id).where(
                table.c.request_id == sa.any_(sa.bindparam("ids", type_=postgresql.ARRAY(sa.Text)))
            )
            for start in range(0, len(ids), 50_000):
                out.update({r: i for r, i in conn.execute(q, {"ids": ids[start : start + 50_000]})})
            return out
        for start in range(0, len(ids), 5_000):
            chunk = ids[start : start + 5_000]
            q = sa.select(table.c.request_id, table.c.id).where(table.c.request_id.in_(chunk))
            out.update({r: i for r, i in conn.execute(q)})
    return out


def insert_feedback(engine: Engine, rows: Sequence[Mapping[str, Any]]) -> int:
    """Store feedback rows (with ``interaction_id`` resolved); returns how many were new.

    A row whose interaction retention deleted since its id was resolved is not stored (it
    would have gone with its interaction; storing it would break the foreign key).
    """
    with engine.begin() as conn:
        live = _live_interactions(conn, [r["interaction_id"] for r in rows])
        kept = [r for r in rows if r["interaction_id"] in live]
        return len(insert_ignore(conn, Feedback, kept, ["feedback_key"], "feedback_key"))


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


def latest_outputs(
    engine: Engine, dataset_id: int, model: str, *, answered_only: bool = False
) -> dict[str, int]:
    """Item key -> newest output id of ``model`` for each item of the dataset version.

    Args:
        engine: The store.
        dataset_id: The dataset version.
        model: The model whose outputs are wanted.
        answered_only: Only outputs that are answers, not recorded call failures.
    """
    mo = ModelOutput.__table__  # type: ignore[attr-defined]
    di = DatasetItem.__table__  # type: ignore[attr-defined]
    q = (
        sa.select(di.c.item_key, mo.c.id)
        .join(mo, mo.c.dataset_item_id == di.c.id)
        .where(di.c.dataset_id == dataset_id, mo.c.model == model)
        .order_by(mo.c.id)
    )
    if answered_only:
        q = q.where(mo.c.error.is_(None))
    with engine.connect() as conn:
        return {k: i for k, i in conn.execute(q)}  # later rows (newer ids) win


def output_models(engine: Engine, dataset_id: int) -> dict[str, int]:
    """Model -> how many items of the dataset version it has a stored answer for."""
    mo = ModelOutput.__table__  # type: ignore[attr-defined]
    di = DatasetItem.__table__  # type: ignore[attr-defined]
    q = (
        sa.select(mo.c.model, sa.func.count(sa.distinct(mo.c.dataset_item_id)))
        .join(di, mo.c.dataset_item_id == di.c.id)
        .where(di.c.dataset_id == dataset_id, mo.c.error.is_(None))
        .group_by(mo.c.model)
        .order_by(mo.c.model)
    )
    with engine.connect() as conn:
        return {m: int(n) for m, n in conn.execute(q)}


#: What identifies a stored model output: (dataset item id, model, output hash).
OutputKey = tuple[int, str, str]


def output_ids(engine: Engine, keys: Iterable[OutputKey]) -> dict[OutputKey, int]:
    """The stored outputs with these identities, by identity (unknown ones are absent).

    An output is identified by what it is, not by where it was read from: the same
    predictions from any path, or a copy of the file, resolve to the same rows.
    """
    wanted = set(keys)
    mo = ModelOutput.__table__  # type: ignore[attr-defined]
    items = sorted({k[0] for k in wanted})
    models = sorted({k[1] for k in wanted})
    out: dict[OutputKey, int] = {}
    with engine.connect() as conn:
        for start in range(0, len(items), 5_000):
            q = sa.select(mo.c.dataset_item_id, mo.c.model, mo.c.output_hash, mo.c.id).where(
                mo.c.dataset_item_id.in_(items[start : start + 5_000]), mo.c.model.in_(models)
            )
            for item, model, digest, oid in conn.execute(q):
                if (item, model, digest) in wanted:
                    out[(item, model, digest)] = oid
    return out


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
    the same run back, so its scores land in one place without duplicates. See
    :func:`open_run`, which also says whether the run was new.
    """
    run, _ = open_run(
        engine,
        kind,
        params=params,
        evaluators=evaluators,
        model=model,
        dataset_id=dataset_id,
        run_key=run_key,
        flow_run_id=flow_run_id,
    )
    return run


def open_run(
    engine: Engine,
    kind: str,
    *,
    params: Mapping[str, Any] | None = None,
    evaluators: Mapping[str, Any] | None = None,
    model: str | None = None,
    dataset_id: int | None = None,
    run_key: str | None = None,
    flow_run_id: str | None = None,
) -> tuple[EvalRun, bool]:
    """Create the run of ``run_key``, or join the one that exists: ``(run, created)``.

    Several processes may open the same key at the same moment (identical CLI calls, a
    retried flow beside its first try): the insert skips a conflicting key (``INSERT ... ON
    CONFLICT DO NOTHING``, which on PostgreSQL waits for the other transaction to commit)
    and the existing run is read back, so every one of them gets the same run and none
    fails on the unique key. A joined run is marked running again, its error cleared; its
    parameters stay those of whoever created it.

    Args:
        engine: The store.
        kind: ``traffic``, ``dataset``, ``gate``...
        params: The run's parameters as stored.
        evaluators: The evaluators' provenance (name -> version, options hash, options).
        model: The model under test, for a test-set run.
        dataset_id: The test-set version, for a test-set run.
        run_key: The key a re-run passes again; default a fresh one (always a new run).
        flow_run_id: The Prefect flow run driving this pass.

    Returns:
        The run as stored, and whether this call created it (False: resumed or joined).
    """
    key = run_key or content_hash({"kind": kind, "at": utcnow().isoformat(), "p": params})[:32]
    table: sa.Table = EvalRun.__table__  # type: ignore[attr-defined]
    # Built as a model so that every column default (status, started_at...) is filled.
    values = EvalRun(
        run_key=key,
        kind=kind,
        params=dict(params or {}),
        evaluators=dict(evaluators or {}),
        model=model,
        dataset_id=dataset_id,
        flow_run_id=flow_run_id,
    ).model_dump(exclude={"id"})
    with engine.begin() as conn:
        stmt = (
            _insert(conn, table)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["run_key"])
            .returning(table.c.id)
        )
        created = conn.execute(stmt).scalar_one_or_none() is not None
        if not created:
            again: dict[str, Any] = {"status": RunStatus.running, "error": None}
            if flow_run_id:
                again["flow_run_id"] = flow_run_id
            conn.execute(sa.update(table).where(table.c.run_key == key).values(**again))
        row = conn.execute(sa.select(table).where(table.c.run_key == key)).mappings().one()
    return EvalRun(**dict(row)), created


def get_run(engine: Engine, run_id: int) -> EvalRun | None:
    """A run by id."""
    with session_scope(engine) as s:
        return s.get(EvalRun, run_id)


def evaluator_configs(
    engine: Engine, keys: Mapping[str, tuple[str, str | None]]
) -> dict[str, dict[str, Any]]:
    """The options recorded by the runs that scored under each evaluator's score key.

    Args:
        engine: The store.
        keys: Evaluator -> ``(evaluator_version, config_hash)`` of its scores.

    Returns:
        Evaluator -> the ``config`` in the provenance of the newest run that recorded that
        key; evaluators no run records are left out.
    """
    out: dict[str, dict[str, Any]] = {}
    if not keys:
        return out
    runs = EvalRun.__table__  # type: ignore[attr-defined]
    query = sa.select(runs.c.evaluators).order_by(runs.c.id.desc())
    with engine.connect() as conn:
        # Runs are few next to scores; newest first, stopping once every key is found.
        for (prov,) in conn.execute(query):
            for name, (version, chash) in keys.items():
                rec = (prov or {}).get(name)
                if name in out or not isinstance(rec, Mapping):
                    continue
                if str(rec.get("version")) == version and rec.get("config_hash") == chash:
                    out[name] = dict(rec.get("config") or {})
            if len(out) == len(keys):
                break
    return out


def get_run_by_key(engine: Engine, run_key: str) -> EvalRun | None:
    """The run started with ``run_key``, if any (so a caller can tell a resume from a start)."""
    with session_scope(engine) as s:
        return s.exec(select(EvalRun).where(EvalRun.run_key == run_key)).first()


# Evaluators whose scores record what their calls cost (``details["cost_usd"]``).
COSTED_EVALUATORS = ("judge",)


def scoring_cost(conn: Connection, run_id: int) -> tuple[float, int] | None:
    """What a run's scoring calls cost: (US dollars, calls of unpriced models), or None.

    None when no score of the run records a cost (no judge ran). Cached judgements cost 0.
    """
    sc = Score.__table__  # type: ignore[attr-defined]
    q = sa.select(sc.c.details).where(
        sc.c.run_id == run_id,
        sc.c.evaluator.in_(COSTED_EVALUATORS),
        sc.c.details.is_not(None),
    )
    total, unpriced, seen = 0.0, 0, False
    for (details,) in conn.execute(q):
        if isinstance(details, str):
            details = json.loads(details)
        if not isinstance(details, dict) or "cost_usd" not in details:
            continue
        seen = True
        cost = details["cost_usd"]
        if isinstance(cost, int | float) and not isinstance(cost, bool):
            total += float(cost)
        else:
            unpriced += 1
    return (total, unpriced) if seen else None


@dataclass(frozen=True)
class RunMark:
    """How a run had last ended when a pass of it began (see :func:`run_mark`).

    Several processes may drive one run at once (they opened the same key): a pass that
    fails must not undo a completion that another pass stored meanwhile.
    """

    finished_at: datetime | None


def run_mark(engine: Engine, run_id: int) -> RunMark:
    """The :class:`RunMark` of a run now: taken when a pass begins, passed to its failure."""
    table: sa.Table = EvalRun.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        q = sa.select(table.c.finished_at).where(table.c.id == run_id)
        return RunMark(conn.execute(q).scalar_one_or_none())


def finish_run(
    engine: Engine,
    run_id: int,
    status: RunStatus,
    summary: Mapping[str, Any] | None = None,
    error: str | None = None,
    *,
    since: RunMark | None = None,
) -> dict[str, Any] | None:
    """Mark a run completed or failed, with its summary; returns the summary as stored.

    A completed run's summary gains ``cost_usd`` (what its judge calls and, when the summary
    gives ``generation_cost_usd``, its model-under-test calls cost), which the ``run.cost``
    alert selector reads; runs that spent nothing measurable get no cost. Without ``summary``
    the stored one stays.

    Two passes that finish one run at once are serialised on the run's row (PostgreSQL: a
    row lock; SQLite: the write lock), so each sees the other's ending.

    Args:
        engine: The store.
        run_id: The run.
        status: ``completed`` or ``failed``.
        summary: The summary to store (None: keep the stored one).
        error: Why the run failed.
        since: The mark the failing pass took when it began: a failure leaves a run that
            another pass completed after that mark completed, with that pass's summary (the
            failure was this pass's, not the run's). None: always store ``status``.
    """
    with session_scope(engine) as s:
        if engine.dialect.name == "sqlite":
            # Take the write lock before reading, so no other finish slips in between.
            s.connection().exec_driver_sql("BEGIN IMMEDIATE")
        run = s.get(EvalRun, run_id, with_for_update=True)
        if run is None:
            raise KeyError(f"no evaluation run {run_id}")
        if (
            status == RunStatus.failed
            and since is not None
            and run.status == RunStatus.completed
            and run.finished_at != since.finished_at
        ):
            return dict(run.summary) if run.summary is not None else None
        run.status = status
        run.finished_at = utcnow()
        if summary is not None:
            summary = dict(summary)
            if status == RunStatus.completed and summary.get("cost_usd") is None:
                summary.update(_cost_fields(s.connection(), run_id, summary))
            run.summary = summary
        run.error = error
        s.add(run)
        return dict(run.summary) if run.summary is not None else None


def _cost_fields(conn: Connection, run_id: int, summary: Mapping[str, Any]) -> dict[str, Any]:
    scoring = scoring_cost(conn, run_id)
    generation = summary.get("generation_cost_usd")
    if scoring is None and generation is None:
        return {}
    out: dict[str, Any] = {"cost_usd": float(generation or 0.0)}
    if scoring is not None:
        out["scoring_cost_usd"] = scoring[0]
        out["cost_usd"] += scoring[0]
        if scoring[1]:
            out["unpriced_scoring_calls"] = scoring[1]
    return out


def write_scores(conn_or_engine: Engine | Connection, rows: Sequence[Mapping[str, Any]]) -> int:
    """Store scores, each a member of the run that wrote it (``run_id``).

    A score already stored under the same key (subject, evaluator, version, options hash,
    metric) stays; a run that reuses it links it with
    :func:`evalwatch.storage.membership.link_run_scores`.
    """
    if isinstance(conn_or_engine, Engine):
        with conn_or_engine.begin() as conn:
            return write_scores(conn, rows)
    live = _about_live_subjects(conn_or_engine, rows)
    if len(live) != len(rows):
        _forget_judge_answers(conn_or_engine, rows, live)
    rows = live
    cols = ["subject_id", "subject_type", "evaluator", "evaluator_version", "config_hash", "metric"]
    ids = insert_ignore(conn_or_engine, Score, rows, cols)
    run_ids = {r["run_id"] for r in rows}
    link_written(conn_or_engine, ids, run_ids.pop() if len(run_ids) == 1 else None)
    return len(ids)


def _forget_judge_answers(
    conn: Connection, rows: Sequence[Mapping[str, Any]], live: Sequence[Mapping[str, Any]]
) -> None:
    """Delete the judge-cache entries of scores not stored because their interaction is gone.

    A judge caches its answers while it runs, before the scores are written; when the
    interaction was deleted meanwhile (``privacy forget``, ``db prune``), its text would
    otherwise stay in the cache with no score pointing at it.
    """
    kept = {id(r) for r in live}
    keys = sorted(
        {
            k
            for r in rows
            if id(r) not in kept and isinstance(r.get("details"), dict)
            for k in r["details"].get("cache_keys") or ()
            if isinstance(k, str)
        }
    )
    table = JudgeCache.__table__  # type: ignore[attr-defined]
    for start in range(0, len(keys), 5_000):
        conn.execute(sa.delete(table).where(table.c.key.in_(keys[start : start + 5_000])))


def write_embeddings(conn_or_engine: Engine | Connection, rows: Sequence[Mapping[str, Any]]) -> int:
    """Store embeddings (``vector`` as bytes); existing ones stay."""
    if isinstance(conn_or_engine, Engine):
        with conn_or_engine.begin() as conn:
            return write_embeddings(conn, rows)
    rows = _about_live_subjects(conn_or_engine, rows)
    cols = ["subject_type", "subject_id", "model"]
    return len(insert_ignore(conn_or_engine, Embedding, rows, cols))


def _live_interactions(conn: Connection, ids: Iterable[int]) -> set[int]:
    """Those of ``ids`` that are stored, held against retention until the transaction ends.

    See :func:`evalwatch.storage.db.hold_against_prune`: what this transaction then writes
    about them is either deleted with them by a later prune, or never written.
    """
    wanted = sorted({int(i) for i in ids})
    if not wanted:
        return set()
    hold_against_prune(conn)
    it = Interaction.__table__  # type: ignore[attr-defined]
    live: set[int] = set()
    for start in range(0, len(wanted), _KEYS_PER_LOOKUP // 6):
        chunk = wanted[start : start + _KEYS_PER_LOOKUP // 6]
        live.update(r[0] for r in conn.execute(sa.select(it.c.id).where(it.c.id.in_(chunk))))
    return live


def _about_live_subjects(
    conn: Connection, rows: Sequence[Mapping[str, Any]]
) -> Sequence[Mapping[str, Any]]:
    """``rows`` less those about interactions that retention has deleted (see above).

    Rows about other subjects (model outputs) are kept as they are.
    """
    about = [int(r["subject_id"]) for r in rows if r["subject_type"] == SubjectType.interaction]
    if not about:
        return rows
    live = _live_interactions(conn, about)
    if len(live) == len(set(about)):
        return rows
    return [
        r for r in rows if r["subject_type"] != SubjectType.interaction or r["subject_id"] in live
    ]


def run_profiles(engine: Engine, run_id: int) -> list[EvaluatorProfile]:
    """The evaluator profiles stored for a run, oldest first."""
    table = EvaluatorProfile.__table__  # type: ignore[attr-defined]
    q = sa.select(table).where(table.c.run_id == run_id).order_by(table.c.id)
    with engine.connect() as conn:
        return [EvaluatorProfile(**dict(r)) for r in conn.execute(q).mappings()]


def replace_profiles(
    engine: Engine, replaced: Sequence[EvaluatorProfile], merged: Sequence[EvaluatorProfile]
) -> bool:
    """Swap stored profile rows for their merged form, in one transaction.

    Returns:
        False, with nothing changed, when some of ``replaced`` are gone: a concurrent pass of
        the run merged them first, so the caller reads the profiles again (folding them twice
        would count their items twice).
    """
    table = EvaluatorProfile.__table__  # type: ignore[attr-defined]
    ids = [p.id for p in replaced if p.id is not None]
    with engine.connect() as conn, conn.begin() as tx:
        if ids:
            # PostgreSQL: a concurrent delete of the same rows waits for this one and then
            # finds them gone; SQLite: writers take turns.
            deleted = conn.execute(sa.delete(table).where(table.c.id.in_(ids))).rowcount
            if deleted != len(ids):
                tx.rollback()
                return False
        if merged:
            conn.execute(sa.insert(table), [m.model_dump(exclude={"id"}) for m in merged])
    return True


def interaction_groups(engine: Engine, ids: Sequence[int]) -> dict[tuple[str, str], int]:
    """How many of ``ids`` each (app, model version) holds."""
    it = Interaction.__table__  # type: ignore[attr-defined]
    out: dict[tuple[str, str], int] = {}
    with engine.connect() as conn:
        for start in range(0, len(ids), 5_000):
            q = (
                sa.select(it.c.app, it.c.model_version, sa.func.count())
                .where(it.c.id.in_(list(ids[start : start + 5_000])))
                .group_by(it.c.app, it.c.model_version)
            )
            for app, version, n in conn.execute(q):
                out[(app, version)] = out.get((app, version), 0) + int(n)
    return out


def write_profile(engine: Engine, profile: EvaluatorProfile) -> int:
    """Store an evaluator profile; returns its id."""
    return _add_row(engine, profile)


def _add_row(engine: Engine, row: EvaluatorProfile | JudgeCalibration | RegressionReport) -> int:
    """Store one new row in its own transaction; returns its id."""
    with session_scope(engine) as s:
        s.add(row)
        s.flush()
        assert row.id is not None
        return row.id


def scored_subject_ids(
    engine: Engine,
    evaluator: str,
    version: str,
    subject_type: SubjectType = SubjectType.interaction,
    among: Sequence[int] | None = None,
    *,
    config_hash: str | None = None,
) -> set[int]:
    """Subjects that already have any score from this evaluator version (and options).

    Args:
        engine: The store.
        evaluator: Evaluator name.
        version: Evaluator version.
        subject_type: ``interaction`` or ``output``.
        among: Only look at these subjects (a batch), not at every score ever stored.
        config_hash: Only scores of these score-relevant options (the score key's hash);
            None: of any options.
    """
    table = Score.__table__  # type: ignore[attr-defined]
    where = [
        table.c.evaluator == evaluator,
        table.c.evaluator_version == version,
        table.c.subject_type == subject_type,
    ]
    if config_hash is not None:
        where.append(table.c.config_hash == config_hash)
    if among is None:
        chunks: list[list[int] | None] = [None]
    else:
        ids = sorted(set(among))
        chunks = [ids[i : i + 5_000] for i in range(0, len(ids), 5_000)]
    out: set[int] = set()
    with engine.connect() as conn:
        for chunk in chunks:
            cond = where if chunk is None else [*where, table.c.subject_id.in_(chunk)]
            out.update(r[0] for r in conn.execute(sa.select(table.c.subject_id).where(*cond)))
    return out


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


# Interactions deleted per prune transaction: writers wait for one batch at most.
_PRUNE_BATCH = 5_000
# What prune deletes, in the order it reports them.
_PRUNED = ("scores", "embeddings", "feedback", "interactions")


def prune(
    engine: Engine,
    older_than: timedelta,
    now: datetime | None = None,
    *,
    dry_run: bool = False,
    batch_size: int = _PRUNE_BATCH,
) -> dict[str, int]:
    """Delete interactions older than the retention period, with their feedback and scores.

    Safe while ingests and runs write: each batch of interactions goes in one transaction
    with everything about it (scores, their run links, embeddings, feedback), under the
    retention lock that every writer of such rows holds while it writes
    (:func:`evalwatch.storage.db.lock_for_prune`), so no row is left about a deleted
    interaction. Taking that lock first, a batch never deadlocks with a writer; a batch that
    still meets a transient conflict is run again (a bounded number of times). An interrupted
    prune leaves whole batches deleted and the rest in place; running it again finishes it.

    Args:
        engine: The store.
        older_than: The retention period.
        now: The time the period ends (default: now).
        dry_run: Count what would be deleted and delete nothing.
        batch_size: Interactions deleted per transaction.

    Returns:
        Rows deleted (with ``dry_run``: that would be deleted) per table.
    """
    cutoff = (now or utcnow()) - older_than
    it = Interaction.__table__  # type: ignore[attr-defined]
    if dry_run:
        with engine.connect() as conn:
            old = sa.select(it.c.id).where(it.c.ts < cutoff)
            return {
                name: int(
                    conn.execute(
                        sa.select(sa.func.count()).select_from(table).where(where)
                    ).scalar_one()
                )
                for name, table, where in _prune_targets(old)
            }
    out = dict.fromkeys(_PRUNED, 0)
    while True:
        deleted = retry_transient(lambda: _prune_batch(engine, cutoff, batch_size))
        for name, n in deleted.items():
            out[name] += n
        if deleted["interactions"] < batch_size:
            return out


def _prune_targets(old: Any) -> list[tuple[str, sa.Table, sa.ColumnElement[bool]]]:
    """``(name, table, condition)`` of the rows about the interactions ``old`` selects.

    Dependents first; the interactions last.
    """
    it = Interaction.__table__  # type: ignore[attr-defined]
    sc = Score.__table__  # type: ignore[attr-defined]
    em = Embedding.__table__  # type: ignore[attr-defined]
    fb = Feedback.__table__  # type: ignore[attr-defined]
    return [
        *(
            (name, t, sa.and_(t.c.subject_type == SubjectType.interaction, t.c.subject_id.in_(old)))
            for name, t in (("scores", sc), ("embeddings", em))
        ),
        ("feedback", fb, fb.c.interaction_id.in_(old)),
        ("interactions", it, it.c.id.in_(old)),
    ]


def _prune_batch(engine: Engine, cutoff: datetime, batch_size: int) -> dict[str, int]:
    """Delete up to ``batch_size`` interactions from before ``cutoff``, in one transaction."""
    it = Interaction.__table__  # type: ignore[attr-defined]
    with engine.begin() as conn:
        lock_for_prune(conn)
        q = sa.select(it.c.id).where(it.c.ts < cutoff).order_by(it.c.id).limit(batch_size)
        ids = [int(i) for (i,) in conn.execute(q)]
        if not ids:
            return dict.fromkeys(_PRUNED, 0)
        # Run links of the deleted scores go with them (ON DELETE CASCADE).
        return {
            name: int(conn.execute(sa.delete(table).where(where)).rowcount)
            for name, table, where in _prune_targets(ids)
        }


def checkpoint(engine: Engine) -> None:
    """Fold SQLite's write-ahead log into the database file (nothing to do on PostgreSQL).

    A process that ends with connections open leaves its last writes in ``*.db-wal``; after
    this the database file alone holds everything, so copying it (to CI, to a colleague) is
    enough.
    """
    if engine.dialect.name != "sqlite":
        return
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


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
    return _add_row(engine, JudgeCalibration(**dict(row)))


def insert_regression_report(engine: Engine, row: Mapping[str, Any]) -> int:
    """Store one regression gate or canary comparison outcome; returns its id."""
    return _add_row(engine, RegressionReport(**dict(row)))
