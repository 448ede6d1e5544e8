"""Evaluating a sample of stored traffic: sample -> validate -> evaluate -> summarise."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field
from rich.console import Console
from sqlalchemy.engine import Engine

from evalwatch.evaluators.base import DEFAULT_EVALUATORS, BaseEvaluator
from evalwatch.evaluators.runner import DEFAULT_CHUNK_SIZE, RunResult, run_evaluation
from evalwatch.runs.common import (
    adopt_stored_summary,
    build_evaluators,
    evaluator_provenance,
    merge_profiles,
)
from evalwatch.settings import IngestSettings, Settings
from evalwatch.storage.models import Interaction, RunStatus
from evalwatch.storage.repo import content_hash, create_run, finish_run, get_run_by_key, iter_rows
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
        from evalwatch.commands.common import parse_duration

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
class PreparedRun:
    """A run that is ready to evaluate: its id, the subjects, and what validation set aside."""

    run_id: int
    run_key: str
    ids: list[int]
    invalid: dict[int, list[str]] = field(default_factory=dict)
    evaluators: list[BaseEvaluator[Any]] = field(default_factory=list)
    resumed: bool = False
    # Why the sample is empty, in one line (None when it is not): the run's headline.
    no_data: str | None = None


@dataclass
class TrafficOutcome:
    """What a traffic evaluation did."""

    prepared: PreparedRun
    result: RunResult


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
    resumed = get_run_by_key(engine, key) is not None
    run = create_run(
        engine,
        "traffic",
        params=params.model_dump(mode="json") | {"n_sampled": len(ids), "n_invalid": len(invalid)},
        evaluators=provenance,
        run_key=key,
        flow_run_id=flow_run_id,
    )
    assert run.id is not None
    return PreparedRun(
        run_id=run.id,
        run_key=key,
        ids=valid,
        invalid=invalid,
        evaluators=evaluators,
        resumed=resumed,
        no_data=no_data,
    )


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
    is scored, and the summary (returned and stored) covers everything the run holds.

    Raises:
        KeyError: An unknown evaluator name.
        ValueError: Invalid evaluator options.
        EmptySample: ``require_subjects`` is set and nothing matches the sample.

    Examples:
        >>> from evalwatch.storage.db import make_engine, upgrade
        >>> eng = make_engine("sqlite://"); _ = upgrade(eng)
        >>> out = evaluate_traffic(eng, TrafficParams(evaluators=["heuristics"]), Settings(),
        ...                        progress=False)
        >>> out.result.n_subjects
        0
    """
    prepared = prepare_traffic_run(engine, params, settings, require_subjects=require_subjects)
    try:
        result = run_evaluation(
            engine,
            prepared.evaluators,
            prepared.ids,
            run_id=prepared.run_id,
            chunk_size=params.batch_size,
            progress=progress,
            skip_scored=True,
            finish=False,
            console=console,
        )
        merge_profiles(engine, prepared.run_id)
        if prepared.resumed:
            # This pass scored only what an earlier one left; report the whole run.
            adopt_stored_summary(engine, result)
        summary = (
            result.summary_dict()
            | {
                "n_sampled": len(prepared.ids) + len(prepared.invalid),
                "invalid": {str(k): v for k, v in list(prepared.invalid.items())[:50]},
                "n_invalid": len(prepared.invalid),
            }
            | ({"no_data": prepared.no_data} if prepared.no_data else {})
        )
        finish_run(engine, prepared.run_id, RunStatus.completed, summary=summary)
    except BaseException as exc:
        finish_run(engine, prepared.run_id, RunStatus.failed, error=f"{type(exc).__name__}: {exc}")
        raise
    return TrafficOutcome(prepared=prepared, result=result)
