"""The ``perf.*`` alert selectors: per-interaction performance figures read from traffic.

Each name is what one interaction contributes; a rule's aggregation makes the window's figure
(``perf.latency_ms`` with ``p95`` is the window's p95 latency, ``perf.error_rate`` with
``mean`` its error rate). How each is read from the store: ``evalwatch.storage.performance``.
Kept here, in the bottom layer, because both the rules check (``checks``) and the store
(``storage``) need the same list.
"""

from __future__ import annotations

__all__ = ["PERF_METRICS", "PERF_RENAMED"]

# name after ``perf.`` -> what one interaction contributes.
PERF_METRICS: dict[str, str] = {
    "latency_ms": "the interaction's latency in ms (aggregate with p50, p95, p99, mean, ...)",
    "tokens_per_s": "output tokens per second of latency (output_tokens / latency_ms * 1000)",
    "ttft_ms": "time to first token in ms, from the traffic row's metadata.ttft_ms",
    "error_rate": "1 when the interaction failed (metadata.error or metadata.otel.error), else 0",
    "cost": "the interaction's cost in USD (sum: the window's cost, mean: per interaction)",
}

# Names a user may reach for, and what to write instead (a percentile is an aggregation).
PERF_RENAMED: dict[str, str] = {
    "latency_p50": "selector perf.latency_ms with aggregation p50",
    "latency_p95": "selector perf.latency_ms with aggregation p95",
    "latency_p99": "selector perf.latency_ms with aggregation p99",
    "latency": "selector perf.latency_ms",
    "ttft": "selector perf.ttft_ms",
    "errors": "selector perf.error_rate",
}
