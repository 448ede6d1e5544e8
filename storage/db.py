"""Engines, sessions and schema migrations for the store (SQLite or PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine
from sqlmodel import Session

__all__ = [
    "current_revision",
    "get_engine",
    "head_revision",
    "make_engine",
    "session_scope",
    "upgrade",
]

_MIGRATIONS = Path(__file__).parent / "migrations"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets readers (the Prefect UI's report, a second CLI) work while a run writes.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


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
    if url.startswith("sqlite"):
        db_path = url.split("sqlite:///", 1)[-1] if "sqlite:///" in url else ""
        if db_path and db_path != ":memory:":
            Path(db_path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30}, **kwargs)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return sa.create_engine(url, **kwargs)


@lru_cache(maxsize=8)
def get_engine(url: str) -> Engine:
    """A cached engine per URL, migrated to the latest schema on first use."""
    engine = make_engine(url)
    upgrade(engine)
    return engine


def _alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def head_revision() -> str:
    """The newest migration revision shipped with this version."""
    script = ScriptDirectory(str(_MIGRATIONS))
    head = script.get_current_head()
    assert head is not None, "no migrations found"
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Migrate the database to ``revision`` (idempotent; safe to call on every start).

    Args:
        engine: The store's engine.
        revision: Target revision, ``head`` by default.

    Returns:
        The revision the database is at afterwards.
    """
    if revision == "head" and current_revision(engine) == head_revision():
        return revision
    command.upgrade(_alembic_config(engine), revision)
    return current_revision(engine)


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
