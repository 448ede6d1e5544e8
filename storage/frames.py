"""Read-side queries that return pandas frames for summaries, reports and checks."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from evalwatch.core import SubjectType
from evalwatch.storage.models import (
    DatasetItem,
    Feedback,
    Interaction,
    ModelOutput,
    RunScore,
    Score,
)

__all__ = [
    "iter_run_scores",
    "output_scores_frame",
    "run_scores_frame",
    "score_texts",
    "traffic_window_feedback_frame",
    "traffic_window_frame",
    "traffic_window_scores_frame",
]

# Bound parameters per IN list, under SQLite's and psycopg's limits.
_IN_CHUNK = 5_000


_LIGHT_COLUMNS = [
    "subject_type",
    "subject_id",
    "evaluator",
    "metric",
    "value",
    "status",
    "reason",
    "group",
    "ts",
]
_RUN_COLUMNS = [*_LIGHT_COLUMNS, "explanation", "item", "tags", "text"]
# Columns of few distinct values: one shared string object per value keeps a frame of a
# million scores small (the driver returns a new string for every row).
_INTERNED = ("subject_type", "evaluator", "metric", "status", "group")
_READ_CHUNK = 20_000

_sc: sa.Table = Score.__table__  # type: ignore[attr-defined]
_rs: sa.Table = RunScore.__table__  # type: ignore[attr-defined]
_it: sa.Table = Interaction.__table__  # type: ignore[attr-defined]
_mo: sa.Table = ModelOutput.__table__  # type: ignore[attr-defined]
_di: sa.Table = DatasetItem.__table__  # type: ignore[attr-defined]
_fb: sa.Table = Feedback.__table__  # type: ignore[attr-defined]
# A run's members, not "scores whose run_id is this run": reused scores count too.
_MEMBERS = _rs.join(_sc, _sc.c.id == _rs.c.score_id)


def run_scores_frame(engine: Engine, run_id: int, *, with_text: bool = True) -> pd.DataFrame:
    """Every score a run reports (its members: computed by it or reused) with what it is about.

    A large run's frame is large; summaries and reports use :func:`iter_run_scores` through
    :class:`evalwatch.evaluators.digest.RunDigest` instead.

    Args:
        engine: The store.
        run_id: Evaluation run id.
        with_text: Also read ``explanation``, ``item``, ``tags`` and ``text``
            (:func:`score_texts` fetches them for a few rows).

    Returns:
        One row per score: ``subject_type, subject_id, evaluator, metric`` (as
        ``evaluator.metric``), ``value``, ``status``, ``reason``, ``group`` (model version
        for traffic, model for test-set outputs), ``ts`` and, ``with_text``, ``explanation``,
        ``item`` (request id or dataset item key), ``tags`` and ``text`` (the response or
        output).
    """
    frames = list(iter_run_scores(engine, run_id, with_text=with_text))
    if not frames:
        return pd.DataFrame(columns=_RUN_COLUMNS if with_text else _LIGHT_COLUMNS)
    return pd.concat(frames, ignore_index=True)


def iter_run_scores(
    engine: Engine, run_id: int, *, with_text: bool = False, chunk_size: int = _READ_CHUNK
) -> Iterator[pd.DataFrame]:
    """A run's scores as frames of at most ``chunk_size`` rows (see :func:`run_scores_frame`).

    Examples:
        >>> from evalwatch.storage.db import make_engine, upgrade
        >>> e = make_engine("sqlite://"); _ = upgrade(e)
        >>> list(iter_run_scores(e, 1))
        []
    """
    base = [
        _sc.c.subject_type,
        _sc.c.subject_id,
        _sc.c.evaluator,
        (_sc.c.evaluator + "." + _sc.c.metric).label("metric"),
        _sc.c.value,
        _sc.c.status,
        _sc.c.reason,
    ]
    traffic_cols: list[sa.ColumnElement[Any]] = [
        _it.c.model_version.label("group"),
        _it.c.ts.label("ts"),
    ]
    output_cols: list[sa.ColumnElement[Any]] = [
        _mo.c.model.label("group"),
        _mo.c.created_at.label("ts"),
    ]
    if with_text:
        traffic_cols += [
            _sc.c.explanation,
            _it.c.request_id.label("item"),
            sa.null().label("tags"),
            _it.c.response.label("text"),
        ]
        output_cols += [
            _sc.c.explanation,
            _di.c.item_key.label("item"),
            _di.c.tags.label("tags"),
            _mo.c.output.label("text"),
        ]
    q_traffic = (
        sa.select(*base, *traffic_cols)
        .select_from(_MEMBERS)
        .join(
            _it,
            sa.and_(_sc.c.subject_type == SubjectType.interaction, _sc.c.subject_id == _it.c.id),
        )
        .where(_rs.c.run_id == run_id)
    )
    q_outputs = (
        sa.select(*base, *output_cols)
        .select_from(_MEMBERS)
        .join(_mo, sa.and_(_sc.c.subject_type == SubjectType.output, _sc.c.subject_id == _mo.c.id))
        .join(_di, _di.c.id == _mo.c.dataset_item_id)
        .where(_rs.c.run_id == run_id)
    )
    columns = _RUN_COLUMNS if with_text else _LIGHT_COLUMNS
    with engine.connect() as conn:
        for q in (q_traffic, q_outputs):
            result = conn.execution_options(stream_results=True).execute(q)
            for part in result.partitions(chunk_size):
                yield _compact(pd.DataFrame.from_records(part, columns=columns))


def _compact(df: pd.DataFrame) -> pd.DataFrame:
    for col in _INTERNED:
        df[col] = [None if v is None else sys.intern(str(v)) for v in df[col]]
    df["ts"] = pd.to_datetime(df["ts"], utc=True)
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    return df


def score_texts(
    engine: Engine, run_id: int, keys: Sequence[tuple[str, int, str]]
) -> dict[tuple[str, int, str], dict[str, Any]]:
    """``item``, ``text`` and ``explanation`` of a few of the scores a run reports.

    Args:
        engine: The store.
        run_id: Evaluation run id.
        keys: ``(subject_type, subject_id, "evaluator.metric")`` of the wanted scores.

    Returns:
        The same keys -> ``{"item", "text", "explanation"}`` (missing keys are left out).
    """
    out: dict[tuple[str, int, str], dict[str, Any]] = {}
    wanted = set(keys)
    for subject_type in SubjectType:
        ids = sorted({sid for st, sid, _ in wanted if st == subject_type})
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            cols = [_sc.c.subject_id, _sc.c.evaluator, _sc.c.metric, _sc.c.explanation]
            if subject_type == SubjectType.interaction:
                q: Any = (
                    sa.select(*cols, _it.c.request_id, _it.c.response)
                    .select_from(_MEMBERS)
                    .join(_it, _sc.c.subject_id == _it.c.id)
                )
            else:
                q = (
                    sa.select(*cols, _di.c.item_key, _mo.c.output)
                    .select_from(_MEMBERS)
                    .join(_mo, _sc.c.subject_id == _mo.c.id)
                    .join(_di, _di.c.id == _mo.c.dataset_item_id)
                )
            q = q.where(
                _rs.c.run_id == run_id,
                _sc.c.subject_type == subject_type,
                _sc.c.subject_id.in_(chunk),
            )
            with engine.connect() as conn:
                for sid, ev, m, explanation, item, text in conn.execute(q):
                    key = (subject_type, int(sid), f"{ev}.{m}")
                    if key in wanted:
                        out[key] = {"item": item, "text": text, "explanation": explanation}
    return out


def output_scores_frame(
    engine: Engine,
    output_ids: Sequence[int],
    evaluators: Mapping[str, str],
    config_hashes: Mapping[str, str | None] | None = None,
) -> pd.DataFrame:
    """Every stored score of the given test-set outputs by the given evaluator versions.

    A score is unique per output, evaluator version, score-relevant options and metric
    whichever run wrote it, so an output that an earlier run already scored keeps that score
    (later runs with the same options reuse it). This reads them by output, where
    :func:`run_scores_frame` reads one run's members.

    Args:
        engine: The store.
        output_ids: Model-output ids.
        evaluators: Evaluator name -> version whose scores are wanted.
        config_hashes: Evaluator name -> options hash (the provenance's ``config_hash``)
            whose scores are wanted; an evaluator absent here (or None) is read under any
            options, and may then have several scores per output and metric.

    Returns:
        One row per score: ``run_id, subject_id, evaluator, evaluator_version, metric`` (as
        ``evaluator.metric``), ``value``, ``status``, ``reason``, ``explanation``, ``model``,
        ``item`` (dataset item key), ``tags`` and ``text`` (the output).
    """
    columns = [
        "run_id",
        "subject_id",
        "evaluator",
        "evaluator_version",
        "metric",
        "value",
        "status",
        "reason",
        "explanation",
        "model",
        "item",
        "tags",
        "text",
    ]
    ids = list(dict.fromkeys(int(i) for i in output_ids))
    if not ids or not evaluators:
        return pd.DataFrame(columns=columns)
    hashes = config_hashes or {}

    def provenance(name: str, version: str) -> sa.ColumnElement[bool]:
        cond = [_sc.c.evaluator == name, _sc.c.evaluator_version == version]
        if hashes.get(name) is not None:
            cond.append(_sc.c.config_hash == hashes[name])
        return sa.and_(*cond)

    which = sa.or_(*(provenance(n, v) for n, v in evaluators.items()))
    rows: list[dict[str, object]] = []
    with engine.connect() as conn:
        for start in range(0, len(ids), _IN_CHUNK):
            q = (
                sa.select(
                    _sc.c.run_id,
                    _sc.c.subject_id,
                    _sc.c.evaluator,
                    _sc.c.evaluator_version,
                    (_sc.c.evaluator + "." + _sc.c.metric).label("metric"),
                    _sc.c.value,
                    _sc.c.status,
                    _sc.c.reason,
                    _sc.c.explanation,
                    _mo.c.model,
                    _di.c.item_key.label("item"),
                    _di.c.tags,
                    _mo.c.output.label("text"),
                )
                .join(_mo, _mo.c.id == _sc.c.subject_id)
                .join(_di, _di.c.id == _mo.c.dataset_item_id)
                .where(
                    _sc.c.subject_type == SubjectType.output,
                    _sc.c.subject_id.in_(ids[start : start + _IN_CHUNK]),
                    which,
                )
            )
            rows.extend(dict(r) for r in conn.execute(q).mappings())
    df = pd.DataFrame(rows, columns=columns)
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    return df


def _window_join(
    window: tuple[str, Sequence[str], datetime, datetime],
    table: sa.Table,
    on: sa.ColumnElement[bool],
    *columns: sa.ColumnElement[Any],
) -> sa.Select[Any]:
    """Rows of ``table`` joined (``on``) to the interactions of a window.

    Args:
        window: App, model versions, start (inclusive) and end (exclusive).
        table: The table joined to the interactions.
        on: The join condition.
        columns: What to select besides ``interaction_id`` and ``model_version``.
    """
    return (
        sa.select(_it.c.id.label("interaction_id"), _it.c.model_version, *columns)
        .join(table, on)
        .where(*_window_where(*window))
    )


def _read_frame(
    engine: Engine, q: sa.Select[Any], numeric: Sequence[str] = ("value",)
) -> pd.DataFrame:
    """The rows of ``q`` as a frame with its column names (also when empty).

    Args:
        engine: The store.
        q: The query; its selected column names name the frame's columns.
        numeric: Columns read as numbers (a driver may return decimals or text).
    """
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(q).mappings()]
    df = pd.DataFrame(rows, columns=list(q.selected_columns.keys()))
    for col in numeric:
        df[col] = pd.to_numeric(df[col], errors="coerce")
    return df


def _window_where(
    app: str, model_versions: Sequence[str], start: datetime, end: datetime
) -> list[sa.ColumnElement[bool]]:
    return [
        _it.c.app == app,
        _it.c.model_version.in_(list(model_versions)),
        _it.c.ts >= start,
        _it.c.ts < end,
    ]


def traffic_window_frame(
    engine: Engine, app: str, model_versions: Sequence[str], start: datetime, end: datetime
) -> pd.DataFrame:
    """The interactions of one app and some model versions in ``[start, end)``.

    Args:
        engine: The store.
        app: The app.
        model_versions: Versions to include.
        start: Window start (inclusive).
        end: Window end (exclusive).

    Returns:
        One row per interaction: ``id, request_id, ts, model_version, latency_ms,
        input_tokens, output_tokens, cost``.
    """
    q = sa.select(
        _it.c.id,
        _it.c.request_id,
        _it.c.ts,
        _it.c.model_version,
        _it.c.latency_ms,
        _it.c.input_tokens,
        _it.c.output_tokens,
        _it.c.cost,
    ).where(*_window_where(app, model_versions, start, end))
    return _read_frame(
        engine,
        q.order_by(_it.c.ts, _it.c.id),
        numeric=("latency_ms", "input_tokens", "output_tokens", "cost"),
    )


def traffic_window_scores_frame(
    engine: Engine, app: str, model_versions: Sequence[str], start: datetime, end: datetime
) -> pd.DataFrame:
    """Every score of the interactions of :func:`traffic_window_frame`, whichever run wrote it.

    Returns:
        One row per score: ``interaction_id, model_version, evaluator, evaluator_version,
        metric`` (as ``evaluator.metric``), ``value`` and ``status``.
    """
    q = _window_join(
        (app, model_versions, start, end),
        _sc,
        sa.and_(_sc.c.subject_type == SubjectType.interaction, _sc.c.subject_id == _it.c.id),
        _sc.c.evaluator,
        _sc.c.evaluator_version,
        (_sc.c.evaluator + "." + _sc.c.metric).label("metric"),
        _sc.c.value,
        _sc.c.status,
    )
    return _read_frame(engine, q)


def traffic_window_feedback_frame(
    engine: Engine, app: str, model_versions: Sequence[str], start: datetime, end: datetime
) -> pd.DataFrame:
    """User feedback on the interactions of :func:`traffic_window_frame`.

    Returns:
        One row per feedback: ``interaction_id, model_version, kind`` (rating, thumbs, ...),
        ``value`` (a rating 1-5; thumbs 1 up, 0 down) and ``ts``.
    """
    window = (app, model_versions, start, end)
    on = _fb.c.interaction_id == _it.c.id
    q = _window_join(window, _fb, on, _fb.c.kind, _fb.c.value, _fb.c.ts)
    return _read_frame(engine, q.order_by(_fb.c.ts, _fb.c.id))
