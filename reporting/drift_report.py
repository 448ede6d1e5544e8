"""The HTML drift report: what moved, baseline vs current distributions, topics, anomalies.

A self-contained page (inline PNG plots, no scripts) built from a
:class:`evalwatch.checks.drift.outcome.DriftOutcome`:

* a summary that leads with what moved and by how much, per scope;
* overlaid baseline and current histograms of the numeric columns that moved;
* the topic clusters' baseline and current shares (bar chart), the clusters that grew or
  shrank with example responses, and responses far from every baseline topic;
* the anomaly series over the current window and its history, anomalous windows marked;
* fairness: each segment against the rest (:mod:`evalwatch.reporting.fairness`);
* every test of every scope.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt
from matplotlib.figure import Figure

from evalwatch.checks.drift import DriftTestResult
from evalwatch.checks.drift.outcome import AnomalySeries, DriftOutcome, ScopeResult, format_value
from evalwatch.reporting.fairness import fairness_html_section
from evalwatch.reporting.markdown import format_p
from evalwatch.reporting.page import html_page, html_table, img, section
from evalwatch.reporting.plots import figure_to_data_uri, grid, panel_titles

__all__ = [
    "anomaly_series_png",
    "cluster_shares_png",
    "moved_distributions_figure",
    "moved_distributions_png",
    "moved_numeric_features",
    "render_drift_html",
    "write_drift_html",
]

_BASE_COLOR = "#4878d0"
_CUR_COLOR = "#ee854a"
_MAX_PLOTS = 6


def _fmt(x: float | None) -> str:
    return format_value(x, missing="—")


def _fmt_p(p: float | None) -> str:
    return format_p(p, missing="—")


def moved_numeric_features(scope: ScopeResult) -> list[str]:
    """Numeric columns of a scope with at least one drifted test, largest effect first.

    Args:
        scope: One scope's result.

    Returns:
        Feature names.
    """
    ratio: dict[str, float] = {}
    for r in scope.report.results:
        if r.family == "numeric" and r.verdict == "drift":
            ratio[r.feature] = max(ratio.get(r.feature, 0.0), r.effect_ratio)
    return sorted(ratio, key=lambda f: -ratio[f])


def moved_distributions_png(
    baseline: dict[str, npt.NDArray[np.float64]],
    current: dict[str, npt.NDArray[np.float64]],
    features: Sequence[str],
    title: str,
) -> str | None:
    """:func:`moved_distributions_figure` as a PNG data URI (None when it has no panel).

    Examples:
        >>> rng = np.random.default_rng(0)
        >>> uri = moved_distributions_png({"x": rng.normal(0, 1, 200)},
        ...                               {"x": rng.normal(1, 1, 200)}, ["x"], "t")
        >>> uri.startswith("data:image/png;base64,")
        True
    """
    fig = moved_distributions_figure(baseline, current, features, title)
    return None if fig is None else figure_to_data_uri(fig)


def moved_distributions_figure(
    baseline: dict[str, npt.NDArray[np.float64]],
    current: dict[str, npt.NDArray[np.float64]],
    features: Sequence[str],
    title: str,
) -> Figure | None:
    """Overlaid baseline and current histograms (density) of some numeric columns.

    Each panel is titled with its column's name. The range is the 0.5-99.5 % quantiles of
    both windows together, so a long tail does not squash the bulk.

    Args:
        baseline: Baseline columns by name.
        current: Current columns by name.
        features: Columns to plot (at most six are drawn).
        title: Figure title.

    Returns:
        The figure (the caller renders and closes it), or None when no column has values in
        both windows.

    Examples:
        >>> rng = np.random.default_rng(0)
        >>> fig = moved_distributions_figure({"x": rng.normal(0, 1, 50), "y": rng.normal(0, 1, 50)},
        ...                                  {"x": rng.normal(1, 1, 50), "y": rng.normal(0, 1, 50)},
        ...                                  ["x", "y"], "t")
        >>> panel_titles(fig)
        ['x', 'y']
        >>> plt.close(fig)
    """
    pairs = []
    for name in features:
        b = np.asarray(baseline.get(name, []), dtype=np.float64)
        c = np.asarray(current.get(name, []), dtype=np.float64)
        b, c = b[np.isfinite(b)], c[np.isfinite(c)]
        if b.size and c.size:
            pairs.append((name, b, c))
        if len(pairs) == _MAX_PLOTS:
            break
    if not pairs:
        return None
    fig, axes = grid(len(pairs))
    for ax, (name, b, c) in zip(axes, pairs, strict=True):
        lo, hi = np.percentile(np.concatenate([b, c]), [0.5, 99.5])
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.linspace(lo, hi, 31)
        # One filled step patch per window: far cheaper to draw than a bar per bin.
        for values, color, window in ((b, _BASE_COLOR, "baseline"), (c, _CUR_COLOR, "current")):
            dens, _ = np.histogram(np.clip(values, lo, hi), bins=edges, density=True)
            ax.stairs(
                dens,
                edges,
                fill=True,
                alpha=0.5,
                color=color,
                label=f"{window} (n={values.size:,})",
            )
        ax.axvline(float(np.mean(b)), color=_BASE_COLOR, lw=1, ls="--")
        ax.axvline(float(np.mean(c)), color=_CUR_COLOR, lw=1, ls="--")
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    fig.suptitle(title, fontsize=11)
    return fig


def cluster_shares_png(result: DriftTestResult, title: str) -> str | None:
    """Baseline vs current share of each topic cluster; grown and shrunk ones marked.

    Args:
        result: A ``topic_shares`` result (its ``details["clusters"]``).
        title: Figure title.

    Returns:
        A PNG data URI, or None without cluster details.
    """
    clusters = result.details.get("clusters") or []
    if not clusters:
        return None
    grown = {c["cluster"] for c in result.details.get("grown", [])}
    shrunk = {c["cluster"] for c in result.details.get("shrunk", [])}
    x = np.arange(len(clusters))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.7 * len(clusters) + 2), 3.0))
    base = [100 * c["baseline_share"] for c in clusters]
    cur = [100 * c["current_share"] for c in clusters]
    ax.bar(x - 0.2, base, width=0.4, color=_BASE_COLOR, label="baseline")
    ax.bar(x + 0.2, cur, width=0.4, color=_CUR_COLOR, label="current")
    labels = []
    for c in clusters:
        mark = " ▲" if c["cluster"] in grown else " ▼" if c["cluster"] in shrunk else ""
        labels.append(f"{c['cluster']}{mark}")
    ax.set_xticks(x, labels)
    ax.set_ylabel("share of responses (%)", fontsize=8)
    ax.set_xlabel("cluster (▲ grew, ▼ shrank)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=10)
    return figure_to_data_uri(fig)


def _values(xs: Sequence[float | None]) -> npt.NDArray[np.float64]:
    return np.array([np.nan if x is None else x for x in xs], dtype=np.float64)


def _t64(dt: datetime) -> np.datetime64:
    return np.datetime64(dt.replace(tzinfo=None), "s")


def anomaly_series_png(series: Sequence[AnomalySeries], title: str) -> str | None:
    """Each series over its windows: value, expected value, anomalies marked in red.

    The current window is shaded; windows without a value are gaps.

    Args:
        series: Anomaly series (at most nine are drawn, in the given order).
        title: Figure title.

    Returns:
        A PNG data URI, or None when there is nothing to draw.
    """
    chosen = [s for s in series if any(p.value is not None for p in s.report.points)]
    chosen = chosen[:_MAX_PLOTS]
    if not chosen:
        return None
    fig, axes = grid(len(chosen), width=4.6, height=2.6)
    for ax, s in zip(axes, chosen, strict=True):
        pts = s.report.points
        t = np.array([_t64(p.window_start) for p in pts])
        v = _values([s.display(p.value, n) for p, n in zip(pts, s.counts, strict=True)])
        e = _values([s.display(p.expected, n) for p, n in zip(pts, s.counts, strict=True)])
        ax.plot(t, v, lw=0.8, color="#1d2430", label="value")
        ax.plot(t, e, lw=0.8, ls="--", color="#8a8fa0", label="expected")
        flagged = s.anomalies()
        if flagged:
            ax.scatter(
                np.array([_t64(p.window_start) for p, _ in flagged]),
                _values([s.display(p.value, n) for p, n in flagged]),
                color="#b3261e",
                s=14,
                zorder=3,
                label="anomaly",
            )
        ax.axvspan(
            float(mdates.date2num(_t64(s.current.start))),
            float(mdates.date2num(_t64(s.current.end))),
            color=_CUR_COLOR,
            alpha=0.12,
        )
        ax.set_title(f"{s.feature} [{s.scope.label}]", fontsize=9)
        ax.tick_params(labelsize=6)
        ax.tick_params(axis="x", rotation=30)
    axes[0].legend(fontsize=6)
    fig.suptitle(title, fontsize=11)
    return figure_to_data_uri(fig)


# --------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------


def _summary_section(outcome: DriftOutcome) -> str:
    overall = outcome.scopes[0]
    verdict = (
        f"<p class='bad'>Drift found in {len(outcome.moved())} of {outcome.n_tests} tests.</p>"
        if outcome.drift_found
        else f"<p class='ok'>No drift in {outcome.n_tests} tests.</p>"
    )
    facts = html_table(
        [
            {
                "": "current window",
                "value": outcome.current.describe(),
                "interactions": overall.n_current,
            },
            {
                "": "baseline",
                "value": outcome.baseline.describe(),
                "interactions": overall.n_baseline,
            },
        ]
    )
    note = (
        "<p class='meta'>"
        + html.escape(
            f"Significance level {outcome.params.alpha:g} for the whole report: p-values are "
            f"adjusted with Benjamini-Hochberg across all {outcome.n_tests} tests of all "
            f"{len(outcome.scopes)} scopes, and a test flags drift only when its effect also "
            f"reaches its floor. Embedding model: {outcome.embedding_model or 'none stored'}. "
            f"Report key {outcome.report_key}."
        )
        + "</p>"
    )
    rows = [
        {
            "scope": h["scope"],
            "what moved": h["summary"],
            "evidence": h["effects"],
            "adjusted p ≤": _fmt_p(h["p_adjusted"]),
        }
        for h in outcome.headlines()
    ]
    moved = (
        "<h3>What moved</h3>" + html_table(rows)
        if rows
        else "<p>Nothing moved beyond its effect-size floor at the report's level.</p>"
    )
    found = [a for a in outcome.anomalies if a.verdict == "anomaly"]
    anomalies = "<h3>Anomalies in the current window</h3>" + (
        html_table([{"scope": a.scope.label, "series": a.summary()} for a in found])
        if found
        else "<p>None.</p>"
    )
    return section("Summary", verdict, facts, note, moved, anomalies)


def _distributions_section(outcome: DriftOutcome) -> str:
    # One figure: the first scope (overall first) whose numeric columns moved; the other
    # scopes' moved columns are listed (their figures would repeat the same picture).
    parts: list[str] = []
    shown = None
    for scope in outcome.scopes:
        features = moved_numeric_features(scope)
        if not features:
            continue
        if shown is None:
            shown = scope.label
            fig = moved_distributions_figure(
                scope.baseline_numeric,
                scope.current_numeric,
                features,
                f"{scope.label}: baseline vs current (dashed: means)",
            )
            if fig is None:
                parts.append(img(None, f"{scope.label} distributions"))
                continue
            # The panels' own titles, as text too: read without the picture, and by tests.
            titles = panel_titles(fig)
            alt = f"{scope.label} distributions: {', '.join(titles)}"
            parts.append(img(figure_to_data_uri(fig), alt))
            parts.append(
                "<p class='meta panels'>Panels, left to right and top to bottom: "
                + ", ".join(f"<span class='panel'>{html.escape(t)}</span>" for t in titles)
                + "</p>"
            )
        else:
            parts.append(
                f"<p class='meta'>{html.escape(scope.label)} also moved: "
                f"{html.escape(', '.join(features))}</p>"
            )
    if not parts:
        parts.append("<p>No numeric column moved.</p>")
    return section("Distributions that moved", *parts)


def _cluster_rows(result: DriftTestResult) -> list[dict[str, Any]]:
    rows = []
    for c in result.details.get("grown", []) + result.details.get("shrunk", []):
        rows.append(
            {
                "cluster": c["cluster"],
                "change": "grew" if c["delta"] > 0 else "shrank",
                "baseline share": f"{100 * c['baseline_share']:.1f}%",
                "current share": f"{100 * c['current_share']:.1f}%",
                "Δ (pp)": round(100 * c["delta"], 1),
                "examples": " / ".join(c.get("examples", [])),
            }
        )
    return rows


def _topics_section(outcome: DriftOutcome) -> str:
    parts: list[str] = []
    for i, scope in enumerate(outcome.scopes):
        shares = next((r for r in scope.report.results if r.test == "topic_shares"), None)
        new = next((r for r in scope.report.results if r.test == "new_topic"), None)
        if shares is None or shares.verdict == "insufficient_data":
            continue
        if i > 0 and shares.verdict != "drift" and (new is None or new.verdict != "drift"):
            continue  # other scopes only when their topics moved
        parts.append(f"<h3>{html.escape(scope.label)}</h3>")
        parts.append(f"<p>{html.escape(shares.summary)} ({html.escape(shares.verdict)}).</p>")
        parts.append(
            img(cluster_shares_png(shares, f"{scope.label}: topic cluster shares"), "clusters")
        )
        rows = _cluster_rows(shares)
        if rows:
            parts.append(html_table(rows))
        if new is not None and new.verdict != "insufficient_data":
            parts.append(f"<p>{html.escape(new.summary)} ({html.escape(new.verdict)}).</p>")
            examples = new.details.get("examples") or []
            if new.verdict == "drift" and examples:
                parts.append(
                    "<ul>" + "".join(f"<li>{html.escape(t)}</li>" for t in examples) + "</ul>"
                )
        if len(parts) > 18:  # three scopes' worth
            break
    if not parts:
        parts.append("<p class='meta'>No embeddings to compare.</p>")
    return section("Topics", *parts)


def _anomalies_section(outcome: DriftOutcome) -> str:
    if not outcome.anomalies:
        return section("Anomalies over time", "<p class='meta'>No series.</p>")
    preferred = ["volume", "latency_ms.p95", "response_length.mean", "error_rate", "cost.sum"]

    def rank(s: AnomalySeries) -> tuple[int, int]:
        pref = preferred.index(s.feature) if s.feature in preferred else len(preferred)
        return (0 if s.verdict == "anomaly" else 1, pref)

    ordered = sorted(outcome.anomalies, key=rank)
    freq = ordered[0].report.freq
    uri = anomaly_series_png(
        ordered, f"{'Hourly' if freq == 'hour' else 'Daily'} series (shaded: current window)"
    )
    rows = []
    for s in ordered:
        for p, n in s.anomalies():
            rows.append(
                {
                    "scope": s.scope.label,
                    "series": s.feature,
                    "window": p.window_start.strftime("%Y-%m-%d %H:%M"),
                    "value": _fmt(s.display(p.value, n)),
                    "expected": _fmt(s.display(p.expected, n)),
                    "robust z": None if p.robust_z is None else round(p.robust_z, 1),
                    "events": n,
                }
            )
    verdicts = html_table(
        [
            {
                "scope": s.scope.label,
                "series": s.feature,
                "verdict": s.verdict,
                "summary": s.summary(),
            }
            for s in ordered
        ]
    )
    table = html_table(rows[:200]) if rows else "<p>No anomalous window.</p>"
    return section("Anomalies over time", img(uri, "anomaly series"), table, verdicts)


def _tests_section(outcome: DriftOutcome) -> str:
    order = {"drift": 0, "no_drift": 1, "insufficient_data": 2}
    parts = []
    parts.append(
        html_table(
            [
                {
                    "scope": s.label,
                    "baseline": s.n_baseline,
                    "current": s.n_current,
                    "tests": sum(r.verdict != "insufficient_data" for r in s.report.results),
                    "drift": sum(r.verdict == "drift" for r in s.report.results),
                    "insufficient data": sum(
                        r.verdict == "insufficient_data" for r in s.report.results
                    ),
                }
                for s in outcome.scopes
            ]
        )
    )
    for i, s in enumerate(outcome.scopes):
        rows = [
            {
                "feature": r.feature,
                "test": r.test,
                "n baseline": r.n_baseline,
                "n current": r.n_current,
                "effect": f"{r.effect_name} {_fmt(r.effect_size)}",
                "floor": r.effect_floor,
                "p": _fmt_p(r.p_value),
                "adjusted p": _fmt_p(r.p_adjusted),
                "verdict": r.verdict,
                "summary": r.summary,
            }
            for r in sorted(s.report.results, key=lambda r: (order[r.verdict], r.family, r.feature))
        ]
        parts.append(
            f"<details{' open' if i == 0 else ''}><summary>{html.escape(s.label)}: "
            f"{len(rows)} tests</summary>{html_table(rows)}</details>"
        )
    return section("All tests", *parts)


def render_drift_html(outcome: DriftOutcome) -> str:
    """The drift report as one self-contained HTML page.

    Args:
        outcome: A drift check's outcome.

    Returns:
        The HTML document.
    """
    title = "evalwatch drift report: " + ("drift found" if outcome.drift_found else "no drift")
    return html_page(
        title,
        _summary_section(outcome),
        _distributions_section(outcome),
        _topics_section(outcome),
        _anomalies_section(outcome),
        fairness_html_section(outcome.fairness),
        _tests_section(outcome),
        subtitle=f"current {outcome.current.describe()} vs baseline {outcome.baseline.describe()}",
    )


def write_drift_html(outcome: DriftOutcome, path: Path | str) -> Path:
    """Write :func:`render_drift_html` to ``path`` (folders are created).

    Args:
        outcome: A drift check's outcome.
        path: Target file.

    Returns:
        The path written.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_drift_html(outcome), encoding="utf-8")
    return out
