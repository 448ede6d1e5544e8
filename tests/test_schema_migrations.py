"""The migrations build exactly the schema the SQLModel tables declare, on both backends.

Every table module (models, models_telemetry, models_privacy, models_dp) must have its
migration; a column added to a model without one fails here before it fails a user's upgrade.
"""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from evalwatch.storage import models  # noqa: F401  (registers every table)


def test_migrated_store_matches_the_models(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []
