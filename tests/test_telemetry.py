"""Serving-fleet metrics (issue #16): parsing real exporter formats, storing series, alerting.

Documents are the real formats (see ``tests/telemetry_samples.py``); the store is a real
SQLite file and the real PostgreSQL; the alert engine is the real one. NVML is the one
external service faked (a module object with pynvml's functions), and its absence is tested
for real: this machine has no NVIDIA driver.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from evalwatch.checks.histograms import histogram_quantile, merge_buckets, window_quantile
from evalwatch.checks.rules import Rule, RulesFile, check_rules_data
from evalwatch.core.telemetry import SOURCE_METRICS, TELEMETRY_METRICS, resolve_selector
from evalwatch.ingest.metric_sources import (
    NvmlUnavailableError,
    collect_gpu,
    load_metrics_file,
    load_metrics_text,
    scrape_target,
)
from evalwatch.ingest.metrics import parse_otlp_metrics, parse_prometheus
from evalwatch.settings import ScrapeTarget, Settings
from evalwatch.storage.metric_series import latest_samples, prune_samples
from evalwatch.storage.models import Alert, Quarantine
from evalwatch.storage.models_telemetry import MetricSample, MetricSeries
from tests.telemetry_samples import H100, VllmServer, dcgm_text, otlp_metrics_json

NOW = datetime.now(UTC).replace(microsecond=0)
# The start of a 5-minute window that ended a little while ago (windows align to the epoch).
W0 = datetime.fromtimestamp(math.floor(NOW.timestamp() / 300) * 300 - 600, UTC)
GPU = {"temp": 71, "power": 301.25, "util": 97, "fb_free": 20480, "fb_used": 61440}


def _lines(text: str) -> list[tuple[int, str]]:
    return list(enumerate(text.splitlines(), 1))


def _settings(**telemetry: Any) -> Settings:
    return Settings(telemetry=telemetry) if telemetry else Settings()


def _samples(engine: Engine, name: str) -> list[dict[str, Any]]:
    ms, mp = MetricSeries.__table__, MetricSample.__table__  # type: ignore[attr-defined]
    q = (
        sa.select(
            ms.c.name, ms.c.host, ms.c.gpu, ms.c.model, mp.c.ts, mp.c.value, mp.c.raw, mp.c.buckets
        )
        .select_from(mp.join(ms, ms.c.id == mp.c.series_id))
        .where(ms.c.name == name)
        .order_by(mp.c.ts, ms.c.gpu)
    )
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(q).mappings()]


# -- percentiles from buckets ------------------------------------------------------------------

INF = math.inf


@pytest.mark.parametrize(
    ("q", "le", "counts", "expected"),
    [
        (0.5, [0.1, 0.5, 1.0, INF], [10, 60, 100, 100], 0.42),  # inside the 2nd bucket
        (0.1, [0.1, 0.5, 1.0, INF], [10, 60, 100, 100], 0.1),  # exactly at a bound
        (0.05, [0.1, 0.5, INF], [10, 60, 60], 0.03),  # lowest bucket starts at 0
        (0.99, [0.1, INF], [1, 10], 0.1),  # rank in +Inf: the highest finite bound
        (1.0, [1.0, 2.0, INF], [0, 4, 4], 2.0),
        (0.5, [1.0, INF], [0, 0], None),  # no observations: no value, never 0
    ],
)
def test_histogram_quantile_matches_prometheus(
    q: float, le: list[float], counts: list[float], expected: float | None
) -> None:
    got = histogram_quantile(q, le, counts)
    assert got == (pytest.approx(expected) if expected is not None else None)


def test_histogram_quantile_of_evenly_spread_observations_is_the_true_percentile() -> None:
    values = np.linspace(0.0, 2.0, 2001)[
        1:
    ]  # evenly spread: interpolation inside a bucket is exact
    le = [0.25, 0.5, 1.0, 1.5, 2.0, INF]
    counts = [float((values <= b).sum()) for b in le]
    for q in (0.1, 0.5, 0.9, 0.95):
        assert histogram_quantile(q, le, counts) == pytest.approx(np.quantile(values, q), abs=2e-3)


def test_histogram_quantile_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="must not decrease"):
        histogram_quantile(0.5, [1.0, INF], [5, 3])
    with pytest.raises(ValueError, match="quantile"):
        histogram_quantile(1.5, [1.0, INF], [1, 1])


def test_merging_histograms_with_different_bounds_keeps_every_observation() -> None:
    le, counts = merge_buckets([([1.0, INF], [2, 3]), ([2.0, INF], [1, 4])])
    assert le == [1.0, 2.0, INF]
    assert counts == [2.0, 3.0, 7.0]  # at 2.0 the first adds what it knows is <= 1.0
    assert window_quantile([([1.0, "+Inf"], [2, 3])], 0.5) == (3, 0.75)


# -- canonical names --------------------------------------------------------------------------


def test_every_source_metric_maps_to_a_declared_series_and_selectors_resolve() -> None:
    assert {m.name for m in SOURCE_METRICS} <= set(TELEMETRY_METRICS)
    assert resolve_selector("engine.ttft_p95").quantile == 0.95  # type: ignore[union-attr]
    assert resolve_selector("engine.e2e_latency_p99").name == "engine.e2e_latency_seconds"  # type: ignore[union-attr]
    assert resolve_selector("gpu.temperature_p95") is None  # a gauge has no buckets
    got = resolve_selector("gen_ai.server.time_to_first_token")
    assert got is not None and (got.name, got.source_name) == (
        "engine.ttft_seconds",
        "gen_ai.server.time_to_first_token",
    )


# -- parsing ----------------------------------------------------------------------------------


def test_dcgm_exposition_maps_to_gpu_series_with_units_and_labels() -> None:
    text = dcgm_text("gpu-node-1", [GPU, {**GPU, "temp": 88}])
    got = parse_prometheus(_lines(text), ts=NOW)
    assert got.rejected == []
    assert got.skipped == {"DCGM_FI_DEV_SM_CLOCK": 2}  # no canonical series: not stored
    by = {(p.name, p.gpu): p for p in got.points}
    assert by[("gpu.temperature", "1")].value == 88.0
    assert by[("gpu.power_watts", "0")].value == pytest.approx(301.25)
    assert by[("gpu.utilization", "0")].value == 97.0
    assert by[("gpu.memory_used_bytes", "0")].value == 61440 * 2**20  # MiB -> bytes
    assert by[("gpu.memory_used_share", "0")].value == pytest.approx(61440 / (61440 + 20480))
    p = by[("gpu.temperature", "0")]
    assert (p.source, p.host, p.model) == ("dcgm", "gpu-node-1", None)
    assert p.labels["modelName"] == H100  # the GPU product stays a label, not the model
    assert p.labels["UUID"].startswith("GPU-") and p.labels["device"] == "nvidia0"


def test_bad_lines_and_values_are_rejected_with_reasons_and_the_rest_loads() -> None:
    text = dcgm_text("h1", [GPU, {**GPU, "temp": "NaN", "util": 140}])
    text += 'DCGM_FI_DEV_GPU_TEMP{gpu="2",Hostname="h1" 40\n'  # a broken label set
    got = parse_prometheus(_lines(text), ts=NOW)
    reasons = sorted(r for rej in got.rejected for r in rej.reasons)
    assert len(got.rejected) == 3
    assert "gpu.temperature: value nan is not a finite number" in reasons
    assert "gpu.utilization: 140.0 is above 100 percent" in reasons
    assert any(r.startswith("unparsable Prometheus line") for r in reasons)
    broken = next(r for r in got.rejected if r.reasons[0].startswith("unparsable"))
    assert broken.line == len(text.splitlines()) and 'gpu="2"' in broken.raw
    temps = [p for p in got.points if p.name == "gpu.temperature"]
    assert [(p.gpu, p.value) for p in temps] == [("0", 71.0)]


def test_bad_timestamps_and_negative_counters_are_rejected() -> None:
    future = int((NOW + timedelta(days=2)).timestamp() * 1000)
    text = (
        "# TYPE vllm:num_requests_running gauge\n"
        f'vllm:num_requests_running{{model_name="m"}} 3 {future}\n'
        'vllm:num_requests_running{model_name="n"} 2 946684799000\n'  # 1999-12-31
        "# TYPE vllm:generation_tokens_total counter\n"
        'vllm:generation_tokens_total{model_name="m"} -5\n'
    )
    got = parse_prometheus(_lines(text), ts=NOW)
    assert got.points == []
    assert sorted(r.reasons[0] for r in got.rejected) == [
        "bad timestamp 1999-12-31T23:59:59+00:00: before 2000",
        f"bad timestamp {(NOW + timedelta(days=2)).isoformat()}: in the future",
        "engine.generation_tokens: counter is negative (-5.0)",
    ]


def test_vllm_metrics_give_engine_series_histograms_and_fragmentation() -> None:
    server = VllmServer()
    server.serve(
        running=3,
        waiting=1,
        cache=0.25,
        prompt_tokens=400,
        generation_tokens=900,
        ttfts=[0.03, 0.05, 0.2],
        tpots=[0.02],
        e2es=[1.5],
    )
    got = parse_prometheus(_lines(server.text()), ts=NOW)
    assert got.rejected == []
    assert "vllm:cache_config_info" in got.skipped
    by = {p.name: p for p in got.points}
    assert by["engine.requests_running"].value == 3
    assert by["engine.kv_cache_usage"].value == 0.25
    assert by["memory.fragmentation"].value == pytest.approx(0.75)
    assert by["engine.generation_tokens"].value == 900  # the cumulative reading
    ttft = by["engine.ttft_seconds"]
    assert ttft.model == "meta-llama/Llama-3.1-8B-Instruct" and ttft.buckets is not None
    assert ttft.buckets["count"] == 3 and ttft.buckets["sum"] == pytest.approx(0.28)
    assert ttft.buckets["le"][-1] == math.inf and ttft.buckets["counts"][-1] == 3
    assert {"engine.tpot_seconds", "engine.e2e_latency_seconds"} <= set(by)


def test_a_histogram_whose_buckets_decrease_is_rejected() -> None:
    text = (
        "# TYPE vllm:time_to_first_token_seconds histogram\n"
        'vllm:time_to_first_token_seconds_bucket{le="0.1",model_name="m"} 5.0\n'
        'vllm:time_to_first_token_seconds_bucket{le="+Inf",model_name="m"} 3.0\n'
        'vllm:time_to_first_token_seconds_count{model_name="m"} 3.0\n'
        'vllm:time_to_first_token_seconds_sum{model_name="m"} 0.2\n'
    )
    got = parse_prometheus(_lines(text), ts=NOW)
    assert got.points == []
    assert got.rejected[0].reasons == ["engine.ttft_seconds: histogram bucket counts decrease"]


def test_otlp_genai_metrics_from_the_sdk_map_to_engine_series() -> None:
    got = parse_otlp_metrics(otlp_metrics_json())
    assert got.rejected == [] and got.sources == {"otlp"}
    names = sorted(p.name for p in got.points)
    assert names == [
        "engine.e2e_latency_seconds",
        "engine.token_usage",
        "engine.token_usage",
        "engine.ttft_seconds",
    ]
    ttft = next(p for p in got.points if p.name == "engine.ttft_seconds")
    assert (ttft.host, ttft.model, ttft.source_name) == (
        "app-1",
        "gpt-4o-mini",
        "gen_ai.server.time_to_first_token",
    )
    assert ttft.labels["service.name"] == "chat-api" and not ttft.delta
    assert ttft.buckets is not None and ttft.buckets["count"] == 3
    assert histogram_quantile(0.5, ttft.buckets["le"], ttft.buckets["counts"]) == pytest.approx(
        0.07
    )
    delta = parse_otlp_metrics(otlp_metrics_json(delta=True))
    assert all(p.delta and p.start_ts is not None for p in delta.points)


def test_an_unparsable_otlp_document_is_rejected_whole() -> None:
    got = parse_otlp_metrics('{"resourceMetrics": [{"scopeMetrics": "nope"}]}')
    assert got.points == []
    assert got.rejected[0].line == 1
    assert got.rejected[0].reasons[0].startswith("not an OTLP metrics document")


# -- storing ------------------------------------------------------------------------------------


def test_counters_become_rates_histograms_keep_interval_buckets_and_reloads_are_no_ops(
    engine: Engine,
) -> None:
    settings = _settings()
    server = VllmServer()
    server.serve(
        running=2,
        waiting=0,
        cache=0.5,
        prompt_tokens=100,
        generation_tokens=1000,
        ttfts=[0.03, 0.03],
    )
    first = server.text()
    load_metrics_text(engine, _lines(first), origin="vllm-a", ts=W0, settings=settings)
    server.serve(
        running=4,
        waiting=2,
        cache=0.75,
        prompt_tokens=50,
        generation_tokens=600,
        ttfts=[0.3, 0.3, 0.3, 0.03],
    )
    t1 = W0 + timedelta(seconds=20)
    done = load_metrics_text(
        engine, _lines(server.text()), origin="vllm-a", ts=t1, settings=settings
    )
    assert done.quarantined == 0 and done.new_series == 0 and done.samples == done.series

    gen = _samples(engine, "engine.generation_tokens")
    assert [s["raw"] for s in gen] == [1000.0, 1600.0]
    assert gen[0]["value"] is None  # a first reading has no rate
    assert gen[1]["value"] == pytest.approx(600 / 20)  # tokens per second
    ttft = _samples(engine, "engine.ttft_seconds")
    assert "interval" not in ttft[0]["buckets"]
    interval = ttft[1]["buckets"]["interval"]
    assert interval["count"] == 4 and interval["sum"] == pytest.approx(0.93)
    assert ttft[1]["value"] == pytest.approx(0.93 / 4)  # mean TTFT in the interval
    assert ttft[1]["buckets"]["le"][-1] == "+Inf"  # JSON has no infinity
    assert [s["value"] for s in _samples(engine, "engine.requests_waiting")] == [0.0, 2.0]

    again = load_metrics_text(engine, _lines(first), origin="vllm-a", ts=W0, settings=settings)
    assert (again.samples, again.duplicates) == (0, again.series)
    with engine.connect() as conn:
        n = conn.execute(sa.select(sa.func.count()).select_from(MetricSample.__table__)).scalar()  # type: ignore[attr-defined]
    assert n == 2 * done.series


def test_a_counter_that_restarts_counts_from_zero(sqlite_engine: Engine) -> None:
    s = _settings()
    for ts, value in (
        (W0, 5000),
        (W0 + timedelta(seconds=10), 5100),
        (W0 + timedelta(seconds=20), 40),
    ):
        doc = "# TYPE vllm:prompt_tokens_total counter\n"
        doc += f'vllm:prompt_tokens_total{{model_name="m"}} {value}\n'
        load_metrics_text(sqlite_engine, _lines(doc), origin="x", ts=ts, settings=s)
    rates = [r["value"] for r in _samples(sqlite_engine, "engine.prompt_tokens")]
    assert rates == [None, pytest.approx(10.0), pytest.approx(4.0)]


def test_rejected_lines_are_quarantined_as_metrics_and_long_lines_are_never_parsed(
    engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "dcgm.prom"
    long_line = 'DCGM_FI_DEV_GPU_TEMP{gpu="3",Hostname="' + "h" * 400 + '"} 50'
    path.write_text(dcgm_text("h1", [GPU, {**GPU, "temp": "NaN"}]) + long_line + "\n")
    settings = Settings(ingest={"max_line_bytes": 300})
    done = load_metrics_file(engine, path, settings=settings, at=W0)
    assert done.quarantined == 2 and done.sources == {"dcgm"}
    with engine.connect() as conn:
        rows = conn.execute(sa.select(Quarantine.__table__)).mappings().all()  # type: ignore[attr-defined]
    assert {r["kind"] for r in rows} == {"metrics"}
    assert {r["source"] for r in rows} == {str(path.resolve())}
    reasons = sorted(r["reasons"][0] for r in rows)
    assert reasons[0] == "gpu.temperature: value nan is not a finite number"
    assert reasons[1].startswith("line: longer than 300 bytes")
    assert [s["gpu"] for s in _samples(engine, "gpu.temperature")] == ["0"]


def test_latest_samples_and_retention(engine: Engine) -> None:
    s = _settings()
    old = NOW - timedelta(days=40)
    for ts, temp in ((old, 60), (W0, 70)):
        text = dcgm_text("h1", [{**GPU, "temp": temp}])
        load_metrics_text(engine, _lines(text), origin="d", ts=ts, settings=s)
    latest = latest_samples(engine, ["gpu.temperature"])
    assert [(r["host"], r["gpu"], r["value"]) for r in latest] == [("h1", "0", 70.0)]
    assert (
        prune_samples(engine, timedelta(days=30), dry_run=True) == 6
    )  # one old reading per series
    assert prune_samples(engine, timedelta(days=30)) == 6
    assert [r["value"] for r in _samples(engine, "gpu.temperature")] == [70.0]


# -- NVML ---------------------------------------------------------------------------------------


class _NVMLError(Exception):
    pass


def _fake_nvml(temps: list[int]) -> Any:
    """An object with pynvml's functions over two GPUs (NVML is an external service)."""
    calls = {"init": 0, "shutdown": 0}

    def temp(h: int, sensor: int) -> int:
        assert sensor == 0
        return temps[h]

    def power(h: int) -> int:
        if h == 1:
            raise _NVMLError("Not Supported")  # some boards do not report power
        return 250_500  # milliwatts

    return SimpleNamespace(
        NVMLError=_NVMLError,
        NVML_TEMPERATURE_GPU=0,
        calls=calls,
        nvmlInit=lambda: calls.__setitem__("init", calls["init"] + 1),
        nvmlShutdown=lambda: calls.__setitem__("shutdown", calls["shutdown"] + 1),
        nvmlDeviceGetCount=lambda: 2,
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetUUID=lambda h: f"GPU-0000000{h}-aaaa-bbbb-cccc-dddddddddddd",
        nvmlDeviceGetName=lambda h: H100,
        nvmlDeviceGetUtilizationRates=lambda h: SimpleNamespace(gpu=90 + h, memory=40),
        nvmlDeviceGetMemoryInfo=lambda h: SimpleNamespace(
            used=60 * 2**30, free=20 * 2**30, total=80 * 2**30
        ),
        nvmlDeviceGetTemperature=temp,
        nvmlDeviceGetPowerUsage=power,
    )


def test_nvml_samples_go_into_the_gpu_series(sqlite_engine: Engine) -> None:
    nvml = _fake_nvml([70, 90])
    times = iter([W0, W0 + timedelta(seconds=30)])
    waits: list[float] = []
    done = collect_gpu(
        sqlite_engine,
        host="trainer-7",
        count=2,
        interval_s=30,
        nvml=nvml,
        sleep=waits.append,
        clock=lambda: next(times),
    )
    assert waits == [30]
    assert nvml.calls == {"init": 1, "shutdown": 1}
    # 2 GPUs x (util, used, free, temp, used share) + power of GPU 0 only.
    assert done.series == 11 and done.samples == 22
    temps = _samples(sqlite_engine, "gpu.temperature")
    assert [(r["host"], r["gpu"], r["value"]) for r in temps[:2]] == [
        ("trainer-7", "0", 70.0),
        ("trainer-7", "1", 90.0),
    ]
    assert [r["value"] for r in _samples(sqlite_engine, "gpu.power_watts")] == [250.5, 250.5]
    assert _samples(sqlite_engine, "gpu.memory_used_share")[0]["value"] == pytest.approx(0.75)


def test_without_an_nvidia_driver_nvml_is_unavailable_for_real(sqlite_engine: Engine) -> None:
    with pytest.raises(NvmlUnavailableError, match="NVML is not available here"):
        collect_gpu(sqlite_engine, host="h", count=1, interval_s=1)


# -- scraping over HTTP -------------------------------------------------------------------------


@pytest.fixture
def exporters() -> Iterator[dict[str, Any]]:
    """A local HTTP server answering /dcgm and /vllm with exposition text, like the real ones."""
    docs: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = docs.get(self.path)
            if body is None:
                self.send_response(404)
                self.end_headers()
                return
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {"docs": docs, "base": f"http://127.0.0.1:{server.server_port}"}
    server.shutdown()
    server.server_close()


def test_scraping_a_dcgm_and_a_vllm_endpoint_over_http(
    engine: Engine, exporters: dict[str, Any]
) -> None:
    import httpx

    exporters["docs"]["/dcgm"] = dcgm_text("gpu-node-1", [GPU])
    vllm = VllmServer()
    vllm.serve(
        running=1, waiting=0, cache=0.1, prompt_tokens=10, generation_tokens=20, ttfts=[0.02]
    )
    exporters["docs"]["/vllm"] = vllm.text()
    s = _settings()
    base = exporters["base"]
    dcgm = scrape_target(engine, ScrapeTarget(name="dcgm", url=f"{base}/dcgm"), s)
    engine_load = scrape_target(
        engine, ScrapeTarget(name="vllm", url=f"{base}/vllm", source="vllm"), s
    )
    assert dcgm.sources == {"dcgm"} and dcgm.samples == 6
    assert engine_load.sources == {"vllm"} and engine_load.quarantined == 0
    ttft = _samples(engine, "engine.ttft_seconds")
    assert (
        ttft[0]["host"] == "127.0.0.1"
    )  # no host label: the target's host, as Prometheus' instance
    with pytest.raises(Exception, match="HTTP 404"):
        scrape_target(engine, ScrapeTarget(name="gone", url=f"{base}/nope"), s)
    with pytest.raises(httpx.TransportError):
        scrape_target(engine, ScrapeTarget(name="down", url="http://127.0.0.1:9/metrics"), s)


# -- alert rules --------------------------------------------------------------------------------


def _rules(*rules: Rule) -> RulesFile:
    rf = RulesFile(rules=list(rules))
    assert check_rules_data(rf, known_metrics=[]) == []
    return rf


def _alerts(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        q = sa.select(Alert.__table__).order_by(Alert.__table__.c.id)  # type: ignore[attr-defined]
        return [dict(r) for r in conn.execute(q).mappings()]


def test_a_gpu_temperature_rule_fires_per_host_end_to_end(engine: Engine) -> None:
    from evalwatch.alerting.engine import evaluate_rules

    s = _settings()
    for i, (hot, cool) in enumerate(((80, 60), (87, 61), (83, 62))):
        ts = W0 + timedelta(seconds=60 * i + 5)
        load_metrics_text(
            engine,
            _lines(dcgm_text("node-hot", [{**GPU, "temp": hot}])),
            origin="a",
            ts=ts,
            settings=s,
        )
        load_metrics_text(
            engine,
            _lines(dcgm_text("node-ok", [{**GPU, "temp": cool}])),
            origin="b",
            ts=ts,
            settings=s,
        )
    rule = Rule(
        name="gpu-hot",
        selector="gpu.temperature",
        aggregation="max",
        comparison=">",
        threshold=85,
        window="5m",
        scope={"host": "each"},
        severity="critical",
    )
    events = evaluate_rules(
        engine,
        _rules(rule),
        now=W0 + timedelta(minutes=5, seconds=1),
        kinds={"metrics"},
        deliver=False,
    )
    assert [(e.action, e.scope_key) for e in events] == [("open", "host=node-hot")]
    alerts = _alerts(engine)
    assert len(alerts) == 1 and alerts[0]["rule"] == "gpu-hot" and alerts[0]["status"] == "open"
    ctx = alerts[0]["context"]
    assert ctx["value"] == 87.0
    worst = ctx["offending"][0]
    assert (worst["host"], worst["gpu"], worst["value"], worst["series"]) == (
        "node-hot",
        "0",
        87.0,
        "gpu.temperature",
    )
    # Another family's evaluation leaves metric rules alone.
    assert evaluate_rules(engine, _rules(rule), kinds={"traffic"}, deliver=False) == []


def test_ttft_p95_from_buckets_and_token_rate_rules_fire(engine: Engine) -> None:
    from evalwatch.alerting.engine import evaluate_rules

    s = _settings()
    server = VllmServer("qwen-7b")
    server.serve(
        running=1,
        waiting=0,
        cache=0.2,
        prompt_tokens=0,
        generation_tokens=10_000,
        ttfts=[0.02] * 50,
    )
    load_metrics_text(
        engine, _lines(server.text()), origin="v", ts=W0 - timedelta(seconds=30), settings=s
    )
    # In the window: 100 requests, 10 of them slow (2-2.5 s), and 150 tokens/s.
    server.serve(
        running=8,
        waiting=5,
        cache=0.9,
        prompt_tokens=0,
        generation_tokens=4_500,
        ttfts=[0.03] * 90 + [2.2] * 10,
    )
    load_metrics_text(
        engine, _lines(server.text()), origin="v", ts=W0 + timedelta(seconds=0), settings=s
    )
    rules = _rules(
        Rule(
            name="ttft-slow",
            selector="engine.ttft_p95",
            comparison=">",
            threshold=1.0,
            window="5m",
            scope={"model": "each"},
        ),
        Rule(
            name="ttft-p50-ok",
            selector="engine.ttft_seconds",
            aggregation="p50",
            comparison=">",
            threshold=1.0,
            window="5m",
        ),
        Rule(
            name="tokens-low",
            selector="engine.generation_tokens",
            aggregation="min",
            comparison="<",
            threshold=200,
            window="5m",
            scope={"model": "qwen-7b"},
        ),
    )
    events = evaluate_rules(
        engine, rules, now=W0 + timedelta(minutes=5, seconds=1), kinds={"metrics"}, deliver=False
    )
    assert sorted(e.rule for e in events) == ["tokens-low", "ttft-slow"]  # p50 is fast
    by = {a["rule"]: a for a in _alerts(engine)}
    # The 95th of 100 requests lies among the 10 slow ones, in the (1.0, 2.5] bucket.
    assert 1.0 < by["ttft-slow"]["context"]["value"] <= 2.5
    assert by["ttft-slow"]["scope_key"] == "model=qwen-7b"
    assert by["tokens-low"]["context"]["value"] == pytest.approx(4_500 / 30)


def test_metric_rules_are_validated() -> None:
    bad = RulesFile(
        rules=[
            Rule(name="a", selector="gpu.temprature", comparison=">", threshold=1, window="5m"),
            Rule(name="b", selector="gpu.temperature", comparison=">", threshold=1, window="run"),
            Rule(
                name="c", selector="engine.ttft_p95", aggregation="max", comparison=">", threshold=1
            ),
            Rule(
                name="d",
                selector="gpu.temperature",
                comparison=">",
                threshold=1,
                scope={"app": "x"},
            ),
        ]
    )
    errors = check_rules_data(bad, known_metrics=[])
    assert len(errors) == 4
    assert errors[0].startswith("rule 'a': selector: unknown metric series 'gpu.temprature'")
    assert "time windows only" in errors[1]
    assert (
        "already a percentile" in errors[2]
        and "'engine.ttft_seconds' with aggregation p95" in errors[2]
    )
    assert (
        "'app' is not a dimension of selector 'gpu.temperature'; use host, gpu, model" in errors[3]
    )


def test_fragmentation_is_one_definition_for_engines_and_pytorch() -> None:
    from evalwatch.core.telemetry import fragmentation
    from evalwatch.evaluators.profiling import Profiler

    assert fragmentation(3 * 2**30, 4 * 2**30) == 0.25
    assert fragmentation(0, 0) is None  # nothing reserved: no value, not 0
    prof = Profiler("embedding", "1", device="cuda:0")
    # The keys and shape of torch.cuda.memory_stats() at two segment ends: the worst is kept.
    prof._note_fragmentation(
        {"allocated_bytes.all.current": 3 * 2**30, "reserved_bytes.all.current": 4 * 2**30}
    )
    prof._note_fragmentation(
        {"allocated_bytes.all.current": 2**30, "reserved_bytes.all.current": 2**30}
    )
    details = prof.profile(run_id=1).details
    assert details is not None and details["memory_fragmentation"] == 0.25
    cpu = Profiler("heuristics", "1", device="cpu").profile(run_id=1).details or {}
    assert "memory_fragmentation" not in cpu
