"""Alert rules: the YAML schema, its validation, and the pure semantics of a rule.

A rule watches one *selector* (an evaluator metric, a traffic field, a drift, anomaly or gate
verdict, judge agreement, the evaluators' error rate or a run's cost), aggregates its items
over a *window*, compares the aggregate with a threshold and, when enough consecutive windows
breach, opens an alert. Everything here is pure: no database, no network, no clock. The store
reads the values (:mod:`evalwatch.storage.alerts`) and :mod:`alerting` ties the two together.

The schema is documented in ``docs/alert-rules.md``; the shipped defaults are in
``checks/rules/default.yaml``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeVar
from urllib.parse import quote, unquote

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from evalwatch.core import AlertStatus, parse_duration
from evalwatch.core.feedback import FEEDBACK_SIGNALS
from evalwatch.core.performance import PERF_METRICS, PERF_RENAMED
from evalwatch.core.telemetry import TELEMETRY_METRICS, resolve_selector
from evalwatch.files import InputFileError, read_input_text

__all__ = [
    "BLOCK_TYPE_SLUGS",
    "DEFAULT_RULES_PATH",
    "FAIRNESS_METRICS",
    "PREFIX_SOURCES",
    "SELECTOR_FAMILIES",
    "ActionSpec",
    "Aggregation",
    "ChannelSpec",
    "Comparison",
    "DeliveryPolicy",
    "ItemFilter",
    "Rule",
    "RuleState",
    "RulesError",
    "RulesFile",
    "Selector",
    "Severity",
    "Transition",
    "WindowOutcome",
    "aggregate",
    "check_rules",
    "check_rules_data",
    "compare",
    "complete_windows",
    "cooldown_elapsed",
    "decide",
    "evaluate_window",
    "format_scope_key",
    "item_filter",
    "load_rules",
    "parse_aggregation",
    "parse_scope_key",
    "parse_selector",
    "render_parameters",
    "transition",
]

DEFAULT_RULES_PATH = Path(__file__).parent / "rules" / "default.yaml"

Severity = Literal["info", "warning", "medium", "high", "critical"]
Comparison = Literal["<", "<=", ">", ">=", "=="]
ChannelType = Literal[
    "webhook", "slack", "teams", "pagerduty", "email", "opsgenie", "mattermost", "discord", "twilio"
]

# Prefect notification block type slug per channel type (see prefect.blocks.notifications).
BLOCK_TYPE_SLUGS: dict[str, str] = {
    "webhook": "custom-webhook",
    "slack": "slack-webhook",
    "teams": "ms-teams-webhook",
    "pagerduty": "pager-duty-webhook",
    "email": "sendgrid-email",
    "opsgenie": "opsgenie-webhook",
    "mattermost": "mattermost-webhook",
    "discord": "discord-webhook",
    "twilio": "twilio-sms",
}

Source = Literal[
    "score",
    "error_rate",
    "traffic",
    "volume",
    "drift",
    "anomaly",
    "gate",
    "kappa",
    "run_cost",
    "metric",
    "perf",
    "feedback",
    "fairness",
]

TRAFFIC_FIELDS = ("latency_ms", "input_tokens", "output_tokens", "cost")

_SPECIAL_SELECTORS: dict[str, Source] = {
    "volume": "volume",
    "drift.verdict": "drift",
    "anomaly.verdict": "anomaly",
    "gate.verdict": "gate",
    "judge.kappa": "kappa",
    "evaluators.error_rate": "error_rate",
    "run.cost": "run_cost",
}

# Dimensions a scope may name, per source.
_DIMENSIONS: dict[str, tuple[str, ...]] = {
    "score": ("app", "model_version"),
    "error_rate": ("app", "model_version"),
    "traffic": ("app", "model_version"),
    "volume": ("app", "model_version"),
    "drift": ("app", "model_version"),
    # Drift-job anomaly rows carry app/model_version; metric-series ones (runs.metric_anomalies)
    # host/gpu/model; ``series`` is the anomaly series' name (``volume``, ``gpu.temperature``).
    "anomaly": ("app", "model_version", "host", "gpu", "model", "series"),
    "gate": ("kind",),
    "kappa": ("rubric", "judge_model"),
    "run_cost": ("kind",),
    "metric": ("host", "gpu", "model"),
    "perf": ("app", "model_version"),
    "feedback": ("app", "model_version"),
    "fairness": ("segment", "metric", "app", "model_version"),
}

# Selector families named by their first part: ``gpu.temperature`` is a metric series,
# ``perf.tokens_per_s`` a model-performance figure, ``feedback.copy_rate`` a user-experience
# signal, ``fairness.gap`` a fairness finding. Checked before ``evaluator.metric``.
PREFIX_SOURCES: dict[str, Source] = {
    "gpu": "metric",
    "engine": "metric",
    "memory": "metric",
    "gen_ai": "metric",
    "perf": "perf",
    "feedback": "feedback",
    "fairness": "fairness",
}

# What a ``fairness.*`` selector may watch: ``gap`` is 1 for each segment-metric finding of a
# stored fairness report that is a gap, 0 for one that is not (storage.alerts.report_items).
FAIRNESS_METRICS: tuple[str, ...] = ("gap",)

# Which kind of run a selector belongs to (the ``kinds`` filter of the engine).
SELECTOR_FAMILIES: dict[str, str] = {
    "score": "traffic",
    "error_rate": "traffic",
    "traffic": "traffic",
    "volume": "traffic",
    "drift": "drift",
    "anomaly": "drift",
    "gate": "gate",
    "kappa": "calibration",
    "run_cost": "run",
    "metric": "metrics",
    "perf": "traffic",
    "feedback": "traffic",
    "fairness": "drift",
}

_AGG = re.compile(
    r"^(?:(mean|sum|min|max|count|any)|p(\d{1,2}(?:\.\d+)?)|(share_below|share_above):(.+))$"
)
_AGG_HELP = "mean, sum, min, max, count, any, p50, p95, p99 (any pNN), share_below:X, share_above:X"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
ACTION_PLACEHOLDERS = (
    "alert_id",
    "rule",
    "severity",
    "scope_key",
    "app",
    "model_version",
    "value",
    "threshold",
    "event",
)


class RulesError(ValueError):
    """A rules file that cannot be used; ``errors`` lists every problem, each naming its rule.

    Args:
        errors: One message per problem.
    """

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        super().__init__("invalid alert rules:\n  " + "\n  ".join(self.errors))


@dataclass(frozen=True)
class Aggregation:
    """A parsed aggregation: its kind and, for percentiles and shares, its argument.

    ``arg`` is the quantile in [0, 1] for ``percentile`` and the cut value for shares.
    """

    kind: Literal[
        "mean", "sum", "min", "max", "count", "any", "percentile", "share_below", "share_above"
    ]
    arg: float | None = None


def parse_aggregation(text: str) -> Aggregation:
    """Parse an aggregation name.

    Args:
        text: ``mean``, ``sum``, ``min``, ``max``, ``count``, ``any``, ``p50``/``p95``/``p99``
            (any ``pNN``), ``share_below:X`` or ``share_above:X``.

    Returns:
        The parsed aggregation.

    Raises:
        ValueError: An unknown aggregation.

    Examples:
        >>> parse_aggregation("p95")
        Aggregation(kind='percentile', arg=0.95)
        >>> parse_aggregation("share_below:0.5")
        Aggregation(kind='share_below', arg=0.5)
    """
    m = _AGG.match(str(text).strip())
    if not m:
        raise ValueError(f"unknown aggregation {text!r}; use one of {_AGG_HELP}")
    if m.group(1):
        return Aggregation(m.group(1))  # type: ignore[arg-type]
    if m.group(2):
        q = float(m.group(2))
        if not 0 < q < 100:
            raise ValueError(f"unknown aggregation {text!r}: a percentile must be p1..p99")
        return Aggregation("percentile", q / 100.0)
    try:
        cut = float(m.group(4))
    except ValueError:
        raise ValueError(
            f"unknown aggregation {text!r}: {m.group(3)} needs a number, e.g. {m.group(3)}:0.5"
        ) from None
    if not math.isfinite(cut):
        raise ValueError(f"unknown aggregation {text!r}: the cut value must be finite")
    return Aggregation(m.group(3), cut)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Selector:
    """What a rule watches: the source table family and, for scores, evaluator and metric."""

    text: str
    source: Source
    evaluator: str | None = None
    metric: str | None = None
    field: str | None = None

    @property
    def dimensions(self) -> tuple[str, ...]:
        """The scope dimensions this selector's items carry."""
        return _DIMENSIONS[self.source]

    @property
    def family(self) -> str:
        """The run kind the selector belongs to: traffic, drift, gate, calibration or run."""
        return SELECTOR_FAMILIES[self.source]

    @property
    def is_report(self) -> bool:
        """Whether items are stored reports (few rows, aggregated in Python)."""
        return self.source in ("drift", "anomaly", "gate", "kappa", "run_cost", "fairness")


def parse_selector(text: str) -> Selector:
    """Parse a selector; evaluator metrics are any ``evaluator.metric`` name.

    Args:
        text: ``toxicity.safety``, ``latency_ms``, ``volume``, ``drift.verdict``, ...

    Returns:
        The parsed selector (whether a metric exists is checked by :func:`check_rules_data`).

    Raises:
        ValueError: Neither a known selector nor of the form ``evaluator.metric``.

    Examples:
        >>> parse_selector("toxicity.safety").source
        'score'
        >>> parse_selector("latency_ms").field
        'latency_ms'
    """
    t = str(text).strip()
    if t in _SPECIAL_SELECTORS:
        return Selector(t, _SPECIAL_SELECTORS[t])
    if t in TRAFFIC_FIELDS:
        return Selector(t, "traffic", field=t)
    parts = t.split(".", 1)
    if len(parts) == 2 and parts[0] in PREFIX_SOURCES and parts[1]:
        return Selector(t, PREFIX_SOURCES[parts[0]], metric=parts[1])
    if len(parts) == 2 and all(re.match(r"^[A-Za-z0-9_-]+$", p) for p in parts):
        return Selector(t, "score", evaluator=parts[0], metric=parts[1])
    raise ValueError(
        f"unknown selector {text!r}; use an evaluator metric (evaluator.metric), one of "
        f"{', '.join(TRAFFIC_FIELDS)}, or one of {', '.join(_SPECIAL_SELECTORS)}"
    )


class ChannelSpec(BaseModel):
    """A notification channel: a saved Prefect notification block.

    ``block`` is the block document name, or its slug ``<block-type>/<name>``
    (e.g. ``custom-webhook/ops-hook``). ``format: json`` sends the alert as a JSON document in
    the block's ``{{body}}``; ``text`` sends a readable message.
    """

    model_config = ConfigDict(extra="forbid")

    type: ChannelType
    block: str
    format: Literal["text", "json"] = "text"

    @field_validator("block")
    @classmethod
    def _check_block(cls, v: str) -> str:
        v = v.strip()
        if not v or any(c.isspace() for c in v) or v.count("/") > 1 or v.endswith("/"):
            raise ValueError(
                f"bad block reference {v!r}; use a block name or 'block-type/name' "
                "(e.g. custom-webhook/ops-hook)"
            )
        return v

    @property
    def block_name(self) -> str:
        """The block document name, without the type slug."""
        return self.block.split("/", 1)[-1]


class DeliveryPolicy(BaseModel):
    """How hard one evaluation tries a channel before leaving the alert pending."""

    model_config = ConfigDict(extra="forbid")

    attempts: int = Field(3, ge=1, le=10, description="Tries per channel per evaluation.")
    backoff_s: float = Field(1.0, ge=0, description="Wait before the 2nd try; doubles after.")
    max_backoff_s: float = Field(30.0, ge=0, description="Longest wait between tries.")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based).

        Examples:
            >>> DeliveryPolicy(backoff_s=1, max_backoff_s=3).delay(3)
            3.0
        """
        return float(min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1)))


def _default_on() -> list[Literal["open", "update", "resolve"]]:
    return ["open"]


class ActionSpec(BaseModel):
    """Run a Prefect deployment when the alert fires (re-evaluate, gate, roll back...).

    String parameters may use ``{{alert_id}}``, ``{{rule}}``, ``{{severity}}``,
    ``{{scope_key}}``, ``{{app}}``, ``{{model_version}}``, ``{{value}}``, ``{{threshold}}`` and
    ``{{event}}``.
    """

    model_config = ConfigDict(extra="forbid")

    deployment: str = Field(description="'flow-name/deployment-name'.")
    parameters: dict[str, Any] = Field(default_factory=dict)
    on: list[Literal["open", "update", "resolve"]] = Field(
        default_factory=_default_on, description="Alert events that start the deployment."
    )

    @field_validator("deployment")
    @classmethod
    def _check_deployment(cls, v: str) -> str:
        parts = v.strip().split("/")
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"bad deployment {v!r}; use 'flow-name/deployment-name'")
        return v.strip()


def _durations_ok(v: str | float | int) -> str:
    seconds = parse_duration(v).total_seconds()
    if isinstance(v, int | float):
        # A bare number is seconds; keep the unit so the stored string reads back as the same
        # duration (a unit-less "90" is not one).
        return f"{seconds:.6f}".rstrip("0").rstrip(".") + "s"
    return str(v)


class Rule(BaseModel):
    """One alert rule. See ``docs/alert-rules.md`` for every field."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    enabled: bool = True
    selector: str
    aggregation: str = "mean"
    comparison: Comparison
    threshold: float
    window: str = Field("1h", description="A duration (1h, 1d) or 'run'.")
    delay: str = Field("0s", description="Wait this long after a window ends before judging it.")
    consecutive: int = Field(1, ge=1, description="Windows in a row that must breach.")
    min_items: int = Field(1, ge=1, description="Fewer items than this is insufficient data.")
    scope: dict[str, str] = Field(
        default_factory=dict, description="Dimension -> 'each' or one value; empty = all."
    )
    severity: Severity = "warning"
    channels: list[str] = Field(default_factory=list)
    escalation: list[str] = Field(
        default_factory=list, description="Extra channels notified when severity is critical."
    )
    cooldown: str = Field("1h", description="Least time between two notifications of an alert.")
    auto_resolve_after: int | None = Field(
        3, ge=1, description="Clear windows that resolve the alert; null = resolve by hand."
    )
    notify_resolved: bool = True
    action: ActionSpec | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(
                f"bad rule name {v!r}; use letters, digits, '.', '_' or '-' (at most 200)"
            )
        return v

    @field_validator("selector")
    @classmethod
    def _check_selector(cls, v: str) -> str:
        parse_selector(v)
        return v.strip()

    @field_validator("aggregation")
    @classmethod
    def _check_aggregation(cls, v: str) -> str:
        parse_aggregation(v)
        return v.strip()

    @field_validator("threshold")
    @classmethod
    def _check_threshold(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("threshold must be a finite number")
        return v

    @field_validator("window")
    @classmethod
    def _check_window(cls, v: str) -> str:
        if str(v).strip() == "run":
            return "run"
        seconds = parse_duration(v).total_seconds()
        if seconds < 1 or seconds != int(seconds):
            raise ValueError(f"window {v!r} must be a whole number of seconds, at least 1")
        return str(v).strip()

    @field_validator("delay", "cooldown", mode="before")
    @classmethod
    def _check_durations(cls, v: Any) -> str:
        return _durations_ok(v)

    @field_validator("scope")
    @classmethod
    def _check_scope(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            if not str(value).strip():
                raise ValueError(f"scope {key}: give 'each' or a value")
        return {k: str(val).strip() for k, val in v.items()}

    # -- derived -------------------------------------------------------------------------

    @property
    def agg(self) -> Aggregation:
        """The parsed aggregation."""
        return parse_aggregation(self.aggregation)

    @property
    def sel(self) -> Selector:
        """The parsed selector."""
        return parse_selector(self.selector)

    @property
    def window_width(self) -> timedelta | None:
        """The window length, or None for ``run`` windows."""
        return None if self.window == "run" else parse_duration(self.window)

    @property
    def delay_td(self) -> timedelta:
        """The evaluation delay."""
        return parse_duration(self.delay)

    @property
    def cooldown_td(self) -> timedelta:
        """The notification cooldown."""
        return parse_duration(self.cooldown)

    @property
    def group_dims(self) -> tuple[str, ...]:
        """Dimensions evaluated separately (scope value ``each``), in a stable order."""
        return tuple(d for d in self.sel.dimensions if self.scope.get(d) == "each")

    @property
    def fixed_scope(self) -> dict[str, str]:
        """Dimensions restricted to one value."""
        return {d: v for d, v in self.scope.items() if v != "each"}

    def notification_channels(self) -> list[str]:
        """The channels an alert of this rule goes to: escalation added when critical."""
        chans = list(self.channels)
        if self.severity == "critical":
            chans += self.escalation
        return list(dict.fromkeys(chans))


class RulesFile(BaseModel):
    """A whole rules file: channels, delivery policy, extra metric names and the rules."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    channels: dict[str, ChannelSpec] = Field(default_factory=dict)
    delivery: DeliveryPolicy = Field(default_factory=DeliveryPolicy)
    metrics: list[str] = Field(
        default_factory=list, description="Metrics of your own evaluators, as evaluator.metric."
    )
    rules: list[Rule] = Field(default_factory=list)

    def rule(self, name: str) -> Rule:
        """A rule by name.

        Raises:
            KeyError: No such rule.
        """
        for r in self.rules:
            if r.name == name:
                return r
        raise KeyError(f"no rule named {name!r}")


# -- loading and checking ----------------------------------------------------------------------


def _format_loc(loc: Sequence[Any], raw: Any) -> str:
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        name = None
        if isinstance(raw, Mapping):
            items = raw.get("rules")
            if isinstance(items, list) and loc[1] < len(items):
                entry = items[loc[1]]
                name = entry.get("name") if isinstance(entry, Mapping) else None
        who = f"rule {name!r}" if name else f"rule #{loc[1] + 1}"
        field = ".".join(str(p) for p in loc[2:]) or "(rule)"
        return f"{who}: {field}"
    if len(loc) >= 2 and loc[0] == "channels":
        field = ".".join(str(p) for p in loc[2:]) or "(channel)"
        return f"channel {loc[1]!r}: {field}"
    return ".".join(str(p) for p in loc) or "(file)"


def _validation_errors(exc: ValidationError, raw: Any) -> list[str]:
    out = []
    for e in exc.errors():
        msg = str(e["msg"]).removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
        out.append(f"{_format_loc(e['loc'], raw)}: {msg}")
    return out


def _parse(path: Path | str) -> tuple[RulesFile | None, list[str]]:
    p = Path(path)
    try:
        text = read_input_text(p)
    except InputFileError as exc:
        return None, [str(exc)]
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return None, [f"{p}: not valid YAML: {exc}"]
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        return None, [f"{p}: the top level must be a mapping with 'rules:'"]
    try:
        return RulesFile.model_validate(raw), []
    except ValidationError as exc:
        return None, _validation_errors(exc, raw)


def _valid_parts(raw: Any) -> tuple[RulesFile, set[str], list[tuple[str, Mapping[str, Any]]]]:
    """What of an invalid file can still be checked: valid rules, channel names, the rest.

    Returns the rules that are valid on their own, every channel name, and the raw mappings
    of the rules the schema rejected (with how errors name them). Lets a check report every
    problem of every rule, not only the first broken one.
    """
    if not isinstance(raw, Mapping):
        return RulesFile(), set(), []
    names: set[str] = set()
    raw_channels = raw.get("channels")
    if isinstance(raw_channels, Mapping):
        names = {str(k) for k in raw_channels}
    rules = []
    rejected: list[tuple[str, Mapping[str, Any]]] = []
    raw_rules = raw.get("rules")
    entries = raw_rules if isinstance(raw_rules, list) else []
    for who, entry in zip(_rule_labels(raw), entries, strict=True):
        try:
            rules.append(Rule.model_validate(entry))
        except ValidationError:
            if isinstance(entry, Mapping):
                rejected.append((who, entry))
    metrics = raw.get("metrics")
    ok_metrics = [m for m in metrics if isinstance(m, str)] if isinstance(metrics, list) else []
    return RulesFile(rules=rules, metrics=ok_metrics), names, rejected


def _rule_labels(raw: Any) -> list[str]:
    """How problems name each rule of a raw file (``rule 'name'`` or ``rule #N``), in order."""
    entries = raw.get("rules") if isinstance(raw, Mapping) else None
    labels = []
    for i, entry in enumerate(entries if isinstance(entries, list) else []):
        name = entry.get("name") if isinstance(entry, Mapping) else None
        labels.append(f"rule {name!r}" if name else f"rule #{i + 1}")
    return labels


def _known_list(names: Iterable[str], limit: int = 12) -> str:
    ordered = sorted(names)
    if not ordered:
        return "none"
    more = f", ... ({len(ordered)} in all)" if len(ordered) > limit else ""
    return ", ".join(ordered[:limit]) + more


def _known(known_metrics: Iterable[str] | None, declared: Iterable[str]) -> set[str] | None:
    """The metric names a selector may use, or None when they are not checked."""
    return None if known_metrics is None else set(known_metrics) | set(declared)


def check_rules_data(
    rules: RulesFile,
    known_metrics: Iterable[str] | None = None,
    known_channels: Iterable[str] | None = None,
) -> list[str]:
    """Check what the schema cannot: metric names, channel names, scopes, actions.

    Args:
        rules: A schema-valid rules file.
        known_metrics: Evaluator metrics that exist (``evaluator.metric``): the caller's
            metric catalogue (:func:`evalwatch.evaluators.metrics.metric_catalogue`; this
            layer does not know the evaluators). The file's own ``metrics:`` list is always
            added. None: metric names are not checked.
        known_channels: Channel names known besides the file's ``channels:`` section.

    Returns:
        One message per problem, each naming the rule and the field; empty when valid.

    Examples:
        >>> rf = RulesFile(rules=[Rule(name="r", selector="nope.metric", comparison="<",
        ...                            threshold=1)])
        >>> check_rules_data(rf, known_metrics=["embedding.relevance"])[0].startswith(
        ...     "rule 'r': selector: unknown metric 'nope.metric'")
        True
        >>> check_rules_data(rf)
        []
    """
    metrics = _known(known_metrics, rules.metrics)
    channels = set(rules.channels) | set(known_channels or ())
    errors: list[str] = []
    seen: set[str] = set()
    for rule in rules.rules:
        if rule.name in seen:
            errors.append(f"rule {rule.name!r}: name: the name is used by another rule")
        seen.add(rule.name)
        errors += _rule_problems(f"rule {rule.name!r}", rule.model_dump(), metrics, channels)
    return errors


_T = TypeVar("_T")


def _try(parse: Callable[[Any], _T], value: Any) -> _T | None:
    """``parse(value)``, or None when it fails (the schema check reports that failure)."""
    try:
        return parse(value)
    except (ValueError, TypeError):
        return None


def _rule_problems(
    who: str, fields: Mapping[str, Any], metrics: set[str] | None, channels: set[str]
) -> list[str]:
    """The problems the schema cannot see in one rule, field by field.

    Works on a valid rule's fields and on the raw mapping of a rule the schema rejected
    alike: every field that parses is checked, so a rule's other problems are reported
    beside its schema errors rather than hidden behind the first one.
    """
    errors: list[str] = []
    sel = _try(parse_selector, fields.get("selector"))
    agg = _try(parse_aggregation, fields.get("aggregation", "mean"))
    if (
        sel is not None
        and sel.source == "score"
        and metrics is not None  # None: the caller did not say which metrics exist
        and sel.text not in metrics
    ):
        errors.append(
            f"{who}: selector: unknown metric {sel.text!r}; known: "
            f"{_known_list(metrics)} (declare your own evaluators' metrics under 'metrics:')"
        )
    if sel is not None and sel.source == "perf" and sel.metric not in PERF_METRICS:
        instead = PERF_RENAMED.get(sel.metric or "")
        errors.append(
            f"{who}: selector: unknown performance figure {sel.text!r}; "
            + (f"use {instead}" if instead else f"known: perf.{', perf.'.join(PERF_METRICS)}")
        )
    if sel is not None and sel.source == "feedback" and sel.metric not in FEEDBACK_SIGNALS:
        errors.append(
            f"{who}: selector: unknown feedback signal {sel.text!r}; "
            f"known: feedback.{', feedback.'.join(FEEDBACK_SIGNALS)}"
        )
    if sel is not None and sel.source == "fairness" and sel.metric not in FAIRNESS_METRICS:
        errors.append(
            f"{who}: selector: unknown fairness selector {sel.text!r}; use "
            + ", ".join(f"fairness.{m}" for m in FAIRNESS_METRICS)
        )
    if sel is not None and sel.source == "metric":
        errors += _metric_problems(who, sel, agg, fields.get("window"))
    if sel is not None and agg is not None and sel.source == "volume" and agg.kind != "count":
        errors.append(f"{who}: aggregation: selector 'volume' supports only 'count'")
    for field in ("channels", "escalation"):
        listed = fields.get(field)
        for ch in listed if isinstance(listed, list) else []:
            if isinstance(ch, str) and ch not in channels:
                errors.append(
                    f"{who}: {field}: unknown channel {ch!r}; declared: {_known_list(channels)}"
                )
    scope = fields.get("scope")
    if sel is not None and isinstance(scope, Mapping):
        for dim in scope:
            if dim not in sel.dimensions:
                errors.append(
                    f"{who}: scope: {dim!r} is not a dimension of selector {sel.text!r}; "
                    f"use {', '.join(sel.dimensions)}"
                )
    action = fields.get("action")
    parameters = action.get("parameters") if isinstance(action, Mapping) else None
    if isinstance(parameters, Mapping):
        for key, value in parameters.items():
            for name in _PLACEHOLDER.findall(value) if isinstance(value, str) else []:
                if name not in ACTION_PLACEHOLDERS:
                    errors.append(
                        f"{who}: action.parameters.{key}: unknown placeholder "
                        f"{{{{{name}}}}}; use {', '.join(ACTION_PLACEHOLDERS)}"
                    )
    return errors


def _metric_problems(who: str, sel: Selector, agg: Aggregation | None, window: Any) -> list[str]:
    """What is wrong with a rule on a serving-fleet metric series (``gpu.*``, ``engine.*``)."""
    resolved = resolve_selector(sel.text)
    if resolved is None:
        return [
            f"{who}: selector: unknown metric series {sel.text!r}; known: "
            f"{', '.join(TELEMETRY_METRICS)} (histograms also as e.g. engine.ttft_p95, and "
            f"OTel GenAI names such as gen_ai.server.time_to_first_token)"
        ]
    errors = []
    if str(window).strip() == "run":
        errors.append(f"{who}: window: a metric series has time windows only (e.g. 5m), not 'run'")
    if resolved.quantile is not None and agg is not None and agg.kind != "mean":
        errors.append(
            f"{who}: aggregation: {sel.text!r} is already a percentile of the window's "
            f"requests; leave aggregation out, or use {resolved.name!r} with aggregation "
            f"p{round(resolved.quantile * 100)}"
        )
    return errors


def check_rules(
    path: Path | str,
    known_metrics: Iterable[str] | None = None,
    known_channels: Iterable[str] | None = None,
) -> list[str]:
    """Validate a rules file: schema, metric, aggregation and channel names.

    Args:
        path: The YAML file.
        known_metrics: Evaluator metrics that exist (see :func:`check_rules_data`); None:
            metric names are not checked.
        known_channels: Channel names known besides the file's ``channels:`` section.

    Returns:
        One message per problem, each naming the rule and the field; empty when valid.

    Examples:
        >>> check_rules(DEFAULT_RULES_PATH)
        []
    """
    rules, errors = _parse(path)
    if rules is not None:
        return check_rules_data(rules, known_metrics, known_channels)
    try:
        raw = yaml.safe_load(read_input_text(path))
    except (InputFileError, yaml.YAMLError):
        return errors
    partial, channel_names, rejected = _valid_parts(raw)
    channels = set(known_channels or ()) | channel_names
    more = check_rules_data(partial, known_metrics, channels)
    # The rules the schema rejected: every other field of theirs is still checked.
    metrics = _known(known_metrics, partial.metrics)
    for who, entry in rejected:
        more += _rule_problems(who, entry, metrics, channels)
    merged = errors + [e for e in more if e not in errors]
    # Each rule's problems together, rules in file order (file-level problems first).
    order = {who: i for i, who in enumerate(_rule_labels(raw))}
    return sorted(merged, key=lambda e: order.get(e.split(": ", 1)[0], -1))


def load_rules(
    path: Path | str | None = None,
    known_metrics: Iterable[str] | None = None,
    known_channels: Iterable[str] | None = None,
) -> RulesFile:
    """Load and fully check a rules file.

    Args:
        path: The YAML file; the shipped defaults when None.
        known_metrics: Evaluator metrics that exist (see :func:`check_rules_data`); None:
            metric names are not checked.
        known_channels: Channel names known besides the file's ``channels:`` section.

    Returns:
        The rules.

    Raises:
        RulesError: The file is missing or invalid (every problem is listed).

    Examples:
        >>> any(r.severity == "critical" for r in load_rules().rules)
        True
    """
    errors = check_rules(path or DEFAULT_RULES_PATH, known_metrics, known_channels)
    if errors:
        raise RulesError(errors)
    rules, _ = _parse(path or DEFAULT_RULES_PATH)
    assert rules is not None
    return rules


# -- pure semantics ----------------------------------------------------------------------------


def compare(value: float, comparison: Comparison, threshold: float) -> bool:
    """``value <comparison> threshold``; ``==`` tolerates float rounding.

    Examples:
        >>> compare(0.5, "<", 0.7), compare(1.0, "==", 1)
        (True, True)
    """
    if comparison == "<":
        return value < threshold
    if comparison == "<=":
        return value <= threshold
    if comparison == ">":
        return value > threshold
    if comparison == ">=":
        return value >= threshold
    return math.isclose(value, threshold, rel_tol=1e-9, abs_tol=1e-12)


def aggregate(
    values: Sequence[float],
    aggregation: Aggregation | str,
    comparison: Comparison = "<",
    threshold: float = 0.0,
) -> float | None:
    """Aggregate one window's item values.

    Percentiles interpolate linearly (numpy's default, the same as PostgreSQL's
    ``percentile_cont``). ``any`` is the number of items for which
    ``value <comparison> threshold`` holds. An empty window has a count, sum and ``any`` of 0
    and no other aggregate (None), never a made-up 0.

    Args:
        values: Item values of the window.
        aggregation: The aggregation (parsed or text).
        comparison: Used by ``any`` only.
        threshold: Used by ``any`` only.

    Returns:
        The aggregate, or None when there is nothing to aggregate.

    Examples:
        >>> aggregate([1, 2, 3, 4], "mean"), aggregate([1, 2, 3, 4], "share_below:3")
        (2.5, 0.5)
        >>> aggregate([], "mean") is None, aggregate([], "count")
        (True, 0.0)
    """
    agg = parse_aggregation(aggregation) if isinstance(aggregation, str) else aggregation
    n = len(values)
    if agg.kind == "count":
        return float(n)
    if agg.kind == "sum":
        return float(math.fsum(values))
    if agg.kind == "any":
        return float(sum(1 for v in values if compare(v, comparison, threshold)))
    if n == 0:
        return None
    arr = np.asarray(values, dtype=np.float64)
    if agg.kind == "mean":
        return float(arr.mean())
    if agg.kind == "min":
        return float(arr.min())
    if agg.kind == "max":
        return float(arr.max())
    if agg.kind == "percentile":
        assert agg.arg is not None
        return float(np.percentile(arr, agg.arg * 100.0))
    assert agg.arg is not None
    if agg.kind == "share_below":
        return float((arr < agg.arg).mean())
    return float((arr > agg.arg).mean())


def decide(value: float | None, n: int, rule: Rule) -> bool | None:
    """Whether a window breaches: True, False, or None for insufficient data.

    ``count`` is always decided (an empty window counts 0, which a volume rule must see);
    every other aggregation needs at least ``min_items`` items. ``any`` breaches when at least
    one item breaches.

    Examples:
        >>> r = Rule(name="q", selector="judge.helpfulness", comparison="<", threshold=0.7)
        >>> decide(0.5, 10, r), decide(0.9, 10, r), decide(None, 0, r)
        (True, False, None)
    """
    agg = rule.agg
    if agg.kind == "count":
        return compare(float(value or 0.0), rule.comparison, rule.threshold)
    if value is None or n < rule.min_items:
        return None
    if agg.kind == "any":
        return value >= 1
    return compare(value, rule.comparison, rule.threshold)


class WindowOutcome(NamedTuple):
    """One window of one scope: its aggregate, how many items, and the decision."""

    value: float | None
    n: int
    breached: bool | None


def evaluate_window(values: Sequence[float], rule: Rule) -> WindowOutcome:
    """Aggregate a window's values and decide whether it breaches.

    Examples:
        >>> r = Rule(name="s", selector="toxicity.safety", aggregation="any", comparison="<",
        ...          threshold=0.9)
        >>> evaluate_window([0.99, 0.98, 0.2], r)
        WindowOutcome(value=1.0, n=3, breached=True)
    """
    value = aggregate(values, rule.agg, rule.comparison, rule.threshold)
    return WindowOutcome(value, len(values), decide(value, len(values), rule))


class ItemFilter(NamedTuple):
    """Which single items to show as offending, worst first."""

    comparison: Comparison
    bound: float
    descending: bool


def item_filter(rule: Rule) -> ItemFilter | None:
    """The items worth showing in an alert's context: those on the wrong side.

    For ``any`` and plain statistics, items that themselves breach the threshold; for shares,
    items on the counted side of the cut; none for ``count``.

    Examples:
        >>> item_filter(Rule(name="l", selector="latency_ms", aggregation="p95",
        ...                  comparison=">", threshold=5000))
        ItemFilter(comparison='>', bound=5000.0, descending=True)
    """
    agg = rule.agg
    if agg.kind == "count":
        return None
    if agg.kind == "share_below":
        assert agg.arg is not None
        return ItemFilter("<", agg.arg, False)
    if agg.kind == "share_above":
        assert agg.arg is not None
        return ItemFilter(">", agg.arg, True)
    return ItemFilter(rule.comparison, rule.threshold, rule.comparison in (">", ">="))


@dataclass(frozen=True)
class RuleState:
    """What the lifecycle needs to know about one rule and scope.

    ``alert_status`` is ``open`` or ``acknowledged`` while an alert is active, else None.
    """

    consecutive_breaches: int = 0
    consecutive_clear: int = 0
    alert_status: AlertStatus | None = None
    last_notified_at: datetime | None = None


Action = Literal["open", "update", "resolve", "none"]


class Transition(NamedTuple):
    """The result of one window: the new state, what happens to the alert, and whether to tell."""

    state: RuleState
    action: Action
    notify: bool


def cooldown_elapsed(last_notified_at: datetime | None, now: datetime, cooldown: timedelta) -> bool:
    """Whether a new notification is allowed.

    Examples:
        >>> t = datetime(2026, 1, 1, tzinfo=UTC)
        >>> cooldown_elapsed(t, t + timedelta(minutes=30), timedelta(hours=1))
        False
    """
    return last_notified_at is None or now - last_notified_at >= cooldown


def transition(state: RuleState, breached: bool | None, now: datetime, rule: Rule) -> Transition:
    """Advance one rule and scope by one window.

    - Insufficient data (None) changes nothing: it neither extends nor breaks a streak.
    - A breach with an active alert updates it (count, last seen); the update notifies only
      when the alert is open (not acknowledged) and the cooldown has passed.
    - A breach without an active alert opens one once ``consecutive`` windows in a row
      breached; opening always notifies (a new incident is never held back).
    - A clear window with an active alert resolves it after ``auto_resolve_after`` clear
      windows in a row (never, if that is None).

    Args:
        state: The state before the window.
        breached: The window's decision.
        now: The evaluation time (for the cooldown).
        rule: The rule.

    Returns:
        The new state, the action (open, update, resolve or none) and whether to notify.

    Examples:
        >>> r = Rule(name="q", selector="judge.helpfulness", comparison="<", threshold=0.7,
        ...          consecutive=2)
        >>> now = datetime(2026, 1, 1, tzinfo=UTC)
        >>> s, action, _ = transition(RuleState(), True, now, r)
        >>> action, transition(s, True, now, r).action
        ('none', 'open')
    """
    if breached is None:
        return Transition(state, "none", False)
    if breached:
        breaches = state.consecutive_breaches + 1
        if state.alert_status is not None:
            notify = state.alert_status is AlertStatus.open and cooldown_elapsed(
                state.last_notified_at, now, rule.cooldown_td
            )
            new = RuleState(
                breaches, 0, state.alert_status, now if notify else state.last_notified_at
            )
            return Transition(new, "update", notify)
        if breaches >= rule.consecutive:
            return Transition(RuleState(breaches, 0, AlertStatus.open, now), "open", True)
        return Transition(RuleState(breaches, 0, None, state.last_notified_at), "none", False)
    clear = state.consecutive_clear + 1
    if (
        state.alert_status is not None
        and rule.auto_resolve_after is not None
        and clear >= rule.auto_resolve_after
    ):
        notify = rule.notify_resolved
        new = RuleState(0, clear, None, now if notify else state.last_notified_at)
        return Transition(new, "resolve", notify)
    return Transition(
        RuleState(0, clear, state.alert_status, state.last_notified_at), "none", False
    )


def complete_windows(
    now: datetime,
    width: timedelta,
    delay: timedelta = timedelta(0),
    after: datetime | None = None,
    lookback: int = 1,
    max_windows: int = 500,
) -> list[tuple[datetime, datetime]]:
    """Complete windows not yet judged, oldest first, aligned to multiples of ``width``.

    Windows are aligned to the Unix epoch (hourly windows start on the hour, daily ones at
    midnight UTC). A window is complete once ``now - delay`` has passed its end.

    Args:
        now: The evaluation time.
        width: Window length.
        delay: How long after its end a window waits (for late scores).
        after: End of the last judged window; None on the first evaluation.
        lookback: Windows judged on the first evaluation.
        max_windows: Most windows judged at once (a long outage is not replayed forever).

    Returns:
        ``(start, end)`` pairs.

    Examples:
        >>> now = datetime(2026, 1, 1, 10, 30, tzinfo=UTC)
        >>> [e.hour for _, e in complete_windows(now, timedelta(hours=1), lookback=2)]
        [9, 10]
    """
    w = width.total_seconds()
    ref = (now - delay).timestamp()
    last_end = math.floor(ref / w) * w
    first_end = last_end - (max(lookback, 1) - 1) * w
    if after is not None:
        first_end = (math.floor(after.timestamp() / w) + 1) * w
    first_end = max(first_end, last_end - (max_windows - 1) * w)
    out = []
    end = first_end
    while end <= last_end + 1e-6:
        e = datetime.fromtimestamp(end, UTC)
        out.append((e - width, e))
        end += w
    return out


def format_scope_key(scope: Mapping[str, str | None]) -> str:
    """A stable text key for a scope; ``all`` when the rule covers everything.

    Values are percent-encoded so the key can be parsed back. A missing value is ``*``.

    Examples:
        >>> format_scope_key({"model_version": "v2", "app": "bot"})
        'app=bot,model_version=v2'
        >>> format_scope_key({})
        'all'
    """
    if not scope:
        return "all"
    return ",".join(
        f"{k}={'*' if v is None else quote(str(v), safe='')}" for k, v in sorted(scope.items())
    )


def parse_scope_key(key: str) -> dict[str, str | None]:
    """Invert :func:`format_scope_key`.

    Examples:
        >>> parse_scope_key("app=my%2Cbot,model_version=*")
        {'app': 'my,bot', 'model_version': None}
    """
    if key == "all":
        return {}
    out: dict[str, str | None] = {}
    for part in key.split(","):
        k, _, v = part.partition("=")
        out[k] = None if v == "*" else unquote(v)
    return out


def render_parameters(parameters: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """Fill ``{{name}}`` placeholders in string parameters of an action.

    A parameter that is exactly one placeholder takes the value itself (a number stays a
    number); placeholders inside longer text are replaced by the value's text.

    Examples:
        >>> render_parameters({"v": "{{model_version}}", "n": 3, "m": "alert {{alert_id}}"},
        ...                   {"model_version": "v2", "alert_id": 7})
        {'v': 'v2', 'n': 3, 'm': 'alert 7'}
    """
    out: dict[str, Any] = {}
    for key, value in parameters.items():
        if isinstance(value, str):
            whole = _PLACEHOLDER.fullmatch(value.strip())
            if whole:
                out[key] = values.get(whole.group(1))
            else:
                out[key] = _PLACEHOLDER.sub(lambda m: str(values.get(m.group(1), "")), value)
        else:
            out[key] = value
    return out
