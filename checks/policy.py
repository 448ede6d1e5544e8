"""Gate policy: per-metric margins, directions and the decision rule, loaded from YAML.

The policy is data: every threshold the regression gate and the canary comparison use lives
here, so a team can review and version it next to its test sets. ``load_policy`` validates a
YAML file and names the offending field in every error, because a gate that silently falls
back to defaults on a typo would let a regression through.

Errors raised for bad input derive from :class:`GateInputError`, which the CLI maps to exit
code 2 (bad input), as opposed to 1 (regression) and 0 (pass).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from evalwatch.files import InputFileError, read_input_text

__all__ = [
    "FairnessPolicy",
    "GateInputError",
    "GatePolicy",
    "MetricPolicy",
    "PolicyError",
    "default_policy",
    "load_policy",
    "policy_from_mapping",
]

Rule = Literal["regression", "non-inferiority"]
MarginKind = Literal["absolute", "relative"]
MetricKind = Literal["continuous", "binary", "pairwise"]


class GateInputError(ValueError):
    """The gate cannot run on this input (exit code 2): mismatched runs, bad scores or policy."""


class PolicyError(GateInputError):
    """A policy file is missing, unreadable or invalid; the message names the bad field."""


class MetricPolicy(BaseModel):
    """How one metric is compared.

    Attributes:
        metric: Metric name as stored by the evaluators, e.g. ``"judge.correctness"``.
        margin: Tolerated drop. ``None`` uses the gate's ``default_margin``.
        margin_kind: ``"absolute"`` (in the metric's units) or ``"relative"`` (a fraction of
            the baseline mean over the compared items, e.g. ``0.05`` = 5 %).
        higher_is_better: Direction of the metric; ``False`` for latency, cost, toxicity.
        kind: ``"continuous"`` scores (paired bootstrap), ``"binary"`` pass/fail (McNemar's
            exact test) or ``"pairwise"`` judge verdicts win/tie/loss (sign test).
        pass_threshold: For ``binary`` metrics given as scores: a score counts as a pass when
            it is ``>= pass_threshold`` (``<=`` when ``higher_is_better`` is false). ``None``
            means the scores must already be 0/1.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str = Field(min_length=1)
    margin: float | None = Field(None, ge=0.0)
    margin_kind: MarginKind = "absolute"
    higher_is_better: bool = True
    kind: MetricKind = "continuous"
    pass_threshold: float | None = None

    @model_validator(mode="after")
    def _check_kind_fields(self) -> MetricPolicy:
        if self.margin is None and "margin_kind" in self.model_fields_set:
            # Otherwise the gate's default margin would be read in a unit nobody chose.
            raise ValueError("margin_kind is set but margin is not; give both or neither")
        if self.pass_threshold is not None and self.kind != "binary":
            raise ValueError("pass_threshold only applies to kind 'binary'")
        if self.kind == "pairwise" and self.margin_kind == "relative":
            # A net win rate has no baseline level to be relative to.
            raise ValueError("pairwise metrics take an absolute margin (on the net win rate)")
        return self


class FairnessPolicy(BaseModel):
    """The gate's fairness slice: may a candidate widen a segment's gap to the rest?

    Segments are the values of test-set item metadata fields (``language``: the item's own
    field, else the language detected from its input). For each segment, metric and side, the
    gap is ``mean(rest) - mean(segment)`` in the metric's good direction; the candidate fails
    when a gap widens by more than the margin (one-sided Welch test at ``alpha / 2``,
    Holm-adjusted across every segment and metric), even when the metric's mean improved.

    Attributes:
        fields: Item metadata fields whose values are segments; None: the settings'
            ``fairness.segment_fields``; an empty list turns the slice off.
        margin: Tolerated widening in the metric's units; None: the settings'
            ``fairness.gate_margin``.
        metric_margins: Per-metric margins overriding ``margin``.
        metrics: Metrics checked (None: every compared score metric; pairwise verdicts never,
            they have no per-side score).
        min_segment_items: Fewer paired items in a segment or its rest: not tested.
        fail_on_widening: A widened gap fails the gate (off: it is only a warning).
    """

    model_config = ConfigDict(extra="forbid")

    fields: list[str] | None = None
    margin: float | None = Field(None, ge=0.0)
    metric_margins: dict[str, float] = Field(default_factory=dict)
    metrics: list[str] | None = None
    min_segment_items: int = Field(10, ge=2)
    fail_on_widening: bool = True

    def margin_for(self, metric: str) -> float:
        """The tolerated widening of ``metric`` (0 when no margin is set at all).

        Examples:
            >>> FairnessPolicy(margin=0.05, metric_margins={"a.b": 0.1}).margin_for("a.b")
            0.1
        """
        return float(self.metric_margins.get(metric, self.margin or 0.0))


class GatePolicy(BaseModel):
    """Decision rule, error rates and defaults for a regression gate or canary comparison.

    Attributes:
        rule: ``"regression"`` fails only when a drop beyond the margin is significant;
            ``"non-inferiority"`` passes only when the interval rules such a drop out.
        alpha: Two-sided error level of the printed intervals. Each one-sided decision is
            taken at ``alpha / 2`` so it can be read off the same interval.
        default_margin: Margin for metrics without their own.
        default_margin_kind: Kind of ``default_margin``.
        metrics: Per-metric settings; metrics not listed get the defaults (higher is better,
            continuous).
        slices: Also compare per item tag.
        fail_on_slice_regression: A slice that regresses significantly fails the gate.
        min_items: Fewer items scored on both sides than this makes a metric
            ``insufficient_data`` (and the gate ``inconclusive``).
        min_slice_items: The same bound for a slice; smaller slices are listed, not tested.
        n_bootstrap: Bootstrap resamples per comparison.
        seed: Seed of the resampling, so a gate run is reproducible.
        power: Power used for the minimum detectable difference.
        repeats: Judge repeats per item, averaged upstream (recorded for the report).
        worst_items: How many most-regressed items to list per metric.
        fairness: The fairness slice (:class:`FairnessPolicy`).
    """

    model_config = ConfigDict(extra="forbid")

    rule: Rule = "regression"
    alpha: float = Field(0.05, gt=0.0, lt=0.5)
    default_margin: float = Field(0.0, ge=0.0)
    default_margin_kind: MarginKind = "absolute"
    metrics: list[MetricPolicy] = Field(default_factory=list)
    slices: bool = True
    fail_on_slice_regression: bool = True
    min_items: int = Field(20, ge=2)
    min_slice_items: int = Field(10, ge=2)
    n_bootstrap: int = Field(10_000, ge=1_000, le=1_000_000)
    seed: int = Field(0, ge=0)
    power: float = Field(0.8, gt=0.0, lt=1.0)
    repeats: int = Field(1, ge=1)
    worst_items: int = Field(10, ge=0)
    fairness: FairnessPolicy = Field(default_factory=FairnessPolicy)

    @model_validator(mode="after")
    def _unique_metrics(self) -> GatePolicy:
        seen: set[str] = set()
        for m in self.metrics:
            if m.metric in seen:
                raise ValueError(f"metric {m.metric!r} is listed twice in 'metrics'")
            seen.add(m.metric)
        return self

    def metric_policy(self, name: str, kind: MetricKind | None = None) -> MetricPolicy:
        """Return the settings for ``name``, filling unset values from the gate defaults.

        Args:
            name: Metric name.
            kind: Kind to assume when the metric is not listed (e.g. ``"pairwise"`` for
                judge verdicts).

        Returns:
            A :class:`MetricPolicy` whose ``margin`` is never ``None``.

        Examples:
            >>> GatePolicy(default_margin=0.01).metric_policy("judge.correctness").margin
            0.01
        """
        for m in self.metrics:
            if m.metric == name:
                if m.margin is not None:
                    return m
                kind_of_margin = "absolute" if m.kind == "pairwise" else self.default_margin_kind
                return m.model_copy(
                    update={"margin": self.default_margin, "margin_kind": kind_of_margin}
                )
        return MetricPolicy(
            metric=name,
            margin=self.default_margin,
            margin_kind="absolute" if kind == "pairwise" else self.default_margin_kind,
            kind=kind or "continuous",
        )


def default_policy() -> GatePolicy:
    """Return the built-in policy: regression rule, alpha 0.05, margin 0, slices on.

    Returns:
        A fresh :class:`GatePolicy` with default values.

    Examples:
        >>> default_policy().rule
        'regression'
    """
    return GatePolicy()


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _format_validation_error(source: str, err: ValidationError) -> str:
    lines = [f"invalid gate policy {source}:"]
    for e in err.errors():
        field = _format_loc(tuple(e["loc"]))
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling)"
        got = e.get("input")
        got_txt = (
            ""
            if e["type"] in ("missing", "extra_forbidden") or isinstance(got, dict)
            else f" (got {got!r})"
        )
        lines.append(f"  field '{field}': {msg}{got_txt}")
    return "\n".join(lines)


def policy_from_mapping(data: Any, source: str = "<mapping>") -> GatePolicy:
    """Validate a parsed policy document.

    Args:
        data: The parsed YAML/JSON object (``None`` for an empty document).
        source: Where it came from, for error messages.

    Returns:
        The validated :class:`GatePolicy`.

    Raises:
        PolicyError: The document is not a mapping or a field is invalid; the message names
            every bad field.

    Examples:
        >>> policy_from_mapping({"rule": "non-inferiority", "default_margin": 0.02}).rule
        'non-inferiority'
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PolicyError(
            f"invalid gate policy {source}: the top level must be a mapping of fields, "
            f"got {type(data).__name__}"
        )
    try:
        return GatePolicy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(_format_validation_error(source, exc)) from None


def load_policy(path: str | Path) -> GatePolicy:
    """Load and validate a gate policy YAML file.

    Args:
        path: Path to the YAML file (see ``datasets/gate-policy.example.yaml``).

    Returns:
        The validated :class:`GatePolicy`.

    Raises:
        PolicyError: The file is missing or unreadable, is not valid YAML, or a field is
            invalid; the message names the file and each bad field.

    Examples:
        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "policy.yaml"
        >>> _ = path.write_text("default_margin: 0.02")
        >>> load_policy(path).default_margin
        0.02
    """
    p = Path(path)
    try:
        text = read_input_text(p)
    except InputFileError as exc:
        raise PolicyError(f"cannot read gate policy: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())  # PyYAML's messages span lines
        raise PolicyError(f"gate policy {p} is not valid YAML: {detail}") from None
    return policy_from_mapping(data, source=str(p))
