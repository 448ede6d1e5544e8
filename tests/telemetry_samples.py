"""Metric documents in the exact formats the real sources emit, for the telemetry tests.

* DCGM exporter: Prometheus text as ``dcgm-exporter`` writes it (HELP/TYPE lines, the
  ``gpu``, ``UUID``, ``pci_bus_id``, ``device``, ``modelName``, ``Hostname`` and
  ``DCGM_FI_DRIVER_VERSION`` labels, integer readings, FB memory in MiB).
* vLLM: ``/metrics`` as vLLM produces it, i.e. through ``prometheus_client`` with vLLM's
  metric names, help texts, bucket bounds and ``model_name`` label (so ``_total`` counters,
  ``_created`` gauges and ``_bucket``/``_sum``/``_count`` histograms are the real thing).
* OTLP JSON: made by the OpenTelemetry SDK (a ``MeterProvider`` with an
  ``InMemoryMetricReader``), encoded by the OTLP exporter's own encoder and written with
  ``json_format.MessageToJson``, as the collector's file exporter would.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

H100 = "NVIDIA H100 80GB HBM3"
UUIDS = ("GPU-5fd4b6a4-8d7c-0c6e-8b1a-6e3c0f1d2a11", "GPU-0b2e7c9d-1f3a-4b5c-9d8e-7f6a5b4c3d22")
_DCGM_FIELDS = (
    ("DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz).", "sm_clock"),
    ("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", "temp"),
    ("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", "power"),
    ("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", "util"),
    ("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).", "fb_free"),
    ("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", "fb_used"),
)


def dcgm_text(
    host: str, gpus: Sequence[Mapping[str, float | str]], timestamp_ms: int | None = None
) -> str:
    """A dcgm-exporter scrape of ``host`` with one reading set per GPU.

    Each GPU mapping has ``temp``, ``power``, ``util``, ``fb_free``, ``fb_used`` (and may
    have ``sm_clock``); a value may be a string such as ``"NaN"``. With ``timestamp_ms``
    every sample carries that exposition timestamp (as a federating Prometheus serves it).
    """
    lines: list[str] = []
    for field, help_text, key in _DCGM_FIELDS:
        lines += [f"# HELP {field} {help_text}", f"# TYPE {field} gauge"]
        for i, gpu in enumerate(gpus):
            value = gpu.get(key, 1980 if key == "sm_clock" else 0)
            labels = (
                f'gpu="{i}",UUID="{UUIDS[i % 2]}",pci_bus_id="00000000:{0x18 + i:02X}:00.0",'
                f'device="nvidia{i}",modelName="{H100}",Hostname="{host}",'
                'DCGM_FI_DRIVER_VERSION="550.54.15"'
            )
            shown = (
                value
                if isinstance(value, str)
                else (f"{value:.6f}" if key == "power" else f"{int(value)}")
            )
            stamp = f" {timestamp_ms}" if timestamp_ms is not None else ""
            lines.append(f"{field}{{{labels}}} {shown}{stamp}")
    return "\n".join(lines) + "\n"


# vLLM's own bucket bounds (vllm/engine/metrics.py).
TTFT_BUCKETS = [
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
]
TPOT_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5]
E2E_BUCKETS = [1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0]


class VllmServer:
    """The metrics of one vLLM engine, kept across scrapes like the real server's registry."""

    def __init__(self, model: str = "meta-llama/Llama-3.1-8B-Instruct") -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.model = model
        self.registry = r = CollectorRegistry()
        lab = ["model_name"]
        self.running = Gauge(
            "vllm:num_requests_running",
            "Number of requests currently running on GPU.",
            lab,
            registry=r,
        )
        self.waiting = Gauge(
            "vllm:num_requests_waiting",
            "Number of requests waiting to be processed.",
            lab,
            registry=r,
        )
        self.cache = Gauge(
            "vllm:gpu_cache_usage_perc",
            "GPU KV-cache usage. 1 means 100 percent usage.",
            lab,
            registry=r,
        )
        self.info = Gauge(
            "vllm:cache_config_info",
            "Information of the LLMEngine CacheConfig",
            ["block_size"],
            registry=r,
        )
        self.prompt = Counter(
            "vllm:prompt_tokens", "Number of prefill tokens processed.", lab, registry=r
        )
        self.generation = Counter(
            "vllm:generation_tokens", "Number of generation tokens processed.", lab, registry=r
        )
        self.ttft = Histogram(
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            lab,
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.tpot = Histogram(
            "vllm:time_per_output_token_seconds",
            "Histogram of time per output token in seconds.",
            lab,
            buckets=TPOT_BUCKETS,
            registry=r,
        )
        self.e2e = Histogram(
            "vllm:e2e_request_latency_seconds",
            "Histogram of end to end request latency in seconds.",
            lab,
            buckets=E2E_BUCKETS,
            registry=r,
        )
        self.info.labels("16").set(1)

    def serve(
        self,
        *,
        running: int,
        waiting: int,
        cache: float,
        prompt_tokens: int,
        generation_tokens: int,
        ttfts: Sequence[float] = (),
        tpots: Sequence[float] = (),
        e2es: Sequence[float] = (),
    ) -> None:
        """Record some work, as the engine would between two scrapes."""
        m = self.model
        self.running.labels(m).set(running)
        self.waiting.labels(m).set(waiting)
        self.cache.labels(m).set(cache)
        self.prompt.labels(m).inc(prompt_tokens)
        self.generation.labels(m).inc(generation_tokens)
        for v in ttfts:
            self.ttft.labels(m).observe(v)
        for v in tpots:
            self.tpot.labels(m).observe(v)
        for v in e2es:
            self.e2e.labels(m).observe(v)

    def text(self) -> str:
        """What ``GET /metrics`` answers now."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry).decode()


def otlp_metrics_json(*, delta: bool = False, ttfts: Sequence[float] = (0.05, 0.07, 0.3)) -> str:
    """OTLP JSON of OTel GenAI client and server metrics, from the real SDK and encoder."""
    from google.protobuf import json_format
    from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
    from opentelemetry.sdk.metrics import Histogram, MeterProvider
    from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
    from opentelemetry.sdk.resources import Resource

    temporality: dict[type, AggregationTemporality] | None = (
        {Histogram: AggregationTemporality.DELTA} if delta else None
    )
    reader = InMemoryMetricReader(preferred_temporality=temporality)
    provider = MeterProvider(
        metric_readers=[reader],
        resource=Resource.create({"service.name": "chat-api", "host.name": "app-1"}),
    )
    meter = provider.get_meter("opentelemetry.instrumentation.openai_v2")
    duration = meter.create_histogram(
        "gen_ai.client.operation.duration",
        unit="s",
        description="GenAI operation duration",
        explicit_bucket_boundaries_advisory=[
            0.01,
            0.02,
            0.04,
            0.08,
            0.16,
            0.32,
            0.64,
            1.28,
            2.56,
            5.12,
        ],
    )
    tokens = meter.create_histogram(
        "gen_ai.client.token.usage",
        unit="{token}",
        description="Measures number of input and output tokens used",
        explicit_bucket_boundaries_advisory=[1, 4, 16, 64, 256, 1024, 4096, 16384],
    )
    ttft = meter.create_histogram(
        "gen_ai.server.time_to_first_token",
        unit="s",
        description="Time to generate first token for successful responses",
        explicit_bucket_boundaries_advisory=[
            0.001,
            0.005,
            0.01,
            0.02,
            0.04,
            0.06,
            0.08,
            0.1,
            0.25,
            0.5,
        ],
    )
    attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
    }
    for v in (0.3, 0.5, 1.2):
        duration.record(v, attrs)
    tokens.record(120, {**attrs, "gen_ai.token.type": "input"})
    tokens.record(48, {**attrs, "gen_ai.token.type": "output"})
    for v in ttfts:
        ttft.record(v, attrs)
    data = reader.get_metrics_data()
    assert data is not None
    return json_format.MessageToJson(encode_metrics(data))
