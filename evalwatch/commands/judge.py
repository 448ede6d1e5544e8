"""``evalwatch judge``: calibrate the judge against human labels, estimate cost, list rubrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table

from evalwatch.commands.common import (
    STATE,
    bad_input,
    console,
    err_console,
    open_store,
    validation_message,
)

if TYPE_CHECKING:
    from evalwatch.evaluators.base import Sample
    from evalwatch.evaluators.calibration import CalibrationResult

judge_app = typer.Typer(
    help="The LLM judge: calibration, cost estimates, rubrics.", no_args_is_help=True
)

RubricPathOpt = Annotated[
    list[Path] | None,
    typer.Option("--rubric-path", help="Extra rubric file or folder (repeatable)."),
]
ModelOpt = Annotated[
    str | None, typer.Option("--model", help="Judge model (default: EVALWATCH_JUDGE__MODEL).")
]


def _fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _cost(value: float | int | None) -> str:
    """A cost cell: dollars, or why there is none (a model without a price)."""
    return "no price" if value is None else f"${float(value):.4f}"


def _print_result(r: CalibrationResult) -> None:
    console.print(
        f"[bold]{escape(r.rubric)}[/bold] v{escape(r.rubric_version)} judged by "
        f"{escape(r.judge_model)}: "
        f"n={r.n} (failed {r.n_failed})",
        highlight=False,
    )
    console.print(
        f"  agreement {_fmt(r.agreement)}  within-one {_fmt(r.within_one)}  "
        f"kappa ({r.kappa_weighting}) {_fmt(r.kappa)}"
        + (f"  ({r.kappa_note})" if r.kappa_note else ""),
        highlight=False,
        markup=False,
    )
    console.print(
        f"  position consistency {_fmt(r.position_consistency)} over {r.n_pairs} pairs"
        + (f"  ({r.position_note})" if r.position_note else ""),
        highlight=False,
        markup=False,
    )
    labels = r.confusion["labels"]
    table = Table(title="confusion (rows human, columns judge)", title_justify="left")
    table.add_column("human \\ judge")
    for lab in labels:
        table.add_column(str(lab), justify="right")
    for lab, row in zip(labels, r.confusion["matrix"], strict=True):
        table.add_row(str(lab), *(str(v) for v in row))
    console.print(table)
    if r.calibration_id is not None:
        console.print(f"  stored as judge calibration #{r.calibration_id}", highlight=False)


@judge_app.command("calibrate")
def judge_calibrate(
    labels: Annotated[
        Path,
        typer.Option(
            "--labels",
            help="Human labels JSONL (id, rubric, prompt, response, "
            "human_score, optional reference/context).",
        ),
    ],
    rubric: Annotated[
        list[str] | None,
        typer.Option("--rubric", help="Only this rubric (repeatable); default: all in the file."),
    ] = None,
    model: ModelOpt = None,
    rubric_path: RubricPathOpt = None,
    max_pairs: Annotated[
        int,
        typer.Option(
            "--max-pairs", help="Same-prompt pairs judged for position consistency (0 skips)."
        ),
    ] = 100,
    store: Annotated[
        bool, typer.Option("--store/--no-store", help="Store the results in the store.")
    ] = True,
) -> None:
    """Judge human-labelled rows; print agreement, kappa, confusion and position consistency."""
    from evalwatch.evaluators.base import EvaluatorUnavailable
    from evalwatch.evaluators.calibration import calibrate, read_human_labels
    from evalwatch.evaluators.judge import ENDPOINT_HINT, JudgeEvaluator, endpoint_configured
    from evalwatch.evaluators.rubrics import RubricError, available_rubrics

    settings = STATE.settings()
    judge_settings = settings.judge
    if model:
        judge_settings = judge_settings.model_copy(update={"model": model})
    if not endpoint_configured(judge_settings):
        raise bad_input(f"no judge endpoint configured: {ENDPOINT_HINT}")
    try:
        # The file's own check (missing, not a regular file, not UTF-8) names the path.
        rows = read_human_labels(labels)
    except ValueError as exc:
        raise bad_input(str(exc)) from exc
    if not rows:
        raise bad_input(f"labels file {labels} has no rows")
    wanted = list(dict.fromkeys(rubric or [r.rubric for r in rows]))
    paths = [str(p) for p in rubric_path or []]
    try:
        known = available_rubrics(paths)
    except RubricError as exc:
        raise bad_input(str(exc)) from exc
    unknown = [w for w in wanted if w not in known]
    if unknown:
        raise bad_input(f"unknown rubric(s) {unknown}; known: {', '.join(sorted(known))}")
    missing = [w for w in wanted if not any(r.rubric == w for r in rows)]
    if missing:
        raise bad_input(f"no labelled rows for rubric(s) {missing} in {labels}")
    engine = open_store() if store else None
    judge = JudgeEvaluator(
        rubrics=wanted, rubric_paths=paths, settings=judge_settings, engine=engine
    )
    try:
        results = calibrate(rows, judge, engine=engine, max_pairs=max_pairs)
    except EvaluatorUnavailable as exc:
        raise bad_input(str(exc)) from exc
    except ValueError as exc:
        raise bad_input(str(exc)) from exc
    finally:
        judge.close()
    for r in results:
        _print_result(r)
    if judge.last_stats is not None:
        s = judge.last_stats
        err_console.print(
            f"judge calls: {s.calls}, cache hits {s.cache_hits}, retries {s.retries}",
            highlight=False,
        )
    if engine is not None:
        # The calibrations are stored: the rules that watch them (a kappa drop) judge now.
        from evalwatch.alerting import evaluate_after_report
        from evalwatch.commands.common import print_alert_changes

        print_alert_changes(*evaluate_after_report(engine, settings=settings))


def _read_samples(path: Path) -> list[Sample]:
    from evalwatch.evaluators.base import Sample
    from evalwatch.files import read_input_text

    samples: list[Sample] = []
    # InputFileError (a ValueError) names the path: missing, not a regular file, not UTF-8.
    for n, line in enumerate(read_input_text(path).split("\n"), 1):
        if not line.strip():
            continue
        try:
            row: dict[str, Any] = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"{path}:{n}: not JSON ({exc})") from exc
        prompt = row.get("prompt", row.get("input"))
        response = row.get("response", row.get("output"))
        if not isinstance(prompt, str) or not isinstance(response, str):
            raise ValueError(f"{path}:{n}: needs prompt/input and response/output strings")
        samples.append(
            Sample(
                subject_id=n,
                prompt=prompt,
                response=response,
                reference=row.get("reference"),
                context=row.get("context"),
            )
        )
    return samples


@judge_app.command("estimate")
def judge_estimate(
    input: Annotated[
        Path,
        typer.Option(
            "--input",
            help="JSONL of traffic rows, predictions joined with "
            "inputs, or human labels (prompt/input and "
            "response/output fields).",
        ),
    ],
    rubrics: Annotated[
        str, typer.Option("--rubrics", help="Comma-separated rubric names.")
    ] = "helpfulness",
    model: ModelOpt = None,
    rubric_path: RubricPathOpt = None,
) -> None:
    """Estimate judge calls, tokens and cost for a file, before running anything."""
    from evalwatch.evaluators.judge import ENDPOINT_HINT, JudgeEvaluator

    judge_settings = STATE.settings().judge
    if model:
        judge_settings = judge_settings.model_copy(update={"model": model})
    if not judge_settings.model:
        raise bad_input(f"no judge model configured: {ENDPOINT_HINT}")
    try:
        samples = _read_samples(input)
        judge = JudgeEvaluator(
            rubrics=[r.strip() for r in rubrics.split(",") if r.strip()],
            rubric_paths=[str(p) for p in rubric_path or []],
            settings=judge_settings,
            engine=open_store(),
        )
    except ValidationError as exc:  # e.g. an unknown rubric: pydantic's text spans lines
        raise bad_input(validation_message(exc)) from exc
    except ValueError as exc:
        raise bad_input(str(exc)) from exc
    est = judge.estimate(samples)
    console.print(est.summary(), highlight=False, markup=False, soft_wrap=True)
    table = Table(title="per judge model", title_justify="left")
    table.add_column("model", overflow="fold")
    for col in ("calls", "input tokens", "output tokens", "cost USD"):
        table.add_column(col, justify="right", no_wrap=True)
    for m, figures in est.per_model.items():
        table.add_row(
            escape(m),
            f"{int(figures.get('calls') or 0):,}",
            f"~{int(figures.get('input_tokens') or 0):,}",
            f"~{int(figures.get('output_tokens') or 0):,}",
            _cost(figures.get("cost_usd")),
        )
    if len(est.per_model) > 1:
        table.add_row(
            "total",
            f"{est.calls:,}",
            f"~{est.input_tokens:,}",
            f"~{est.output_tokens:,}",
            _cost(est.cost_usd),
        )
    console.print(table)


@judge_app.command("rubrics")
def judge_rubrics(rubric_path: RubricPathOpt = None) -> None:
    """List the available rubrics with their versions, scales and required inputs."""
    from evalwatch.evaluators.rubrics import RubricError, available_rubrics

    try:
        rubrics = available_rubrics([str(p) for p in rubric_path or []])
    except RubricError as exc:
        raise bad_input(str(exc)) from exc
    table = Table()
    # Long rubric and file names wrap instead of ending in "…" on a narrow terminal.
    for col in ("rubric", "version", "scale", "requires", "source"):
        table.add_column(col, overflow="fold", min_width=len(col))
    for r in sorted(rubrics.values(), key=lambda r: r.name):
        table.add_row(
            r.name,
            r.version,
            f"{r.scale.min}-{r.scale.max}",
            ", ".join(r.requires) or "-",
            Path(r.source or "").name,
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add the ``judge`` group."""
    app.add_typer(judge_app, name="judge")
