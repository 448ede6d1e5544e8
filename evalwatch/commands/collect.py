"""``evalwatch collect``: sample metrics into the store from this machine.

``collect gpu`` reads every GPU through NVML (``nvidia-ml-py``): utilisation, memory used and
free, temperature and power, into the same series the DCGM exporter's metrics load into, so
one alert rule covers both. ``collect scrape`` reads metrics endpoints once (a DCGM exporter,
a vLLM server), as the ``collect-metrics`` flow does on its schedule.
"""

from __future__ import annotations

import math
from typing import Annotated

import typer

from evalwatch.commands.common import (
    EXIT_CHECK_FAILED,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    STATE,
    bad_input,
    console,
    open_store,
    print_error,
    validation_message,
)
from evalwatch.core import parse_duration

collect_app = typer.Typer(
    help="Sample serving-fleet metrics (GPUs through NVML) into the store.",
    no_args_is_help=True,
)


@collect_app.command("gpu")
def collect_gpu_cmd(
    interval: Annotated[
        str | None,
        typer.Option(
            "--interval",
            metavar="DURATION",
            help="Time between samples, e.g. 10s (default: telemetry.interval).",
        ),
    ] = None,
    count: Annotated[
        int | None, typer.Option("--count", min=1, help="Samples to take (default 1).")
    ] = None,
    duration: Annotated[
        str | None,
        typer.Option(
            "--duration", metavar="DURATION", help="Sample for this long instead of --count."
        ),
    ] = None,
    host: Annotated[
        str | None, typer.Option("--host", help="Host name of the series (default: this one).")
    ] = None,
) -> None:
    """Sample every GPU of this machine through NVML into the metric series.

    Stores gpu.utilization, gpu.memory_used_bytes / _free_bytes / _used_share,
    gpu.temperature and gpu.power_watts per GPU. Exit code 2 when NVML is not available
    (no NVIDIA driver or no GPU) or for bad options.
    """
    import socket

    from evalwatch.ingest.metric_sources import NvmlUnavailableError, collect_gpu, open_nvml

    settings = STATE.settings()
    if count is not None and duration is not None:
        raise bad_input("give --count or --duration, not both")
    try:
        every = parse_duration(interval or settings.telemetry.interval).total_seconds()
        span = parse_duration(duration).total_seconds() if duration else None
    except ValueError as exc:
        raise bad_input(str(exc)) from exc
    if every <= 0:
        raise bad_input("--interval must be positive")
    n = count or (max(1, math.floor(span / every) + 1) if span is not None else 1)
    try:
        nvml = open_nvml()  # before the store: without a GPU nothing else is touched
    except NvmlUnavailableError as exc:
        raise bad_input(str(exc)) from exc
    try:
        name = host or socket.gethostname()
        engine = open_store()
        done = collect_gpu(
            engine,
            host=name,
            count=n,
            interval_s=every,
            nvml=nvml,
            on_sample=lambda one: console.print(
                f"sampled {one.series} series on {name}: {one.samples} stored", highlight=False
            ),
        )
    finally:
        nvml.nvmlShutdown()
    console.print(
        f"[bold]{done.samples}[/bold] GPU samples stored in [bold]{done.series}[/bold] series "
        f"({n} sample(s), {every:g}s apart, host {name})",
        highlight=False,
    )
    raise typer.Exit(EXIT_OK)


@collect_app.command("scrape")
def collect_scrape_cmd(
    urls: Annotated[
        list[str],
        typer.Argument(
            help="Metrics endpoints, e.g. http://gpu-node-1:9400/metrics.", show_default=False
        ),
    ],
    source: Annotated[
        str, typer.Option("--source", help="auto, dcgm, vllm, otlp or prometheus.")
    ] = "auto",
    host: Annotated[
        str | None,
        typer.Option("--host", help="Host of series that name none (default: the URL's host)."),
    ] = None,
) -> None:
    """Scrape metrics endpoints once into the store (what the collect-metrics flow does).

    Exit code 0 when everything was stored, 1 when a line was quarantined, 2 for a bad
    option, 3 when an endpoint cannot be reached or answers with an error.
    """
    from evalwatch.ingest.metric_sources import MetricsLoad, ScrapeError, scrape_target
    from evalwatch.ingest.metrics import SOURCES
    from evalwatch.settings import ScrapeTarget

    if source not in SOURCES:
        raise bad_input(f"--source must be one of {', '.join(SOURCES)}, not {source!r}")
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise bad_input(f"{url}: not an http(s) URL")
    settings = STATE.settings()
    engine = open_store()
    total = MetricsLoad(origin=", ".join(urls))
    for url in urls:
        target = ScrapeTarget.model_validate(
            {"name": url, "url": url, "source": source, "host": host}
        )
        try:
            total.add(scrape_target(engine, target, settings))
        except ScrapeError as exc:
            print_error(str(exc))
            raise typer.Exit(EXIT_UNAVAILABLE) from exc
    seen = ", ".join(sorted(total.sources)) or "no known source"
    console.print(
        f"[bold]{total.samples}[/bold] metric samples stored in [bold]{total.series}[/bold] "
        f"series ({total.new_series} new), [bold]{total.quarantined}[/bold] quarantined "
        f"({seen}; {len(urls)} endpoint(s))",
        highlight=False,
    )
    for why, n in total.reasons.most_common(8):
        console.print(f"quarantined {n} line(s): {why}", highlight=False)
    raise typer.Exit(EXIT_CHECK_FAILED if total.quarantined else EXIT_OK)


@collect_app.command("anomalies")
def collect_anomalies_cmd(
    window: Annotated[
        str | None,
        typer.Option(
            "--window",
            metavar="DURATION",
            help="Newest complete windows judged, e.g. 1h (default: telemetry.anomaly_window).",
        ),
    ] = None,
    history: Annotated[
        str | None,
        typer.Option(
            "--history",
            metavar="DURATION",
            help="History the baseline is built from, e.g. 7d "
            "(default: telemetry.anomaly_history).",
        ),
    ] = None,
    series: Annotated[
        list[str] | None,
        typer.Option(
            "--series",
            metavar="SELECTOR",
            help="Metric selector to judge (repeatable; default: telemetry.anomaly_series).",
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            "--until",
            metavar="TIME",
            help="End of the judged windows (ISO-8601 or a duration back; default: now).",
        ),
    ] = None,
) -> None:
    """Judge metric series for anomalies per host, GPU and model; store the report, alert.

    Each series' hourly means (counter rates, histogram percentiles) in the newest complete
    windows are compared with a seasonal robust baseline of the history before them; the
    report is stored for the `anomaly.verdict` alert selector. Exit code 0 when nothing is
    anomalous, 1 when an anomaly was found, 2 when the windows hold no samples (the line names
    the newest stored time) or for bad options, 3 when the alert rules cannot be evaluated.
    """
    from pydantic import ValidationError

    from evalwatch.alerting import evaluate_after_report
    from evalwatch.commands.common import EXIT_BAD_INPUT, parse_time, print_alert_changes
    from evalwatch.runs.metric_anomalies import check_metric_anomalies, params_from_settings

    settings = STATE.settings()
    try:
        end = parse_time(until) if until else None
        params = params_from_settings(
            settings, window=window, history=history, series=series, end=end
        )
    except ValidationError as exc:
        raise bad_input(
            validation_message(
                exc, {"window": "--window", "history": "--history", "series": "--series"}
            )
        ) from exc
    except ValueError as exc:
        raise bad_input(str(exc)) from exc
    engine = open_store()
    outcome = check_metric_anomalies(engine, params)
    if outcome.no_data:
        console.print(outcome.no_data, highlight=False, markup=False, soft_wrap=True)
        console.print("nothing judged, no report stored", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT)
    for s in outcome.series:
        if s.verdict == "anomaly":
            console.print(
                f"ANOMALY {s.scope.label}: {s.summary()}",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
    n_found = sum(s.verdict == "anomaly" for s in outcome.series)
    stored = "already stored" if outcome.already_stored else f"{outcome.n_rows_stored} rows stored"
    console.print(
        f"[bold]{n_found}[/bold] of {len(outcome.series)} metric series anomalous in "
        f"{outcome.current.describe()} (report {outcome.report_key[:12]}, {stored})",
        highlight=False,
    )
    alerts, error = evaluate_after_report(engine, settings=settings)
    print_alert_changes(alerts, error)
    raise typer.Exit(EXIT_CHECK_FAILED if outcome.anomalies_found else EXIT_OK)


def register(app: typer.Typer) -> None:
    """Add the ``collect`` group."""
    app.add_typer(collect_app, name="collect")
