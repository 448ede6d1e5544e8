"""One contract test over every registered evaluator (built-in, plugin or entry point)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from evalwatch.core import ScoreStatus
from evalwatch.evaluators import evaluator_names
from evalwatch.evaluators.base import (
    BaseEvaluator,
    Evaluator,
    MetricSpec,
    Sample,
    ScoreResult,
    config_hash,
    get_evaluator_class,
    options_hash,
)
from tests.evaluator_factories import FACTORIES

SAMPLES = [
    Sample(
        subject_id=11,
        prompt="What is the capital of France?",
        response="The capital of France is Paris.",
        reference="Paris",
    ),
    Sample(subject_id=12, prompt="Say nothing.", response=""),
    Sample(
        subject_id=13,
        prompt="Return the order as JSON.",
        response='{"order": 42, "items": ["tea"]}',
        meta={"expects_json": True},
    ),
    Sample(
        subject_id=14,
        prompt="Who can I contact?",
        response="I'm sorry, but I can't share that. Try support@example.com. " * 20,
        context="Support policy: never share personal emails.",
    ),
    Sample(subject_id=15, subject_type="output", prompt="2+2?", response="4", reference="4"),
]


@pytest.fixture(scope="module")
def instances(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BaseEvaluator[Any]]:
    return {}


def _instance(
    name: str, cache: dict[str, BaseEvaluator[Any]], tmp: pytest.TempPathFactory
) -> BaseEvaluator[Any]:
    if name not in FACTORIES:
        pytest.fail(
            f"evaluator {name!r} is registered but tests/evaluator_factories.py has no factory "
            "for it; add one so the contract test can check it"
        )
    if name not in cache:
        cache[name] = FACTORIES[name](tmp)
    return cache[name]


@pytest.mark.parametrize("name", evaluator_names())
def test_evaluator_contract(
    name: str,
    instances: dict[str, BaseEvaluator[Any]],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    ev = _instance(name, instances, tmp_path_factory)
    assert isinstance(ev, Evaluator)
    assert ev.name == name

    # Provenance names the evaluator, its version and config, with the config's hash.
    prov = ev.provenance()
    assert prov.name == name and prov.version
    assert prov.config == ev.config.model_dump(mode="json")
    assert prov.config_hash == config_hash(ev.config)
    json.dumps(prov.config)

    # Metrics are a non-empty list of distinct names, each declaring what it means.
    assert ev.metrics and all(isinstance(m, MetricSpec) for m in ev.metrics)
    metrics = ev.metric_names
    assert metrics and len(set(metrics)) == len(metrics)
    # The catalogue knows every metric the configured evaluator stores, without it.
    assert set(metrics) <= {m.name for m in type(ev).declared_metrics()}

    # Empty batch: no results, no error.
    empty = ev.evaluate([])
    assert empty.scores == []
    assert empty.embeddings is None or len(empty.embeddings) == 0

    # One result per sample and metric, sample-major, in order.
    out = ev.evaluate(SAMPLES)
    expected = [(s.subject_id, s.subject_type, m) for s in SAMPLES for m in metrics]
    assert [(r.subject_id, r.subject_type, r.metric) for r in out.scores] == expected
    for r in out.scores:
        if r.status == ScoreStatus.ok:
            assert r.value is not None
        else:
            assert r.value is None and r.reason, f"unscored result without a reason: {r}"
        # Results serialise and round-trip.
        assert ScoreResult.model_validate_json(r.model_dump_json()) == r
    if out.embeddings is not None:
        assert out.embeddings.shape[0] == len(SAMPLES)
        assert out.embedding_model

    # The same batch in reverse gives the same results per sample (order is restored).
    back = ev.evaluate(list(reversed(SAMPLES)))
    fwd = {(r.subject_id, r.metric): r for r in out.scores}
    for r in back.scores:
        f = fwd[(r.subject_id, r.metric)]
        assert r.status == f.status
        if r.value is not None and f.value is not None:
            assert r.value == pytest.approx(f.value, abs=1e-4)


# Options that only say how a score is computed, never what it is, by their usual names.
RUNTIME_NAMES = {"device", "dtype", "batch_size", "concurrency", "timeout_s", "max_retries"}


@pytest.mark.parametrize("name", evaluator_names())
def test_config_fields_declare_whether_they_change_scores(name: str) -> None:
    config_cls = get_evaluator_class(name).Config
    runtime = config_cls.runtime_fields()
    assert runtime <= set(config_cls.model_fields)
    # Each such option is declared runtime-only on its field, in the schema users see.
    props = config_cls.model_json_schema().get("properties", {})
    for field in RUNTIME_NAMES & set(config_cls.model_fields):
        assert field in runtime, f"{name}.{field} changes no score; mark it runtime-only"
        assert props[field].get("runtime") is True
    # The score key's hash covers exactly the other options (checked on the defaults).
    config = config_cls.model_validate({})
    assert set(config.score_options()) == set(config_cls.model_fields) - runtime
    assert config_hash(config) == options_hash(config.score_options())


def test_unknown_factory_fails_loudly(tmp_path_factory: pytest.TempPathFactory) -> None:
    with pytest.raises(pytest.fail.Exception, match="no factory"):
        _instance("no-such-evaluator-xyz", {}, tmp_path_factory)
