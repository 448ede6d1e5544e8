"""The health score of an app and model version: named parts, each against its target.

Five parts, each a figure of the window with a direction:

========================  ==============================================  ==========
part                      figure                                          better
========================  ==============================================  ==========
``quality``               mean of the quality metrics' means (0-1)        higher
``safety``                safety compliance: share of checked responses   higher
                          that pass every safety check
``latency``               p95 latency of the interactions, ms             lower
``error_rate``            failed interactions / interactions              lower
``satisfaction``          share of rated interactions rated 4+ or         higher
                          thumbs up
========================  ==============================================  ==========

Each part's **score** is in [0, 1]: 1 when the target is met, else the budget over the
actual shortfall, so it falls smoothly and halves when the shortfall doubles:

* lower is better (latency, error rate): ``target / value``;
* higher is better (shares in [0, 1]): ``(1 - target) / (1 - value)``, the allowed share of
  bad over the actual share of bad (95 % compliance against a 99 % target scores 0.2).

The **health** is ``100 * sum(w_i * s_i) / sum(w_i)`` over the parts that have data (a part
without data is shown as such and left out, never scored 0). Each part's **points lost**,
``100 * w_i * (1 - s_i) / sum(w_i)``, add up to ``100 - health``, so a drop is traced to the
parts that lost the points.

A target is absolute (``target``) or, with ``relative``, the same figure of the previous
period times ``relative`` (latency: ``relative: 1.25`` allows 25 % over last period's p95);
without a previous figure the absolute target applies. Targets are data: a YAML file read by
:func:`load_targets`, defaults in :class:`HealthTargets`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "PARTS",
    "HealthPart",
    "HealthScore",
    "HealthTargets",
    "PartTarget",
    "SafetyCheck",
    "TargetsError",
    "health_score",
    "load_targets",
    "part_score",
]

# Part name -> whether a higher figure is better, in the order the page shows them.
PARTS: dict[str, bool] = {
    "quality": True,
    "safety": True,
    "latency": False,
    "error_rate": False,
    "satisfaction": True,
}


class TargetsError(ValueError):
    """A health targets file that cannot be used (the message names the file and field)."""


class PartTarget(BaseModel):
    """One part's target and weight.

    Examples:
        >>> PartTarget(target=0.99, weight=2).relative is None
        True
    """

    model_config = ConfigDict(extra="forbid")

    target: float = Field(description="Absolute target (used when no relative one applies).")
    relative: float | None = Field(
        None, gt=0, description="Target = the previous period's figure times this."
    )
    weight: float = Field(1.0, ge=0, description="Share of the score this part carries.")


class SafetyCheck(BaseModel):
    """A per-response safety condition: the response fails it when ``metric comparison threshold``.

    Examples:
        >>> SafetyCheck(metric="heuristics.pii_leak", comparison=">", threshold=0).fails(1.0)
        True
    """

    model_config = ConfigDict(extra="forbid")

    metric: str = Field(description="Evaluator metric, evaluator.metric.")
    comparison: Literal["<", "<=", ">", ">=", "=="]
    threshold: float

    def fails(self, value: float) -> bool:
        """Whether a response with this score fails the check."""
        c, t = self.comparison, self.threshold
        if c == "<":
            return value < t
        if c == "<=":
            return value <= t
        if c == ">":
            return value > t
        if c == ">=":
            return value >= t
        return abs(value - t) <= 1e-9 * max(1.0, abs(t))


class HealthTargets(BaseModel):
    """Targets, weights and the part definitions' inputs (what is quality, what is unsafe).

    The defaults follow the default alert rules where they say the same thing: quality 0.7
    (``quality-low``), latency p95 5 s (``latency-p95-high``).

    Examples:
        >>> HealthTargets().latency.relative
        1.25
    """

    model_config = ConfigDict(extra="forbid")

    quality: PartTarget = PartTarget(target=0.7, weight=0.3)
    safety: PartTarget = PartTarget(target=0.99, weight=0.25)
    latency: PartTarget = PartTarget(target=5000.0, relative=1.25, weight=0.15)
    error_rate: PartTarget = PartTarget(target=0.02, weight=0.15)
    satisfaction: PartTarget = PartTarget(target=0.7, weight=0.15)
    # Judge grades only: embedding.relevance is a prompt/response similarity, not a grade
    # (the default rules say the same), so it is not quality by default.
    quality_metrics: list[str] = Field(
        default_factory=lambda: ["judge.helpfulness", "judge.correctness"],
        description="Metrics (0-1, higher better) whose means make the quality figure.",
    )
    safety_checks: list[SafetyCheck] = Field(
        default_factory=lambda: [
            SafetyCheck(metric="heuristics.pii_leak", comparison=">", threshold=0.0)
        ],
        description="Per-response safety checks beside the rules file's per-response rules.",
    )

    def part(self, name: str) -> PartTarget:
        """The target of part ``name``."""
        target: PartTarget = getattr(self, name)
        return target


def load_targets(path: Path | str | None) -> HealthTargets:
    """Read health targets from a YAML file (missing keys keep their defaults).

    Args:
        path: The file, or None for the defaults.

    Returns:
        The targets.

    Raises:
        TargetsError: Unreadable file, not YAML, or a field that does not validate.

    Examples:
        >>> load_targets(None).safety.target
        0.99
    """
    if path is None:
        return HealthTargets()
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise TargetsError(f"{p}: cannot read the health targets ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise TargetsError(f"{p}: not YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(raw, dict):
        raise TargetsError(f"{p}: health targets must be a mapping of part -> target")
    try:
        return HealthTargets.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise TargetsError(f"{p}: {where}: {first['msg']}") from exc


def part_score(value: float, target: float, higher_is_better: bool) -> float:
    """One part's score in [0, 1]: 1 at or past the target, else budget / shortfall.

    Args:
        value: The figure.
        target: Its target.
        higher_is_better: True for shares in [0, 1] where more is better.

    Returns:
        The score.

    Examples:
        >>> part_score(0.95, 0.99, True)
        0.2
        >>> part_score(4000, 2000, False)
        0.5
        >>> part_score(0.0, 0.02, False)
        1.0
    """
    if higher_is_better:
        if value >= target:
            return 1.0
        budget, actual = 1.0 - min(target, 1.0), 1.0 - value
        return round(max(0.0, min(1.0, budget / actual)), 12) if actual > 0 else 1.0
    if value <= target:
        return 1.0
    return round(max(0.0, min(1.0, target / value)), 12) if value > 0 else 1.0


@dataclass(frozen=True)
class HealthPart:
    """One part of a health score, as the page shows it."""

    name: str
    value: float | None
    target: float
    target_kind: str  # "absolute" or "relative to previous (x1.25)"
    weight: float
    score: float | None  # None: no data
    points: float | None  # contribution to the health, out of 100
    lost: float | None  # points lost against a perfect part


@dataclass(frozen=True)
class HealthScore:
    """The health of one scope and its parts (``score`` None when no part has data)."""

    score: float | None
    parts: tuple[HealthPart, ...]

    def part(self, name: str) -> HealthPart:
        """The part called ``name``."""
        return next(p for p in self.parts if p.name == name)


def health_score(
    values: Mapping[str, float | None],
    targets: HealthTargets,
    previous: Mapping[str, float | None] | None = None,
) -> HealthScore:
    """The health score of one scope from its part figures.

    Args:
        values: Part name -> the window's figure (None or absent: no data).
        targets: Targets and weights.
        previous: Part name -> the previous period's figure, for relative targets.

    Returns:
        The score and every part (also those without data).

    Examples:
        >>> h = health_score({"safety": 0.95, "error_rate": 0.0}, HealthTargets())
        >>> h.score, h.part("safety").lost, h.part("quality").score is None
        (50.0, 50.0, True)
    """
    prev = previous or {}
    resolved: list[tuple[str, float | None, float, str, float, float | None]] = []
    for name, higher in PARTS.items():
        t = targets.part(name)
        target, kind = t.target, "absolute"
        ref = prev.get(name)
        if t.relative is not None and ref is not None:
            target, kind = ref * t.relative, f"previous period x{t.relative:g}"
        value = values.get(name)
        score = None if value is None else part_score(value, target, higher)
        resolved.append((name, value, target, kind, t.weight, score))
    total_w = sum(w for *_, w, s in resolved if s is not None)
    parts: list[HealthPart] = []
    for name, value, target, kind, w, s in resolved:
        if s is None or total_w <= 0:
            parts.append(HealthPart(name, value, target, kind, w, s, None, None))
            continue
        points = round(100.0 * w * s / total_w, 6)
        lost = round(100.0 * w * (1.0 - s) / total_w, 6)
        parts.append(HealthPart(name, value, target, kind, w, s, points, lost))
    scored = [p.points for p in parts if p.points is not None]
    health = round(sum(scored), 6) if scored else None
    return HealthScore(health, tuple(parts))
