"""Fairness monitoring: the statistics, segments from metadata and language, the drift report,
the ``fairness.gap`` alert, the gate's fairness slice and the ``evalwatch drift`` CLI.

Stores are real SQLite files and the real PostgreSQL (``db_url``); the CLI tests run the
installed ``evalwatch`` script from a temporary directory on a store filled by
``evalwatch ingest`` from a JSONL file.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from scipy import stats
from typer.testing import CliRunner

from evalwatch.checks.drift.outcome import TimeWindow
from evalwatch.checks.fairness import (
    FAIRNESS_TESTS,
    TEST_FOR_KIND,
    FairnessConfig,
    FairnessMetric,
    gap_widening,
    mann_whitney,
    run_fairness,
    two_proportion,
    welch_t,
)
from evalwatch.checks.intervals import newcombe_interval, z_for
from evalwatch.checks.language import DETECTED_FIELD, detect_languages
from evalwatch.checks.rules import RulesFile, check_rules_data, parse_selector
from evalwatch.runs.drift import DriftParams, check_drift
from evalwatch.settings import FairnessSettings, Settings, reset_settings
from evalwatch.storage.alerts import report_items
from evalwatch.storage.db import make_engine, upgrade
from evalwatch.storage.models import DriftReportRow
from evalwatch.storage.repo import (
    create_run,
    insert_feedback,
    insert_interactions,
    interaction_ids_for,
    write_scores,
)
from evalwatch.storage.traffic_frame import load_segments

T0 = datetime(2026, 11, 1, tzinfo=UTC)
EVALWATCH = str(Path(sys.executable).parent / "evalwatch")
REPO = Path(__file__).resolve().parent.parent
SUPPORT_QA = REPO / "datasets" / "support-qa.jsonl"
BASELINE_PREDICTIONS = REPO / "datasets" / "support-qa.predictions.baseline.jsonl"

DE = "Wo ist meine Bestellung? Sie sollte gestern ankommen, aber ich habe nichts bekommen."
EN = "Where is my order? It should have arrived yesterday but nothing came."

# --------------------------------------------------------------------------------------------
# The registered tests, table-driven against scipy and the interval helpers
# --------------------------------------------------------------------------------------------

_RNG = np.random.default_rng(7)
_A, _B = _RNG.normal(0.7, 0.1, 60), _RNG.normal(0.75, 0.15, 200)
_RA = (_RNG.random(1000) < 0.2).astype(float)  # enough events for the z-test
_RB = (_RNG.random(3000) < 0.1).astype(float)
_LA, _LB = _RNG.lognormal(6.2, 0.4, 70), _RNG.lognormal(6.0, 0.4, 250)


def _expected_welch(a: np.ndarray, b: np.ndarray) -> tuple[float, tuple[float, float]]:
    res = stats.ttest_ind(a, b, equal_var=False)
    ci = res.confidence_interval(0.95)
    return float(res.pvalue), (float(ci.low), float(ci.high))


CASES = [
    ("welch_t", welch_t, _A, _B, *_expected_welch(_A, _B)),
    (
        "two_proportion",
        two_proportion,
        _RA,
        _RB,
        float(
            2
            * stats.norm.sf(
                abs(_RA.mean() - _RB.mean())
                / math.sqrt(
                    (p := (_RA.sum() + _RB.sum()) / (_RA.size + _RB.size))
                    * (1 - p)
                    * (1 / _RA.size + 1 / _RB.size)
                )
            )
        ),
        newcombe_interval(int(_RB.sum()), _RB.size, int(_RA.sum()), _RA.size, z_for(0.95)),
    ),
    (
        "mann_whitney",
        mann_whitney,
        _LA,
        _LB,
        float(stats.mannwhitneyu(_LA, _LB, alternative="two-sided").pvalue),
        _expected_welch(_LA, _LB)[1],
    ),
]


@pytest.mark.parametrize(("name", "fn", "seg", "rest", "p", "ci"), CASES, ids=[c[0] for c in CASES])
def test_each_registered_test_matches_its_reference(name, fn, seg, rest, p, ci) -> None:
    assert FAIRNESS_TESTS[name].run is fn
    st = fn(seg, rest, 0.95)
    assert st.p_value == pytest.approx(p, rel=1e-9)
    assert st.ci == pytest.approx(ci, rel=1e-9)
    assert st.difference == pytest.approx(seg.mean() - rest.mean())
    assert st.ci[0] <= st.difference <= st.ci[1]


def test_every_value_kind_has_exactly_one_test() -> None:
    assert set(TEST_FOR_KIND) == {"score", "mean", "rate", "duration", "rating"}
    assert TEST_FOR_KIND["rate"] == "two_proportion" and TEST_FOR_KIND["rating"] == "mann_whitney"
    # Scores are ranked: Welch's t-test's tail was too heavy at segment sizes a tenth of the
    # rest (benchmarks/fairness_calibration.py); it stays for near-normal means.
    assert TEST_FOR_KIND["score"] == "mann_whitney" and TEST_FOR_KIND["mean"] == "welch_t"


def test_small_rate_counts_use_fisher_and_constant_scores_give_p_one() -> None:
    st = two_proportion(np.r_[np.ones(2), np.zeros(28)], np.zeros(40))
    assert st.method == "fisher_exact"
    assert st.p_value == pytest.approx(stats.fisher_exact([[2, 28], [0, 40]]).pvalue)
    flat = welch_t(np.full(40, 0.5), np.full(40, 0.5))
    assert (flat.p_value, flat.difference) == (1.0, 0.0)


# --------------------------------------------------------------------------------------------
# One report: planted gaps, no gaps, insufficient data, one BH family
# --------------------------------------------------------------------------------------------


def _report_inputs(gap: float, refusal_gap: float, n: int = 600, seed: int = 0):
    rng = np.random.default_rng(seed)
    lang = np.array(["de" if i % 4 == 0 else "en" for i in range(n)], dtype=object)
    tier = np.array(["free" if (i // 4) % 2 else "pro" for i in range(n)], dtype=object)
    de = lang == "de"
    score = rng.normal(0.8, 0.1, n) - gap * de
    refusal = (rng.random(n) < 0.05 + refusal_gap * de).astype(float)
    latency = rng.lognormal(6.0, 0.3, n)
    rating_rows = np.arange(0, n, 3, dtype=np.intp)
    ratings = rng.integers(3, 6, rating_rows.size).astype(float)
    metrics = [
        FairnessMetric("judge.correctness", "quality", "score", True, score),
        FairnessMetric("refusal", "refusal", "rate", False, refusal),
        FairnessMetric("latency_ms", "latency", "duration", False, latency),
        FairnessMetric("rating", "satisfaction", "rating", True, ratings, rating_rows),
    ]
    return metrics, {"language": lang, "user_tier": tier}


def test_planted_quality_and_refusal_gaps_are_found_and_kept_apart() -> None:
    metrics, segments = _report_inputs(gap=0.1, refusal_gap=0.15)
    report = run_fairness(metrics, segments)
    quality = report.gaps(["quality"])
    refusal = report.gaps(["refusal"])
    assert {(g.segment, g.direction) for g in quality} == {("de", "worse"), ("en", "better")}
    assert {(g.segment, g.direction) for g in refusal} == {("de", "worse"), ("en", "better")}
    de = next(g for g in quality if g.segment == "de")
    assert de.difference == pytest.approx(-0.1, abs=0.03)
    assert de.ci is not None and de.difference is not None
    assert de.ci[0] < de.difference < de.ci[1] < 0
    assert de.test == "mann_whitney" and de.n_segment == 150 and de.n_rest == 450
    # No gap was planted by tier, latency or rating.
    assert not [g for g in report.gaps() if g.field == "user_tier" or g.metric == "latency_ms"]
    # Ratings are mapped to their interactions' segments.
    rating = next(f for f in report.findings if f.metric == "rating" and f.segment == "de")
    assert rating.n_segment == sum(1 for r in range(0, 600, 3) if r % 4 == 0)


@pytest.mark.parametrize("correction", ["by", "bh"])
def test_one_fdr_family_across_fields_segments_and_metrics(correction: str) -> None:
    metrics, segments = _report_inputs(gap=0.04, refusal_gap=0.0, seed=3)
    config = FairnessConfig(fdr=0.1, correction=correction)
    report = run_fairness(metrics, segments, config)
    tested = [f for f in report.findings if f.verdict != "insufficient_data"]
    # Two segments per field: one test per field and metric, the other segment its mirror.
    family = [f for f in tested if "mirror_of" not in f.details]
    assert len(family) == 2 * 4 and len(tested) == 2 * 2 * 4
    expected = stats.false_discovery_control([f.p_value for f in family], method=correction)
    assert [f.p_adjusted for f in family] == pytest.approx(list(expected))
    assert all((f.verdict == "gap") == ((f.p_adjusted or 1.0) <= 0.1) for f in tested)
    for m in (f for f in tested if "mirror_of" in f.details):
        orig = next(
            f
            for f in family
            if (f.field, f.metric, f.segment) == (m.field, m.metric, m.details["mirror_of"])
        )
        assert (m.p_adjusted, m.verdict) == (orig.p_adjusted, orig.verdict)
        assert (m.n_segment, m.n_rest) == (orig.n_rest, orig.n_segment)
        assert m.difference == pytest.approx(-(orig.difference or 0.0))


def test_small_segments_are_insufficient_data_and_take_no_part() -> None:
    lang = np.array(["de"] * 12 + ["en"] * 300, dtype=object)
    score = np.r_[np.full(12, 0.1), np.full(300, 0.9)] + np.random.default_rng(1).normal(
        0, 0.01, 312
    )
    m = FairnessMetric("judge.correctness", "quality", "score", True, score)
    report = run_fairness([m], {"language": lang}, FairnessConfig(min_segment_size=30))
    assert {f.verdict for f in report.findings} == {"insufficient_data"}
    assert not report.gap_found
    assert all(f.p_adjusted is None for f in report.findings)


def test_unknown_labels_are_left_out_and_single_valued_fields_are_skipped() -> None:
    lang = np.array(["en"] * 100 + [None] * 100 + ["de"] * 100, dtype=object)
    one = np.array(["eu"] * 300, dtype=object)
    m = FairnessMetric("latency_ms", "latency", "duration", False, np.arange(300.0))
    report = run_fairness([m], {"language": lang, "region": one})
    assert set(report.segments) == {"language"}
    assert {(f.n_segment, f.n_rest) for f in report.findings} == {(100, 100)}


def test_effect_floor_keeps_a_tiny_significant_difference_from_being_a_gap() -> None:
    rng = np.random.default_rng(5)
    lang = np.array(["de"] * 20_000 + ["en"] * 20_000, dtype=object)
    score = np.r_[rng.normal(0.79, 0.05, 20_000), rng.normal(0.8, 0.05, 20_000)]
    m = FairnessMetric("judge.correctness", "quality", "score", True, score)
    plain = run_fairness([m], {"language": lang})
    floored = run_fairness([m], {"language": lang}, FairnessConfig(floors={"quality": 0.05}))
    assert plain.gap_found and not floored.gap_found
    assert {f.p_adjusted for f in plain.findings} == {f.p_adjusted for f in floored.findings}


# --------------------------------------------------------------------------------------------
# The gate's widening test
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("drop", "margin", "widened"),
    [(0.30, 0.05, True), (-0.08, 0.05, False), (0.30, 0.50, False)],
)
def test_gap_widening_is_judged_against_the_margin(drop, margin, widened) -> None:
    rng = np.random.default_rng(11)
    ids = [f"q{i}" for i in range(120)]
    labels = {k: ("de" if i % 3 == 0 else "en") for i, k in enumerate(ids)}
    base = {k: float(rng.normal(0.7, 0.05)) for k in ids}
    cand = {
        k: base[k] + (-drop if labels[k] == "de" else 0.1) + float(rng.normal(0, 0.02)) for k in ids
    }
    g = gap_widening(
        base,
        cand,
        labels,
        metric="m",
        fld="language",
        segment="de",
        higher_is_better=True,
        margin=margin,
        min_items=10,
        alpha=0.05,
    )
    assert g.widening is not None and g.ci_low is not None and g.ci_high is not None
    assert g.p_value is not None
    assert g.widening == pytest.approx(drop + 0.1, abs=0.02)
    assert g.ci_low < g.widening < g.ci_high
    assert (g.p_value < 0.025) is widened
    # Lower is better: the same numbers read the other way round narrow the gap.
    flipped = gap_widening(
        base,
        cand,
        labels,
        metric="m",
        fld="language",
        segment="de",
        higher_is_better=False,
        margin=margin,
        min_items=10,
        alpha=0.05,
    )
    assert flipped.widening == pytest.approx(-1 * g.widening)


# --------------------------------------------------------------------------------------------
# Language: detection, ingest-time storage, the loader's fallback
# --------------------------------------------------------------------------------------------


def test_detect_languages_names_common_languages_and_skips_empty_text() -> None:
    got = detect_languages([EN, DE, "¿Dónde está mi pedido? Debía llegar ayer.", "", None, "ok"])
    assert got[:3] == ["en", "de", "es"]
    assert got[3:5] == [None, None]


def _traffic_jsonl(path: Path, n: int = 400, seed: int = 0) -> Path:
    """Traffic rows in the ingest format; German prompts get slower answers, lower ratings."""
    rng = np.random.default_rng(seed)
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            de = i % 4 == 0
            row: dict[str, Any] = {
                "request_id": f"q{i}",
                "timestamp": (T0 + timedelta(minutes=10 * i)).isoformat(),
                "app": "bot",
                "model_name": "acme",
                "model_version": "v1",
                "prompt": DE if de else EN,
                "response": "Ihre Bestellung ist unterwegs." if de else "Your order is on its way.",
                "latency_ms": round(float(rng.lognormal(6.0, 0.2)) * (1.8 if de else 1.0), 1),
                "rating": int(rng.integers(1, 3) if de else rng.integers(4, 6)),
                "metadata": {"region": "eu" if i % 3 else "us", "user_tier": "free"},
            }
            if i == 1:
                row["metadata"]["language"] = "fr"  # the team's own field wins
            fh.write(json.dumps(row) + "\n")
    return path


def test_ingest_stores_the_detected_language_in_the_metadata(tmp_path) -> None:
    from evalwatch.ingest.pipeline import ingest

    engine = make_engine(f"sqlite:///{tmp_path / 's.db'}")
    upgrade(engine)
    settings = Settings(hash_key="k" * 32)
    ingest(engine, [_traffic_jsonl(tmp_path / "t.jsonl", n=8)], settings=settings)
    off = Settings(hash_key="k" * 32, fairness=FairnessSettings(detect_language=False))
    rows = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    for r in rows:
        r["request_id"] += "-off"
    (tmp_path / "off.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    ingest(engine, [tmp_path / "off.jsonl"], settings=off)
    with engine.connect() as conn:
        got = {
            rid: (json.loads(m) if isinstance(m, str) else m)
            for rid, m in conn.execute(sa.text("SELECT request_id, metadata FROM interactions"))
        }
    assert got["q0"][DETECTED_FIELD] == "de" and got["q2"][DETECTED_FIELD] == "en"
    assert got["q1"]["language"] == "fr" and got["q1"]["region"] == "eu"
    assert DETECTED_FIELD not in got["q0-off"]


def _seed(engine, *, n: int = 800, gap: float = 0.15, refusal_gap: float = 0.0, seed: int = 0):
    """Interactions with segment metadata and scores; German rows score ``gap`` lower.

    Half the rows carry the detected language, a few an explicit ``language``, the rest
    none (stored before detection): the loader falls back to detecting their prompt.
    """
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for i in range(n):
        de = i % 4 == 0
        meta: dict[str, Any] = {"region": "eu" if i % 3 else "us", "user_tier": "pro"}
        if i % 2 == 0:
            meta[DETECTED_FIELD] = "de" if de else "en"
        rows.append(
            {
                "request_id": f"r{i}",
                "ts": T0 + timedelta(minutes=10 * i),
                "app": "bot",
                "model_name": "acme",
                "model_version": "v1",
                "prompt": DE if de else EN,
                "response": "ok",
                "latency_ms": float(rng.lognormal(6.0, 0.3)),
                "metadata": meta,
            }
        )
    insert_interactions(engine, rows)
    ids = interaction_ids_for(engine, [r["request_id"] for r in rows])
    run = create_run(engine, "traffic", run_key=f"seed-{seed}")
    scores, feedback = [], []
    for i, r in enumerate(rows):
        de = i % 4 == 0
        iid = ids[r["request_id"]]
        common = {
            "run_id": run.id,
            "subject_type": "interaction",
            "subject_id": iid,
            "evaluator_version": "1",
            "config_hash": "c",
            "status": "ok",
            "reason": None,
        }
        value = float(np.clip(rng.normal(0.8 - gap * de, 0.1), 0, 1))
        scores.append({**common, "evaluator": "judge", "metric": "correctness", "value": value})
        refused = float(rng.random() < 0.05 + refusal_gap * de)
        scores.append({**common, "evaluator": "heuristics", "metric": "refusal", "value": refused})
        safety = float(rng.beta(30, 1))
        scores.append({**common, "evaluator": "toxicity", "metric": "safety", "value": safety})
        if i % 3 == 0:
            feedback.append(
                {
                    "feedback_key": f"f{iid}",
                    "interaction_id": iid,
                    "kind": "rating",
                    "value": float(rng.integers(3, 6)),
                    "label": None,
                    "ts": r["ts"],
                }
            )
    write_scores(engine, scores)
    insert_feedback(engine, feedback)
    return ids


def test_load_segments_reads_metadata_and_lists_rows_to_detect(engine) -> None:
    ids = _seed(engine, n=40)
    order = np.array([ids[f"r{i}"] for i in range(40)], dtype=np.int64)
    cols = load_segments(engine, order, ["language", "region", "missing"])
    assert cols.labels["region"].tolist() == ["eu" if i % 3 else "us" for i in range(40)]
    assert set(cols.labels["missing"].tolist()) == {None}
    # Even rows carry the detected language; odd rows have none and come with their prompt.
    assert cols.labels["language"][0] == "de" and cols.labels["language"][2] == "en"
    assert cols.undetected.tolist() == list(range(1, 40, 2))
    assert cols.prompts[0] == EN and all(p in (EN, DE) for p in cols.prompts)
    # Past the cap the prompts are not read, and the rows are still named.
    capped = load_segments(engine, order, ["language"], max_prompts=19)
    assert capped.undetected.tolist() == list(range(1, 40, 2)) and capped.prompts == []
    assert len(load_segments(engine, order, ["language"], max_prompts=20).prompts) == 20


def test_load_segments_names_scalars_of_any_json_type_and_no_segment_for_objects(engine) -> None:
    values: list[Any] = [3, 2.5, True, False, "eu", "", None, {"a": 1}, [1, 2]]
    rows: list[dict[str, Any]] = [
        {
            "request_id": f"t{i}",
            "ts": T0 + timedelta(minutes=i),
            "app": "bot",
            "model_name": "acme",
            "model_version": "v1",
            "prompt": EN,
            "response": "ok",
            "metadata": {"tier": v, DETECTED_FIELD: "en"} if i % 2 else {"tier": v},
        }
        for i, v in enumerate(values)
    ]
    insert_interactions(engine, rows)
    ids = interaction_ids_for(engine, [r["request_id"] for r in rows])
    order = np.array([ids[f"t{i}"] for i in reversed(range(len(values)))], dtype=np.int64)
    cols = load_segments(engine, order, ["tier", "language"])
    expected: list[str | None] = ["3", "2.5", "true", "false", "eu", None, None, None, None]
    assert cols.labels["tier"].tolist() == expected[::-1]  # in the order of ``ids``
    languages: list[str | None] = [("en" if i % 2 else None) for i in range(9)]
    assert cols.labels["language"].tolist() == languages[::-1]
    assert sorted(cols.undetected.tolist()) == [0, 2, 4, 6, 8]


def test_a_frame_without_texts_and_vectors_has_the_same_scores_and_lengths(engine) -> None:
    """What the run report's fairness section loads: no texts, no embeddings, same columns."""
    from evalwatch.storage.traffic_frame import load_frame

    _seed(engine, n=60)
    with engine.begin() as conn:  # one text removed by retention keeps its length
        conn.execute(
            sa.text(
                "UPDATE interactions SET response = '', response_chars = 42"
                " WHERE request_id = 'r7'"
            )
        )
    window = TimeWindow(start=T0, end=T0 + timedelta(days=2))
    full = load_frame(engine, [window])
    lean = load_frame(engine, [window], texts=False, vectors=False)
    assert lean.ids.tolist() == full.ids.tolist() and len(full) == 60
    assert set(lean.numeric) == set(full.numeric)
    for name, col in full.numeric.items():
        assert np.array_equal(lean.numeric[name], col, equal_nan=True), name
    assert 42.0 in lean.numeric["response_length"].tolist()
    assert set(lean.responses.tolist()) == {None} and lean.embeddings is None


def test_old_rows_past_the_detection_cap_leave_the_language_comparison(engine) -> None:
    """A store of rows ingested before detection is not detected whole at every check."""
    _seed(engine, gap=0.15, refusal_gap=0.2)
    cap = FairnessSettings(max_detect_at_check=10)
    capped = Settings(database_url=str(engine.url), fairness=cap)
    fair = check_drift(engine, _params(), capped, store=False, alerts=False).fairness
    assert fair is not None
    # Only the rows with a stored language (half of the 368 current ones) are compared.
    assert sum(fair.segments["language"].values()) == 184
    assert any("184 interactions have no stored language" in n for n in fair.notes)


# --------------------------------------------------------------------------------------------
# The drift report's fairness section, the stored rows and the fairness.gap alert
# --------------------------------------------------------------------------------------------

GAP_RULES = """version: 1
channels: {}
rules:
  - {name: language-gap, selector: fairness.gap, aggregation: any, comparison: '==',
     threshold: 1, window: run, scope: {segment: language=de}, severity: warning}
"""


def _params() -> DriftParams:
    return DriftParams(current_end=T0 + timedelta(days=6), window="3d")


def test_drift_check_reports_stores_and_alerts_on_a_planted_gap(engine, tmp_path) -> None:
    from evalwatch.alerting import evaluate_after_report
    from evalwatch.checks.rules import load_rules
    from evalwatch.reporting.drift_markdown import drift_outcome_markdown
    from evalwatch.reporting.drift_report import render_drift_html

    _seed(engine, gap=0.15, refusal_gap=0.2)
    settings = Settings(database_url=str(engine.url))
    out = check_drift(engine, _params(), settings, store=True, alerts=False)
    fair = out.fairness
    assert fair is not None and fair.gap_found
    de_quality = next(g for g in fair.gaps(["quality"]) if g.segment == "de")
    assert de_quality.field == "language" and de_quality.direction == "worse"
    assert any(g.segment == "de" and g.metric == "refusal" for g in fair.gaps(["refusal"]))
    # Rows 432-799 are current; half carry the detected language, the rest are detected now.
    assert fair.segments["language"] == {"en": 276, "de": 92}
    assert not [g for g in fair.gaps() if g.field == "region"]
    assert any("'user_tier': a single value" in n for n in fair.notes)

    md = drift_outcome_markdown(out)
    assert "### Fairness" in md and "#### Quality gaps" in md and "#### Refusal gaps" in md
    assert "| language=de | judge.correctness |" in md
    assert "Fairness" in render_drift_html(out)

    table = DriftReportRow.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        rows = conn.execute(sa.select(table).where(table.c.family == "fairness")).mappings().all()
    assert len(rows) == len(fair.findings)
    stored = next(
        r
        for r in rows
        if r["scope"]["segment"] == "language=de" and r["feature"] == "judge.correctness"
    )
    assert stored["verdict"] == "gap" and stored["details"]["group"] == "quality"
    assert stored["effect_size"] == pytest.approx(de_quality.difference)

    now = datetime.now(UTC) + timedelta(minutes=1)
    items = report_items(engine, "fairness", None, now)
    assert {i.dims["segment"] for i in items if i.value == 1.0} >= {"language=de"}
    # Fairness rows are not drift tests: the drift items are exactly the judged drift tests.
    judged = [r for s in out.scopes for r in s.report.results if r.verdict != "insufficient_data"]
    assert len(report_items(engine, "drift", None, now)) == len(judged)

    path = tmp_path / "rules.yaml"
    path.write_text(GAP_RULES)
    alerts, error = evaluate_after_report(engine, rules=load_rules(path))
    assert error is None
    assert [(a["rule"], a["action"]) for a in alerts] == [("language-gap", "open")]
    assert alerts[0]["value"] >= 1  # the gaps of language=de (quality and refusal)
    assert alerts[0]["scope"] == "segment=language%3Dde"  # the scope key escapes "="


def test_the_run_report_finds_the_planted_gap_among_the_runs_interactions(engine) -> None:
    from evalwatch.runs.fairness import run_fairness_report
    from evalwatch.storage.repo import get_run_by_key

    _seed(engine, gap=0.15, refusal_gap=0.2)
    run = get_run_by_key(engine, "seed-0")
    assert run is not None and run.id is not None
    fair = run_fairness_report(engine, run.id, FairnessSettings())
    assert fair is not None and fair.gap_found
    assert any(g.segment == "de" and g.field == "language" for g in fair.gaps(["quality"]))
    assert sum(fair.segments["language"].values()) == 800  # every row the run scored
    assert run_fairness_report(engine, run.id, FairnessSettings(segment_fields=[])) is None


def test_no_planted_gap_no_gap_and_no_alert(engine) -> None:
    _seed(engine, gap=0.0, seed=4)
    out = check_drift(engine, _params(), Settings(), store=True, alerts=False)
    assert out.fairness is not None and not out.fairness.gap_found
    now = datetime.now(UTC) + timedelta(minutes=1)
    assert {i.value for i in report_items(engine, "fairness", None, now)} == {0.0}


def test_fairness_selectors_are_validated() -> None:
    assert parse_selector("fairness.gap").source == "fairness"
    rf = RulesFile.model_validate(
        {
            "rules": [
                {
                    "name": "ok",
                    "selector": "fairness.gap",
                    "comparison": "==",
                    "threshold": 1,
                    "scope": {"segment": "language=de", "metric": "refusal"},
                },
                {"name": "bad", "selector": "fairness.width", "comparison": ">", "threshold": 1},
                {
                    "name": "dim",
                    "selector": "fairness.gap",
                    "comparison": "==",
                    "threshold": 1,
                    "scope": {"kind": "gate"},
                },
            ]
        }
    )
    errors = check_rules_data(rf)
    assert len(errors) == 2
    assert errors[0].startswith("rule 'bad': selector: unknown fairness selector")
    assert "'kind' is not a dimension of selector 'fairness.gap'" in errors[1]


# --------------------------------------------------------------------------------------------
# The gate's fairness slice, through `evalwatch gate` with predictions files
# --------------------------------------------------------------------------------------------


def _gate_files(tmp_path: Path, n: int = 90) -> tuple[Path, Path, Path]:
    """A test set with a language field, baseline predictions and a candidate that is longer
    (better) for English items and cut short for German ones."""
    items = [json.loads(x) for x in SUPPORT_QA.read_text().splitlines()][:n]
    preds = {p["id"]: p for p in map(json.loads, BASELINE_PREDICTIONS.read_text().splitlines())}
    for i, it in enumerate(items):
        it["language"] = "de" if i % 3 == 0 else "en"
    cand = []
    for it in items:
        p = dict(preds[it["id"]])
        p["model"] = "acme-chat-v3"
        if it["language"] == "de":
            p["output"] = p["output"][: max(20, len(p["output"]) // 2)]
        else:
            p["output"] += (
                " If anything else about your order, delivery, refund or account comes up, "
                "reply here and we will sort it out with you the same day, at no extra cost."
            )
        cand.append(p)
    qa = tmp_path / "qa.jsonl"
    qa.write_text("\n".join(json.dumps(x) for x in items) + "\n")
    base = tmp_path / "base.jsonl"
    base.write_text("\n".join(json.dumps(preds[x["id"]]) for x in items) + "\n")
    cpath = tmp_path / "cand.jsonl"
    cpath.write_text("\n".join(json.dumps(x) for x in cand) + "\n")
    return qa, base, cpath


def _gate_args(url: str, run_id: int, candidate: Path, policy: Path) -> list[str]:
    return [
        "--db",
        url,
        "gate",
        "--dataset",
        "qa",
        "--baseline-run",
        str(run_id),
        "--candidate-outputs",
        str(candidate),
        "--policy",
        str(policy),
        "--json",
        "--no-progress",
    ]


def test_gate_fails_a_candidate_that_widens_a_gap_though_the_mean_improved(
    db_url, tmp_path, monkeypatch
) -> None:
    from evalwatch.cli import app
    from evalwatch.commands import gate as gate_commands
    from evalwatch.ingest.datasets import load_dataset
    from evalwatch.runs.dataset import DatasetParams, evaluate_dataset
    from evalwatch.settings import get_settings

    if not any(c.name == "gate" for c in app.registered_commands):
        gate_commands.register(app)
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\nchannels: {}\nrules: []\n")
    monkeypatch.setenv("EVALWATCH_RULES_FILE", str(rules))
    reset_settings()
    qa, base, cand = _gate_files(tmp_path)
    engine = make_engine(db_url)
    load_dataset(engine, qa, "qa")
    prepared, _ = evaluate_dataset(
        engine,
        DatasetParams(dataset="qa", outputs_file=str(base), evaluators=["heuristics"]),
        get_settings(),
        progress=False,
    )
    engine.dispose()
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "metrics:\n  - {metric: heuristics.response_chars, margin: 0.15, margin_kind: relative}\n"
        "fairness:\n  fields: [language]\n  metric_margins: {heuristics.response_chars: 20}\n"
        "  metrics: [heuristics.response_chars]\n"
    )
    runner = CliRunner()
    res = runner.invoke(app, _gate_args(db_url, prepared.run_id, cand, policy))
    assert res.exit_code == 1, res.output
    report = json.loads(res.stdout)
    chars = next(m for m in report["metrics"] if m["metric"] == "heuristics.response_chars")
    assert chars["decision"] == "pass" and chars["mean_diff"] > 0  # the mean improved
    assert report["widened_gaps"] == ["language=de"]
    de = next(s for s in report["fairness"] if s["segment"] == "de")
    assert de["decision"] == "widened" and de["widening"] > 20 and de["n_segment"] == 30
    assert any("fairness: the gap of 'language=de'" in r for r in report["reasons"])

    # A margin wider than the widening lets the same candidate through, and the text
    # report shows the slice table.
    policy.write_text(policy.read_text().replace("response_chars: 20}", "response_chars: 5000}"))
    args = [a for a in _gate_args(db_url, prepared.run_id, cand, policy) if a != "--json"]
    ok = runner.invoke(app, args)
    assert ok.exit_code == 0, ok.output
    assert "Fairness slices: 2 segment x metric tests" in ok.output
    assert "language=de" in ok.output


# --------------------------------------------------------------------------------------------
# The installed `evalwatch` script
# --------------------------------------------------------------------------------------------


def _cli(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [EVALWATCH, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
    return done


def test_evalwatch_drift_shows_the_fairness_section_and_opens_the_alert(tmp_path) -> None:
    import os

    work = tmp_path / "work"
    work.mkdir()
    _traffic_jsonl(work / "traffic.jsonl", n=600)
    (work / "rules.yaml").write_text(GAP_RULES)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVALWATCH_", "PREFECT_API"))}
    env |= {
        "EVALWATCH_DATABASE_URL": "sqlite:///store.db",
        "EVALWATCH_RULES_FILE": "rules.yaml",
        "EVALWATCH_HASH_KEY": "k" * 32,
        "EVALWATCH_HOME": str(tmp_path / "home"),
        "COLUMNS": "200",
    }
    ing = _cli(["ingest", "traffic.jsonl"], work, env)
    assert ing.returncode == 0, ing.stdout + ing.stderr
    end = (T0 + timedelta(minutes=10 * 600)).isoformat()
    done = _cli(["drift", "--current-until", end, "--window", "2d"], work, env)
    out = " ".join((done.stdout + done.stderr).split())
    assert done.returncode in (0, 1), out
    assert "fairness:" in out and "gap(s)" in out
    assert "[latency] latency_ms language=de" in out and "worse" in out
    assert "[satisfaction] rating language=de" in out
    assert "language-gap" in out  # the fairness.gap rule opened its alert
    # The language came from ingest-time detection (the JSONL names none but for one row).
    import sqlite3

    with sqlite3.connect(work / "store.db") as conn:
        stored = conn.execute(
            "SELECT feature, verdict, scope FROM drift_reports WHERE family = 'fairness'"
        ).fetchall()
        detected = conn.execute(
            "SELECT COUNT(*) FROM interactions WHERE json_extract(metadata, "
            "'$.detected_language') = 'de'"
        ).fetchone()[0]
    assert detected == 150
    gaps = {(json.loads(sc)["segment"], f) for f, v, sc in stored if v == "gap"}
    assert {("language=de", "latency_ms"), ("language=de", "rating")} <= gaps
    assert not [g for g in gaps if g[0].startswith("region=")]
