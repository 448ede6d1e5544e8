"""``evalwatch evaluate``: score a sample of stored traffic with the chosen evaluators.

Runs directly (no Prefect) through :func:`evalwatch.runs.traffic.evaluate_traffic`, the job the
``evaluate-traffic`` flow (``evalwatch run traffic``) splits into tasks: sample, validate the
sample, score, store the same :class:`~evalwatch.runs.summary.RunSummary`, and print the
per-metric summary and each evaluator's profile. The same options again resume the same run,
so an interrupted evaluation finishes without rescoring. This module only turns options into
:class:`~evalwatch.runs.traffic.TrafficParams` and prints the outcome.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from evalwatch.commands.common import (
    DEFAULT_EVALUATOR_LIST,
    STATE,
    AppOpt,
    EvaluatorsOpt,
    MaxItemsOpt,
    ModelVersionOpt,
    RateOpt,
    SeedOpt,
    SinceOpt,
    StratifyOpt,
    UnscoredByOpt,
    UntilOpt,
    bad_input,
    console,
    err_console,
    evaluator_list,
    open_store,
    read_options_file,
    sample_spec,
)
from evalwatch.core.defaults import DEFAULT_CHUNK_SIZE

if TYPE_CHECKING:
    from evalwatch.evaluators.summary import MetricSummary
    from evalwatch.runs.summary import RunSummary
    from evalwatch.storage.models import EvaluatorProfile

__all__ = ["evaluator_options", "print_result", "register"]

# The evaluator that --rubrics configures (its options get {"rubrics": [...]}).
JUDGE = "judge"


def _split(values: list[str] | None) -> list[str]:
    """``["a,b", "c"]`` -> ``["a", "b", "c"]`` (repeatable and comma-separated both work)."""
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def evaluator_options(
    names: list[str], options_file: Path | None, rubrics: list[str]
) -> dict[str, dict[str, Any]]:
    """Each selected evaluator's options from the options file and CLI options.

    They go over the settings' (``EVALWATCH_EVALUATOR_OPTIONS``), which the job's evaluator
    builder (:func:`evalwatch.runs.common.build_evaluators`) applies first.

    Args:
        names: Selected evaluator names.
        options_file: YAML mapping evaluator name -> options (optional).
        rubrics: Judge rubrics from ``--rubrics``.

    Returns:
        Options per selected evaluator.

    Raises:
        typer.Exit: Code 2 for an unreadable options file or ``--rubrics`` without the judge.

    Examples:
        >>> evaluator_options(["heuristics"], None, [])
        {'heuristics': {}}
    """
    from_file = read_options_file(options_file)
    unused = sorted(set(from_file) - set(names))
    if unused:
        err_console.print(
            f"[yellow]note:[/yellow] options for unselected evaluators ignored: "
            f"{', '.join(unused)}",
            highlight=False,
        )
    if rubrics and JUDGE not in names:
        raise bad_input(f"--rubrics applies to the judge; add '{JUDGE}' to --evaluators")
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        opts = dict(from_file.get(name, {}))
        if name == JUDGE and rubrics:
            opts["rubrics"] = rubrics
        out[name] = opts
    return out


def _fmt(x: float | None, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _metrics_table(title: str, rows: list[MetricSummary], by_version: bool = False) -> Table:
    table = Table(title=title, title_justify="left")
    # Names fold when the terminal is narrow; figures never do, so none is cut to "25…".
    if by_version:
        table.add_column("version", overflow="fold")
        table.add_column("evaluator.metric", overflow="fold")
    else:
        table.add_column("evaluator", overflow="fold")
        table.add_column("metric", overflow="fold")
    for col in ("n", "mean", "95% CI", "unscored"):
        table.add_column(col, justify="right", no_wrap=True)
    for m in rows:
        ci = "—" if m.ci_low is None else f"{m.ci_low:.3f}–{m.ci_high:.3f}"
        if by_version:
            cells = [escape(m.model_version or ""), escape(f"{m.evaluator}.{m.metric}")]
        else:
            cells = [escape(m.evaluator), escape(m.metric)]
        cells += [str(m.count), _fmt(m.mean), ci, str(m.unscored)]
        table.add_row(*cells)
    return table


def _profiles_table(profiles: list[EvaluatorProfile]) -> Table:
    # One column per evaluator: a dozen figures per evaluator fit narrow terminals this way.
    table = Table(title="profile", title_justify="left")
    table.add_column("")
    for p in profiles:
        table.add_column(escape(p.evaluator), justify="right")

    def util(p: EvaluatorProfile) -> str:
        if p.gpu_util_mean is None:
            return "—"
        return f"{p.gpu_util_mean:.0f} / {(p.gpu_util_max or 0):.0f}"

    rows: list[tuple[str, Any]] = [
        ("device", lambda p: escape(p.device)),
        ("items", lambda p: str(p.n_items)),
        ("seconds", lambda p: _fmt(p.seconds, 2)),
        ("items/s", lambda p: _fmt(p.items_per_s, 1)),
        ("tokens/s", lambda p: _fmt(p.tokens_per_s, 0)),
        ("model load s", lambda p: _fmt(p.load_seconds, 2)),
        ("GPU util mean / max %", util),
        ("GPU memory peak MB", lambda p: _fmt(p.gpu_mem_peak_mb, 0)),
        ("GPU temperature max C", lambda p: _fmt(p.gpu_temp_max_c, 0)),
        ("GPU power mean W", lambda p: _fmt(p.gpu_power_mean_w, 0)),
        ("GPU energy J", lambda p: _fmt(p.gpu_energy_j, 1)),
        ("torch peak allocated MB", lambda p: _fmt(p.torch_peak_mb, 0)),
        ("process CPU %", lambda p: _fmt(p.cpu_percent_mean, 0)),
        ("process RSS peak MB", lambda p: _fmt(p.rss_peak_mb, 0)),
    ]
    for label, cell in rows:
        table.add_row(label, *(cell(p) for p in profiles))
    return table


def print_result(result: RunSummary, profiles: list[EvaluatorProfile]) -> None:
    """Print a run's per-metric summary, per-version summary and its evaluators' profiles."""
    console.print(
        _metrics_table(f"run {result.run_id}: {result.n_subjects} interactions", result.metrics)
    )
    if len({m.model_version for m in result.by_model_version}) > 1:
        console.print(_metrics_table("per model version", result.by_model_version, True))
    console.print(_profiles_table(profiles))
    for p in profiles:
        if p.gpu_note:
            console.print(f"{escape(p.evaluator)}: {escape(p.gpu_note)}", highlight=False)
    for name, message in result.unavailable.items():
        err_console.print(
            f"[yellow]{escape(name)} did not run:[/yellow] {escape(message)}", highlight=False
        )
    for name, n in result.failed_batches.items():
        if n:
            err_console.print(
                f"[red]{escape(name)}: {n} batch(es) failed[/red]; their results are stored as "
                "unscored errors with the reason",
                highlight=False,
            )


def evaluate(
    evaluators: EvaluatorsOpt = DEFAULT_EVALUATOR_LIST,
    since: SinceOpt = None,
    until: UntilOpt = None,
    app: AppOpt = None,
    model_version: ModelVersionOpt = None,
    rate: RateOpt = 1.0,
    max_items: MaxItemsOpt = None,
    stratify: StratifyOpt = False,
    seed: SeedOpt = 0,
    unscored_by: UnscoredByOpt = None,
    options_file: Annotated[
        Path | None,
        typer.Option(
            "--options-file",
            help="YAML mapping evaluator name -> options (over EVALWATCH_EVALUATOR_OPTIONS).",
        ),
    ] = None,
    rubrics: Annotated[
        list[str] | None,
        typer.Option("--rubrics", help="Judge rubrics, comma-separated or repeated (judge only)."),
    ] = None,
    chunk_size: Annotated[
        int, typer.Option("--chunk-size", min=1, help="Interactions per read/score/write step.")
    ] = DEFAULT_CHUNK_SIZE,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")
    ] = True,
) -> None:
    """Score a sample of stored traffic and print per-metric summaries and profiles."""
    from evalwatch.evaluators.base import EvaluatorConfigError
    from evalwatch.runs.traffic import EmptySample, TrafficParams, evaluate_traffic

    names = evaluator_list(evaluators)
    options = evaluator_options(names, options_file, _split(rubrics))
    spec = sample_spec(
        since, until, app, model_version, rate, max_items, stratify, seed, unscored_by
    )
    params = TrafficParams(
        sample=spec, evaluators=names, evaluator_options=options, batch_size=chunk_size
    )
    engine = open_store()
    try:
        outcome = evaluate_traffic(
            engine,
            params,
            STATE.settings(),
            progress=progress,
            console=err_console,
            require_subjects=True,
        )
    except EmptySample as exc:  # its message is the one no-data line
        console.print(str(exc), highlight=False)
        return
    except EvaluatorConfigError as exc:
        raise bad_input(str(exc)) from exc
    prepared, result = outcome.prepared, outcome.summary
    if prepared.resumed:
        console.print(
            f"resuming run {prepared.run_id} (same sample and evaluators): "
            f"{result.scores_written} new scores",
            highlight=False,
        )
    if prepared.invalid:
        err_console.print(
            f"[yellow]{len(prepared.invalid)} sampled interaction(s) not evaluated:[/yellow] "
            + "; ".join(f"{i}: {', '.join(why)}" for i, why in list(prepared.invalid.items())[:5]),
            highlight=False,
        )
    print_result(result, outcome.profiles)
    if len(result.unavailable) == len(names):
        raise bad_input(
            "no evaluator could start; fix the settings named above "
            "(evaluator_options / EVALWATCH_EVALUATOR_OPTIONS or --options-file)"
        )
    console.print(f"stored as run {prepared.run_id}", highlight=False)
    # The run is stored: the rules that watch it (its scores, its cost) judge it now, as the
    # evaluate-traffic flow does in its last task.
    from evalwatch.alerting import evaluate_after_report
    from evalwatch.commands.common import print_alert_changes

    print_alert_changes(*evaluate_after_report(engine, prepared.run_id, settings=STATE.settings()))


def register(app: typer.Typer) -> None:
    """Add the ``evaluate`` command."""
    app.command("evaluate")(evaluate)
