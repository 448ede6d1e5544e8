"""Traffic as numpy columns for the drift check: one streamed query per table.

:func:`load_frame` reads the interactions of some time windows (or of an evaluation run) with
their scores, one embedding model's vectors and their feedback, into a :class:`TrafficFrame`
of numpy arrays; :func:`evalwatch.runs.drift.check_drift` tests it. This is the only place the drift
check touches SQL.

Loading: one query per table through SQLAlchemy Core, streamed in chunks into numpy arrays.
Scores are pivoted in SQL (one row per interaction, one column per metric), because 1.4 M score
rows cost more as Python rows than the database's aggregation; tables are reached by
``IN (ids of the window)`` so the time index drives the read. On the shared 2-core machine this
was written on (load average ~5), 50,000 vs 50,000 interactions with 14 score metrics, 384-d
embeddings and ratings loaded in 10-13 s on SQLite and PostgreSQL, about 2 s of it in Python,
the rest the database reading 1.4 M score rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from evalwatch.storage.membership import run_subject_ids
from evalwatch.storage.models import (
    DriftReportRow,
    Embedding,
    EvalRun,
    Feedback,
    Interaction,
    Score,
)

__all__ = [
    "INTERACTION_COLUMNS",
    "TrafficFrame",
    "Window",
    "insert_drift_rows",
    "load_frame",
    "newest_interaction_time",
    "run_subjects",
    "to_datetime64",
]

# Interaction columns compared as numeric series (response_length is computed from the text).
INTERACTION_COLUMNS = ("response_length", "latency_ms", "input_tokens", "output_tokens", "cost")
_CHUNK = 20_000


class Window(Protocol):
    """A half-open time window ``[start, end)`` (e.g. :class:`evalwatch.runs.drift.TimeWindow`)."""

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
        ids = conn.execute(run_subject_ids(run_id, "interaction")).scalars()
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


def _chunks(conn: sa.Connection, query: sa.Select[Any]) -> Iterator[Sequence[Any]]:
    """The rows of ``query`` in chunks (a server-side cursor on PostgreSQL).

    Timestamps are selected as plain ``DateTime`` (naive UTC, as stored) for :func:`_to_dt64`.
    """
    result = conn.execution_options(stream_results=True, yield_per=_CHUNK).execute(query)
    yield from result.partitions(_CHUNK)


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
) -> TrafficFrame:
    """Load the interactions in any of ``windows`` (or scored by a run) with their data.

    One query per table (interactions, scores, embeddings, feedback), each streamed in chunks
    and turned into numpy arrays; a small extra query picks the embedding model when none is
    given.

    Args:
        engine: The store.
        windows: Time windows to load (their union).
        baseline_run: Also load the interactions this evaluation run scored, whatever their
            time.
        apps: Only these apps (empty: all).
        model_versions: Only these model versions (empty: all).
        embedding_model: Embedding model to load (default: the one with most rows).

    Returns:
        The frame, rows ordered by time.

    Examples:
        >>> from evalwatch.storage.db import make_engine, upgrade
        >>> e = make_engine("sqlite://"); _ = upgrade(e)
        >>> from evalwatch.runs.drift import TimeWindow
        >>> w = TimeWindow(start=datetime(2026, 11, 1, tzinfo=UTC),
        ...                end=datetime(2026, 11, 2, tzinfo=UTC))
        >>> len(load_frame(e, [w]))
        0
    """
    it = _it()
    sc = Score.__table__  # type: ignore[attr-defined]
    em = Embedding.__table__  # type: ignore[attr-defined]
    fb = Feedback.__table__  # type: ignore[attr-defined]
    which: list[sa.ColumnElement[bool]] = [
        sa.and_(it.c.ts >= w.start, it.c.ts < w.end) for w in windows
    ]
    if baseline_run is not None:
        # A subquery, not a list of ids: no bound-parameter limit to respect.
        which.append(it.c.id.in_(run_subject_ids(baseline_run, "interaction")))
    where = [sa.or_(*which) if which else sa.false(), *_scope_filter(apps, model_versions)]

    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            # Every row is read: plan server-side cursors for the whole result, not the first
            # 10 % (with stale statistics after a bulk load, the first-rows plan of the scores
            # query was a nested loop over every stored score).
            conn.execute(sa.text("SET LOCAL cursor_tuple_fraction = 1.0"))
        cols: list[list[Any]] = [[] for _ in range(9)]
        q = (
            sa.select(
                it.c.id,
                sa.type_coerce(it.c.ts, sa.DateTime()),
                it.c.app,
                it.c.model_version,
                it.c.response,
                it.c.latency_ms,
                it.c.input_tokens,
                it.c.output_tokens,
                it.c.cost,
            )
            .where(*where)
            .order_by(it.c.ts, it.c.id)
        )
        for part in _chunks(conn, q):
            for store_col, values in zip(cols, zip(*part, strict=True), strict=True):
                store_col.extend(values)
        ids = _ints(cols[0])
        n = ids.size
        responses = np.empty(n, dtype=object)
        responses[:] = cols[4]
        numeric: dict[str, npt.NDArray[np.float64]] = {
            "response_length": np.fromiter((len(r) for r in cols[4]), dtype=np.float64, count=n),
            "latency_ms": _floats(cols[5]),
            "input_tokens": _floats(cols[6]),
            "output_tokens": _floats(cols[7]),
            "cost": _floats(cols[8]),
        }
        order = np.argsort(ids, kind="stable")
        sorted_ids = ids[order]

        def rows_of(subject_ids: npt.NDArray[np.int64]) -> npt.NDArray[np.intp]:
            if n == 0:
                return np.full(subject_ids.size, -1, dtype=np.intp)
            pos = np.clip(np.searchsorted(sorted_ids, subject_ids), 0, n - 1)
            return np.where(sorted_ids[pos] == subject_ids, order[pos], -1).astype(np.intp)

        # --- scores: pivoted in SQL, one row per interaction and one column per metric ----
        # (1.4 M score rows for 100,000 interactions cost far more as Python rows than the
        # database's own aggregation). "IN (ids of the window)" walks the interactions' time
        # index and probes the scores' (subject_type, subject_id) index; a join let SQLite
        # scan every stored score.
        in_window = sa.select(it.c.id).where(*where)
        scored = [sc.c.subject_type == "interaction", sc.c.subject_id.in_(in_window)]
        keys: list[tuple[str, str]] = []
        if n:
            keys = [
                (str(ev), str(m))
                for ev, m in conn.execute(
                    sa.select(sc.c.evaluator, sc.c.metric)
                    .where(*scored)
                    .distinct()
                    .order_by(sc.c.evaluator, sc.c.metric)
                )
            ]
        ok = sc.c.status == "ok"
        qs = (
            sa.select(
                sc.c.subject_id,
                sa.func.max(sa.case((sc.c.status == "error", 1), else_=0)),
                sa.func.sum(sa.case((ok, 1), else_=0)),
                *(
                    sa.func.max(
                        sa.case((sa.and_(ok, sc.c.evaluator == ev, sc.c.metric == m), sc.c.value))
                    )
                    for ev, m in keys
                ),
            )
            .where(*scored)
            .group_by(sc.c.subject_id)
        )
        evaluated = np.zeros(n, dtype=np.bool_)
        errored = np.zeros(n, dtype=np.bool_)
        matrix = np.full((len(keys), n), np.nan)
        n_ok = np.zeros(n, dtype=np.int64)
        for part in _chunks(conn, qs) if keys else iter(()):
            columns = list(zip(*part, strict=True))
            rows = rows_of(_ints(columns[0]))
            keep = rows >= 0
            rows = rows[keep]
            evaluated[rows] = True
            errored[rows] = _ints(columns[1])[keep] > 0
            n_ok[rows] = _ints([0 if v is None else v for v in columns[2]])[keep]
            for k in range(len(keys)):
                matrix[k, rows] = _floats(columns[3 + k])[keep]
        # Several evaluator versions scored one metric of an interaction: re-read just those
        # rows, oldest score first, so the most recently stored one wins.
        redo = np.flatnonzero(n_ok > np.isfinite(matrix).sum(axis=0))
        if redo.size:
            index = {key: k for k, key in enumerate(keys)}
            for start in range(0, redo.size, 5_000):
                chunk = ids[redo[start : start + 5_000]].tolist()
                q_redo = (
                    sa.select(sc.c.subject_id, sc.c.evaluator, sc.c.metric, sc.c.value)
                    .where(sc.c.subject_type == "interaction", ok, sc.c.subject_id.in_(chunk))
                    .order_by(sc.c.id)
                )
                for sid, ev, m, v in conn.execute(q_redo):
                    row = rows_of(np.array([sid], dtype=np.int64))[0]
                    matrix[index[(ev, m)], row] = np.nan if v is None else v
        binary: set[str] = set()
        for k, (ev, m) in enumerate(keys):
            col = matrix[k]
            finite = col[np.isfinite(col)]
            if finite.size == 0:
                continue  # never stored with status ok in these windows
            numeric[f"{ev}.{m}"] = col
            if bool(np.isin(finite, (0.0, 1.0)).all()):
                binary.add(f"{ev}.{m}")

        # --- embeddings ---------------------------------------------------------------
        model = embedding_model
        if model is None and n:
            counted = conn.execute(
                sa.select(em.c.model, sa.func.count())
                .where(em.c.subject_type == "interaction", em.c.subject_id.in_(in_window))
                .group_by(em.c.model)
                .order_by(sa.func.count().desc(), em.c.model)
                .limit(1)
            ).first()
            model = None if counted is None else str(counted[0])
        emb_rows_l: list[npt.NDArray[np.intp]] = []
        blobs: list[bytes] = []
        dims: list[int] = []
        if model is not None and n:
            qe = sa.select(em.c.subject_id, em.c.dim, em.c.vector).where(
                em.c.subject_type == "interaction",
                em.c.subject_id.in_(in_window),
                em.c.model == model,
            )
            for part in _chunks(conn, qe):
                subj, dim, vec = zip(*part, strict=True)
                emb_rows_l.append(rows_of(_ints(subj)))
                dims.extend(dim)
                blobs.extend(bytes(v) for v in vec)
        embeddings: npt.NDArray[np.float32] | None = None
        emb_rows = np.empty(0, dtype=np.intp)
        if blobs:
            emb_rows = np.concatenate(emb_rows_l)
            dim_arr = np.asarray(dims)
            main_dim = int(np.bincount(dim_arr).argmax())
            good = (dim_arr == main_dim) & (emb_rows >= 0)
            # One little-endian float16 buffer, decoded at once.
            joined = b"".join(b for b, g in zip(blobs, good, strict=True) if g)
            embeddings = np.frombuffer(joined, dtype="<f2").reshape(-1, main_dim).astype(np.float32)
            emb_rows = emb_rows[good]
            # Time order, like the interactions (the query did not sort).
            by_row = np.argsort(emb_rows, kind="stable")
            emb_rows, embeddings = emb_rows[by_row], embeddings[by_row]

        # --- feedback -----------------------------------------------------------------
        qf = sa.select(
            fb.c.interaction_id, fb.c.kind, fb.c.value, sa.type_coerce(fb.c.ts, sa.DateTime())
        ).where(fb.c.interaction_id.in_(in_window), fb.c.kind.in_(["rating", "thumbs"]))
        f_rows: list[npt.NDArray[np.intp]] = []
        f_rating: list[npt.NDArray[np.bool_]] = []
        f_val: list[npt.NDArray[np.float64]] = []
        f_ts: list[Any] = []
        for part in _chunks(conn, qf) if n else iter(()):
            iid, kind, value, fts = zip(*part, strict=True)
            f_rows.append(rows_of(_ints(iid)))
            f_rating.append(np.fromiter((k == "rating" for k in kind), dtype=np.bool_))
            f_val.append(_floats(value))
            f_ts.extend(fts)

    r_rows = np.empty(0, dtype=np.intp)
    r_vals = np.empty(0, dtype=np.float64)
    r_ts = np.empty(0, dtype="datetime64[us]")
    t_rows = np.empty(0, dtype=np.intp)
    t_down = np.empty(0, dtype=np.bool_)
    if f_rows:
        fr, is_rating, fv = np.concatenate(f_rows), np.concatenate(f_rating), np.concatenate(f_val)
        usable = (fr >= 0) & np.isfinite(fv)
        rating, thumbs = usable & is_rating, usable & ~is_rating
        by_time = np.argsort(_to_dt64(f_ts)[rating], kind="stable")
        r_rows, r_vals = fr[rating][by_time], fv[rating][by_time]
        r_ts = _to_dt64(f_ts)[rating][by_time]
        t_rows, t_down = fr[thumbs], fv[thumbs] < 0.5

    app_arr = np.empty(n, dtype=object)
    app_arr[:] = cols[2]
    ver_arr = np.empty(n, dtype=object)
    ver_arr[:] = cols[3]
    return TrafficFrame(
        ids=ids,
        ts=_to_dt64(cols[1]),
        app=app_arr,
        model_version=ver_arr,
        responses=responses,
        numeric=numeric,
        binary=binary,
        evaluated=evaluated,
        errored=errored,
        emb_rows=emb_rows,
        embeddings=embeddings,
        embedding_model=model if embeddings is not None else None,
        rating_rows=r_rows,
        rating_values=r_vals,
        rating_ts=r_ts,
        thumb_rows=t_rows,
        thumb_down=t_down,
    )


def insert_drift_rows(engine: Engine, rows: Sequence[Mapping[str, Any]]) -> int:
    """Store a drift check's ``drift_reports`` rows in one transaction; returns the count."""
    if not rows:
        return 0
    table = DriftReportRow.__table__  # type: ignore[attr-defined]
    with engine.begin() as conn:
        conn.execute(sa.insert(table), list(rows))
    return len(rows)
