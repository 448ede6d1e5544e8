"""The metric catalogue: what every stored metric means, built from the evaluator registry.

Scores are stored, gated and watched by alert rules under qualified names,
``evaluator.metric`` (``heuristics.refusal``, ``judge.correctness``). The catalogue maps each
such name to the :class:`~evalwatch.core.metrics.MetricSpec` its evaluator declares
(:meth:`~evalwatch.evaluators.base.BaseEvaluator.declared_metrics`), for the built-in
evaluators and for plug-ins registered with
:func:`~evalwatch.evaluators.base.register_evaluator` or through the ``evalwatch.evaluators``
entry-point group alike. Besides evaluator metrics, the gate and the canary compare a few
measures the store keeps with each interaction (:data:`FIELD_METRICS`: latency, cost, tokens,
user feedback); :func:`metric_spec` knows those too.

A name that nothing declares (the stored scores of a plug-in since removed, a typo) gets
:meth:`MetricSpec.undeclared <evalwatch.core.metrics.MetricSpec.undeclared>`: a score where
higher is better, which is what evalwatch assumed of every metric before metrics declared
their meaning.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from evalwatch.core.metrics import MetricKind, MetricSpec
from evalwatch.evaluators.base import BaseEvaluator, evaluator_names, get_evaluator_class

__all__ = [
    "FIELD_METRICS",
    "MetricKind",
    "MetricSpec",
    "find_metric_spec",
    "metric_catalogue",
    "metric_spec",
    "qualified_specs",
    "run_catalogue",
]

#: Measures stored with each interaction and its feedback rather than by an evaluator, as the
#: gate and the canary comparison name them.
FIELD_METRICS: dict[str, MetricSpec] = {
    s.name: s
    for s in [
        MetricSpec(
            name="latency_ms",
            higher_is_better=False,
            description="Response latency in milliseconds.",
        ),
        MetricSpec(
            name="cost",
            higher_is_better=False,
            description="Cost of the interaction in USD.",
        ),
        MetricSpec(
            name="input_tokens",
            kind=MetricKind.descriptive,
            description="Prompt tokens.",
        ),
        MetricSpec(
            name="output_tokens",
            kind=MetricKind.descriptive,
            description="Completion tokens.",
        ),
        MetricSpec(
            name="feedback.rating",
            range=(1, 5),
            description="User rating on the rating scale.",
        ),
        MetricSpec(
            name="feedback.thumbs_up",
            kind=MetricKind.rate,
            range=(0, 1),
            description="1 for thumbs up, 0 for thumbs down.",
        ),
    ]
}


def qualified_specs(evaluator: str, specs: Iterable[MetricSpec]) -> dict[str, MetricSpec]:
    """``evaluator.metric`` -> spec, for one evaluator's specs.

    Examples:
        >>> qualified_specs("heuristics", [MetricSpec(name="refusal", kind="rate")])
        {'heuristics.refusal': MetricSpec(name='refusal', kind=<MetricKind.rate: 'rate'>, \
higher_is_better=True, range=None, description='')}
    """
    return {f"{evaluator}.{s.name}": s for s in specs}


_DECLARED: dict[type, list[MetricSpec]] = {}


def _declared(
    cls: type[BaseEvaluator[Any]], options: Mapping[str, Any] | None = None
) -> list[MetricSpec]:
    if options is not None:
        try:
            config = cls.Config.model_validate(dict(options))
        except ValueError:  # options of another version, say: what it declares in general
            pass
        else:
            return list(cls.declared_metrics(config))
    # A class's general declaration never changes, but building a default instance may cost
    # (the judge reads its rubric files): each class is asked once.
    cached = _DECLARED.get(cls)
    if cached is None:
        cached = _DECLARED[cls] = list(cls.declared_metrics())
    return cached


def metric_catalogue(
    configs: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, MetricSpec]:
    """Every metric the registered evaluators declare, by qualified name.

    Args:
        configs: Evaluator name -> options (a run's recorded config, a gate's evaluator
            options). Those evaluators declare their metrics under these options, so that
            what depends on them is known too, e.g. the judge's rubrics from the user's files.
            Evaluators not named declare what they may store under any options.

    Returns:
        ``evaluator.metric`` -> :class:`MetricSpec`, sorted by name. Interaction fields
        (:data:`FIELD_METRICS`) are not in it: they are not evaluator metrics (an alert rule
        watches them as traffic fields).

    Examples:
        >>> cat = metric_catalogue()
        >>> cat["heuristics.refusal"].kind, cat["heuristics.refusal"].higher_is_better
        (<MetricKind.rate: 'rate'>, False)
    """
    configs = configs or {}
    out: dict[str, MetricSpec] = {}
    for name in evaluator_names():
        cls = get_evaluator_class(name)
        out |= qualified_specs(name, _declared(cls))
        if name in configs:  # declared under these options wins over the general declaration
            out |= qualified_specs(name, _declared(cls, configs[name]))
    return dict(sorted(out.items()))


def run_catalogue(provenance: Mapping[str, Any] | None) -> dict[str, MetricSpec]:
    """:func:`metric_catalogue` under the options a run recorded (``eval_runs.evaluators``).

    Args:
        provenance: Evaluator name -> ``{"version", "config_hash", "config"}``, as stored on
            the run (None: the run recorded none).

    Examples:
        >>> run_catalogue(None)["heuristics.refusal"].kind
        <MetricKind.rate: 'rate'>
    """
    configs = {
        name: prov.get("config") or {}
        for name, prov in (provenance or {}).items()
        if isinstance(prov, Mapping)
    }
    return metric_catalogue(configs)


def find_metric_spec(
    name: str, catalogue: Mapping[str, MetricSpec] | None = None
) -> MetricSpec | None:
    """The declared spec of a qualified metric name or interaction field, or None.

    Args:
        name: ``evaluator.metric``, or a name in :data:`FIELD_METRICS`.
        catalogue: The catalogue to read; :func:`metric_catalogue` when None.

    Examples:
        >>> find_metric_spec("toxicity.offensive").higher_is_better
        False
        >>> find_metric_spec("removed-plugin.score") is None
        True
    """
    cat = metric_catalogue() if catalogue is None else catalogue
    return cat.get(name) or FIELD_METRICS.get(name)


def metric_spec(name: str, catalogue: Mapping[str, MetricSpec] | None = None) -> MetricSpec:
    """The spec of a qualified metric name, with the documented default for unknown names.

    Args:
        name: ``evaluator.metric``, or a name in :data:`FIELD_METRICS`.
        catalogue: The catalogue to read; :func:`metric_catalogue` when None.

    Returns:
        The declared spec, else :meth:`MetricSpec.undeclared` (a score where higher is
        better), e.g. for the stored scores of a plug-in that is no longer installed.

    Examples:
        >>> metric_spec("latency_ms").higher_is_better
        False
        >>> metric_spec("gone.metric").kind
        <MetricKind.score: 'score'>
    """
    return find_metric_spec(name, catalogue) or MetricSpec.undeclared(name)
