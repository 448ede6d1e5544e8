"""Serving-fleet metric names: the canonical series and where each comes from (issue #16).

Every layer reads telemetry by these names; the ingesters map what a source emits
(``DCGM_FI_DEV_GPU_TEMP``, ``vllm:time_to_first_token_seconds``,
``gen_ai.server.time_to_first_token``) onto them through :data:`SOURCE_METRICS`, so an alert
rule on ``gpu.temperature`` holds whichever exporter the fleet runs. Dependency-free
(pydantic only), like :mod:`evalwatch.core.metrics`.

Examples:
    >>> TELEMETRY_METRICS["gpu.temperature"].unit
    'celsius'
    >>> source_metric("dcgm", "DCGM_FI_DEV_FB_USED").scale
    1048576.0
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = [
    "ENGINE_E2E_LATENCY",
    "ENGINE_GENERATION_TOKENS",
    "ENGINE_KV_CACHE_USAGE",
    "ENGINE_MODEL_LOAD",
    "ENGINE_PROMPT_TOKENS",
    "ENGINE_REQUESTS_RUNNING",
    "ENGINE_REQUESTS_WAITING",
    "ENGINE_TOKEN_USAGE",
    "ENGINE_TPOT",
    "ENGINE_TTFT",
    "GPU_MEMORY_FREE",
    "GPU_MEMORY_USED",
    "GPU_MEMORY_USED_SHARE",
    "GPU_POWER",
    "GPU_TEMPERATURE",
    "GPU_UTILIZATION",
    "MEMORY_FRAGMENTATION",
    "PERCENTILE_SUFFIXES",
    "SOURCE_METRICS",
    "TELEMETRY_METRICS",
    "MetricPoint",
    "MetricSelector",
    "SeriesKind",
    "SourceMetric",
    "TelemetryMetric",
    "TelemetrySource",
    "fragmentation",
    "reads_buckets",
    "resolve_selector",
    "source_metric",
]

GPU_UTILIZATION = "gpu.utilization"
GPU_MEMORY_USED = "gpu.memory_used_bytes"
GPU_MEMORY_FREE = "gpu.memory_free_bytes"
GPU_MEMORY_USED_SHARE = "gpu.memory_used_share"
GPU_TEMPERATURE = "gpu.temperature"
GPU_POWER = "gpu.power_watts"
ENGINE_KV_CACHE_USAGE = "engine.kv_cache_usage"
ENGINE_REQUESTS_RUNNING = "engine.requests_running"
ENGINE_REQUESTS_WAITING = "engine.requests_waiting"
ENGINE_TTFT = "engine.ttft_seconds"
ENGINE_TPOT = "engine.tpot_seconds"
ENGINE_E2E_LATENCY = "engine.e2e_latency_seconds"
ENGINE_GENERATION_TOKENS = "engine.generation_tokens"
ENGINE_PROMPT_TOKENS = "engine.prompt_tokens"
ENGINE_TOKEN_USAGE = "engine.token_usage"
ENGINE_MODEL_LOAD = "engine.model_load_seconds"
MEMORY_FRAGMENTATION = "memory.fragmentation"


class SeriesKind(StrEnum):
    """How a series' samples are stored and read."""

    gauge = "gauge"  # the reading itself
    counter = "counter"  # stored as a per-second rate since the previous sample
    histogram = "histogram"  # cumulative buckets; read as a percentile or a mean


class TelemetrySource(StrEnum):
    """Where a series came from (``MetricSeries.source``)."""

    dcgm = "dcgm"  # NVIDIA DCGM exporter, Prometheus text
    vllm = "vllm"  # vLLM's /metrics, Prometheus text
    otlp = "otlp"  # OpenTelemetry metrics, OTLP JSON
    nvml = "nvml"  # ``evalwatch collect gpu``
    prometheus = "prometheus"  # any other Prometheus text endpoint


class TelemetryMetric(BaseModel):
    """What one canonical series means.

    Attributes:
        name: Canonical name, ``family.metric``.
        kind: Gauge, counter or histogram.
        unit: Unit of the stored value (a counter's unit is per second).
        description: One line for the README and ``check_rules_data`` messages.
        lower: Smallest valid value (readings below it are quarantined), if bounded.
        upper: Largest valid value, if bounded.
    """

    model_config = ConfigDict(frozen=True)

    name: str
    kind: SeriesKind
    unit: str
    description: str
    lower: float | None = 0.0
    upper: float | None = None


class SourceMetric(BaseModel):
    """How one source-emitted metric maps onto a canonical series.

    Attributes:
        source: The emitting source.
        source_name: The metric family as emitted (counters without ``_total``).
        name: The canonical series name.
        scale: Multiplier from the source's unit to the canonical one (MiB -> bytes).
    """

    model_config = ConfigDict(frozen=True)

    source: TelemetrySource
    source_name: str
    name: str
    scale: float = 1.0


def _m(
    name: str, kind: SeriesKind, unit: str, description: str, upper: float | None = None
) -> tuple[str, TelemetryMetric]:
    return name, TelemetryMetric(
        name=name, kind=kind, unit=unit, description=description, upper=upper
    )


_G, _C, _H = SeriesKind.gauge, SeriesKind.counter, SeriesKind.histogram

#: Every canonical series, by name.
TELEMETRY_METRICS: dict[str, TelemetryMetric] = dict(
    [
        _m(GPU_UTILIZATION, _G, "percent", "GPU busy share over the sample period", 100.0),
        _m(GPU_MEMORY_USED, _G, "bytes", "framebuffer memory in use"),
        _m(GPU_MEMORY_FREE, _G, "bytes", "framebuffer memory free"),
        _m(GPU_MEMORY_USED_SHARE, _G, "ratio", "used / (used + free), derived", 1.0),
        _m(GPU_TEMPERATURE, _G, "celsius", "GPU core temperature"),
        _m(GPU_POWER, _G, "watts", "board power draw"),
        _m(ENGINE_KV_CACHE_USAGE, _G, "ratio", "share of the KV-cache pool in use", 1.0),
        _m(ENGINE_REQUESTS_RUNNING, _G, "requests", "requests being decoded"),
        _m(ENGINE_REQUESTS_WAITING, _G, "requests", "requests queued"),
        _m(ENGINE_TTFT, _H, "seconds", "time to first token"),
        _m(ENGINE_TPOT, _H, "seconds", "time per output token after the first"),
        _m(ENGINE_E2E_LATENCY, _H, "seconds", "request latency end to end"),
        _m(ENGINE_GENERATION_TOKENS, _C, "tokens/s", "generated tokens per second"),
        _m(ENGINE_PROMPT_TOKENS, _C, "tokens/s", "prompt tokens processed per second"),
        _m(ENGINE_TOKEN_USAGE, _H, "tokens", "tokens per request (OTel GenAI)"),
        _m(ENGINE_MODEL_LOAD, _G, "seconds", "time the engine took to load the model"),
        _m(MEMORY_FRAGMENTATION, _G, "ratio", "1 - in use / reserved (README)", 1.0),
    ]
)

_MIB = float(2**20)
_D, _V, _O = TelemetrySource.dcgm, TelemetrySource.vllm, TelemetrySource.otlp

#: Source metric -> canonical series. A source metric not listed here is not loaded.
SOURCE_METRICS: tuple[SourceMetric, ...] = (
    SourceMetric(source=_D, source_name="DCGM_FI_DEV_GPU_UTIL", name=GPU_UTILIZATION),
    SourceMetric(source=_D, source_name="DCGM_FI_DEV_FB_USED", name=GPU_MEMORY_USED, scale=_MIB),
    SourceMetric(source=_D, source_name="DCGM_FI_DEV_FB_FREE", name=GPU_MEMORY_FREE, scale=_MIB),
    SourceMetric(source=_D, source_name="DCGM_FI_DEV_GPU_TEMP", name=GPU_TEMPERATURE),
    SourceMetric(source=_D, source_name="DCGM_FI_DEV_POWER_USAGE", name=GPU_POWER),
    SourceMetric(source=_V, source_name="vllm:gpu_cache_usage_perc", name=ENGINE_KV_CACHE_USAGE),
    # vLLM V1 renamed the KV-cache gauge; both spellings are in the wild.
    SourceMetric(source=_V, source_name="vllm:kv_cache_usage_perc", name=ENGINE_KV_CACHE_USAGE),
    SourceMetric(source=_V, source_name="vllm:num_requests_running", name=ENGINE_REQUESTS_RUNNING),
    SourceMetric(source=_V, source_name="vllm:num_requests_waiting", name=ENGINE_REQUESTS_WAITING),
    SourceMetric(source=_V, source_name="vllm:time_to_first_token_seconds", name=ENGINE_TTFT),
    SourceMetric(source=_V, source_name="vllm:time_per_output_token_seconds", name=ENGINE_TPOT),
    SourceMetric(source=_V, source_name="vllm:inter_token_latency_seconds", name=ENGINE_TPOT),
    SourceMetric(
        source=_V, source_name="vllm:e2e_request_latency_seconds", name=ENGINE_E2E_LATENCY
    ),
    SourceMetric(source=_V, source_name="vllm:generation_tokens", name=ENGINE_GENERATION_TOKENS),
    SourceMetric(source=_V, source_name="vllm:prompt_tokens", name=ENGINE_PROMPT_TOKENS),
    SourceMetric(
        source=_O, source_name="gen_ai.client.operation.duration", name=ENGINE_E2E_LATENCY
    ),
    SourceMetric(source=_O, source_name="gen_ai.server.request.duration", name=ENGINE_E2E_LATENCY),
    SourceMetric(source=_O, source_name="gen_ai.client.token.usage", name=ENGINE_TOKEN_USAGE),
    SourceMetric(source=_O, source_name="gen_ai.server.time_to_first_token", name=ENGINE_TTFT),
    SourceMetric(source=_O, source_name="gen_ai.server.time_per_output_token", name=ENGINE_TPOT),
)


@dataclass(frozen=True)
class MetricPoint:
    """One reading of one series, as an ingester hands it to the store.

    Attributes:
        name: Canonical series name.
        source: Where it came from (``TelemetrySource``).
        source_name: The metric as emitted.
        kind: Gauge, counter or histogram.
        unit: Unit of the canonical series.
        ts: When it was read (aware UTC).
        value: Gauge: the reading. Counter: the cumulative reading (or, with ``delta``, the
            count since ``start_ts``). Histogram: None.
        host: Host the series belongs to.
        gpu: GPU index on that host.
        model: Served LLM model name.
        labels: Every label as emitted (the GPU product name from DCGM stays here).
        buckets: Histogram: ``{"le": [...], "counts": [...cumulative], "sum", "count"}`` with
            ``le`` as floats (``inf`` last).
        delta: OTLP delta temporality: the reading covers ``(start_ts, ts]`` only.
        start_ts: Start of a delta reading's interval.
        line: Where it was read (line of a text document), for messages.
    """

    name: str
    source: str
    source_name: str
    kind: SeriesKind
    unit: str
    ts: datetime
    value: float | None
    host: str | None = None
    gpu: str | None = None
    model: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    buckets: dict[str, Any] | None = None
    delta: bool = False
    start_ts: datetime | None = None
    line: int = 0


_BY_SOURCE: dict[tuple[str, str], SourceMetric] = {
    (m.source.value, m.source_name): m for m in SOURCE_METRICS
}

#: Common percentile suffixes of a histogram selector (``engine.ttft_p95`` reads the 0.95
#: quantile of ``engine.ttft_seconds``); any ``_pNN`` (1..99) is accepted.
PERCENTILE_SUFFIXES: dict[str, float] = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}
_PERCENTILE = re.compile(r"^(?P<base>.+)_p(?P<q>\d{1,2})$")


@dataclass(frozen=True)
class MetricSelector:
    """What an alert-rule selector on a metric series reads.

    Attributes:
        name: The canonical series.
        source_name: Only series emitted under this name (an OTel ``gen_ai.*`` selector).
        quantile: Read this percentile of the window's histogram buckets.
    """

    name: str
    source_name: str | None = None
    quantile: float | None = None


def resolve_selector(text: str) -> MetricSelector | None:
    """The series an alert selector names, or None when it names none.

    A selector is a canonical name (``gpu.temperature``), an OTel GenAI metric name
    (``gen_ai.server.time_to_first_token``: the canonical series, only as OTel sent it), or a
    histogram with a percentile suffix (``engine.ttft_p95``: the 0.95 quantile of
    ``engine.ttft_seconds``' buckets in the window).

    Examples:
        >>> resolve_selector("engine.ttft_p95")
        MetricSelector(name='engine.ttft_seconds', source_name=None, quantile=0.95)
        >>> resolve_selector("gen_ai.client.token.usage").name
        'engine.token_usage'
        >>> resolve_selector("gpu.temprature") is None
        True
    """
    if text in TELEMETRY_METRICS:
        return MetricSelector(text)
    mapped = source_metric(TelemetrySource.otlp, text)
    if mapped is not None:
        return MetricSelector(mapped.name, source_name=text)
    m = _PERCENTILE.match(text)
    if m and 1 <= int(m.group("q")) <= 99:
        for base in (m.group("base"), m.group("base") + "_seconds"):
            spec = TELEMETRY_METRICS.get(base)
            if spec is not None and spec.kind == SeriesKind.histogram:
                return MetricSelector(base, quantile=int(m.group("q")) / 100.0)
    return None


def source_metric(source: str, source_name: str) -> SourceMetric | None:
    """The canonical mapping of one emitted metric, or ``None`` when it is not loaded.

    Args:
        source: ``dcgm``, ``vllm``, ``otlp``, ...
        source_name: The metric family as emitted (a counter without ``_total``).

    Returns:
        The mapping, or ``None``.

    Examples:
        >>> source_metric("vllm", "vllm:time_to_first_token_seconds").name
        'engine.ttft_seconds'
        >>> source_metric("vllm", "vllm:cache_config_info") is None
        True
    """
    return _BY_SOURCE.get((source, source_name))


def reads_buckets(selector: str, aggregation_kind: str, arg: float | None) -> float | None:
    """The quantile an alert rule reads from histogram buckets, or None (it reads values).

    A percentile selector (``engine.ttft_p95``) always does; a histogram series with a
    percentile aggregation (``engine.ttft_seconds`` with ``p95``) does too, since a
    percentile of per-interval means is not a percentile of requests.

    Args:
        selector: The rule's selector.
        aggregation_kind: Its parsed aggregation kind (``percentile``, ``mean``, ...).
        arg: The aggregation's argument (a percentile's quantile).

    Examples:
        >>> reads_buckets("engine.ttft_p99", "mean", None)
        0.99
        >>> reads_buckets("engine.ttft_seconds", "percentile", 0.9)
        0.9
        >>> reads_buckets("gpu.temperature", "percentile", 0.9) is None
        True
    """
    sel = resolve_selector(selector)
    if sel is None:
        return None
    if sel.quantile is not None:
        return sel.quantile
    if (
        aggregation_kind == "percentile"
        and TELEMETRY_METRICS[sel.name].kind == SeriesKind.histogram
    ):
        return arg
    return None


def fragmentation(in_use: float, reserved: float) -> float | None:
    """Memory fragmentation: the share of reserved memory holding nothing, 1 - in_use / reserved.

    The one definition for every source (README, "Memory fragmentation"): for a PyTorch
    process, ``allocated_bytes.all.current`` over ``reserved_bytes.all.current`` of
    ``torch.cuda.memory_stats`` (what the caching allocator holds but has not handed out);
    for a serving engine, the KV-cache blocks in use over the blocks it pre-allocated (vLLM's
    ``gpu_cache_usage_perc`` is that ratio).

    Args:
        in_use: Memory (or blocks) in use.
        reserved: Memory (or blocks) reserved.

    Returns:
        A share in [0, 1], or None when nothing is reserved (no value rather than 0).

    Examples:
        >>> fragmentation(3 * 2**30, 4 * 2**30)
        0.25
        >>> fragmentation(0, 0) is None
        True
    """
    if reserved <= 0:
        return None
    return min(1.0, max(0.0, 1.0 - in_use / reserved))
