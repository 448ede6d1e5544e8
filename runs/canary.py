"""Canary comparison: two model versions serving the same traffic window of one app.

During a progressive rollout the current version (``model_a``) and the canary
(``model_b``) answer different requests of the same window, so the comparison is unpaired
(:func:`evalwatch.checks.regression.run_canary`): per metric, the stored scores of each version's
interactions (every evaluator metric, whichever run wrote it), the traffic fields
(``latency_ms``, ``cost``; ``input_tokens`` and ``output_tokens`` when the policy lists
them), and user feedback (``feedback.rating``, ``feedback.thumbs_up``). Pass/fail metrics
such as ``heuristics.refusal`` are compared as rates. The policy's margins, rule and Holm
correction are the gate's, and metrics get the direction their evaluator declares
(:func:`evalwatch.evaluators.metrics.metric_spec`).

The outcome is stored as a ``regression_reports`` row of kind ``canary`` and the alert rules
are evaluated after it, so a rule on ``gate.verdict`` with ``scope: {kind: canary}`` can
start a rollback deployment. The canary "fails" (exit code 1) only when it is shown worse.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field, model_validator
from sqlalchemy.engine import Engine

from evalwatch.checks.policy import (
    GateInputError,
    GatePolicy,
    default_policy,
    load_policy,
    policy_from_mapping,
)
from evalwatch.checks.regression import run_canary
from evalwatch.core import ScoreStatus
from evalwatch.runs.drift import _ceil_hour as ceil_hour  # the anchor drift uses, kept in one place
from evalwatch.runs.gate import (
    GateOutcome,
    effective_policy,
    gate_outcome,
    select_metrics,
    store_gate_report,
)
from evalwatch.settings import Settings
from evalwatch.storage.frames import (
    traffic_window_feedback_frame,
    traffic_window_frame,
    traffic_window_scores_frame,
)
from evalwatch.storage.traffic_frame import newest_interaction_time
from evalwatch.storage.windows import no_data_message

__all__ = ["TRAFFIC_FIELDS", "CanaryParams", "canary_scores", "compare_versions"]

#: Interaction fields compared between the versions (descriptive ones only when listed).
TRAFFIC_FIELDS: tuple[str, ...] = ("latency_ms", "cost", "input_tokens", "output_tokens")


class CanaryParams(BaseModel):
    """Which two versions of which app to compare, over which window.

    Examples:
        >>> from datetime import timedelta
        >>> CanaryParams(app="support-bot", model_a="v1", model_b="v2",
        ...              window=timedelta(hours=24)).policy_file is None
        True
    """

    app: str = Field(min_length=1)
    model_a: str = Field(min_length=1, description="Current version (the baseline).")
    model_b: str = Field(min_length=1, description="Canary version.")
    window: timedelta = Field(description="Length of the traffic window.")
    until: datetime | None = Field(
        None,
        description="Window end (exclusive); default: the hour after the newest interaction of "
        "the app's two versions (as `drift` anchors its window).",
    )
    policy_file: str | None = None
    policy: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> CanaryParams:
        if self.model_a == self.model_b:
            raise ValueError("model_a and model_b are the same version")
        if self.window <= timedelta(0):
            raise ValueError("the window must be longer than zero")
        if self.policy_file is not None and self.policy is not None:
            raise ValueError("give policy_file or policy, not both")
        return self

    def bounds(self, engine: Engine, now: datetime | None = None) -> tuple[datetime, datetime]:
        """The window ``[start, end)``, aware UTC.

        Without ``until`` (or ``now``) the window ends at the hour after the newest stored
        interaction of the app's two versions, as ``evalwatch drift`` anchors its window, so
        the same command means the same traffic on a live store and on a copy or a replay.

        Raises:
            GateInputError: No ``until`` and the store holds no interaction of either version.

        Examples:
            >>> from datetime import UTC, datetime, timedelta
            >>> from evalwatch.storage.db import make_engine, upgrade
            >>> e = make_engine("sqlite://"); _ = upgrade(e)
            >>> p = CanaryParams(app="a", model_a="1", model_b="2", window=timedelta(hours=1),
            ...                  until=datetime(2026, 11, 2, tzinfo=UTC))
            >>> [t.hour for t in p.bounds(e)]
            [23, 0]
        """
        end = self.until or now
        if end is None:
            versions = [self.model_a, self.model_b]
            newest = newest_interaction_time(engine, [self.app], versions)
            if newest is None:
                raise GateInputError(
                    f"no interactions of app {self.app!r} for version(s) "
                    f"{', '.join(map(repr, versions))} stored; ingest traffic first"
                )
            end = ceil_hour(newest + timedelta(microseconds=1))
        if end.tzinfo is None:
            end = end.replace(tzinfo=UTC)
        return end - self.window, end


def _policy(params: CanaryParams) -> GatePolicy:
    if params.policy_file is not None:
        return load_policy(params.policy_file)
    if params.policy is not None:
        return policy_from_mapping(params.policy, source="(policy parameter)")
    return default_policy()


def _score_columns(
    scores: pd.DataFrame, versions: tuple[str, str]
) -> tuple[dict[str, pd.Series], dict[str, str]]:
    """Metric -> value per interaction, using one evaluator version shared by both sides."""
    out: dict[str, pd.Series] = {}
    used: dict[str, str] = {}
    if scores.empty:
        return out, used
    scores = scores.assign(value=scores["value"].where(scores["status"] == ScoreStatus.ok, np.nan))
    for metric, g in scores.groupby("metric", sort=True):
        best: tuple[int, str] | None = None
        for ev_version, gv in g.groupby("evaluator_version"):
            counts = gv.groupby("model_version")["interaction_id"].nunique()
            n = min(int(counts.get(v, 0)) for v in versions)
            if best is None or (n, str(ev_version)) > best:
                best = (n, str(ev_version))
        assert best is not None
        chosen = g[g["evaluator_version"] == best[1]]
        out[str(metric)] = chosen.set_index("interaction_id")["value"]
        used[str(metric)] = best[1]
    return out, used


def canary_scores(
    engine: Engine, params: CanaryParams, now: datetime | None = None
) -> tuple[dict[str, dict[str, list[float | None]]], dict[str, Any]]:
    """Per version and metric, the values of the window's interactions.

    Args:
        engine: The store.
        params: App, versions and window.
        now: Window end when ``params.until`` is unset (default: anchored at the newest
            interaction, see :meth:`CanaryParams.bounds`).

    Returns:
        ``(values, info)``: ``values[version][metric]`` is one value per interaction of that
        version (None = unscored); ``info`` has the window, counts and evaluator versions.

    Raises:
        GateInputError: A version has no interaction of the app in the window (the message
            ends with the no-data line of :func:`evalwatch.storage.windows.no_data_message`).
    """
    start, end = params.bounds(engine, now)
    versions = (params.model_a, params.model_b)
    traffic = traffic_window_frame(engine, params.app, versions, start, end)
    counts = traffic.groupby("model_version")["id"].size().to_dict() if not traffic.empty else {}
    empty = [v for v in versions if not counts.get(v)]
    if empty:
        # One line: which side is empty, and the newest time that side does have.
        raise GateInputError(
            f"no traffic of app {params.app!r} for version(s) {', '.join(map(repr, empty))}: "
            + no_data_message(engine, start, end, apps=[params.app], model_versions=empty)
        )
    columns: dict[str, pd.Series] = {
        f: traffic.set_index("id")[f] for f in TRAFFIC_FIELDS if f in traffic
    }
    score_cols, used = _score_columns(
        traffic_window_scores_frame(engine, params.app, versions, start, end), versions
    )
    columns.update(score_cols)
    feedback = traffic_window_feedback_frame(engine, params.app, versions, start, end)
    for kind, metric in (("rating", "feedback.rating"), ("thumbs", "feedback.thumbs_up")):
        fb = feedback[feedback["kind"] == kind]
        if not fb.empty:
            # The last word of a user on an interaction counts once.
            columns[metric] = fb.groupby("interaction_id")["value"].last()
    version_of = traffic.set_index("id")["model_version"]
    values: dict[str, dict[str, list[float | None]]] = {v: {} for v in versions}
    for metric, col in columns.items():
        for v in versions:
            ids = version_of.index[version_of == v]
            vals = col.reindex(ids).to_numpy(dtype=float)
            if metric.startswith("feedback."):
                vals = vals[~np.isnan(vals)]  # no feedback is not an unscored item
            values[v][metric] = [None if np.isnan(x) else float(x) for x in vals]
    info = {
        "app": params.app,
        "window": {"start": start.isoformat(), "end": end.isoformat()},
        "interactions": {v: int(counts.get(v, 0)) for v in versions},
        "evaluator_versions": used,
    }
    return values, info


def compare_versions(
    engine: Engine,
    params: CanaryParams,
    settings: Settings,
    *,
    now: datetime | None = None,
    alerts: bool = True,
) -> GateOutcome:
    """Compare a canary with the current version on one traffic window and store the result.

    Args:
        engine: The store.
        params: App, versions, window and policy.
        settings: Settings (the alert rules in force).
        now: Window end when ``params.until`` is unset (default: anchored at the newest
            interaction, see :meth:`CanaryParams.bounds`).
        alerts: Evaluate the alert rules after storing the report.

    Returns:
        The canary report (``exit_code()`` 1 when the canary is shown worse), its stored id
        and the alert events.

    Raises:
        GateInputError: No traffic for a version, an invalid policy, or nothing to compare.

    Examples:
        >>> from datetime import timedelta
        >>> from evalwatch.storage.db import make_engine, upgrade
        >>> eng = make_engine("sqlite://"); _ = upgrade(eng)
        >>> p = CanaryParams(app="a", model_a="1", model_b="2", window=timedelta(hours=1))
        >>> compare_versions(eng, p, Settings(), alerts=False)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        evalwatch.checks.policy.GateInputError: no interactions of app 'a'...
    """
    policy = _policy(params)
    values, info = canary_scores(engine, params, now)
    a, b = values[params.model_a], values[params.model_b]

    def keyed(side: dict[str, list[float | None]]) -> dict[str, dict[str, float | None]]:
        return {m: {str(i): x for i, x in enumerate(v)} for m, v in side.items()}

    metrics, left_out = select_metrics(keyed(a), keyed(b), policy)
    full = effective_policy(policy, metrics)
    meta = {
        **info,
        "model_a": params.model_a,
        "model_b": params.model_b,
        "not_compared": left_out,
    }
    report = run_canary(
        {m: np.array(a[m], dtype=float) for m in metrics if m in a},
        {m: np.array(b[m], dtype=float) for m in metrics if m in b},
        full,
        meta=meta,
    )
    window = info["window"]
    report_id = store_gate_report(
        engine,
        report,
        dataset_id=None,
        baseline={
            "app": params.app,
            "model_version": params.model_a,
            "window": window,
            "n": info["interactions"][params.model_a],
        },
        candidate={
            "app": params.app,
            "model_version": params.model_b,
            "window": window,
            "n": info["interactions"][params.model_b],
        },
    )
    return gate_outcome(engine, report, report_id, settings, alerts=alerts)
