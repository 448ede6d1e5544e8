"""Evaluating a model on a versioned test set: outputs -> score batches -> finish, one run.

:func:`prepare_dataset_run` is the prepare step (resolve the test set, obtain the answers,
create or resume the run through :func:`open_dataset_run`); scoring and finishing are the
shared steps of :mod:`evalwatch.runs.common`. The CLI and the gate run them in this process
(:func:`evaluate_dataset`, :func:`evaluate_prepared`); the ``evaluate-dataset`` flow runs the
same steps as tasks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pydantic import BaseModel, Field, model_validator
from rich.console import Console
from sqlalchemy.engine import Engine

from evalwatch.core import SubjectType
from evalwatch.evaluators.base import DEFAULT_EVALUATORS, BaseEvaluator
from evalwatch.evaluators.runner import DEFAULT_CHUNK_SIZE
from evalwatch.ingest.datasets import ParsedOutputs, read_outputs, store_outputs_file
from evalwatch.ingest.readers import UnreadableFileError
from evalwatch.runs.common import (
    PlannedRun,
    build_evaluators,
    evaluate_here,
    evaluator_provenance,
)
from evalwatch.runs.generate import generate_outputs
from evalwatch.runs.summary import RunFacts, RunPlan, RunSummary
from evalwatch.settings import Settings
from evalwatch.storage.models import Dataset
from evalwatch.storage.repo import (
    content_hash,
    dataset_items,
    get_dataset,
    insert_model_outputs,
    latest_outputs,
    open_run,
    output_models,
)

__all__ = [
    "DatasetOutcome",
    "DatasetParams",
    "DatasetRunCheck",
    "DatasetRunError",
    "PreparedDatasetRun",
    "check_dataset_run",
    "evaluate_dataset",
    "evaluate_prepared",
    "latest_outputs",
    "open_dataset_run",
    "prepare_dataset_run",
    "store_outputs",
    "unknown_model_message",
]


class DatasetRunError(ValueError):
    """Bad input for a test-set run (unknown dataset, no outputs...)."""


class DatasetParams(BaseModel):
    """What an ``evaluate_dataset`` run evaluates.

    Exactly one of ``model`` (call it through ``EVALWATCH_TARGET__BASE_URL``) or
    ``outputs_file`` (a predictions file) says where the answers come from.

    Examples:
        >>> DatasetParams(dataset="support-qa", outputs_file="p.jsonl").model is None
        True
    """

    dataset: str = Field(description="Test-set name.")
    version: str | None = Field(None, description="Test-set version; the newest by default.")
    model: str | None = Field(None, description="Model under test, called to answer the items.")
    outputs_file: str | None = Field(None, description="Predictions file (JSONL: id, output).")
    evaluators: list[str] = Field(default_factory=lambda: list(DEFAULT_EVALUATORS))
    evaluator_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    batch_size: int = Field(DEFAULT_CHUNK_SIZE, gt=0)

    @model_validator(mode="after")
    def _one_source(self) -> DatasetParams:
        if (self.model is None) == (self.outputs_file is None):
            raise ValueError("give exactly one of model (to call) or outputs_file (predictions)")
        return self


@dataclass
class PreparedDatasetRun(PlannedRun):
    """A test-set run ready to evaluate: its plan, the answers, the built evaluators."""

    plan: RunPlan
    dataset: Dataset
    model: str
    output_ids: list[int]
    evaluators: list[BaseEvaluator[Any]] = field(default_factory=list)
    # Item key -> output id: the answers this run evaluates.
    outputs: dict[str, int] = field(default_factory=dict)

    @property
    def generation_errors(self) -> int:
        """Calls to the model under test that failed in this preparation."""
        return self.plan.facts.generation_errors


class DatasetOutcome(NamedTuple):
    """What a test-set evaluation did: the prepared run and its stored summary."""

    prepared: PreparedDatasetRun
    summary: RunSummary


def _output_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def store_outputs(
    engine: Engine,
    dataset: Dataset,
    model: str,
    rows: Sequence[Mapping[str, Any]],
    source: str | None = None,
) -> list[str]:
    """Store answers for items of ``dataset`` (rows: ``id`` = item key, ``output``, extras).

    Returns:
        Item keys in ``rows`` that the dataset version does not have (not stored).
    """
    assert dataset.id is not None
    items = {i.item_key: i.id for i in dataset_items(engine, dataset.id)}
    unknown = [str(r["id"]) for r in rows if str(r["id"]) not in items]
    out = []
    for r in rows:
        key = str(r["id"])
        if key not in items:
            continue
        text = r.get("output")
        error = r.get("error")
        out.append(
            {
                "dataset_item_id": items[key],
                "model": str(r.get("model") or model),
                "output": "" if text is None else str(text),
                "output_hash": _output_hash(f"error:{error}" if text is None else str(text)),
                "latency_ms": r.get("latency_ms"),
                "input_tokens": r.get("input_tokens"),
                "output_tokens": r.get("output_tokens"),
                "cost": r.get("cost"),
                "error": error,
                "source": source,
            }
        )
    insert_model_outputs(engine, out)
    return unknown


def unknown_model_message(engine: Engine, dataset: Dataset, model: str) -> str:
    """Why ``model`` cannot be evaluated on ``dataset``: it has no stored answer there.

    Names the model, the models that do have stored answers, and the two ways out.
    """
    assert dataset.id is not None
    stored = output_models(engine, dataset.id)
    have = (
        "stored models: " + ", ".join(f"{m} ({n} items)" for m, n in stored.items())
        if stored
        else "no model has stored answers there"
    )
    return (
        f"model {model!r} has no stored answers for {dataset.name}@{dataset.version} ({have}); "
        "load its predictions with `evalwatch datasets load-outputs FILE --name "
        f"{dataset.name}`, or set EVALWATCH_TARGET__BASE_URL to call it"
    )


@dataclass
class DatasetRunCheck:
    """What :func:`check_dataset_run` found: the test-set version and the predictions read."""

    dataset: Dataset
    predictions: ParsedOutputs | None = None


def check_dataset_run(engine: Engine, params: DatasetParams, settings: Settings) -> DatasetRunCheck:
    """Check that a test-set run can start, reading the store only (nothing is written).

    The test set must exist; a predictions file must be readable and name exactly one model;
    a model must have stored answers there or be callable (``EVALWATCH_TARGET__BASE_URL``).
    The CLI calls it before a flow starts, so bad input never reaches Prefect (whose task
    retries and failure logs are for outages), and :func:`prepare_dataset_run` calls it first.

    Args:
        engine: The store.
        params: What to run.
        settings: Settings (the target endpoint).

    Returns:
        The test-set version and, for a predictions file, its rows as read (to store).

    Raises:
        DatasetRunError: The first problem found, in one line naming the value or path.
    """
    ds = get_dataset(engine, params.dataset, params.version)
    if ds is None or ds.id is None:
        what = f"{params.dataset}@{params.version}" if params.version else params.dataset
        raise DatasetRunError(f"no test set {what!r}; load it with `evalwatch datasets load`")
    if params.outputs_file is None:
        model = str(params.model)
        if not settings.target.base_url and not latest_outputs(
            engine, ds.id, model, answered_only=True
        ):
            raise DatasetRunError(unknown_model_message(engine, ds, model))
        return DatasetRunCheck(ds)
    path = params.outputs_file
    try:
        parsed = read_outputs(engine, path, ds.name, ds.version)
    except UnreadableFileError as exc:
        raise DatasetRunError(f"predictions file {exc}") from exc
    if len(parsed.models) != 1:
        # Refused before anything is stored: the rejected rows are told, not quarantined.
        reasons = "; ".join(f"{r} ({n})" for r, n in parsed.reasons().most_common(3))
        raise DatasetRunError(
            f"{path}: predictions must name exactly one model, found {parsed.models}"
            + (f"; {len(parsed.bad)} unusable rows: {reasons}" if parsed.bad else "")
        )
    return DatasetRunCheck(ds, parsed)


def prepare_dataset_run(
    engine: Engine,
    params: DatasetParams,
    settings: Settings,
    *,
    flow_run_id: str | None = None,
) -> PreparedDatasetRun:
    """Resolve the dataset, obtain the outputs (file or model calls) and create the run.

    Raises:
        DatasetRunError: Unknown dataset/version, unreadable predictions, or no outputs
            (see :func:`check_dataset_run`, which runs first).
    """
    checked = check_dataset_run(engine, params, settings)
    ds = checked.dataset
    assert ds.id is not None
    evaluators = build_evaluators(params.evaluators, settings, params.evaluator_options, engine)
    errors = 0
    quarantined = 0
    generation_cost: float | None = None
    if checked.predictions is not None:
        loaded = store_outputs_file(engine, checked.predictions)
        quarantined = loaded.quarantined
        model = checked.predictions.models[0]
        # The file's own answers, however it was named or stored before.
        outputs = loaded.outputs[model]
    else:
        model = str(params.model)
        # Items whose last call failed are asked again: a re-run fills the gaps.
        have = latest_outputs(engine, ds.id, model, answered_only=True)
        todo = [i for i in dataset_items(engine, ds.id) if i.item_key not in have]
        if todo and settings.target.base_url:
            gens = generate_outputs(model, [(i.item_key, i.input) for i in todo], settings.target)
            errors = sum(g.error is not None for g in gens)
            costs = [g.cost for g in gens if g.cost is not None]
            generation_cost = sum(costs) if costs else None
            store_outputs(
                engine,
                ds,
                model,
                [
                    {
                        "id": g.key,
                        "output": g.output,
                        "error": g.error,
                        "latency_ms": g.latency_ms,
                        "input_tokens": g.input_tokens,
                        "output_tokens": g.output_tokens,
                        "cost": g.cost,
                    }
                    for g in gens
                ],
                source=f"model:{model}",
            )
        outputs = latest_outputs(engine, ds.id, model)
    if not outputs:
        raise DatasetRunError(f"no outputs of {model!r} for {ds.name}@{ds.version}")
    return open_dataset_run(
        engine,
        ds,
        model,
        outputs.values(),
        evaluators,
        params=params.model_dump(mode="json") | {"dataset_version": ds.version},
        evaluator_options=params.evaluator_options,
        batch_size=params.batch_size,
        outputs=outputs,
        facts=RunFacts(
            generation_errors=errors,
            quarantined_predictions=quarantined,
            generation_cost_usd=generation_cost,
        ),
        flow_run_id=flow_run_id,
    )


def open_dataset_run(
    engine: Engine,
    ds: Dataset,
    model: str,
    output_ids: Iterable[int],
    evaluators: Sequence[BaseEvaluator[Any]],
    *,
    params: Mapping[str, Any],
    evaluator_options: Mapping[str, Mapping[str, Any]],
    batch_size: int = DEFAULT_CHUNK_SIZE,
    outputs: Mapping[str, int] | None = None,
    facts: RunFacts | None = None,
    flow_run_id: str | None = None,
) -> PreparedDatasetRun:
    """Create (or resume) the test-set run that scores ``output_ids`` with ``evaluators``.

    The run key is a hash of the test-set version, the model, the outputs and the evaluators'
    provenance: the same answers and evaluators again, from any caller (a dataset run or a
    gate's side), resume the same run.

    Args:
        engine: The store.
        ds: The test-set version.
        model: The model whose answers these are.
        output_ids: The model-output ids to score.
        evaluators: The run's evaluators, built.
        params: The run's parameters as stored.
        evaluator_options: Per-evaluator option overrides (the flow's tasks rebuild with them).
        batch_size: Subjects per batch.
        outputs: Item key -> output id, when the caller has it.
        facts: What the summary carries about the answers (generation errors, cost...).
        flow_run_id: The Prefect flow run driving it.
    """
    assert ds.id is not None
    ids = sorted(set(output_ids))
    provenance = evaluator_provenance(evaluators)
    key = content_hash(
        {"kind": "dataset", "dataset": ds.id, "model": model, "outputs": ids, "ev": provenance}
    )[:32]
    # One statement creates the run or joins the one a concurrent identical call is creating.
    run, created = open_run(
        engine,
        "dataset",
        params=dict(params),
        evaluators=provenance,
        model=model,
        dataset_id=ds.id,
        run_key=key,
        flow_run_id=flow_run_id,
    )
    assert run.id is not None
    names = [ev.name for ev in evaluators]
    plan = RunPlan(
        run_id=run.id,
        kind="dataset",
        subject_type=SubjectType.output,
        evaluators=names,
        evaluator_options={n: dict(o) for n, o in evaluator_options.items()},
        batch_size=batch_size,
        resumed=not created,
        facts=(facts or RunFacts()).model_copy(
            update={
                "model": model,
                "dataset": ds.name,
                "dataset_version": ds.version,
            }
        ),
    )
    return PreparedDatasetRun(
        plan=plan,
        dataset=ds,
        model=model,
        output_ids=ids,
        evaluators=list(evaluators),
        outputs=dict(outputs or {}),
    )


def evaluate_prepared(
    engine: Engine,
    prepared: PreparedDatasetRun,
    *,
    progress: bool = True,
    console: Console | None = None,
) -> DatasetOutcome:
    """Score a prepared test-set run and finish it, in this process."""
    finished = evaluate_here(
        engine,
        prepared.plan,
        prepared.evaluators,
        prepared.output_ids,
        progress=progress,
        console=console,
    )
    return DatasetOutcome(prepared, finished.summary)


def evaluate_dataset(
    engine: Engine,
    params: DatasetParams,
    settings: Settings,
    *,
    progress: bool = True,
    console: Console | None = None,
) -> DatasetOutcome:
    """Run a whole test-set evaluation in this process (the CLI path; the flow splits it).

    Raises:
        DatasetRunError: Bad input (see :func:`prepare_dataset_run`); no run is created.
    """
    prepared = prepare_dataset_run(engine, params, settings)
    return evaluate_prepared(engine, prepared, progress=progress, console=console)
