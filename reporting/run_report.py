"""What a person reviews after a run: a markdown summary, a metrics table and an HTML report."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy.engine import Engine

from evalwatch.checks.fairness import FairnessReport
from evalwatch.checks.traces import mean_kind_shares
from evalwatch.core import Redactor
from evalwatch.evaluators.digest import RunDigest, digest_run
from evalwatch.evaluators.metrics import MetricSpec, metric_catalogue, metric_spec, run_catalogue
from evalwatch.evaluators.summary import MetricSummary
from evalwatch.reporting.fairness import fairness_html_section, fairness_markdown
from evalwatch.reporting.page import html_page, html_table, img, section
from evalwatch.reporting.plots import distributions_png, group_comparison_png, over_time_png
from evalwatch.storage.frames import score_texts
from evalwatch.storage.models import EvalRun
from evalwatch.storage.repo import get_run, run_profiles
from evalwatch.storage.traces import run_traces

__all__ = [
    "metric_rows",
    "profile_rows",
    "render_run_html",
    "run_markdown",
    "step_share_rows",
    "worst_items",
    "write_run_html",
]

def _fmt(x: float | None, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def metric_rows(summaries: list[MetricSummary], by_group: bool = False) -> list[dict[str, Any]]:
    """Table rows (metric, [group], n, mean, CI, unscored) for artifacts and reports."""
    rows = []
    for s in summaries:
        row: dict[str, Any] = {"metric": f"{s.evaluator}.{s.metric}"}
        if by_group:
            row["model version"] = s.model_version
        row |= {
            "n": s.count,
            "mean": None if s.mean is None else round(s.mean, 4),
            "95% CI": "—" if s.ci_low is None else f"[{_fmt(s.ci_low)}, {_fmt(s.ci_high)}]",
            "unscored": s.unscored,
        }
        rows.append(row)
    return rows


def profile_rows(engine: Engine, run_id: int) -> list[dict[str, Any]]:
    """One row per evaluator profile of the run."""
    profiles = [p.model_dump() for p in run_profiles(engine, run_id)]
    rows = []
    for p in profiles:
        rows.append(
            {
                "evaluator": p["evaluator"],
                "device": p["device"],
                "items": p["n_items"],
                "items/s": None if p["items_per_s"] is None else round(p["items_per_s"], 1),
                "load s": None if p["load_seconds"] is None else round(p["load_seconds"], 2),
                "GPU util mean/max": (
                    f"{_fmt(p['gpu_util_mean'], 0)}/{_fmt(p['gpu_util_max'], 0)}%"
                    if p["gpu_available"]
                    else "no GPU"
                ),
                "GPU peak MB": p["gpu_mem_peak_mb"],
                "energy J": p["gpu_energy_j"],
                "CPU %": None if p["cpu_percent_mean"] is None else round(p["cpu_percent_mean"], 1),
                "peak RSS MB": None if p["rss_peak_mb"] is None else round(p["rss_peak_mb"], 1),
                "note": p["gpu_note"],
            }
        )
    return rows


def worst_items(
    frame: pd.DataFrame,
    per_metric: int = 3,
    *,
    engine: Engine | None = None,
    run_id: int | None = None,
    catalogue: Mapping[str, MetricSpec] | None = None,
) -> list[dict[str, Any]]:
    """The worst scored items per metric, with their explanation (for review).

    "Worst" is the bad end of each metric as its evaluator declares it
    (:func:`~evalwatch.evaluators.metrics.metric_spec`): the lowest values, or for a metric
    where lower is better (refusals, toxicity) the highest ones above 0. A frame read without
    texts (``run_scores_frame(..., with_text=False)``) gets the texts of
    just the picked rows from the store, which needs ``engine`` and ``run_id``. ``catalogue``
    is the run's (:func:`~evalwatch.evaluators.metrics.run_catalogue`, which knows the metrics
    of a judge's own rubric files); None: the general catalogue.
    """
    ok = frame[frame["status"] == "ok"].dropna(subset=["value"])
    catalogue = metric_catalogue() if catalogue is None else catalogue
    picked_rows: list[tuple[str, Any]] = []
    for metric, g in ok.groupby("metric", sort=True):
        bad_high = not metric_spec(str(metric), catalogue).higher_is_better
        picked = g.nlargest(per_metric, "value") if bad_high else g.nsmallest(per_metric, "value")
        if bad_high:
            picked = picked[picked["value"] > 0]
        picked_rows += [(str(metric), r) for _, r in picked.iterrows()]
    texts: dict[tuple[str, int, str], dict[str, Any]] = {}
    if "text" not in frame.columns and picked_rows:
        if engine is None or run_id is None:
            raise ValueError("a frame without texts needs engine and run_id for the worst items")
        texts = score_texts(
            engine,
            run_id,
            [(str(r["subject_type"]), int(r["subject_id"]), m) for m, r in picked_rows],
        )
    rows: list[dict[str, Any]] = []
    # The report and its Prefect artifact leave the store: personal data and secrets are
    # masked whatever the store holds (``ingest --no-redact`` keeps them), before the text is
    # cut, so a cut cannot hide a value from the redactor.
    redact = Redactor().redact
    for metric, r in picked_rows:
        extra = texts.get((str(r["subject_type"]), int(r["subject_id"]), metric), r)
        text = redact(str(extra.get("text") or ""))[0]
        explanation = redact(str(extra.get("explanation") or ""))[0]
        rows.append(
            {
                "metric": metric,
                "value": round(float(r["value"]), 4),
                "item": extra.get("item"),
                "group": r["group"],
                "response": text[:160] + ("…" if len(text) > 160 else ""),
                "explanation": explanation[:200] or None,
            }
        )
    return rows


_STEP_SHARES_TITLE = "Step latency shares (traced interactions)"


def step_share_rows(engine: Engine, run_id: int) -> list[dict[str, Any]]:
    """Each step kind's mean share of total latency over a run's traced interactions.

    Per app and model version (see :func:`evalwatch.checks.traces.mean_kind_shares`); empty
    when the run's sample holds no interaction built from a multi-span trace.
    """
    traced = run_traces(engine, run_id)
    rows = mean_kind_shares(
        ((t.app, t.model_version), t.steps, t.latency_ms, t.root_span_id) for t in traced
    )
    return [
        {
            "app": r["app"],
            "model_version": r["model_version"],
            "step kind": r["kind"],
            "mean share": f"{r['mean_share']:.1%}",
            "traced": r["n"],
        }
        for r in rows
    ]


def _step_share_sections(engine: Engine, run_id: int) -> list[str]:
    rows = step_share_rows(engine, run_id)
    return [section(_STEP_SHARES_TITLE, html_table(rows))] if rows else []


def _md_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "_none_\n"
    cols = list(rows[0])
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = [
            "—" if r[c] is None else str(r[c]).replace("|", "\\|").replace("\n", " ") for c in cols
        ]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def _run_worst_items(engine: Engine, run: EvalRun, digest: RunDigest) -> list[dict[str, Any]]:
    """:func:`worst_items` of a run, each metric read as the run's evaluator options declare it."""
    catalogue = run_catalogue(run.evaluators)
    return worst_items(digest.extremes_frame(), engine=engine, run_id=run.id, catalogue=catalogue)


def run_markdown(
    engine: Engine,
    run_id: int,
    report_path: str | None = None,
    digest: RunDigest | None = None,
    fairness: FairnessReport | None = None,
) -> str:
    """The markdown artifact of a run: sample, counts, metrics, versions, worst items, profiles.

    ``digest`` is the run's :class:`~evalwatch.evaluators.digest.RunDigest` when the caller has it;
    ``fairness`` the run's fairness report (:func:`evalwatch.runs.fairness.run_fairness_report`),
    shown as a section when given.
    """
    run = get_run(engine, run_id)
    if run is None:
        raise KeyError(f"no evaluation run {run_id}")
    if digest is None:
        digest = digest_run(engine, run_id)
    by_group = digest.by_group()
    params = run.params or {}
    summary = run.summary or {}
    lines = [
        f"# evalwatch {run.kind} run {run_id}",
        "",
        f"**status** {run.status} · **started** {run.started_at:%Y-%m-%d %H:%M:%S} UTC"
        + (f" · **model** {run.model}" if run.model else ""),
        "",
        *([f"**{summary['no_data']}**", ""] if summary.get("no_data") else []),
        "## What was evaluated",
        "",
        f"- sampled: {params.get('n_sampled', summary.get('n_sampled', '—'))}, "
        f"set aside by validation: {params.get('n_invalid', summary.get('n_invalid', 0))}, "
        f"scored subjects: {digest.n_subjects}",
        "- evaluators: "
        + ", ".join(f"{k} {v.get('version')}" for k, v in (run.evaluators or {}).items()),
    ]
    sample = params.get("sample")
    if sample:
        shown = {k: v for k, v in sample.items() if v not in (None, [], False)}
        lines.append(f"- sample: `{shown}`")
    lines += [
        "",
        "## Metrics (mean, 95% CI, unscored)",
        "",
        _md_table(metric_rows(digest.metrics())),
    ]
    if len({m.model_version for m in by_group}) > 1:
        lines += [
            "## Per model version",
            "",
            _md_table(metric_rows(by_group, by_group=True)),
        ]
    lines += [
        "## Worst items",
        "",
        _md_table(_run_worst_items(engine, run, digest)),
        "## Evaluator profiles",
        "",
        _md_table(profile_rows(engine, run_id)),
    ]
    shares = step_share_rows(engine, run_id)
    if shares:
        lines += [f"## {_STEP_SHARES_TITLE}", "", _md_table(shares)]
    if fairness is not None:
        lines += fairness_markdown(fairness, heading="##")
    if report_path:
        lines += [f"HTML report: `{report_path}`", ""]
    return "\n".join(lines)


def render_run_html(
    engine: Engine,
    run_id: int,
    digest: RunDigest | None = None,
    fairness: FairnessReport | None = None,
) -> str:
    """A self-contained HTML report of a run, with plots.

    ``digest`` and ``fairness`` are as in :func:`run_markdown`.
    """
    run: EvalRun | None = get_run(engine, run_id)
    if run is None:
        raise KeyError(f"no evaluation run {run_id}")
    if digest is None:
        digest = digest_run(engine, run_id)
    by_group = digest.by_group()
    subtitle = f"status {run.status}; started {run.started_at:%Y-%m-%d %H:%M} UTC" + (
        f"; model {run.model}" if run.model else ""
    )
    return html_page(
        f"evalwatch {run.kind} run {run_id}",
        section("Metrics", html_table(metric_rows(digest.metrics()))),
        section(
            "Score distributions",
            img(distributions_png(digest.sample_frame()), "score distributions"),
        ),
        section(
            "Across model versions",
            img(group_comparison_png(by_group), "comparison across model versions"),
            html_table(metric_rows(by_group, by_group=True)),
        ),
        section("Over time", img(over_time_png(digest.daily_frame()), "scores over time")),
        section(
            "Worst items",
            html_table(_run_worst_items(engine, run, digest)),
        ),
        section("Evaluator profiles", html_table(profile_rows(engine, run_id))),
        *_step_share_sections(engine, run_id),
        *([fairness_html_section(fairness)] if fairness is not None else []),
        subtitle=subtitle,
    )


def write_run_html(
    engine: Engine,
    run_id: int,
    path: Path,
    digest: RunDigest | None = None,
    fairness: FairnessReport | None = None,
) -> Path:
    """Write :func:`render_run_html` to ``path`` (folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_run_html(engine, run_id, digest, fairness), encoding="utf-8")
    return path.resolve()
