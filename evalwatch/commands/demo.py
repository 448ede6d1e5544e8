"""``evalwatch demo``: the main job end to end on the bundled sample data, with SQLite."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from evalwatch.commands.common import DEFAULT_EVALUATOR_LIST, console, err_console
from evalwatch.commands.server import use_prefect_server, wait_for_prefect
from evalwatch.settings import Settings, reset_settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from evalwatch.ingest.pipeline import IngestResult
    from evalwatch.storage.sampling import SampleSpec

DATA = Path(__file__).resolve().parents[2] / "datasets"
# The demo shows every evaluator that runs offline: toxicity too, whose embedded model needs
# no download (detoxify is used instead when its weights are at hand).
DEMO_EVALUATORS = f"{DEFAULT_EVALUATOR_LIST},toxicity"

BASELINE_PREDICTIONS = "support-qa.predictions.baseline.jsonl"
CANDIDATES = (
    ("equivalent (paraphrased answers)", "support-qa.predictions.candidate-equivalent.jsonl"),
    ("degraded (billing slice broken)", "support-qa.predictions.candidate-degraded.jsonl"),
)
GATE_EVALUATORS = ["embedding", "heuristics"]

#: With a judge endpoint configured, the demo judges a bounded sample only, so a real endpoint
#: costs a small, known amount (the estimate is printed before the first call): this many
#: traffic interactions, and a slice of this many support-qa items for the judge gate.
JUDGE_ITEMS = 50
JUDGE_TRAFFIC_RUBRIC = "helpfulness"
JUDGE_GATE_RUBRIC = "correctness"  # support-qa has reference answers
JUDGE_DATASET = "support-qa-judged"


def _step(title: str) -> float:
    console.rule(f"[bold]{title}")
    return time.perf_counter()


def _done(t0: float) -> None:
    console.print(f"[dim]({time.perf_counter() - t0:.1f} s)[/dim]")


def _fresh_store(out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    db = out / "evalwatch.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    return f"sqlite:///{db.resolve()}"


def _jsonl(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _judge_slice(data: Path, folder: Path) -> dict[str, Path]:
    """Every k-th support-qa item (``JUDGE_ITEMS``, spread over the file) and its predictions.

    Returns:
        ``items`` and each predictions file name -> the sliced file in ``folder``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    items = _jsonl(data / "support-qa.jsonl")
    keep = items[:: max(1, len(items) // JUDGE_ITEMS)][:JUDGE_ITEMS]
    ids = {r["id"] for r in keep}
    files = {"items": _write_jsonl(folder / f"{JUDGE_DATASET}.jsonl", keep)}
    for fname in (BASELINE_PREDICTIONS, *(f for _, f in CANDIDATES)):
        rows = [r for r in _jsonl(data / fname) if r["id"] in ids]
        files[fname] = _write_jsonl(folder / fname, rows)
    return files


def _judge_options(settings: Settings, rubric: str) -> dict[str, Any]:
    return {**settings.evaluator_options.get("judge", {}), "rubrics": [rubric]}


def _estimate_judge(
    engine: Engine, settings: Settings, spec: SampleSpec, files: dict[str, Path]
) -> None:
    """Print the judge calls and cost of the demo's judge steps, before any call is made."""
    from evalwatch.evaluators.base import Sample
    from evalwatch.evaluators.judge import JudgeEvaluator
    from evalwatch.storage.models import Interaction
    from evalwatch.storage.repo import iter_rows
    from evalwatch.storage.sampling import sample_interactions

    ids = sample_interactions(engine, spec)
    traffic = [
        Sample(subject_id=r["id"], prompt=r["prompt"], response=r["response"])
        for rows in iter_rows(engine, Interaction, ids)
        for r in rows
    ]
    items = {r["id"]: r for r in _jsonl(files["items"])}
    gate = [
        Sample(
            subject_id=n,
            prompt=items[r["id"]]["input"],
            response=r["output"],
            reference=items[r["id"]].get("reference"),
            context=items[r["id"]].get("context"),
        )
        for fname in (BASELINE_PREDICTIONS, *(f for _, f in CANDIDATES))
        for n, r in enumerate(_jsonl(files[fname]))
    ]
    console.print(
        f"judge: {settings.judge.model} at {settings.judge.base_url}; "
        f"{len(traffic)} sampled interactions on {JUDGE_TRAFFIC_RUBRIC}, and the baseline and "
        f"both candidates on {len(items)} support-qa items ({JUDGE_DATASET}) on "
        f"{JUDGE_GATE_RUBRIC} for the gate",
        highlight=False,
    )
    for what, rubric, samples in (
        ("traffic sample", JUDGE_TRAFFIC_RUBRIC, traffic),
        ("gate", JUDGE_GATE_RUBRIC, gate),
    ):
        judge = JudgeEvaluator(
            settings=settings.judge, engine=engine, **_judge_options(settings, rubric)
        )
        console.print(f"  {what}: {judge.estimate(samples).summary()}", highlight=False)


def _print_toxicity_model(engine: Engine, run_id: int) -> None:
    """Say which toxicity model scored the run, as its stored provenance records it."""
    from evalwatch.storage.repo import get_run

    run = get_run(engine, run_id)
    config = ((run.evaluators or {}) if run else {}).get("toxicity", {}).get("config")
    if not config:
        return
    # The evaluator's own log line above says why (e.g. detoxify's weights not at hand).
    console.print(
        f"toxicity: scored by {config.get('model')} (backend {config.get('backend')})",
        highlight=False,
    )


def _judge_gates(engine: Engine, settings: Settings, url: str, files: dict[str, Path]) -> None:
    """Gate both candidates on the judged slice: the judge rubric beside the other metrics."""
    from evalwatch.flows._runtime import with_task_runner
    from evalwatch.flows.dataset import evaluate_dataset
    from evalwatch.ingest.datasets import load_dataset
    from evalwatch.runs.dataset import DatasetParams
    from evalwatch.runs.gate import GateParams, run_gate_job

    options = {"judge": _judge_options(settings, JUDGE_GATE_RUBRIC)}
    evaluators = [*GATE_EVALUATORS, "judge"]
    load_dataset(engine, files["items"], JUDGE_DATASET)
    baseline: dict[str, Any] = with_task_runner(evaluate_dataset, settings)(
        params=DatasetParams(
            dataset=JUDGE_DATASET,
            outputs_file=str(files[BASELINE_PREDICTIONS]),
            evaluators=evaluators,
            evaluator_options=options,
        ),
        database_url=url,
    )
    metric = f"judge.{JUDGE_GATE_RUBRIC}"
    for label, fname in CANDIDATES:
        gate = run_gate_job(
            engine,
            GateParams(
                dataset=JUDGE_DATASET,
                baseline_model=str(baseline["model"]),
                candidate_outputs=str(files[fname]),
                evaluators=evaluators,
                evaluator_options=options,
            ),
            settings,
            progress=False,
        )
        report = gate.report
        judged = next((m for m in report.metrics if m.metric == metric), None)
        means = (
            f"{metric} {judged.baseline_mean:.2f} -> {judged.candidate_mean:.2f}"
            if judged is not None
            and judged.baseline_mean is not None
            and judged.candidate_mean is not None
            else f"{metric} not compared"
        )
        console.print(
            f"{label}, judged ({JUDGE_DATASET}, {JUDGE_ITEMS} items): [bold]{report.verdict}"
            f"[/bold] (exit {report.exit_code()}), {means}; stored as regression report "
            f"{gate.report_id}",
            highlight=False,
        )


def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the store and reports.")] = Path(
        "demo-out"
    ),
    data: Annotated[Path, typer.Option("--data", help="Folder of the bundled data.")] = DATA,
    evaluators: Annotated[
        str, typer.Option("--evaluators", help="Evaluators for the traffic run.")
    ] = DEMO_EVALUATORS,
) -> None:
    """Ingest, validate, sample, evaluate, check and report on the bundled sample data."""
    from evalwatch.evaluators.judge import endpoint_configured
    from evalwatch.reporting.location import report_folder
    from evalwatch.storage.db import get_engine
    from evalwatch.storage.repo import checkpoint, table_counts
    from evalwatch.storage.sampling import SampleSpec

    url = _fresh_store(out)
    # The flows read their settings from the environment, like a deployment would.
    os.environ["EVALWATCH_DATABASE_URL"] = url
    use_prefect_server()  # `evalwatch server`'s, else a temporary one that starts meanwhile
    os.environ.setdefault("DO_NOT_TRACK", "1")
    reset_settings()
    from evalwatch.settings import get_settings

    settings = get_settings()
    engine = get_engine(url)
    console.print(f"store: {url}")

    result = _ingest_step(engine, settings, data)
    _dataset_step(engine, data)
    names = [n.strip() for n in evaluators.split(",") if n.strip() and n.strip() != "judge"]
    judge_on = endpoint_configured(settings.judge)
    judge_spec = SampleSpec(max_items=JUDGE_ITEMS, seed=0)
    judge_files = _prepare_judge(engine, settings, data, out, judge_spec, judge_on)
    wait_for_prefect()  # the first flow: the server has been starting since the store was made
    traffic = _traffic_step(engine, settings, url, names)
    if judge_on:
        _judge_traffic_step(settings, url, judge_spec)
    dataset = _baseline_step(settings, url, data)
    # Where the flows put the run reports: demo-out/reports/ beside the store by default.
    drift_html = report_folder(settings) / "drift.html"
    _drift_step(engine, settings, drift_html)
    _gate_step(engine, settings, url, data, str(dataset["model"]), judge_files)
    overview_path = report_folder(settings) / "overview.html"
    _overview_step(engine, overview_path)

    counts = table_counts(engine)
    # The store file alone holds the whole demo: copying demo-out/evalwatch.db is enough.
    checkpoint(engine)
    _step("summary")
    console.print(", ".join(f"{n} {t}" for t, n in counts.items()))
    console.print(f"traffic report: {traffic.get('report')}")
    console.print(f"test-set report: {dataset.get('report')}")
    console.print(f"drift report: {drift_html}")
    console.print(f"operations overview: {overview_path}")
    if result.quarantined:
        err_console.print(f"{result.quarantined} sample rows were quarantined (see above)")


def _ingest_step(engine: Engine, settings: Settings, data: Path) -> IngestResult:
    """Step 1: ingest the sample traffic, saying what was quarantined and why."""
    from evalwatch.ingest.pipeline import ingest

    t0 = _step("1. ingest and validate the sample traffic")
    result = ingest(engine, [data / "sample_traffic.jsonl"], settings=settings, progress=True)
    console.print(
        f"{result.rows} rows: {result.ingested} ingested, {result.duplicates} duplicate, "
        f"{result.quarantined} quarantined, {result.feedback} feedback rows"
    )
    for reason, n in result.reasons.most_common(5):
        console.print(f"  quarantined {n}: {reason}")
    _done(t0)
    return result


def _dataset_step(engine: Engine, data: Path) -> None:
    """Step 2: load the support-qa test set."""
    from evalwatch.ingest.datasets import load_dataset

    t0 = _step("2. load the support-qa test set")
    loaded = load_dataset(engine, data / "support-qa.jsonl", "support-qa")
    assert loaded.dataset is not None
    console.print(f"support-qa version {loaded.dataset.version}: {loaded.items} items")
    _done(t0)


def _prepare_judge(
    engine: Engine, settings: Settings, data: Path, out: Path, spec: SampleSpec, judge_on: bool
) -> dict[str, Path]:
    """With a judge endpoint, slice the judged items and print the cost; else say it is skipped.

    Returns:
        The judged slice's files (see :func:`_judge_slice`); empty without a judge.
    """
    from evalwatch.evaluators.judge import ENDPOINT_HINT

    if not judge_on:
        console.print(
            f"[yellow]judge:[/yellow] skipped — {ENDPOINT_HINT}, to add LLM-as-judge scores "
            f"on {JUDGE_ITEMS} items and a judge gate",
            highlight=False,
        )
        return {}
    files = _judge_slice(data, out / "judge-sample")
    _estimate_judge(engine, settings, spec, files)
    return files


def _traffic_step(engine: Engine, settings: Settings, url: str, names: list[str]) -> dict[str, Any]:
    """Step 3: the evaluate-traffic flow over the sampled traffic; returns its summary."""
    from evalwatch.commands.run import print_run_summary
    from evalwatch.flows._runtime import with_task_runner
    from evalwatch.flows.traffic import evaluate_traffic
    from evalwatch.runs.traffic import TrafficParams

    t0 = _step("3. sample, validate and evaluate the traffic (Prefect flow evaluate-traffic)")
    traffic: dict[str, Any] = with_task_runner(evaluate_traffic, settings)(
        params=TrafficParams(evaluators=names, batch_size=1024), database_url=url
    )
    print_run_summary(traffic)
    _print_toxicity_model(engine, int(traffic["run_id"]))
    _done(t0)
    return traffic


def _judge_traffic_step(settings: Settings, url: str, spec: SampleSpec) -> None:
    """Step 3b: the judge on a bounded sample of the traffic."""
    from evalwatch.commands.run import print_run_summary
    from evalwatch.flows._runtime import with_task_runner
    from evalwatch.flows.traffic import evaluate_traffic
    from evalwatch.runs.traffic import TrafficParams

    t0 = _step(f"3b. the judge on {JUDGE_ITEMS} sampled interactions ({JUDGE_TRAFFIC_RUBRIC})")
    judged = with_task_runner(evaluate_traffic, settings)(
        params=TrafficParams(
            sample=spec,
            evaluators=["judge"],
            evaluator_options={"judge": _judge_options(settings, JUDGE_TRAFFIC_RUBRIC)},
        ),
        database_url=url,
    )
    print_run_summary(judged)
    _done(t0)


def _baseline_step(settings: Settings, url: str, data: Path) -> dict[str, Any]:
    """Step 4: the evaluate-dataset flow on the baseline's support-qa answers."""
    from evalwatch.commands.run import print_run_summary
    from evalwatch.flows._runtime import with_task_runner
    from evalwatch.flows.dataset import evaluate_dataset
    from evalwatch.runs.dataset import DatasetParams

    t0 = _step("4. evaluate the baseline model on support-qa (Prefect flow evaluate-dataset)")
    dataset: dict[str, Any] = with_task_runner(evaluate_dataset, settings)(
        params=DatasetParams(
            dataset="support-qa",
            outputs_file=str(data / BASELINE_PREDICTIONS),
            evaluators=GATE_EVALUATORS,
        ),
        database_url=url,
    )
    print_run_summary(dataset)
    _done(t0)
    return dataset


def _drift_step(engine: Engine, settings: Settings, drift_html: Path) -> None:
    """Step 5: a drifting window and a shift-free control; the drift report to ``drift_html``."""
    from datetime import UTC, datetime

    from evalwatch.runs.drift import DriftParams, check_drift

    t0 = _step("5. drift: the last 3 days against the 7 days before, and a shift-free control")
    windows = {
        "last 3 days vs previous 7": DriftParams(
            current_start=datetime(2026, 11, 12, tzinfo=UTC),
            current_end=datetime(2026, 11, 15, tzinfo=UTC),
            baseline_days=7,
            scopes=["overall"],
        ),
        "control: Nov 6-10 vs Nov 1-5 (no shift)": DriftParams(
            current_start=datetime(2026, 11, 6, tzinfo=UTC),
            current_end=datetime(2026, 11, 11, tzinfo=UTC),
            baseline_days=5,
            scopes=["overall"],
        ),
    }
    for label, params in windows.items():
        outcome = check_drift(engine, params, settings)
        moved = outcome.moved()
        console.print(
            f"{label}: [bold]{'DRIFT' if outcome.drift_found else 'no drift'}[/bold] "
            f"({len(moved)} of {outcome.n_tests} tests moved)"
        )
        for _scope, test in moved[:6]:
            console.print(f"  - {test.summary}", highlight=False)
        if outcome.drift_found:
            from evalwatch.reporting.drift_report import write_drift_html

            write_drift_html(outcome, drift_html)
    _done(t0)


def _gate_step(
    engine: Engine,
    settings: Settings,
    url: str,
    data: Path,
    baseline_model: str,
    judge_files: dict[str, Path],
) -> None:
    """Step 6: gate both candidates against the baseline (and on the judged slice, if any)."""
    from evalwatch.runs.gate import GateParams, run_gate_job

    t0 = _step("6. regression gate: two candidates against the baseline on support-qa")
    for label, fname in CANDIDATES:
        gate = run_gate_job(
            engine,
            GateParams(
                dataset="support-qa",
                baseline_model=baseline_model,
                candidate_outputs=str(data / fname),
                evaluators=GATE_EVALUATORS,
            ),
            settings,
            progress=False,
        )
        report = gate.report
        slices = ", ".join(report.regressing_slices) or "none"
        console.print(
            f"{label}: [bold]{report.verdict}[/bold] (exit {report.exit_code()}), "
            f"regressing slices: {slices}; stored as regression report {gate.report_id}"
        )
    if judge_files:
        _judge_gates(engine, settings, url, judge_files)
    _done(t0)


def _overview_step(engine: Engine, path: Path) -> None:
    """Step 7: the operations overview of the last 14 days, to ``path``."""
    from evalwatch.reporting.overview import overview_html
    from evalwatch.storage.overview import load_overview, overview_window

    t0 = _step("7. operations overview")
    start, end = overview_window(engine, 14)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(overview_html(load_overview(engine, start, end)), encoding="utf-8")
    _done(t0)


def register(app: typer.Typer) -> None:
    """Add the ``demo`` command."""
    app.command("demo")(demo)
