"""The executive view (issue #16 section 5): health score, safety compliance, the page, the CLI.

The health function is checked table-driven on hand-computed cases; the figures come from real
stores (SQLite file and PostgreSQL) and the page is read back for its numbers and part names.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from evalwatch.checks.health import (
    HealthTargets,
    PartTarget,
    TargetsError,
    health_score,
    load_targets,
    part_score,
)
from evalwatch.checks.rules import load_rules
from evalwatch.cli import app
from evalwatch.reporting.executive import (
    ALL,
    executive_html,
    executive_markdown,
    load_executive_data,
    safety_checks,
    scope_health,
)
from evalwatch.storage.repo import (
    create_run,
    insert_feedback,
    insert_interactions,
    interaction_ids_for,
    write_scores,
)

START = datetime(2026, 11, 8, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.mark.parametrize(
    ("value", "target", "higher", "expected"),
    [
        (0.99, 0.99, True, 1.0),  # at the target
        (0.95, 0.99, True, 0.2),  # 1 % allowed bad, 5 % bad
        (0.6, 0.7, True, 0.75),
        (0.0, 0.7, True, 0.3),
        (1000.0, 625.0, False, 0.625),
        (0.04, 0.02, False, 0.5),
        (0.0, 0.02, False, 1.0),
        (0.5, 1.0, True, 0.0),  # a perfect target leaves no budget
    ],
)
def test_part_score(value: float, target: float, higher: bool, expected: float) -> None:
    assert part_score(value, target, higher) == pytest.approx(expected)


def test_health_is_traced_to_its_parts() -> None:
    values = {
        "quality": 0.6,
        "safety": 0.8,
        "latency": 1000.0,
        "error_rate": 0.0,
        "satisfaction": 0.9,
    }
    h = health_score(values, HealthTargets(), previous={"latency": 500.0})
    assert h.score == pytest.approx(63.125)
    assert h.score is not None
    lost = {p.name: p.lost or 0.0 for p in h.parts}
    assert lost == pytest.approx(
        {"quality": 7.5, "safety": 23.75, "latency": 5.625, "error_rate": 0.0, "satisfaction": 0.0}
    )
    assert sum(lost.values()) == pytest.approx(100 - h.score)
    latency = h.part("latency")
    assert latency.target == pytest.approx(625.0) and latency.target_kind.startswith("previous")
    # Without a previous figure the absolute target (5 s) applies and latency is met.
    assert health_score(values, HealthTargets()).part("latency").score == 1.0


def test_parts_without_data_are_left_out_not_zero() -> None:
    h = health_score({"safety": 1.0}, HealthTargets())
    assert h.score == 100.0 and h.part("quality").score is None
    assert h.part("quality").points is None
    assert health_score({}, HealthTargets()).score is None
    # Weights renormalise over the parts that have data.
    t = HealthTargets(safety=PartTarget(target=0.99, weight=3), error_rate=PartTarget(target=0.02))
    h2 = health_score({"safety": 0.95, "error_rate": 0.0}, t)
    assert h2.score == pytest.approx(100 * (3 * 0.2 + 1.0) / 4)


def test_targets_file(tmp_path: Path) -> None:
    f = tmp_path / "targets.yaml"
    f.write_text("safety: {target: 0.995, weight: 2}\nquality_metrics: [judge.correctness]\n")
    t = load_targets(f)
    assert t.safety.target == 0.995 and t.safety.weight == 2
    assert t.quality_metrics == ["judge.correctness"] and t.latency.relative == 1.25
    f.write_text("safety: {target: high}\n")
    with pytest.raises(TargetsError, match=r"safety\.target"):
        load_targets(f)
    f.write_text("speed: {target: 1}\n")
    with pytest.raises(TargetsError, match="speed"):
        load_targets(f)


def _interaction(i: int, ts: datetime, latency: float) -> dict[str, Any]:
    return {
        "request_id": f"r{ts:%d}-{i}",
        "ts": ts,
        "app": "shop",
        "model_name": "m",
        "model_version": "v1",
        "prompt": "p",
        "response": "r",
        "latency_ms": latency,
        "input_tokens": 10,
        "output_tokens": 20,
        "cost": 0.01,
    }


def _seed(engine: Engine) -> None:
    """Ten interactions in the window, five the day before (the previous period's latency)."""
    cur = [_interaction(i, START + timedelta(hours=i), 1000.0) for i in range(10)]
    prev = [_interaction(i, START - DAY + timedelta(hours=i), 500.0) for i in range(5)]
    insert_interactions(engine, cur + prev)
    ids = interaction_ids_for(engine, [r["request_id"] for r in cur])
    iid = [ids[r["request_id"]] for r in cur]
    run = create_run(engine, "traffic")
    base = {"run_id": run.id, "subject_type": "interaction", "evaluator_version": "1",
            "config_hash": "h", "status": "ok"}  # fmt: skip
    scores = []
    for n, i in enumerate(iid):
        scores.append({**base, "subject_id": i, "evaluator": "toxicity", "metric": "safety",
                       "value": 0.2 if n == 0 else 0.9})  # fmt: skip
        scores.append({**base, "subject_id": i, "evaluator": "judge", "metric": "helpfulness",
                       "value": 0.6})  # fmt: skip
        if n < 5:
            scores.append({**base, "subject_id": i, "evaluator": "heuristics",
                           "metric": "pii_leak", "value": 1.0 if n == 3 else 0.0})  # fmt: skip
    write_scores(engine, scores)

    def fb(n: int, kind: str, value: float | None, label: str | None = None) -> dict[str, Any]:
        return {"feedback_key": f"{kind}{n}", "interaction_id": iid[n], "kind": kind,
                "value": value, "label": label, "ts": START + timedelta(hours=n)}  # fmt: skip

    insert_feedback(
        engine,
        [fb(n, "rating", 5.0) for n in range(5)]
        + [fb(5, "rating", 2.0), fb(6, "thumbs", 1.0, "up"), fb(4, "abandon", None)],
    )


def test_executive_figures_and_page_from_the_store(engine: Engine) -> None:
    _seed(engine)
    targets = HealthTargets()
    checks = safety_checks(load_rules(), targets)
    assert [(c.metric, c.comparison, c.threshold) for c in checks] == [
        ("toxicity.safety", "<", 0.5),
        ("heuristics.pii_leak", ">", 0.0),
    ]
    data = load_executive_data(engine, START, START + DAY, targets, load_rules())
    assert [s.key for s in data.scopes] == [(ALL, ALL), ("shop", "v1")]
    s = data.scopes[1]
    # Responses 0 (toxic) and 3 (PII) fail: 8 of 10 comply.
    assert (s.safety_checked, s.safety_passed) == (10, 8)
    assert s.safety_compliance == pytest.approx(0.8)
    # Rated: 0-5 and the thumbs of 6; satisfied: 0-4 and 6. Successful leaves out abandoned 4.
    assert (s.rated, s.satisfied, s.successful) == (7, 6, 5)
    assert s.cost_per_successful == pytest.approx(0.1 / 5)
    assert s.quality == pytest.approx(0.6) and s.error_rate == 0.0
    assert data.previous[s.key].latency_p95_ms == pytest.approx(500.0)
    h = scope_health(data, s)
    assert h.score == pytest.approx(63.125)
    assert h.part("safety").lost == pytest.approx(23.75)

    page = executive_html(data)
    wanted = ["health 63.1", "safety compliance", "points lost", "satisfaction", "error_rate"]
    wanted += ["23.75", "previous period x1.25", "toxicity.safety &lt; 0.5", "500 ↑ 1000"]
    for text in wanted:
        assert text in page, text
    md = executive_markdown(data)
    assert "### shop / v1: health 63.1" in md and "| safety | safety compliance | 0.8 |" in md


def test_report_executive_cli(db_url: str, tmp_path: Path) -> None:
    from evalwatch.storage.db import make_engine

    _seed(make_engine(db_url))
    out = tmp_path / "exec.html"
    args = ["--db", db_url, "report", "--executive", "--days", "1", "--html", str(out)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "health 63.1" in out.read_text(encoding="utf-8")
    assert "health 63.1" in out.with_suffix(".md").read_text(encoding="utf-8")
    # A stricter, heavier safety target from a file: safety scores 0.005 / 0.2 with weight 1
    # of 1.75: 100 * (0.225 + 0.025 + 0.09375 + 0.3) / 1.75.
    targets = tmp_path / "t.yaml"
    targets.write_text("safety: {target: 0.995, weight: 1}\n")
    res = CliRunner().invoke(app, [*args, "--targets", str(targets)])
    assert res.exit_code == 0, res.output
    assert "health 36.8" in out.read_text(encoding="utf-8")
    targets.write_text("safety: [1, 2]\n")
    bad = CliRunner().invoke(app, [*args, "--targets", str(targets)])
    assert bad.exit_code == 2 and "safety" in bad.output
    both = CliRunner().invoke(app, ["--db", db_url, "report", "--executive", "--overview"])
    assert both.exit_code == 2


def test_daily_flow_publishes_the_executive_artifact(
    prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One backend: the figures are checked on both above; this is about the artifact.
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from evalwatch.flows.overview import operations_overview
    from evalwatch.settings import reset_settings
    from evalwatch.storage.db import make_engine, upgrade

    db_url = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("EVALWATCH_REPORT_DIR", str(tmp_path))
    reset_settings()
    engine = make_engine(db_url)
    upgrade(engine)
    _seed(engine)
    state = operations_overview(days=1, database_url=db_url, return_state=True)
    out = state.result()
    assert out["health"] == pytest.approx(63.125)
    assert Path(out["executive_report"]).is_file()
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    md = next(a for a in arts if a.key == "evalwatch-executive")
    assert "health 63.1" in str(md.data) and "safety compliance" in str(md.data)


def test_hostile_names_are_escaped_on_the_page(sqlite_engine: Engine) -> None:
    hostile = "<script>alert(1)</script>"
    row = {**_interaction(0, START, 100.0), "app": hostile, "model_version": "<b>v</b>"}
    insert_interactions(sqlite_engine, [row])
    data = load_executive_data(sqlite_engine, START, START + DAY, HealthTargets(), load_rules())
    page = executive_html(data)
    assert "<script>alert" not in page and "<b>v</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; / &lt;b&gt;v&lt;/b&gt;: health" in page
