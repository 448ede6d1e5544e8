"""The typed results of an evaluation run's steps: its plan, its batches and its summary.

Every evaluation run, traffic or test set, started from the CLI or from a Prefect flow, goes
through the same three steps (prepare -> score batches -> finish) and ends with one
:class:`RunSummary`, the shape stored on the run (``eval_runs.summary``) and returned by the
flows. :class:`RunPlan` is what the prepare step hands on (small enough to pass to every task),
:class:`BatchStats` what scoring one batch did.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, Field

from evalwatch.core import SubjectType
from evalwatch.evaluators.runner import RunResult
from evalwatch.evaluators.summary import MetricSummary

__all__ = ["BatchStats", "RunFacts", "RunPlan", "RunSummary"]

# Examples of set-aside subjects kept on a run: enough to see the pattern, not every one.
INVALID_EXAMPLES = 50


class BatchStats(BaseModel):
    """What scoring one batch (or several, :meth:`combine`) of a run's subjects did.

    Examples:
        >>> a = BatchStats(n_subjects=2, scores_written=12, failed_batches={"h": 0})
        >>> b = BatchStats(n_subjects=3, scores_reused=18, failed_batches={"h": 1})
        >>> c = BatchStats.combine([a, b])
        >>> c.n_subjects, c.scores_written, c.scores_reused, c.failed_batches
        (5, 12, 18, {'h': 1})
    """

    n_subjects: int = Field(0, description="Subjects handed to the evaluators.")
    scores_written: int = Field(0, description="Scores computed and stored now.")
    scores_reused: int = Field(0, description="Stored scores this run reports without rescoring.")
    embeddings_written: int = 0
    seconds: float = Field(0.0, description="Wall seconds of scoring, summed over batches.")
    unavailable: dict[str, str] = Field(
        default_factory=dict, description="Evaluators that could not start, with the reason."
    )
    failed_batches: dict[str, int] = Field(
        default_factory=dict, description="Per evaluator, batches that raised (stored unscored)."
    )

    @classmethod
    def from_result(cls, result: RunResult) -> BatchStats:
        """The figures of one :func:`~evalwatch.evaluators.runner.run_evaluation` pass."""
        return cls(
            n_subjects=result.n_subjects,
            scores_written=result.scores_written,
            scores_reused=result.scores_reused,
            embeddings_written=result.embeddings_written,
            seconds=result.seconds,
            unavailable=dict(result.unavailable),
            failed_batches=dict(result.failed_batches),
        )

    @classmethod
    def combine(cls, parts: Iterable[BatchStats]) -> BatchStats:
        """One run's figures from those of its batches."""
        out = cls()
        for p in parts:
            out.n_subjects += p.n_subjects
            out.scores_written += p.scores_written
            out.scores_reused += p.scores_reused
            out.embeddings_written += p.embeddings_written
            out.seconds += p.seconds
            out.unavailable.update(p.unavailable)
            for name, n in p.failed_batches.items():
                out.failed_batches[name] = out.failed_batches.get(name, 0) + n
        return out


class RunFacts(BaseModel):
    """What the prepare step knows that the summary carries; fields of the other kind stay unset.

    Traffic runs fill the sampling fields, test-set runs the dataset fields.
    """

    evaluators: list[str] = Field(
        default_factory=list, description="The run's evaluators (set from the plan at finish)."
    )
    # Traffic: sampling and validation.
    n_sampled: int | None = Field(None, description="Interactions sampled (before validation).")
    n_invalid: int = Field(0, description="Sampled interactions validation set aside.")
    invalid_examples: dict[str, list[str]] = Field(
        default_factory=dict,
        description=f"Up to {INVALID_EXAMPLES} set-aside interactions (id -> reasons).",
    )
    no_data: str | None = Field(
        None, description="Why the sample is empty, in one line (None when it is not)."
    )
    # Test set: where the answers came from.
    model: str | None = None
    dataset: str | None = None
    dataset_version: str | None = None
    generation_errors: int = Field(0, description="Calls to the model under test that failed.")
    quarantined_predictions: int = Field(0, description="Predictions-file rows quarantined.")
    generation_cost_usd: float | None = Field(
        None, description="What this run's calls to the model under test cost (None: unpriced)."
    )

    @staticmethod
    def invalid(problems: dict[int, list[str]]) -> dict[str, list[str]]:
        """The examples of set-aside subjects kept on the run (JSON keys).

        Examples:
            >>> RunFacts.invalid({7: ["response is missing"]})
            {'7': ['response is missing']}
        """
        return {str(k): v for k, v in list(problems.items())[:INVALID_EXAMPLES]}


class RunPlan(BaseModel):
    """A prepared run: what the scoring and finishing steps need, without the subject ids.

    Passed to every Prefect task of a run, so it stays small; the ids travel per batch.
    """

    run_id: int
    kind: Literal["traffic", "dataset"]
    subject_type: SubjectType
    evaluators: list[str]
    evaluator_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    batch_size: int = Field(gt=0)
    resumed: bool = Field(False, description="The run existed already: this pass completes it.")
    facts: RunFacts = Field(default_factory=RunFacts)


class RunSummary(RunFacts):
    """A finished evaluation run: the one shape stored on the run and returned by every path.

    ``metrics`` and ``by_model_version`` cover every score the run reports (computed now or
    reused, and those of an earlier pass that crashed), read back from the store. The cost
    fields are filled when the run is stored (what its judge and model-under-test calls cost).
    """

    run_id: int
    kind: Literal["traffic", "dataset"]
    subject_type: SubjectType
    n_subjects: int = Field(description="Subjects the run evaluates.")
    n_scores: int = Field(description="Scores the run reports.")
    metrics: list[MetricSummary] = Field(default_factory=list)
    by_model_version: list[MetricSummary] = Field(default_factory=list)
    unavailable: dict[str, str] = Field(default_factory=dict)
    failed_batches: dict[str, int] = Field(default_factory=dict)
    scores_written: int = 0
    scores_reused: int = 0
    embeddings_written: int = 0
    seconds: float = 0.0
    profiles: list[dict[str, Any]] = Field(
        default_factory=list, description="One merged profile per evaluator (GPU/CPU figures)."
    )
    cost_usd: float | None = None
    scoring_cost_usd: float | None = None
    unpriced_scoring_calls: int | None = None

    def no_evaluator_started(self) -> bool:
        """There was something to score and none of the run's evaluators could start.

        Examples:
            >>> s = RunSummary(run_id=1, kind="traffic", subject_type="interaction",
            ...                n_subjects=3, n_scores=0, evaluators=["toxicity"],
            ...                unavailable={"toxicity": "no weights"})
            >>> s.no_evaluator_started()
            True
        """
        return (
            self.n_subjects > 0
            and bool(self.unavailable)
            and set(self.evaluators) <= set(self.unavailable)
        )

    def stored(self) -> dict[str, Any]:
        """The JSON stored on the run."""
        return self.model_dump(mode="json")
