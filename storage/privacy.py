"""Privacy in the store: the opt-out list, forgetting a user, and text retention.

Only storage knows SQL, so every privacy write is here; the commands and ingest hand in
keyed hashes (:func:`evalwatch.ingest.pipeline.keyed_hash` with the store's hash key), never
raw ids, except where a quarantined raw row must be matched (it holds what arrived).

* :func:`add_optouts`, :func:`remove_optouts`, :func:`list_optouts`, :func:`optout_hashes`:
  the users and sessions whose traffic ingest drops before anything is written.
* :func:`forget`: delete everything derived from some users or sessions (interactions,
  feedback, scores and their run links, embeddings, the judge-cache entries their judging
  made, quarantined raw rows) and scrub their traces from stored reports (drift report
  examples, alert contexts, regression reports, run summaries). Safe while ingests and runs
  write: each batch runs under the retention lock (:func:`evalwatch.storage.db.lock_for_prune`)
  that every writer of rows about interactions holds, like ``db prune``; what a concurrent
  run stored *after* a batch (a report naming the user's rows, a judge answer) is found by
  the next forget through :class:`~evalwatch.storage.models_privacy.ForgetTombstone` rows, so
  running forget again once the others finished leaves nothing of the user.
* :func:`enforce_text_retention`: replace the texts of interactions older than the text
  retention by :data:`~evalwatch.core.textprivacy.TEXT_REMOVED` (keeping their length and
  SHA-256), and the same texts in quarantined rows and stored reports.

Judge-cache entries are found through the judge's scores: each judge score records the cache
keys of its calls (``details["cache_keys"]``). An entry shared with another interaction of
identical text is deleted too (it is a cache: the other costs one more judge call later).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from evalwatch.core import SubjectType
from evalwatch.core.textprivacy import (
    TEXT_FIELDS,
    TEXT_FORGOTTEN,
    TEXT_REMOVED,
    TextRemoval,
    text_digest,
)
from evalwatch.storage.db import lock_for_prune, retry_transient
from evalwatch.storage.models import (
    Alert,
    DriftReportRow,
    Embedding,
    EvalRun,
    Feedback,
    Interaction,
    JudgeCache,
    Quarantine,
    RegressionReport,
    RunScore,
    Score,
    utcnow,
)
from evalwatch.storage.models_privacy import ForgetTombstone, OptOut
from evalwatch.storage.repo import insert_ignore

__all__ = [
    "EXAMPLE_PREFIX",
    "FORGET_TABLES",
    "IdKind",
    "Identity",
    "add_optouts",
    "enforce_text_retention",
    "forget",
    "judge_cache_keys",
    "list_optouts",
    "optout_hashes",
    "remove_optouts",
]

IdKind = Literal["user", "session"]

#: Longest text prefix that reports copy as an example (drift examples are cut to 200).
EXAMPLE_PREFIX = 200
#: What :func:`forget` reports, in order.
FORGET_TABLES: tuple[str, ...] = (
    "interactions",
    "feedback",
    "scores",
    "run_scores",
    "embeddings",
    "judge_cache",
    "quarantine",
    "drift_reports",
    "alerts",
    "regression_reports",
    "eval_runs",
)

_it: sa.Table = Interaction.__table__  # type: ignore[attr-defined]
_sc: sa.Table = Score.__table__  # type: ignore[attr-defined]
_rs: sa.Table = RunScore.__table__  # type: ignore[attr-defined]
_em: sa.Table = Embedding.__table__  # type: ignore[attr-defined]
_fb: sa.Table = Feedback.__table__  # type: ignore[attr-defined]
_jc: sa.Table = JudgeCache.__table__  # type: ignore[attr-defined]
_qu: sa.Table = Quarantine.__table__  # type: ignore[attr-defined]
_oo: sa.Table = OptOut.__table__  # type: ignore[attr-defined]
_ts: sa.Table = ForgetTombstone.__table__  # type: ignore[attr-defined]
# Stored reports that may copy an interaction's request id or texts: (name, table, JSON column).
_REPORTS: tuple[tuple[str, sa.Table, str], ...] = (
    ("drift_reports", DriftReportRow.__table__, "details"),  # type: ignore[attr-defined]
    ("alerts", Alert.__table__, "context"),  # type: ignore[attr-defined]
    ("regression_reports", RegressionReport.__table__, "report"),  # type: ignore[attr-defined]
    ("eval_runs", EvalRun.__table__, "summary"),  # type: ignore[attr-defined]
)
_LOOKUP = 5_000


def _sqlite_write_lock(conn: Connection) -> None:
    """SQLite: take the write lock before reading what this transaction rewrites."""
    if conn.dialect.name != "sqlite":
        return
    dbapi_conn: Any = conn.connection.driver_connection
    if not dbapi_conn.in_transaction:
        dbapi_conn.execute("BEGIN IMMEDIATE")


# ---------------------------------------------------------------------------------------------
# Opt-outs


def add_optouts(
    engine: Engine, kind: IdKind, hashes: Iterable[str], note: str | None = None
) -> int:
    """Add keyed id hashes to the opt-out list; returns how many were new.

    Examples:
        >>> from evalwatch.storage.db import make_engine, upgrade
        >>> e = make_engine("sqlite://"); _ = upgrade(e)
        >>> add_optouts(e, "user", ["a" * 64, "a" * 64]), add_optouts(e, "user", ["a" * 64])
        (1, 0)
    """
    rows = [{"kind": kind, "id_hash": h, "note": note} for h in dict.fromkeys(hashes)]
    if not rows:
        return 0
    with engine.begin() as conn:
        return len(insert_ignore(conn, OptOut, rows, ["kind", "id_hash"]))


def remove_optouts(engine: Engine, kind: IdKind, hashes: Iterable[str]) -> int:
    """Remove keyed id hashes from the opt-out list; returns how many were listed."""
    wanted = list(dict.fromkeys(hashes))
    n = 0
    with engine.begin() as conn:
        for start in range(0, len(wanted), _LOOKUP):
            chunk = wanted[start : start + _LOOKUP]
            q = sa.delete(_oo).where(_oo.c.kind == kind, _oo.c.id_hash.in_(chunk))
            n += int(conn.execute(q).rowcount)
    return n


def list_optouts(engine: Engine) -> list[OptOut]:
    """The opt-out list, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(_oo).order_by(_oo.c.id)).mappings()
        return [OptOut(**dict(r)) for r in rows]


def optout_hashes(conn_or_engine: Engine | Connection) -> dict[IdKind, frozenset[str]]:
    """The opted-out hashes per kind (what ingest drops)."""
    if isinstance(conn_or_engine, Engine):
        with conn_or_engine.connect() as conn:
            return optout_hashes(conn)
    out: dict[IdKind, set[str]] = {"user": set(), "session": set()}
    for kind, h in conn_or_engine.execute(sa.select(_oo.c.kind, _oo.c.id_hash)):
        if kind in out:
            out[kind].add(h)
    return {k: frozenset(v) for k, v in out.items()}


# ---------------------------------------------------------------------------------------------
# Digests that match report contents


def _keyed(key: bytes, value: str) -> str:
    return hmac.digest(key, value.encode("utf-8", "surrogatepass"), "sha256").hex()


@dataclass
class _Marks:
    """What identifies a set of interactions inside stored reports (as digests)."""

    digest: Callable[[str], str]
    requests: set[str] = field(default_factory=set)
    texts: set[str] = field(default_factory=set)
    ids: set[str] = field(default_factory=set)

    def add(self, row: Mapping[str, Any]) -> None:
        self.requests.add(self.digest(str(row["request_id"])))
        self.ids.add(str(row["id"]))
        for f in TEXT_FIELDS:
            text = row.get(f)
            if text and text not in (TEXT_REMOVED, TEXT_FORGOTTEN):
                self.texts.add(self.digest(text[:EXAMPLE_PREFIX]))

    def __bool__(self) -> bool:
        return bool(self.requests or self.texts or self.ids)

    def text_matches(self, s: str) -> bool:
        return bool(s) and self.digest(s[:EXAMPLE_PREFIX]) in self.texts


def _scrub(doc: Any, marks: _Marks, mode: Literal["forget", "retention"]) -> tuple[Any, int]:
    """``doc`` with the traces of ``marks`` removed, and how many entries were changed.

    forget: a dict naming a marked request id is dropped from its list (or, outside a list,
    has its texts replaced), a marked text becomes :data:`TEXT_FORGOTTEN`; retention: a
    marked dict keeps its metadata and loses its texts, a marked text becomes
    :data:`TEXT_REMOVED`. A run summary's ``invalid_examples`` (interaction id -> reasons)
    loses marked ids.
    """
    marker = TEXT_FORGOTTEN if mode == "forget" else TEXT_REMOVED
    changed = 0

    def named(d: Mapping[str, Any]) -> bool:
        rid = d.get("request_id")
        return isinstance(rid, str) and marks.digest(rid) in marks.requests

    def strip(d: dict[str, Any]) -> dict[str, Any]:
        return {k: (marker if k in TEXT_FIELDS and isinstance(v, str) else v) for k, v in d.items()}

    def walk(node: Any) -> Any:
        nonlocal changed
        if isinstance(node, str):
            if marks.text_matches(node):
                changed += 1
                return marker
            return node
        if isinstance(node, list):
            out_list = []
            for item in node:
                if isinstance(item, dict) and named(item):
                    changed += 1
                    if mode == "retention":
                        out_list.append(strip(item))
                    continue
                out_list.append(walk(item))
            return out_list
        if isinstance(node, dict):
            if named(node):
                changed += 1
                return strip(node)
            out: dict[str, Any] = {}
            for k, v in node.items():
                if k == "invalid_examples" and isinstance(v, dict) and mode == "forget":
                    kept = {i: r for i, r in v.items() if str(i) not in marks.ids}
                    changed += len(v) - len(kept)
                    out[k] = kept
                else:
                    out[k] = walk(v)
            return out
        return node

    return walk(doc), changed


def _scrub_row(
    engine: Engine,
    table: sa.Table,
    col: str,
    rid: int,
    marks: _Marks,
    mode: Literal["forget", "retention"],
) -> int:
    """Scrub one report row under a row lock (SQLite: the write lock); 1 if it changed."""
    pk = table.c.id
    with engine.begin() as conn:
        _sqlite_write_lock(conn)
        sel = sa.select(table.c[col]).where(pk == rid)
        if conn.dialect.name == "postgresql":
            sel = sel.with_for_update()
        doc = conn.execute(sel).scalar_one_or_none()
        new, n = _scrub(doc, marks, mode)
        if not n:
            return 0
        conn.execute(sa.update(table).where(pk == rid).values({col: new}))
        return 1


def _scrub_reports(
    engine: Engine, marks: _Marks, mode: Literal["forget", "retention"], dry_run: bool
) -> dict[str, int]:
    """Scrub every stored report of ``marks``; rows changed per table.

    A row is read, then re-read under a row lock and written in its own short transaction, so
    a concurrent writer of the same alert or summary is not overwritten with stale content.
    """
    out = {name: 0 for name, _, _ in _REPORTS}
    if not marks:
        return out
    for name, table, col in _REPORTS:
        pk = table.c.id
        with engine.connect() as conn:
            q = sa.select(pk, table.c[col]).where(table.c[col].is_not(None)).order_by(pk)
            hits = [rid for rid, doc in conn.execute(q) if _scrub(doc, marks, mode)[1]]
        if dry_run:
            out[name] = len(hits)
            continue
        for rid in hits:
            out[name] += retry_transient(partial(_scrub_row, engine, table, col, rid, marks, mode))
    return out


# ---------------------------------------------------------------------------------------------
# Forget


@dataclass(frozen=True)
class Identity:
    """Whom to forget: a user or session, by keyed hash and (when known) raw id.

    The raw id only matches quarantined raw rows (which hold what arrived); the store's own
    rows hold the hash.
    """

    kind: IdKind
    id_hash: str
    raw: str | None = None


def judge_cache_keys(details: Any) -> list[str]:
    """The judge-cache keys a score's details name (``cache_keys``), if any.

    Examples:
        >>> judge_cache_keys({"cache_keys": ["k1", "k2"]}), judge_cache_keys(None)
        (['k1', 'k2'], [])
    """
    if isinstance(details, str):
        try:
            details = json.loads(details)
        except ValueError:
            return []
    if not isinstance(details, dict):
        return []
    keys = details.get("cache_keys")
    return [k for k in keys if isinstance(k, str)] if isinstance(keys, list) else []


def _who(identities: Sequence[Identity]) -> sa.ColumnElement[bool]:
    users = [i.id_hash for i in identities if i.kind == "user"]
    sessions = [i.id_hash for i in identities if i.kind == "session"]
    conds: list[sa.ColumnElement[bool]] = []
    if users:
        conds.append(_it.c.user_hash.in_(users))
    if sessions:
        conds.append(_it.c.session_hash.in_(sessions))
    return sa.or_(*conds) if conds else sa.false()


def _about(ids: Sequence[int]) -> dict[str, tuple[sa.Table, sa.ColumnElement[bool]]]:
    interaction = SubjectType.interaction.value
    return {
        "feedback": (_fb, _fb.c.interaction_id.in_(ids)),
        "scores": (_sc, sa.and_(_sc.c.subject_type == interaction, _sc.c.subject_id.in_(ids))),
        "embeddings": (
            _em,
            sa.and_(_em.c.subject_type == interaction, _em.c.subject_id.in_(ids)),
        ),
    }


def _forget_batch(
    engine: Engine, where: sa.ColumnElement[bool], marks: _Marks, batch_size: int, dry_run: bool
) -> tuple[dict[str, int], int]:
    """Forget up to ``batch_size`` interactions in one transaction; (counts, interactions)."""
    counts = dict.fromkeys(FORGET_TABLES, 0)
    with engine.begin() as conn:
        if not dry_run:
            lock_for_prune(conn)
        cols = [_it.c.id, _it.c.request_id, *(_it.c[f] for f in TEXT_FIELDS)]
        q = sa.select(*cols).where(where).order_by(_it.c.id)
        if not dry_run:
            q = q.limit(batch_size)
        rows = [dict(r) for r in conn.execute(q).mappings()]
        if not rows:
            return counts, 0
        ids = [int(r["id"]) for r in rows]
        for r in rows:
            marks.add(r)
        keys: set[str] = set()
        links = 0
        for start in range(0, len(ids), _LOOKUP):
            chunk = ids[start : start + _LOOKUP]
            about = _about(chunk)
            sc_where = about["scores"][1]
            for (details,) in conn.execute(sa.select(_sc.c.details).where(sc_where)):
                keys.update(judge_cache_keys(details))
            links += int(
                conn.execute(
                    sa.select(sa.func.count())
                    .select_from(_rs.join(_sc, _rs.c.score_id == _sc.c.id))
                    .where(sc_where)
                ).scalar_one()
            )
            for name, (table, cond) in about.items():
                if dry_run:
                    n = conn.execute(sa.select(sa.func.count()).select_from(table).where(cond))
                    counts[name] += int(n.scalar_one())
                else:
                    if name == "scores":
                        # Explicitly, not only by ON DELETE CASCADE: the count is reported.
                        score_ids = sa.select(_sc.c.id).where(cond)
                        conn.execute(sa.delete(_rs).where(_rs.c.score_id.in_(score_ids)))
                    counts[name] += int(conn.execute(sa.delete(table).where(cond)).rowcount)
        counts["run_scores"] = links
        key_list = sorted(keys)
        for start in range(0, len(key_list), _LOOKUP):
            chunk_keys = key_list[start : start + _LOOKUP]
            cond = _jc.c.key.in_(chunk_keys)
            if dry_run:
                n = conn.execute(sa.select(sa.func.count()).select_from(_jc).where(cond))
                counts["judge_cache"] += int(n.scalar_one())
            else:
                counts["judge_cache"] += int(conn.execute(sa.delete(_jc).where(cond)).rowcount)
        if dry_run:
            counts["interactions"] = len(ids)
            return counts, len(ids)
        for start in range(0, len(ids), _LOOKUP):
            chunk = ids[start : start + _LOOKUP]
            counts["interactions"] += int(
                conn.execute(sa.delete(_it).where(_it.c.id.in_(chunk))).rowcount
            )
        stones = [
            {"kind": kind, "digest": d}
            for kind, digests in (
                ("request", {marks.digest(str(r["request_id"])) for r in rows}),
                ("interaction", {str(i) for i in ids}),
                (
                    "text",
                    {
                        marks.digest(str(r[f])[:EXAMPLE_PREFIX])
                        for r in rows
                        for f in TEXT_FIELDS
                        if r[f] and r[f] not in (TEXT_REMOVED, TEXT_FORGOTTEN)
                    },
                ),
            )
            for d in digests
        ]
        insert_ignore(conn, ForgetTombstone, stones, ["kind", "digest"])
    return counts, len(ids)


_USER_KEY = re.compile(r"user", re.IGNORECASE)
_SESSION_KEY = re.compile(r"session|conversation", re.IGNORECASE)


def _json_ids(node: Any, key_re: re.Pattern[str]) -> Iterator[str]:
    """String values under keys that name a user (or session), anywhere in a JSON document.

    Also OTLP attribute lists (``{"key": "user.id", "value": {"stringValue": ...}}``).
    """
    if isinstance(node, dict):
        k = node.get("key")
        if isinstance(k, str) and key_re.search(k) and isinstance(node.get("value"), dict):
            for v in node["value"].values():
                if isinstance(v, str):
                    yield v
        for name, v in node.items():
            if isinstance(v, str | int) and isinstance(name, str) and key_re.search(name):
                yield str(v)
            elif isinstance(v, dict | list):
                yield from _json_ids(v, key_re)
    elif isinstance(node, list):
        for v in node:
            yield from _json_ids(v, key_re)


def _raw_matches(raw: str, ident: Identity, token: re.Pattern[str] | None) -> bool:
    """Whether a quarantined raw row belongs to ``ident``.

    A row that parses as JSON matches only through its user (or session) fields, holding the
    raw id or its hash; a row that does not (CSV, or cut short) matches the raw id or hash as a
    whole token, so ``u1`` never matches ``u10`` or ``malice``.
    """
    wanted = {ident.id_hash} | ({ident.raw} if ident.raw is not None else set())
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = None
    if isinstance(doc, dict | list):
        key_re = _USER_KEY if ident.kind == "user" else _SESSION_KEY
        return any(v in wanted for v in _json_ids(doc, key_re))
    return token is not None and token.search(raw) is not None


def _token(ident: Identity) -> re.Pattern[str]:
    alts = "|".join(re.escape(v) for v in (ident.raw, ident.id_hash) if v)
    return re.compile(rf"(?<![\w.@-])(?:{alts})(?![\w.@-])")


def _forget_quarantine(engine: Engine, identities: Sequence[Identity], dry_run: bool) -> int:
    """Delete the quarantined raw rows of ``identities``; returns how many."""
    tokens = [(i, _token(i)) for i in identities]
    hashes = [i.id_hash for i in identities]
    raws = [i.raw for i in identities if i.raw]
    conds = [_qu.c.raw.contains(v, autoescape=True) for v in [*hashes, *raws]]
    if not conds:
        return 0
    ids: list[int] = []
    with engine.connect() as conn:
        for qid, raw in conn.execute(sa.select(_qu.c.id, _qu.c.raw).where(sa.or_(*conds))):
            if any(_raw_matches(raw, i, t) for i, t in tokens):
                ids.append(int(qid))
    if dry_run or not ids:
        return len(ids)
    n = 0
    with engine.begin() as conn:
        for start in range(0, len(ids), _LOOKUP):
            chunk = ids[start : start + _LOOKUP]
            n += int(conn.execute(sa.delete(_qu).where(_qu.c.id.in_(chunk))).rowcount)
    return n


def _tombstone_marks(engine: Engine, key: bytes) -> _Marks:
    marks = _Marks(digest=lambda s: _keyed(key, s))
    with engine.connect() as conn:
        for kind, d in conn.execute(sa.select(_ts.c.kind, _ts.c.digest)):
            {"request": marks.requests, "text": marks.texts, "interaction": marks.ids}.get(
                kind, set()
            ).add(d)
    return marks


def forget(
    engine: Engine,
    identities: Sequence[Identity],
    key: bytes,
    *,
    dry_run: bool = False,
    batch_size: int = 2_000,
) -> dict[str, int]:
    """Delete everything derived from ``identities`` and scrub their traces from reports.

    Idempotent: a second call deletes nothing. Safe while ingests and runs write (see the
    module docstring); call it again after they finish to catch what they stored meanwhile.

    Args:
        engine: The store.
        identities: Users and sessions to forget (keyed hashes, raw ids where known).
        key: The store's hash key (tombstones are keyed hashes, like user hashes).
        dry_run: Count what would be deleted or scrubbed; change nothing.
        batch_size: Interactions deleted per transaction.

    Returns:
        Rows deleted (reports: rows scrubbed) per table, in :data:`FORGET_TABLES` order.

    Examples:
        >>> from evalwatch.storage.db import make_engine, upgrade
        >>> e = make_engine("sqlite://"); _ = upgrade(e)
        >>> forget(e, [Identity("user", "0" * 64)], b"k")["interactions"]
        0
    """
    out = dict.fromkeys(FORGET_TABLES, 0)
    if not identities:
        return out
    where = _who(identities)
    marks = _tombstone_marks(engine, key)
    while True:
        counts, n = retry_transient(
            lambda: _forget_batch(engine, where, marks, batch_size, dry_run)
        )
        for name, v in counts.items():
            out[name] += v
        if dry_run or n < batch_size:
            break
    out["quarantine"] = _forget_quarantine(engine, identities, dry_run)
    out.update(_scrub_reports(engine, marks, "forget", dry_run))
    return out


# ---------------------------------------------------------------------------------------------
# Text retention

#: What :func:`enforce_text_retention` reports, in order.
RETENTION_TABLES: tuple[str, ...] = (
    "interactions",
    "quarantine",
    "drift_reports",
    "alerts",
    "regression_reports",
)


def _removed_values(row: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    values: dict[str, Any] = {
        "text_removed_at": now,
        "text_removed_reason": str(TextRemoval.retention),
    }
    for f in TEXT_FIELDS:
        chars, sha = text_digest(row[f])
        values[f"{f}_chars"], values[f"{f}_sha256"] = chars, sha
        # prompt and response are NOT NULL; a missing context or reference stays missing.
        values[f] = None if row[f] is None else TEXT_REMOVED
    return values


def _retention_batch(
    engine: Engine, cutoff: datetime, now: datetime, batch_size: int, marks: _Marks
) -> int:
    cols = [_it.c.id, _it.c.request_id, *(_it.c[f] for f in TEXT_FIELDS)]
    with engine.begin() as conn:
        _sqlite_write_lock(conn)
        q = (
            sa.select(*cols)
            .where(_it.c.ts < cutoff, _it.c.text_removed_at.is_(None))
            .order_by(_it.c.id)
            .limit(batch_size)
        )
        if conn.dialect.name == "postgresql":
            q = q.with_for_update(skip_locked=True)
        rows = [dict(r) for r in conn.execute(q).mappings()]
        if not rows:
            return 0
        for r in rows:
            marks.add(r)
        params = [{"_id": r["id"], **_removed_values(r, now)} for r in rows]
        names = [k for k in params[0] if k != "_id"]
        stmt = (
            sa.update(_it)
            .where(_it.c.id == sa.bindparam("_id"))
            .values({n: sa.bindparam(n) for n in names})
        )
        conn.execute(stmt, params)
        return len(rows)


def enforce_text_retention(
    engine: Engine,
    older_than: timedelta,
    now: datetime | None = None,
    *,
    dry_run: bool = False,
    batch_size: int = 2_000,
) -> dict[str, int]:
    """Replace the texts of interactions older than ``older_than`` by their length and hash.

    Prompt and response become :data:`~evalwatch.core.textprivacy.TEXT_REMOVED` (context and
    reference too, where they were set); ``*_chars`` and ``*_sha256`` keep what they were.
    Scores, embeddings, feedback and metadata stay. Quarantined rows older than the period
    lose their raw text, and stored reports that quote a removed text (drift examples, alert
    contexts) show the marker instead. Idempotent: a second call changes nothing.

    Args:
        engine: The store.
        older_than: The text retention period (``ingest.text_retention``).
        now: The time the period ends (default: now).
        dry_run: Count what would change; change nothing.
        batch_size: Interactions changed per transaction.

    Returns:
        Rows changed (with ``dry_run``: that would change) per table.
    """
    now = now or utcnow()
    cutoff = now - older_than
    out = dict.fromkeys(RETENTION_TABLES, 0)
    old = sa.and_(_it.c.ts < cutoff, _it.c.text_removed_at.is_(None))
    q_old = sa.and_(_qu.c.created_at < cutoff, _qu.c.raw != TEXT_REMOVED)
    # An in-memory digest is enough here: the marks live only for this call.
    marks = _Marks(digest=lambda s: hashlib.sha256(s.encode("utf-8", "surrogatepass")).hexdigest())
    if dry_run:
        with engine.connect() as conn:
            cols = [_it.c.id, _it.c.request_id, *(_it.c[f] for f in TEXT_FIELDS)]
            for r in conn.execute(sa.select(*cols).where(old)).mappings():
                marks.add(dict(r))
                out["interactions"] += 1
            out["quarantine"] = int(
                conn.execute(sa.select(sa.func.count()).select_from(_qu).where(q_old)).scalar_one()
            )
    else:
        while True:
            n = retry_transient(lambda: _retention_batch(engine, cutoff, now, batch_size, marks))
            out["interactions"] += n
            if n < batch_size:
                break
        with engine.begin() as conn:
            out["quarantine"] = int(
                conn.execute(sa.update(_qu).where(q_old).values(raw=TEXT_REMOVED)).rowcount
            )
    scrubbed = _scrub_reports(engine, marks, "retention", dry_run)
    for name in ("drift_reports", "alerts", "regression_reports"):
        out[name] = scrubbed[name]
    return out
