"""Fairness monitoring on stored traffic: segments, metrics, one report per drift check.

:func:`check_fairness` takes the drift check's loaded frame and the current window's rows,
reads the segment fields of those rows from the interactions' metadata
(:func:`evalwatch.storage.traffic_frame.load_segments`; fields are
``settings.fairness.segment_fields``), builds one :class:`~evalwatch.checks.fairness.
FairnessMetric` per metric the frame holds, and runs :func:`evalwatch.checks.fairness.
run_fairness`. :func:`fairness_rows` turns the report into ``drift_reports`` rows of family
``"fairness"``, which the ``fairness.gap`` alert selector reads.

Language: the ``language`` field is the metadata's own ``language`` where the team logs it,
else the ``detected_language`` the ingest pipeline stored (py3langid on the prompt, once per
interaction, so the segment survives text retention); rows with neither (ingested before
detection, or with ``detect_language`` off) are detected here from their prompt while the text
is kept, at about 0.1 ms a row.

Metrics, by group (refusal and safety apart from quality):

* quality: every stored score metric of kind ``score`` or ``rate`` (judge, embedding,
  reference...), except toxicity and ``heuristics.refusal``; descriptive metrics are not
  compared;
* safety: ``unsafe`` (``toxicity.safety`` below ``unsafe_threshold``) and toxicity's other
  scores;
* refusal: ``refusal`` (``heuristics.refusal``);
* latency: ``latency_ms``;
* satisfaction: ``rating`` (1-5 feedback) and ``thumbs_down``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from evalwatch.checks.fairness import (
    FairnessConfig,
    FairnessFinding,
    FairnessMetric,
    FairnessReport,
    MetricGroup,
    ValueKind,
    run_fairness,
)
from evalwatch.checks.language import LANGUAGE_FIELD, detect_languages
from evalwatch.core.metrics import MetricKind, MetricSpec
from evalwatch.evaluators.metrics import find_metric_spec
from evalwatch.settings import FairnessSettings
from evalwatch.storage.traffic_frame import TrafficFrame, load_segments

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = [
    "check_fairness",
    "fairness_config",
    "fairness_metrics",
    "fairness_rows",
    "run_fairness_report",
]

_REFUSAL = "heuristics.refusal"
_SAFETY = "toxicity.safety"


def fairness_config(settings: FairnessSettings) -> FairnessConfig:
    """The report settings of the ``fairness`` settings section.

    Examples:
        >>> fairness_config(FairnessSettings(fdr=0.1)).fdr
        0.1
    """
    return FairnessConfig(
        fdr=settings.fdr,
        correction=settings.correction,
        min_segment_size=settings.min_segment_size,
        max_segments=settings.max_segments,
    )


def _score_metric(key: str, spec: MetricSpec, rate: bool) -> tuple[str, MetricGroup, ValueKind]:
    evaluator = key.split(".", 1)[0]
    if key == _REFUSAL:
        return "refusal", "refusal", "rate"
    group: MetricGroup = "safety" if evaluator == "toxicity" else "quality"
    return key, group, "rate" if rate else "score"


def fairness_metrics(
    frame: TrafficFrame,
    idx: npt.NDArray[np.intp],
    *,
    rate_columns: set[str],
    catalogue: Mapping[str, MetricSpec],
    unsafe_threshold: float = 0.5,
) -> list[FairnessMetric]:
    """The metrics of some frame rows (``idx``), values aligned with ``idx``.

    Args:
        frame: The loaded frame.
        idx: Frame rows compared (e.g. the current window's).
        rate_columns: Score columns compared as rates (0/1 values).
        catalogue: What the score columns mean (directions, kinds).
        unsafe_threshold: ``toxicity.safety`` below this is unsafe.

    Returns:
        The metrics, by group order then name; a metric with no value in ``idx`` is left out.
    """
    out: list[FairnessMetric] = []
    for key in frame.score_columns():
        col = frame.numeric[key][idx]
        if not np.isfinite(col).any():
            continue
        spec = find_metric_spec(key, catalogue) or MetricSpec.undeclared(key)
        if spec.kind == MetricKind.descriptive:
            continue
        if key == _SAFETY:
            ok = np.isfinite(col)
            unsafe = np.where(ok, (col < unsafe_threshold).astype(np.float64), np.nan)
            out.append(FairnessMetric("unsafe", "safety", "rate", False, unsafe))
            continue
        name, group, kind = _score_metric(key, spec, key in rate_columns)
        out.append(FairnessMetric(name, group, kind, spec.higher_is_better, col))
    latency = frame.numeric.get("latency_ms")
    if latency is not None and np.isfinite(latency[idx]).any():
        out.append(FairnessMetric("latency_ms", "latency", "duration", False, latency[idx]))
    pos = np.full(len(frame), -1, dtype=np.intp)
    pos[idx] = np.arange(idx.size)
    if frame.rating_rows.size:
        at = pos[frame.rating_rows]
        sel = at >= 0
        if sel.any():
            values = frame.rating_values[sel]
            out.append(FairnessMetric("rating", "satisfaction", "rating", True, values, at[sel]))
    if frame.thumb_rows.size:
        at = pos[frame.thumb_rows]
        sel = at >= 0
        if sel.any():
            down = frame.thumb_down[sel].astype(np.float64)
            out.append(FairnessMetric("thumbs_down", "satisfaction", "rate", False, down, at[sel]))
    order = {"quality": 0, "safety": 1, "refusal": 2, "latency": 3, "satisfaction": 4}
    return sorted(out, key=lambda m: (order[m.group], m.name))


def check_fairness(
    engine: Engine,
    frame: TrafficFrame,
    rows: npt.NDArray[np.bool_],
    settings: FairnessSettings,
    *,
    rate_columns: set[str],
    catalogue: Mapping[str, MetricSpec],
    unsafe_threshold: float = 0.5,
    timings: dict[str, float] | None = None,
) -> FairnessReport:
    """The fairness report of some frame rows (a drift check's current window).

    Args:
        engine: The store (the segment fields are read from it).
        frame: The loaded frame.
        rows: Boolean mask of the rows compared.
        settings: Segment fields and thresholds.
        rate_columns: Score columns compared as rates.
        catalogue: What the score columns mean.
        unsafe_threshold: ``toxicity.safety`` below this is unsafe.
        timings: Where to add ``fairness_segments`` / ``fairness_language`` seconds.

    Returns:
        The report; its ``notes`` say which fields had no values.
    """
    idx = np.flatnonzero(rows)
    t0 = time.perf_counter()
    fields = list(dict.fromkeys(settings.segment_fields))
    cols = load_segments(
        engine,
        frame.ids[idx],
        fields,
        language_field=LANGUAGE_FIELD,
        max_prompts=settings.max_detect_at_check,
    )
    t1 = time.perf_counter()
    late: list[str] = []
    if LANGUAGE_FIELD in cols.labels and cols.undetected.size:
        if len(cols.prompts) == cols.undetected.size:
            # Rows stored before ingest-time detection (or with it off): detect while text is
            # kept.
            found = detect_languages(cols.prompts)
            cols.labels[LANGUAGE_FIELD][cols.undetected] = np.array(found, dtype=object)
        else:
            # Detecting every old row at each check would cost about 0.1 ms a row of every
            # drift run; they take no part in the language comparison instead.
            late.append(
                f"field {LANGUAGE_FIELD!r}: {cols.undetected.size:,} interactions have no "
                f"stored language (ingested before detection, or with it off), more than "
                f"fairness.max_detect_at_check ({settings.max_detect_at_check:,}) detects at "
                "check time; they are not in the language comparison"
            )
    if timings is not None:
        timings["fairness_segments"] = t1 - t0
        timings["fairness_language"] = time.perf_counter() - t1
    metrics = fairness_metrics(
        frame,
        idx,
        rate_columns=rate_columns,
        catalogue=catalogue,
        unsafe_threshold=unsafe_threshold,
    )
    report = run_fairness(metrics, cols.labels, fairness_config(settings))
    notes = late + _notes(cols.labels, fields, report)
    return report.model_copy(update={"notes": notes})


def _notes(
    labels: Mapping[str, npt.NDArray[np.object_]], fields: Sequence[str], report: FairnessReport
) -> list[str]:
    notes = []
    for f in fields:
        known = sum(v is not None for v in labels[f])
        if f not in report.segments:
            what = "no values" if known == 0 else "a single value"
            notes.append(f"field {f!r}: {what} in the current window, not compared")
        elif f in report.left_out:
            notes.append(
                f"field {f!r}: {report.left_out[f]} smaller segments beyond the "
                f"{report.config.max_segments} largest were not compared"
            )
    return notes


def fairness_rows(
    report: FairnessReport,
    *,
    report_key: str,
    created_at: Any,
    scope: Mapping[str, Any],
    current: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """The ``drift_reports`` rows of a fairness report (family ``"fairness"``, one per finding).

    ``n_current`` is the segment's count, ``n_baseline`` the rest's (the rest is the
    comparison, as the baseline is for a drift test); ``effect_size`` is the signed
    difference ``segment - rest``; the scope carries ``segment`` (``field=value``) and
    ``metric`` for the ``fairness.gap`` selector's dimensions.
    """
    return [_row(f, report, report_key, created_at, scope, current) for f in report.findings]


def _row(
    f: FairnessFinding,
    report: FairnessReport,
    report_key: str,
    created_at: Any,
    scope: Mapping[str, Any],
    current: Mapping[str, Any],
) -> dict[str, Any]:
    return {
        "report_key": report_key,
        "created_at": created_at,
        "scope": {
            **scope,
            "segment": f"{f.field}={f.segment}",
            "field": f.field,
            "value": f.segment,
            "metric": f.metric,
        },
        "baseline": {"kind": "rest", "field": f.field, "n": f.n_rest},
        "current": {**current, "n": f.n_segment},
        "test": f.test,
        "feature": f.metric,
        "family": "fairness",
        "n_baseline": f.n_rest,
        "n_current": f.n_segment,
        "statistic": f.statistic,
        "effect_size": f.difference,
        "effect_name": f.effect_name,
        "p_value": f.p_value,
        "p_adjusted": f.p_adjusted,
        "verdict": f.verdict,
        "summary": f.summary,
        "details": {
            **f.details,
            "group": f.group,
            "field": f.field,
            "segment": f.segment,
            "segment_value": f.segment_value,
            "rest_value": f.rest_value,
            "ci": list(f.ci) if f.ci is not None else None,
            "direction": f.direction,
            "higher_is_better": f.higher_is_better,
            "floor": f.floor,
            "fdr": report.config.fdr,
            "min_segment_size": report.config.min_segment_size,
        },
    }


def run_fairness_report(
    engine: Engine, run_id: int, settings: FairnessSettings, unsafe_threshold: float = 0.5
) -> FairnessReport | None:
    """The fairness report of the interactions an evaluation run scored (the run report's).

    Args:
        engine: The store.
        run_id: The run.
        settings: Segment fields and thresholds.
        unsafe_threshold: ``toxicity.safety`` below this is unsafe.

    Returns:
        The report, or None when the run scored no interaction (a test-set run) or no
        segment field is configured.
    """
    # The drift check's loader and metric rules, so a run report and a drift check of the
    # same traffic agree (imported here: runs.drift imports this module).
    from evalwatch.runs import drift as _drift

    if not settings.segment_fields:
        return None
    # Scores and fields only: a large run's texts and vectors would be read for nothing.
    frame = _drift.load_frame(engine, [], baseline_run=run_id, texts=False, vectors=False)
    if len(frame) == 0:
        return None
    catalogue = _drift.frame_catalogue(engine, frame)
    return check_fairness(
        engine,
        frame,
        np.ones(len(frame), dtype=np.bool_),
        settings,
        rate_columns=_drift._rate_columns(frame, catalogue),
        catalogue=catalogue,
        unsafe_threshold=unsafe_threshold,
    )
