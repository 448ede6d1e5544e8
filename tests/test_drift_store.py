"""Drift checks on the store: loading windows, scopes, stored rows, the CLI and the flow."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from evalwatch.checks.drift import benjamini_hochberg
from evalwatch.reporting.drift_markdown import drift_outcome_markdown
from evalwatch.runs.drift import (
    DriftInputError,
    DriftParams,
    TimeWindow,
    check_drift,
    drift_input,
    load_frame,
    newest_interaction_time,
    resolve_windows,
)
from evalwatch.settings import Settings, reset_settings
from evalwatch.storage.db import make_engine
from evalwatch.storage.models import DriftReportRow
from evalwatch.storage.repo import (
    create_run,
    insert_feedback,
    insert_interactions,
    interaction_ids_for,
    write_embeddings,
    write_scores,
)

T0 = datetime(2026, 11, 1, tzinfo=UTC)
DIM = 16
CENTRES = np.random.default_rng(99).normal(size=(4, DIM)) * 3.0  # centre 3: the new topic
REFUSAL = "I'm sorry, but I can't help with that."


def _score(
    run_id: int | None,
    iid: int,
    evaluator: str,
    metric: str,
    value: float | None,
    status: str = "ok",
    version: str = "1",
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "subject_type": "interaction",
        "subject_id": iid,
        "evaluator": evaluator,
        "evaluator_version": version,
        "config_hash": "c",
        "metric": metric,
        "value": value,
        "status": status,
        "reason": None if status == "ok" else "boom",
    }


def seed_traffic(
    engine,
    *,
    days: int = 8,
    per_day: int = 160,
    shift: bool = False,
    seed: int = 0,
    model: str = "mini",
) -> dict[str, Any]:
    """Synthetic traffic with scores, embeddings and feedback; the last day shifted if asked.

    Shift: latency x1.6, responses twice as long, refusals 3% -> 20%, 30% of responses on a
    new embedding cluster, lower ratings.
    """
    rng = np.random.default_rng(seed)
    n = days * per_day
    rows: list[dict[str, Any]] = []
    meta: list[tuple[bool, int, bool]] = []
    for i in range(n):
        ts = T0 + timedelta(seconds=(i + float(rng.random())) * 86_400 / per_day)
        current = shift and ts >= T0 + timedelta(days=days - 1)
        refused = rng.random() < (0.2 if current else 0.03)
        words = int(rng.integers(20, 60)) * (2 if current else 1)
        response = REFUSAL if refused else "Sure: " + " ".join(["step"] * words) + "."
        latency = float(rng.lognormal(7.0, 0.3)) * (1.6 if current else 1.0)
        rows.append(
            {
                "request_id": f"r{i}",
                "ts": ts,
                "app": "bot" if rng.random() < 0.65 else "shop",
                "model_name": "acme",
                "model_version": "v1" if rng.random() < 0.5 else "v2",
                "prompt": f"question {i}?",
                "response": response,
                "latency_ms": latency,
                "input_tokens": int(rng.integers(80, 120)),
                "output_tokens": len(response) // 4,
                "cost": len(response) * 1e-6,
            }
        )
        cluster = 3 if current and rng.random() < 0.3 else int(rng.integers(0, 3))
        meta.append((refused, cluster, current))
    insert_interactions(engine, rows)
    ids = interaction_ids_for(engine, [r["request_id"] for r in rows])
    run = create_run(engine, "traffic", run_key=f"seed-{seed}-{shift}")
    assert run.id is not None
    scores, embeddings, feedback = [], [], []
    for r, (refused, cluster, current) in zip(rows, meta, strict=True):
        iid = ids[r["request_id"]]
        scores.append(_score(run.id, iid, "heuristics", "refusal", 1.0 if refused else 0.0))
        chars = float(len(r["response"]))
        scores.append(_score(run.id, iid, "heuristics", "response_chars", chars))
        scores.append(_score(run.id, iid, "toxicity", "safety", float(rng.beta(30, 1))))
        if rng.random() < 0.02:
            scores.append(_score(run.id, iid, "judge", "helpfulness", None, status="error"))
        else:
            scores.append(_score(run.id, iid, "judge", "helpfulness", float(rng.beta(8, 2))))
        vec = CENTRES[cluster] + rng.normal(size=DIM)
        vec = (vec / np.linalg.norm(vec)).astype("<f2")
        embeddings.append(
            {
                "subject_type": "interaction",
                "subject_id": iid,
                "model": model,
                "dim": DIM,
                "dtype": "float16",
                "vector": vec.tobytes(),
            }
        )
        if rng.random() < 0.4:
            low = refused or (current and rng.random() < 0.3)
            rating = int(rng.integers(1, 3)) if low else int(rng.integers(4, 6))
            feedback.append(
                {
                    "feedback_key": f"fr{iid}",
                    "interaction_id": iid,
                    "kind": "rating",
                    "value": float(rating),
                    "label": None,
                    "ts": r["ts"],
                }
            )
        if rng.random() < 0.2:
            down = refused or rng.random() < 0.1
            feedback.append(
                {
                    "feedback_key": f"ft{iid}",
                    "interaction_id": iid,
                    "kind": "thumbs",
                    "value": 0.0 if down else 1.0,
                    "label": "down" if down else "up",
                    "ts": r["ts"],
                }
            )
    write_scores(engine, scores)
    write_embeddings(engine, embeddings)
    insert_feedback(engine, feedback)
    return {"ids": ids, "rows": rows, "run_id": run.id}


def _stored(engine) -> list[dict[str, Any]]:
    table = DriftReportRow.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(table).order_by(table.c.id)).mappings()]


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def test_load_frame_reads_every_table_into_aligned_arrays(engine):
    rows: list[dict[str, Any]] = [
        {
            "request_id": f"q{i}",
            "ts": T0 + timedelta(hours=i),
            "app": "bot",
            "model_name": "m",
            "model_version": "v1",
            "prompt": "p?",
            "response": "x" * (10 + i),
            "latency_ms": None if i == 2 else 100.0 + i,
            "input_tokens": 5,
            "output_tokens": 7,
            "cost": 0.5,
        }
        for i in range(6)
    ]
    insert_interactions(engine, rows)
    ids = interaction_ids_for(engine, [r["request_id"] for r in rows])
    run = create_run(engine, "traffic", run_key="load")
    iid = [ids[f"q{i}"] for i in range(6)]
    write_scores(
        engine,
        [
            _score(run.id, iid[0], "heuristics", "refusal", 1.0),
            _score(run.id, iid[1], "heuristics", "refusal", 0.0),
            _score(run.id, iid[0], "judge", "helpfulness", 0.2, version="1"),
            _score(run.id, iid[0], "judge", "helpfulness", 0.9, version="2"),  # stored later: wins
            _score(run.id, iid[1], "judge", "helpfulness", None, status="error"),
            _score(run.id, iid[2], "toxicity", "safety", 0.1),
            _score(run.id, iid[3], "toxicity", "safety", 0.95),
        ],
    )
    vec = np.arange(8, dtype=np.float32) / 7
    write_embeddings(
        engine,
        [
            {
                "subject_type": "interaction",
                "subject_id": iid[k],
                "model": "a",
                "dim": 8,
                "dtype": "float16",
                "vector": (vec + k).astype("<f2").tobytes(),
            }
            for k in (1, 3, 4)
        ]
        + [
            {
                "subject_type": "interaction",
                "subject_id": iid[0],
                "model": "b",
                "dim": 8,
                "dtype": "float16",
                "vector": vec.astype("<f2").tobytes(),
            }
        ],
    )
    insert_feedback(
        engine,
        [
            {
                "feedback_key": "f1",
                "interaction_id": iid[4],
                "kind": "rating",
                "value": 2.0,
                "label": None,
                "ts": T0 + timedelta(hours=4, minutes=5),
            },
            {
                "feedback_key": "f2",
                "interaction_id": iid[5],
                "kind": "thumbs",
                "value": 0.0,
                "label": "down",
                "ts": T0 + timedelta(hours=5),
            },
            {
                "feedback_key": "f3",
                "interaction_id": iid[3],
                "kind": "follow_up",
                "value": 1.0,
                "label": None,
                "ts": T0 + timedelta(hours=3),
            },
        ],
    )
    window = TimeWindow(start=T0, end=T0 + timedelta(hours=5))  # q5 is outside
    frame = load_frame(engine, [window])
    assert frame.ids.tolist() == iid[:5]
    assert frame.ts[1] == np.datetime64("2026-11-01T01:00", "us")
    assert frame.numeric["response_length"].tolist() == [10, 11, 12, 13, 14]
    assert math.isnan(frame.numeric["latency_ms"][2]) and frame.numeric["latency_ms"][3] == 103
    assert frame.numeric["judge.helpfulness"][0] == pytest.approx(0.9)
    assert math.isnan(frame.numeric["judge.helpfulness"][1])
    assert frame.binary == {"heuristics.refusal"}
    assert frame.evaluated.tolist() == [True, True, True, True, False]
    assert frame.errored.tolist() == [False, True, False, False, False]
    # The model with most embeddings is chosen; float16 bytes decode to the written values.
    assert frame.embedding_model == "a" and frame.emb_rows.tolist() == [1, 3, 4]
    expected = np.stack([(vec + k).astype("<f2").astype(np.float32) for k in (1, 3, 4)])
    np.testing.assert_array_equal(frame.embeddings, expected)
    assert frame.rating_values.tolist() == [2.0] and frame.rating_rows.tolist() == [4]
    assert frame.rating_ts[0] == np.datetime64("2026-11-01T04:05", "us")
    assert frame.thumb_rows.size == 0  # its interaction is outside the window
    b = load_frame(engine, [window], embedding_model="b")
    assert b.embedding_model == "b" and b.emb_rows.tolist() == [0]

    inp = drift_input(frame, np.ones(len(frame), dtype=bool), unsafe_threshold=0.5)
    assert inp.rates["refusal"].tolist() == [True, False]
    assert inp.rates["unsafe"].tolist() == [True, False]
    assert inp.rates["unscored"].tolist() == [False, True, False, False]
    assert "heuristics.refusal" not in inp.numeric and "judge.helpfulness" in inp.numeric
    assert inp.embeddings is not None and inp.ratings is not None and inp.timestamps is not None
    assert inp.texts == ["x" * 11, "x" * 13, "x" * 14] and inp.embeddings.shape == (3, 8)
    assert inp.ratings.tolist() == [2.0] and inp.timestamps.shape == (1,)


def test_windows_default_previous_days_pinned_run_and_errors(engine):
    seeded = seed_traffic(engine, days=3, per_day=40)
    newest = newest_interaction_time(engine)
    assert newest is not None and newest < T0 + timedelta(days=3)
    cur, base = resolve_windows(engine, DriftParams(window="1d", baseline_days=2))
    # Ends at the hour after the newest interaction, so it is inside the window.
    assert cur.end == T0 + timedelta(days=3) and cur.start == T0 + timedelta(days=2)
    assert base.window == TimeWindow(start=T0, end=T0 + timedelta(days=2))
    pinned = DriftParams(
        current_start=T0 + timedelta(days=2),
        current_end=T0 + timedelta(days=3),
        baseline_start=T0,
        baseline_end=T0 + timedelta(days=1),
    )
    pinned_base = resolve_windows(engine, pinned)[1].window
    assert pinned_base is not None and pinned_base.end == T0 + timedelta(days=1)
    overlap = pinned.model_copy(update={"baseline_end": T0 + timedelta(days=2, hours=1)})
    with pytest.raises(DriftInputError, match="overlaps"):
        resolve_windows(engine, overlap)
    with pytest.raises(DriftInputError, match="no interactions stored for app nope"):
        resolve_windows(engine, DriftParams(apps=["nope"]))
    with pytest.raises(ValueError, match="both"):
        DriftParams(baseline_start=T0)

    # A reference run: the interactions it scored are the baseline, whatever their time.
    first_day = [
        seeded["ids"][r["request_id"]] for r in seeded["rows"] if r["ts"] < T0 + timedelta(days=1)
    ]
    ref = create_run(engine, "traffic", run_key="reference")
    write_scores(engine, [_score(ref.id, i, "ref", "x", 1.0) for i in first_day])
    out = check_drift(
        engine,
        DriftParams(window="1d", baseline_run=ref.id, scopes=["overall"]),
        Settings(),
        store=False,
    )
    assert out.scopes[0].n_baseline == len(first_day) and out.scopes[0].n_current == 40
    assert out.baseline.run_id == ref.id
    with pytest.raises(DriftInputError, match="no evaluation run 9999"):
        check_drift(engine, DriftParams(baseline_run=9999), Settings(), store=False)
    empty = create_run(engine, "dataset", run_key="dataset-run")
    with pytest.raises(DriftInputError, match="scored no interactions"):
        check_drift(engine, DriftParams(baseline_run=empty.id), Settings(), store=False)


def test_check_finds_the_shift_per_scope_and_stores_one_row_per_test(engine):
    seed_traffic(engine, shift=True)
    out = check_drift(engine, DriftParams(), Settings())  # last 24 h vs the 7 days before
    assert out.current.start == T0 + timedelta(days=7)
    assert [s.label for s in out.scopes] == [
        "overall",
        "app=bot",
        "app=shop",
        "model_version=v1",
        "model_version=v2",
    ]
    assert out.drift_found and out.embedding_model == "mini"
    overall = {(r.test, r.feature): r for r in out.scopes[0].report.results}
    assert overall[("mean_shift", "latency_ms")].verdict == "drift"
    # Twice the words, diluted by the (short) refusals.
    length = overall[("mean_shift", "response_length")]
    assert length.verdict == "drift"
    assert length.details["mean_current"] > 1.4 * length.details["mean_baseline"]
    refusal = overall[("two_proportion", "refusal")]
    assert refusal.verdict == "drift" and refusal.details["rate_current"] > 0.12
    assert overall[("new_topic", "embeddings")].verdict == "drift"
    assert overall[("mmd", "embeddings")].verdict == "drift"
    assert overall[("two_proportion", "unsafe")].verdict == "no_drift"  # safety did not move
    assert overall[("chi_square", "rating")].n_current > 30
    # A scope too small for the embedding tests says so.
    shop = {r.test: r for r in out.scopes[2].report.results if r.family == "embedding"}
    assert shop["mmd"].verdict == "insufficient_data"

    rows = _stored(engine)
    n_tests = sum(len(s.report.results) for s in out.scopes)
    n_fair = len(out.fairness.findings) if out.fairness is not None else 0  # own family
    assert len(rows) == out.n_rows_stored == n_tests + len(out.anomalies) + n_fair
    assert {r["report_key"] for r in rows} == {out.report_key}
    by_label = {r["scope"]["label"]: r["scope"] for r in rows}
    assert by_label["app=shop"] == {"app": "shop", "model_version": None, "label": "app=shop"}
    assert by_label["overall"]["app"] is None
    anomaly_rows = [r for r in rows if r["family"] == "anomaly"]
    assert anomaly_rows and {r["test"] for r in anomaly_rows} == {"anomaly_mad"}
    assert {r["verdict"] for r in anomaly_rows} <= {"anomaly", "no_anomaly", "insufficient_data"}
    # One Benjamini-Hochberg family across every scope: the stored adjusted p-values are BH of
    # all stored raw p-values together.
    tested = [
        r
        for r in rows
        if r["family"] not in ("anomaly", "fairness") and r["verdict"] != "insufficient_data"
    ]
    assert len({r["scope"]["label"] for r in tested}) == 5
    np.testing.assert_allclose(
        [r["p_adjusted"] for r in tested],
        benjamini_hochberg([r["p_value"] for r in tested]),
        rtol=1e-9,
    )
    drift_rows = [r for r in tested if r["verdict"] == "drift"]
    assert all(r["effect_size"] >= r["details"]["effect_floor"] for r in drift_rows)
    assert len(drift_rows) == len(out.moved())
    md = drift_outcome_markdown(out)
    assert md.startswith("## Drift check: drift in")
    assert md.index("### What moved") < md.index("### Anomalies") < md.index("### Scopes")
    assert "**overall** latency_ms: mean" in md


def test_app_filter_pins_the_scope(sqlite_engine):
    seed_traffic(sqlite_engine, days=4, per_day=120, shift=True)
    out = check_drift(
        sqlite_engine, DriftParams(apps=["bot"], baseline_days=3), Settings(), store=False
    )
    assert [s.label for s in out.scopes] == ["overall", "model_version=v1", "model_version=v2"]
    assert out.scopes[0].scope.dims() == {"app": "bot", "model_version": None}
    assert out.scopes[1].scope.dims() == {"app": "bot", "model_version": "v1"}
    everything = check_drift(
        sqlite_engine, DriftParams(baseline_days=3, scopes=["overall"]), Settings(), store=False
    )
    assert 0 < out.scopes[0].n_current < everything.scopes[0].n_current


def test_anomalous_hour_is_flagged_in_its_window(sqlite_engine):
    rng = np.random.default_rng(5)
    rows = []
    spike = T0 + timedelta(days=7, hours=14)
    for h in range(8 * 24):
        start = T0 + timedelta(hours=h)
        for k in range(20):
            latency = float(rng.lognormal(7.0, 0.2)) * (6.0 if start == spike else 1.0)
            rows.append(
                {
                    "request_id": f"a{h}-{k}",
                    "ts": start + timedelta(minutes=3 * k),
                    "app": "bot",
                    "model_name": "m",
                    "model_version": "v1",
                    "prompt": "p?",
                    "response": "fine " * 10,
                    "latency_ms": latency,
                    "input_tokens": 10,
                    "output_tokens": 12,
                    "cost": 1e-4,
                }
            )
    insert_interactions(sqlite_engine, rows)
    out = check_drift(sqlite_engine, DriftParams(), Settings(), now=T0 + timedelta(days=30))
    series = {a.feature: a for a in out.anomalies}
    assert series["latency_ms.p95"].verdict == "anomaly"
    flagged = series["latency_ms.p95"].anomalies()
    assert [p.window_start for p, _ in flagged] == [spike] and flagged[0][0].direction == "up"
    assert series["volume"].verdict == "no_anomaly"
    assert series["response_length.mean"].verdict == "no_anomaly"
    # One slow hour moves the day's latency; cost is one constant everywhere: not tested.
    assert not out.drift_found or all(r.feature == "latency_ms" for _, r in out.moved())
    assert "cost" not in {r.feature for r in out.scopes[0].report.results}
    stored = {r["feature"]: r for r in _stored(sqlite_engine) if r["family"] == "anomaly"}
    assert stored["latency_ms.p95"]["verdict"] == "anomaly"
    assert stored["latency_ms.p95"]["details"]["anomalies"][0]["window_start"].startswith(
        "2026-11-08T14:00"
    )
    # Windows that have not ended yet are not judged.
    early = check_drift(sqlite_engine, DriftParams(), Settings(), now=spike, store=False)
    early_series = {a.feature: a for a in early.anomalies}
    assert all(p.window_start < spike for p, _ in early_series["latency_ms.p95"].judged())


# ---------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------


def _cli(args: list[str]):
    from evalwatch.cli import app
    from evalwatch.commands import drift

    if not any(c.name == "drift" for c in app.registered_commands):
        drift.register(app)
    return CliRunner().invoke(app, args)


def test_cli_exit_1_on_drift_with_json_and_html(db_url, tmp_path):
    engine = make_engine(db_url)
    seed_traffic(engine, shift=True)
    html = tmp_path / "drift.html"
    result = _cli(["--db", db_url, "drift", "--json", "--html", str(html)])
    assert result.exit_code == 1, result.output
    payload = json.loads(result.output)
    assert payload["drift_found"] is True and payload["moved"][0]["scope"] == "overall"
    assert {"latency_ms", "refusal", "response_length"} <= {
        m["feature"] for m in payload["moved"] if m["scope"] == "overall"
    }
    assert payload["current"]["start"].startswith("2026-11-08T00:00")
    page = html.read_text()
    assert "<script" not in page and page.count("<img") >= 3
    assert "Distributions that moved" in page and "Topics" in page and "Anomalies over time" in page
    text = _cli(["--db", db_url, "drift", "--scopes", "overall"])
    assert text.exit_code == 1
    assert text.output.startswith("drift in") and "what moved" in text.output
    assert text.output.index("latency_ms") < text.output.index("stored")
    assert len({r["report_key"] for r in _stored(engine)}) == 2


def test_cli_exit_0_without_drift(sqlite_engine, tmp_path):
    seed_traffic(sqlite_engine, shift=False, seed=3)
    url = str(sqlite_engine.url)
    result = _cli(["--db", url, "drift", "--window", "1d", "--baseline-days", "7"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("no drift in")
    rows = _stored(sqlite_engine)
    assert rows and all(r["verdict"] != "drift" for r in rows)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--baseline-days", "3", "--baseline-run", "1"], "give one baseline"),
        (["--baseline-since", "2026-11-01"], "both --baseline-since and --baseline-until"),
        (["--current-since", "last tuesday"], "--current-since: bad time"),
        (["--window", "3x"], "--window: bad duration"),
        (["--window", "1d", "--current-since", "2026-11-05"], "--current-since or --window"),
        (["--scopes", "overall,country"], "--scopes: unknown country"),
        (["--alpha", "2"], "alpha"),
        (["--baseline-days", "-1"], "baseline_days"),
        (["--baseline-run", "4242"], "no evaluation run 4242"),
        (
            [
                "--current-since",
                "2026-11-07",
                "--current-until",
                "2026-11-09",
                "--baseline-since",
                "2026-11-06",
                "--baseline-until",
                "2026-11-08",
            ],
            "overlaps",
        ),
        (["--app", "nope"], "no interactions stored for app nope"),
    ],
)
def test_cli_exit_2_on_bad_input(sqlite_engine, args, message):
    seed_traffic(sqlite_engine, days=2, per_day=30)
    result = _cli(["--db", str(sqlite_engine.url), "drift", *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert _stored(sqlite_engine) == []


# ---------------------------------------------------------------------------------------------
# The flow
# ---------------------------------------------------------------------------------------------


def test_drift_check_flow_stores_reports_publishes_artifacts_and_alerts(
    prefect_harness, tmp_path, monkeypatch
):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from evalwatch.flows.drift import drift_check

    monkeypatch.setenv("EVALWATCH_REPORT_DIR", str(tmp_path / "reports"))
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "version: 1\nchannels: {}\nrules:\n"
        "  - {name: drift-seen, selector: drift.verdict, aggregation: any,\n"
        "     comparison: '==', threshold: 1, window: run, consecutive: 1, severity: warning}\n"
    )
    monkeypatch.setenv("EVALWATCH_RULES_FILE", str(rules))
    reset_settings()
    url = f"sqlite:///{tmp_path / 'flow.db'}"
    engine = make_engine(url)
    from evalwatch.storage.db import upgrade

    upgrade(engine)
    seed_traffic(engine, shift=True)
    state = drift_check(params=DriftParams(window="1d"), database_url=url, return_state=True)
    assert state.is_completed()
    summary = state.result()
    assert summary["drift_found"] is True
    assert [a["rule"] for a in summary["alerts"]] == ["drift-seen"]
    assert summary["alerts"][0]["action"] == "open"
    assert Path(summary["html"]).is_file()
    rows = _stored(engine)
    assert {r["report_key"] for r in rows} == {summary["report_key"]}
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    keys = {a.key: a for a in arts if a.key}
    assert {"evalwatch-drift-report", "evalwatch-drift-moved", "evalwatch-drift-html"} <= set(keys)
    md = str(keys["evalwatch-drift-report"].data)
    assert md.startswith("## Drift check: drift in")
    assert md.index("### What moved") < md.index("### Anomalies")
    assert summary["report_key"] in md and "latency_ms" in md.split("### Anomalies")[0]


def test_prefect_yaml_schedules_the_drift_check_daily():
    import yaml

    from evalwatch.flows.drift import drift_check

    spec = yaml.safe_load((Path(__file__).resolve().parent.parent / "prefect.yaml").read_text())
    dep = next(d for d in spec["deployments"] if d["name"] == "drift-check-daily")
    assert dep["entrypoint"] == "evalwatch.flows.drift:drift_check"
    assert dep["schedules"][0]["cron"].split()[2:] == ["*", "*", "*"]  # once a day
    params = drift_check.validate_parameters(dep["parameters"])["params"]
    assert isinstance(params, DriftParams)
    assert (params.window, params.baseline_days) == ("1d", 7)


def test_a_custom_rubric_metric_is_compared_as_its_runs_options_declare_it(sqlite_engine, tmp_path):
    from evalwatch.evaluators.judge import JudgeEvaluator
    from evalwatch.evaluators.rubrics import load_rubric
    from evalwatch.runs.drift import frame_catalogue
    from evalwatch.settings import JudgeSettings

    # A 1-3 rubric is a score, not a rate, even in a window where the judge gave only 1s and 3s
    # (0 and 1 once mapped to 0-1); only the options the run recorded know the user's file.
    rubric = load_rubric("helpfulness").model_dump(exclude={"source", "examples"})
    scale = {"min": 1, "max": 3, "labels": {1: "no", 2: "partly", 3: "yes"}}
    (tmp_path / "grounded.yaml").write_text(
        json.dumps({**rubric, "name": "grounded", "scale": scale})
    )
    judge = JudgeEvaluator(
        rubrics=["grounded"], rubric_paths=[str(tmp_path)], settings=JudgeSettings(model="m")
    )
    prov = judge.provenance()
    run = create_run(
        sqlite_engine,
        "traffic",
        run_key="rubric",
        evaluators={
            "judge": {
                "version": prov.version,
                "config_hash": prov.config_hash,
                "config": prov.config,
            }
        },
    )
    rng = np.random.default_rng(3)
    rows: list[dict[str, Any]] = [
        {
            "request_id": f"g{i}",
            "ts": T0 + timedelta(minutes=20 * i),
            "app": "bot",
            "model_name": "m",
            "model_version": "v1",
            "prompt": "p?",
            "response": "fine",
        }
        for i in range(6 * 24)
    ]
    insert_interactions(sqlite_engine, rows)
    ids = interaction_ids_for(sqlite_engine, [r["request_id"] for r in rows])
    scores = [
        {
            **_score(run.id, iid, "judge", "grounded", float(rng.random() < 0.7)),
            "config_hash": prov.config_hash,
            "evaluator_version": prov.version,
        }
        for iid in ids.values()
    ]
    write_scores(sqlite_engine, scores)

    frame = load_frame(sqlite_engine, [TimeWindow(start=T0, end=T0 + timedelta(days=2))])
    assert "judge.grounded" in frame.binary
    everything = np.ones(len(frame), dtype=bool)
    assert "judge.grounded" in drift_input(frame, everything).rates  # the general catalogue
    catalogue = frame_catalogue(sqlite_engine, frame)
    assert catalogue["judge.grounded"].kind == "score"
    inp = drift_input(frame, everything, catalogue=catalogue)
    assert "judge.grounded" in inp.numeric and "judge.grounded" not in inp.rates
    out = check_drift(
        sqlite_engine,
        DriftParams(window="1d", baseline_days=1, scopes=["overall"]),
        Settings(),
        store=False,
    )
    tests = {r.test for r in out.scopes[0].report.results if r.feature == "judge.grounded"}
    assert "mean_shift" in tests and "two_proportion" not in tests
