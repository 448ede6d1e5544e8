"""``regression_gate``: the regression gate as a Prefect flow (on demand, e.g. before a deploy).

Its tasks are the steps of :mod:`evalwatch.runs.gate` that ``evalwatch gate`` runs in one
process (:func:`~evalwatch.runs.gate.run_gate_job`): plan, evaluate each side, conclude; the
alert rules are their own task so that a failure to evaluate them fails the flow run.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.states import State

from evalwatch.checks.policy import GateInputError
from evalwatch.flows._runtime import artifact_key, flow_settings, store
from evalwatch.flows._tasks import evaluate_alert_rules
from evalwatch.reporting.gate_report import gate_markdown, worst_items_markdown
from evalwatch.runs.gate import (
    GateParams,
    GatePlan,
    GateSide,
    conclude_gate,
    evaluate_side,
    plan_gate,
)

__all__ = ["compare_and_store", "evaluate_gate_side", "plan", "regression_gate"]


@task(name="plan-gate")
def plan(params: GateParams, database_url: str | None) -> GatePlan:
    """Settle the test-set version, evaluators and policy; refuse incomparable sides early."""
    return plan_gate(store(database_url), params, flow_settings(database_url))


def _retry_unless_bad_input(task: Any, task_run: Any, state: State[Any]) -> bool:
    """Retry transient failures only: bad input stays bad."""
    try:
        state.result()
    except GateInputError:
        return False
    except Exception:
        return True
    return True


@task(
    name="evaluate-gate-side",
    retries=1,
    retry_delay_seconds=5,
    retry_condition_fn=_retry_unless_bad_input,
)
def evaluate_gate_side(gate_plan: GatePlan, role: str, database_url: str | None) -> GateSide:
    """Resolve one side and run its missing evaluation (idempotent: a retry rescores nothing)."""
    return evaluate_side(
        store(database_url),
        gate_plan,
        "baseline" if role == "baseline" else "candidate",
        flow_settings(database_url),
        progress=False,
    )


@task(name="compare-and-store")
def compare_and_store(
    gate_plan: GatePlan, baseline: GateSide, candidate: GateSide, database_url: str | None
) -> dict[str, Any]:
    """Compare both sides, store the regression report, return it with its id and markdown."""
    report, report_id = conclude_gate(
        store(database_url), gate_plan, baseline, candidate, flow_settings(database_url)
    )
    extra = worst_items_markdown(report)
    markdown = gate_markdown(report) + (f"\n{extra}" if extra else "")
    return {
        "report_id": report_id,
        "verdict": report.verdict,
        "exit_code": report.exit_code(),
        "regressing_slices": report.regressing_slices,
        "reasons": report.reasons,
        "report": report.model_dump(mode="json"),
        "markdown": markdown,
    }


@flow(name="regression-gate", log_prints=True)
def regression_gate(
    dataset: str,
    baseline_run: int | None = None,
    baseline_model: str | None = None,
    candidate_run: int | None = None,
    candidate_model: str | None = None,
    candidate_outputs: str | None = None,
    policy_file: str | None = None,
    policy: dict[str, Any] | None = None,
    repeats: int | None = None,
    evaluators: list[str] | None = None,
    evaluator_options: dict[str, dict[str, Any]] | None = None,
    pairwise: bool = False,
    dataset_version: str | None = None,
    fail_on_regression: bool = False,
    database_url: str | None = None,
) -> dict[str, Any]:
    """Gate a candidate against the baseline on a test set, as ``evalwatch gate`` does.

    Publishes the report as a markdown artifact (key ``evalwatch-gate-<dataset>``), stores
    it as a regression report and evaluates the alert rules, so a "gate failed" rule fires.

    Args:
        dataset: Test-set name.
        baseline_run: Evaluation run of the baseline (or ``baseline_model``).
        baseline_model: Baseline model: its stored answers, else called.
        candidate_run: Evaluation run of the candidate (or one of the next two).
        candidate_model: Candidate model: its stored answers, else called.
        candidate_outputs: Candidate predictions file, readable by the worker.
        policy_file: Gate policy YAML file, readable by the worker.
        policy: The policy as a mapping (instead of a file).
        repeats: Judge each item this many times and average (judge only); default the
            policy's ``repeats``.
        evaluators: Evaluators; default the baseline run's, else embedding and heuristics.
        evaluator_options: Options per evaluator.
        pairwise: Also judge candidate vs baseline answers pairwise.
        dataset_version: Test-set version; default the runs', else the newest.
        fail_on_regression: End the flow run Failed when the gate does not pass (after the
            artifact, the stored report and the alerts), for callers that only see states.
        database_url: Store URL; default ``EVALWATCH_DATABASE_URL``.

    Returns:
        ``report_id``, ``verdict``, ``exit_code`` (0 pass, 1 regression or inconclusive),
        ``regressing_slices``, ``reasons``, the full ``report`` and the ``alerts``.

    Raises:
        evalwatch.checks.policy.GateInputError: Bad input (what ``evalwatch gate`` exits 2 for).
        RuntimeError: ``fail_on_regression`` and the gate did not pass.
    """
    logger = get_run_logger()
    params = GateParams(
        dataset=dataset,
        dataset_version=dataset_version,
        baseline_run=baseline_run,
        baseline_model=baseline_model,
        candidate_run=candidate_run,
        candidate_model=candidate_model,
        candidate_outputs=candidate_outputs,
        policy_file=policy_file,
        policy=policy,
        repeats=repeats,
        evaluators=evaluators,
        evaluator_options=evaluator_options or {},
        pairwise=pairwise,
    )
    gate_plan = plan(params, database_url)
    baseline = evaluate_gate_side(gate_plan, "baseline", database_url)
    candidate = evaluate_gate_side(gate_plan, "candidate", database_url)
    result = compare_and_store(gate_plan, baseline, candidate, database_url)
    create_markdown_artifact(
        markdown=result.pop("markdown"),
        key=artifact_key("evalwatch", "gate", dataset),
        description=f"regression gate on {dataset}: {result['verdict']}",
    )
    logger.info(
        "gate on %s: %s (regression report %s)", dataset, result["verdict"], result["report_id"]
    )
    result["alerts"] = evaluate_alert_rules(None, database_url)
    if fail_on_regression and result["exit_code"] != 0:
        raise RuntimeError(
            f"regression gate on {dataset}: {result['verdict']}; "
            + "; ".join(result["reasons"][:5])
        )
    return result
