"""score key carries the options hash; run <-> score membership

Scores become unique per subject, evaluator, version, score-relevant options hash and metric
(``uq_score_key``), and ``run_scores`` records which scores each run reports, computed by it or
reused from an earlier run.

Existing stores are carried over: each score's ``config_hash`` becomes the hash of its run's
score-relevant options for that evaluator (the options recorded on the run, less the
runtime-only ones), each run's recorded provenance gets the same hash, and every score is a
member of the run that wrote it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 12:40:00
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The runtime-only options of the built-in evaluators at this revision (the fields their
# configs mark ``json_schema_extra={"runtime": True}``), frozen here so that this migration
# computes the same hash on any later code. Another evaluator keeps every option, which is
# the safe side: its next run scores again instead of reusing a score of other options.
RUNTIME_FIELDS: dict[str, frozenset[str]] = {
    "embedding": frozenset({"model_id", "device", "dtype", "batch_size", "allow_download"}),
    "toxicity": frozenset({"device", "dtype", "batch_size", "allow_download"}),
    "judge": frozenset(
        {
            "cache",
            "concurrency",
            "timeout_s",
            "max_retries",
            "budget_usd",
            "backoff_base_s",
            "backoff_max_s",
            "max_output_chars",
        }
    ),
}

_runs = sa.table("eval_runs", sa.column("id", sa.Integer), sa.column("evaluators", sa.JSON))
_scores = sa.table(
    "scores",
    sa.column("id", sa.Integer),
    sa.column("run_id", sa.Integer),
    sa.column("evaluator", sa.String),
    sa.column("config_hash", sa.String),
)


def options_hash(evaluator: str, config: Mapping[str, Any]) -> str:
    """``evalwatch.evaluators.base.config_hash`` of a recorded config, as of this revision."""
    runtime = RUNTIME_FIELDS.get(evaluator, frozenset())
    options = {k: v for k, v in config.items() if k not in runtime}
    return hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:16]


def _rehash(conn: sa.Connection) -> None:
    rows = conn.execute(sa.select(_runs.c.id, _runs.c.evaluators)).all()
    for run_id, evaluators in rows:
        if isinstance(evaluators, str):
            evaluators = json.loads(evaluators)
        if not isinstance(evaluators, dict):
            continue
        changed = False
        for name, prov in evaluators.items():
            config = prov.get("config") if isinstance(prov, dict) else None
            if not isinstance(config, dict):
                continue  # nothing recorded to hash: the scores keep their hash
            new = options_hash(name, config)
            conn.execute(
                sa.update(_scores)
                .where(_scores.c.run_id == run_id, _scores.c.evaluator == name)
                .values(config_hash=new)
            )
            if prov.get("config_hash") != new:
                prov["config_hash"] = new
                changed = True
        if changed:
            conn.execute(sa.update(_runs).where(_runs.c.id == run_id).values(evaluators=evaluators))


def upgrade() -> None:
    conn = op.get_bind()
    _rehash(conn)
    with op.batch_alter_table("scores", schema=None) as batch_op:
        batch_op.drop_constraint("uq_score_subject_metric", type_="unique")
        batch_op.create_unique_constraint(
            "uq_score_key",
            # Subject first: a run looks its sample's stored scores up by subject ids.
            [
                "subject_id",
                "subject_type",
                "evaluator",
                "evaluator_version",
                "config_hash",
                "metric",
            ],
        )
    op.create_table(
        "run_scores",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("score_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["eval_runs.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["score_id"], ["scores.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "score_id"),
    )
    with op.batch_alter_table("run_scores", schema=None) as batch_op:
        batch_op.create_index("ix_run_scores_score", ["score_id"], unique=False)
    # Until now a run reported the scores it wrote: those are its members.
    conn.execute(sa.text("INSERT INTO run_scores (run_id, score_id) SELECT run_id, id FROM scores"))


def downgrade() -> None:
    with op.batch_alter_table("run_scores", schema=None) as batch_op:
        batch_op.drop_index("ix_run_scores_score")
    op.drop_table("run_scores")
    # The old key has no options hash: keep the first score of each old key.
    op.execute(
        sa.text(
            "DELETE FROM scores WHERE id NOT IN (SELECT MIN(id) FROM scores GROUP BY "
            "subject_type, subject_id, evaluator, evaluator_version, metric)"
        )
    )
    with op.batch_alter_table("scores", schema=None) as batch_op:
        batch_op.drop_constraint("uq_score_key", type_="unique")
        batch_op.create_unique_constraint(
            "uq_score_subject_metric",
            ["subject_type", "subject_id", "evaluator", "evaluator_version", "metric"],
        )
