"""Issue #16's user-experience signal: feedback kinds, their alert selectors, drift and overview.

Feedback goes in through the real ingest pipeline (JSONL files with the field and event names
apps log), into a real SQLite file and a real PostgreSQL database; rules, the drift check and
the overview read it back from there. The task-success rubric set is judged by the real
``openai`` client over HTTP against the fake judge server.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from evalwatch.alerting import evaluate_rules
from evalwatch.checks.drift.outcome import DriftParams, TimeWindow
from evalwatch.checks.rules import Rule, RulesFile, check_rules_data
from evalwatch.checks.validation import FEEDBACK_KINDS, validate_feedback
from evalwatch.core.feedback import (
    FEEDBACK_KIND_NAMES,
    FEEDBACK_SIGNALS,
    canonical_kind,
    feedback_kind,
)
from evalwatch.evaluators.base import Sample
from evalwatch.evaluators.judge import JudgeEvaluator
from evalwatch.evaluators.rubrics import RUBRIC_SETS, load_rubrics
from evalwatch.ingest.pipeline import ingest
from evalwatch.reporting.overview import overview_html, overview_markdown
from evalwatch.reporting.ux_signal import ALL_VERSIONS, TASK_SUCCESS_COLUMN, ux_rows
from evalwatch.runs.drift import check_drift, drift_input
from evalwatch.settings import IngestSettings, JudgeSettings, Settings
from evalwatch.storage.db import make_engine, upgrade
from evalwatch.storage.overview import load_overview
from evalwatch.storage.repo import create_run, interaction_ids_for, write_scores
from evalwatch.storage.traffic_frame import load_frame
from evalwatch.testing import FakeJudgeServer

REPO = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 3, 2, tzinfo=UTC)
H = timedelta(hours=1)
KEY = "sk-ux-test-key-0123456789abcdef"


def _settings() -> Settings:
    return Settings(hash_key="ux-test-key", ingest=IngestSettings())


def _stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _traffic(n: int, start: datetime, step: timedelta, version: str = "v1", prefix: str = "r"):
    return [
        {
            "request_id": f"{prefix}{i}",
            "timestamp": _stamp(start + i * step),
            "app": "shop",
            "model_name": "m",
            "model_version": version,
            "prompt": f"question {i}",
            "response": f"answer {i}",
        }
        for i in range(n)
    ]


def _write(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _ingest(engine: Engine, tmp_path: Path, traffic: list[dict[str, Any]], feedback: list[Any]):
    t = ingest(engine, [_write(tmp_path / "t.jsonl", traffic)], settings=_settings())
    assert t.quarantined == 0
    return ingest(
        engine, [_write(tmp_path / "f.jsonl", feedback)], kind="feedback", settings=_settings()
    )


# -- one meaning per kind ----------------------------------------------------------------------


def test_every_kind_has_one_signal_and_validation_uses_the_table() -> None:
    assert FEEDBACK_KINDS == FEEDBACK_KIND_NAMES
    assert set(FEEDBACK_KIND_NAMES) >= {
        "rating",
        "thumbs",
        "time_to_rate",
        "follow_up",
        "copy",
        "refinement",
        "abandon",
    }
    assert len(FEEDBACK_SIGNALS) == len(FEEDBACK_KIND_NAMES)
    assert {k.selector for k in FEEDBACK_SIGNALS.values()} == {
        "feedback.rating",
        "feedback.thumbs_up_rate",
        "feedback.time_to_rate",
        "feedback.follow_up_rate",
        "feedback.copy_rate",
        "feedback.refinement_rate",
        "feedback.abandon_rate",
    }
    assert feedback_kind("copy").aggregate == "rate" and feedback_kind("rating").aggregate == "mean"


@pytest.mark.parametrize(
    ("logged", "kind", "value", "scale"),
    [
        ("rating", "rating", None, 1.0),
        ("CSAT", "rating", None, 1.0),
        ("thumbs_up", "thumbs", "up", 1.0),
        ("Thumbs-Down", "thumbs", "down", 1.0),
        ("downvote", "thumbs", "down", 1.0),
        ("time to rate", "time_to_rate", None, 1.0),
        ("time_to_rate_ms", "time_to_rate", None, 0.001),
        ("follow-up", "follow_up", None, 1.0),
        ("copy_to_clipboard", "copy", None, 1.0),
        ("copied", "copy", None, 1.0),
        ("regenerate", "refinement", None, 1.0),
        ("rephrase", "refinement", None, 1.0),
        ("abandoned", "abandon", None, 1.0),
    ],
)
def test_event_names_apps_log_map_to_a_kind(
    logged: str, kind: str, value: str | None, scale: float
) -> None:
    alias = canonical_kind(logged)
    assert alias is not None
    assert (alias.kind, alias.value, alias.scale) == (kind, value, scale)


@pytest.mark.parametrize("logged", ["like", "purchase", "", "ratings please"])
def test_unknown_event_names_map_to_nothing(logged: str) -> None:
    assert canonical_kind(logged) is None


TS = "2026-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("row", "kind", "value", "reasons"),
    [
        ({"kind": "time_to_rate", "value": 12.5}, "time_to_rate", 12.5, []),
        ({"kind": "time_to_rate", "value": "7"}, "time_to_rate", 7.0, []),
        ({"kind": "time_to_rate_ms", "value": 1500}, "time_to_rate", 1.5, []),
        (
            {"kind": "time_to_rate", "value": -3},
            "time_to_rate",
            -3.0,
            ["value: negative number of seconds"],
        ),
        (
            {"kind": "time_to_rate", "value": "soon"},
            "time_to_rate",
            None,
            ["value: expected a number of seconds ('soon')"],
        ),
        (
            {"kind": "time_to_rate", "value": True},
            "time_to_rate",
            None,
            ["value: expected a number of seconds, got boolean"],
        ),
        ({"kind": "time_to_rate"}, "time_to_rate", None, ["value: missing"]),
        ({"kind": "thumbs_down"}, "thumbs", 0.0, []),
        ({"kind": "copy"}, "copy", None, []),
        ({"kind": "copied", "value": 2}, "copy", 2.0, []),
        ({"kind": "refinement", "value": "shorter"}, "refinement", None, []),
        ({"kind": "regenerate"}, "refinement", None, []),
        ({"kind": "abandoned"}, "abandon", None, []),
        (
            {"kind": "purchase"},
            "purchase",
            None,
            ["kind: not one of " + ", ".join(FEEDBACK_KIND_NAMES)],
        ),
    ],
)
def test_feedback_rows_are_typed_and_bad_values_get_a_reason(
    row: dict[str, Any], kind: str, value: float | None, reasons: list[str]
) -> None:
    checked = validate_feedback([{"request_id": "r1", "timestamp": TS, **row}], IngestSettings())
    typed = checked.rows[0]
    assert typed is not None
    assert (typed["kind"], typed["value"], checked.reasons[0]) == (kind, value, reasons)


# -- ingest ------------------------------------------------------------------------------------


def test_feedback_file_with_app_field_names_is_stored_and_bad_rows_quarantined(
    engine: Engine, tmp_path: Path
) -> None:
    traffic = _traffic(6, T0, timedelta(minutes=1))
    ts = _stamp(T0 + 2 * H)
    feedback = [
        {"run_id": "r0", "key": "thumbs_down", "comment": "wrong", "created_at": ts},
        {"trace_id": "r1", "name": "time_to_rate_ms", "value": 2500, "timestamp": ts},
        {"message_id": "r2", "event_type": "copy_to_clipboard", "timestamp": ts},
        {"request_id": "r3", "action": "regenerate", "timestamp": ts},
        {"request_id": "r4", "kind": "time_to_rate", "value": -1, "timestamp": ts},
        {"request_id": "r5", "kind": "time_to_rate", "value": "slow", "timestamp": ts},
    ]
    result = _ingest(engine, tmp_path, traffic, feedback)
    assert (result.ingested, result.quarantined) == (4, 2)
    assert result.reasons["value: negative number of seconds"] == 1
    assert result.reasons["value: expected a number of seconds"] == 1
    with engine.connect() as conn:
        stored = conn.execute(
            sa.text(
                "SELECT i.request_id, f.kind, f.value, f.label FROM feedback f "
                "JOIN interactions i ON i.id = f.interaction_id ORDER BY i.request_id"
            )
        ).all()
        quarantined = conn.execute(sa.text("SELECT reasons FROM quarantine")).all()
    assert [tuple(r) for r in stored] == [
        ("r0", "thumbs", 0.0, "down"),
        ("r1", "time_to_rate", 2.5, None),
        ("r2", "copy", None, None),
        ("r3", "refinement", None, None),
    ]
    assert len(quarantined) == 2


# -- alert rules -------------------------------------------------------------------------------


def _rule(selector: str, **kw: Any) -> Rule:
    base: dict[str, Any] = {
        "name": "ux",
        "selector": selector,
        "aggregation": "mean",
        "comparison": ">",
        "threshold": 0.3,
        "window": "1h",
        "scope": {"model_version": "each"},
        "severity": "warning",
    }
    return Rule(**{**base, **kw})


def test_unknown_feedback_signal_is_a_rule_error_and_known_ones_pass() -> None:
    bad = RulesFile(rules=[_rule("feedback.copyrate")])
    (err,) = check_rules_data(bad, known_metrics=[])
    assert err.startswith("rule 'ux': selector: unknown feedback signal 'feedback.copyrate'")
    assert "feedback.copy_rate" in err
    for signal in FEEDBACK_SIGNALS.values():
        assert check_rules_data(RulesFile(rules=[_rule(signal.selector)]), known_metrics=[]) == []


def test_abandon_rate_rule_fires_for_the_version_users_abandon(
    engine: Engine, tmp_path: Path
) -> None:
    # Hour 0: v1 and v2, 10 interactions each; 6 of v2's are abandoned, 1 of v1's.
    traffic = _traffic(10, T0, timedelta(minutes=5), "v1", "a") + _traffic(
        10, T0, timedelta(minutes=5), "v2", "b"
    )
    ts = _stamp(T0 + 2 * H)
    feedback = [{"request_id": "a0", "kind": "abandon", "timestamp": ts}]
    feedback += [{"request_id": f"b{i}", "event": "abandoned", "timestamp": ts} for i in range(6)]
    feedback.append({"request_id": "b0", "kind": "abandon", "timestamp": _stamp(T0 + 3 * H)})
    assert _ingest(engine, tmp_path, traffic, feedback).ingested == 8
    rules = RulesFile(rules=[_rule("feedback.abandon_rate", delay="30m")])
    (ev,) = evaluate_rules(engine, rules, now=T0 + 2 * H, deliver=False)
    # b0 abandoned twice counts once: 6 of 10 interactions.
    assert (ev.action, ev.scope_key, ev.n) == ("open", "model_version=v2", 10)
    assert ev.value == pytest.approx(0.6)


def test_time_to_rate_and_thumbs_rules_read_feedback_values(engine: Engine, tmp_path: Path) -> None:
    traffic = _traffic(4, T0, timedelta(minutes=5))
    ts = _stamp(T0 + H)
    feedback = [
        {"request_id": "r0", "kind": "time_to_rate", "value": 10, "timestamp": ts},
        {"request_id": "r1", "kind": "time_to_rate", "value": 50, "timestamp": ts},
        {"request_id": "r0", "kind": "thumbs", "value": "down", "timestamp": ts},
        {"request_id": "r1", "kind": "thumbs_down", "timestamp": ts},
        {"request_id": "r2", "kind": "thumbs_up", "timestamp": ts},
    ]
    _ingest(engine, tmp_path, traffic, feedback)
    slow = _rule("feedback.time_to_rate", name="slow-rating", comparison=">", threshold=25)
    unhappy = _rule(
        "feedback.thumbs_up_rate", name="thumbs", comparison="<", threshold=0.5, scope={}
    )
    events = {
        e.rule: e
        for e in evaluate_rules(engine, RulesFile(rules=[slow, unhappy]), now=T0 + H, deliver=False)
    }
    assert events["slow-rating"].value == pytest.approx(30.0) and events["slow-rating"].n == 2
    assert events["thumbs"].value == pytest.approx(1 / 3) and events["thumbs"].n == 3


# -- drift -------------------------------------------------------------------------------------


def test_follow_up_rate_and_time_to_rate_drift(engine: Engine, tmp_path: Path) -> None:
    # Baseline day: 200 interactions, 10 follow-ups; current day: 200, 80 follow-ups; time
    # to rate goes from ~10 s to ~40 s.
    base = _traffic(200, T0, timedelta(minutes=7), prefix="b")
    cur = _traffic(200, T0 + timedelta(days=1), timedelta(minutes=7), prefix="c")
    rng = np.random.default_rng(3)
    ts = _stamp(T0 + timedelta(days=2, hours=1))
    feedback: list[dict[str, Any]] = []
    feedback += [{"request_id": f"b{i}", "kind": "follow_up", "timestamp": ts} for i in range(10)]
    feedback += [{"request_id": f"c{i}", "kind": "followup", "timestamp": ts} for i in range(80)]
    for side, mean in (("b", 10.0), ("c", 40.0)):
        feedback += [
            {"request_id": f"{side}{i}", "kind": "time_to_rate", "value": float(v), "timestamp": ts}
            for i, v in enumerate(rng.normal(mean, 3.0, 120).clip(0))
        ]
    _ingest(engine, tmp_path, base + cur, feedback)

    window = TimeWindow(start=T0 + timedelta(days=1), end=T0 + timedelta(days=2))
    frame = load_frame(engine, [window])
    inp = drift_input(frame, frame.between(window), unsafe_threshold=0.5)
    assert int(inp.rates["follow_up"].sum()) == 80 and inp.rates["follow_up"].size == 200
    assert np.isfinite(inp.numeric["time_to_rate"]).sum() == 120

    out = check_drift(
        engine,
        DriftParams(
            current_start=window.start,
            current_end=window.end,
            baseline_start=T0,
            baseline_end=window.start,
            scopes=["overall"],
        ),
        Settings(),
        store=False,
        alerts=False,
    )
    results = {(r.test, r.feature): r for r in out.scopes[0].report.results}
    follow = results[("two_proportion", "follow_up")]
    assert follow.verdict == "drift"
    assert follow.details["rate_baseline"] == pytest.approx(0.05)
    assert follow.details["rate_current"] == pytest.approx(0.4)
    assert results[("ks", "time_to_rate")].verdict == "drift"
    assert "copy" not in {f for _, f in results}  # no copy events at all: not compared


# -- overview ----------------------------------------------------------------------------------


def _judge(server: FakeJudgeServer, **options: Any) -> JudgeEvaluator:
    settings = JudgeSettings(
        base_url=server.base_url,
        model="judge-1",
        api_key=SecretStr(KEY),
        timeout_s=5.0,
        max_retries=1,
        concurrency=4,
    )
    return JudgeEvaluator(settings=settings, **options)


def test_task_success_rubric_set_loads_and_is_judged_over_http() -> None:
    names = [r.name for r in load_rubrics(["task_success"])]
    assert names == list(RUBRIC_SETS["task_success"])
    assert names == ["task_completed", "intent_matched", "actionable", "completeness"]
    with FakeJudgeServer(expected_api_key=KEY) as server:
        judge = _judge(server, rubrics=["task_success"])
        assert [m.kind.value for m in judge.metrics] == ["rate", "rate", "rate", "score"]
        samples = [
            Sample(subject_id=1, prompt="5 miles in km?", response="about 8.05 km [[score=1]]"),
            Sample(subject_id=2, prompt="5 miles in km?", response="it depends [[score=0]]"),
        ]
        result = judge.evaluate(samples)
        judge.close()
        sent = [r.all_text for r in server.requests]
    by = {(s.subject_id, s.metric): s for s in result.scores}
    assert by[(1, "task_completed")].value == 1.0 and by[(2, "task_completed")].value == 0.0
    assert {s.status.value for s in result.scores if s.metric != "completeness"} == {"ok"}
    assert any("Rubric: task_completed (version 1)" in t for t in sent)
    assert any("integer from 0 to 1" in t for t in sent)


def test_overview_shows_each_signal_per_version_and_task_success(
    engine: Engine, tmp_path: Path
) -> None:
    # Two days, two versions; v2 is copied less in the second day.
    traffic = _traffic(40, T0, timedelta(hours=1), "v1", "a")
    traffic += _traffic(40, T0, timedelta(hours=1), "v2", "b")
    ts = _stamp(T0 + timedelta(days=3))
    feedback: list[dict[str, Any]] = [
        {"request_id": f"a{i}", "kind": "copy", "timestamp": ts} for i in range(0, 40, 2)
    ]
    feedback += [{"request_id": f"b{i}", "kind": "copy", "timestamp": ts} for i in range(0, 20, 2)]
    feedback += [{"request_id": "a1", "kind": "rating", "value": 5, "timestamp": ts}]
    _ingest(engine, tmp_path, traffic, feedback)
    ids = interaction_ids_for(engine, [f"b{i}" for i in range(10)])
    run = create_run(engine, "traffic", run_key="judged")
    assert run.id is not None
    verdicts = [(ids[f"b{i}"], 1.0 if i < 8 else 0.0) for i in range(10)]
    for key in ("old", "new"):  # judged twice (another options key): counted once, newest
        write_scores(
            engine,
            [
                {
                    "run_id": run.id,
                    "subject_type": "interaction",
                    "subject_id": sid,
                    "evaluator": "judge",
                    "evaluator_version": "1.0",
                    "config_hash": key,
                    "metric": "task_completed",
                    "value": 0.0 if key == "old" else v,
                    "status": "ok",
                    "reason": None,
                }
                for sid, v in verdicts
            ],
        )
    data = load_overview(engine, T0, T0 + timedelta(hours=40))
    rows = {r["model version"]: r for r in ux_rows(data)}
    assert list(rows) == [ALL_VERSIONS, "v1", "v2"]
    assert rows["v1"]["copy_rate"] == "50.0% → 50.0%"
    assert rows["v2"]["copy_rate"] == "50.0% ↓ 0.0%"
    assert rows["v1"]["rating"] == "5 (one half only)"
    assert rows["v2"][TASK_SUCCESS_COLUMN] == "80.0% [49.0%, 94.3%] of 10"
    assert rows["v1"][TASK_SUCCESS_COLUMN] is None
    assert "abandon_rate" not in rows["v1"]  # no abandonment logged: no column
    md = overview_markdown(data)
    assert "## User experience" in md and "80.0% [49.0%, 94.3%] of 10" in md
    page = overview_html(data)
    assert "User experience per model version" in page and "copy_rate" in page


# -- the installed console script ----------------------------------------------------------------


def test_cli_ingests_the_example_feedback_file_from_a_temp_dir(tmp_path: Path) -> None:
    exe = shutil.which("evalwatch", path=str(Path(sys.executable).parent)) or shutil.which(
        "evalwatch"
    )
    assert exe is not None
    head = (REPO / "datasets" / "sample_traffic.jsonl").read_text().splitlines()[:12]
    (tmp_path / "traffic.jsonl").write_text("\n".join(head) + "\n")
    shutil.copy(REPO / "datasets" / "ux_feedback.jsonl", tmp_path / "feedback.jsonl")
    env = {**os.environ, "EVALWATCH_HASH_KEY": "ux-cli"}
    db = f"sqlite:///{tmp_path / 'store.db'}"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [exe, "--db", db, *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    # The traffic in-process (one console-script start is what this test is about).
    engine = make_engine(db)
    upgrade(engine)
    assert ingest(engine, [tmp_path / "traffic.jsonl"], settings=_settings()).ingested == 12
    fed = run("ingest", "--kind", "feedback", "feedback.jsonl")
    assert fed.returncode == 0, fed.stdout + fed.stderr
    assert "12 feedback rows ingested, 0 duplicate, 0 quarantined" in fed.stdout
    with engine.connect() as conn:
        kinds: dict[str, int] = dict(
            conn.execute(
                sa.text(
                    "SELECT kind, COUNT(*) FROM feedback WHERE source LIKE '%feedback.jsonl' "
                    "GROUP BY kind"
                )
            ).all()
        )
    engine.dispose()
    assert kinds == {
        "rating": 2,
        "time_to_rate": 2,
        "thumbs": 2,
        "copy": 2,
        "refinement": 2,
        "follow_up": 1,
        "abandon": 1,
    }
