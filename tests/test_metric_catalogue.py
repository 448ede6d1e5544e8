"""What a metric means, in one place: the evaluators' MetricSpecs and the catalogue over them.

A plug-in registered at runtime declares its metrics' direction and kind, and the gate, the
alert rules and the run report read them from the catalogue, as they do the built-ins'.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from evalwatch.checks.policy import default_policy
from evalwatch.checks.regression import run_gate
from evalwatch.checks.rules import RulesFile, check_rules_data
from evalwatch.core.metrics import UNDECLARED_DESCRIPTION
from evalwatch.evaluators import base
from evalwatch.evaluators.base import (
    BaseEvaluator,
    BatchResult,
    EvaluatorConfig,
    MetricKind,
    MetricSpec,
    Sample,
    ScoreResult,
    get_evaluator_class,
    register_evaluator,
)
from evalwatch.evaluators.embedding import EmbeddingEvaluator
from evalwatch.evaluators.heuristics import HeuristicsEvaluator
from evalwatch.evaluators.judge import JudgeEvaluator
from evalwatch.evaluators.metrics import (
    FIELD_METRICS,
    find_metric_spec,
    metric_catalogue,
    metric_spec,
)
from evalwatch.evaluators.rubrics import load_rubric
from evalwatch.evaluators.toxicity import ToxicityEvaluator
from evalwatch.reporting.run_report import worst_items
from evalwatch.runs.gate import effective_policy, select_metrics
from evalwatch.settings import JudgeSettings

BUILTINS = ("embedding", "heuristics", "judge", "toxicity")
PLUGIN = "test-waiting"


class _WaitingEvaluator(BaseEvaluator[EvaluatorConfig]):
    """A plug-in whose main metric is lower-is-better (seconds a user waits)."""

    name = PLUGIN
    version = "1"
    Config = EvaluatorConfig

    @property
    def metrics(self) -> list[MetricSpec]:
        return [
            MetricSpec(name="wait_s", higher_is_better=False, description="Seconds waited."),
            MetricSpec(name="words", kind=MetricKind.descriptive),
            MetricSpec(name="resolved", kind=MetricKind.rate, range=(0, 1)),
        ]

    def evaluate(self, samples: Sequence[Sample]) -> BatchResult:
        return BatchResult(
            scores=[
                ScoreResult(subject_id=s.subject_id, metric=m, value=1.0)
                for s in samples
                for m in self.metric_names
            ]
        )


class _NamesOnly(BaseEvaluator[EvaluatorConfig]):
    """A plug-in written before metrics declared their meaning: plain names."""

    name = "test-names-only"
    version = "1"
    Config = EvaluatorConfig

    @property
    def metrics(self) -> list[MetricSpec]:
        return ["legacy"]  # type: ignore[list-item]  # what an old plug-in returns

    def evaluate(self, samples: Sequence[Sample]) -> BatchResult:
        return BatchResult(scores=[])


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The two plug-ins registered for one test, the registry restored afterwards."""
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    register_evaluator(_WaitingEvaluator)
    register_evaluator(_NamesOnly)
    yield


# -- the contract --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BUILTINS)
def test_every_builtin_declares_a_spec_for_every_metric(name: str) -> None:
    declared = get_evaluator_class(name).declared_metrics()
    assert declared and all(isinstance(m, MetricSpec) for m in declared)
    assert len({m.name for m in declared}) == len(declared)
    assert all(m.description for m in declared)
    catalogue = metric_catalogue()
    assert {f"{name}.{m.name}" for m in declared} <= set(catalogue)


@pytest.mark.parametrize(
    "ev",
    [
        HeuristicsEvaluator(),
        EmbeddingEvaluator(device="cpu"),
        ToxicityEvaluator(backend="alt-profanity-check"),
        ToxicityEvaluator(backend="detoxify", model_type="unbiased"),
        JudgeEvaluator(rubrics=["helpfulness", "correctness"], settings=JudgeSettings(model="m")),
        JudgeEvaluator(rubrics=["coherence"], mode="pairwise", settings=JudgeSettings(model="m")),
    ],
    ids=lambda ev: ev.name,
)
def test_configured_metrics_are_specs_the_catalogue_knows(ev: BaseEvaluator[Any]) -> None:
    assert all(isinstance(m, MetricSpec) for m in ev.metrics)
    assert ev.metric_names == [m.name for m in ev.metrics]
    catalogue = metric_catalogue()
    for m in ev.metrics:
        assert catalogue[f"{ev.name}.{m.name}"] == m


@pytest.mark.parametrize(
    ("name", "kind", "higher_is_better"),
    [
        ("heuristics.refusal", "rate", False),
        ("heuristics.empty_response", "rate", False),
        ("heuristics.pii_leak", "rate", False),
        ("heuristics.json_valid", "rate", True),
        ("heuristics.response_chars", "descriptive", True),
        ("embedding.relevance", "score", True),
        ("toxicity.insult", "score", False),
        ("toxicity.offensive", "score", False),  # the embedded backend's label
        ("toxicity.safety", "score", True),
        ("judge.correctness", "score", True),
        ("judge.helpfulness_pairwise", "score", True),
        ("latency_ms", "score", False),
        ("output_tokens", "descriptive", True),
        ("feedback.thumbs_up", "rate", True),
    ],
)
def test_builtin_meanings(name: str, kind: str, higher_is_better: bool) -> None:
    spec = metric_spec(name)
    assert (spec.kind, spec.higher_is_better) == (kind, higher_is_better)


def test_a_pass_fail_rubric_is_a_rate(tmp_path: Path) -> None:
    rubric = load_rubric("helpfulness").model_dump(exclude={"source", "examples"})
    scale = {"min": 0, "max": 1, "labels": {0: "fail", 1: "pass"}}
    (tmp_path / "answered.yaml").write_text(
        json.dumps({**rubric, "name": "answered", "scale": scale})
    )
    judge = JudgeEvaluator(
        rubrics=["answered"], rubric_paths=[str(tmp_path)], settings=JudgeSettings(model="m")
    )
    (spec,) = judge.metrics
    assert (spec.name, spec.kind, spec.range) == ("answered", MetricKind.rate, (0.0, 1.0))
    # Only the judge's options know a user's rubric file: a caller that has them passes them.
    assert find_metric_spec("judge.answered") is None
    catalogue = metric_catalogue({"judge": judge.provenance().config})
    assert catalogue["judge.answered"] == spec
    assert catalogue["judge.answered_pairwise"].kind == MetricKind.score
    assert catalogue["judge.helpfulness"] == metric_spec("judge.helpfulness")
    # Options that no longer validate (a rubric file since deleted): the general declaration.
    assert "judge.answered" not in metric_catalogue({"judge": {"rubrics": ["gone"]}})


def test_spec_validation() -> None:
    with pytest.raises(ValueError, match=r"range low 1\.0 must be below high 0\.0"):
        MetricSpec(name="x", range=(1, 0))
    with pytest.raises(ValueError, match="a rate's range lies within"):
        MetricSpec(name="x", kind="rate", range=(0, 5))
    with pytest.raises(ValueError):
        MetricSpec(name="x", kind="ordinal")
    with pytest.raises(ValueError):
        MetricSpec(name="x", unit="s")  # type: ignore[call-arg]  # extra fields are refused


# -- the catalogue -------------------------------------------------------------------------------


def test_a_runtime_plugin_is_in_the_catalogue(plugins: None) -> None:
    catalogue = metric_catalogue()
    wait = catalogue[f"{PLUGIN}.wait_s"]
    assert (wait.kind, wait.higher_is_better, wait.description) == (
        MetricKind.score,
        False,
        "Seconds waited.",
    )
    assert catalogue[f"{PLUGIN}.words"].kind == MetricKind.descriptive
    assert metric_spec(f"{PLUGIN}.resolved").kind == MetricKind.rate


def test_a_plugin_returning_plain_names_still_works(plugins: None) -> None:
    ev = _NamesOnly()
    assert ev.metric_names == ["legacy"]
    assert "test-names-only.legacy" not in metric_catalogue()
    assert metric_spec("test-names-only.legacy") == MetricSpec.undeclared("test-names-only.legacy")


def test_an_unknown_metric_gets_the_documented_default() -> None:
    spec = metric_spec("removed-plugin.quality")
    assert find_metric_spec("removed-plugin.quality") is None
    assert (spec.name, spec.kind, spec.higher_is_better, spec.range) == (
        "removed-plugin.quality",
        MetricKind.score,
        True,
        None,
    )
    assert spec.description == UNDECLARED_DESCRIPTION
    assert not set(FIELD_METRICS) & set(metric_catalogue())  # fields are not evaluator metrics


# -- its users -----------------------------------------------------------------------------------


def test_the_gate_reads_a_plugin_metric_the_right_way_round(plugins: None) -> None:
    metric = f"{PLUGIN}.wait_s"
    base_scores = {metric: {f"q{i}": 1.0 for i in range(60)}}
    worse = {metric: {f"q{i}": 1.0 + (0.5 if i < 30 else 0.0) for i in range(60)}}
    better = {metric: {f"q{i}": 1.0 - (0.5 if i < 30 else 0.0) for i in range(60)}}
    policy = effective_policy(default_policy(), [metric])
    assert policy.metric_policy(metric).higher_is_better is False
    assert run_gate(base_scores, worse, policy=policy).verdict == "regression"
    assert run_gate(base_scores, better, policy=policy).verdict == "pass"
    # Without the catalogue the same data read as higher-is-better would have passed.
    assert run_gate(base_scores, worse, policy=default_policy()).verdict == "pass"


def test_the_gate_compares_a_plugin_rate_as_pass_fail_and_skips_descriptive(
    plugins: None,
) -> None:
    rate, words = f"{PLUGIN}.resolved", f"{PLUGIN}.words"
    assert effective_policy(default_policy(), [rate]).metric_policy(rate).kind == "binary"
    scores = {rate: {"q": 1.0}, words: {"q": 10.0}}
    keep, left = select_metrics(scores, scores, default_policy())
    assert keep == [rate]
    assert left[words].startswith("descriptive")


def test_alert_rules_accept_a_plugin_metric_from_the_catalogue(plugins: None) -> None:
    rules = RulesFile.model_validate(
        {
            "rules": [
                {"name": "slow", "selector": f"{PLUGIN}.wait_s", "comparison": ">", "threshold": 3}
            ]
        }
    )
    assert check_rules_data(rules, known_metrics=metric_catalogue()) == []
    assert check_rules_data(rules, known_metrics=["embedding.relevance"])[0].startswith(
        f"rule 'slow': selector: unknown metric '{PLUGIN}.wait_s'"
    )


def test_the_run_report_lists_a_plugin_metric_worst_end_first(plugins: None) -> None:
    values = np.array([0.5, 9.0, 2.0, 0.1])
    rows = [
        {
            "metric": metric,
            "status": "ok",
            "value": v,
            "subject_type": "interaction",
            "subject_id": i,
            "group": "v1",
            "text": f"answer {i}",
            "item": None,
            "explanation": None,
        }
        for metric in (f"{PLUGIN}.wait_s", "embedding.relevance")
        for i, v in enumerate(values)
    ]
    picked = worst_items(pd.DataFrame(rows), per_metric=2)
    by_metric = {
        m: [r["value"] for r in picked if r["metric"] == m]
        for m in (f"{PLUGIN}.wait_s", "embedding.relevance")
    }
    assert by_metric[f"{PLUGIN}.wait_s"] == [9.0, 2.0]  # lower is better: the longest waits
    assert by_metric["embedding.relevance"] == [0.1, 0.5]  # higher is better: the lowest


def test_the_overview_shows_a_plugin_store_s_graded_metrics_not_descriptive_ones(
    plugins: None,
) -> None:
    from evalwatch.reporting.overview import _trend_metrics

    scored = {f"{PLUGIN}.wait_s", f"{PLUGIN}.words", f"{PLUGIN}.resolved"}
    assert _trend_metrics(scored) == [f"{PLUGIN}.resolved", f"{PLUGIN}.wait_s"]
    # With the headline built-in metrics scored, those are shown, as before.
    assert _trend_metrics(scored | {"heuristics.refusal"}) == ["heuristics.refusal"]


class _DirectedConfig(EvaluatorConfig):
    lower_is_better: bool = False


class _Directed(BaseEvaluator[_DirectedConfig]):
    """A plug-in whose metric's direction is an option: only the run's options know it."""

    name = "test-directed"
    version = "1"
    Config = _DirectedConfig

    @property
    def metrics(self) -> list[MetricSpec]:
        return [
            MetricSpec(
                name="gap",
                higher_is_better=not self.config.lower_is_better,
                description="Characters.",
            )
        ]

    def evaluate(self, samples: Sequence[Sample]) -> BatchResult:
        return BatchResult(
            scores=[
                ScoreResult(
                    subject_id=s.subject_id,
                    subject_type=s.subject_type,
                    metric="gap",
                    value=float(len(s.response)),
                )
                for s in samples
            ]
        )


def test_the_run_report_reads_metrics_under_the_runs_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import UTC, datetime, timedelta

    from evalwatch.evaluators.metrics import run_catalogue
    from evalwatch.reporting.run_report import run_markdown
    from evalwatch.runs.traffic import TrafficParams, evaluate_traffic
    from evalwatch.settings import Settings
    from evalwatch.storage.db import make_engine, upgrade
    from evalwatch.storage.repo import get_run, insert_interactions

    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    register_evaluator(_Directed)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = make_engine(url)
    upgrade(engine)
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    insert_interactions(
        engine,
        [
            {
                "request_id": f"r{k}",
                "ts": t0 + timedelta(minutes=k),
                "app": "a",
                "model_name": "m",
                "model_version": "v1",
                "prompt": f"q{k}?",
                "response": "x" * k,
            }
            for k in range(1, 7)
        ],
    )
    params = TrafficParams(
        evaluators=["test-directed"], evaluator_options={"test-directed": {"lower_is_better": True}}
    )
    out = evaluate_traffic(engine, params, Settings(database_url=url), progress=False)
    run = get_run(engine, out.prepared.run_id)
    assert run is not None and run.id is not None
    # The general catalogue has the default direction; the run's options say lower is better.
    assert metric_catalogue()["test-directed.gap"].higher_is_better
    assert not run_catalogue(run.evaluators)["test-directed.gap"].higher_is_better
    section = run_markdown(engine, run.id).split("## Worst items")[1].split("## Evaluator")[0]
    shown = [
        float(line.split("|")[2])
        for line in section.splitlines()
        if line.startswith("| test-directed.gap")
    ]
    assert shown == [6.0, 5.0, 4.0]  # the longest first, not the shortest
    engine.dispose()
