"""The executive view: health per app and model version, safety, satisfaction, cost, trends.

Three steps, kept apart so a caller can change the numbers between them (the DP work noises
the counts before anything is rendered):

1. :func:`executive_data` reduces the loaded rows (:mod:`evalwatch.storage.executive`) to
   :class:`ExecutiveData`: per scope plain counts, means and rates (:class:`ScopeFigures`),
   for the window and for the period before it.
2. :func:`scope_health` scores one scope's figures (:func:`evalwatch.checks.health.health_score`).
3. :func:`executive_html` and :func:`executive_markdown` render.

Definitions (one place; the README and the page repeat them):

* **Safety compliance**: of the responses scored by at least one safety check, the share
  that fails none. The safety checks are the rules file's per-response rules (an evaluator
  metric with aggregation ``any``: in the default rules ``toxicity.safety < 0.5``) plus the
  health targets' ``safety_checks`` (default ``heuristics.pii_leak > 0``). Each response
  counts its newest score per metric.
* **Satisfaction**: of the interactions with a rating or a thumbs, the share rated 4+ or
  thumbed up.
* **Successful interaction**: rated 4+ or thumbed up and not abandoned (as in the overview);
  **cost per successful interaction** = the scope's cost / its successful interactions.
* **Quality**: the mean, over the quality metrics scored, of each metric's mean.
* **Error rate** and **latency p95**: see :mod:`evalwatch.storage.performance`.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from evalwatch.checks.health import (
    PARTS,
    HealthScore,
    HealthTargets,
    SafetyCheck,
    health_score,
)
from evalwatch.checks.rules import RulesFile
from evalwatch.reporting.markdown import md_records
from evalwatch.reporting.overview import successful_ids
from evalwatch.reporting.page import html_page, html_table, img, section
from evalwatch.reporting.performance import trend_text
from evalwatch.reporting.plots import figure_to_data_uri
from evalwatch.storage.executive import ExecutiveFrames, WindowFrames, load_executive

__all__ = [
    "ALL",
    "ExecutiveData",
    "ScopeFigures",
    "executive_data",
    "executive_html",
    "executive_markdown",
    "load_executive_data",
    "safety_checks",
    "scope_health",
]

ALL = "all"  # the app and version of the whole window's row
_PART_TITLES = {
    "quality": "quality",
    "safety": "safety compliance",
    "latency": "latency p95 ms",
    "error_rate": "error rate",
    "satisfaction": "satisfaction",
}


@dataclass
class ScopeFigures:
    """One app and model version over one window: counts, sums and means only.

    Every rate is a property over the counts, so noising the counts noises the rates.
    """

    app: str
    model_version: str
    interactions: int = 0
    errors: int = 0
    latency_p95_ms: float | None = None
    tokens_per_s: float | None = None  # mean of each interaction's output tokens per second
    quality_means: dict[str, float] = field(default_factory=dict)
    quality_counts: dict[str, int] = field(default_factory=dict)
    safety_checked: int = 0  # responses scored by at least one safety check
    safety_passed: int = 0  # of those, responses failing none
    rated: int = 0  # interactions with a rating or a thumbs
    satisfied: int = 0  # of those, rated 4+ or thumbed up
    successful: int = 0  # rated 4+ or thumbed up, and not abandoned
    cost_total: float | None = None

    @property
    def key(self) -> tuple[str, str]:
        """``(app, model_version)``."""
        return self.app, self.model_version

    @property
    def error_rate(self) -> float | None:
        """Failed interactions over interactions."""
        return self.errors / self.interactions if self.interactions else None

    @property
    def safety_compliance(self) -> float | None:
        """Share of safety-checked responses that pass every check."""
        return self.safety_passed / self.safety_checked if self.safety_checked else None

    @property
    def satisfaction(self) -> float | None:
        """Share of rated interactions rated 4+ or thumbed up."""
        return self.satisfied / self.rated if self.rated else None

    @property
    def quality(self) -> float | None:
        """Mean of the quality metrics' means."""
        means = list(self.quality_means.values())
        return float(np.mean(means)) if means else None

    @property
    def cost_per_successful(self) -> float | None:
        """Cost over successful interactions."""
        if self.cost_total is None or not self.successful:
            return None
        return self.cost_total / self.successful

    def part_values(self) -> dict[str, float | None]:
        """The health parts' figures."""
        return {
            "quality": self.quality,
            "safety": self.safety_compliance,
            "latency": self.latency_p95_ms,
            "error_rate": self.error_rate,
            "satisfaction": self.satisfaction,
        }


@dataclass
class ExecutiveData:
    """Everything the executive page shows, as numbers (no rendering)."""

    start: datetime
    end: datetime
    previous_start: datetime
    scopes: list[ScopeFigures]  # the whole window first (app and version ``all``)
    previous: dict[tuple[str, str], ScopeFigures]
    open_alerts: list[dict[str, Any]]
    targets: HealthTargets
    safety_checks: list[SafetyCheck]


def safety_checks(rules: RulesFile | None, targets: HealthTargets) -> list[SafetyCheck]:
    """The per-response safety checks: the rules' ``any`` rules on a metric, and the targets'.

    Args:
        rules: The alert rules (None: only the targets' checks).
        targets: The health targets.

    Returns:
        Distinct checks, rules first.

    Examples:
        >>> from evalwatch.checks.rules import load_rules
        >>> [c.metric for c in safety_checks(load_rules(), HealthTargets())]
        ['toxicity.safety', 'heuristics.pii_leak']
    """
    out: list[SafetyCheck] = []
    for rule in rules.rules if rules is not None else []:
        if rule.sel.source == "score" and rule.agg.kind == "any":
            out.append(
                SafetyCheck(
                    metric=rule.sel.text, comparison=rule.comparison, threshold=rule.threshold
                )
            )
    for check in targets.safety_checks:
        if check not in out:
            out.append(check)
    return out


def _figures(
    app: str,
    version: str,
    traffic: pd.DataFrame,
    scores: pd.DataFrame,
    feedback: pd.DataFrame,
    targets: HealthTargets,
    checks: Sequence[SafetyCheck],
) -> ScopeFigures:
    ids = set(traffic["id"])
    sc = scores[scores["interaction_id"].isin(ids)]
    fb = feedback[feedback["interaction_id"].isin(ids)]
    fig = ScopeFigures(app, version, interactions=len(traffic))
    fig.errors = int(traffic["error"].fillna(0).sum())
    lat = traffic["latency_ms"].dropna().to_numpy(dtype=float)
    fig.latency_p95_ms = float(np.percentile(lat, 95)) if len(lat) else None
    tps = traffic["output_tokens"] * 1000.0 / traffic["latency_ms"].where(traffic["latency_ms"] > 0)
    fig.tokens_per_s = float(tps.mean()) if tps.notna().any() else None
    for metric in targets.quality_metrics:
        vals = sc.loc[sc["metric"] == metric, "value"]
        if len(vals):
            fig.quality_means[metric] = float(vals.mean())
            fig.quality_counts[metric] = len(vals)
    checked: set[int] = set()
    failed: set[int] = set()
    for check in checks:
        rows = sc[sc["metric"] == check.metric]
        checked |= set(rows["interaction_id"])
        failed |= {
            int(i)
            for i, v in zip(rows["interaction_id"], rows["value"], strict=True)
            if check.fails(float(v))
        }
    fig.safety_checked = len(checked)
    fig.safety_passed = len(checked - failed)
    ratings = fb[fb["kind"].isin(["rating", "thumbs"])]
    fig.rated = ratings["interaction_id"].nunique()
    good = ratings[
        ((ratings["kind"] == "rating") & (ratings["value"] >= 4))
        | ((ratings["kind"] == "thumbs") & ((ratings["value"] > 0) | (ratings["label"] == "up")))
    ]
    fig.satisfied = good["interaction_id"].nunique()
    fig.successful = len(successful_ids(fb))
    cost = traffic["cost"].dropna()
    fig.cost_total = float(cost.sum()) if len(cost) else None
    return fig


def _window_scopes(
    w: WindowFrames, targets: HealthTargets, checks: Sequence[SafetyCheck]
) -> list[ScopeFigures]:
    args = (w.scores, w.feedback, targets, checks)
    out = [_figures(ALL, ALL, w.traffic, *args)] if not w.traffic.empty else []
    if w.traffic.empty:
        return out
    for (app, version), g in w.traffic.groupby(["app", "model_version"], sort=True):
        out.append(_figures(str(app), str(version), g, *args))
    return out


def executive_data(
    frames: ExecutiveFrames, targets: HealthTargets, checks: Iterable[SafetyCheck]
) -> ExecutiveData:
    """Reduce the loaded rows to the executive page's figures.

    Args:
        frames: :func:`evalwatch.storage.executive.load_executive` of the window.
        targets: Health targets (and which metrics are quality).
        checks: Per-response safety checks (:func:`safety_checks`).

    Returns:
        The figures per scope, for the window and the period before it.
    """
    chk = list(checks)
    previous = {f.key: f for f in _window_scopes(frames.previous, targets, chk)}
    alerts = [
        {k: (None if pd.isna(v) else v) for k, v in r.items()}
        for r in frames.open_alerts.to_dict("records")
    ]
    return ExecutiveData(
        start=frames.current.start,
        end=frames.current.end,
        previous_start=frames.previous.start,
        scopes=_window_scopes(frames.current, targets, chk),
        previous=previous,
        open_alerts=alerts,
        targets=targets,
        safety_checks=chk,
    )


def scope_health(data: ExecutiveData, scope: ScopeFigures) -> HealthScore:
    """The health of one scope; relative targets use its figures of the previous period."""
    before = data.previous.get(scope.key)
    return health_score(scope.part_values(), data.targets, before.part_values() if before else None)


def _fmt(x: float | None, digits: int = 3) -> float | None:
    return None if x is None else round(x, digits)


def _glance_rows(data: ExecutiveData) -> list[dict[str, Any]]:
    rows = []
    for s in data.scopes:
        h = scope_health(data, s)
        rows.append(
            {
                "app": s.app,
                "model version": s.model_version,
                "health (0-100)": _fmt(h.score, 1),
                "interactions": s.interactions,
                "safety compliance": _fmt(s.safety_compliance, 4),
                "satisfaction": _fmt(s.satisfaction, 3),
                "cost / successful interaction USD": _fmt(s.cost_per_successful, 6),
                "error rate": _fmt(s.error_rate, 4),
                "latency p95 ms": _fmt(s.latency_p95_ms, 1),
                "quality": _fmt(s.quality, 3),
            }
        )
    return rows


def _part_rows(data: ExecutiveData, scope: ScopeFigures) -> list[dict[str, Any]]:
    h = scope_health(data, scope)
    return [
        {
            "part": p.name,
            "figure": _PART_TITLES[p.name],
            "value": _fmt(p.value, 4) if p.value is not None else "no data",
            "target": _fmt(p.target, 4),
            "target from": p.target_kind,
            "better": "higher" if PARTS[p.name] else "lower",
            "weight": p.weight,
            "part score (0-1)": _fmt(p.score, 3),
            "points": _fmt(p.points, 2),
            "points lost": _fmt(p.lost, 2),
        }
        for p in h.parts
    ]


def _trend_rows(data: ExecutiveData) -> list[dict[str, Any]]:
    rows = []
    for s in data.scopes:
        b = data.previous.get(s.key)
        hb = scope_health(data, b) if b is not None else None
        h = scope_health(data, s)

        def tr(now: float | None, before: float | None) -> str:
            return trend_text(before, now)

        rows.append(
            {
                "app": s.app,
                "model version": s.model_version,
                "health": tr(h.score, hb.score if hb else None),
                "latency p95 ms": tr(s.latency_p95_ms, b.latency_p95_ms if b else None),
                "tokens/s": tr(s.tokens_per_s, b.tokens_per_s if b else None),
                "error rate": tr(s.error_rate, b.error_rate if b else None),
                "safety compliance": tr(s.safety_compliance, b.safety_compliance if b else None),
                "satisfaction": tr(s.satisfaction, b.satisfaction if b else None),
                "cost / successful": tr(
                    s.cost_per_successful, b.cost_per_successful if b else None
                ),
                "interactions": tr(float(s.interactions), float(b.interactions) if b else None),
            }
        )
    return rows


def _alert_rows(data: ExecutiveData) -> list[dict[str, Any]]:
    return [
        {
            "alert": a["id"],
            "rule": a["rule"],
            "scope": a["scope_key"],
            "severity": a["severity"],
            "status": a["status"],
            "windows": a["count"],
            "opened": f"{a['opened_at']:%Y-%m-%d %H:%M}" if a.get("opened_at") else None,
            "last seen": f"{a['last_seen_at']:%Y-%m-%d %H:%M}" if a.get("last_seen_at") else None,
        }
        for a in data.open_alerts
    ]


def _lost_png(data: ExecutiveData) -> str | None:
    """Stacked bars: per scope, the points each part lost (the bar's length is 100 - health)."""
    scored = [(s, scope_health(data, s)) for s in data.scopes]
    scored = [(s, h) for s, h in scored if h.score is not None]
    if not scored:
        return None
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(scored) + 1.2))
    labels = [f"{s.app} / {s.model_version}" for s, _ in scored]
    left = np.zeros(len(scored))
    for name in PARTS:
        lost = np.array([h.part(name).lost or 0.0 for _, h in scored])
        ax.barh(labels, lost, left=left, label=_PART_TITLES[name])
        left += lost
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("points lost (health = 100 - bar)", fontsize=8)
    ax.set_title("Where each scope's health points went", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    ax.tick_params(labelsize=7)
    return figure_to_data_uri(fig)


def _definitions(data: ExecutiveData) -> list[str]:
    checks = "; ".join(f"{c.metric} {c.comparison} {c.threshold:g}" for c in data.safety_checks)
    quality = ", ".join(data.targets.quality_metrics)
    return [
        "Health = 100 × Σ wᵢ·sᵢ / Σ wᵢ over the parts with data. A part's score sᵢ is 1 at or "
        "past its target; else target / value (lower is better) or (1 − target) / (1 − value) "
        "(higher is better). Points lost per part add up to 100 − health.",
        f"Safety compliance: share of responses scored by a safety check that fail none "
        f"(a response fails on: {checks or 'no checks configured'}).",
        "Satisfaction: share of rated interactions rated 4+ or thumbed up. Successful: rated 4+ "
        "or thumbed up, not abandoned.",
        f"Quality: mean of the means of {quality}.",
        "Error rate: interactions whose metadata carries an error (metadata.error or "
        "metadata.otel.error) over all interactions.",
    ]


def _window_line(data: ExecutiveData) -> str:
    return (
        f"window {data.start:%Y-%m-%d %H:%M} → {data.end:%Y-%m-%d %H:%M} UTC; trends against "
        f"{data.previous_start:%Y-%m-%d %H:%M} → {data.start:%Y-%m-%d %H:%M}"
    )


def executive_html(data: ExecutiveData) -> str:
    """The executive view as one self-contained HTML page."""
    parts = []
    for s in data.scopes:
        h = scope_health(data, s)
        score = "no data" if h.score is None else f"{h.score:.1f}"
        title = html.escape(f"{s.app} / {s.model_version}: health {score}")
        parts.append(f"<h3>{title}</h3>")
        parts.append(html_table(_part_rows(data, s)))
    defs = "".join(f"<p class='meta'>{html.escape(d)}</p>" for d in _definitions(data))
    return html_page(
        "evalwatch executive view",
        section("Health per app and model version", html_table(_glance_rows(data))),
        section(
            "Health parts: value, target and contribution",
            img(_lost_png(data), "points lost per part"),
            *parts,
        ),
        section("Trends (previous period → this window)", html_table(_trend_rows(data))),
        section(f"Active alerts ({len(data.open_alerts)})", html_table(_alert_rows(data))),
        section("Definitions", defs),
        subtitle=_window_line(data),
    )


def executive_markdown(data: ExecutiveData) -> str:
    """The executive view as markdown (a Prefect artifact, a file beside the HTML page)."""
    out = [
        f"# evalwatch executive view {data.start:%Y-%m-%d} → {data.end:%Y-%m-%d}",
        "",
        _window_line(data),
        "",
        md_records(_glance_rows(data)),
        "## Health parts",
        "",
    ]
    for s in data.scopes:
        h = scope_health(data, s)
        score = "no data" if h.score is None else f"{h.score:.1f}"
        out += [
            f"### {s.app} / {s.model_version}: health {score}",
            "",
            md_records(_part_rows(data, s)),
        ]
    out += [
        "## Trends (previous period → this window)",
        "",
        md_records(_trend_rows(data)),
        f"## Active alerts ({len(data.open_alerts)})",
        "",
        md_records(_alert_rows(data)),
        "## Definitions",
        "",
        *(f"- {d}" for d in _definitions(data)),
        "",
    ]
    return "\n".join(out)


def load_executive_data(
    engine: Engine,
    start: datetime,
    end: datetime,
    targets: HealthTargets,
    rules: RulesFile | None,
) -> ExecutiveData:
    """Load and reduce the executive view's figures (what the CLI and the flow both call).

    Args:
        engine: The store.
        start: Window start.
        end: Window end (the previous period is as long and ends at ``start``).
        targets: Health targets.
        rules: Alert rules whose per-response rules are safety checks (None: only the targets').

    Returns:
        The figures, ready to render or to noise.
    """
    checks = safety_checks(rules, targets)
    wanted = [*targets.quality_metrics, *(c.metric for c in checks)]
    return executive_data(load_executive(engine, start, end, wanted), targets, checks)
