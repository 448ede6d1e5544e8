"""The ``collect-metrics`` flow on a real Prefect server, scraping real HTTP endpoints.

Two local HTTP servers answer as a DCGM exporter and a vLLM server do; the flow scrapes them
into a real store (SQLite, then PostgreSQL) and the metric alert rules fire from what it
stored. Without targets the flow completes and says so, as the prefect.yaml deployment does
on a fresh install.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from evalwatch.storage.db import make_engine
from evalwatch.storage.models import Alert
from tests.telemetry_samples import VllmServer, dcgm_text

REPO = Path(__file__).resolve().parent.parent
GPU = {"temp": 71, "power": 301.25, "util": 97, "fb_free": 20480, "fb_used": 61440}


@pytest.fixture
def endpoint() -> Iterator[tuple[str, dict[str, str]]]:
    """A local HTTP server serving the documents of its dict by path."""
    docs: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = docs.get(self.path, "").encode()
            self.send_response(200 if self.path in docs else 404)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", docs
    server.shutdown()
    server.server_close()


def test_the_deployment_runs_the_flow_every_few_minutes() -> None:
    from evalwatch.flows.metrics import collect_metrics

    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    dep = next(d for d in spec["deployments"] if d["name"] == "collect-metrics-every-5m")
    assert dep["entrypoint"] == "evalwatch.flows.metrics:collect_metrics"
    assert collect_metrics.name == dep["entrypoint"].split(":")[1].replace("_", "-")
    assert dep["schedules"][0]["interval"] == 300
    collect_metrics.validate_parameters(dep.get("parameters") or {})


@pytest.mark.usefixtures("prefect_harness")
def test_the_flow_scrapes_stores_and_fires_metric_alerts(
    db_url: str,
    endpoint: tuple[str, dict[str, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from evalwatch.flows.metrics import ScrapeFailedError, collect_metrics

    base, docs = endpoint
    now = datetime.now(UTC)
    # A federating endpoint stamps its samples: these are from the last complete 5-minute window.
    stamp = int((math.floor(now.timestamp() / 300) * 300 - 120) * 1000)
    docs["/dcgm"] = dcgm_text("gpu-node-1", [GPU, {**GPU, "temp": 91}], timestamp_ms=stamp)
    vllm = VllmServer()
    vllm.serve(running=2, waiting=0, cache=0.5, prompt_tokens=5, generation_tokens=9, ttfts=[0.1])
    docs["/metrics"] = vllm.text()
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "rules": [
                    {
                        "name": "gpu-hot",
                        "selector": "gpu.temperature",
                        "aggregation": "max",
                        "comparison": ">",
                        "threshold": 85,
                        "window": "5m",
                        "scope": {"host": "each", "gpu": "each"},
                    }
                ],
            }
        )
    )
    monkeypatch.setenv("EVALWATCH_RULES_FILE", str(rules))
    targets = [
        {"name": "dcgm", "url": f"{base}/dcgm", "source": "dcgm"},
        {"name": "vllm", "url": f"{base}/metrics"},
    ]
    result = collect_metrics(database_url=db_url, targets=targets)
    assert [t["target"] for t in result["targets"]] == ["dcgm", "vllm"]
    assert result["targets"][0]["samples"] == 12 and result["failed"] == []
    assert [(a["rule"], a["action"], a["scope"]) for a in result["alerts"]] == [
        ("gpu-hot", "open", "gpu=1,host=gpu-node-1")
    ]
    engine = make_engine(db_url)
    with engine.connect() as conn:
        alerts = conn.execute(sa.select(Alert.__table__)).mappings().all()  # type: ignore[attr-defined]
    assert [(a["rule"], a["status"]) for a in alerts] == [("gpu-hot", "open")]

    # A target that is down fails the run, after the others were stored and judged.
    dead = [*targets, {"name": "down", "url": "http://127.0.0.1:9/metrics"}]
    with pytest.raises(ScrapeFailedError, match="could not scrape down"):
        collect_metrics(database_url=db_url, targets=dead)

    # No targets configured: it completes and says so.
    caplog.clear()
    empty = collect_metrics(database_url=db_url)
    assert empty["targets"] == [] and empty["failed"] == []
    assert "no scrape targets configured" in caplog.text
    engine.dispose()
