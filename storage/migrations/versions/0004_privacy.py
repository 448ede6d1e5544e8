"""privacy: opt-out list, forget tombstones, text-retention columns of interactions

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 23:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import evalwatch.storage.models

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TEXT_COLUMNS = (
    ("prompt_chars", sa.Integer()),
    ("prompt_sha256", sqlmodel.sql.sqltypes.AutoString(length=64)),
    ("response_chars", sa.Integer()),
    ("response_sha256", sqlmodel.sql.sqltypes.AutoString(length=64)),
    ("context_chars", sa.Integer()),
    ("context_sha256", sqlmodel.sql.sqltypes.AutoString(length=64)),
    ("reference_chars", sa.Integer()),
    ("reference_sha256", sqlmodel.sql.sqltypes.AutoString(length=64)),
)


def upgrade() -> None:
    op.create_table(
        "privacy_optouts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("id_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("note", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("created_at", evalwatch.storage.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "id_hash", name="uq_privacy_optout"),
    )
    op.create_table(
        "privacy_tombstones",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("digest", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("created_at", evalwatch.storage.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "digest", name="uq_privacy_tombstone"),
    )
    # Nullable columns: SQLite adds them in place (no table copy of a large store).
    op.add_column(
        "interactions",
        sa.Column("text_removed_at", evalwatch.storage.models.UTCDateTime(), nullable=True),
    )
    op.add_column(
        "interactions",
        sa.Column(
            "text_removed_reason", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True
        ),
    )
    for name, type_ in _TEXT_COLUMNS:
        op.add_column("interactions", sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("interactions", schema=None) as batch_op:
        for name, _ in reversed(_TEXT_COLUMNS):
            batch_op.drop_column(name)
        batch_op.drop_column("text_removed_reason")
        batch_op.drop_column("text_removed_at")
    op.drop_table("privacy_tombstones")
    op.drop_table("privacy_optouts")
