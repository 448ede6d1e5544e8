"""``evalwatch ingest``: load traffic or feedback files into the store."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.table import Table

from evalwatch.commands.common import (
    EXIT_CHECK_FAILED,
    EXIT_OK,
    STATE,
    bad_input,
    console,
    err_console,
    open_store,
)

if TYPE_CHECKING:
    from evalwatch.ingest.pipeline import IngestResult

_TOP_REASONS = 8


def _summary(result: IngestResult) -> None:
    what = "feedback rows" if result.kind == "feedback" else "interactions"
    console.print(
        f"[bold]{result.ingested}[/bold] {what} ingested, "
        f"[bold]{result.duplicates}[/bold] duplicate, "
        f"[bold]{result.quarantined}[/bold] quarantined "
        f"({result.rows} rows from {len(result.files)} file(s) in {result.seconds:.1f}s)",
        highlight=False,
    )
    if result.kind == "traffic" and result.updated:
        console.print(
            f"{result.updated} traced interaction(s) completed with spans that arrived later",
            highlight=False,
        )
    if result.kind == "traffic" and result.feedback:
        console.print(f"{result.feedback} feedback rows from ratings and thumbs", highlight=False)
    for why, n in sorted(result.skipped.items()):
        console.print(f"skipped {n} line(s): {why}", highlight=False)
    for why, n in sorted(result.warnings.items()):
        console.print(f"stored {n} row(s) with a warning: {why}", highlight=False)
    for why, n in sorted(result.opted_out.items()):
        console.print(f"dropped {n} row(s), nothing kept: {why}", highlight=False)
    if result.reasons:
        table = Table(title="Top quarantine reasons", title_justify="left")
        table.add_column("reason")
        table.add_column("rows", justify="right")
        for why, n in result.reasons.most_common(_TOP_REASONS):
            table.add_row(why, str(n))
        console.print(table)
        console.print(
            "Rejected rows are in the quarantine table with their raw text, file, line and "
            "every reason.",
            highlight=False,
        )


def ingest_cmd(
    files: Annotated[
        list[Path],
        typer.Argument(
            help="Files to ingest: JSONL, CSV, Parquet or OTLP JSON.", show_default=False
        ),
    ],
    kind: Annotated[
        str,
        typer.Option(
            "--kind",
            help="traffic rows, feedback rows keyed by request id, or metrics (Prometheus "
            "text or OTLP JSON metrics).",
        ),
    ] = "traffic",
    no_redact: Annotated[
        bool,
        typer.Option("--no-redact", help="Store text as is (PII redaction is on by default)."),
    ] = False,
    fmt: Annotated[
        str,
        typer.Option("--format", help="auto (by name and content), jsonl, csv, parquet or otlp."),
    ] = "auto",
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bar.")] = False,
    source: Annotated[
        str,
        typer.Option("--source", help="With --kind metrics: auto, dcgm, vllm, otlp or prometheus."),
    ] = "auto",
    host: Annotated[
        str | None,
        typer.Option("--host", help="With --kind metrics: host of series that name none."),
    ] = None,
) -> None:
    """Validate and store traffic (or feedback); rejected rows go to quarantine.

    Exit code 0 when every row was stored or was a duplicate, 1 when any row was quarantined,
    2 for a missing or unreadable file or bad options.
    """
    from evalwatch.ingest.pipeline import ingest
    from evalwatch.ingest.readers import FORMATS, SourceReader, UnreadableFileError

    if kind == "metrics":
        _ingest_metrics(files, source, host)
    if kind not in ("traffic", "feedback"):
        raise bad_input(f"--kind must be traffic, feedback or metrics, not {kind!r}")
    if fmt not in FORMATS:
        raise bad_input(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    try:
        for path in files:
            SourceReader(path, fmt)  # every file opens before anything is stored
    except UnreadableFileError as exc:
        raise bad_input(str(exc)) from exc
    settings = STATE.settings()
    engine = open_store()
    mode: Literal["traffic", "feedback"] = "feedback" if kind == "feedback" else "traffic"
    options = {
        "fmt": fmt,
        "redact": False if no_redact else None,
        "progress": not no_progress and err_console.is_terminal,
        "console": err_console,
    }
    try:
        if mode == "traffic" and settings.ingest.text_mode == "metadata_only":
            # No text is stored: the interactions are scored now, while it is in memory.
            from evalwatch.runs.privacy import ingest_and_score

            scored = ingest_and_score(engine, files, settings, **options)
            result = scored.result
            if scored.summary is not None:
                console.print(
                    f"metadata-only: texts not stored; run {scored.summary.run_id} scored "
                    f"{scored.summary.n_subjects} interaction(s) at ingest "
                    f"({', '.join(scored.summary.evaluators)})",
                    highlight=False,
                )
        else:
            result = ingest(engine, files, kind=mode, settings=settings, **options)  # type: ignore[arg-type]
    except UnreadableFileError as exc:
        raise bad_input(
            f"{exc} (rows committed before it are kept; re-running skips them as duplicates)"
        ) from exc
    _summary(result)
    raise typer.Exit(EXIT_CHECK_FAILED if result.quarantined else EXIT_OK)


def _ingest_metrics(files: list[Path], source: str, host: str | None) -> None:
    """``--kind metrics``: load Prometheus text / OTLP JSON metric files; always exits."""
    from evalwatch.ingest.metric_sources import MetricsLoad, load_metrics_file
    from evalwatch.ingest.metrics import SOURCES
    from evalwatch.ingest.readers import UnreadableFileError

    if source not in SOURCES:
        raise bad_input(f"--source must be one of {', '.join(SOURCES)}, not {source!r}")
    for path in files:  # every file is there before anything is stored
        if not path.is_file():
            raise bad_input(f"{path}: {'not a regular file' if path.exists() else 'no such file'}")
    settings = STATE.settings()
    engine = open_store()
    total = MetricsLoad(origin=", ".join(map(str, files)))
    try:
        for path in files:
            total.add(load_metrics_file(engine, path, settings=settings, source=source, host=host))
    except UnreadableFileError as exc:
        raise bad_input(str(exc)) from exc
    seen = ", ".join(sorted(total.sources)) or "no known source"
    console.print(
        f"[bold]{total.samples}[/bold] metric samples stored in [bold]{total.series}[/bold] "
        f"series ({total.new_series} new), [bold]{total.duplicates}[/bold] duplicate, "
        f"[bold]{total.quarantined}[/bold] quarantined ({seen}; {len(files)} file(s))",
        highlight=False,
    )
    if total.skipped:
        names = ", ".join(sorted(total.skipped)[:_TOP_REASONS])
        extra = len(total.skipped) - _TOP_REASONS
        more = f" and {extra} more" if extra > 0 else ""
        console.print(
            f"skipped {len(total.skipped)} metric(s) without a canonical series: {names}{more}",
            highlight=False,
        )
    if total.reasons:
        table = Table(title="Top quarantine reasons", title_justify="left")
        table.add_column("reason")
        table.add_column("lines", justify="right")
        for why, n in total.reasons.most_common(_TOP_REASONS):
            table.add_row(why, str(n))
        console.print(table)
    raise typer.Exit(EXIT_CHECK_FAILED if total.quarantined else EXIT_OK)


def register(app: typer.Typer) -> None:
    """Add the ``ingest`` command."""
    app.command("ingest")(ingest_cmd)
