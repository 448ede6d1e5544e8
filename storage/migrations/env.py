"""Alembic environment: runs against the engine evalwatch passes in, or sqlalchemy.url."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import evalwatch.storage.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from evalwatch.storage.db import make_engine

config = context.config
target_metadata = SQLModel.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    context.run_migrations()


def run_migrations_online() -> None:
    # storage.db.upgrade passes a connection that holds the migration lock in its transaction.
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = config.attributes.get("engine")
    if engine is None:
        engine = make_engine(config.get_main_option("sqlalchemy.url") or "sqlite:///evalwatch.db")
    with engine.begin() as connection:
        _run(connection)


run_migrations_online()
