"""The Prefect artifact of a run's HTML report: its content, or a link where reports are served."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from evalwatch.settings import reset_settings
from evalwatch.storage.db import get_engine
from evalwatch.storage.repo import insert_interactions


def _traffic(n: int) -> list[dict[str, Any]]:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    return [
        {
            "request_id": f"req-{i}",
            "ts": start + timedelta(minutes=5 * i),
            "app": "support",
            "model_name": "acme",
            "model_version": "v1",
            "prompt": f"Where is my parcel? ({i})",
            "response": "I'm sorry, I can't help." if i % 5 == 0 else "It arrives tomorrow.",
        }
        for i in range(n)
    ]


def _run_traffic(url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from evalwatch.flows.traffic import evaluate_traffic
    from evalwatch.runs.traffic import TrafficParams

    insert_interactions(get_engine(url), _traffic(20))
    state = evaluate_traffic(
        params=TrafficParams(evaluators=["heuristics"]), database_url=url, return_state=True
    )
    assert state.is_completed()
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    return state.result(), {a.key: a for a in arts if a.key}


def test_two_stores_runs_keep_their_own_reports_and_the_artifact_has_the_content(
    prefect_harness, tmp_path, monkeypatch
):
    monkeypatch.delenv("EVALWATCH_REPORT_DIR", raising=False)
    monkeypatch.delenv("EVALWATCH_REPORT_BASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    reset_settings()
    reports = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        summary, arts = _run_traffic(f"sqlite:///{tmp_path / name / 'evalwatch.db'}")
        report = Path(summary["report"])
        # Both stores' first run is run 1: each report stays beside its own store.
        assert summary["run_id"] == 1
        assert report == tmp_path / name / "reports" / "run-1.html" and report.is_file()
        reports.append(report)
        art = arts["evalwatch-traffic-report"]
        data = str(art.data)
        assert art.type == "markdown" and report.as_uri() not in data
        assert str(report) in data and "EVALWATCH_REPORT_BASE_URL" in data
        assert "heuristics.refusal" in data and "Worst items" in data
    assert all(r.is_file() for r in reports)
    assert not (tmp_path / "reports").exists()


def test_the_report_artifact_links_where_reports_are_served(prefect_harness, tmp_path, monkeypatch):
    monkeypatch.setenv("EVALWATCH_REPORT_DIR", str(tmp_path / "served"))
    monkeypatch.setenv("EVALWATCH_REPORT_BASE_URL", "http://reports.internal:8080/ev/")
    reset_settings()
    summary, arts = _run_traffic(f"sqlite:///{tmp_path / 'evalwatch.db'}")
    rel = Path(summary["report"]).relative_to(tmp_path / "served").as_posix()
    assert rel.endswith("/run-1.html")
    assert arts["evalwatch-traffic-report"].data == (
        f"[HTML report of run 1](http://reports.internal:8080/ev/{rel})"
    )
