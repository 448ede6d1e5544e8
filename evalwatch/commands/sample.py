"""``evalwatch sample``: preview which stored interactions a run would evaluate."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from evalwatch.commands.common import (
    AppOpt,
    MaxItemsOpt,
    ModelVersionOpt,
    RateOpt,
    SeedOpt,
    SinceOpt,
    StratifyOpt,
    UnscoredByOpt,
    UntilOpt,
    console,
    open_store,
    sample_spec,
)


def sample(
    since: SinceOpt = None,
    until: UntilOpt = None,
    app: AppOpt = None,
    model_version: ModelVersionOpt = None,
    rate: RateOpt = 1.0,
    max_items: MaxItemsOpt = None,
    stratify: StratifyOpt = False,
    seed: SeedOpt = 0,
    unscored_by: UnscoredByOpt = None,
    show_ids: Annotated[bool, typer.Option("--ids", help="Print the sampled ids.")] = False,
) -> None:
    """Show what a sample of stored traffic holds (counts per app and model version)."""
    from evalwatch.storage.repo import interaction_groups
    from evalwatch.storage.sampling import sample_interactions

    spec = sample_spec(
        since, until, app, model_version, rate, max_items, stratify, seed, unscored_by
    )
    engine = open_store()
    ids = sample_interactions(engine, spec)
    per = interaction_groups(engine, ids)
    table = Table(title=f"sample: {len(ids)} interactions")
    table.add_column("app", overflow="fold")
    table.add_column("model version", overflow="fold")
    table.add_column("n", justify="right", no_wrap=True)
    for (a, v), n in sorted(per.items()):
        table.add_row(a, v, str(n))
    console.print(table)
    if show_ids:
        console.print(" ".join(map(str, ids)))


def register(app: typer.Typer) -> None:
    """Add the ``sample`` command."""
    app.command("sample")(sample)
