"""Traffic as numpy columns for the drift check: each table read in bulk, once for all scopes.

:func:`load_frame` reads the interactions of some time windows (or of an evaluation run) with
their scores, one embedding model's vectors and their feedback, into a :class:`TrafficFrame`
of numpy arrays; :func:`evalwatch.runs.drift.check_drift` tests it, every scope slicing the
same frame. This is the only place the drift check touches SQL.

Loading: one query per table, built with SQLAlchemy Core and run on the driver's own cursor,
so no SQLAlchemy row is made. SQLite: one ``fetchall`` straight into numpy (embeddings: one
``frombuffer`` over the joined float16 blobs of one dimension). PostgreSQL: the wide reads
(scores, embeddings) come back as one packed ``bytea`` per column (``string_agg`` of
``int8send`` / ``float8send`` / the blobs) decoded with ``frombuffer``; ``COPY ... TO STDOUT
(FORMAT binary)`` was tried first and costs ~15 µs a row in psycopg, which hands COPY data
over one tuple per call. Scores are read in long form, one ``(code, value)`` pair per score
row with the interaction, column and status packed into the code in SQL (faster than a
``MAX(CASE ...)`` pivot on both backends); tables are reached by ``IN (ids of the window)``
so the time index drives the read.

Score keys: per evaluator, only the scores of one ``(evaluator_version, config_hash)`` are
compared: the one that scored the most interactions of the current window, the newest of those
on a tie (two toxicity backends both write ``toxicity.*`` under different options, and an
ad-hoc run with other options over a few interactions must not displace the scheduled runs'
scores); the rows with scores under other keys are kept in ``TrafficFrame.left_out`` so the
check can say what it left out.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from evalwatch.core import SubjectType
from evalwatch.core.feedback import FEEDBACK_KIND_NAMES, FEEDBACK_KINDS
from evalwatch.storage.membership import run_subject_ids
from evalwatch.storage.models import (
    DriftReportRow,
    Embedding,
    EvalRun,
    Feedback,
    Interaction,
    Score,
)

_T = TypeVar("_T")

__all__ = [
    "INTERACTION_COLUMNS",
    "SegmentColumns",
    "TrafficFrame",
    "Window",
    "insert_drift_rows",
    "load_frame",
    "load_segments",
    "newest_interaction_time",
    "run_subjects",
    "to_datetime64",
]

# Interaction columns compared as numeric series (response_length is computed from the text).
INTERACTION_COLUMNS = ("response_length", "latency_ms", "input_tokens", "output_tokens", "cost")


class Window(Protocol):
    """A half-open time window ``[start, end)`` (e.g. a drift check's ``TimeWindow``)."""

    @property
    def start(self) -> datetime:
        """Inclusive start (aware)."""
        ...

    @property
    def end(self) -> datetime:
        """Exclusive end (aware)."""
        ...


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _it() -> sa.Table:
    return Interaction.__table__  # type: ignore[attr-defined]


def _scope_filter(apps: Sequence[str], versions: Sequence[str]) -> list[sa.ColumnElement[bool]]:
    it = _it()
    where: list[sa.ColumnElement[bool]] = []
    if apps:
        where.append(it.c.app.in_(list(apps)))
    if versions:
        where.append(it.c.model_version.in_(list(versions)))
    return where


def newest_interaction_time(
    engine: Engine, apps: Sequence[str] = (), model_versions: Sequence[str] = ()
) -> datetime | None:
    """Time of the newest stored interaction in the scope, or None when there is none.

    Args:
        engine: The store.
        apps: Only these apps (empty: all).
        model_versions: Only these versions (empty: all).

    Returns:
        The newest interaction's time (aware UTC), or None.

    Examples:
        >>> from evalwatch.storage.db import make_engine, upgrade
        >>> e = make_engine("sqlite://"); _ = upgrade(e)
        >>> newest_interaction_time(e) is None
        True
    """
    it = _it()
    q = sa.select(sa.func.max(sa.type_coerce(it.c.ts, sa.DateTime()))).where(
        *_scope_filter(apps, model_versions)
    )
    with engine.connect() as conn:
        value = conn.execute(q).scalar_one_or_none()
    if value is None:
        return None
    if isinstance(value, str):  # SQLite returns MAX() of a datetime column as text
        value = datetime.fromisoformat(value)
    return _utc(value)


def run_subjects(engine: Engine, run_id: int) -> tuple[bool, npt.NDArray[np.int64]]:
    """Whether the run exists, and the interactions it has scores about (computed or reused)."""
    runs = EvalRun.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        exists = conn.execute(sa.select(runs.c.id).where(runs.c.id == run_id)).first() is not None
        if not exists:
            return False, np.empty(0, dtype=np.int64)
        ids = conn.execute(run_subject_ids(run_id, SubjectType.interaction)).scalars()
        return True, np.fromiter(ids, dtype=np.int64)


@dataclass
class TrafficFrame:
    """Interactions and what is stored about them, column by column (numpy arrays).

    Attributes:
        ids: Interaction ids.
        ts: Interaction times (``datetime64[us]``, naive UTC).
        app: App per row (object array).
        model_version: Model version per row (object array).
        responses: Response text per row (object array).
        numeric: Numeric columns by name (NaN where absent or not scored ``ok``).
        binary: Names in ``numeric`` whose values are all 0/1: compared as rates.
        evaluated: Whether any evaluator stored a score for the row.
        errored: Whether a stored score of the row has status ``error``.
        emb_rows: Frame row of each embedding row.
        embeddings: Embeddings (float32, one row per ``emb_rows`` entry) or None.
        embedding_model: The embedding model loaded.
        rating_rows / rating_values / rating_ts: Rating feedback (row, 1-5 value, time).
        thumb_rows / thumb_down: Thumbs feedback (row, whether it was down).
        feedback_numeric: Per-row values of the other ``mean`` feedback kinds
            (``time_to_rate``; NaN where the row has none), only kinds the frame has.
        feedback_events: Per-row whether the interaction had an event of each ``rate`` kind
            (``follow_up``, ``copy``, ...), only kinds with an event in the frame.
        score_keys: Evaluator -> the ``(evaluator_version, config_hash)`` whose scores the
            score columns hold (the widest in the current window, see :func:`load_frame`).
        left_out: Evaluator -> rows that have ``ok`` scores of it under another version or
            options, which the columns leave out (only evaluators with such scores).
        left_out_keys: Evaluator -> the ``(evaluator_version, config_hash)`` left out.
    """

    ids: npt.NDArray[np.int64]
    ts: npt.NDArray[np.datetime64]
    app: npt.NDArray[np.object_]
    model_version: npt.NDArray[np.object_]
    responses: npt.NDArray[np.object_]
    numeric: dict[str, npt.NDArray[np.float64]]
    binary: set[str]
    evaluated: npt.NDArray[np.bool_]
    errored: npt.NDArray[np.bool_]
    emb_rows: npt.NDArray[np.intp]
    embeddings: npt.NDArray[np.float32] | None
    embedding_model: str | None
    rating_rows: npt.NDArray[np.intp]
    rating_values: npt.NDArray[np.float64]
    rating_ts: npt.NDArray[np.datetime64]
    thumb_rows: npt.NDArray[np.intp]
    thumb_down: npt.NDArray[np.bool_]
    score_keys: dict[str, tuple[str, str]] = field(default_factory=dict)
    left_out: dict[str, npt.NDArray[np.bool_]] = field(default_factory=dict)
    left_out_keys: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    feedback_numeric: dict[str, npt.NDArray[np.float64]] = field(default_factory=dict)
    feedback_events: dict[str, npt.NDArray[np.bool_]] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.ids.size)

    def between(self, window: Window) -> npt.NDArray[np.bool_]:
        """Rows whose time is in ``window``."""
        lo, hi = to_datetime64(window.start), to_datetime64(window.end)
        return np.asarray((self.ts >= lo) & (self.ts < hi), dtype=np.bool_)

    def score_columns(self) -> list[str]:
        """The ``evaluator.metric`` columns, sorted."""
        return sorted(k for k in self.numeric if k not in INTERACTION_COLUMNS)


def to_datetime64(dt: datetime) -> np.datetime64:
    """Naive-UTC ``datetime64[us]`` of an aware time, as :class:`TrafficFrame` holds times."""
    return np.datetime64(_utc(dt).replace(tzinfo=None), "us")


def _to_dt64(values: Sequence[Any]) -> npt.NDArray[np.datetime64]:
    """Naive-UTC ``datetime64[us]`` from driver values (SQLite text, naive datetimes)."""
    try:
        return np.array(values, dtype="datetime64[us]")
    except (TypeError, ValueError):
        pass
    out = np.empty(len(values), dtype="datetime64[us]")
    for i, v in enumerate(values):
        if isinstance(v, str):
            v = datetime.fromisoformat(v)
        out[i] = np.datetime64(_utc(v).replace(tzinfo=None), "us")
    return out


# --------------------------------------------------------------------------------------------
# Bulk reads: the driver's own cursor, no SQLAlchemy rows
# --------------------------------------------------------------------------------------------


def _sql(conn: sa.Connection, query: sa.Select[*tuple[Any, ...]]) -> str:
    """The query as SQL text for the driver, values rendered (and escaped) by SQLAlchemy.

    The bulk reads bypass SQLAlchemy's result rows (the cost of the old loader) and, on
    PostgreSQL, run inside ``COPY``, which takes no bound parameters.
    """
    return str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))


# Empty parameters, not none: psycopg then reads the rendered "%%" of a literal "%" back as
# "%" (SQLAlchemy escapes it for the pyformat style); SQLite's qmark style escapes nothing.
_NO_PARAMS: dict[bool, Any] = {True: {}, False: ()}


def _fetchall(conn: sa.Connection, query: sa.Select[*tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """All rows of ``query`` as the driver's tuples (one ``fetchall``)."""
    cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cur.execute(_sql(conn, query), _NO_PARAMS[_is_pg(conn)])
        return list(cur.fetchall())
    finally:
        cur.close()


def _pg_columns(
    conn: sa.Connection, query: sa.Select[*tuple[Any, ...]], kinds: Sequence[str]
) -> list[bytes]:
    """PostgreSQL: each column of ``query`` as one binary buffer, for ``np.frombuffer``.

    The server packs every column into one ``bytea`` (``string_agg`` of ``int8send`` /
    ``float8send`` / the blob itself), so 100,000 rows cross as a handful of values. ``COPY
    ... TO STDOUT (FORMAT binary)`` was measured first: psycopg hands it over one tuple per
    call, about 15 µs a row. The aggregates of one query see the input rows in the same order,
    so the buffers stay aligned; a NULL would be skipped, so callers ``COALESCE`` floats to NaN.

    Args:
        conn: An open PostgreSQL connection.
        query: The query; its columns in order.
        kinds: ``"int8"`` (big-endian int64), ``"float8"`` (big-endian float64) or ``"bytea"``
            per column.

    Returns:
        One buffer per column (empty when the query has no rows).
    """
    send = {"int8": "int8send(t.c{i}::int8)", "float8": "float8send(t.c{i}::float8)"}
    packed = ", ".join(
        f"string_agg({send.get(kind, 't.c{i}').format(i=i)}, ''::bytea)"
        for i, kind in enumerate(kinds)
    )
    labelled = query.with_only_columns(
        *(c.label(f"c{i}") for i, c in enumerate(query.selected_columns))
    )
    sql = f"SELECT {packed} FROM ({_sql(conn, labelled)}) AS t"
    dbapi: Any = conn.connection.driver_connection
    with dbapi.cursor(binary=True) as cur:
        cur.execute(sql, _NO_PARAMS[True])
        row = cur.fetchone()
    return [bytes(v) if v is not None else b"" for v in row] if row else [b""] * len(kinds)


def _own_connections(engine: Engine) -> bool:
    """Whether another connection sees the same data (not an in-memory SQLite database)."""
    url = engine.url
    return not (url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"))


@contextlib.contextmanager
def _beside(
    engine: Engine, conn: sa.Connection
) -> Iterator[Callable[[Callable[[sa.Connection], _T]], Future[_T]]]:
    """Run reads on a second connection in a thread, beside the caller's.

    The drivers leave the GIL while the database works (SQLite's C code, PostgreSQL's
    socket), so a read there overlaps the caller's own reads and numpy work. An in-memory
    SQLite database is one per connection: its reads run on ``conn``, in order.
    """
    if not _own_connections(engine):

        def now(fn: Callable[[sa.Connection], _T]) -> Future[_T]:
            done: Future[_T] = Future()
            done.set_result(fn(conn))
            return done

        yield now
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="evalwatch-read") as pool:

        def later(fn: Callable[[sa.Connection], _T]) -> Future[_T]:
            def task() -> _T:
                with engine.connect() as own:
                    return fn(own)

            return pool.submit(task)

        yield later


def _is_pg(conn: sa.Connection) -> bool:
    return conn.dialect.name == "postgresql"


def _floats(values: Iterable[Any]) -> npt.NDArray[np.float64]:
    # None -> NaN: a missing value stays visible as missing.
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _ints(values: Sequence[Any]) -> npt.NDArray[np.int64]:
    return np.fromiter(values, dtype=np.int64, count=len(values))


def load_frame(
    engine: Engine,
    windows: Sequence[Window],
    *,
    baseline_run: int | None = None,
    apps: Sequence[str] = (),
    model_versions: Sequence[str] = (),
    embedding_model: str | None = None,
    current: Window | None = None,
    texts: bool = True,
    vectors: bool = True,
) -> TrafficFrame:
    """Load the interactions in any of ``windows`` (or scored by a run) with their data.

    Each table is read in bulk through the driver: one ``SELECT`` into numpy on SQLite, and
    ``COPY ... TO STDOUT (FORMAT binary)`` decoded with one ``frombuffer`` on PostgreSQL for
    the wide reads (scores, embeddings). Scores are pivoted in SQL (one row per interaction,
    one column per metric). Small extra queries find the score keys and the embedding model.
    The steps: :func:`_read_interactions`, :func:`_read_scores`, :func:`_read_embeddings`,
    :func:`_read_feedback`.

    Like is compared with like: of each evaluator, only the scores of one evaluator version
    and score-relevant options (``config_hash``) are loaded: the one with ``ok`` scores for
    the most interactions of ``current`` (of all the loaded rows where ``current`` holds
    none), the most recently stored on a tie; rows with scores under other keys are reported
    in ``left_out``.

    Args:
        engine: The store.
        windows: Time windows to load (their union).
        baseline_run: Also load the interactions this evaluation run scored, whatever their
            time.
        apps: Only these apps (empty: all).
        model_versions: Only these model versions (empty: all).
        embedding_model: Embedding model to load (default: the one with most rows).
        current: The window whose scores pick each evaluator's version and options
            (default: all the loaded rows).
        texts: Read the response texts (False: ``responses`` holds None and
            ``response_length`` comes from the database's ``length``), for a caller that
            compares only scores and fields and should not hold every text of a large run.
        vectors: Read the embeddings (False: none, as if none were stored).

    Returns:
        The frame, rows ordered by time.

    Examples:
        >>> from evalwatch.storage.db import make_engine, upgrade
        >>> e = make_engine("sqlite://"); _ = upgrade(e)
        >>> from evalwatch.checks.drift.outcome import TimeWindow
        >>> w = TimeWindow(start=datetime(2026, 11, 1, tzinfo=UTC),
        ...                end=datetime(2026, 11, 2, tzinfo=UTC))
        >>> len(load_frame(e, [w]))
        0
    """
    it = _it()
    which: list[sa.ColumnElement[bool]] = [
        sa.and_(it.c.ts >= w.start, it.c.ts < w.end) for w in windows
    ]
    if baseline_run is not None:
        # A subquery, not a list of ids: no bound-parameter limit to respect.
        which.append(it.c.id.in_(run_subject_ids(baseline_run, SubjectType.interaction)))
    scope = _scope_filter(apps, model_versions)
    where = [sa.or_(*which) if which else sa.false(), *scope]
    # "IN (ids of the window)" walks the interactions' time index and probes the other
    # tables' (subject_type, subject_id) index; a join let SQLite scan every stored score.
    in_window = sa.select(it.c.id).where(*where)
    in_current = (
        sa.select(it.c.id).where(it.c.ts >= current.start, it.c.ts < current.end, *scope)
        if current is not None
        else None
    )

    with engine.connect() as conn, _beside(engine, conn) as run_beside:
        # The widest read (every score row) runs on its own connection meanwhile.
        score_rows = run_beside(lambda c: _fetch_scores(c, in_window, in_current))
        inter = _read_interactions(conn, where, texts=texts)
        index = _RowIndex(inter.ids)
        emb_rows, embeddings, model = (
            _read_embeddings(conn, in_window, index, embedding_model)
            if vectors
            else (np.empty(0, dtype=np.intp), None, None)
        )
        feedback = _read_feedback(conn, in_window, index)
        scores = _read_scores(score_rows.result(), index)

    return TrafficFrame(
        ids=inter.ids,
        ts=inter.ts,
        app=inter.app,
        model_version=inter.model_version,
        responses=inter.responses,
        numeric={**inter.numeric, **scores.columns},
        binary=scores.binary,
        evaluated=scores.evaluated,
        errored=scores.errored,
        emb_rows=emb_rows,
        embeddings=embeddings,
        embedding_model=model if embeddings is not None else None,
        rating_rows=feedback.rating_rows,
        rating_values=feedback.rating_values,
        rating_ts=feedback.rating_ts,
        thumb_rows=feedback.thumb_rows,
        thumb_down=feedback.thumb_down,
        score_keys=scores.keys,
        left_out=scores.left_out,
        left_out_keys=scores.left_out_keys,
        feedback_numeric=feedback.numeric,
        feedback_events=feedback.events,
    )


def _objects(values: Sequence[Any]) -> npt.NDArray[np.object_]:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


@dataclass(frozen=True)
class _Interactions:
    """The interaction columns of a frame."""

    ids: npt.NDArray[np.int64]
    ts: npt.NDArray[np.datetime64]
    app: npt.NDArray[np.object_]
    model_version: npt.NDArray[np.object_]
    responses: npt.NDArray[np.object_]
    numeric: dict[str, npt.NDArray[np.float64]]


def _read_interactions(
    conn: sa.Connection, where: Sequence[sa.ColumnElement[bool]], *, texts: bool = True
) -> _Interactions:
    """The interactions matching ``where``, ordered by time, as numpy columns.

    Without ``texts`` the response is not read; its length comes from the database.
    """
    it = _it()
    q = (
        sa.select(
            it.c.id,
            it.c.ts,
            it.c.app,
            it.c.model_version,
            it.c.response if texts else sa.null(),
            it.c.latency_ms,
            it.c.input_tokens,
            it.c.output_tokens,
            it.c.cost,
            it.c.response_chars
            if texts
            else sa.func.coalesce(it.c.response_chars, sa.func.length(it.c.response)),
        )
        .where(*where)
        .order_by(it.c.ts, it.c.id)
    )
    rows = _fetchall(conn, q)
    cols: list[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else [()] * 10
    ids = _ints(cols[0])
    n = ids.size
    return _Interactions(
        ids=ids,
        ts=_to_dt64(cols[1]),
        app=_objects(cols[2]),
        model_version=_objects(cols[3]),
        responses=_objects(cols[4]),
        numeric={
            # A removed text (retention, metadata-only ingest) kept its length.
            "response_length": np.fromiter(
                (
                    (len(r) if r is not None else math.nan) if c is None else c
                    for r, c in zip(cols[4], cols[9], strict=True)
                ),
                dtype=np.float64,
                count=n,
            ),
            "latency_ms": _floats(cols[5]),
            "input_tokens": _floats(cols[6]),
            "output_tokens": _floats(cols[7]),
            "cost": _floats(cols[8]),
        },
    )


class _RowIndex:
    """Frame row of a subject id (-1 for ids outside the frame)."""

    def __init__(self, ids: npt.NDArray[np.int64]) -> None:
        self.ids = ids
        self.n = int(ids.size)
        self._order = np.argsort(ids, kind="stable")
        self._sorted = ids[self._order]

    def rows_of(self, subject_ids: npt.NDArray[np.int64]) -> npt.NDArray[np.intp]:
        """Frame rows of ``subject_ids``."""
        if self.n == 0:
            return np.full(subject_ids.size, -1, dtype=np.intp)
        pos = np.clip(np.searchsorted(self._sorted, subject_ids), 0, self.n - 1)
        return np.where(self._sorted[pos] == subject_ids, self._order[pos], -1).astype(np.intp)


@dataclass(frozen=True)
class _Scores:
    """Score metrics as frame columns, which rows were evaluated or errored, what was left out."""

    columns: dict[str, npt.NDArray[np.float64]]
    binary: set[str]
    evaluated: npt.NDArray[np.bool_]
    errored: npt.NDArray[np.bool_]
    keys: dict[str, tuple[str, str]]
    left_out: dict[str, npt.NDArray[np.bool_]]
    left_out_keys: dict[str, list[tuple[str, str]]]


def _sc() -> sa.Table:
    return Score.__table__  # type: ignore[attr-defined]


def _score_keys(
    conn: sa.Connection, in_window: sa.Select[Any], in_current: sa.Select[Any] | None
) -> tuple[list[tuple[str, str, str, str]], dict[str, tuple[str, str]]]:
    """The stored score keys, and the ``(version, config_hash)`` compared per evaluator.

    One ``DISTINCT`` over the score index (no table rows read) finds every
    ``(evaluator, version, config_hash, metric)``; only an evaluator with several
    ``(version, config_hash)`` costs one more query: the key with ``ok`` scores for the most
    interactions of the current window (or of every loaded row when the current window has
    none), the most recently stored on a tie, is compared.

    Returns:
        ``(every key found, evaluator -> (version, config_hash) compared)``.
    """
    sc = _sc()
    scored = [sc.c.subject_type == SubjectType.interaction, sc.c.subject_id.in_(in_window)]
    found = [
        (str(ev), str(ver), str(ch), str(m))
        for ev, ver, ch, m in _fetchall(
            conn,
            sa.select(sc.c.evaluator, sc.c.evaluator_version, sc.c.config_hash, sc.c.metric)
            .where(*scored)
            .distinct(),
        )
    ]
    found.sort()
    candidates: dict[str, set[tuple[str, str]]] = {}
    for ev, ver, ch, _ in found:
        candidates.setdefault(ev, set()).add((ver, ch))
    chosen: dict[str, tuple[str, str]] = {}
    for ev, keys in candidates.items():
        best = None
        for rows in (in_current, in_window) if len(keys) > 1 else ():
            if rows is None:
                continue
            best = _widest_key(conn, ev, rows)
            if best is not None:
                break
        chosen[ev] = best or max(keys)
    return found, chosen


def _widest_key(
    conn: sa.Connection, evaluator: str, rows: sa.Select[Any]
) -> tuple[str, str] | None:
    """The ``(version, config_hash)`` with ok scores for the most of ``rows``, newest on a tie."""
    sc = _sc()
    q = (
        sa.select(
            sc.c.evaluator_version,
            sc.c.config_hash,
            sa.func.count(sa.distinct(sc.c.subject_id)),
            sa.func.max(sc.c.id),
        )
        .where(
            sc.c.subject_type == SubjectType.interaction,
            sc.c.subject_id.in_(rows),
            sc.c.evaluator == evaluator,
            sc.c.status == "ok",
        )
        .group_by(sc.c.evaluator_version, sc.c.config_hash)
    )
    got = _fetchall(conn, q)
    if not got:
        return None
    ver, ch, _, _ = max(got, key=lambda r: (int(r[2]), int(r[3])))
    return str(ver), str(ch)


@dataclass(frozen=True)
class _ScoreRows:
    """The frame's score rows as read, before they are placed in the frame's rows."""

    found: list[tuple[str, str, str, str]]
    chosen: dict[str, tuple[str, str]]
    others: dict[str, list[tuple[str, str]]]
    metrics: list[tuple[str, str]]
    left_slot: dict[str, int]
    n_slots: int
    codes: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]


def _fetch_scores(
    conn: sa.Connection, in_window: sa.Select[Any], in_current: sa.Select[Any] | None
) -> _ScoreRows | None:
    """Every score row of the frame in one read (None: no score is stored for the frame).

    The code of each row packs its interaction, its column (one per compared
    ``(evaluator, metric)``, one "left out" column per evaluator with scores under other
    keys, see :func:`_score_keys`) and its status, computed in SQL; :func:`_read_scores`
    unpacks it. It needs no frame rows, so it runs beside the interactions' read.
    """
    found, chosen = _score_keys(conn, in_window, in_current)
    if not found:
        return None
    others = {
        ev: sorted({(ver, ch) for e, ver, ch, _ in found if e == ev} - {key})
        for ev, key in chosen.items()
    }
    others = {ev: keys for ev, keys in others.items() if keys}
    metrics = sorted({(ev, m) for ev, ver, ch, m in found if (ver, ch) == chosen[ev]})
    left_slot = {ev: len(metrics) + j for j, ev in enumerate(others)}
    discard = len(metrics) + len(others)
    codes, values = _score_rows(conn, in_window, chosen, metrics, left_slot, discard)
    return _ScoreRows(found, chosen, others, metrics, left_slot, discard + 1, codes, values)


def _read_scores(read: _ScoreRows | None, index: _RowIndex) -> _Scores:
    """The score rows as frame columns: numpy unpacks the codes and scatters the values.

    Measured on 1.4 M score rows (a 2-core machine): SQLite 1.7 s through ``fetchall`` of
    ``(code, value)`` tuples, 0.9 s as two ``group_concat`` texts parsed by numpy (and that
    read runs in SQLite's C code, beside the other reads); against 2.3 s for a
    ``MAX(CASE ...)`` pivot (one per metric and row). PostgreSQL 1.0 s of server time against
    0.9 s for a pivot of only 4 of the 14 metrics.
    """
    n = index.n
    evaluated = np.zeros(n, dtype=np.bool_)
    errored = np.zeros(n, dtype=np.bool_)
    if not n or read is None:
        return _Scores({}, set(), evaluated, errored, {}, {}, {})
    codes, values, n_slots = read.codes, read.values, read.n_slots
    status = codes & 3  # 0 ok, 1 error, 2 other
    slot = (codes >> 2) % n_slots
    rows = index.rows_of((codes >> 2) // n_slots)
    keep = rows >= 0
    rows, status, slot, values = rows[keep], status[keep], slot[keep], values[keep]
    evaluated[rows] = True
    errored[rows[status == 1]] = True
    ok = status == 0
    matrix = np.full((n_slots, n), np.nan)
    # One score per (interaction, column): the key is unique per subject and metric.
    matrix[slot[ok], rows[ok]] = values[ok]
    out: dict[str, npt.NDArray[np.float64]] = {}
    binary: set[str] = set()
    for k, (ev, m) in enumerate(read.metrics):
        col = matrix[k]
        finite = col[np.isfinite(col)]
        if finite.size == 0:
            continue  # never stored with status ok in these windows
        out[f"{ev}.{m}"] = col
        if bool(np.isin(finite, (0.0, 1.0)).all()):
            binary.add(f"{ev}.{m}")
    left_out: dict[str, npt.NDArray[np.bool_]] = {}
    for ev, k in read.left_slot.items():
        flag = np.zeros(n, dtype=np.bool_)
        flag[rows[ok & (slot == k)]] = True
        left_out[ev] = flag
    return _Scores(out, binary, evaluated, errored, read.chosen, left_out, read.others)


def _score_rows(
    conn: sa.Connection,
    in_window: sa.Select[Any],
    chosen: Mapping[str, tuple[str, str]],
    metrics: Sequence[tuple[str, str]],
    left_slot: Mapping[str, int],
    discard: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """``(code, value)`` of every score row of the frame's interactions (value NaN if NULL).

    ``code = (subject_id * n_slots + column) * 4 + status`` (status 0 ok, 1 error, 2 other):
    the column is ``metrics``' index for the compared key, ``left_slot`` for an evaluator's
    other keys, ``discard`` for anything else.
    """
    sc = _sc()
    n_slots = discard + 1
    by_metric: dict[str, dict[str, int]] = {}
    for k, (ev, m) in enumerate(metrics):
        by_metric.setdefault(ev, {})[m] = k
    per_evaluator: dict[str, Any] = {}
    for ev in sorted(set(chosen) | set(by_metric)):
        column = (
            sa.case(by_metric.get(ev, {}), value=sc.c.metric, else_=discard)
            if ev in by_metric
            else sa.literal(discard)
        )
        if ev in left_slot:
            ver, ch = chosen[ev]
            column = sa.case(
                (sa.and_(sc.c.evaluator_version == ver, sc.c.config_hash == ch), column),
                else_=left_slot[ev],
            )
        per_evaluator[ev] = column
    slot = sa.case(per_evaluator, value=sc.c.evaluator, else_=discard)
    status = sa.case({"ok": 0, "error": 1}, value=sc.c.status, else_=2)
    code = (sa.cast(sc.c.subject_id, sa.BigInteger) * n_slots + slot) * 4 + status
    where = [sc.c.subject_type == SubjectType.interaction, sc.c.subject_id.in_(in_window)]
    if _is_pg(conn):
        value = sa.func.coalesce(sc.c.value, sa.literal_column("'NaN'::float8"))
        code_buf, value_buf = _pg_columns(
            conn, sa.select(code, value).where(*where), ["int8", "float8"]
        )
        return (
            np.frombuffer(code_buf, dtype=">i8").astype(np.int64),
            np.frombuffer(value_buf, dtype=">f8").astype(np.float64),
        )
    # Two texts, not 1.4 M row tuples: SQLite builds them in C (the GIL released, so the
    # other reads go on meanwhile) and numpy parses them in one pass. 20 significant digits
    # give back every float64 exactly (17 would not: SQLite's printf is off by an ulp in some
    # cases); NULL becomes NaN, as group_concat would skip it.
    text = sa.case(
        (sc.c.value.is_(None), sa.literal("nan")),
        else_=sa.func.printf(sa.literal("%!.20g"), sc.c.value),
    )
    got = _fetchall(
        conn, sa.select(sa.func.group_concat(code), sa.func.group_concat(text)).where(*where)
    )
    code_text, value_text = got[0] if got else (None, None)
    return (
        np.fromstring(code_text or "", dtype=np.int64, sep=","),
        np.fromstring(value_text or "", dtype=np.float64, sep=","),
    )


def _read_embeddings(
    conn: sa.Connection, in_window: sa.Select[Any], index: _RowIndex, model: str | None
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float32] | None, str | None]:
    """One embedding model's vectors (default: the model with most rows), in time order.

    Only vectors of the model's most common dimension are read, so all blobs have one length:
    one ``frombuffer`` over them (SQLite: joined; PostgreSQL: COPY's records) decodes them.

    Returns:
        ``(frame row of each vector, vectors as float32 or None, the model)``.
    """
    em = Embedding.__table__  # type: ignore[attr-defined]
    none = np.empty(0, dtype=np.intp), None, model
    if not index.n:
        return none
    mine = [em.c.subject_type == SubjectType.interaction, em.c.subject_id.in_(in_window)]
    counted = _fetchall(
        conn,
        sa.select(em.c.model, em.c.dim, sa.func.count())
        .where(*mine)
        .group_by(em.c.model, em.c.dim),
    )
    per_model: dict[str, int] = {}
    for m, _, c in counted:
        per_model[str(m)] = per_model.get(str(m), 0) + int(c)
    if model is None and per_model:
        model = min(per_model, key=lambda m: (-per_model[m], m))
    dims = sorted(((-int(c), int(d)) for m, d, c in counted if str(m) == model))
    if model is None or not dims:
        return none
    dim = dims[0][1]
    qe = sa.select(sa.cast(em.c.subject_id, sa.BigInteger), em.c.vector).where(
        *mine,
        em.c.model == model,
        em.c.dim == dim,
        sa.func.length(em.c.vector) == 2 * dim,  # float16 bytes
    )
    if _is_pg(conn):
        ids_buf, vector_buf = _pg_columns(conn, qe, ["int8", "bytea"])
        subjects = np.frombuffer(ids_buf, dtype=">i8").astype(np.int64)
        blob = np.frombuffer(vector_buf, dtype=np.uint8)
    else:
        rows = _fetchall(conn, qe)
        subjects = _ints([r[0] for r in rows])
        blob = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.uint8)
    if not subjects.size:
        return none
    emb_rows = index.rows_of(subjects)
    vectors = blob.view("<f2").reshape(-1, dim)  # little-endian float16, decoded at once
    # Time order, like the interactions (the query did not sort): select and order the
    # float16 rows first, so only the kept rows are converted, with no extra float32 copy.
    pick = np.flatnonzero(emb_rows >= 0)
    pick = pick[np.argsort(emb_rows[pick], kind="stable")]
    if pick.size == emb_rows.size and bool(np.all(pick[1:] > pick[:-1])):
        return emb_rows, vectors.astype(np.float32), model  # already in order
    return emb_rows[pick], vectors[pick].astype(np.float32), model


@dataclass(frozen=True)
class _Feedback:
    """Rating and thumbs feedback of the frame's rows."""

    rating_rows: npt.NDArray[np.intp]
    rating_values: npt.NDArray[np.float64]
    rating_ts: npt.NDArray[np.datetime64]
    thumb_rows: npt.NDArray[np.intp]
    thumb_down: npt.NDArray[np.bool_]
    numeric: dict[str, npt.NDArray[np.float64]] = field(default_factory=dict)
    events: dict[str, npt.NDArray[np.bool_]] = field(default_factory=dict)


def _read_feedback(conn: sa.Connection, in_window: sa.Select[Any], index: _RowIndex) -> _Feedback:
    """Ratings (time order, with their times) and thumbs (whether down) of the frame's rows.

    And the other kinds of :data:`evalwatch.core.feedback.FEEDBACK_KINDS`: per row, the value
    of each other ``mean`` kind and whether the row had an event of each ``rate`` kind.
    """
    fb = Feedback.__table__  # type: ignore[attr-defined]
    qf = sa.select(fb.c.interaction_id, fb.c.kind, fb.c.value, fb.c.ts).where(
        fb.c.interaction_id.in_(in_window), fb.c.kind.in_(FEEDBACK_KIND_NAMES)
    )
    rows = _fetchall(conn, qf) if index.n else []
    if not rows:
        return _Feedback(
            np.empty(0, dtype=np.intp),
            np.empty(0, dtype=np.float64),
            np.empty(0, dtype="datetime64[us]"),
            np.empty(0, dtype=np.intp),
            np.empty(0, dtype=np.bool_),
        )
    iid, kind, value, fts = zip(*rows, strict=True)
    fr = index.rows_of(_ints(iid))
    is_rating = np.fromiter((k == "rating" for k in kind), dtype=np.bool_, count=len(kind))
    fv = _floats(value)
    kinds = np.asarray(kind, dtype=object)
    is_thumbs = kinds == "thumbs"
    usable = (fr >= 0) & np.isfinite(fv)
    rating, thumbs = usable & is_rating, usable & is_thumbs
    numeric, events = _other_feedback(index.n, fr, kinds, fv)
    ts = _to_dt64(fts)[rating]
    by_time = np.argsort(ts, kind="stable")
    return _Feedback(
        rating_rows=fr[rating][by_time],
        rating_values=fv[rating][by_time],
        rating_ts=ts[by_time],
        thumb_rows=fr[thumbs],
        thumb_down=fv[thumbs] < 0.5,
        numeric=numeric,
        events=events,
    )


def _other_feedback(
    n: int, fr: npt.NDArray[np.intp], kinds: npt.NDArray[np.object_], fv: npt.NDArray[np.float64]
) -> tuple[dict[str, npt.NDArray[np.float64]], dict[str, npt.NDArray[np.bool_]]]:
    """Per-row columns of the kinds besides rating and thumbs, only those the rows have."""
    numeric: dict[str, npt.NDArray[np.float64]] = {}
    events: dict[str, npt.NDArray[np.bool_]] = {}
    for k in FEEDBACK_KINDS:
        if k.name in ("rating", "thumbs"):
            continue
        mine = (kinds == k.name) & (fr >= 0)
        if not mine.any():
            continue
        if k.aggregate == "rate":
            happened = np.zeros(n, dtype=np.bool_)
            happened[fr[mine]] = True
            events[k.name] = happened
        else:
            mine &= np.isfinite(fv)
            if mine.any():
                col = np.full(n, np.nan)
                col[fr[mine]] = fv[mine]  # several for one interaction: the last stored
                numeric[k.name] = col
    return numeric, events


def insert_drift_rows(engine: Engine, rows: Sequence[Mapping[str, Any]]) -> int:
    """Store a drift check's ``drift_reports`` rows in one transaction; returns the count."""
    if not rows:
        return 0
    table = DriftReportRow.__table__  # type: ignore[attr-defined]
    with engine.begin() as conn:
        conn.execute(sa.insert(table), list(rows))
    return len(rows)


# --------------------------------------------------------------------------------------------
# Fairness segments: metadata fields of the frame's rows
# --------------------------------------------------------------------------------------------

# Ids per "IN (...)" of a segment read: well under SQLite's bound-parameter limit.
_SEGMENT_CHUNK = 10_000
# The metadata key the ingest pipeline stores the detected language under
# (evalwatch.checks.language.DETECTED_FIELD; storage does not import checks).
_DETECTED_LANGUAGE = "detected_language"
_PROMPT_CHARS = 500


@dataclass(frozen=True)
class SegmentColumns:
    """Segment labels of a frame's rows, read from the interactions' metadata.

    Attributes:
        labels: Field -> one label per row (object array; None where the row has none).
        undetected: For the ``language`` field: rows with neither ``language`` nor
            ``detected_language`` in their metadata (stored before detection, or with it off).
        prompts: The first characters of those rows' prompts (None where no text is kept),
            for a detection at analysis time.
    """

    labels: dict[str, npt.NDArray[np.object_]]
    undetected: npt.NDArray[np.intp]
    prompts: list[str | None]


def _label(value: Any) -> str | None:
    # Only scalars name a segment; a nested object or an empty string names none.
    if value is None or isinstance(value, dict | list) or value == "":
        return None
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _metadata_values(conn: sa.Connection, keys: Sequence[str]) -> list[sa.ColumnElement[Any]]:
    """Columns giving each of ``keys`` from the interactions' metadata (see _metadata_row).

    Only the wanted keys cross, not every row's whole metadata document. PostgreSQL hands
    each over as its JSON value. SQLite's ``json_extract`` turns ``true`` into 1, so its type
    comes along too.
    """
    meta = _it().c["metadata"]
    if conn.dialect.name != "sqlite":
        return [meta[key] for key in keys]
    out: list[sa.ColumnElement[Any]] = []
    for key in keys:
        path = '$."' + key.replace('"', '""') + '"'
        out += [sa.func.json_type(meta, path), sa.func.json_extract(meta, path)]
    return out


def _metadata_row(conn: sa.Connection, raw: Sequence[Any]) -> list[Any]:
    """The values of one row of :func:`_metadata_values`, as the parsed document holds them."""
    if conn.dialect.name != "sqlite":
        return list(raw)
    out: list[Any] = []
    for kind, value in zip(raw[::2], raw[1::2], strict=True):
        if kind in ("true", "false"):
            out.append(kind == "true")
        else:  # an object or array arrives as its JSON text: no segment either way
            out.append({} if kind in ("object", "array") else value)
    return out


def load_segments(
    engine: Engine,
    ids: npt.NDArray[np.int64],
    fields: Sequence[str],
    *,
    language_field: str = "language",
    max_prompts: int | None = None,
) -> SegmentColumns:
    """Read the segment fields of some interactions from their metadata, in ``ids`` order.

    ``language_field`` falls back to the ingest-time ``detected_language``; rows with neither
    are listed in ``undetected`` with the start of their prompt, for the caller to detect.

    Args:
        engine: The store.
        ids: Interaction ids (a frame's ``ids``).
        fields: Metadata keys to read.
        language_field: The field that falls back to the detected language.
        max_prompts: More undetected rows than this: their prompts are not read (``prompts``
            is empty; ``undetected`` still lists them).

    Returns:
        The labels.

    Examples:
        >>> from evalwatch.storage.db import make_engine, upgrade
        >>> e = make_engine("sqlite://"); _ = upgrade(e)
        >>> load_segments(e, np.empty(0, dtype=np.int64), ["region"]).labels["region"].size
        0
    """
    it = _it()
    pos = {int(i): k for k, i in enumerate(ids.tolist())}
    labels = {f: np.full(ids.size, None, dtype=object) for f in fields}
    missing: list[int] = []
    id_list = ids.tolist()
    wanted = [*fields, _DETECTED_LANGUAGE] if language_field in fields else list(fields)
    with engine.connect() as conn:
        values = _metadata_values(conn, wanted)
        for s in range(0, len(id_list), _SEGMENT_CHUNK):
            chunk = id_list[s : s + _SEGMENT_CHUNK]
            q = sa.select(it.c.id, *values).where(it.c.id.in_(chunk))
            for iid, *raw in conn.execute(q):
                got = _metadata_row(conn, raw)
                row = pos[int(iid)]
                for f, value in zip(fields, got, strict=False):
                    labels[f][row] = _label(value)
                if language_field in labels and labels[language_field][row] is None:
                    detected = _label(got[-1])
                    if detected is None:
                        missing.append(row)
                    labels[language_field][row] = detected
        prompts: dict[int, str | None] = {}
        rows_missing = sorted(missing)
        over = max_prompts is not None and len(rows_missing) > max_prompts
        by_id = [] if over else [id_list[r] for r in rows_missing]
        for s in range(0, len(by_id), _SEGMENT_CHUNK):
            chunk = by_id[s : s + _SEGMENT_CHUNK]
            text = sa.func.substr(it.c.prompt, 1, _PROMPT_CHARS)
            for iid, prompt in conn.execute(sa.select(it.c.id, text).where(it.c.id.in_(chunk))):
                prompts[pos[int(iid)]] = prompt or None
    return SegmentColumns(
        labels=labels,
        undetected=np.array(rows_missing, dtype=np.intp),
        prompts=[] if over else [prompts.get(r) for r in rows_missing],
    )
