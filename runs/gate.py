"""The regression gate as plain functions: resolve both sides, evaluate what is missing, compare.

A gate compares a *baseline* (what runs now) with a *candidate* on the items of one test-set
version. Each side is given as an evaluation run (``baseline_run`` / ``candidate_run``), a
model (``baseline_model`` / ``candidate_model``: its stored answers, or answers obtained by
calling it through ``EVALWATCH_TARGET__BASE_URL``) or, for the candidate, a predictions file
(``candidate_outputs``). The steps, each a function the CLI and the Prefect flow share:

1. :func:`plan_gate` loads the policy, picks the test-set version and the evaluators (those of
   the baseline run, else of the candidate run, else ``evaluators``), and refuses early when
   the sides cannot be compared.
2. :func:`evaluate_side` resolves one side to its outputs and runs whatever evaluation is
   missing, with the same evaluators and options on both sides.
3. :func:`compare_sides` checks that both sides used the same test-set version and the same
   evaluator versions and score-relevant options
   (:func:`evalwatch.checks.regression.check_comparable`),
   gathers per-item scores by item key, re-judges judge metrics ``repeats`` times, asks the
   pairwise judge when it is configured, runs :func:`evalwatch.checks.regression.run_gate`, and
   attaches
   both outputs and the evaluators' explanations to the items that regressed most.
4. :func:`store_gate_report` stores a ``regression_reports`` row, and
   :func:`evalwatch.alerting.evaluate_after_report`
   evaluates the alert rules so that a "gate failed" rule fires.

:func:`conclude_gate` is step 3 and the storing of step 4, :func:`gate_outcome` the alerting
after it (a canary's report too); :func:`run_gate_job` does all of it in this process and the
``regression-gate`` flow runs the same steps as tasks. Bad input of any kind raises
:class:`evalwatch.checks.policy.GateInputError` (exit code 2).

Metric directions: the policy file sets margins, but a metric's direction and kind are facts
about the metric, declared by its evaluator (:func:`evalwatch.evaluators.metrics.metric_spec`).
What the policy does not say about a metric comes from there (e.g. ``heuristics.refusal`` is
a rate where more is worse), so a gate without a policy never mistakes more refusals for an
improvement, and a plug-in evaluator's lower-is-better metric is gated the right way round.
Descriptive metrics (kind ``descriptive``, e.g. response length) are compared only when the
policy lists them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, Field, model_validator
from rich.console import Console
from sqlalchemy.engine import Engine

from evalwatch.checks.policy import (
    GateInputError,
    GatePolicy,
    MetricPolicy,
    default_policy,
    load_policy,
    policy_from_mapping,
)
from evalwatch.checks.regression import (
    GateReport,
    WorstItem,
    average_repeats,
    check_comparable,
    run_gate,
)
from evalwatch.core import SubjectType
from evalwatch.evaluators.base import (
    DEFAULT_EVALUATORS,
    BaseEvaluator,
    Sample,
    ScoreResult,
    score_options,
)
from evalwatch.evaluators.metrics import (
    MetricKind,
    MetricSpec,
    find_metric_spec,
    metric_catalogue,
    metric_spec,
)
from evalwatch.evaluators.runner import DEFAULT_CHUNK_SIZE
from evalwatch.runs.common import build_evaluators, evaluator_provenance
from evalwatch.runs.dataset import (
    DatasetParams,
    DatasetRunError,
    check_dataset_run,
    evaluate_dataset,
    evaluate_prepared,
    latest_outputs,
    open_dataset_run,
)
from evalwatch.settings import Settings
from evalwatch.storage.frames import output_scores_frame, run_scores_frame
from evalwatch.storage.models import Dataset, DatasetItem, EvalRun, RunStatus, ScoreStatus
from evalwatch.storage.repo import (
    dataset_items,
    get_dataset,
    get_run,
    insert_regression_report,
)

__all__ = [
    "DEFAULT_EVALUATORS",
    "GateOutcome",
    "GateParams",
    "GatePlan",
    "GateSide",
    "compare_sides",
    "conclude_gate",
    "effective_policy",
    "evaluate_side",
    "gate_outcome",
    "item_segments",
    "plan_gate",
    "run_gate_job",
    "select_metrics",
    "store_gate_report",
]

Role = Literal["baseline", "candidate"]


_JUDGE = "judge"
_TEXT_LIMIT = 2_000  # characters of an output or explanation kept in a stored report
_JUDGE_CHUNK = 256


# --------------------------------------------------------------------------------------------
# Parameters, plan and sides
# --------------------------------------------------------------------------------------------


class GateParams(BaseModel):
    """What a regression gate compares; the CLI options and the flow's parameters.

    Examples:
        >>> p = GateParams(dataset="support-qa", baseline_model="v1", candidate_outputs="c.jsonl")
        >>> p.repeats is None, p.evaluators is None
        (True, True)
    """

    dataset: str = Field(min_length=1, description="Test-set name.")
    dataset_version: str | None = Field(
        None, description="Test-set version; default: the runs' version, else the newest."
    )
    baseline_run: int | None = Field(None, description="Evaluation run of the baseline.")
    baseline_model: str | None = Field(None, description="Baseline model (stored or called).")
    candidate_run: int | None = Field(None, description="Evaluation run of the candidate.")
    candidate_model: str | None = Field(None, description="Candidate model (stored or called).")
    candidate_outputs: str | None = Field(None, description="Candidate predictions file.")
    policy_file: str | None = Field(None, description="Gate policy YAML file.")
    policy: dict[str, Any] | None = Field(None, description="Gate policy as a mapping.")
    repeats: int | None = Field(
        None, ge=1, le=20, description="Judge each item K times and average; None: the policy's."
    )
    evaluators: list[str] | None = Field(
        None, description="Evaluators; default: the baseline run's, else embedding+heuristics."
    )
    evaluator_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    pairwise: bool = Field(False, description="Also judge candidate vs baseline pairwise.")
    batch_size: int = Field(DEFAULT_CHUNK_SIZE, gt=0, description="Outputs per scoring step.")

    @model_validator(mode="after")
    def _one_source_per_side(self) -> GateParams:
        base = [x for x in (self.baseline_run, self.baseline_model) if x is not None]
        cand = [
            x
            for x in (self.candidate_run, self.candidate_model, self.candidate_outputs)
            if x is not None
        ]
        if len(base) != 1:
            raise ValueError("give exactly one of baseline_run or baseline_model")
        if len(cand) != 1:
            raise ValueError(
                "give exactly one of candidate_run, candidate_model or candidate_outputs"
            )
        if self.policy_file is not None and self.policy is not None:
            raise ValueError("give policy_file or policy, not both")
        if self.evaluators is not None and not self.evaluators:
            raise ValueError("evaluators names no evaluator")
        return self

    def side_source(self, role: Role) -> tuple[str, str]:
        """``(kind, reference)`` of a side: kind ``run``, ``model`` or ``outputs``.

        Examples:
            >>> GateParams(dataset="d", baseline_run=3, candidate_model="m").side_source("baseline")
            ('run', '3')
        """
        if role == "baseline":
            if self.baseline_run is not None:
                return "run", str(self.baseline_run)
            return "model", str(self.baseline_model)
        if self.candidate_run is not None:
            return "run", str(self.candidate_run)
        if self.candidate_model is not None:
            return "model", self.candidate_model
        return "outputs", str(self.candidate_outputs)


class GatePlan(BaseModel):
    """What :func:`plan_gate` settled: test-set version, evaluators, policy, judge extras."""

    params: GateParams
    dataset_id: int
    dataset: str
    dataset_version: str
    evaluator_options: dict[str, dict[str, Any]] = Field(
        description="Evaluator name -> full config, used on both sides."
    )
    pairwise_options: dict[str, Any] | None = Field(
        None, description="Judge config in pairwise mode, when pairwise verdicts are wanted."
    )
    repeats: int = 1
    policy: GatePolicy
    warnings: list[str] = Field(default_factory=list)


class GateSide(BaseModel):
    """One side of a gate once resolved: its outputs and the evaluators that scored them."""

    role: Role
    source: Literal["run", "model", "outputs"]
    ref: str
    model: str
    dataset_id: int
    dataset: str
    dataset_version: str
    outputs: dict[str, int] = Field(description="Item key -> model-output id.")
    evaluators: dict[str, dict[str, Any]] = Field(
        description="Provenance (version, config_hash, config) of the evaluators used."
    )
    runs: list[int] = Field(default_factory=list, description="Runs that scored this side.")
    notes: list[str] = Field(default_factory=list)

    def comparable_meta(self) -> dict[str, Any]:
        """The facts that must match between the two sides."""
        return {
            "dataset": self.dataset,
            "dataset_version": self.dataset_version,
            "evaluator_versions": {n: str(p.get("version")) for n, p in self.evaluators.items()},
            "evaluator_options": _score_options(self.evaluators),
        }

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary for the stored report."""
        return {
            "source": self.source,
            "ref": self.ref,
            "model": self.model,
            "dataset": self.dataset,
            "dataset_version": self.dataset_version,
            "n_outputs": len(self.outputs),
            "runs": sorted(set(self.runs)),
            "evaluators": {n: p.get("version") for n, p in self.evaluators.items()},
        }


@dataclass
class GateOutcome:
    """The result of a gate or canary job: the report, where it is stored, what alerted."""

    report: GateReport
    report_id: int
    alerts: list[dict[str, Any]] = field(default_factory=list)
    alert_error: str | None = None


def _score_options(evaluators: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Flatten the score-relevant options (``name.option``) so a difference names the option.

    Runtime-only options (a device, a batch size: marked on the evaluator's config fields) may
    differ between the two sides, e.g. a GPU run against a CPU run.
    """
    out: dict[str, Any] = {}
    for name, prov in evaluators.items():
        for key, value in score_options(name, prov.get("config") or {}).items():
            out[f"{name}.{key}"] = value
    return out


# --------------------------------------------------------------------------------------------
# Policy
# --------------------------------------------------------------------------------------------


def _policy_fields(spec: MetricSpec) -> dict[str, Any]:
    """The :class:`MetricPolicy` fields a metric's spec decides: its direction and kind.

    A rate is compared as pass/fail (``binary``); scores and descriptive metrics as
    ``continuous`` values.
    """
    kind = "binary" if spec.kind == MetricKind.rate else "continuous"
    return {"kind": kind, "higher_is_better": spec.higher_is_better}


_POLICY_DEFAULTS = {k: MetricPolicy.model_fields[k].default for k in ("kind", "higher_is_better")}


def effective_policy(
    policy: GatePolicy,
    metrics: Sequence[str],
    catalogue: Mapping[str, MetricSpec] | None = None,
) -> GatePolicy:
    """Complete a policy with the direction and kind its metrics declare and it does not set.

    A metric the policy lists keeps everything it sets; only ``kind`` and
    ``higher_is_better`` it leaves unset come from the metric's declared spec
    (:func:`evalwatch.evaluators.metrics.metric_spec`). Declared metrics it does not list are
    added (without a margin, so the policy's default margin applies) when they are among
    ``metrics`` and their spec differs from the policy defaults (continuous, higher is
    better); the others need no entry, and a pairwise verdict keeps the kind the gate gives it.

    Args:
        policy: The loaded policy.
        metrics: Metric names present in this comparison.
        catalogue: The metric catalogue; :func:`~evalwatch.evaluators.metrics.metric_catalogue`
            when None.

    Returns:
        A new :class:`GatePolicy`.

    Examples:
        >>> p = effective_policy(default_policy(), ["heuristics.refusal"])
        >>> p.metric_policy("heuristics.refusal").higher_is_better
        False
    """
    cat = metric_catalogue() if catalogue is None else catalogue
    listed = {m.metric for m in policy.metrics}
    out: list[MetricPolicy] = []
    for m in policy.metrics:
        spec = find_metric_spec(m.metric, cat)
        if spec is not None:
            fill = {k: v for k, v in _policy_fields(spec).items() if k not in m.model_fields_set}
            m = m.model_copy(update=fill)
        out.append(m)
    for name in sorted(set(metrics) - listed):
        spec = find_metric_spec(name, cat)
        if spec is not None and _policy_fields(spec) != _POLICY_DEFAULTS:
            out.append(MetricPolicy(metric=name, **_policy_fields(spec)))
    return policy.model_copy(update={"metrics": out})


def select_metrics(
    baseline: Mapping[str, Mapping[str, Any]],
    candidate: Mapping[str, Mapping[str, Any]],
    policy: GatePolicy,
    catalogue: Mapping[str, MetricSpec] | None = None,
) -> tuple[list[str], dict[str, str]]:
    """Which metrics to compare, and why the others are left out.

    A metric is left out when neither side has a single valid value for it (it does not
    apply to this data, e.g. ``json_valid`` without JSON requests), or when it is descriptive
    (its declared kind) and the policy does not list it.

    Args:
        baseline: Metric -> item -> value (``None``/NaN = unscored).
        candidate: The same for the candidate.
        policy: The gate policy.
        catalogue: The metric catalogue; :func:`~evalwatch.evaluators.metrics.metric_catalogue`
            when None.

    Returns:
        ``(metrics, left_out)`` with ``left_out`` metric -> reason.

    Examples:
        >>> select_metrics({"a": {"q": 1.0}, "b": {"q": None}}, {"a": {"q": 0.0}}, GatePolicy())
        (['a'], {'b': 'no valid score on either side (does not apply to these items)'})
    """
    cat = metric_catalogue() if catalogue is None else catalogue
    listed = {m.metric for m in policy.metrics}
    keep: list[str] = []
    left: dict[str, str] = {}
    for name in sorted(set(baseline) | set(candidate)):
        values = [*baseline.get(name, {}).values(), *candidate.get(name, {}).values()]
        if not any(v is not None and v == v for v in values):  # v == v: not NaN
            left[name] = "no valid score on either side (does not apply to these items)"
        elif metric_spec(name, cat).kind == MetricKind.descriptive and name not in listed:
            left[name] = "descriptive; list it in the policy's metrics to gate on it"
        else:
            keep.append(name)
    return keep, left


def _load_gate_policy(params: GateParams) -> GatePolicy:
    if params.policy_file is not None:
        return load_policy(params.policy_file)
    if params.policy is not None:
        return policy_from_mapping(params.policy, source="(policy parameter)")
    return default_policy()


# --------------------------------------------------------------------------------------------
# Planning
# --------------------------------------------------------------------------------------------


def _dataset_run(engine: Engine, run_id: int, role: Role) -> tuple[EvalRun, Dataset]:
    run = get_run(engine, run_id)
    if run is None:
        raise GateInputError(f"{role} run {run_id} does not exist")
    if run.kind != "dataset" or run.dataset_id is None:
        raise GateInputError(f"{role} run {run_id} is a {run.kind} run, not a test-set run")
    if run.status != RunStatus.completed:
        raise GateInputError(f"{role} run {run_id} is {run.status}, not completed")
    ds = _dataset_by_id(engine, run.dataset_id)
    return run, ds


def _dataset_by_id(engine: Engine, dataset_id: int) -> Dataset:
    from evalwatch.storage.db import session_scope

    with session_scope(engine) as s:
        ds = s.get(Dataset, dataset_id)
        if ds is None:
            raise GateInputError(f"test-set version {dataset_id} does not exist")
        s.expunge(ds)
        return ds


def _build(
    names: Sequence[str],
    settings: Settings,
    options: Mapping[str, Mapping[str, Any]],
    engine: Engine,
) -> list[BaseEvaluator[Any]]:
    # Through the one builder, with the store, so a judge always has its cache attached.
    try:
        return build_evaluators(names, settings, options, engine)
    except KeyError as exc:
        raise GateInputError(str(exc.args[0]) if exc.args else str(exc)) from exc
    except (ValueError, TypeError) as exc:
        raise GateInputError(f"invalid evaluator options: {exc}") from exc


def plan_gate(engine: Engine, params: GateParams, settings: Settings) -> GatePlan:
    """Settle the test-set version, evaluators and policy of a gate, and check it can run.

    Args:
        engine: The store.
        params: What to compare.
        settings: Settings (evaluator options, judge and target endpoints).

    Returns:
        The plan both sides are evaluated with.

    Raises:
        GateInputError: Unknown or unfinished runs, runs on another test set, an invalid
            policy or evaluator options, or sides that cannot be compared (the message
            lists what differs).

    Examples:
        >>> from evalwatch.storage.db import make_engine, upgrade
        >>> from evalwatch.settings import Settings
        >>> eng = make_engine("sqlite://"); _ = upgrade(eng)
        >>> plan_gate(eng, GateParams(dataset="qa", baseline_model="a", candidate_model="b"),
        ...           Settings())
        Traceback (most recent call last):
        ...
        evalwatch.checks.policy.GateInputError: no test set 'qa'...
    """
    policy = _load_gate_policy(params)
    runs = _side_runs(engine, params)
    anchor = _anchor_dataset(engine, params, runs)
    assert anchor.id is not None
    if params.candidate_outputs is not None:
        # Read the file before either side is evaluated: bad input leaves no run, no score.
        outputs = DatasetParams(
            dataset=anchor.name, version=anchor.version, outputs_file=params.candidate_outputs
        )
        try:
            check_dataset_run(engine, outputs, settings)
        except DatasetRunError as exc:
            raise GateInputError(f"candidate: {exc}") from exc

    names, options = _chosen_evaluators(params, runs)
    built = _build(names, settings, options, engine)
    resolved = {ev.name: ev.provenance().config for ev in built}
    pairwise_options = _pairwise_options(engine, params, settings, resolved)
    if not resolved and pairwise_options is None:
        raise GateInputError("no evaluator left to score the sides")
    warnings: list[str] = []
    repeats = _repeats(engine, params, settings, policy, resolved, warnings)
    plan = GatePlan(
        params=params,
        dataset_id=anchor.id,
        dataset=anchor.name,
        dataset_version=anchor.version,
        evaluator_options=resolved,
        pairwise_options=pairwise_options,
        repeats=repeats,
        policy=policy.model_copy(update={"repeats": repeats}),
        warnings=warnings,
    )
    # Fail before any expensive evaluation when the outcome is already known.
    current = {n: p for n, p in evaluator_provenance(built).items() if n in resolved}
    _check_predicted(runs, anchor, resolved, current)
    return plan


def _side_runs(engine: Engine, params: GateParams) -> dict[Role, tuple[EvalRun, Dataset]]:
    """The sides given as runs, checked to be on the gate's test set (and version)."""
    runs: dict[Role, tuple[EvalRun, Dataset]] = {}
    if params.baseline_run is not None:
        runs["baseline"] = _dataset_run(engine, params.baseline_run, "baseline")
    if params.candidate_run is not None:
        runs["candidate"] = _dataset_run(engine, params.candidate_run, "candidate")
    for role, (run, ds) in runs.items():
        if ds.name != params.dataset:
            raise GateInputError(
                f"{role} run {run.id} is on test set {ds.name!r}, not {params.dataset!r}"
            )
        if params.dataset_version is not None and ds.version != params.dataset_version:
            raise GateInputError(
                f"{role} run {run.id} is on version {ds.version} of {ds.name}, "
                f"not {params.dataset_version}"
            )
    return runs


def _anchor_dataset(
    engine: Engine, params: GateParams, runs: Mapping[Role, tuple[EvalRun, Dataset]]
) -> Dataset:
    """The test-set version compared: the runs' version, else the one asked, else the newest."""
    if runs:
        return next(iter(runs.values()))[1]
    found = get_dataset(engine, params.dataset, params.dataset_version)
    if found is None or found.id is None:
        what = params.dataset + (f"@{params.dataset_version}" if params.dataset_version else "")
        raise GateInputError(f"no test set {what!r}; load it with `evalwatch datasets load`")
    return found


def _chosen_evaluators(
    params: GateParams, runs: Mapping[Role, tuple[EvalRun, Dataset]]
) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """Evaluator names and options: those asked, else the first run's, else the defaults."""
    if params.evaluators is not None:
        names = list(dict.fromkeys(params.evaluators))
        options = {n: dict(params.evaluator_options.get(n, {})) for n in names}
    elif runs:
        prov = next(iter(runs.values()))[0].evaluators or {}
        names = list(prov)
        options = {
            n: {**(prov[n].get("config") or {}), **params.evaluator_options.get(n, {})}
            for n in names
        }
    else:
        names = list(DEFAULT_EVALUATORS)
        options = {n: dict(params.evaluator_options.get(n, {})) for n in names}
    if not names:
        raise GateInputError("no evaluator to compare with: the run records none")
    return names, options


def _pairwise_options(
    engine: Engine,
    params: GateParams,
    settings: Settings,
    resolved: dict[str, dict[str, Any]],
) -> dict[str, Any] | None:
    """The judge's full config in pairwise mode when pairwise verdicts are wanted, else None.

    A judge configured in pairwise mode is removed from ``resolved``: its verdicts compare
    the two sides; they are not a per-side score.
    """
    judge_options = resolved.get(_JUDGE)
    if judge_options is None and params.pairwise:
        judge_options = {
            **settings.evaluator_options.get(_JUDGE, {}),
            **params.evaluator_options.get(_JUDGE, {}),
        }
    if judge_options is None or not (params.pairwise or judge_options.get("mode") == "pairwise"):
        return None
    options = {**judge_options, "mode": "pairwise", "repeats": 1}
    options.pop("rubric_versions", None)
    pj = _build([_JUDGE], settings, {_JUDGE: options}, engine)[0]
    if resolved.get(_JUDGE, {}).get("mode") == "pairwise":
        resolved.pop(_JUDGE)
    return pj.provenance().config


def _repeats(
    engine: Engine,
    params: GateParams,
    settings: Settings,
    policy: GatePolicy,
    resolved: Mapping[str, Mapping[str, Any]],
    warnings: list[str],
) -> int:
    """How many times judge scores are re-judged (1 without a single-mode judge, with a note)."""
    repeats = params.repeats if params.repeats is not None else policy.repeats
    if repeats > 1 and _JUDGE not in resolved:
        warnings.append(
            f"repeats {repeats} re-judges judge scores, and this gate has no judge in "
            "single mode; each item is scored once (repeats treated as 1)"
        )
        return 1
    if repeats > 1:
        # Validates the judge's options with these repeats before anything is evaluated.
        _build([_JUDGE], settings, {_JUDGE: {**resolved[_JUDGE], "repeats": repeats}}, engine)
    return repeats


def _check_predicted(
    runs: Mapping[Role, tuple[EvalRun, Dataset]],
    anchor: Dataset,
    resolved: Mapping[str, Any],
    current: Mapping[str, Mapping[str, Any]],
) -> None:
    """Refuse sides that could not be compared once evaluated (what each side will record)."""
    predicted: dict[Role, dict[str, Any]] = {}
    for role in ("baseline", "candidate"):
        if role in runs:
            run, ds = runs[role]
            recorded = run.evaluators or {}
            evs = {n: recorded.get(n, current[n]) for n in resolved}
            predicted[role] = _meta(ds.name, ds.version, evs)
        else:
            predicted[role] = _meta(anchor.name, anchor.version, current)
    check_comparable(predicted["baseline"], predicted["candidate"], _COMPARE_KEYS)


_COMPARE_KEYS = ("dataset", "dataset_version", "evaluator_versions", "evaluator_options")


def _meta(name: str, version: str, evaluators: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    return {
        "dataset": name,
        "dataset_version": version,
        "evaluator_versions": {n: str(p.get("version")) for n, p in evaluators.items()},
        "evaluator_options": _score_options(evaluators),
    }


# --------------------------------------------------------------------------------------------
# Evaluating a side
# --------------------------------------------------------------------------------------------


def _score_outputs(
    engine: Engine,
    ds: Dataset,
    model: str,
    output_ids: Sequence[int],
    evaluators: Sequence[BaseEvaluator[Any]],
    *,
    batch_size: int,
    progress: bool,
    console: Console | None,
) -> tuple[int, dict[str, str]]:
    """Score stored outputs as one test-set run (the same run key as ``evaluate_dataset``)."""
    provenance = evaluator_provenance(evaluators)
    prepared = open_dataset_run(
        engine,
        ds,
        model,
        output_ids,
        evaluators,
        params={
            "dataset": ds.name,
            "version": ds.version,
            "model": model,
            "evaluators": [e.name for e in evaluators],
            "evaluator_options": {n: p["config"] for n, p in provenance.items()},
            "dataset_version": ds.version,
            "requested_by": "gate",
        },
        evaluator_options={n: p["config"] for n, p in provenance.items()},
        batch_size=batch_size,
    )
    outcome = evaluate_prepared(engine, prepared, progress=progress, console=console)
    return prepared.run_id, dict(outcome.summary.unavailable)


def _run_outputs(engine: Engine, run_id: int) -> dict[str, int]:
    frame = run_scores_frame(engine, run_id)
    frame = frame[frame["subject_type"] == SubjectType.output]
    out: dict[str, int] = {}
    for item, sid in zip(frame["item"], frame["subject_id"], strict=True):
        out[str(item)] = max(int(sid), out.get(str(item), 0))
    return out


def _scored_by(
    engine: Engine,
    outputs: Mapping[str, int],
    versions: Mapping[str, str],
    hashes: Mapping[str, str | None],
) -> dict[str, set[int]]:
    frame = output_scores_frame(engine, list(outputs.values()), versions, hashes)
    out: dict[str, set[int]] = {}
    for name, sid in zip(frame["evaluator"], frame["subject_id"], strict=True):
        out.setdefault(str(name), set()).add(int(sid))
    return out


def evaluate_side(
    engine: Engine,
    plan: GatePlan,
    role: Role,
    settings: Settings,
    *,
    progress: bool = True,
    console: Console | None = None,
) -> GateSide:
    """Resolve one side to its outputs and score whatever the plan's evaluators have not.

    * a run: its outputs; evaluators it lacks are run on them now;
    * a model: its stored answers on the test-set version, scored where unscored; items it
      has not answered are asked through ``EVALWATCH_TARGET__BASE_URL`` when it is set
      (``evaluate_dataset``), and a model with no stored answer must be called;
    * a predictions file: loaded and evaluated (``evaluate_dataset``).

    Args:
        engine: The store.
        plan: The gate's plan.
        role: ``baseline`` or ``candidate``.
        settings: Settings (evaluator options, target endpoint).
        progress: Show progress bars (on stderr).
        console: Where progress goes.

    Returns:
        The resolved :class:`GateSide`.

    Raises:
        GateInputError: The run has no scored outputs, the predictions file is bad, or the
            model has no answers and cannot be called.
    """
    params = plan.params
    kind, ref = params.side_source(role)
    ds = _dataset_by_id(engine, plan.dataset_id)
    assert ds.id is not None
    current = _build(list(plan.evaluator_options), settings, plan.evaluator_options, engine)
    current_prov = evaluator_provenance(current)
    if kind == "run":
        found = _run_side(engine, plan, role, int(ref), current_prov)
    else:
        found = _answered_side(
            engine, plan, role, (kind, ref), ds, settings, current_prov, progress, console
        )
    todo, missing = _unscored(engine, found, current, current_prov)
    if todo:
        run_id, more = _score_outputs(
            engine,
            ds,
            found.model,
            sorted(missing),
            todo,
            batch_size=params.batch_size,
            progress=progress,
            console=console,
        )
        found.runs.append(run_id)
        found.unavailable.update(more)
    notes = [f"evaluator {n} unavailable: {why}" for n, why in found.unavailable.items()]
    return GateSide(
        role=role,
        source=kind,
        ref=ref,
        model=found.model,
        dataset_id=ds.id,
        dataset=ds.name,
        dataset_version=ds.version,
        outputs=found.outputs,
        evaluators=dict(found.provenance),
        runs=found.runs,
        notes=list(dict.fromkeys(notes)),
    )


@dataclass
class _FoundSide:
    """A side's outputs, found or evaluated, before the scores they lack are filled in."""

    model: str
    outputs: dict[str, int]
    provenance: dict[str, Any]
    runs: list[int] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)


def _run_side(
    engine: Engine,
    plan: GatePlan,
    role: Role,
    run_id: int,
    current_prov: Mapping[str, Any],
) -> _FoundSide:
    """A side given as a run: its scored outputs, under the provenance it recorded."""
    run, _ = _dataset_run(engine, run_id, role)
    assert run.id is not None
    outputs = _run_outputs(engine, run.id)
    if not outputs:
        raise GateInputError(f"{role} run {run.id} has no scored test-set outputs")
    recorded = run.evaluators or {}
    provenance = {n: recorded.get(n, current_prov[n]) for n in plan.evaluator_options}
    return _FoundSide(str(run.model), outputs, provenance, runs=[run.id])


def _answered_side(
    engine: Engine,
    plan: GatePlan,
    role: Role,
    source: tuple[str, str],
    ds: Dataset,
    settings: Settings,
    current_prov: Mapping[str, Any],
    progress: bool,
    console: Console | None,
) -> _FoundSide:
    """A side given as a model or a predictions file: stored answers, else a test-set run."""
    kind, ref = source
    assert ds.id is not None
    found = _FoundSide(
        model=ref if kind == "model" else "",
        outputs=latest_outputs(engine, ds.id, ref) if kind == "model" else {},
        provenance=dict(current_prov),
    )
    # A model is asked only for the items it has not answered, and only when it can be.
    ask = len(found.outputs) < ds.n_items and bool(settings.target.base_url)
    if found.outputs and not ask:
        return found
    dparams = DatasetParams(
        dataset=ds.name,
        version=ds.version,
        model=ref if kind == "model" else None,
        outputs_file=ref if kind == "outputs" else None,
        evaluators=list(plan.evaluator_options),
        evaluator_options=plan.evaluator_options,
        batch_size=plan.params.batch_size,
    )
    try:
        prepared, summary = evaluate_dataset(
            engine, dparams, settings, progress=progress, console=console
        )
    except DatasetRunError as exc:
        raise GateInputError(f"{role}: {exc}") from exc
    found.model = prepared.model
    # The answers that run evaluated: a predictions file's own, whatever its path.
    found.outputs = prepared.outputs
    found.runs.append(prepared.run_id)
    found.unavailable.update(summary.unavailable)
    return found


def _unscored(
    engine: Engine,
    found: _FoundSide,
    current: Sequence[BaseEvaluator[Any]],
    current_prov: Mapping[str, Any],
) -> tuple[list[BaseEvaluator[Any]], set[int]]:
    """The evaluators with outputs left to score, and those outputs' ids.

    Only the current evaluators whose version and score options the side records: an older
    version or other options recorded by a run cannot be re-run, and the comparison will say
    so.
    """
    runnable = [
        ev
        for ev in current
        if found.provenance[ev.name].get("version") == ev.version
        and found.provenance[ev.name].get("config_hash") == current_prov[ev.name]["config_hash"]
        and ev.name not in found.unavailable
    ]
    scored = _scored_by(
        engine,
        found.outputs,
        {ev.name: ev.version for ev in runnable},
        {ev.name: current_prov[ev.name]["config_hash"] for ev in runnable},
    )
    missing: set[int] = set()
    todo: list[BaseEvaluator[Any]] = []
    for ev in runnable:
        lacking = set(found.outputs.values()) - scored.get(ev.name, set())
        if lacking:
            missing |= lacking
            todo.append(ev)
    return todo, missing


# --------------------------------------------------------------------------------------------
# Comparing
# --------------------------------------------------------------------------------------------


@dataclass
class _SideData:
    scores: dict[str, dict[str, float | None]]
    explanations: dict[str, dict[str, str]]
    texts: dict[str, str]
    rows: pd.DataFrame


def _gather(engine: Engine, side: GateSide) -> _SideData:
    versions = {n: str(p.get("version")) for n, p in side.evaluators.items()}
    hashes = {n: p.get("config_hash") for n, p in side.evaluators.items()}
    frame = output_scores_frame(engine, list(side.outputs.values()), versions, hashes)
    by_output = {oid: item for item, oid in side.outputs.items()}
    frame = frame[frame["subject_id"].isin(list(by_output))]
    scores: dict[str, dict[str, float | None]] = {}
    expl: dict[str, dict[str, str]] = {}
    texts: dict[str, str] = {}
    for r in frame.itertuples(index=False):
        item = by_output[int(r.subject_id)]
        ok = r.status == ScoreStatus.ok and r.value == r.value  # not NaN
        scores.setdefault(str(r.metric), {})[item] = float(r.value) if ok else None
        why = r.explanation if isinstance(r.explanation, str) and r.explanation else None
        if why is None and not ok:
            why = f"{r.status}: {r.reason}"
        if why:
            expl.setdefault(str(r.metric), {})[item] = why
        texts[item] = str(r.text)
    return _SideData(scores, expl, texts, frame)


def _samples(
    side: GateSide, items: Mapping[str, DatasetItem], texts: Mapping[str, str]
) -> list[tuple[str, Sample]]:
    out = []
    for key, oid in sorted(side.outputs.items()):
        item = items.get(key)
        if item is None or key not in texts:
            continue
        out.append(
            (
                key,
                Sample(
                    subject_id=oid,
                    subject_type=SubjectType.output,
                    prompt=item.input,
                    response=texts[key],
                    reference=item.reference,
                    context=item.context,
                    meta=dict(item.meta or {}),
                ),
            )
        )
    return out


def _judge_all(judge: BaseEvaluator[Any], samples: Sequence[Sample]) -> list[ScoreResult]:
    out: list[ScoreResult] = []
    for start in range(0, len(samples), _JUDGE_CHUNK):
        out.extend(judge.evaluate(samples[start : start + _JUDGE_CHUNK]).scores)
    return out


def _make_judge(engine: Engine, settings: Settings, options: dict[str, Any]) -> Any:
    judge: Any = _build([_JUDGE], settings, {_JUDGE: options}, engine)[0]
    try:
        judge.load()
    except Exception as exc:
        raise GateInputError(f"the judge cannot start: {exc}") from exc
    return judge


def _repeat_judge(
    engine: Engine,
    plan: GatePlan,
    settings: Settings,
    side: GateSide,
    data: _SideData,
    items: Mapping[str, DatasetItem],
) -> dict[str, dict[str, float]]:
    """Judge metric -> item -> mean of ``plan.repeats`` judgements (single mode)."""
    options = {**plan.evaluator_options[_JUDGE], "repeats": plan.repeats}
    judge = _make_judge(engine, settings, options)
    try:
        pairs = _samples(side, items, data.texts)
        results = _judge_all(judge, [s for _, s in pairs])
    finally:
        judge.close()
    per_metric: dict[str, dict[str, list[float | None]]] = {}
    n_metrics = len(judge.metrics)
    for i, r in enumerate(results):
        key = pairs[i // n_metrics][0]
        values: list[float | None] = []
        details = r.details or {}
        lo, hi = (details.get("scale") or [None, None])[:2]
        if r.status == ScoreStatus.ok and lo is not None and hi is not None and hi != lo:
            for entry in (details.get("models") or {}).values():
                values += [(float(v) - lo) / (hi - lo) for v in entry.get("scores") or []]
        per_metric.setdefault(f"{_JUDGE}.{r.metric}", {})[key] = values
        if r.explanation:
            data.explanations.setdefault(f"{_JUDGE}.{r.metric}", {})[key] = r.explanation
    return {m: average_repeats(v) for m, v in per_metric.items()}


def _pairwise(
    engine: Engine,
    plan: GatePlan,
    settings: Settings,
    baseline: GateSide,
    candidate: GateSide,
    base: _SideData,
    cand: _SideData,
    items: Mapping[str, DatasetItem],
) -> tuple[dict[str, dict[str, str | None]], dict[str, dict[str, str]]]:
    assert plan.pairwise_options is not None
    judge = _make_judge(engine, settings, plan.pairwise_options)
    samples: list[tuple[str, Sample]] = []
    for key, s in _samples(candidate, items, cand.texts):
        if key in base.texts:
            meta = {**s.meta, judge.config.baseline_key: base.texts[key]}
            samples.append((key, s.model_copy(update={"meta": meta})))
    try:
        results = _judge_all(judge, [s for _, s in samples])
    finally:
        judge.close()
    verdicts: dict[str, dict[str, str | None]] = {}
    expl: dict[str, dict[str, str]] = {}
    n_metrics = len(judge.metrics)
    for i, r in enumerate(results):
        key = samples[i // n_metrics][0]
        metric = f"{_JUDGE}.{r.metric}"
        ok = r.status == ScoreStatus.ok and r.label in ("win", "tie", "loss")
        verdicts.setdefault(metric, {})[key] = r.label if ok else None
        why = r.explanation or (None if ok else f"{r.status}: {r.reason}")
        if why:
            expl.setdefault(metric, {})[key] = why
    return verdicts, expl


def _clip(text: str | None) -> str | None:
    if text is None:
        return None
    return text if len(text) <= _TEXT_LIMIT else text[:_TEXT_LIMIT] + "…"


def compare_sides(
    engine: Engine,
    plan: GatePlan,
    baseline: GateSide,
    candidate: GateSide,
    settings: Settings,
) -> GateReport:
    """Compare two resolved sides item by item and return the gate's report.

    Args:
        engine: The store.
        plan: The gate's plan.
        baseline: The resolved baseline.
        candidate: The resolved candidate.
        settings: Settings (judge endpoint for repeats and pairwise verdicts).

    Returns:
        The :class:`~checks.regression.GateReport`; the worst items carry both outputs, the
        input, the reference and each side's explanation in ``details``.

    Raises:
        GateInputError: The sides differ in test-set version or evaluator versions/options,
            or an evaluator produced no score on a side.
    """
    check_comparable(baseline.comparable_meta(), candidate.comparable_meta(), _COMPARE_KEYS)
    base = _gather(engine, baseline)
    cand = _gather(engine, candidate)
    _check_scored((baseline, base), (candidate, cand))
    items = {i.item_key: i for i in dataset_items(engine, plan.dataset_id)}
    warnings = list(plan.warnings)

    if plan.repeats > 1 and _JUDGE in plan.evaluator_options:
        for side, data in ((baseline, base), (candidate, cand)):
            for metric, values in _repeat_judge(engine, plan, settings, side, data, items).items():
                data.scores[metric] = dict(values)
    pairwise: dict[str, dict[str, str | None]] = {}
    pair_expl: dict[str, dict[str, str]] = {}
    if plan.pairwise_options is not None:
        pairwise, pair_expl = _pairwise(
            engine, plan, settings, baseline, candidate, base, cand, items
        )
        _check_verdicts(pairwise, pair_expl)

    # The metrics as the evaluators declare them under this gate's options (a judge's own
    # rubric files included).
    configs = dict(plan.evaluator_options)
    if plan.pairwise_options is not None:
        configs.setdefault(_JUDGE, plan.pairwise_options)
    catalogue = metric_catalogue(configs)
    metrics, left_out = select_metrics(base.scores, cand.scores, plan.policy, catalogue)
    policy = effective_policy(plan.policy, [*metrics, *pairwise], catalogue)
    base_scores = {m: base.scores[m] for m in metrics if m in base.scores}
    cand_scores = {m: cand.scores[m] for m in metrics if m in cand.scores}
    keys = set(baseline.outputs) | set(candidate.outputs)
    tags = {k: list(items[k].tags or []) for k in keys if k in items}
    # The runs whose scores were used (earlier runs may have scored some outputs).
    for side, data in ((baseline, base), (candidate, cand)):
        side.runs = sorted(set(side.runs) | {int(r) for r in data.rows["run_id"]})
    meta = _report_meta(plan, baseline, candidate, left_out)
    policy = _fairness_defaults(policy, settings)
    segments = item_segments([items[k] for k in sorted(keys) if k in items], policy)
    report = run_gate(
        base_scores,
        cand_scores,
        tags,
        policy,
        pairwise=pairwise or None,
        meta=meta,
        item_segments=segments or None,
    )
    worst = [_with_details(w, items, base, cand, pairwise, pair_expl) for w in report.worst_items]
    return report.model_copy(
        update={"worst_items": worst, "warnings": [*warnings, *report.warnings]}
    )


def _fairness_defaults(policy: GatePolicy, settings: Settings) -> GatePolicy:
    """The policy with its fairness fields and margin filled from ``settings.fairness``."""
    fp = policy.fairness
    update: dict[str, Any] = {}
    if fp.fields is None:
        update["fields"] = list(settings.fairness.segment_fields)
    if fp.margin is None:
        update["margin"] = settings.fairness.gate_margin
    if not update:
        return policy
    return policy.model_copy(update={"fairness": fp.model_copy(update=update)})


def item_segments(
    items: Sequence[DatasetItem], policy: GatePolicy
) -> dict[str, dict[str, str | None]]:
    """Field -> item key -> segment label, from the items' metadata (the fairness slice).

    ``language`` is the item's own ``language`` field, else the language detected from its
    input (test sets keep their text). A field with fewer than two values is left out.

    Args:
        items: The test-set items compared.
        policy: The gate policy (its ``fairness.fields``, already filled).

    Returns:
        The labels of each field that has at least two segments.
    """
    from evalwatch.checks.language import LANGUAGE_FIELD, detect_languages

    out: dict[str, dict[str, str | None]] = {}
    for fld in policy.fairness.fields or []:
        labels: dict[str, str | None] = {}
        for item in items:
            value = (item.meta or {}).get(fld)
            ok = value is not None and not isinstance(value, dict | list) and value != ""
            labels[item.item_key] = str(value) if ok else None
        if fld == LANGUAGE_FIELD:
            todo = [i for i in items if labels[i.item_key] is None]
            for item, lang in zip(todo, detect_languages(i.input for i in todo), strict=True):
                labels[item.item_key] = lang
        if len({v for v in labels.values() if v is not None}) >= 2:
            out[fld] = labels
    return out


def _check_scored(*sides: tuple[GateSide, _SideData]) -> None:
    """Refuse a side that has no score at all from one of its evaluators (saying why)."""
    problems = []
    for side, data in sides:
        have = set(data.rows["evaluator"]) if not data.rows.empty else set()
        for name in side.evaluators:
            if name not in have:
                why = "; ".join(n for n in side.notes if n.startswith(f"evaluator {name} "))
                problems.append(
                    f"the {side.role} has no score from evaluator {name!r}"
                    + (f" ({why})" if why else "")
                )
    if problems:
        raise GateInputError(
            "nothing to compare for some evaluators:\n  - " + "\n  - ".join(problems)
        )


def _check_verdicts(
    pairwise: Mapping[str, Mapping[str, str | None]], expl: Mapping[str, Mapping[str, str]]
) -> None:
    """Refuse a pairwise metric the judge gave no verdict for (with up to three reasons)."""
    for metric, verdicts in pairwise.items():
        if not any(v is not None for v in verdicts.values()):
            reasons = sorted(set(expl.get(metric, {}).values()))[:3]
            raise GateInputError(
                f"the pairwise judge gave no verdict for {metric}: " + "; ".join(reasons)
            )


def _report_meta(
    plan: GatePlan, baseline: GateSide, candidate: GateSide, left_out: Mapping[str, str]
) -> dict[str, Any]:
    """What the stored report says it compared."""
    return {
        "dataset": plan.dataset,
        "dataset_version": plan.dataset_version,
        "baseline": baseline.describe(),
        "candidate": candidate.describe(),
        "evaluators": {n: p.get("version") for n, p in baseline.evaluators.items()},
        "repeats": plan.repeats,
        "pairwise": plan.pairwise_options is not None,
        "not_gated": dict(left_out),
        "notes": [*baseline.notes, *candidate.notes],
    }


def _with_details(
    w: WorstItem,
    items: Mapping[str, DatasetItem],
    base: _SideData,
    cand: _SideData,
    pairwise: Mapping[str, Any],
    pair_expl: Mapping[str, Mapping[str, str]],
) -> WorstItem:
    """A worst item with its input, reference, both outputs and the explanations."""
    item = items.get(w.item_id)
    details: dict[str, Any] = {
        "input": _clip(item.input if item else None),
        "reference": _clip(item.reference if item else None),
        "baseline_output": _clip(base.texts.get(w.item_id)),
        "candidate_output": _clip(cand.texts.get(w.item_id)),
    }
    if w.metric in pairwise:
        details["judge_explanation"] = _clip(pair_expl.get(w.metric, {}).get(w.item_id))
    else:
        details["baseline_explanation"] = _clip(base.explanations.get(w.metric, {}).get(w.item_id))
        details["candidate_explanation"] = _clip(
            cand.explanations.get(w.metric, {}).get(w.item_id)
        )
    return w.model_copy(update={"details": details})


# --------------------------------------------------------------------------------------------
# Storing and alerting
# --------------------------------------------------------------------------------------------


def store_gate_report(
    engine: Engine,
    report: GateReport,
    *,
    dataset_id: int | None,
    baseline: Mapping[str, Any],
    candidate: Mapping[str, Any],
) -> int:
    """Store a gate or canary report as a ``regression_reports`` row.

    Args:
        engine: The store.
        report: The report (its ``mode`` is the row's kind).
        dataset_id: The test-set version (None for a canary).
        baseline: What the baseline was (JSON-able).
        candidate: What the candidate was.

    Returns:
        The row's id, also set as the report's ``meta["regression_report_id"]``.
    """
    report_id = insert_regression_report(
        engine,
        {
            "kind": report.mode,
            "dataset_id": dataset_id,
            "baseline": dict(baseline),
            "candidate": dict(candidate),
            "policy": report.policy.model_dump(mode="json"),
            "verdict": report.verdict,
            "exit_code": report.exit_code(),
            "report": json.loads(report.to_json(indent=None)),
        },
    )
    report.meta["regression_report_id"] = report_id
    return report_id


def conclude_gate(
    engine: Engine,
    plan: GatePlan,
    baseline: GateSide,
    candidate: GateSide,
    settings: Settings,
) -> tuple[GateReport, int]:
    """Compare both evaluated sides and store the regression report (the gate's last step).

    Returns:
        The report and its stored id.
    """
    report = compare_sides(engine, plan, baseline, candidate, settings)
    report_id = store_gate_report(
        engine,
        report,
        dataset_id=plan.dataset_id,
        baseline=report.meta["baseline"],
        candidate=report.meta["candidate"],
    )
    return report, report_id


def gate_outcome(
    engine: Engine,
    report: GateReport,
    report_id: int,
    settings: Settings,
    *,
    alerts: bool = True,
) -> GateOutcome:
    """A stored gate or canary report with the alert rules of ``settings`` evaluated after it.

    The report stands whatever the rules do; ``alert_error`` says why they could not run.
    """
    events: list[dict[str, Any]] = []
    error = None
    if alerts:
        from evalwatch.alerting import evaluate_after_report

        events, error = evaluate_after_report(engine, settings=settings)
    return GateOutcome(report, report_id, events, error)


def run_gate_job(
    engine: Engine,
    params: GateParams,
    settings: Settings,
    *,
    progress: bool = True,
    console: Console | None = None,
    alerts: bool = True,
) -> GateOutcome:
    """Run a whole regression gate in this process (the CLI path).

    Args:
        engine: The store.
        params: What to compare.
        settings: Settings.
        progress: Show evaluation progress bars (on stderr).
        console: Where progress goes.
        alerts: Evaluate the alert rules after storing the report.

    Returns:
        The report, its stored id and the alert events.

    Raises:
        GateInputError: Bad input of any kind (exit code 2).
    """
    plan = plan_gate(engine, params, settings)
    baseline = evaluate_side(engine, plan, "baseline", settings, progress=progress, console=console)
    candidate = evaluate_side(
        engine, plan, "candidate", settings, progress=progress, console=console
    )
    report, report_id = conclude_gate(engine, plan, baseline, candidate, settings)
    return gate_outcome(engine, report, report_id, settings, alerts=alerts)
