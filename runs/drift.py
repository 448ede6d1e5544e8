"""Drift and anomaly checks on stored traffic: load two windows, test them, store the report.

:func:`check_drift` is the whole job (the CLI, the ``drift_check`` flow and ``make demo`` call
it): resolve the current window and the baseline, load both from the store in one query per
table, run :func:`evalwatch.checks.drift.run_drift` per scope, adjust every test of every scope as
ONE
report, compute the anomaly series, and store one ``drift_reports`` row per test under one
``report_key``.

What is compared, per interaction:

* numeric columns: ``response_length`` (characters), ``latency_ms``, ``input_tokens``,
  ``output_tokens``, ``cost`` and every stored score metric as ``evaluator.metric`` (only scores
  with status ``ok``, of one evaluator version and options per evaluator: the newest stored in
  the current window). A metric whose stored values are all 0 or 1 is a *rate*, not a numeric
  column (``heuristics.refusal`` becomes the rate ``refusal``);
* rates: ``refusal``, the other 0/1 metrics, ``unsafe`` (``toxicity.safety`` below
  ``unsafe_threshold``, where toxicity scores exist), ``unscored`` (share of evaluated
  interactions with a score that failed, status ``error``) and ``thumbs_down`` (share of
  thumbs feedback that is down), and the feedback events ``follow_up``, ``copy``,
  ``refinement`` and ``abandon`` (share of interactions with one, where the windows have any;
  see :mod:`evalwatch.core.feedback`); ``time_to_rate`` (seconds) is a numeric column;
* ratings: ``rating`` feedback (1-5) with its timestamps, for the distribution and the trend;
* embeddings: the response embeddings of one embedding model (default: the model with the most
  embeddings in the windows), decoded from float16, with the responses as example texts.

Scopes: ``overall`` (everything the ``apps`` / ``model_versions`` filters keep), then each app
and each model version seen in either window (a dimension with a single value is not split,
it would repeat ``overall``). ``evalwatch.checks.drift`` wants one Benjamini-Hochberg family per
report:
each scope's results are pooled and adjusted together by
:func:`evalwatch.checks.drift.apply_verdicts`,
so the report-level false-alarm rate stays at ``alpha`` however many scopes there are (tests
with insufficient data take no part). More scopes cost power, not validity.

Anomalies: hourly (or daily) series of volume, p95 latency, cost (sum), mean response length,
the evaluator error rate and every score metric's mean (or rate), over the current window and
``anomaly_history_days`` before it, go through :func:`evalwatch.checks.anomaly.detect_anomalies`.
Only windows inside the current window, and complete (ended before ``now``), are judged. Each
window's value gets a noise floor (``min_scale``) of its sampling error at the history's typical
window size (:func:`evalwatch.checks.anomaly.noise_floor`), and rates are judged on the
variance-stabilising (Anscombe) arcsine scale (:func:`evalwatch.checks.anomaly.anscombe_rate`), so a
handful of events per hour cannot raise an alarm by chance. The robust z cut is, by default,
the Bonferroni cut for the number of windows judged at the report's ``alpha`` (at least 3.5), so
the check's chance of any false anomaly matches its drift tests'. One row per series and scope
is stored with family ``"anomaly"`` (test ``anomaly_<method>``, verdict ``anomaly``,
``no_anomaly`` or ``insufficient_data``), which the alert selector ``anomaly.verdict`` reads;
anomalies are not part of the Benjamini-Hochberg family and do not set ``drift_found``.

A numeric column holding one single value across both windows (a fixed price) is not tested
(:func:`evalwatch.checks.drift.run_drift` leaves it out): it cannot drift.

The result types (:class:`DriftParams`, :class:`DriftOutcome`...) live in
:mod:`evalwatch.checks.drift.outcome` and are re-exported here; the markdown and HTML of an
outcome are :mod:`evalwatch.reporting.drift_markdown` and :mod:`evalwatch.reporting.drift_report`.
Loading is :func:`evalwatch.storage.traffic_frame.load_frame` (one bulk read per table into
numpy columns, once for every scope); this module holds no SQL. Per evaluator, only the scores
of the current window's newest evaluator version and options (``config_hash``) are compared,
in both windows; where a scope's windows hold scores under other keys, every result of that
evaluator's features says what was left out (``details["note"]``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from evalwatch.checks.anomaly import aggregate_series, anscombe_rate, detect_anomalies, noise_floor
from evalwatch.checks.drift import DriftInput, DriftReport, DriftTestResult, run_drift
from evalwatch.checks.drift import apply_verdicts as _apply_verdicts
from evalwatch.checks.drift.outcome import (
    FREQ_DELTA,
    AnomalySeries,
    Baseline,
    DriftOutcome,
    DriftParams,
    Scope,
    ScopeKind,
    ScopeResult,
    TimeWindow,
    as_utc,
    json_safe,
)
from evalwatch.checks.fairness import FairnessReport
from evalwatch.core import parse_duration
from evalwatch.evaluators.metrics import (
    MetricKind,
    MetricSpec,
    find_metric_spec,
    metric_catalogue,
)
from evalwatch.runs.fairness import check_fairness, fairness_rows
from evalwatch.settings import Settings
from evalwatch.storage.models import utcnow
from evalwatch.storage.repo import content_hash, evaluator_configs
from evalwatch.storage.traffic_frame import (
    TrafficFrame,
    insert_drift_rows,
    load_frame,
    newest_interaction_time,
    run_subjects,
    to_datetime64,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = [
    "AnomalySeries",
    "Baseline",
    "DriftInputError",
    "DriftOutcome",
    "DriftParams",
    "Scope",
    "ScopeResult",
    "TimeWindow",
    "TrafficFrame",
    "anomaly_threshold",
    "check_drift",
    "drift_input",
    "frame_catalogue",
    "load_frame",
    "newest_interaction_time",
    "outcome_rows",
    "resolve_windows",
    "store_outcome",
]

# Stored binary metrics that get a plain name as a rate.
_RATE_NAMES = {"heuristics.refusal": "refusal"}
_SAFETY_METRIC = "toxicity.safety"


class DriftInputError(ValueError):
    """The check cannot run as asked (bad windows, unknown run, empty store)."""


# --------------------------------------------------------------------------------------------
# Parameters and windows
# --------------------------------------------------------------------------------------------


def _ceil_hour(dt: datetime) -> datetime:
    floor = as_utc(dt).replace(minute=0, second=0, microsecond=0)
    return floor if floor == as_utc(dt) else floor + timedelta(hours=1)


def resolve_windows(engine: Engine, params: DriftParams) -> tuple[TimeWindow, Baseline]:
    """Turn the parameters into the current window and the baseline.

    Args:
        engine: The store (asked for the newest interaction when the end is not given).
        params: The check's parameters.

    Returns:
        ``(current, baseline)``.

    Raises:
        DriftInputError: Nothing stored in the scope, an unknown run, or overlapping windows.

    Examples:
        >>> from datetime import UTC
        >>> from evalwatch.storage.db import make_engine, upgrade
        >>> e = make_engine("sqlite://"); _ = upgrade(e)
        >>> p = DriftParams(current_end=datetime(2026, 11, 15, tzinfo=UTC), window="3d")
        >>> cur, base = resolve_windows(e, p)
        >>> cur.describe(), base.describe()
        ('2026-11-12 00:00 → 2026-11-15 00:00 UTC', '2026-11-05 00:00 → 2026-11-12 00:00 UTC')
    """
    end = params.current_end
    if end is None:
        newest = newest_interaction_time(engine, params.apps, params.model_versions)
        if newest is None:
            raise DriftInputError(
                "no interactions stored" + _filter_text(params) + "; ingest traffic first"
            )
        end = _ceil_hour(newest + timedelta(microseconds=1))
    start = params.current_start or end - parse_duration(params.window)
    try:
        current = TimeWindow(start=as_utc(start), end=as_utc(end))
    except ValueError as exc:
        raise DriftInputError(f"bad current window: {exc}") from exc
    if params.baseline_run is not None:
        return current, Baseline(run_id=params.baseline_run)
    if params.baseline_start is not None and params.baseline_end is not None:
        base = TimeWindow(start=as_utc(params.baseline_start), end=as_utc(params.baseline_end))
        if base.start < current.end and current.start < base.end:
            raise DriftInputError(
                f"the baseline window ({base.describe()}) overlaps the current window "
                f"({current.describe()})"
            )
        return current, Baseline(window=base)
    base = TimeWindow(start=current.start - timedelta(days=params.baseline_days), end=current.start)
    return current, Baseline(window=base)


def _filter_text(params: DriftParams) -> str:
    parts = []
    if params.apps:
        parts.append(f"app {', '.join(params.apps)}")
    if params.model_versions:
        parts.append(f"model version {', '.join(params.model_versions)}")
    return f" for {' and '.join(parts)}" if parts else ""


# --------------------------------------------------------------------------------------------
# Windows -> DriftInput
# --------------------------------------------------------------------------------------------


def _rate_name(key: str) -> str:
    return _RATE_NAMES.get(key, key)


def frame_catalogue(engine: Engine, frame: TrafficFrame) -> dict[str, MetricSpec]:
    """The metric catalogue under the options the frame's scores were made with.

    The options are those the scoring runs recorded (:func:`~evalwatch.storage.repo.
    evaluator_configs`): a judge declares the metrics of the user's own rubric files only
    under its options, so such a metric is compared as the kind its scale makes it.
    """
    return metric_catalogue(evaluator_configs(engine, frame.score_keys))


def _rate_columns(
    frame: TrafficFrame, catalogue: Mapping[str, MetricSpec] | None = None
) -> set[str]:
    """The frame's score columns compared as rates rather than as numbers.

    A metric its evaluator declares a rate (``heuristics.refusal``) is one; a declared score
    is not, even where a window's values happen to be all 0/1. A metric no registered
    evaluator declares is read from its values: a rate when they are all 0/1. ``catalogue``
    is :func:`frame_catalogue`'s (None: the general catalogue).
    """
    catalogue = metric_catalogue() if catalogue is None else catalogue
    out = set()
    for key in frame.binary:
        spec = find_metric_spec(key, catalogue)
        if spec is None or spec.kind == MetricKind.rate:
            out.add(key)
    return out


def drift_input(
    frame: TrafficFrame,
    rows: npt.NDArray[np.bool_],
    *,
    unsafe_threshold: float = 0.5,
    columns: Sequence[str] | None = None,
    catalogue: Mapping[str, MetricSpec] | None = None,
) -> DriftInput:
    """One window of a frame as the input of :func:`evalwatch.checks.drift.run_drift`.

    Args:
        frame: The loaded frame.
        rows: Boolean mask of the window's rows.
        unsafe_threshold: ``toxicity.safety`` below this counts as unsafe.
        columns: Numeric and binary columns to include (default: all of the frame's).
        catalogue: What the score columns mean (:func:`frame_catalogue`; None: the general
            catalogue, which lacks the metrics of a judge's own rubric files).

    Returns:
        The window: numeric columns (0/1 metrics as rates), rates ``unsafe``, ``unscored`` and
        ``thumbs_down`` where the frame has their data, the feedback signals the frame has
        (rates ``follow_up``, ``copy``, ``refinement``, ``abandon``: share of interactions
        with the event; numeric ``time_to_rate``), ratings with timestamps, embeddings with
        their responses as texts (None when the window has none).

    Examples:
        >>> from datetime import UTC
        >>> from evalwatch.storage.db import make_engine, upgrade
        >>> e = make_engine("sqlite://"); _ = upgrade(e)
        >>> w = TimeWindow(start=datetime(2026, 11, 1, tzinfo=UTC),
        ...                end=datetime(2026, 11, 2, tzinfo=UTC))
        >>> f = load_frame(e, [w])
        >>> sorted(drift_input(f, f.between(w)).numeric)
        ['cost', 'input_tokens', 'latency_ms', 'output_tokens', 'response_length']
    """
    names = list(frame.numeric) if columns is None else [c for c in columns if c in frame.numeric]
    numeric: dict[str, npt.NDArray[Any]] = {}
    rates: dict[str, npt.NDArray[Any]] = {}
    rate_columns = _rate_columns(frame, catalogue)
    for name in names:
        col = frame.numeric[name][rows]
        if name in rate_columns:
            rates[_rate_name(name)] = col[np.isfinite(col)] >= 0.5
        else:
            numeric[name] = col
    if _SAFETY_METRIC in frame.numeric and (columns is None or _SAFETY_METRIC in names):
        safety = frame.numeric[_SAFETY_METRIC][rows]
        rates["unsafe"] = safety[np.isfinite(safety)] < unsafe_threshold
    if frame.evaluated.any():
        rates["unscored"] = frame.errored[rows & frame.evaluated]
    if frame.thumb_rows.size:
        rates["thumbs_down"] = frame.thumb_down[rows[frame.thumb_rows]]
    # The other feedback kinds (evalwatch.core.feedback): the share of interactions with a
    # follow-up, copy, refinement or abandonment is a rate; the time to rate is numeric.
    for name, happened in frame.feedback_events.items():
        rates[name] = happened[rows]
    for name, values in frame.feedback_numeric.items():
        numeric[name] = values[rows]
    embeddings = texts = None
    if frame.embeddings is not None:
        sel = rows[frame.emb_rows]
        if sel.any():
            embeddings = frame.embeddings[sel]
            texts = [str(t) for t in frame.responses[frame.emb_rows[sel]]]
    ratings = timestamps = None
    if frame.rating_rows.size:
        sel = rows[frame.rating_rows]
        ratings = frame.rating_values[sel]
        timestamps = frame.rating_ts[sel]
    return DriftInput(
        embeddings=embeddings,
        numeric=numeric,
        rates=rates,
        ratings=ratings,
        texts=texts,
        timestamps=timestamps,
    )


def _scopes(
    kinds: Sequence[ScopeKind], frame: TrafficFrame, rows: npt.NDArray[np.bool_], p: DriftParams
) -> list[Scope]:
    pinned_app = p.apps[0] if len(p.apps) == 1 else None
    pinned_version = p.model_versions[0] if len(p.model_versions) == 1 else None
    out: list[Scope] = []
    if "overall" in kinds:
        out.append(Scope("overall", pinned_app, pinned_version))
    for dim in ("app", "model_version"):
        if dim not in kinds:
            continue
        values = sorted({str(v) for v in getattr(frame, dim)[rows]})
        if len(values) < 2:
            continue  # one value: the same rows as overall
        for v in values:
            if dim == "app":
                out.append(Scope(f"app={v}", v, pinned_version, "app"))
            else:
                out.append(Scope(f"model_version={v}", pinned_app, v, "model_version"))
    return out


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


def _finite_or_none(x: float | None) -> float | None:
    return x if x is None or math.isfinite(x) else None


# --------------------------------------------------------------------------------------------
# Anomaly series
# --------------------------------------------------------------------------------------------


@dataclass
class _Prepared:
    """One series aggregated per window, waiting for the check-wide threshold."""

    scope: Scope
    feature: str
    starts: npt.NDArray[np.datetime64]
    values: npt.NDArray[np.float64]
    counts: npt.NDArray[np.int64]
    floor: float
    rate: bool = False


def _prepare_series(
    scope: Scope,
    frame: TrafficFrame,
    rows: npt.NDArray[np.bool_],
    current: TimeWindow,
    series_start: datetime,
    p: DriftParams,
    catalogue: Mapping[str, MetricSpec],
) -> list[_Prepared]:
    freq = p.anomaly_freq
    start64 = to_datetime64(series_start)
    last64 = to_datetime64(current.end - timedelta(microseconds=1))
    hist_cut = to_datetime64(current.start)
    ts = frame.ts[rows]
    specs: list[tuple[str, npt.NDArray[np.float64] | None, str]] = [("volume", None, "count")]
    specs.append(("latency_ms.p95", frame.numeric["latency_ms"][rows], "p95"))
    specs.append(("cost.sum", frame.numeric["cost"][rows], "sum"))
    specs.append(("response_length.mean", frame.numeric["response_length"][rows], "mean"))
    if frame.evaluated.any():
        err = np.where(frame.evaluated[rows], frame.errored[rows].astype(np.float64), np.nan)
        specs.append(("error_rate", err, "rate"))
    rate_columns = _rate_columns(frame, catalogue)
    for key in frame.score_columns():
        if key in rate_columns:
            specs.append((f"{_rate_name(key)}.rate", frame.numeric[key][rows], "rate"))
        else:
            specs.append((f"{key}.mean", frame.numeric[key][rows], "mean"))
    out: list[_Prepared] = []
    for feature, values, agg in specs:
        if values is None:
            t_ok, v_ok = ts, None
        else:
            finite = np.isfinite(values)
            if not finite.any():
                continue
            t_ok, v_ok = ts[finite], values[finite]
        starts, vals, counts = aggregate_series(
            t_ok,
            v_ok,
            freq=freq,
            agg="sum" if agg == "rate" else agg,  # type: ignore[arg-type]
            start=start64,
            end=last64,
        )
        hist = starts < hist_cut.astype(starts.dtype)
        if v_ok is None:
            floor = noise_floor(np.empty(0), counts[hist], "count")
        elif agg == "rate":
            vals = anscombe_rate(vals, counts)
            floor = noise_floor(np.empty(0), counts[hist], "rate")
        else:
            floor = noise_floor(v_ok[t_ok < hist_cut], counts[hist], agg)
        if v_ok is not None:
            # Too few events for a mean, a rate or a p95: the window holds no value.
            vals = np.where(counts >= p.anomaly_min_events, vals, np.nan)
        out.append(_Prepared(scope, feature, starts, vals, counts, floor, rate=agg == "rate"))
    return out


def anomaly_threshold(p: DriftParams, n_windows: int) -> float:
    """The robust z-score above which a window is anomalous in this check.

    ``p.anomaly_threshold`` when given; otherwise the two-sided Bonferroni cut for
    ``n_windows`` judged windows at the report's ``alpha`` (never below the usual 3.5), so on
    stationary Gaussian noise the chance of any false anomaly in the check stays near
    ``alpha``, as for the drift tests.

    Args:
        p: The check's parameters.
        n_windows: Windows judged over every series and scope.

    Returns:
        The threshold.

    Examples:
        >>> round(anomaly_threshold(DriftParams(), 1800), 2)
        4.19
        >>> anomaly_threshold(DriftParams(), 10)
        3.5
    """
    if p.anomaly_threshold is not None:
        return p.anomaly_threshold
    from scipy import stats

    z = float(stats.norm.isf(p.alpha / (2 * max(n_windows, 1))))
    return max(3.5, z)


def _detect(
    prepared: Sequence[_Prepared],
    current: TimeWindow,
    p: DriftParams,
    now: datetime,
    history_baselines: bool,
) -> list[AnomalySeries]:
    step = FREQ_DELTA[p.anomaly_freq]
    first, last = to_datetime64(current.start), to_datetime64(min(current.end, now))
    judged = 0
    for s in prepared:
        ends = s.starts.astype("datetime64[us]") + np.timedelta64(step)
        judged += int(np.sum((s.starts.astype("datetime64[us]") >= first) & (ends <= last)))
    threshold = anomaly_threshold(p, judged)
    out = []
    for s in prepared:
        report = detect_anomalies(
            s.starts,
            s.values,
            freq=p.anomaly_freq,
            method=p.anomaly_method,
            threshold=threshold,
            seasonal=True,
            agg="mean",
            min_scale=s.floor,
            start=s.starts[0],
            end=s.starts[-1],
            # Only a chart shows the history's baselines: without one, judge the current
            # window alone (its baselines still read the whole history).
            judge_from=None if history_baselines else current.start,
        )
        out.append(
            AnomalySeries(
                scope=s.scope,
                feature=s.feature,
                report=report,
                counts=[int(c) for c in s.counts],
                current=current,
                now=now,
                rate=s.rate,
            )
        )
    return out


# --------------------------------------------------------------------------------------------
# The check
# --------------------------------------------------------------------------------------------


def _active_columns(
    frame: TrafficFrame, base: npt.NDArray[np.bool_], cur: npt.NDArray[np.bool_]
) -> list[str]:
    """Columns with a value in either window; the others are not part of this scope's report.

    A numeric column holding one constant across both windows is left out by
    :func:`evalwatch.checks.drift.run_drift` itself (it cannot drift).
    """
    both = base | cur
    return [name for name, col in frame.numeric.items() if np.isfinite(col[both]).any()]


def check_drift(
    engine: Engine,
    params: DriftParams,
    settings: Settings,
    *,
    html: Path | bool | None = None,
    store: bool = True,
    now: datetime | None = None,
    alerts: bool = True,
) -> DriftOutcome:
    """Run a drift and anomaly check on stored traffic, store its report, evaluate the rules.

    Args:
        engine: The store.
        params: Windows, scopes and test settings.
        settings: Settings: the alert rules in force, and ``html=True`` writes to the store's
            report folder (:func:`evalwatch.reporting.location.report_folder`).
        html: Write the HTML report: ``True`` to the store's report folder, or a path.
        store: Write the ``drift_reports`` rows (one per test, one per anomaly series).
        now: The present: windows ending after it are not judged for anomalies.
        alerts: Evaluate the alert rules once the report is stored (a flow does it in its
            own task instead); the outcome's ``alerts`` and ``alert_error`` say how it went.

    Returns:
        The outcome; ``outcome.drift_found`` is what the CLI's exit code reports, and
        ``outcome.no_data`` says which window held no interactions (nothing judged, nothing
        stored).

    Raises:
        DriftInputError: Bad windows, an unknown baseline run, or nothing stored.

    Examples:
        >>> from datetime import UTC
        >>> from evalwatch.storage.db import make_engine, upgrade
        >>> e = make_engine("sqlite://"); _ = upgrade(e)
        >>> p = DriftParams(current_end=datetime(2026, 11, 15, tzinfo=UTC), window="3d")
        >>> out = check_drift(e, p, Settings(), store=False)
        >>> out.drift_found, out.scopes[0].n_current
        (False, 0)
    """
    t_total = time.perf_counter()
    now = as_utc(now or utcnow())
    current, baseline = resolve_windows(engine, params)
    series_start = current.start - timedelta(
        days=params.anomaly_history_days or params.baseline_days
    )
    run_ids = _baseline_run_ids(engine, baseline)

    t0 = time.perf_counter()
    frame = _load(engine, params, current, baseline, series_start)
    timings = {"load": time.perf_counter() - t0}
    cur_rows = frame.between(current)
    base_rows = (
        frame.between(baseline.window)
        if baseline.window is not None
        else np.isin(frame.ids, run_ids)
    )
    no_data = _no_data(engine, params, current, baseline, cur_rows, base_rows)

    t0 = time.perf_counter()
    catalogue = frame_catalogue(engine, frame)
    results = _drift_scopes(frame, base_rows, cur_rows, params, catalogue)
    timings["drift"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    fairness = _fairness(engine, frame, cur_rows, params, settings, catalogue, timings)
    timings["fairness"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    series = _anomaly_series(
        frame, current, series_start, params, now, catalogue, history_baselines=bool(html)
    )
    timings["anomalies"] = time.perf_counter() - t0

    created = utcnow()
    key = content_hash(
        {
            "params": params.model_dump(mode="json"),
            "current": current.as_json(),
            "baseline": baseline.as_json(),
            "at": created.isoformat(),
        }
    )[:32]
    outcome = DriftOutcome(
        report_key=key,
        created_at=created,
        params=params,
        current=current,
        baseline=baseline,
        scopes=results,
        anomalies=series,
        embedding_model=frame.embedding_model,
        timings=timings,
        no_data=no_data,
        fairness=fairness,
    )
    # A window with no traffic judges nothing: storing its report would record a check that
    # did not happen (and could resolve alerts on no evidence), and an HTML page of no tests
    # would read as "no drift".
    if not no_data:
        if store:
            _store_and_alert(engine, outcome, settings if alerts else None)
        if html:
            _write_html(engine, outcome, None if html is True else Path(html), settings)
    timings["total"] = time.perf_counter() - t_total
    return outcome


def _fairness(
    engine: Engine,
    frame: TrafficFrame,
    cur_rows: npt.NDArray[np.bool_],
    params: DriftParams,
    settings: Settings,
    catalogue: Mapping[str, MetricSpec],
    timings: dict[str, float],
) -> FairnessReport | None:
    """The current window's fairness report (:mod:`evalwatch.runs.fairness`); None: no rows.

    It is its own Benjamini-Hochberg family at ``settings.fairness.fdr``, apart from the
    drift tests: segments against the rest of one window is another question than one window
    against another, and pooling would cost the drift tests power.
    """
    if not cur_rows.any() or not settings.fairness.segment_fields:
        return None
    return check_fairness(
        engine,
        frame,
        cur_rows,
        settings.fairness,
        rate_columns=_rate_columns(frame, catalogue),
        catalogue=catalogue,
        unsafe_threshold=params.unsafe_threshold,
        timings=timings,
    )


def _fairness_scope(params: DriftParams) -> Scope:
    """The scope of the fairness rows: everything the filters keep, as ``overall``."""
    app = params.apps[0] if len(params.apps) == 1 else None
    version = params.model_versions[0] if len(params.model_versions) == 1 else None
    return Scope("overall", app, version)


def _baseline_run_ids(engine: Engine, baseline: Baseline) -> npt.NDArray[np.int64]:
    """The interactions a baseline run scored (none for a window baseline).

    Raises:
        DriftInputError: The run does not exist or scored no interaction.
    """
    if baseline.run_id is None:
        return np.empty(0, dtype=np.int64)
    exists, run_ids = run_subjects(engine, baseline.run_id)
    if not exists:
        raise DriftInputError(f"no evaluation run {baseline.run_id}")
    if run_ids.size == 0:
        raise DriftInputError(
            f"evaluation run {baseline.run_id} scored no interactions (a test-set run?)"
        )
    return run_ids


def _load(
    engine: Engine,
    params: DriftParams,
    current: TimeWindow,
    baseline: Baseline,
    series_start: datetime,
) -> TrafficFrame:
    """One frame for both windows and the anomaly history."""
    windows = [TimeWindow(start=series_start, end=current.end)]
    if baseline.window is not None:
        windows.append(baseline.window)
    return load_frame(
        engine,
        windows,
        baseline_run=baseline.run_id,
        apps=params.apps,
        model_versions=params.model_versions,
        embedding_model=params.embedding_model,
        current=current,
    )


def _left_out_notes(
    frame: TrafficFrame, base: npt.NDArray[np.bool_], cur: npt.NDArray[np.bool_]
) -> dict[str, str]:
    """Feature -> a note on the scores left out of it (other evaluator version or options).

    The loader compares, per evaluator, only the scores of its newest version and options in
    the current window; a scope whose windows hold scores under other keys says so on every
    result of that evaluator's features (``details["note"]``).
    """
    notes: dict[str, str] = {}
    for ev, rows in frame.left_out.items():
        nb, nc = int((rows & base).sum()), int((rows & cur).sum())
        if not nb and not nc:
            continue
        ver, ch = frame.score_keys[ev]
        other = ", ".join(f"version {v} options {h[:12]}" for v, h in frame.left_out_keys[ev])
        counts = " and ".join(
            f"{k:,} {what}" for k, what in ((nb, "baseline"), (nc, "current")) if k
        )
        note = (
            f"{ev} scores of {counts} interactions made under other options or versions "
            f"({other}) were left out: only version {ver} options {ch[:12]} is compared"
        )
        for key in frame.score_columns():
            if key.split(".", 1)[0] == ev:
                notes[key] = notes[_rate_name(key)] = note
                if key == _SAFETY_METRIC:
                    notes["unsafe"] = note
    return notes


def _with_notes(report: DriftReport, notes: dict[str, str]) -> DriftReport:
    """The report with each note added to the results of its feature."""
    if not notes:
        return report
    results = []
    for r in report.results:
        note = notes.get(r.feature)
        if note is not None:
            prior = r.details.get("note")
            merged = f"{prior}; {note}" if prior else note
            r = r.model_copy(update={"details": {**r.details, "note": merged}})
        results.append(r)
    return report.model_copy(update={"results": results})


def _drift_scopes(
    frame: TrafficFrame,
    base_rows: npt.NDArray[np.bool_],
    cur_rows: npt.NDArray[np.bool_],
    params: DriftParams,
    catalogue: Mapping[str, MetricSpec],
) -> list[ScopeResult]:
    """Every scope's report, adjusted as one Benjamini-Hochberg family across all scopes."""
    config = params.drift_config()
    raw: list[tuple[Scope, DriftReport, int, int, DriftInput, DriftInput]] = []
    for scope in _scopes(params.scopes, frame, cur_rows | base_rows, params):
        in_scope = scope.mask(frame)
        b, c = base_rows & in_scope, cur_rows & in_scope
        columns = _active_columns(frame, b, c)
        b_in, c_in = (
            drift_input(
                frame,
                rows,
                unsafe_threshold=params.unsafe_threshold,
                columns=columns,
                catalogue=catalogue,
            )
            for rows in (b, c)
        )
        report = _with_notes(run_drift(b_in, c_in, config), _left_out_notes(frame, b, c))
        raw.append((scope, report, int(b.sum()), int(c.sum()), b_in, c_in))
    adjusted = _apply_verdicts([r for _, rep, *_ in raw for r in rep.results], config)
    results: list[ScopeResult] = []
    i = 0
    for scope, rep, nb, nc, b_in, c_in in raw:
        mine = adjusted[i : i + len(rep.results)]
        i += len(rep.results)
        report = DriftReport(
            results=mine, config=config, drift_found=any(r.verdict == "drift" for r in mine)
        )
        results.append(ScopeResult(scope, report, nb, nc, b_in.numeric, c_in.numeric))
    return results


def _anomaly_series(
    frame: TrafficFrame,
    current: TimeWindow,
    series_start: datetime,
    params: DriftParams,
    now: datetime,
    catalogue: Mapping[str, MetricSpec],
    history_baselines: bool = False,
) -> list[AnomalySeries]:
    """The anomaly series of every anomaly scope, judged with one check-wide threshold.

    ``history_baselines``: also give the history windows a baseline (the HTML report draws
    the expected line over the whole series).
    """
    prepared: list[_Prepared] = []
    series_rows = frame.between(TimeWindow(start=series_start, end=current.end))
    for scope in _scopes(params.anomaly_scopes, frame, series_rows, params):
        rows = series_rows & scope.mask(frame)
        prepared.extend(
            _prepare_series(scope, frame, rows, current, series_start, params, catalogue)
        )
    return _detect(prepared, current, params, now, history_baselines)


def _store_and_alert(engine: Engine, outcome: DriftOutcome, settings: Settings | None) -> None:
    """Store the outcome's rows, then evaluate the rules of ``settings`` (None: no alerts)."""
    t0 = time.perf_counter()
    outcome.n_rows_stored = store_outcome(engine, outcome)
    outcome.timings["store"] = time.perf_counter() - t0
    if settings is not None:
        from evalwatch.alerting import evaluate_after_report

        t0 = time.perf_counter()
        outcome.alerts, outcome.alert_error = evaluate_after_report(engine, settings=settings)
        outcome.timings["alerts"] = time.perf_counter() - t0


def _write_html(
    engine: Engine, outcome: DriftOutcome, path: Path | None, settings: Settings
) -> None:
    """Write the HTML report to ``path``, or (None) to the store's report folder."""
    from evalwatch.reporting.drift_report import write_drift_html

    if path is None:
        from evalwatch.reporting.location import report_folder

        # The folder of the store this check read, whatever settings' default store is.
        base = settings.model_copy(update={"database_url": str(engine.url)})
        path = report_folder(base) / f"drift-{outcome.report_key[:12]}.html"
    t0 = time.perf_counter()
    outcome.html_path = write_drift_html(outcome, path)
    outcome.timings["html"] = time.perf_counter() - t0


def _no_data(
    engine: Engine,
    params: DriftParams,
    current: TimeWindow,
    baseline: Baseline,
    cur_rows: npt.NDArray[np.bool_],
    base_rows: npt.NDArray[np.bool_],
) -> list[str]:
    """The no-data line of each window that holds no interactions (see storage.windows)."""
    from evalwatch.storage.windows import no_data_message

    apps, versions = params.apps, params.model_versions
    out = []
    if not cur_rows.any():
        out.append(
            no_data_message(engine, current.start, current.end, apps=apps, model_versions=versions)
        )
    if baseline.window is not None and not base_rows.any():
        out.append(
            no_data_message(
                engine,
                baseline.window.start,
                baseline.window.end,
                apps=apps,
                model_versions=versions,
                what="baseline interactions",
            )
        )
    return out


def outcome_rows(outcome: DriftOutcome) -> list[dict[str, Any]]:
    """The ``drift_reports`` rows of an outcome: one per test, one per anomaly series.

    Args:
        outcome: A check's outcome.

    Returns:
        Row dicts keyed by column name.
    """
    rows = [_test_row(outcome, s, r) for s in outcome.scopes for r in s.report.results]
    rows += [_anomaly_row(outcome, a) for a in outcome.anomalies]
    if outcome.fairness is not None:
        scope = _fairness_scope(outcome.params)
        fair = fairness_rows(
            outcome.fairness,
            report_key=outcome.report_key,
            created_at=outcome.created_at,
            scope={**scope.dims(), "label": scope.label},
            current=outcome.current.as_json(),
        )
        # JSON-safe values (no NaN) in every column but the row's time.
        rows += [{**json_safe(r), "created_at": r["created_at"]} for r in fair]
    return rows


def _test_row(outcome: DriftOutcome, s: ScopeResult, r: DriftTestResult) -> dict[str, Any]:
    """The ``drift_reports`` row of one test of one scope."""
    details = {
        **r.details,
        "effect_floor": r.effect_floor,
        "ci": list(r.ci) if r.ci is not None else None,
        "alpha": outcome.params.alpha,
    }
    if r.family == "embedding":
        details["embedding_model"] = outcome.embedding_model
    return {
        "report_key": outcome.report_key,
        "created_at": outcome.created_at,
        "scope": {**s.scope.dims(), "label": s.label},
        "baseline": {**outcome.baseline.as_json(), "n": s.n_baseline},
        "current": {**outcome.current.as_json(), "n": s.n_current},
        "test": r.test,
        "feature": r.feature,
        "family": r.family,
        "n_baseline": r.n_baseline,
        "n_current": r.n_current,
        "statistic": _finite_or_none(r.statistic),
        "effect_size": _finite_or_none(r.effect_size),
        "effect_name": r.effect_name[:64],
        "p_value": r.p_value,
        "p_adjusted": r.p_adjusted,
        "verdict": r.verdict,
        "summary": r.summary,
        "details": json_safe(details),
    }


def _anomaly_row(outcome: DriftOutcome, a: AnomalySeries) -> dict[str, Any]:
    """The ``drift_reports`` row of one anomaly series (family ``"anomaly"``)."""
    return a.row(
        report_key=outcome.report_key,
        created_at=outcome.created_at,
        dims=a.scope.dims(),
        test=f"anomaly_{a.report.method}",
    )


def store_outcome(engine: Engine, outcome: DriftOutcome) -> int:
    """Store an outcome's rows in ``drift_reports`` (one transaction).

    Args:
        engine: The store.
        outcome: A check's outcome.

    Returns:
        Rows written.
    """
    return insert_drift_rows(engine, outcome_rows(outcome))
