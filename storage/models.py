"""The evalwatch schema: every table of the product, as SQLModel classes.

Times are stored as naive UTC and returned as aware UTC (``UTCDateTime``) so SQLite and
PostgreSQL behave the same. Free-form fields are JSON. Unique keys make every write idempotent.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

# Defined in the core layer (every layer uses them); re-exported for the tables' users.
from evalwatch.core import AlertStatus, RunStatus, ScoreStatus, SubjectType

__all__ = [
    "Alert",
    "AlertState",
    "Dataset",
    "DatasetItem",
    "DriftReportRow",
    "Embedding",
    "EvalRun",
    "EvaluatorProfile",
    "Feedback",
    "Interaction",
    "JudgeCache",
    "JudgeCalibration",
    "ModelOutput",
    "Quarantine",
    "RegressionReport",
    "RunScore",
    "RunStatus",
    "Score",
    "ScoreStatus",
    "SubjectType",
    "UTCDateTime",
    "utcnow",
]


def utcnow() -> datetime:
    """Now, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A datetime stored as naive UTC and read back as aware UTC on every backend."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        """Convert to naive UTC for storage."""
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        """Mark the stored naive UTC value as UTC."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


def _opt_ts() -> Any:
    return Field(default=None, sa_column=sa.Column(UTCDateTime(), nullable=True))


def _now(index: bool = False) -> Any:
    # A column default (not only a Python one) so bulk Core inserts get it too.
    return Field(
        default_factory=utcnow,
        sa_column=sa.Column(UTCDateTime(), nullable=False, default=utcnow, index=index),
    )


def _json(nullable: bool = True) -> Any:
    return Field(default=None, sa_column=sa.Column(sa.JSON, nullable=nullable))


def _text(nullable: bool = True) -> Any:
    return Field(default=None, sa_column=sa.Column(sa.Text, nullable=nullable))


class Interaction(SQLModel, table=True):
    """One logged LLM call from production traffic."""

    __tablename__ = "interactions"

    id: int | None = Field(default=None, primary_key=True)
    request_id: str = Field(max_length=200, unique=True, index=True)
    ts: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False, index=True))
    app: str = Field(max_length=200, index=True)
    model_name: str = Field(max_length=200)
    model_version: str = Field(max_length=200, index=True)
    prompt: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    response: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    context: str | None = _text()
    reference: str | None = _text()
    latency_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost: float | None = None
    user_hash: str | None = Field(default=None, max_length=64, index=True)
    session_hash: str | None = Field(default=None, max_length=64)
    meta: dict[str, Any] | None = Field(default=None, sa_column=sa.Column("metadata", sa.JSON))
    redactions: int = 0
    source: str | None = Field(default=None, max_length=500)
    ingested_at: datetime = _now()
    # Privacy (migration 0004): once text retention or metadata-only ingest removed the texts,
    # prompt/response are "" and context/reference None; their lengths and SHA-256 stay.
    text_removed_at: datetime | None = _opt_ts()
    text_removed_reason: str | None = Field(default=None, max_length=32)
    prompt_chars: int | None = None
    prompt_sha256: str | None = Field(default=None, max_length=64)
    response_chars: int | None = None
    response_sha256: str | None = Field(default=None, max_length=64)
    context_chars: int | None = None
    context_sha256: str | None = Field(default=None, max_length=64)
    reference_chars: int | None = None
    reference_sha256: str | None = Field(default=None, max_length=64)


class Feedback(SQLModel, table=True):
    """A user's rating or an interaction event, tied to an interaction."""

    __tablename__ = "feedback"
    __table_args__ = (sa.UniqueConstraint("feedback_key", name="uq_feedback_key"),)

    id: int | None = Field(default=None, primary_key=True)
    # Content-derived, so re-ingesting the same feedback is a no-op.
    feedback_key: str = Field(max_length=64)
    interaction_id: int = Field(foreign_key="interactions.id", index=True, ondelete="CASCADE")
    kind: str = Field(max_length=32)  # one of evalwatch.core.feedback.FEEDBACK_KINDS
    value: float | None = None
    label: str | None = Field(default=None, max_length=64)
    comment: str | None = _text()
    ts: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False, index=True))
    source: str | None = Field(default=None, max_length=500)


class Dataset(SQLModel, table=True):
    """One version of a named test set; the version is the content hash of its items."""

    __tablename__ = "datasets"
    __table_args__ = (sa.UniqueConstraint("name", "version", name="uq_dataset_version"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, index=True)
    version: str = Field(max_length=64)
    n_items: int
    source: str | None = Field(default=None, max_length=500)
    created_at: datetime = _now()


class DatasetItem(SQLModel, table=True):
    """An item of a test-set version."""

    __tablename__ = "dataset_items"
    __table_args__ = (sa.UniqueConstraint("dataset_id", "item_key", name="uq_dataset_item"),)

    id: int | None = Field(default=None, primary_key=True)
    dataset_id: int = Field(foreign_key="datasets.id", index=True, ondelete="CASCADE")
    item_key: str = Field(max_length=200)
    input: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    reference: str | None = _text()
    context: str | None = _text()
    tags: list[str] | None = _json()
    meta: dict[str, Any] | None = Field(default=None, sa_column=sa.Column("metadata", sa.JSON))


class ModelOutput(SQLModel, table=True):
    """What a model answered for a dataset item."""

    __tablename__ = "model_outputs"
    __table_args__ = (
        sa.UniqueConstraint("dataset_item_id", "model", "output_hash", name="uq_model_output"),
    )

    id: int | None = Field(default=None, primary_key=True)
    dataset_item_id: int = Field(foreign_key="dataset_items.id", index=True, ondelete="CASCADE")
    model: str = Field(max_length=200, index=True)
    output: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    output_hash: str = Field(max_length=64)
    latency_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost: float | None = None
    error: str | None = _text()
    source: str | None = Field(default=None, max_length=500)
    created_at: datetime = _now()


class EvalRun(SQLModel, table=True):
    """One evaluation run: over sampled traffic, a test set, a gate or a calibration."""

    __tablename__ = "eval_runs"

    id: int | None = Field(default=None, primary_key=True)
    run_key: str = Field(max_length=64, unique=True, index=True)
    kind: str = Field(max_length=32, index=True)  # traffic | dataset | gate | calibration | drift
    status: str = Field(default=RunStatus.running, max_length=16)
    params: dict[str, Any] | None = _json()
    model: str | None = Field(default=None, max_length=200)
    dataset_id: int | None = Field(default=None, foreign_key="datasets.id")
    evaluators: dict[str, Any] | None = _json()  # name -> {version, config_hash, config}
    summary: dict[str, Any] | None = _json()
    error: str | None = _text()
    flow_run_id: str | None = Field(default=None, max_length=64)
    started_at: datetime = _now(index=True)
    finished_at: datetime | None = _opt_ts()


class Score(SQLModel, table=True):
    """One metric of one evaluator about one subject. ``value`` is None unless status is ok.

    A score is unique per subject, evaluator, version, score-relevant options
    (``config_hash``, see ``evalwatch.evaluators.base.config_hash``) and metric: the same evaluator
    with
    the same options never scores a subject twice, and other options give other scores. Which
    runs report a score is :class:`RunScore`; ``run_id`` is only the run that computed it.
    """

    __tablename__ = "scores"
    __table_args__ = (
        # Subject first: a run looks its sample's stored scores up by subject ids.
        sa.UniqueConstraint(
            "subject_id",
            "subject_type",
            "evaluator",
            "evaluator_version",
            "config_hash",
            "metric",
            name="uq_score_key",
        ),
        sa.Index("ix_scores_run_metric", "run_id", "evaluator", "metric"),
    )

    id: int | None = Field(default=None, primary_key=True)
    # The run that computed the score (its scoring cost is that run's).
    run_id: int = Field(foreign_key="eval_runs.id", ondelete="CASCADE")
    subject_type: str = Field(max_length=16)
    subject_id: int
    evaluator: str = Field(max_length=100)
    evaluator_version: str = Field(max_length=50)
    config_hash: str = Field(max_length=64)
    metric: str = Field(max_length=100)
    value: float | None = None
    label: str | None = Field(default=None, max_length=100)
    explanation: str | None = _text()
    status: str = Field(default=ScoreStatus.ok, max_length=16)
    reason: str | None = _text()
    details: dict[str, Any] | None = _json()
    created_at: datetime = _now()


class RunScore(SQLModel, table=True):
    """A score that a run reports: every score of its sample under its evaluators' provenance.

    A run links the scores it computes and those it reuses (scored earlier, by any run, with
    the same evaluator version and score-relevant options), so its summary, report, gate and
    alerts cover its whole sample whoever computed each score.
    """

    __tablename__ = "run_scores"
    __table_args__ = (sa.Index("ix_run_scores_score", "score_id"),)

    run_id: int = Field(foreign_key="eval_runs.id", primary_key=True, ondelete="CASCADE")
    score_id: int = Field(foreign_key="scores.id", primary_key=True, ondelete="CASCADE")


class Embedding(SQLModel, table=True):
    """A response embedding (float16 bytes, little-endian) for drift checks."""

    __tablename__ = "embeddings"
    __table_args__ = (
        sa.UniqueConstraint("subject_type", "subject_id", "model", name="uq_embedding"),
    )

    id: int | None = Field(default=None, primary_key=True)
    subject_type: str = Field(max_length=16)
    subject_id: int
    model: str = Field(max_length=300)
    dim: int
    dtype: str = Field(default="float16", max_length=16)
    vector: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    created_at: datetime = _now()


class EvaluatorProfile(SQLModel, table=True):
    """What one evaluator cost in one run: GPU figures when there is a GPU, CPU/RSS otherwise."""

    __tablename__ = "evaluator_profiles"

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="eval_runs.id", index=True, ondelete="CASCADE")
    evaluator: str = Field(max_length=100)
    evaluator_version: str = Field(max_length=50)
    device: str = Field(max_length=32)
    gpu_available: bool = False
    gpu_note: str | None = _text()
    n_items: int = 0
    n_tokens: int | None = None
    seconds: float = 0.0
    load_seconds: float | None = None
    items_per_s: float | None = None
    tokens_per_s: float | None = None
    gpu_util_mean: float | None = None
    gpu_util_max: float | None = None
    gpu_mem_peak_mb: float | None = None
    gpu_temp_max_c: float | None = None
    gpu_power_mean_w: float | None = None
    gpu_energy_j: float | None = None
    torch_peak_mb: float | None = None
    cpu_percent_mean: float | None = None
    rss_peak_mb: float | None = None
    details: dict[str, Any] | None = _json()
    created_at: datetime = _now()


class DriftReportRow(SQLModel, table=True):
    """One test of a drift report; rows of one report share ``report_key``."""

    __tablename__ = "drift_reports"

    id: int | None = Field(default=None, primary_key=True)
    report_key: str = Field(max_length=64, index=True)
    created_at: datetime = _now(index=True)
    scope: dict[str, Any] | None = _json()  # app, model_version
    baseline: dict[str, Any] | None = _json()  # window or run
    current: dict[str, Any] | None = _json()
    test: str = Field(max_length=64)
    feature: str = Field(max_length=200)
    family: str | None = Field(default=None, max_length=64)
    n_baseline: int = 0
    n_current: int = 0
    statistic: float | None = None
    effect_size: float | None = None
    effect_name: str | None = Field(default=None, max_length=64)
    p_value: float | None = None
    p_adjusted: float | None = None
    verdict: str = Field(max_length=32)
    summary: str | None = _text()
    details: dict[str, Any] | None = _json()


class RegressionReport(SQLModel, table=True):
    """The outcome of one regression gate or canary comparison."""

    __tablename__ = "regression_reports"

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(default="gate", max_length=16)  # gate | canary
    created_at: datetime = _now(index=True)
    dataset_id: int | None = Field(default=None, foreign_key="datasets.id")
    baseline: dict[str, Any] | None = _json()
    candidate: dict[str, Any] | None = _json()
    policy: dict[str, Any] | None = _json()
    verdict: str = Field(max_length=32)
    exit_code: int
    report: dict[str, Any] | None = _json()


class AlertState(SQLModel, table=True):
    """Per rule and scope: how many consecutive windows breached or were clear."""

    __tablename__ = "alert_state"
    __table_args__ = (sa.UniqueConstraint("rule", "scope_key", name="uq_alert_state"),)

    id: int | None = Field(default=None, primary_key=True)
    rule: str = Field(max_length=200)
    scope_key: str = Field(max_length=400)
    consecutive_breaches: int = 0
    consecutive_clear: int = 0
    last_window_end: datetime | None = _opt_ts()
    last_value: float | None = None
    updated_at: datetime = _now()


class Alert(SQLModel, table=True):
    """An incident: open -> acknowledged -> resolved. One open alert per rule and scope."""

    __tablename__ = "alerts"
    __table_args__ = (sa.Index("ix_alerts_rule_scope_status", "rule", "scope_key", "status"),)

    id: int | None = Field(default=None, primary_key=True)
    rule: str = Field(max_length=200)
    scope_key: str = Field(max_length=400)
    severity: str = Field(max_length=16)
    status: str = Field(default=AlertStatus.open, max_length=16)
    count: int = 1
    opened_at: datetime = _now()
    last_seen_at: datetime = _now()
    acknowledged_at: datetime | None = _opt_ts()
    resolved_at: datetime | None = _opt_ts()
    last_notified_at: datetime | None = _opt_ts()
    context: dict[str, Any] | None = _json()
    deliveries: list[dict[str, Any]] | None = _json()


class Quarantine(SQLModel, table=True):
    """A rejected input row, kept raw with its source, line and every reason."""

    __tablename__ = "quarantine"
    __table_args__ = (sa.UniqueConstraint("source", "line", "raw_hash", name="uq_quarantine_row"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=32)  # traffic | feedback | dataset
    source: str = Field(max_length=500)
    line: int
    raw: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    raw_hash: str = Field(max_length=64)
    reasons: list[str] = Field(sa_column=sa.Column(sa.JSON, nullable=False))
    created_at: datetime = _now()


class JudgeCache(SQLModel, table=True):
    """A judge call's answer, keyed by model, rubric version and the exact request."""

    __tablename__ = "judge_cache"

    key: str = Field(primary_key=True, max_length=64)
    model: str = Field(max_length=200)
    rubric: str = Field(max_length=200)
    rubric_version: str = Field(max_length=50)
    response: dict[str, Any] = Field(sa_column=sa.Column(sa.JSON, nullable=False))
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost: float | None = None
    created_at: datetime = _now()


class JudgeCalibration(SQLModel, table=True):
    """Agreement of a judge with human labels."""

    __tablename__ = "judge_calibrations"

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = _now()
    judge_model: str = Field(max_length=200)
    rubric: str = Field(max_length=200)
    rubric_version: str = Field(max_length=50)
    n: int
    agreement: float | None = None
    kappa: float | None = None
    kappa_weighting: str | None = Field(default=None, max_length=16)
    position_consistency: float | None = None
    confusion: dict[str, Any] | None = _json()
    details: dict[str, Any] | None = _json()


# The other table modules register their tables on the same metadata; imported last because
# they build on the column helpers above.
from evalwatch.storage import models_dp as _models_dp  # noqa: E402,F401
from evalwatch.storage import models_privacy as _models_privacy  # noqa: E402,F401
from evalwatch.storage import models_telemetry as _models_telemetry  # noqa: E402,F401
