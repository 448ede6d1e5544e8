"""``evalwatch datasets``: versioned test sets and model outputs for them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from evalwatch.commands.common import (
    EXIT_CHECK_FAILED,
    EXIT_OK,
    bad_input,
    console,
    open_store,
)

datasets_app = typer.Typer(help="Versioned test sets.", no_args_is_help=True)

FormatOpt = Annotated[
    str, typer.Option("--format", help="auto (by name and content), jsonl, csv or parquet.")
]


def _check_input(file: Path, fmt: str) -> None:
    """Exit 2 for a bad ``--format`` or a file that cannot be read, before the store is opened.

    Opening the store creates and migrates it; a typo in a file name must not leave a store.
    """
    from evalwatch.ingest.readers import FORMATS, SourceReader, UnreadableFileError

    if fmt not in FORMATS or fmt == "otlp":
        raise bad_input(f"--format must be auto, jsonl, csv or parquet, not {fmt!r}")
    try:
        SourceReader(file, fmt)
    except UnreadableFileError as exc:
        raise bad_input(str(exc)) from exc


def _reasons(reasons: dict[str, int], n: int) -> None:
    console.print(f"{n} item(s) quarantined:", highlight=False)
    for why, count in sorted(reasons.items(), key=lambda kv: -kv[1]):
        console.print(f"  {count:>5}  {why}", highlight=False)


@datasets_app.command("load")
def datasets_load(
    file: Annotated[Path, typer.Argument(help="Test-set JSONL: id, input, reference, tags.")],
    name: Annotated[
        str | None, typer.Option("--name", help="Test-set name (default: the file name).")
    ] = None,
    fmt: FormatOpt = "auto",
) -> None:
    """Register a test-set version; identical content gives back the same version.

    Exit code 0 when every item was loaded, 1 when any went to quarantine, 2 for an unreadable
    file or one without a single usable item.
    """
    from evalwatch.ingest.datasets import load_dataset
    from evalwatch.ingest.readers import UnreadableFileError

    _check_input(file, fmt)
    engine = open_store()
    try:
        result = load_dataset(engine, file, name, fmt)
    except UnreadableFileError as exc:
        raise bad_input(str(exc)) from exc
    if result.quarantined:
        _reasons(result.reasons, result.quarantined)
    if result.dataset is None:
        if result.quarantined:
            console.print("no usable item: nothing registered", highlight=False)
            raise typer.Exit(EXIT_CHECK_FAILED)
        raise bad_input(f"{file}: holds no test-set items")
    ds = result.dataset
    state = "new version" if result.created else "unchanged (this content is already loaded)"
    console.print(
        f"dataset [bold]{ds.name}[/bold] version [bold]{ds.version}[/bold]: "
        f"{ds.n_items} items, {state}",
        highlight=False,
    )
    raise typer.Exit(EXIT_CHECK_FAILED if result.quarantined else EXIT_OK)


@datasets_app.command("list")
def datasets_list() -> None:
    """Every test-set version: name, version, size and when it was loaded."""
    from evalwatch.storage.repo import list_datasets

    rows = list_datasets(open_store())
    if not rows:
        console.print("no datasets yet; load one with `evalwatch datasets load FILE`")
        return
    table = Table(title="Datasets")
    for col in ("name", "version", "items", "created (UTC)"):
        table.add_column(col, justify="right" if col == "items" else "left")
    for ds in rows:
        table.add_row(
            ds.name, ds.version, str(ds.n_items), ds.created_at.strftime("%Y-%m-%d %H:%M:%S")
        )
    console.print(table)


@datasets_app.command("load-outputs")
def datasets_load_outputs(
    file: Annotated[Path, typer.Argument(help="Predictions JSONL: id, model, output.")],
    name: Annotated[str, typer.Option("--name", help="The dataset the predictions answer.")],
    version: Annotated[
        str | None, typer.Option("--version", help="Dataset version (default: the newest).")
    ] = None,
    fmt: FormatOpt = "auto",
) -> None:
    """Store a model's outputs for the items of a test-set version.

    Exit code 0 when every prediction was stored (or already was), 1 when any went to
    quarantine, 2 for an unreadable file or an unknown dataset.
    """
    from evalwatch.ingest.datasets import load_outputs
    from evalwatch.ingest.readers import UnreadableFileError

    _check_input(file, fmt)
    engine = open_store()
    try:
        result = load_outputs(engine, file, name, version, fmt)
    except KeyError as exc:
        raise bad_input(str(exc.args[0])) from exc
    except UnreadableFileError as exc:
        raise bad_input(str(exc)) from exc
    if result.quarantined:
        _reasons(result.reasons, result.quarantined)
    console.print(
        f"{result.stored} outputs stored, {result.duplicates} duplicate, "
        f"{result.quarantined} quarantined for {result.dataset.name} "
        f"version {result.dataset.version}",
        highlight=False,
    )
    raise typer.Exit(EXIT_CHECK_FAILED if result.quarantined else EXIT_OK)


def register(app: typer.Typer) -> None:
    """Add the ``datasets`` group."""
    app.add_typer(datasets_app, name="datasets")
