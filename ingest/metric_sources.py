"""Where serving-fleet metrics come from: files, HTTP scrapes and NVML, into the store.

Every path ends the same way: :func:`evalwatch.ingest.metrics.parse_metrics` (or, for NVML,
:func:`nvml_points`) makes canonical points, :func:`evalwatch.storage.metric_series.store_points`
stores them idempotently, and whatever could not be read goes to quarantine (kind
``"metrics"``) with its line and reasons, like a rejected traffic row.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.engine import Engine

from evalwatch.core.telemetry import (
    GPU_MEMORY_FREE,
    GPU_MEMORY_USED,
    GPU_POWER,
    GPU_TEMPERATURE,
    GPU_UTILIZATION,
    TELEMETRY_METRICS,
    MetricPoint,
    SeriesKind,
    TelemetrySource,
)
from evalwatch.ingest.metric_store import store
from evalwatch.ingest.metrics import ParsedMetrics, Rejected, derive_points, parse_metrics
from evalwatch.ingest.readers import (
    RawRecord,
    UnreadableFileError,
    _bounded_lines,
    bounded_raw,
    cut_raw,
)
from evalwatch.settings import ScrapeTarget, Settings
from evalwatch.storage.repo import insert_quarantine

__all__ = [
    "MetricsLoad",
    "NvmlUnavailableError",
    "ScrapeError",
    "collect_gpu",
    "load_metrics_file",
    "load_metrics_text",
    "nvml_points",
    "open_nvml",
    "scrape",
    "scrape_target",
]

_QUARANTINE_KIND = "metrics"
_MAX_SOURCE = 500


class ScrapeError(Exception):
    """A scrape target answered, but not with a usable document (HTTP error, too large)."""


class NvmlUnavailableError(Exception):
    """NVML cannot be used here (no driver, no GPU); the message says why in one line."""


@dataclass
class MetricsLoad:
    """What one load did (a file, a scrape, NVML samples).

    Attributes:
        origin: The file path or URL.
        sources: Sources seen (``dcgm``, ``vllm``, ``otlp``, ``nvml``).
        series: Distinct series read.
        new_series: Series created now.
        samples: Samples stored now.
        duplicates: Samples already stored.
        quarantined: Lines (documents) rejected.
        reasons: Rejection reasons and how many lines had each.
        skipped: Emitted metric families without a canonical series, with counts.
    """

    origin: str
    sources: set[str] = field(default_factory=set)
    series: int = 0
    new_series: int = 0
    samples: int = 0
    duplicates: int = 0
    quarantined: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)

    def add(self, other: MetricsLoad) -> None:
        """Add another load's counts to this one (a summary over several)."""
        self.sources |= other.sources
        self.series += other.series
        self.new_series += other.new_series
        self.samples += other.samples
        self.duplicates += other.duplicates
        self.quarantined += other.quarantined
        self.reasons.update(other.reasons)
        self.skipped.update(other.skipped)


def _origin(text: str) -> str:
    return text if len(text) <= _MAX_SOURCE else "..." + text[-(_MAX_SOURCE - 3) :]


def _quarantine(engine: Engine, origin: str, rejected: Sequence[Rejected]) -> int:
    rows = []
    for r in rejected:
        head, digest, size = bounded_raw(RawRecord(r.line, r.raw, None, r.reasons[0]))
        rows.append(
            {
                "kind": _QUARANTINE_KIND,
                "source": origin,
                "line": r.line,
                "raw": cut_raw(head, size).replace("\x00", "\ufffd"),
                "raw_hash": digest,
                "reasons": list(r.reasons),
            }
        )
    return insert_quarantine(engine, rows) if rows else 0


def _store(engine: Engine, origin: str, parsed: ParsedMetrics) -> MetricsLoad:
    stored = store(engine, parsed.points)
    _quarantine(engine, origin, parsed.rejected)
    reasons: Counter[str] = Counter()
    for r in parsed.rejected:
        reasons.update(r.reasons)
    return MetricsLoad(
        origin=origin,
        sources=set(parsed.sources),
        series=stored.series,
        new_series=stored.new_series,
        samples=stored.samples,
        duplicates=stored.duplicates,
        quarantined=len(parsed.rejected),
        reasons=reasons,
        skipped=Counter(parsed.skipped),
    )


def load_metrics_text(
    engine: Engine,
    lines: Sequence[tuple[int, str]],
    *,
    origin: str,
    ts: datetime,
    settings: Settings,
    source: str = "auto",
    host: str | None = None,
    rejected: Sequence[Rejected] = (),
) -> MetricsLoad:
    """Parse one document's lines and store them; rejected lines go to quarantine.

    Args:
        engine: The store.
        lines: ``(line number, text)`` of the document.
        origin: File path or URL (the quarantine ``source``).
        ts: Time of samples without their own timestamp.
        settings: For the future-timestamp skew.
        source: ``auto``, ``dcgm``, ``vllm``, ``otlp`` or ``prometheus``.
        host: Host of series that name none.
        rejected: Lines already rejected by the reader (too long).

    Returns:
        What was stored.
    """
    parsed = parse_metrics(
        lines,
        ts=ts,
        source=source,
        host=host,
        max_future_skew=timedelta(seconds=settings.ingest.max_future_skew_s),
    )
    parsed.rejected = [*rejected, *parsed.rejected]
    return _store(engine, _origin(origin), parsed)


def _file_lines(path: Path, cap: int) -> tuple[list[tuple[int, str]], list[Rejected]]:
    lines: list[tuple[int, str]] = []
    rejected: list[Rejected] = []
    try:
        with path.open("rb") as fh:
            for n, line in _bounded_lines(fh, cap):
                if isinstance(line, RawRecord):
                    rejected.append(Rejected(n, line.raw, [line.error or "line too long"]))
                else:
                    text = line.decode("utf-8", "replace").rstrip("\r\n")
                    lines.append((n, text.lstrip("\ufeff") if n == 1 else text))
    except OSError as exc:
        raise UnreadableFileError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    return lines, rejected


def load_metrics_file(
    engine: Engine,
    path: Path,
    *,
    settings: Settings,
    source: str = "auto",
    host: str | None = None,
    at: datetime | None = None,
) -> MetricsLoad:
    """Load one Prometheus text or OTLP JSON metrics file.

    Args:
        engine: The store.
        path: The file.
        settings: ``ingest.max_line_bytes`` bounds each line; a longer one is quarantined.
        source: ``auto`` (by content), ``dcgm``, ``vllm``, ``otlp`` or ``prometheus``.
        host: Host of series that name none.
        at: Time of samples without their own timestamp (default: the file's modification
            time, so loading the same file again stores nothing new).

    Returns:
        What was stored.

    Raises:
        UnreadableFileError: The file is missing or cannot be read.
    """
    if not path.is_file():
        why = "not a regular file" if path.exists() else "no such file"
        raise UnreadableFileError(f"{path}: {why}")
    ts = at or datetime.fromtimestamp(path.stat().st_mtime, UTC)
    lines, rejected = _file_lines(path, settings.ingest.max_line_bytes)
    return load_metrics_text(
        engine,
        lines,
        origin=str(path.resolve()),
        ts=ts,
        settings=settings,
        source=source,
        host=host,
        rejected=rejected,
    )


def scrape(url: str, timeout_s: float, max_bytes: int) -> tuple[str, datetime]:
    """GET a metrics endpoint: its text and the time it was read.

    Args:
        url: The endpoint (``http://host:9400/metrics``).
        timeout_s: Connect and read timeout.
        max_bytes: Largest body read; a larger one is refused.

    Returns:
        ``(body, time of the scrape)``.

    Raises:
        ScrapeError: The endpoint answered with an error status or too much.
        httpx.TransportError: It could not be reached (the CLI exits 3).
    """
    import httpx

    ts = datetime.now(UTC)
    headers = {"Accept": "text/plain;version=0.0.4, application/json;q=0.5"}
    with httpx.stream("GET", url, timeout=timeout_s, headers=headers) as resp:
        if resp.status_code >= 400:
            raise ScrapeError(f"{url}: HTTP {resp.status_code}")
        body = bytearray()
        for chunk in resp.iter_bytes():
            body += chunk
            if len(body) > max_bytes:
                raise ScrapeError(f"{url}: response larger than {max_bytes} bytes")
    return bytes(body).decode("utf-8", "replace"), ts


def scrape_target(engine: Engine, target: ScrapeTarget, settings: Settings) -> MetricsLoad:
    """Scrape one configured target and store what it serves.

    Lines longer than ``ingest.max_line_bytes`` are quarantined like a file's. Series that
    name no host get the target's ``host``, else the URL's host name (Prometheus' instance).

    Args:
        engine: The store.
        target: The target.
        settings: Timeout, size and line limits.

    Returns:
        What was stored.
    """
    tel = settings.telemetry
    body, ts = scrape(target.url, tel.timeout_s, tel.max_scrape_bytes)
    cap = settings.ingest.max_line_bytes
    lines: list[tuple[int, str]] = []
    rejected: list[Rejected] = []
    for n, text in enumerate(body.splitlines(), 1):
        if len(text.encode("utf-8", "replace")) > cap:
            rejected.append(Rejected(n, text, [f"line: longer than {cap} bytes"]))
        else:
            lines.append((n, text))
    host = target.host or urlsplit(target.url).hostname
    return load_metrics_text(
        engine,
        lines,
        origin=target.url,
        ts=ts,
        settings=settings,
        source=target.source,
        host=host,
        rejected=rejected,
    )


# -- NVML ----------------------------------------------------------------------------------------


def _gpu_point(
    name: str, source_name: str, value: float, ts: datetime, host: str, gpu: str, labels: Any
) -> MetricPoint:
    return MetricPoint(
        name=name,
        source=TelemetrySource.nvml,
        source_name=source_name,
        kind=SeriesKind.gauge,
        unit=TELEMETRY_METRICS[name].unit,
        ts=ts,
        value=value,
        host=host,
        gpu=gpu,
        labels=dict(labels),
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def nvml_points(nvml: ModuleType | Any, host: str, ts: datetime) -> list[MetricPoint]:
    """One reading of every GPU through NVML (``pynvml``, already initialised).

    Args:
        nvml: The ``pynvml`` module (or an object with the same functions).
        host: This machine's name.
        ts: The reading's time.

    Returns:
        Utilisation, memory used and free (bytes), temperature and power per GPU, and the
        derived memory used share. A reading the GPU does not support is left out.
    """
    points: list[MetricPoint] = []
    for index in range(int(nvml.nvmlDeviceGetCount())):
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        labels = {
            "gpu": str(index),
            "UUID": _text(nvml.nvmlDeviceGetUUID(handle)),
            "modelName": _text(nvml.nvmlDeviceGetName(handle)),
        }
        gpu = str(index)
        readings: list[tuple[str, str, Callable[[Any], float]]] = [
            (
                GPU_UTILIZATION,
                "nvmlDeviceGetUtilizationRates.gpu",
                lambda h: float(nvml.nvmlDeviceGetUtilizationRates(h).gpu),
            ),
            (
                GPU_MEMORY_USED,
                "nvmlDeviceGetMemoryInfo.used",
                lambda h: float(nvml.nvmlDeviceGetMemoryInfo(h).used),
            ),
            (
                GPU_MEMORY_FREE,
                "nvmlDeviceGetMemoryInfo.free",
                lambda h: float(nvml.nvmlDeviceGetMemoryInfo(h).free),
            ),
            (
                GPU_TEMPERATURE,
                "nvmlDeviceGetTemperature",
                lambda h: float(nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU)),
            ),
            (
                GPU_POWER,
                "nvmlDeviceGetPowerUsage",
                # NVML reports milliwatts.
                lambda h: float(nvml.nvmlDeviceGetPowerUsage(h)) / 1000.0,
            ),
        ]
        for name, source_name, read in readings:
            try:
                value = read(handle)
            except nvml.NVMLError:  # e.g. NOT_SUPPORTED on some boards: no made-up value
                continue
            points.append(_gpu_point(name, source_name, value, ts, host, gpu, labels))
    return points + derive_points(points)


def open_nvml(nvml: ModuleType | Any | None = None) -> ModuleType | Any:
    """Initialise NVML (``pynvml`` unless another module is given) and return the module.

    Each call must be matched by one ``nvmlShutdown()`` (NVML counts them).

    Raises:
        NvmlUnavailableError: No NVIDIA driver or no GPU here.
    """
    if nvml is None:
        import pynvml

        nvml = pynvml
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        raise NvmlUnavailableError(f"NVML is not available here ({exc}); no GPU to sample") from exc
    return nvml


def collect_gpu(
    engine: Engine,
    *,
    host: str,
    count: int,
    interval_s: float,
    nvml: ModuleType | Any | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    on_sample: Callable[[MetricsLoad], None] | None = None,
) -> MetricsLoad:
    """Sample every GPU ``count`` times, ``interval_s`` apart, into the store.

    Args:
        engine: The store.
        host: The host name the series belong to.
        count: How many samples per GPU.
        interval_s: Seconds between samples.
        nvml: The NVML module (default: ``pynvml``).
        sleep: How to wait between samples.
        clock: The time of each sample.
        on_sample: Called after each sample is stored.

    Returns:
        What was stored, over all samples.

    Raises:
        NvmlUnavailableError: NVML cannot be initialised (no driver or no GPU).
    """
    nvml = open_nvml(nvml)
    total = MetricsLoad(origin=f"nvml:{host}")
    try:
        for i in range(count):
            if i:
                sleep(interval_s)
            stored = store(engine, nvml_points(nvml, host, clock()))
            one = MetricsLoad(
                origin=total.origin,
                sources={TelemetrySource.nvml.value},
                series=stored.series,
                new_series=stored.new_series,
                samples=stored.samples,
                duplicates=stored.duplicates,
            )
            if on_sample is not None:
                on_sample(one)
            total.add(one)
            total.series = stored.series
    finally:
        nvml.nvmlShutdown()
    return total
