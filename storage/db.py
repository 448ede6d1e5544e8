"""Engines, sessions and schema migrations for the store (SQLite or PostgreSQL)."""

from __future__ import annotations

import atexit
import random
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = [
    "StoreError",
    "StoreURLError",
    "StoreUnavailableError",
    "current_revision",
    "get_engine",
    "head_revision",
    "hold_against_prune",
    "is_transient",
    "lock_for_prune",
    "make_engine",
    "retry_transient",
    "safe_url",
    "session_scope",
    "upgrade",
]

T = TypeVar("T")

_MIGRATIONS = Path(__file__).parent / "migrations"

_URL_EXAMPLES = "e.g. sqlite:///evalwatch.db or postgresql://user@host:5432/name"
# psycopg says so in its message only (no SQLSTATE on a failed connection).
_MISSING_DB = re.compile(r'database "(?P<name>[^"]+)" does not exist')


class StoreError(Exception):
    """The store cannot be used as configured; the message says why in one line."""


class StoreURLError(StoreError, ValueError):
    """The store URL is not one SQLAlchemy can use (bad syntax, unknown dialect or driver)."""


class StoreUnavailableError(StoreError):
    """The store could not be reached or opened (server down, database missing, bad file)."""


def safe_url(url: str | sa.URL) -> str:
    """``url`` without its password, for messages.

    Examples:
        >>> safe_url("postgresql://bob:secret@db:5432/ev")
        'postgresql://bob:***@db:5432/ev'
        >>> safe_url("not a url")
        'not a url'
    """
    if isinstance(url, sa.URL):
        return url.render_as_string(hide_password=True)
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError):
        # Unparseable: mask anything that looks like user:password@.
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def _unavailable(url: sa.URL, exc: sa.exc.DBAPIError) -> StoreUnavailableError:
    """A one-line :class:`StoreUnavailableError` for a failed first connection."""
    detail = " ".join(str(exc.orig).split())
    missing = _MISSING_DB.search(detail)
    if url.get_backend_name() == "postgresql" and missing:
        name = missing.group("name")
        host = url.host or "localhost"
        port = f" -p {url.port}" if url.port else ""
        user = f" -U {url.username}" if url.username else ""
        return StoreUnavailableError(
            f"PostgreSQL database {name!r} does not exist on {host}; create it with "
            f'`createdb -h {host}{port}{user} {name}` (or the SQL `CREATE DATABASE "{name}"`), '
            "then run `evalwatch db upgrade`"
        )
    if url.get_backend_name() == "sqlite":
        return StoreUnavailableError(f"cannot open the SQLite store {url.database}: {detail}")
    return StoreUnavailableError(f"cannot reach the store at {safe_url(url)}: {detail}")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets readers (the Prefect UI's report, a second CLI) work while a run writes.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _check_sqlite_folder(url: str, db_path: str) -> None:
    """Refuse a SQLite store whose folder does not exist (a typo), before SQLite sees it.

    The store file is created on first use, as documented, but not its folders: creating
    ``no/such/dir`` for a mistyped path would leave an empty store where nobody looks.

    Raises:
        StoreURLError: The folder does not exist or is not a folder (exit code 2).
    """
    folder = Path(db_path.split("?", 1)[0]).expanduser().parent
    if folder.is_dir():
        return
    if folder.exists():
        raise StoreURLError(f"SQLite store {safe_url(url)}: {folder} is not a folder")
    raise StoreURLError(
        f"SQLite store {safe_url(url)}: folder {folder} does not exist; create it first "
        "(the store file is created on first use, its folders are not)"
    )


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine with the settings evalwatch relies on.

    Args:
        url: SQLAlchemy URL, e.g. ``sqlite:///evalwatch.db`` or
            ``postgresql+psycopg://postgres@127.0.0.1:5432/test``.
        **kwargs: Passed to :func:`sqlalchemy.create_engine`.

    Returns:
        The engine. ``postgresql://`` URLs use psycopg 3.

    Examples:
        >>> make_engine("sqlite://").dialect.name
        'sqlite'
    """
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    try:
        if url.startswith("sqlite"):
            db_path = url.split("sqlite:///", 1)[-1] if "sqlite:///" in url else ""
            if db_path and db_path != ":memory:":
                _check_sqlite_folder(url, db_path)
            engine = sa.create_engine(url, connect_args={"timeout": 30}, **kwargs)
            sa.event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        kwargs.setdefault("pool_pre_ping", True)
        return sa.create_engine(url, **kwargs)
    except sa.exc.NoSuchModuleError as exc:  # before ArgumentError: it is one
        raise StoreURLError(
            f"store URL {safe_url(url)!r} names an unknown database kind ({exc}); {_URL_EXAMPLES}"
        ) from exc
    except sa.exc.ArgumentError as exc:
        raise StoreURLError(
            f"store URL {safe_url(url)!r} is not a database URL; {_URL_EXAMPLES}"
        ) from exc
    except ImportError as exc:
        raise StoreURLError(
            f"store URL {safe_url(url)!r} needs a database driver that is not installed "
            f"({exc.name or exc}); evalwatch supports SQLite and PostgreSQL (psycopg 3), "
            + _URL_EXAMPLES
        ) from exc


@lru_cache(maxsize=8)
def get_engine(url: str) -> Engine:
    """A cached engine per URL, migrated to the latest schema on first use.

    Its connections are closed when the process exits: SQLite folds its write-ahead log back
    into the store file only when the last connection closes, so otherwise the file alone (as
    a user copies or backs it up) would lack the last writes.
    """
    engine = make_engine(url)
    upgrade(engine)
    atexit.register(engine.dispose)
    return engine


def _alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def head_revision() -> str:
    """The newest migration revision shipped with this version."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(_MIGRATIONS))
    head = script.get_current_head()
    assert head is not None, "no migrations found"
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty database.

    Raises:
        StoreUnavailableError: The store cannot be reached or opened (this is the first
            connection every command makes, so the reason is told here once).
    """
    try:
        conn = engine.connect()
    except sa.exc.DBAPIError as exc:
        raise _unavailable(engine.url, exc) from exc
    with conn:
        return _revision(conn)


# The ``revision = "0005"`` and ``down_revision = "0004"`` lines of a migration file.
_REVISION_LINE = re.compile(
    r"^(revision|down_revision)\s*(?::[^=\n]*)?=\s*(?:['\"]([^'\"]+)['\"]|None)\s*$", re.M
)


@lru_cache(maxsize=1)
def _head_in_files() -> str | None:
    """The head revision read from the migration files' text (None: not one clear head).

    Alembic finds it by importing every migration module (with alembic itself, about 0.4 s of
    every command); a store already at the head needs only this, and anything unclear falls
    back to alembic. ``tests/test_store.py`` checks that both agree.
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (_MIGRATIONS / "versions").glob("*.py"):
        found = {m.group(1): m.group(2) for m in _REVISION_LINE.finditer(path.read_text())}
        if not found.get("revision"):
            return None
        revisions.add(found["revision"])
        if found.get("down_revision"):
            parents.add(found["down_revision"])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _stored_revision(engine: Engine) -> str | None:
    """The store's revision read with plain SQL (None: empty, or not one revision)."""
    try:
        conn = engine.connect()
    except sa.exc.DBAPIError as exc:
        raise _unavailable(engine.url, exc) from exc
    with conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return None
        rows = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    return str(rows[0][0]) if len(rows) == 1 else None


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Migrate the database to ``revision`` (idempotent; safe to call on every start).

    Args:
        engine: The store's engine.
        revision: Target revision, ``head`` by default.

    Returns:
        The revision the database is at afterwards.
    """
    if revision == "head":
        stored = _stored_revision(engine)
        if stored is not None and stored == _head_in_files():
            return revision
    if revision == "head" and current_revision(engine) == head_revision():
        return revision
    from alembic import command

    with _migration_lock(engine) as conn:
        # Another process may have migrated the store while this one waited for the lock:
        # running the same migration again would fail half-way ("No such constraint").
        if revision == "head" and _revision(conn) == head_revision():
            return revision
        cfg = _alembic_config(engine)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    return current_revision(engine)


def _revision(conn: sa.Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


# Any constant: the key of the PostgreSQL advisory lock that serialises migrations.
_PG_MIGRATION_LOCK = 0x65766C77  # "evlw"


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[sa.Connection]:
    """A connection holding the store's migration lock, in one transaction committed at the end.

    Two processes that open a store of an older revision at once (a CLI and a flow, two CI
    jobs) must not both migrate it. SQLite: ``BEGIN IMMEDIATE`` takes the write lock first
    (a second process waits, up to the busy timeout), and the whole migration, DDL included,
    is one transaction, so a failure leaves the store as it was. PostgreSQL: a transaction
    advisory lock, released at commit or rollback.
    """
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            # pysqlite begins transactions before DML only; this one must cover the DDL too.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
        try:
            yield conn
        except BaseException:
            conn.rollback()
            raise
        conn.commit()


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


# Any constant: the key of the PostgreSQL advisory lock between retention deletes and the
# writers of rows about interactions (scores, embeddings, feedback, run links).
_PG_RETENTION_LOCK = 0x65767274  # "evrt"


def _sqlite_write_lock(conn: sa.Connection) -> None:
    """Take SQLite's write lock now, unless this connection's transaction holds it already."""
    dbapi_conn: Any = conn.connection.driver_connection
    if not dbapi_conn.in_transaction:
        # pysqlite only begins before the first write; this transaction must hold the lock
        # before it reads what it is about to write against.
        dbapi_conn.execute("BEGIN IMMEDIATE")


def hold_against_prune(conn: sa.Connection) -> None:
    """Keep retention from deleting interactions until this transaction ends.

    A writer of rows about interactions calls this before it looks which of them exist, then
    writes only about those: a prune batch then either ran before (the writer sees the rows
    gone) or waits for this transaction (and deletes what it wrote with the interaction), so
    no score, embedding, feedback row or run link is left about a deleted interaction.
    PostgreSQL: the shared side of an advisory transaction lock (writers do not block each
    other); SQLite: the write lock (there is one writer at a time anyway).
    """
    if conn.dialect.name == "postgresql":
        conn.execute(
            sa.text("SELECT pg_advisory_xact_lock_shared(:key)"), {"key": _PG_RETENTION_LOCK}
        )
    elif conn.dialect.name == "sqlite":
        _sqlite_write_lock(conn)


def lock_for_prune(conn: sa.Connection) -> None:
    """Wait until no writer holds :func:`hold_against_prune`, and keep them out until commit.

    Call it first in the transaction (before any other lock is taken): holding nothing else
    while it waits, a prune batch cannot deadlock with a writer.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_RETENTION_LOCK})
    elif conn.dialect.name == "sqlite":
        _sqlite_write_lock(conn)


# PostgreSQL SQLSTATEs that mean "this transaction lost a race; run it again".
_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a conflict that the same transaction, run again, would get past.

    PostgreSQL's deadlock and serialization failures, and SQLite's busy store after its busy
    timeout.

    Examples:
        >>> is_transient(ValueError("no"))
        False
    """
    if not isinstance(exc, sa.exc.DBAPIError):
        return False
    orig = exc.orig
    if getattr(orig, "sqlstate", None) in _TRANSIENT_SQLSTATES:
        return True
    return isinstance(exc, sa.exc.OperationalError) and "database is locked" in str(orig)


def retry_transient(fn: Callable[[], T], *, tries: int = 5, first_delay_s: float = 0.05) -> T:
    """Run ``fn`` (one whole transaction), again after a transient conflict, up to ``tries``.

    Waits grow exponentially with jitter, so two retrying transactions do not meet again.
    The last conflict is raised as it is.
    """
    for attempt in range(1, tries + 1):
        try:
            return fn()
        except sa.exc.DBAPIError as exc:
            if attempt == tries or not is_transient(exc):
                raise
            time.sleep(first_delay_s * 2 ** (attempt - 1) * (0.5 + random.random()))
    raise AssertionError("unreachable")  # pragma: no cover
