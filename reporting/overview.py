"""The operations overview: one page an engineer or a manager reads in a minute."""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from evalwatch.core.telemetry import GPU_UTILIZATION
from evalwatch.evaluators.metrics import MetricKind, metric_catalogue, metric_spec
from evalwatch.reporting.markdown import md_records
from evalwatch.reporting.page import html_page, html_table, img, section
from evalwatch.reporting.performance import infra_rows, infra_table, perf_rows, perf_table
from evalwatch.reporting.plots import figure_to_data_uri
from evalwatch.reporting.ux_signal import ux_markdown, ux_section
from evalwatch.storage.overview import FINDING_VERDICTS, OverviewData

__all__ = [
    "KEY_METRICS",
    "OverviewTables",
    "build_tables",
    "drift_line",
    "overview_html",
    "overview_markdown",
    "successful_ids",
]

# The headline metrics, in this order, when present (a choice of presentation: what a metric
# means is its evaluator's declaration, see evalwatch.evaluators.metrics).
KEY_METRICS = (
    "judge.helpfulness",
    "judge.correctness",
    "embedding.relevance",
    "toxicity.safety",
    "heuristics.refusal",
    "heuristics.pii_leak",
)
_N_OTHER_METRICS = 4  # graded metrics shown when none of the headline ones was scored
_SEVERITY_ORDER = ("critical", "high", "medium", "warning", "info")
_MAX_FINDINGS = 10  # drift findings listed per check


class OverviewTables:
    """The overview's numbers, as table rows."""

    def __init__(self) -> None:
        self.headline: list[dict[str, Any]] = []
        self.per_version: list[dict[str, Any]] = []
        self.satisfaction: list[dict[str, Any]] = []
        self.evaluators: list[dict[str, Any]] = []
        self.alerts: list[dict[str, Any]] = []
        self.drift: list[dict[str, Any]] = []  # findings of the latest drift check
        self.drift_earlier: list[dict[str, Any]] = []  # of the newest check with findings
        self.gates: list[dict[str, Any]] = []
        self.performance: list[dict[str, Any]] = []  # model performance per version
        self.infrastructure: list[dict[str, Any]] = []  # per host and GPU
        self.active_alerts: list[dict[str, Any]] = []  # each open or acknowledged alert


def _halves_trend(frame: pd.DataFrame, value: str, start: datetime, end: datetime) -> str:
    """Mean over the first half of the window -> the second half."""
    if frame.empty:
        return "—"
    mid = pd.Timestamp(start) + (pd.Timestamp(end) - pd.Timestamp(start)) / 2
    first = frame.loc[frame["ts"] < mid, value].mean()
    second = frame.loc[frame["ts"] >= mid, value].mean()
    if pd.isna(first) and pd.isna(second):
        return "—"
    if pd.isna(first) or pd.isna(second):  # present in one half only (a new or retired version)
        return f"{(second if pd.isna(first) else first):.3g} (one half only)"
    arrow = "↑" if second > first else ("↓" if second < first else "→")
    return f"{first:.3g} {arrow} {second:.3g}"


def _successful(data: OverviewData) -> set[int]:
    return successful_ids(data.feedback)


def successful_ids(fb: pd.DataFrame) -> set[int]:
    """Interactions rated 4+ or thumbs up, and not abandoned (the overview's "successful")."""
    if fb.empty:
        return set()
    good = fb[
        ((fb["kind"] == "rating") & (fb["value"] >= 4))
        | ((fb["kind"] == "thumbs") & ((fb["value"] > 0) | (fb["label"] == "up")))
    ]
    abandoned = set(fb.loc[fb["kind"] == "abandon", "interaction_id"])
    return set(good["interaction_id"]) - abandoned


def _trend_metrics(scored: set[str]) -> list[str]:
    """The metrics whose trend the per-version table shows.

    The headline metrics that were scored; when none was (a store scored only by plug-in
    evaluators), the first few that grade responses, leaving out descriptive ones such as
    response length, whose rise or fall says nothing about quality by itself.
    """
    key = [m for m in KEY_METRICS if m in scored]
    if key:
        return key
    catalogue = metric_catalogue()
    graded = [m for m in sorted(scored) if metric_spec(m, catalogue).kind != MetricKind.descriptive]
    return (graded or sorted(scored))[:_N_OTHER_METRICS]


def build_tables(data: OverviewData) -> OverviewTables:
    """Compute every table of the overview from the loaded data (no I/O)."""
    t = OverviewTables()
    successful = _successful(data)
    t.headline = _headline_rows(data, successful)
    t.per_version = _version_rows(data, successful)
    t.satisfaction = _satisfaction_rows(data.feedback)
    t.evaluators = _evaluator_rows(data.profiles)
    if not data.open_alerts.empty:
        by = data.open_alerts.groupby("severity")["id"].count()
        t.alerts = [{"severity": s, "open": int(by[s])} for s in _SEVERITY_ORDER if s in by]
    t.performance = perf_table(perf_rows(data.perf, data.engines))
    t.infrastructure = infra_table(infra_rows(data.infra, data.start, data.end))
    t.active_alerts = _active_alert_rows(data.open_alerts)
    t.drift = _finding_rows(data.latest_drift)
    t.drift_earlier = _finding_rows(data.findings_drift)
    t.gates = [
        {
            "report": g["id"],
            "kind": g["kind"],
            "when": f"{g['created_at']:%Y-%m-%d %H:%M}",
            "verdict": g["verdict"],
            "exit": g["exit_code"],
        }
        for g in data.latest_gates
    ]
    return t


_MAX_ALERTS_LISTED = 25


def _active_alert_rows(alerts: pd.DataFrame) -> list[dict[str, Any]]:
    """Each active alert, most severe first, then the most recently seen."""
    if alerts.empty:
        return []
    rank = {s: i for i, s in enumerate(_SEVERITY_ORDER)}
    ordered = alerts.assign(
        _rank=alerts["severity"].map(lambda s: rank.get(s, len(rank))),
        _seen=pd.to_datetime(alerts["last_seen_at"], utc=True),
    ).sort_values(["_rank", "_seen"], ascending=[True, False])
    return [
        {
            "alert": int(a["id"]),
            "severity": a["severity"],
            "rule": a["rule"],
            "scope": a["scope_key"],
            "status": a["status"],
            "windows": int(a["count"]),
            "last seen": f"{a['_seen']:%Y-%m-%d %H:%M}" if pd.notna(a["_seen"]) else None,
        }
        for _, a in ordered.head(_MAX_ALERTS_LISTED).iterrows()
    ]


def _headline_rows(data: OverviewData, successful: set[int]) -> list[dict[str, Any]]:
    """The one-row headline: volume, cost, successful interactions, open alerts."""
    traffic = data.traffic
    total_cost = float(traffic["cost"].sum()) if not traffic.empty else 0.0
    return [
        {
            "interactions": len(traffic),
            "model versions": traffic["model_version"].nunique() if not traffic.empty else 0,
            "total cost USD": round(total_cost, 4),
            "cost / interaction": round(total_cost / len(traffic), 6) if len(traffic) else None,
            # Words, not an emoji: an emoji renders as a box where no emoji font exists.
            "successful (rated 4+ or thumbs up, not abandoned)": len(successful),
            "cost / successful interaction": (
                round(total_cost / len(successful), 6) if successful else None
            ),
            "open alerts": len(data.open_alerts),
        }
    ]


def _version_rows(data: OverviewData, successful: set[int]) -> list[dict[str, Any]]:
    """One row per model version: volume, latency and cost, and the trend of each metric."""
    traffic, scores = data.traffic, data.scores
    metrics = _trend_metrics(set(scores["metric"]))
    rows: list[dict[str, Any]] = []
    for version, g in traffic.groupby("model_version", sort=True):
        ids = set(g["id"])
        row: dict[str, Any] = {
            "model version": version,
            "interactions": len(g),
            "volume trend": _halves_trend(
                g.assign(one=1)
                .set_index("ts")
                .resample("D")["one"]
                .sum()
                .rename("n")
                .reset_index(),
                "n",
                data.start,
                data.end,
            ),
            "p95 latency ms": round(float(g["latency_ms"].quantile(0.95)), 1)
            if g["latency_ms"].notna().any()
            else None,
            "cost / interaction": round(float(g["cost"].mean()), 6)
            if g["cost"].notna().any()
            else None,
            "cost / successful": round(float(g["cost"].sum()) / len(ids & successful), 6)
            if ids & successful
            else None,
        }
        sv = scores[scores["model_version"] == version]
        for m in metrics:
            row[m] = _halves_trend(sv[sv["metric"] == m], "value", data.start, data.end)
        rows.append(row)
    return rows


def _satisfaction_rows(feedback: pd.DataFrame) -> list[dict[str, Any]]:
    """The mean rating of each day with ratings."""
    ratings = feedback[feedback["kind"] == "rating"] if not feedback.empty else feedback
    if ratings.empty:
        return []
    daily = ratings.set_index("ts").resample("D")["value"].agg(["mean", "count"])
    return [
        {
            "day": f"{d:%Y-%m-%d}",
            "mean rating": round(float(r["mean"]), 3),
            "ratings": int(r["count"]),
        }
        for d, r in daily.iterrows()
        if r["count"] > 0
    ]


def _evaluator_rows(profiles: pd.DataFrame) -> list[dict[str, Any]]:
    """One row per evaluator: runs, throughput, device and GPU use."""
    rows: list[dict[str, Any]] = []
    if profiles.empty:
        return rows
    for ev, g in profiles.groupby("evaluator", sort=True):
        secs = float(g["seconds"].sum())
        gpu = g[g["gpu_available"].astype(bool)]
        rows.append(
            {
                "evaluator": ev,
                "runs": len(g),
                "items": int(g["n_items"].sum()),
                "items/s": round(float(g["n_items"].sum()) / secs, 1) if secs > 0 else None,
                "device": ", ".join(sorted(set(g["device"]))),
                "GPU util mean %": round(float(gpu["gpu_util_mean"].mean()), 1)
                if not gpu.empty
                else "no GPU",
                "GPU energy J": round(float(gpu["gpu_energy_j"].sum()), 1)
                if not gpu.empty and gpu["gpu_energy_j"].notna().any()
                else None,
            }
        )
    return rows


def _findings(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A check's findings, strongest evidence first (drifted tests, then anomalous series)."""
    found = [d for d in rows if d["verdict"] in FINDING_VERDICTS]
    return sorted(found, key=lambda d: (d["verdict"] != "drift", d["p_adjusted"] or 1.0))


def _finding_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    moved = _findings(rows)
    return [
        {
            "test": d["test"],
            "feature": d["feature"],
            "verdict": d["verdict"],
            "summary": d["summary"],
        }
        for d in moved[:_MAX_FINDINGS]
    ]


def _when(at: datetime, rows: list[dict[str, Any]] | None = None) -> str:
    """When a drift check ran and, from its rows, the current window it judged."""
    text = f"{at:%Y-%m-%d %H:%M} UTC"
    window = next((r["current"] for r in rows or [] if r.get("current")), None)
    if window and window.get("start") and window.get("end"):
        start, end = (datetime.fromisoformat(window[k]) for k in ("start", "end"))
        text += f" (current window {start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M})"
    return text


def drift_line(data: OverviewData, tables: OverviewTables | None = None) -> str:
    """One sentence on the latest drift check, and the newest one with findings.

    Args:
        data: The overview's data.
        tables: Its tables, when already built.

    Returns:
        E.g. ``no drift in the latest check, 2026-11-15 06:00 UTC; the latest check with
        findings, 2026-11-14 06:00 UTC, found 4``.
    """
    t = tables or build_tables(data)
    if data.latest_drift_at is None:
        return "no drift check yet"
    latest = _when(data.latest_drift_at, data.latest_drift)
    if t.drift:
        n = len(_findings(data.latest_drift))
        return f"{n} drift/anomaly findings in the latest check, {latest}"
    line = f"no drift in the latest check, {latest}"
    if data.findings_drift_at is not None:
        found = _when(data.findings_drift_at, data.findings_drift)
        n = len(_findings(data.findings_drift))
        line += f"; the latest check with findings, {found}, found {n}"
    return line


def _shown(rows: list[dict[str, Any]]) -> str:
    n = len(_findings(rows))
    more = f", the {_MAX_FINDINGS} strongest shown" if n > _MAX_FINDINGS else ""
    return f": {n} findings{more}"


def _drift_section(data: OverviewData, t: OverviewTables) -> str:
    if data.latest_drift_at is None:
        return section("Latest drift check", "<p class='meta'>no drift check yet</p>")
    latest = html.escape(_when(data.latest_drift_at, data.latest_drift))
    if t.drift:
        head = f"<p class='bad'>{latest}{_shown(data.latest_drift)}</p>"
        return section("Latest drift check", head, html_table(t.drift))
    parts = [f"<p class='ok'>no drift in the latest check, {latest}</p>"]
    if data.findings_drift_at is not None:
        found = html.escape(_when(data.findings_drift_at, data.findings_drift))
        found += _shown(data.findings_drift)
        parts += [f"<h3>Latest check with findings</h3><p class='bad'>{found}</p>"]
        parts.append(html_table(t.drift_earlier))
    return section("Latest drift check", *parts)


def _volume_png(data: OverviewData) -> str | None:
    if data.traffic.empty:
        return None
    fig, ax = plt.subplots(figsize=(8, 2.8))
    for version, g in data.traffic.groupby("model_version"):
        daily = g.set_index("ts").resample("D")["id"].count()
        ax.plot(daily.index, daily.to_numpy(), marker=".", label=str(version))
    ax.set_title("Interactions per day", fontsize=10)
    ax.legend(fontsize=7)
    ax.tick_params(labelsize=7)
    return figure_to_data_uri(fig)


def _quality_png(data: OverviewData) -> str | None:
    present = [m for m in KEY_METRICS if m in set(data.scores["metric"])]
    if not present:
        return None
    fig, axes = plt.subplots(
        1, len(present), figsize=(4 * len(present), 2.8), squeeze=False, layout="constrained"
    )
    for ax, metric in zip(axes[0], present, strict=True):
        sub = data.scores[data.scores["metric"] == metric]
        for version, g in sub.groupby("model_version"):
            daily = g.set_index("ts").resample("D")["value"].mean().dropna()
            ax.plot(daily.index, daily.to_numpy(), marker=".", label=str(version))
        ax.set_title(metric, fontsize=9)
        ax.tick_params(labelsize=7, axis="both")
        ax.tick_params(axis="x", rotation=30)
    axes[0][0].legend(fontsize=7)
    return figure_to_data_uri(fig)


def _satisfaction_png(data: OverviewData) -> str | None:
    ratings = (
        data.feedback[data.feedback["kind"] == "rating"]
        if not data.feedback.empty
        else data.feedback
    )
    if ratings.empty:
        return None
    fig, ax = plt.subplots(figsize=(8, 2.6))
    daily = ratings.set_index("ts").resample("D")["value"].mean().dropna()
    ax.plot(daily.index, daily.to_numpy(), marker="o", color="#6acc64")
    ax.set_title("Mean user rating per day", fontsize=10)
    ax.tick_params(labelsize=7)
    return figure_to_data_uri(fig)


def _alerts_title(t: OverviewTables) -> str:
    n = sum(a["open"] for a in t.alerts)
    more = f", the {_MAX_ALERTS_LISTED} most severe listed" if n > _MAX_ALERTS_LISTED else ""
    return f"Active alerts ({n}{more})"


def _model_load_png(data: OverviewData) -> str | None:
    loads = data.model_loads
    if loads.empty:
        return None
    fig, ax = plt.subplots(figsize=(8, 2.6))
    for (model, host), g in loads.groupby([loads["model"].fillna("?"), loads["host"].fillna("?")]):
        ax.plot(g["ts"], g["value"], marker="o", label=f"{model} on {host}")
    ax.set_title("Model load time (engine.model_load_seconds)", fontsize=10)
    ax.set_ylabel("s", fontsize=8)
    ax.legend(fontsize=7)
    ax.tick_params(labelsize=7)
    return figure_to_data_uri(fig)


def _gpu_png(data: OverviewData) -> str | None:
    util = data.infra[data.infra["name"] == GPU_UTILIZATION] if not data.infra.empty else None
    if util is None or util.empty:
        return None
    fig, ax = plt.subplots(figsize=(8, 2.6))
    keys = [util["host"].fillna("?"), util["gpu"].fillna("?")]
    for (host, gpu), g in util.groupby(keys):
        hourly = g.set_index("ts").resample("h")["value"].mean().dropna()
        ax.plot(hourly.index, hourly.to_numpy(), label=f"{host} GPU {gpu}")
    ax.set_title("GPU utilisation % (hourly mean)", fontsize=10)
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7)
    ax.tick_params(labelsize=7)
    return figure_to_data_uri(fig)


def overview_html(data: OverviewData) -> str:
    """The overview as a self-contained HTML page."""
    t = build_tables(data)
    return html_page(
        "evalwatch operations overview",
        section("At a glance", html_table(t.headline)),
        section("Traffic", img(_volume_png(data), "interactions per day")),
        section(
            "Quality and safety per model version (first half → second half of the window)",
            html_table(t.per_version),
            img(_quality_png(data), "quality over time"),
        ),
        section(
            "User satisfaction",
            img(_satisfaction_png(data), "mean rating"),
            html_table(t.satisfaction),
        ),
        ux_section(data),
        section(
            "Model performance per version",
            html_table(t.performance),
            img(_model_load_png(data), "model load time"),
        ),
        section(
            "Infrastructure (latest reading; trend = first half → second half of the window)",
            html_table(t.infrastructure),
            img(_gpu_png(data), "GPU utilisation"),
        ),
        section("Open alerts by severity", html_table(t.alerts)),
        section(_alerts_title(t), html_table(t.active_alerts)),
        _drift_section(data, t),
        section("Latest gate and canary verdicts", html_table(t.gates)),
        section("Evaluator throughput and GPU use", html_table(t.evaluators)),
        subtitle=f"window {data.start:%Y-%m-%d %H:%M} → {data.end:%Y-%m-%d %H:%M} UTC",
    )


def overview_markdown(data: OverviewData) -> str:
    """The overview as a markdown artifact."""
    t = build_tables(data)
    gate_line = f"latest gate: **{t.gates[0]['verdict']}**" if t.gates else "no gate run yet"
    alerts = ", ".join(f"{a['open']} {a['severity']}" for a in t.alerts) or "none"
    return "\n".join(
        [
            f"# evalwatch overview {data.start:%Y-%m-%d} → {data.end:%Y-%m-%d}",
            "",
            f"open alerts: **{alerts}** · {drift_line(data, t)} · {gate_line}",
            "",
            md_records(t.headline),
            "## Per model version",
            "",
            md_records(t.per_version),
            "## Satisfaction",
            "",
            md_records(t.satisfaction[-7:]),
            ux_markdown(data),
            "## Model performance per version",
            "",
            md_records(t.performance),
            "## Infrastructure",
            "",
            md_records(t.infrastructure),
            "## " + _alerts_title(t),
            "",
            md_records(t.active_alerts),
            "## Drift findings" + (" (the latest check with findings)" if t.drift_earlier else ""),
            "",
            md_records(t.drift or t.drift_earlier),
            "## Gates",
            "",
            md_records(t.gates),
            "## Evaluators",
            "",
            md_records(t.evaluators),
        ]
    )
