"""Journey: a user loads serving-fleet metrics with the installed ``evalwatch`` (issue #16).

From a folder of their own, with relative paths: a DCGM exporter scrape saved to a file, a
vLLM ``/metrics`` scrape with one damaged line, an OTLP JSON metrics export; then the bad
inputs (a missing file, an unknown source), and retention through ``evalwatch db prune``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from evalwatch.storage.db import make_engine
from tests.journeys.conftest import base_env, run_cli
from tests.telemetry_samples import VllmServer, dcgm_text, otlp_metrics_json

pytestmark = [pytest.mark.journey]

GPU = {"temp": 71, "power": 301.25, "util": 97, "fb_free": 20480, "fb_used": 61440}


def test_metric_files_load_with_a_summary_and_exit_codes(tmp_path: Path) -> None:
    work = tmp_path / "ops"
    (work / "scrapes").mkdir(parents=True)
    (work / "scrapes" / "dcgm.prom").write_text(dcgm_text("gpu-node-1", [GPU, GPU]))
    vllm = VllmServer()
    vllm.serve(running=2, waiting=1, cache=0.3, prompt_tokens=10, generation_tokens=99, ttfts=[0.1])
    damaged = vllm.text().replace(
        'vllm:num_requests_waiting{model_name="meta-llama/Llama-3.1-8B-Instruct"} 1.0',
        'vllm:num_requests_waiting{model_name="meta-llama/Llama-3.1-8B-Instruct" 1.0',
    )
    (work / "scrapes" / "vllm.prom").write_text(damaged)
    (work / "scrapes" / "otel.json").write_text(otlp_metrics_json())
    # Scraped three days ago: the file's time is the samples' time.
    old = time.time() - 3 * 86400
    os.utime(work / "scrapes" / "dcgm.prom", (old, old))
    env = base_env(EVALWATCH_DATABASE_URL="sqlite:///fleet.db")

    ok = run_cli("ingest", "--kind", "metrics", "scrapes/dcgm.prom", cwd=work, env=env)
    assert ok.code == 0, ok
    assert (
        "12 metric samples stored in 12 series (12 new), 0 duplicate, 0 quarantined (dcgm;"
        in ok.out
    )
    assert "skipped 1 metric(s) without a canonical series: DCGM_FI_DEV_SM_CLOCK" in ok.out

    again = run_cli("ingest", "--kind", "metrics", "scrapes/dcgm.prom", cwd=work, env=env)
    assert (
        again.code == 0
        and "0 metric samples stored in 12 series (0 new), 12 duplicate" in again.out
    )

    bad = run_cli(
        "ingest",
        "--kind",
        "metrics",
        "--source",
        "auto",
        "scrapes/vllm.prom",
        "scrapes/otel.json",
        cwd=work,
        env=env,
    )
    assert bad.code == 1, bad  # a line was quarantined; the rest loaded
    assert "1 quarantined (otlp, vllm; 2 file(s))" in bad.out
    assert "unparsable Prometheus line" in bad.out

    engine = make_engine(f"sqlite:///{work / 'fleet.db'}")
    with engine.connect() as conn:
        kinds = conn.execute(sa.text("SELECT kind, line FROM quarantine")).all()
        names = {r[0] for r in conn.execute(sa.text("SELECT DISTINCT name FROM metric_series"))}
    engine.dispose()
    line = (
        damaged.splitlines().index(
            'vllm:num_requests_waiting{model_name="meta-llama/Llama-3.1-8B-Instruct" 1.0'
        )
        + 1
    )
    assert kinds == [("metrics", line)]
    assert {
        "gpu.temperature",
        "engine.kv_cache_usage",
        "engine.ttft_seconds",
        "engine.token_usage",
    } <= names
    assert "engine.requests_waiting" not in names  # its only line was the damaged one

    missing = run_cli("ingest", "--kind", "metrics", "scrapes/nope.prom", cwd=work, env=env)
    assert missing.code == 2 and missing.stderr.strip() == "error: scrapes/nope.prom: no such file"
    unknown = run_cli(
        "ingest", "--kind", "metrics", "--source", "nagios", "scrapes/dcgm.prom", cwd=work, env=env
    )
    assert (
        unknown.code == 2
        and "--source must be one of auto, dcgm, vllm, otlp, prometheus" in unknown.out
    )

    # Retention: DCGM samples from three days ago are older than telemetry.retention.
    keep = env | {"EVALWATCH_TELEMETRY__RETENTION": "2d"}
    dry = run_cli("db", "prune", "--dry-run", cwd=work, env=keep)
    assert dry.code == 0 and "and 12 metric samples older than telemetry.retention" in dry.out
    pruned = run_cli("db", "prune", "--yes", cwd=work, env=keep)
    assert pruned.code == 0, pruned
    assert "pruned 12 metric samples older than telemetry.retention" in pruned.out
    engine = make_engine(f"sqlite:///{work / 'fleet.db'}")
    with engine.connect() as conn:
        left = conn.execute(sa.text("SELECT COUNT(*) FROM metric_samples")).scalar_one()
    engine.dispose()
    assert left > 0  # the recent vLLM and OTLP samples stay


@pytest.fixture
def dcgm_exporter() -> Iterator[str]:
    """A local HTTP server answering /metrics as dcgm-exporter does (404 elsewhere)."""
    body = dcgm_text("gpu-node-9", [GPU, {**GPU, "temp": 90}]).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path == "/metrics"
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.end_headers()
            if found:
                self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_collect_scrape_reads_an_endpoint_once(tmp_path: Path, dcgm_exporter: str) -> None:
    env = base_env(EVALWATCH_DATABASE_URL="sqlite:///fleet.db")
    ok = run_cli("collect", "scrape", f"{dcgm_exporter}/metrics", cwd=tmp_path, env=env)
    assert ok.code == 0, ok
    assert (
        "12 metric samples stored in 12 series (12 new), 0 quarantined (dcgm; 1 endpoint(s))"
        in ok.out
    )
    gone = run_cli("collect", "scrape", f"{dcgm_exporter}/nope", cwd=tmp_path, env=env)
    assert gone.code == 3 and "HTTP 404" in gone.out
    down = run_cli("collect", "scrape", "http://127.0.0.1:9/metrics", cwd=tmp_path, env=env)
    assert down.code == 3 and "cannot reach" in down.out, down
    bad = run_cli("collect", "scrape", "gpu-node-1:9400", cwd=tmp_path, env=env)
    assert bad.code == 2 and "not an http(s) URL" in bad.out


def test_collect_gpu_exits_2_with_one_line_without_a_gpu(tmp_path: Path) -> None:
    import pynvml

    env = base_env(EVALWATCH_DATABASE_URL="sqlite:///s.db")
    done = run_cli("collect", "gpu", "--count", "2", "--interval", "1s", cwd=tmp_path, env=env)
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:  # no NVIDIA driver here (the CI machines): the real failure path
        assert done.code == 2, done
        assert done.stderr.strip().splitlines() == [
            "error: NVML is not available here (NVML Shared Library Not Found); no GPU to sample"
        ]
        assert not (tmp_path / "s.db").exists()  # nothing else was touched
        return
    gpus = pynvml.nvmlDeviceGetCount()
    pynvml.nvmlShutdown()
    assert done.code == 0, done  # a machine with GPUs samples them for real
    assert "GPU samples stored" in done.out and gpus > 0
