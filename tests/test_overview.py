"""The operations overview: numbers from a real store, the CLI, and the daily flow."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from evalwatch.cli import app
from evalwatch.reporting.overview import build_tables, overview_html, overview_markdown
from evalwatch.storage.overview import load_overview
from evalwatch.storage.repo import (
    create_run,
    insert_feedback,
    insert_interactions,
    interaction_ids_for,
    write_scores,
)

START = datetime(2026, 11, 1, tzinfo=UTC)


def _seed(engine) -> None:
    rows = []
    for i in range(40):
        rows.append(
            {
                "request_id": f"r{i}",
                "ts": START + timedelta(hours=6 * i),
                "app": "a",
                "model_name": "m",
                "model_version": "v1" if i < 30 else "v2",
                "prompt": "p",
                "response": "r",
                "cost": 0.01,
                "latency_ms": 100.0 + i,
            }
        )
    insert_interactions(engine, rows)
    ids = interaction_ids_for(engine, [str(r["request_id"]) for r in rows])
    run = create_run(engine, "traffic")
    write_scores(
        engine,
        [
            {
                "run_id": run.id,
                "subject_type": "interaction",
                "subject_id": ids[f"r{i}"],
                "evaluator": "heuristics",
                "evaluator_version": "1",
                "config_hash": "h",
                "metric": "refusal",
                "status": "ok",
                "value": 1.0 if i % 4 == 0 else 0.0,
            }
            for i in range(40)
        ],
    )
    # Ten interactions rated 5, of which two were abandoned afterwards: 8 successful.
    insert_feedback(
        engine,
        [
            {
                "feedback_key": f"k{i}",
                "interaction_id": ids[f"r{i}"],
                "kind": "rating",
                "value": 5.0,
                "ts": START + timedelta(hours=6 * i),
            }
            for i in range(10)
        ]
        + [
            {
                "feedback_key": f"a{i}",
                "interaction_id": ids[f"r{i}"],
                "kind": "abandon",
                "value": None,
                "ts": START + timedelta(hours=6 * i),
            }
            for i in range(2)
        ],
    )


def test_overview_numbers_from_the_store(engine):
    _seed(engine)
    data = load_overview(engine, START, START + timedelta(days=10))
    t = build_tables(data)
    head = t.headline[0]
    assert head["interactions"] == 40 and head["model versions"] == 2
    assert abs(head["total cost USD"] - 0.4) < 1e-9
    assert head["successful (rated 4+ or thumbs up, not abandoned)"] == 8
    assert abs(head["cost / successful interaction"] - 0.4 / 8) < 1e-9
    versions = {r["model version"]: r for r in t.per_version}
    assert versions["v1"]["interactions"] == 30 and versions["v2"]["interactions"] == 10
    assert "heuristics.refusal" in versions["v1"]
    assert [r["ratings"] for r in t.satisfaction] == [4, 4, 2]
    page = overview_html(data)
    assert "<script" not in page and page.count("<img") >= 2
    # No emoji: where no emoji font exists it renders as a box.
    assert not [c for c in page if ord(c) >= 0x1F000]
    assert "no drift check yet" in page
    assert "open alerts: **none**" in overview_markdown(data)


def _store_drift(engine, key: str, at: datetime, verdicts: dict[str, str]) -> None:
    from evalwatch.storage.db import session_scope
    from evalwatch.storage.models import DriftReportRow

    window = {"start": "2026-11-08T00:00:00+00:00", "end": "2026-11-11T00:00:00+00:00"}
    with session_scope(engine) as s:
        for feature, verdict in verdicts.items():
            s.add(
                DriftReportRow(
                    report_key=key,
                    created_at=at,
                    current=window,
                    test="ks",
                    feature=feature,
                    family="numeric",
                    verdict=verdict,
                    p_adjusted=0.001 if verdict == "drift" else 0.5,
                    summary=f"{feature}: {verdict}",
                )
            )


def test_overview_says_the_latest_check_found_nothing_and_shows_the_last_findings(engine):
    _seed(engine)
    _store_drift(engine, "old", datetime(2026, 11, 9, 6, tzinfo=UTC), {"latency_ms": "no_drift"})
    _store_drift(
        engine,
        "found",
        datetime(2026, 11, 10, 6, tzinfo=UTC),
        {"latency_ms": "drift", "cost": "drift", "rating": "no_drift"},
    )
    _store_drift(engine, "quiet", datetime(2026, 11, 11, 6, tzinfo=UTC), {"latency_ms": "no_drift"})
    data = load_overview(engine, START, START + timedelta(days=10))
    page = overview_html(data)
    drift = page.split("<h2>Latest drift check</h2>", 1)[1].split("</section>", 1)[0]
    assert "nothing to show" not in drift
    assert (
        "no drift in the latest check, 2026-11-11 06:00 UTC "
        "(current window 2026-11-08 00:00 → 2026-11-11 00:00)" in drift
    )
    found = drift.split("Latest check with findings", 1)[1]
    assert "2026-11-10 06:00 UTC" in found and "2 findings" in found
    assert "latency_ms: drift" in found and "cost: drift" in found and "rating" not in found
    md = overview_markdown(data)
    assert "no drift in the latest check, 2026-11-11 06:00 UTC" in md
    assert "the latest check with findings, 2026-11-10 06:00 UTC" in md
    assert "latency_ms: drift" in md.split("## Drift findings", 1)[1]


def test_overview_leads_with_the_latest_check_when_it_found_drift(engine):
    _seed(engine)
    _store_drift(engine, "found", datetime(2026, 11, 10, 6, tzinfo=UTC), {"cost": "drift"})
    data = load_overview(engine, START, START + timedelta(days=10))
    drift = overview_html(data).split("<h2>Latest drift check</h2>", 1)[1]
    assert "1 findings" in drift.split("</p>", 1)[0] and "cost: drift" in drift
    assert "Latest check with findings" not in drift and data.findings_drift_at is None


def test_overview_cli_writes_the_page(db_url, tmp_path):
    from evalwatch.storage.db import make_engine

    _seed(make_engine(db_url))
    out = tmp_path / "ov.html"
    res = CliRunner().invoke(
        app, ["--db", db_url, "report", "--overview", "--days", "14", "--html", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert "Interactions per day" in out.read_text() or "<img" in out.read_text()
    bad = CliRunner().invoke(app, ["--db", db_url, "report", "--overview", "--days", "0"])
    assert bad.exit_code == 2


def test_overview_flow_publishes_markdown(db_url, prefect_harness, tmp_path, monkeypatch):
    from evalwatch.flows.overview import operations_overview
    from evalwatch.settings import reset_settings
    from evalwatch.storage.db import make_engine

    monkeypatch.setenv("EVALWATCH_REPORT_DIR", str(tmp_path))
    reset_settings()
    _seed(make_engine(db_url))
    state = operations_overview(days=14, database_url=db_url, return_state=True)
    out = state.result()
    assert out["interactions"] == 40
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    md = next(a for a in arts if a.key == "evalwatch-overview")
    assert "Per model version" in str(md.data)
    # Not a file:// link (it does not open from the UI): the content, and where the file is.
    report = next(a for a in arts if a.key == "evalwatch-overview-report")
    assert report.type == "markdown" and Path(out["report"]).as_uri() not in str(report.data)
    assert out["report"] in str(report.data) and "Per model version" in str(report.data)
    assert Path(out["report"]).parent.parent == tmp_path


def test_overview_flow_links_the_report_where_reports_are_served(
    db_url, prefect_harness, tmp_path, monkeypatch
):
    from evalwatch.flows.overview import operations_overview
    from evalwatch.settings import reset_settings
    from evalwatch.storage.db import make_engine

    monkeypatch.setenv("EVALWATCH_REPORT_DIR", str(tmp_path))
    monkeypatch.setenv("EVALWATCH_REPORT_BASE_URL", "https://reports.example/evalwatch")
    reset_settings()
    _seed(make_engine(db_url))
    state = operations_overview(days=14, database_url=db_url, return_state=True)
    out = state.result()
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    link = next(a for a in arts if a.key == "evalwatch-overview-report")
    rel = Path(out["report"]).relative_to(tmp_path).as_posix()
    # Prefect stores a link artifact as a markdown link.
    assert link.data == f"[operations overview](https://reports.example/evalwatch/{rel})"
