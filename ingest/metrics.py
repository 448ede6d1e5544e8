"""Serving-fleet metrics to canonical series points: Prometheus text and OTLP JSON (issue #16).

Two document formats carry every source evalwatch reads:

* **Prometheus text exposition** (the NVIDIA DCGM exporter, vLLM's ``/metrics``, any other
  exporter), parsed by ``prometheus_client``'s own parser. A document is parsed one metric
  family at a time; a family that does not parse is parsed again line by line, so one bad
  line is quarantined with its reason and the rest of the document still loads.
* **OTLP JSON metrics** (``ExportMetricsServiceRequest``, e.g. OpenTelemetry GenAI
  ``gen_ai.client.operation.duration``), parsed with the OTLP protobuf definitions
  (``google.protobuf.json_format``). One document per file, or one per line as the
  collector's file exporter writes them.

Emitted names map onto canonical series through
:data:`evalwatch.core.telemetry.SOURCE_METRICS`; a metric not listed there is counted as
skipped, never stored under a made-up name. A reading that cannot be right (NaN, a negative
counter, a share above 1, histogram buckets that decrease, a timestamp from before 2000 or
the future) is rejected with its reason. Two series are derived: ``gpu.memory_used_share``
(used / (used + free)) and ``memory.fragmentation`` (``1 - kv_cache_usage`` for an engine:
the share of its pre-allocated KV-cache pool that holds nothing).
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from evalwatch.core.telemetry import (
    ENGINE_KV_CACHE_USAGE,
    GPU_MEMORY_FREE,
    GPU_MEMORY_USED,
    GPU_MEMORY_USED_SHARE,
    MEMORY_FRAGMENTATION,
    TELEMETRY_METRICS,
    MetricPoint,
    SeriesKind,
    fragmentation,
    source_metric,
)

__all__ = [
    "SOURCES",
    "ParsedMetrics",
    "Rejected",
    "derive_points",
    "detect_source",
    "parse_metrics",
    "parse_otlp_metrics",
    "parse_prometheus",
]

#: What ``--source`` accepts.
SOURCES = ("auto", "dcgm", "vllm", "otlp", "prometheus")
SourceName = Literal["auto", "dcgm", "vllm", "otlp", "prometheus"]

_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_HOST_LABELS = ("Hostname", "hostname", "host", "host.name", "instance")
_GPU_LABELS = ("gpu", "gpu_index")
_MODEL_LABELS = ("model_name", "model", "gen_ai.request.model", "gen_ai.response.model")
_UNIT_SCALE = {("ms", "seconds"): 1e-3, ("us", "seconds"): 1e-6, ("ns", "seconds"): 1e-9}
_FAMILY_LINE = re.compile(r"^#\s*(HELP|TYPE)\s+(\S+)")
_COUNTER_SUFFIX = "_total"
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


@dataclass(frozen=True)
class Rejected:
    """A line or document that was not loaded, and why.

    Attributes:
        line: 1-based line (of the document; 1 for a whole OTLP document).
        raw: Its text (the caller keeps only the start in quarantine).
        reasons: Every reason.
    """

    line: int
    raw: str
    reasons: list[str]


@dataclass
class ParsedMetrics:
    """What one document gave: the points to store, the rejected lines, the skipped metrics.

    Attributes:
        points: Valid points, derived series included.
        rejected: Lines (documents) to quarantine.
        skipped: Emitted metric families not loaded (no canonical series), with counts.
        sources: The sources seen (``dcgm``, ``vllm``, ...), for the summary.
    """

    points: list[MetricPoint] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    sources: set[str] = field(default_factory=set)


def detect_source(text: str) -> str:
    r"""Which source a document comes from, by its first characters and metric names.

    Examples:
        >>> detect_source('{"resourceMetrics": []}')
        'otlp'
        >>> detect_source("# TYPE DCGM_FI_DEV_GPU_TEMP gauge\nDCGM_FI_DEV_GPU_TEMP 40")
        'dcgm'
        >>> detect_source("vllm:num_requests_running 2")
        'vllm'
    """
    head = text.lstrip("\ufeff \t\r\n")
    if head.startswith("{"):
        return "otlp"
    if "DCGM_FI_" in text:
        return "dcgm"
    if "vllm:" in text:
        return "vllm"
    return "prometheus"


def _family_source(name: str, source: str) -> str:
    """The source of one family: the given one, or (auto) told by the family's name."""
    if source not in ("auto", "prometheus"):
        return source
    if name.startswith("DCGM_"):
        return "dcgm"
    if name.startswith("vllm:"):
        return "vllm"
    return "prometheus"


def _first(labels: Mapping[str, Any], keys: Sequence[str]) -> str | None:
    for k in keys:
        v = labels.get(k)
        if v not in (None, ""):
            return str(v)
    return None


def _ts_problem(ts: datetime, now: datetime, max_skew: timedelta) -> str | None:
    if ts < _EARLIEST:
        return f"bad timestamp {ts.isoformat()}: before 2000"
    if ts > now + max_skew:
        return f"bad timestamp {ts.isoformat()}: in the future"
    return None


def _value_problem(name: str, kind: SeriesKind, value: float) -> str | None:
    spec = TELEMETRY_METRICS[name]
    if math.isnan(value) or math.isinf(value):
        return f"{name}: value {value} is not a finite number"
    if kind == SeriesKind.counter and value < 0:
        return f"{name}: counter is negative ({value})"
    if spec.lower is not None and value < spec.lower:
        return f"{name}: {value} is below {spec.lower:g} {spec.unit}"
    if spec.upper is not None and value > spec.upper:
        return f"{name}: {value} is above {spec.upper:g} {spec.unit}"
    return None


def _buckets_problem(
    name: str, le: Sequence[float], counts: Sequence[float], total: float, obs_sum: float
) -> str | None:
    if len(le) != len(counts):
        return f"{name}: {len(counts)} bucket counts for {len(le)} bounds"
    if not le or not math.isinf(le[-1]):
        return f"{name}: histogram has no +Inf bucket"
    if any(b <= a for a, b in itertools.pairwise(le)):
        return f"{name}: histogram bounds are not ascending"
    if any(math.isnan(c) or math.isinf(c) or c < 0 for c in counts):
        return f"{name}: histogram bucket count is negative or not finite"
    if any(b < a for a, b in itertools.pairwise(counts)):
        return f"{name}: histogram bucket counts decrease"
    if math.isnan(total) or math.isnan(obs_sum) or math.isinf(obs_sum):
        return f"{name}: histogram sum or count is not a finite number"
    if abs(total - counts[-1]) > 1e-9 * max(1.0, total):
        return f"{name}: histogram count {total:g} differs from its +Inf bucket {counts[-1]:g}"
    return None


# -- Prometheus text ---------------------------------------------------------------------------


@dataclass
class _Block:
    """One metric family's lines: its HELP/TYPE lines and its sample lines (with numbers)."""

    name: str | None
    header: list[str] = field(default_factory=list)
    samples: list[tuple[int, str]] = field(default_factory=list)


def _blocks(lines: Iterable[tuple[int, str]]) -> Iterator[_Block]:
    block = _Block(None)
    for n, line in lines:
        text = line.rstrip("\r\n")
        if not text.strip():
            continue
        m = _FAMILY_LINE.match(text)
        if m:
            if m.group(2) != block.name:
                if block.samples or block.header:
                    yield block
                block = _Block(m.group(2))
            block.header.append(text)
        elif text.lstrip().startswith("#"):
            continue  # a comment
        else:
            block.samples.append((n, text))
    if block.samples or block.header:
        yield block


def _parse_block(block: _Block) -> tuple[list[tuple[Any, Any, int]], list[Rejected]]:
    """``(family, sample, line)`` of a block's samples, and the lines that did not parse."""
    from prometheus_client.parser import text_string_to_metric_families

    def parse(sample_lines: Sequence[str]) -> list[tuple[Any, Any]]:
        text = "\n".join([*block.header, *sample_lines]) + "\n"
        return [(f, s) for f in text_string_to_metric_families(text) for s in f.samples]

    try:
        parsed = parse([t for _, t in block.samples])
    except ValueError:
        parsed = None
    if parsed is not None and len(parsed) == len(block.samples):
        return [(f, s, n) for (f, s), (n, _) in zip(parsed, block.samples, strict=True)], []
    good: list[tuple[Any, Any, int]] = []
    bad: list[Rejected] = []
    for n, text in block.samples:
        try:
            one = parse([text])
        except ValueError as exc:
            bad.append(Rejected(n, text, [f"unparsable Prometheus line: {exc}"]))
            continue
        good += [(f, s, n) for f, s in one]
    return good, bad


def _base_labels(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in labels.items() if k != "le"))


def parse_prometheus(
    lines: Iterable[tuple[int, str]],
    *,
    ts: datetime,
    source: str = "auto",
    host: str | None = None,
    now: datetime | None = None,
    max_future_skew: timedelta = timedelta(minutes=5),
) -> ParsedMetrics:
    """Points of a Prometheus text exposition document.

    Args:
        lines: ``(line number, text)`` of the document (an oversized line is the caller's
            to reject before it gets here).
        ts: Time of samples without their own timestamp (the scrape time, a file's mtime).
        source: ``auto`` (by metric names), ``dcgm``, ``vllm`` or ``prometheus``.
        host: Host of series without a host label (a scrape target's host).
        now: The present, for the future-timestamp check (default: now).
        max_future_skew: How far past ``now`` a timestamp may be.

    Returns:
        The points, rejected lines and skipped families.

    Examples:
        >>> doc = '''# HELP DCGM_FI_DEV_GPU_TEMP GPU temperature (in C).
        ... # TYPE DCGM_FI_DEV_GPU_TEMP gauge
        ... DCGM_FI_DEV_GPU_TEMP{gpu="0",Hostname="h1",modelName="NVIDIA H100 80GB HBM3"} 71
        ... DCGM_FI_DEV_GPU_TEMP{gpu="1",Hostname="h1"} NaN'''
        >>> got = parse_prometheus(enumerate(doc.splitlines(), 1),
        ...                        ts=datetime(2026, 1, 1, tzinfo=UTC))
        >>> [(p.name, p.host, p.gpu, p.value) for p in got.points]
        [('gpu.temperature', 'h1', '0', 71.0)]
        >>> got.rejected[0].line, got.rejected[0].reasons
        (4, ['gpu.temperature: value nan is not a finite number'])
    """
    now = now or datetime.now(UTC)
    out = ParsedMetrics()
    # (family name, source, labels without le) -> histogram parts, first line
    hist: dict[tuple[str, str, tuple[tuple[str, str], ...]], dict[str, Any]] = {}
    for block in _blocks(lines):
        parsed, bad = _parse_block(block)
        out.rejected += bad
        for family, sample, n in parsed:
            fam_source = _family_source(family.name, source)
            mapping = source_metric(fam_source, family.name)
            if mapping is None:
                if not family.name.endswith("_created"):  # prometheus_client's creation times
                    out.skipped[family.name] += 1
                continue
            out.sources.add(fam_source)
            spec = TELEMETRY_METRICS[mapping.name]
            sample_ts = ts
            if sample.timestamp is not None:
                try:
                    sample_ts = datetime.fromtimestamp(float(sample.timestamp), UTC)
                except (OverflowError, OSError, ValueError):
                    out.rejected.append(Rejected(n, _line_of(block, n), ["bad timestamp"]))
                    continue
            why = _ts_problem(sample_ts, now, max_future_skew)
            if why is not None:
                out.rejected.append(Rejected(n, _line_of(block, n), [why]))
                continue
            labels = dict(sample.labels)
            if spec.kind == SeriesKind.histogram:
                if family.type != "histogram":
                    out.rejected.append(
                        Rejected(n, _line_of(block, n), [f"{family.name}: not a histogram"])
                    )
                    continue
                key = (family.name, fam_source, _base_labels(labels))
                part = hist.setdefault(
                    key, {"le": {}, "line": n, "ts": sample_ts, "lines": [], "map": mapping}
                )
                part["lines"].append(n)
                if sample.name.endswith("_bucket"):
                    try:
                        bound = float(labels.get("le", "nan").replace("Inf", "inf"))
                    except ValueError:
                        bound = math.nan
                    part["le"][bound] = float(sample.value)
                elif sample.name.endswith("_sum"):
                    part["sum"] = float(sample.value)
                elif sample.name.endswith("_count"):
                    part["count"] = float(sample.value)
                continue
            if sample.name.endswith("_created"):
                continue  # prometheus_client's creation time of a counter, not a reading
            kind = spec.kind
            value = float(sample.value) * mapping.scale
            why = _value_problem(mapping.name, kind, value)
            if why is not None:
                out.rejected.append(Rejected(n, _line_of(block, n), [why]))
                continue
            out.points.append(
                _point(
                    mapping.name, fam_source, family.name, kind, labels, sample_ts, value, host, n
                )
            )
    for (name, fam_source, base), part in hist.items():
        point, why = _histogram_point(name, fam_source, dict(base), part, host)
        if point is None:
            out.rejected.append(Rejected(part["line"], f"{name}{{{_fmt(base)}}}", [why or "bad"]))
        else:
            out.points.append(point)
    out.points += derive_points(out.points)
    return out


def _fmt(labels: Sequence[tuple[str, str]]) -> str:
    return ",".join(f'{k}="{v}"' for k, v in labels)


def _line_of(block: _Block, n: int) -> str:
    return next((t for m, t in block.samples if m == n), "")


def _point(
    name: str,
    source: str,
    source_name: str,
    kind: SeriesKind,
    labels: Mapping[str, str],
    ts: datetime,
    value: float | None,
    host: str | None,
    line: int,
    buckets: dict[str, Any] | None = None,
) -> MetricPoint:
    return MetricPoint(
        name=name,
        source=source,
        source_name=source_name,
        kind=kind,
        unit=TELEMETRY_METRICS[name].unit,
        ts=ts,
        value=value,
        host=_first(labels, _HOST_LABELS) or host,
        gpu=_first(labels, _GPU_LABELS),
        model=_first(labels, _MODEL_LABELS),
        labels={str(k): str(v) for k, v in labels.items() if k != "le"},
        buckets=buckets,
        line=line,
    )


def _histogram_point(
    family: str, source: str, labels: dict[str, str], part: Mapping[str, Any], host: str | None
) -> tuple[MetricPoint | None, str | None]:
    mapping = part["map"]
    pairs = sorted(part["le"].items())
    if any(math.isnan(b) for b, _ in pairs):
        return None, f"{mapping.name}: bucket bound 'le' is not a number"
    le = [b * mapping.scale for b, _ in pairs]
    counts = [c for _, c in pairs]
    if "count" not in part or "sum" not in part:
        return None, f"{mapping.name}: histogram lacks its _sum or _count"
    total, obs_sum = part["count"], part["sum"] * mapping.scale
    why = _buckets_problem(mapping.name, le, counts, total, obs_sum)
    if why is not None:
        return None, why
    buckets = {"le": le, "counts": counts, "sum": obs_sum, "count": total}
    return _point(
        mapping.name,
        source,
        family,
        SeriesKind.histogram,
        labels,
        part["ts"],
        None,
        host,
        part["line"],
        buckets,
    ), None


def derive_points(points: Sequence[MetricPoint]) -> list[MetricPoint]:
    """The derived series of a batch: memory used share, and engine memory fragmentation.

    ``gpu.memory_used_share`` = used / (used + free) for each GPU reading that has both;
    ``memory.fragmentation`` = 1 - ``engine.kv_cache_usage`` (the share of the KV-cache pool
    an engine reserved that holds nothing).

    Examples:
        >>> t = datetime(2026, 1, 1, tzinfo=UTC)
        >>> mk = lambda n, v: MetricPoint(n, "nvml", n, SeriesKind.gauge, "bytes", t, v,
        ...                               host="h", gpu="0")
        >>> [(p.name, p.value) for p in derive_points([mk(GPU_MEMORY_USED, 3.0),
        ...                                            mk(GPU_MEMORY_FREE, 1.0)])]
        [('gpu.memory_used_share', 0.75)]
    """
    out: list[MetricPoint] = []
    mem: dict[tuple[Any, ...], dict[str, MetricPoint]] = defaultdict(dict)
    for p in points:
        if p.name in (GPU_MEMORY_USED, GPU_MEMORY_FREE):
            uuid = p.labels.get("UUID") or p.labels.get("uuid")
            mem[(p.source, p.host, p.gpu, uuid, p.ts)][p.name] = p
        elif p.name == ENGINE_KV_CACHE_USAGE and p.value is not None:
            # The usage is already blocks in use / blocks allocated.
            share = fragmentation(p.value, 1.0)
            out.append(
                replace(
                    p,
                    name=MEMORY_FRAGMENTATION,
                    source_name=f"1 - {p.source_name}",
                    unit=TELEMETRY_METRICS[MEMORY_FRAGMENTATION].unit,
                    value=share,
                )
            )
    for pair in mem.values():
        used, free = pair.get(GPU_MEMORY_USED), pair.get(GPU_MEMORY_FREE)
        if used is None or free is None or used.value is None or free.value is None:
            continue
        whole = used.value + free.value
        if whole > 0:
            out.append(
                replace(
                    used,
                    name=GPU_MEMORY_USED_SHARE,
                    source_name=f"{used.source_name} / ({used.source_name} + {free.source_name})",
                    unit=TELEMETRY_METRICS[GPU_MEMORY_USED_SHARE].unit,
                    value=used.value / whole,
                )
            )
    return out


# -- OTLP JSON ---------------------------------------------------------------------------------


def _nanos(value: int) -> datetime | None:
    if value <= 0:
        return None
    try:
        return datetime.fromtimestamp(value / 1e9, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _kv(kvs: Iterable[Any]) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    from evalwatch.ingest.otel import any_value

    return {kv.key: any_value(MessageToDict(kv.value)) for kv in kvs}


def _otlp_doc(
    text: str,
    line: int,
    out: ParsedMetrics,
    now: datetime,
    max_future_skew: timedelta,
    host: str | None,
) -> None:
    from google.protobuf.json_format import Parse, ParseError
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )

    try:
        req = Parse(text, ExportMetricsServiceRequest(), ignore_unknown_fields=True)
    except ParseError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "parse error"
        out.rejected.append(Rejected(line, text, [f"not an OTLP metrics document: {first}"]))
        return
    for rm in req.resource_metrics:
        resource = _kv(rm.resource.attributes)
        res_host = _first(resource, ("host.name", "host.id")) or host
        service = resource.get("service.name")
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                mapping = source_metric("otlp", metric.name)
                if mapping is None:
                    out.skipped[metric.name] += 1
                    continue
                out.sources.add("otlp")
                spec = TELEMETRY_METRICS[mapping.name]
                scale = mapping.scale * _UNIT_SCALE.get((metric.unit, spec.unit), 1.0)
                which = metric.WhichOneof("data")
                if which not in ("gauge", "sum", "histogram"):
                    # Exponential histograms and summaries have no canonical reading here.
                    unsupported = f"{metric.name}: OTLP {which} is not supported (use buckets)"
                    out.rejected.append(Rejected(line, metric.name, [unsupported]))
                    continue
                for dp, kind, value, buckets, delta in _otlp_points(metric, which, scale):
                    raw = f"{metric.name} {dp}".replace("\n", " ")[:2000]
                    ts = _nanos(dp.time_unix_nano)
                    if ts is None:
                        out.rejected.append(Rejected(line, raw, [f"{metric.name}: bad timestamp"]))
                        continue
                    why = _ts_problem(ts, now, max_future_skew)
                    if why is None and kind != spec.kind:
                        why = f"{metric.name}: expected a {spec.kind}, got {which}"
                    if why is None and buckets is not None:
                        why = _buckets_problem(
                            mapping.name,
                            buckets["le"],
                            buckets["counts"],
                            buckets["count"],
                            buckets["sum"],
                        )
                    if why is None and value is not None:
                        why = _value_problem(mapping.name, kind, value)
                    if why is not None:
                        out.rejected.append(Rejected(line, raw, [why]))
                        continue
                    labels = {k: str(v) for k, v in _kv(dp.attributes).items()}
                    if service:
                        labels.setdefault("service.name", str(service))
                    p = _point(
                        mapping.name,
                        "otlp",
                        metric.name,
                        kind,
                        labels,
                        ts,
                        value,
                        res_host,
                        line,
                        buckets,
                    )
                    start = _nanos(dp.start_time_unix_nano)
                    out.points.append(replace(p, delta=delta, start_ts=start) if delta else p)


def _otlp_points(
    metric: Any, which: str | None, scale: float
) -> Iterator[tuple[Any, SeriesKind, float | None, dict[str, Any] | None, bool]]:
    """(data point, kind, value, buckets, delta) of one OTLP metric."""
    delta_temporality = 1  # AGGREGATION_TEMPORALITY_DELTA
    if which == "gauge":
        for dp in metric.gauge.data_points:
            yield dp, SeriesKind.gauge, _number(dp) * scale, None, False
    elif which == "sum":
        kind = SeriesKind.counter if metric.sum.is_monotonic else SeriesKind.gauge
        delta = metric.sum.aggregation_temporality == delta_temporality
        for dp in metric.sum.data_points:
            yield dp, kind, _number(dp) * scale, None, delta and kind == SeriesKind.counter
    elif which == "histogram":
        delta = metric.histogram.aggregation_temporality == delta_temporality
        for dp in metric.histogram.data_points:
            le = [float(b) * scale for b in dp.explicit_bounds] + [math.inf]
            per = [float(c) for c in dp.bucket_counts]
            counts = [sum(per[: i + 1]) for i in range(len(per))]
            buckets = {
                "le": le,
                "counts": counts,
                "sum": float(dp.sum) * scale,
                "count": float(dp.count),
            }
            yield dp, SeriesKind.histogram, None, buckets, delta


def _number(dp: Any) -> float:
    return float(dp.as_double if dp.WhichOneof("value") == "as_double" else dp.as_int)


def parse_otlp_metrics(
    text: str,
    *,
    host: str | None = None,
    now: datetime | None = None,
    max_future_skew: timedelta = timedelta(minutes=5),
) -> ParsedMetrics:
    """Points of an OTLP JSON metrics document (or one document per line).

    Args:
        text: ``{"resourceMetrics": [...]}``, or such documents one per line.
        host: Host of series whose resource has no ``host.name``.
        now: The present, for the future-timestamp check.
        max_future_skew: How far past ``now`` a timestamp may be.

    Returns:
        The points, rejected documents or data points, and skipped metrics.

    Examples:
        >>> parse_otlp_metrics('{"resourceMetrics": 3}').rejected[0].reasons[0][:29]
        'not an OTLP metrics document:'
    """
    now = now or datetime.now(UTC)
    out = ParsedMetrics()
    lines = [(n, t) for n, t in enumerate(text.splitlines(), 1) if t.strip()]
    per_line = len(lines) > 1 and lines[0][1].strip().startswith("{") and _whole_json(lines[0][1])
    for n, doc in lines if per_line else [(1, text)]:
        _otlp_doc(doc, n, out, now, max_future_skew, host)
    out.points += derive_points(out.points)
    return out


def _whole_json(text: str) -> bool:
    import json

    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def parse_metrics(
    lines: Sequence[tuple[int, str]],
    *,
    ts: datetime,
    source: str = "auto",
    host: str | None = None,
    now: datetime | None = None,
    max_future_skew: timedelta = timedelta(minutes=5),
) -> ParsedMetrics:
    """Points of one document in either format, by ``source`` (``auto``: by its content).

    Args:
        lines: ``(line number, text)`` of the document.
        ts: Time of Prometheus samples without their own timestamp.
        source: One of :data:`SOURCES`.
        host: Host of series that name none.
        now: The present, for the future-timestamp check.
        max_future_skew: How far past ``now`` a timestamp may be.

    Returns:
        What the document gave.
    """
    if source == "auto":
        head = "\n".join(t for _, t in lines[:50])
        source = "otlp" if detect_source(head) == "otlp" else "auto"
    if source == "otlp":
        return parse_otlp_metrics(
            "\n".join(t for _, t in lines), host=host, now=now, max_future_skew=max_future_skew
        )
    return parse_prometheus(
        lines, ts=ts, source=source, host=host, now=now, max_future_skew=max_future_skew
    )
