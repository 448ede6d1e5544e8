"""differential-privacy release ledger: per-dataset epsilon spent, and each release

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 23:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import evalwatch.storage.models

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dp_budgets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("spent", sa.Float(), nullable=False),
        sa.Column("created_at", evalwatch.storage.models.UTCDateTime(), nullable=False),
        sa.Column("updated_at", evalwatch.storage.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dataset", name="uq_dp_budget_dataset"),
    )
    op.create_table(
        "dp_releases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("epsilon", sa.Float(), nullable=False),
        sa.Column("budget", sa.Float(), nullable=False),
        sa.Column("spent_after", sa.Float(), nullable=False),
        sa.Column("n_values", sa.Integer(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.Column("created_at", evalwatch.storage.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("dp_releases", schema=None) as batch_op:
        batch_op.create_index("ix_dp_releases_dataset", ["dataset"], unique=False)


def downgrade() -> None:
    op.drop_table("dp_releases")
    op.drop_table("dp_budgets")
