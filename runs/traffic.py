"""Evaluating a sample of stored traffic: sample -> validate -> score batches -> finish.

:func:`prepare_traffic_run` is the prepare step (sample, validate, create or resume the run);
scoring and finishing are the shared steps of :mod:`evalwatch.runs.common`. The CLI runs them
in this process (:func:`evaluate_traffic`); the ``evaluate-traffic`` flow runs the same steps
as tasks, one per batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field
from rich.console import Console
from sqlalchemy.engine import Engine

from evalwatch.core import SubjectType, parse_duration
from evalwatch.evaluators.base import DEFAULT_EVALUATORS, BaseEvaluator
from evalwatch.evaluators.runner import DEFAULT_CHUNK_SIZE
from evalwatch.runs.common import (
    PlannedRun,
    build_evaluators,
    evaluate_here,
    evaluator_provenance,
)
from evalwatch.runs.summary import RunFacts, RunPlan, RunSummary
from evalwatch.settings import IngestSettings, Settings
from evalwatch.storage.models import EvaluatorProfile, Interaction
from evalwatch.storage.repo import content_hash, iter_rows, open_run
from evalwatch.storage.sampling import SampleSpec, sample_interactions, window_holds_traffic
from evalwatch.storage.windows import no_data_message

__all__ = [
    "EmptySample",
    "PreparedRun",
    "TrafficOutcome",
    "TrafficParams",
    "empty_sample_message",
    "evaluate_traffic",
    "prepare_traffic_run",
    "validate_sample",
]


class TrafficParams(BaseModel):
    """What an ``evaluate_traffic`` run scores and how.

    Examples:
        >>> TrafficParams(window="1h", evaluators=["heuristics"]).evaluators
        ['heuristics']
    """

    sample: SampleSpec = Field(default_factory=SampleSpec, description="What to sample.")
    window: str | None = Field(
        None,
        description="Relative window ending now (e.g. '1h', '7d'); for schedules. "
        "Overrides sample.start/end.",
    )
    evaluators: list[str] = Field(
        default_factory=lambda: list(DEFAULT_EVALUATORS), description="Evaluator names."
    )
    evaluator_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per-evaluator options over the settings' ones."
    )
    batch_size: int = Field(DEFAULT_CHUNK_SIZE, gt=0, description="Subjects per batch/task.")

    def resolved(self, now: datetime | None = None) -> TrafficParams:
        """A copy with the relative window turned into absolute times."""
        if not self.window:
            return self
        end = now or datetime.now(UTC)
        spec = self.sample.model_copy(
            update={"start": end - parse_duration(self.window), "end": end}
        )
        return self.model_copy(update={"sample": spec, "window": None})


class EmptySample(LookupError):
    """No stored interaction matches the sample (raised only when a run must have subjects).

    Its message is :func:`empty_sample_message`'s line.
    """


def empty_sample_message(engine: Engine, spec: SampleSpec) -> str:
    """Why a sample is empty, in one line.

    An empty window gets the no-data line with the newest time the store holds
    (:func:`evalwatch.storage.windows.no_data_message`); a window whose traffic the rate or
    ``unscored_by`` left out says that instead.
    """
    if window_holds_traffic(engine, spec):
        return (
            "no interaction of the window is left in the sample "
            f"(rate {spec.rate}, seed {spec.seed}"
            + (f", unscored by {spec.unscored_by}" if spec.unscored_by else "")
            + "); nothing to evaluate"
        )
    return no_data_message(
        engine, spec.start, spec.end, apps=spec.apps, model_versions=spec.model_versions
    )


@dataclass
class PreparedRun(PlannedRun):
    """A run that is ready to evaluate: its plan, the subjects, and what validation set aside."""

    plan: RunPlan
    run_key: str
    ids: list[int]
    invalid: dict[int, list[str]] = field(default_factory=dict)
    evaluators: list[BaseEvaluator[Any]] = field(default_factory=list)

    @property
    def no_data(self) -> str | None:
        """Why the sample is empty, in one line (None when it is not): the run's headline."""
        return self.plan.facts.no_data


@dataclass
class TrafficOutcome:
    """What a traffic evaluation did: the prepared run, its stored summary, its profiles."""

    prepared: PreparedRun
    summary: RunSummary
    profiles: list[EvaluatorProfile] = field(default_factory=list)


def validate_sample(
    rows: list[dict[str, Any]], bounds: IngestSettings, now: datetime | None = None
) -> dict[int, list[str]]:
    """Reasons why sampled interactions should not be evaluated, by interaction id.

    Ingest validated every row already; this re-checks what may have changed since (the
    configured bounds) or what a scorer cannot work with.
    """
    now = now or datetime.now(UTC)
    problems: dict[int, list[str]] = {}
    for r in rows:
        reasons = []
        prompt, response = r.get("prompt") or "", r.get("response")
        if response is None:
            reasons.append("response is missing")
        if len(prompt) < bounds.min_prompt_chars:
            reasons.append(f"prompt shorter than {bounds.min_prompt_chars} characters")
        if len(prompt) > bounds.max_prompt_chars:
            reasons.append(f"prompt longer than {bounds.max_prompt_chars} characters")
        if response is not None and len(response) > bounds.max_response_chars:
            reasons.append(f"response longer than {bounds.max_response_chars} characters")
        ts = r.get("ts")
        if ts is not None and (ts - now).total_seconds() > bounds.max_future_skew_s:
            reasons.append("timestamp is in the future")
        if reasons:
            problems[r["id"]] = reasons
    return problems


def prepare_traffic_run(
    engine: Engine,
    params: TrafficParams,
    settings: Settings,
    *,
    flow_run_id: str | None = None,
    require_subjects: bool = False,
) -> PreparedRun:
    """Build the evaluators, sample, validate the sample, and create (or resume) the run.

    The run key is a hash of the resolved sample and the evaluators' provenance, so running
    the same parameters again after a crash resumes the same run.

    Raises:
        KeyError: An unknown evaluator name.
        ValueError: Invalid evaluator options.
        EmptySample: ``require_subjects`` is set and nothing matches the sample (no run is
            created).
    """
    params = params.resolved()
    evaluators = build_evaluators(params.evaluators, settings, params.evaluator_options, engine)
    provenance = evaluator_provenance(evaluators)
    ids = sample_interactions(engine, params.sample)
    # An empty sample is said in one line, never shown as a green run with empty tables.
    no_data = None if ids else empty_sample_message(engine, params.sample)
    if require_subjects and no_data is not None:
        raise EmptySample(no_data)
    invalid: dict[int, list[str]] = {}
    for rows in iter_rows(engine, Interaction, ids, 2_000):
        invalid.update(validate_sample(rows, settings.ingest))
    valid = [i for i in ids if i not in invalid]
    key = content_hash(
        {"kind": "traffic", "sample": params.sample.model_dump(mode="json"), "ev": provenance}
    )[:32]
    # One statement creates the run or joins the one a concurrent identical call is creating.
    run, created = open_run(
        engine,
        "traffic",
        params=params.model_dump(mode="json") | {"n_sampled": len(ids), "n_invalid": len(invalid)},
        evaluators=provenance,
        run_key=key,
        flow_run_id=flow_run_id,
    )
    assert run.id is not None
    plan = RunPlan(
        run_id=run.id,
        kind="traffic",
        subject_type=SubjectType.interaction,
        evaluators=[ev.name for ev in evaluators],
        evaluator_options=params.evaluator_options,
        batch_size=params.batch_size,
        resumed=not created,
        facts=RunFacts(
            n_sampled=len(ids),
            n_invalid=len(invalid),
            invalid_examples=RunFacts.invalid(invalid),
            no_data=no_data,
        ),
    )
    return PreparedRun(plan=plan, run_key=key, ids=valid, invalid=invalid, evaluators=evaluators)


def evaluate_traffic(
    engine: Engine,
    params: TrafficParams,
    settings: Settings,
    *,
    progress: bool = True,
    console: Console | None = None,
    require_subjects: bool = False,
) -> TrafficOutcome:
    """Run a whole traffic evaluation in this process (the CLI path; flows split it in tasks).

    Running the same parameters again resumes the same run: only what it has not scored yet
    is scored, and the summary (returned and stored, the same shape as the flow's) covers
    everything the run holds. A failure marks the run failed with the reason and is raised.

    Raises:
        KeyError: An unknown evaluator name.
        ValueError: Invalid evaluator options.
        EmptySample: ``require_subjects`` is set and nothing matches the sample.

    Examples:
        >>> from evalwatch.storage.db import make_engine, upgrade
        >>> eng = make_engine("sqlite://"); _ = upgrade(eng)
        >>> out = evaluate_traffic(eng, TrafficParams(evaluators=["heuristics"]), Settings(),
        ...                        progress=False)
        >>> out.summary.n_subjects, out.summary.kind
        (0, 'traffic')
    """
    prepared = prepare_traffic_run(engine, params, settings, require_subjects=require_subjects)
    finished = evaluate_here(
        engine,
        prepared.plan,
        prepared.evaluators,
        prepared.ids,
        progress=progress,
        console=console,
    )
    return TrafficOutcome(prepared, finished.summary, finished.profiles)
