"""Differentially private releases: the daily export and the overview page, noised.

What each release publishes, and how the numbers are built from noised primitives (counts and
clamped sums, see :mod:`evalwatch.checks.dp`): everything else on these pages is
post-processing of those. Nothing here touches the store or spends budget: the caller charges
the ledger with :attr:`DPRelease.epsilon` before it writes anything out.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from evalwatch.checks.dp import (
    CountQuery,
    Noised,
    SumQuery,
    bound_contributions,
    release,
    safe_ratio,
)
from evalwatch.evaluators.metrics import metric_catalogue, metric_spec
from evalwatch.reporting.overview import KEY_METRICS, successful_ids
from evalwatch.reporting.page import html_page, html_table, section
from evalwatch.storage.dp_data import DPFrames

__all__ = [
    "DPParams",
    "DPRelease",
    "daily_release",
    "executive_dp_html",
    "executive_release",
    "export_csv",
    "export_json",
    "fmt_noised",
    "overview_dp_html",
    "overview_release",
]

# The score metrics the DP overview releases, when scored: the overview's headline ones.
_DP_METRICS = KEY_METRICS


@dataclass(frozen=True)
class DPParams:
    """How a release is made private.

    Attributes:
        epsilon: The release's total epsilon.
        dataset: The budget it is charged to.
        k: Most interactions of one user per day and cell.
        bounds: Value -> ``(low, high)`` clamp bounds (``cost``, ``latency_ms``, ``rating``,
            or a qualified metric name overriding its declared range).
    """

    epsilon: float
    dataset: str
    k: int
    bounds: dict[str, tuple[float, float]]

    def bound(self, name: str) -> tuple[float, float]:
        """The clamp bounds of ``name``: configured, else a metric's declared range, else (0, 1)."""
        if name in self.bounds:
            lo, hi = self.bounds[name]
            return float(lo), float(hi)
        spec = metric_spec(name, metric_catalogue())
        return (float(spec.range[0]), float(spec.range[1])) if spec.range else (0.0, 1.0)


@dataclass
class DPRelease:
    """A computed release, not yet published: its rows and what its noise is.

    Attributes:
        kind: ``export-daily`` or ``overview``.
        params: The privacy parameters.
        start: Window start.
        end: Window end.
        tables: Table name -> rows; each noised number is ``{"value", "noise95"}``.
        noised: Every primitive released (its epsilon, scale, mechanism).
    """

    kind: str
    params: DPParams
    start: datetime
    end: datetime
    tables: dict[str, list[dict[str, Any]]]
    noised: list[Noised] = field(default_factory=list)

    @property
    def epsilon(self) -> float:
        """What the release spends."""
        return self.params.epsilon

    @property
    def n_values(self) -> int:
        """How many noised primitives share the epsilon."""
        return len(self.noised)

    @property
    def per_value_epsilon(self) -> float | None:
        """Each primitive's epsilon (None when nothing was noised)."""
        return self.params.epsilon / len(self.noised) if self.noised else None

    def detail(self) -> dict[str, Any]:
        """What the ledger records about the release."""
        return {
            "window": [self.start.isoformat(), self.end.isoformat()],
            "max_contributions_per_day": self.params.k,
            "bounds": {k: list(v) for k, v in self.params.bounds.items()},
            "n_values": self.n_values,
            "per_value_epsilon": self.per_value_epsilon,
            "mechanisms": sorted({n.mechanism for n in self.noised}),
        }


def _days(start: datetime, end: datetime) -> list[str]:
    """Every calendar day (UTC) the window touches: public, so empty days are released too."""
    first = start.date()
    last = (end - timedelta(microseconds=1)).date()
    return [str(first + timedelta(days=i)) for i in range((last - first).days + 1)]


class _Plan:
    """Collects a release's primitives, then noises them all at once (epsilon split evenly)."""

    def __init__(self) -> None:
        self.queries: list[CountQuery | SumQuery] = []
        self.results: list[Noised] = []

    def count(self, name: str, n: int, d_in: int) -> int:
        self.queries.append(CountQuery(name, int(n), d_in))
        return len(self.queries) - 1

    def sum(self, name: str, values: pd.Series, bounds: tuple[float, float], d_in: int) -> int:
        vals = tuple(float(v) for v in values.dropna())
        self.queries.append(SumQuery(name, vals, bounds, d_in))
        return len(self.queries) - 1

    def run(self, epsilon: float) -> None:
        self.results = release(self.queries, epsilon)

    def __getitem__(self, i: int) -> Noised:
        return self.results[i]


def _num(n: Noised) -> dict[str, float]:
    return {"value": n.value, "noise95": n.noise95}


def _ratio(
    plan: _Plan, total: int, count: int, bounds: tuple[float, float] | None
) -> dict[str, float] | None:
    value, n95 = safe_ratio(plan[total], plan[count], bounds)
    return None if value is None or n95 is None else {"value": value, "noise95": n95}


def _ratings(frames: DPFrames) -> pd.Series:
    """Each rated interaction's mean rating (an interaction rated twice is one value)."""
    fb = frames.feedback
    if fb.empty:
        return pd.Series(dtype=float)
    return fb[fb["kind"] == "rating"].groupby("interaction_id")["value"].mean()


def daily_release(
    frames: DPFrames, params: DPParams, apps: Sequence[str] | None = None
) -> DPRelease:
    """The daily aggregates per app, noised: the rows of ``evalwatch export daily``.

    Per day and app: interactions, total cost, mean latency, success rate (rated 4+ or thumbs
    up, not abandoned), ratings and mean rating. Seven primitives per cell, each with
    ``d_in = k``; cost per interaction, means and rates are ratios of them.

    Args:
        frames: The window's rows.
        params: Epsilon, dataset, ``k`` and bounds.
        apps: The apps asked for (``--app``): each gets a row every day, with traffic or not;
            default the apps present in the window.

    Returns:
        The release, its ``daily`` table one row per day and app.
    """
    k = params.k
    traffic = bound_contributions(frames.traffic, ["day", "app"], k)
    success = successful_ids(frames.feedback)
    ratings = _ratings(frames)
    if apps:
        apps = sorted(set(apps))
    else:
        apps = sorted(str(a) for a in traffic["app"].dropna().unique()) if len(traffic) else []
    plan = _Plan()
    cells: list[tuple[str, str, dict[str, int]]] = []
    for day in _days(frames.start, frames.end):
        for app in apps:
            g = traffic[(traffic["day"] == day) & (traffic["app"] == app)]
            rated = ratings.reindex(g["id"]).dropna()
            p = f"{day}/{app}/"
            ids = {
                "n": plan.count(p + "interactions", len(g), k),
                "cost": plan.sum(p + "cost", g["cost"], params.bound("cost"), k),
                "n_lat": plan.count(p + "with latency", int(g["latency_ms"].notna().sum()), k),
                "lat": plan.sum(p + "latency_ms", g["latency_ms"], params.bound("latency_ms"), k),
                "ok": plan.count(p + "successful", int(g["id"].isin(success).sum()), k),
                "n_rated": plan.count(p + "ratings", len(rated), k),
                "rating": plan.sum(p + "rating", rated, params.bound("rating"), k),
            }
            cells.append((day, app, ids))
    plan.run(params.epsilon)
    rows = []
    for day, app, i in cells:
        rows.append(
            {
                "day": day,
                "app": app,
                "interactions": _num(plan[i["n"]]),
                "total_cost_usd": _num(plan[i["cost"]]),
                "cost_per_interaction_usd": _ratio(plan, i["cost"], i["n"], params.bound("cost")),
                "mean_latency_ms": _ratio(plan, i["lat"], i["n_lat"], params.bound("latency_ms")),
                "success_rate": _ratio(plan, i["ok"], i["n"], (0.0, 1.0)),
                "ratings": _num(plan[i["n_rated"]]),
                "mean_rating": _ratio(plan, i["rating"], i["n_rated"], params.bound("rating")),
            }
        )
    return DPRelease(
        "export-daily", params, frames.start, frames.end, {"daily": rows}, plan.results
    )


def overview_release(frames: DPFrames, params: DPParams) -> DPRelease:
    """The overview's user-derived numbers, noised.

    At a glance (interactions, cost, successful, their ratios), per model version
    (interactions, cost per interaction, mean latency, success rate, the mean of each headline
    metric scored) and the mean rating per day. A number over the whole window covers ``D``
    days, so its ``d_in`` is ``k * D``; a daily one's is ``k``.

    Args:
        frames: The window's rows.
        params: Epsilon, dataset, ``k`` and bounds.

    Returns:
        The release, with tables ``headline``, ``per_version`` and ``satisfaction``.
    """
    k = params.k
    n_days = len(_days(frames.start, frames.end))
    wide = k * n_days
    success = successful_ids(frames.feedback)
    ratings = _ratings(frames)
    plan = _Plan()
    cost_b = params.bound("cost")

    everyone = bound_contributions(frames.traffic, ["day"], k)
    head = {
        "n": plan.count("interactions", len(everyone), wide),
        "cost": plan.sum("total cost", everyone["cost"], cost_b, wide),
        "ok": plan.count("successful", int(everyone["id"].isin(success).sum()), wide),
    }

    per_version = bound_contributions(frames.traffic, ["day", "model_version"], k)
    versions = sorted(str(v) for v in per_version["model_version"].dropna().unique())
    scores = frames.scores.groupby(["interaction_id", "metric"], as_index=False)["value"].mean()
    metrics = [m for m in _DP_METRICS if m in set(scores["metric"])]
    vcells: list[tuple[str, dict[str, int]]] = []
    for v in versions:
        g = per_version[per_version["model_version"] == v]
        ids = {
            "n": plan.count(f"{v}/interactions", len(g), wide),
            "cost": plan.sum(f"{v}/cost", g["cost"], cost_b, wide),
            "n_lat": plan.count(f"{v}/with latency", int(g["latency_ms"].notna().sum()), wide),
            "lat": plan.sum(f"{v}/latency_ms", g["latency_ms"], params.bound("latency_ms"), wide),
            "ok": plan.count(f"{v}/successful", int(g["id"].isin(success).sum()), wide),
        }
        for m in metrics:
            vals = scores.loc[
                (scores["metric"] == m) & scores["interaction_id"].isin(g["id"]), "value"
            ]
            ids[f"n:{m}"] = plan.count(f"{v}/{m} scored", int(vals.notna().sum()), wide)
            ids[f"s:{m}"] = plan.sum(f"{v}/{m}", vals, params.bound(m), wide)
        vcells.append((v, ids))

    daily = bound_contributions(frames.traffic, ["day"], k)
    rated_rows = daily.assign(rating=ratings.reindex(daily["id"]).to_numpy()).dropna(
        subset=["rating"]
    )
    scells: list[tuple[str, int, int]] = []
    for day in _days(frames.start, frames.end):
        r = rated_rows.loc[rated_rows["day"] == day, "rating"]
        scells.append(
            (
                day,
                plan.count(f"{day}/ratings", len(r), k),
                plan.sum(f"{day}/rating", r, params.bound("rating"), k),
            )
        )

    plan.run(params.epsilon)
    headline = [
        {
            "interactions": _num(plan[head["n"]]),
            "total cost USD": _num(plan[head["cost"]]),
            "cost / interaction": _ratio(plan, head["cost"], head["n"], cost_b),
            "successful (rated 4+ or thumbs up, not abandoned)": _num(plan[head["ok"]]),
            "success rate": _ratio(plan, head["ok"], head["n"], (0.0, 1.0)),
        }
    ]
    version_rows = []
    for v, i in vcells:
        row: dict[str, Any] = {
            "model version": v,
            "interactions": _num(plan[i["n"]]),
            "cost / interaction": _ratio(plan, i["cost"], i["n"], cost_b),
            "mean latency ms": _ratio(plan, i["lat"], i["n_lat"], params.bound("latency_ms")),
            "success rate": _ratio(plan, i["ok"], i["n"], (0.0, 1.0)),
        }
        for m in metrics:
            row[m] = _ratio(plan, i[f"s:{m}"], i[f"n:{m}"], params.bound(m))
        version_rows.append(row)
    satisfaction = [
        {
            "day": day,
            "mean rating": _ratio(plan, s, n, params.bound("rating")),
            "ratings": _num(plan[n]),
        }
        for day, n, s in scells
    ]
    return DPRelease(
        "overview",
        params,
        frames.start,
        frames.end,
        {"headline": headline, "per_version": version_rows, "satisfaction": satisfaction},
        plan.results,
    )


def executive_release(frames: DPFrames, params: DPParams) -> DPRelease:
    """The executive view's numbers, noised: one row per app and model version.

    Interactions, success rate, mean rating, cost per successful interaction, and the mean of
    each safety and quality headline metric scored. Window numbers: ``d_in = k * D``.

    Args:
        frames: The window's rows.
        params: Epsilon, dataset, ``k`` and bounds.

    Returns:
        The release, with its ``health`` table.
    """
    k = params.k
    wide = k * len(_days(frames.start, frames.end))
    success = successful_ids(frames.feedback)
    ratings = _ratings(frames)
    cost_b = params.bound("cost")
    kept = bound_contributions(frames.traffic, ["day", "app", "model_version"], k)
    scores = frames.scores.groupby(["interaction_id", "metric"], as_index=False)["value"].mean()
    metrics = [m for m in _DP_METRICS if m in set(scores["metric"])]
    plan = _Plan()
    cells: list[tuple[str, str, dict[str, int]]] = []
    groups = kept.dropna(subset=["app", "model_version"]).groupby(["app", "model_version"])
    for (app, version), g in sorted(groups, key=lambda kv: (str(kv[0][0]), str(kv[0][1]))):
        p = f"{app}/{version}/"
        good = g[g["id"].isin(success)]
        rated = ratings.reindex(g["id"]).dropna()
        ids = {
            "n": plan.count(p + "interactions", len(g), wide),
            "ok": plan.count(p + "successful", len(good), wide),
            "cost": plan.sum(p + "cost", g["cost"], cost_b, wide),
            "n_rated": plan.count(p + "ratings", len(rated), wide),
            "rating": plan.sum(p + "rating", rated, params.bound("rating"), wide),
        }
        for m in metrics:
            vals = scores.loc[
                (scores["metric"] == m) & scores["interaction_id"].isin(g["id"]), "value"
            ]
            ids[f"n:{m}"] = plan.count(f"{p}{m} scored", int(vals.notna().sum()), wide)
            ids[f"s:{m}"] = plan.sum(f"{p}{m}", vals, params.bound(m), wide)
        cells.append((str(app), str(version), ids))
    plan.run(params.epsilon)
    rows = []
    for app, version, i in cells:
        row: dict[str, Any] = {
            "app": app,
            "model version": version,
            "interactions": _num(plan[i["n"]]),
            "success rate": _ratio(plan, i["ok"], i["n"], (0.0, 1.0)),
            "mean rating": _ratio(plan, i["rating"], i["n_rated"], params.bound("rating")),
            # Total cost over successful interactions: both noised, the ratio is free.
            "cost / successful USD": _ratio(plan, i["cost"], i["ok"], None),
        }
        for m in metrics:
            row[m] = _ratio(plan, i[f"s:{m}"], i[f"n:{m}"], params.bound(m))
        rows.append(row)
    return DPRelease("executive", params, frames.start, frames.end, {"health": rows}, plan.results)


def executive_dp_html(
    r: DPRelease, *, spent: float | None = None, budget: float | None = None
) -> str:
    """The DP executive view as a self-contained HTML page; every number noised.

    Health verdicts against targets, trends and alert-based compliance are left out: they
    are not noised.
    """
    rows = [{k: fmt_noised(v) for k, v in row.items()} for row in r.tables["health"]]
    statement = html.escape(_statement(r, spent, budget))
    return html_page(
        "evalwatch executive view (differentially private)",
        section("Privacy", f"<p class='meta'>{statement}</p>"),
        section("Per app and model version (whole window)", html_table(rows)),
        section(
            "Left out",
            "<p class='meta'>health verdicts against targets, trends and alert-based "
            "compliance are not part of a differentially private release.</p>",
        ),
        subtitle=f"window {r.start:%Y-%m-%d %H:%M} → {r.end:%Y-%m-%d %H:%M} UTC",
    )


def _digits(noise95: float) -> int:
    """Decimals that show a value to about a tenth of its noise (no false precision)."""
    if noise95 <= 0 or not math.isfinite(noise95):
        return 3
    return max(0, -math.floor(math.log10(noise95)) + 1)


def fmt_noised(cell: Any) -> Any:
    """A noised number as text, ``≈value ±noise95``; other values as they are.

    Examples:
        >>> fmt_noised({"value": 1234.4, "noise95": 61.2})
        '≈1234 ±61'
        >>> fmt_noised({"value": 0.8123, "noise95": 0.021})
        '≈0.812 ±0.021'
        >>> fmt_noised(None) is None
        True
    """
    if not isinstance(cell, dict):
        return cell
    d = _digits(cell["noise95"])
    return f"≈{cell['value']:.{d}f} ±{cell['noise95']:.2g}"


def _statement(r: DPRelease, spent: float | None, budget: float | None) -> str:
    p = r.params
    per = r.per_value_epsilon
    per_text = f"{per:.4g}" if per is not None else "—"
    budget_text = (
        f" Dataset budget after this release: {spent:.4g} of {budget:.4g} spent."
        if spent is not None and budget is not None
        else ""
    )
    bounds = ", ".join(f"{k} [{lo:g}, {hi:g}]" for k, (lo, hi) in sorted(p.bounds.items()))
    return (
        f"Differentially private release: epsilon = {p.epsilon:g} (dataset {p.dataset!r}), "
        f"split evenly over {r.n_values} noised counts and sums ({per_text} each).{budget_text} "
        f"Each user contributes at most {p.k} interactions per day and cell; values are "
        f"clamped to declared bounds ({bounds}; scores to their metric's range). Numbers shown "
        "≈v ±h are noised: h is the half-width of the 95% interval of the noise added (counts: "
        "discrete Laplace, sums: Laplace; a mean's or rate's is its sum's divided by the noised "
        "count). Cells (days, apps, model versions) are not hidden."
    )


def overview_dp_html(
    r: DPRelease, *, spent: float | None = None, budget: float | None = None
) -> str:
    """The DP overview as a self-contained HTML page; every user-derived number is noised.

    Charts, p95 latency, trends, alerts, drift findings, gate verdicts and evaluator
    throughput are left out: they are not noised, so they have no place in a page that leaves
    the team.
    """

    def table(rows: list[dict[str, Any]]) -> str:
        return html_table([{k: fmt_noised(v) for k, v in row.items()} for row in rows])

    statement = html.escape(_statement(r, spent, budget))
    return html_page(
        "evalwatch operations overview (differentially private)",
        section("Privacy", f"<p class='meta'>{statement}</p>"),
        section("At a glance", table(r.tables["headline"])),
        section(
            "Quality and cost per model version (whole window)", table(r.tables["per_version"])
        ),
        section("User satisfaction (mean rating per day)", table(r.tables["satisfaction"])),
        section(
            "Left out",
            "<p class='meta'>charts, p95 latency, trends, open alerts, drift findings, gate "
            "verdicts and evaluator throughput are not part of a differentially private "
            "release.</p>",
        ),
        subtitle=f"window {r.start:%Y-%m-%d %H:%M} → {r.end:%Y-%m-%d %H:%M} UTC",
    )


def _flat_rows(r: DPRelease) -> list[dict[str, Any]]:
    """The daily rows with each noised number as two columns: NAME and NAME_noise95."""
    out = []
    for row in r.tables["daily"]:
        flat: dict[str, Any] = {}
        for key, cell in row.items():
            if key in ("day", "app"):
                flat[key] = cell
                continue
            flat[key] = None if cell is None else cell["value"]
            flat[f"{key}_noise95"] = None if cell is None else cell["noise95"]
        out.append(flat)
    return out


def _meta(
    r: DPRelease, release_id: int | None, spent: float | None, budget: float | None
) -> dict[str, Any]:
    return {
        "release_id": release_id,
        "dataset": r.params.dataset,
        "epsilon": r.epsilon,
        "budget": budget,
        "spent_after": spent,
        "noise_interval": "95% interval half-width of the added noise (columns *_noise95)",
        **r.detail(),
    }


def export_json(
    r: DPRelease, *, release_id: int | None, spent: float | None, budget: float | None
) -> str:
    """The daily export as JSON: ``{"release": {...}, "rows": [...]}``."""
    return json.dumps(
        {"release": _meta(r, release_id, spent, budget), "rows": _flat_rows(r)}, indent=2
    )


_CSV_META: Sequence[str] = ("release_id", "dataset", "epsilon")


def export_csv(r: DPRelease, *, release_id: int | None, **_: Any) -> str:
    """The daily export as CSV: one row per day and app, with the release's id and epsilon.

    Every row repeats ``release_id``, ``dataset`` and ``epsilon`` so that a row copied out
    of the file still says which release (and how much privacy loss) it belongs to.
    """
    rows = _flat_rows(r)
    meta = {"release_id": release_id, "dataset": r.params.dataset, "epsilon": r.epsilon}
    buf = io.StringIO()
    cols = [*_CSV_META, *(rows[0].keys() if rows else ("day", "app"))]
    writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**meta, **{k: ("" if v is None else v) for k, v in row.items()}})
    return buf.getvalue()


#: Export writers by ``--format``.
EXPORT_WRITERS: dict[str, Callable[..., str]] = {"csv": export_csv, "json": export_json}
