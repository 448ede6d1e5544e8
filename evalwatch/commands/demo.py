"""``evalwatch demo``: the main job end to end on the bundled sample data, with SQLite."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from evalwatch.commands.common import console, err_console
from evalwatch.settings import reset_settings

DATA = Path(__file__).resolve().parents[2] / "datasets"


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


def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the store and reports.")] = Path(
        "demo-out"
    ),
    data: Annotated[Path, typer.Option("--data", help="Folder of the bundled data.")] = DATA,
    evaluators: Annotated[
        str, typer.Option("--evaluators", help="Evaluators for the traffic run.")
    ] = "embedding,toxicity,heuristics",
) -> None:
    """Ingest, validate, sample, evaluate, check and report on the bundled sample data."""
    from evalwatch.commands.run import print_run_summary
    from ingest.datasets import load_dataset
    from ingest.pipeline import ingest
    from storage.db import get_engine
    from storage.repo import table_counts

    url = _fresh_store(out)
    # The flows read their settings from the environment, like a deployment would.
    os.environ["EVALWATCH_DATABASE_URL"] = url
    os.environ.setdefault("EVALWATCH_REPORT_DIR", str((out / "reports").resolve()))
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    reset_settings()
    from evalwatch.settings import get_settings

    settings = get_settings()
    engine = get_engine(url)
    console.print(f"store: {url}")

    t0 = _step("1. ingest and validate the sample traffic")
    result = ingest(engine, [data / "sample_traffic.jsonl"], settings=settings, progress=True)
    console.print(
        f"{result.rows} rows: {result.ingested} ingested, {result.duplicates} duplicate, "
        f"{result.quarantined} quarantined, {result.feedback} feedback rows"
    )
    for reason, n in result.reasons.most_common(5):
        console.print(f"  quarantined {n}: {reason}")
    _done(t0)

    t0 = _step("2. load the support-qa test set")
    loaded = load_dataset(engine, data / "support-qa.jsonl", "support-qa")
    assert loaded.dataset is not None
    console.print(f"support-qa version {loaded.dataset.version}: {loaded.items} items")
    _done(t0)

    names = [n.strip() for n in evaluators.split(",") if n.strip()]
    if settings.judge.resolved_base_url() and settings.judge.model:
        names.append("judge")
    else:
        console.print(
            "[yellow]judge:[/yellow] skipped — set EVALWATCH_JUDGE_BASE_URL and "
            "EVALWATCH_JUDGE_MODEL (and EVALWATCH_JUDGE_API_KEY) to an OpenAI-compatible "
            "endpoint to add LLM-as-judge scores"
        )

    t0 = _step("3. sample, validate and evaluate the traffic (Prefect flow evaluate-traffic)")
    from flows.traffic import evaluate_traffic
    from runs.traffic import TrafficParams

    traffic = evaluate_traffic(
        params=TrafficParams(evaluators=names, batch_size=1024), database_url=url
    )
    print_run_summary(traffic)
    _done(t0)

    t0 = _step("4. evaluate the baseline model on support-qa (Prefect flow evaluate-dataset)")
    from flows.dataset import evaluate_dataset
    from runs.dataset import DatasetParams

    dataset: dict[str, Any] = evaluate_dataset(
        params=DatasetParams(
            dataset="support-qa",
            outputs_file=str(data / "support-qa.predictions.baseline.jsonl"),
            evaluators=["embedding", "heuristics"],
        ),
        database_url=url,
    )
    print_run_summary(dataset)
    _done(t0)

    t0 = _step("5. drift: the last 3 days against the 7 days before, and a shift-free control")
    from datetime import UTC, datetime

    from runs.drift import DriftParams, check_drift

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
    drift_html = out.resolve() / "reports" / "drift.html"
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
            from reporting.drift_report import write_drift_html

            write_drift_html(outcome, drift_html)
    _done(t0)

    t0 = _step("6. regression gate: two candidates against the baseline on support-qa")
    from runs.gate import GateParams, run_gate_job

    gates: dict[str, str] = {}
    for label, fname in (
        ("equivalent (paraphrased answers)", "support-qa.predictions.candidate-equivalent.jsonl"),
        ("degraded (billing slice broken)", "support-qa.predictions.candidate-degraded.jsonl"),
    ):
        gate = run_gate_job(
            engine,
            GateParams(
                dataset="support-qa",
                baseline_model=str(dataset["model"]),
                candidate_outputs=str(data / fname),
                evaluators=["embedding", "heuristics"],
            ),
            settings,
            progress=False,
        )
        report = gate.report
        slices = ", ".join(report.regressing_slices) or "none"
        gates[label] = report.verdict
        console.print(
            f"{label}: [bold]{report.verdict}[/bold] (exit {report.exit_code()}), "
            f"regressing slices: {slices}; stored as regression report {gate.report_id}"
        )
    _done(t0)

    t0 = _step("7. operations overview")
    from evalwatch.commands.report import overview_window
    from reporting.overview import overview_html
    from storage.overview import load_overview

    start, end = overview_window(engine, 14)
    overview_path = out.resolve() / "reports" / "overview.html"
    overview_path.parent.mkdir(parents=True, exist_ok=True)
    overview_path.write_text(overview_html(load_overview(engine, start, end)), encoding="utf-8")
    _done(t0)

    counts = table_counts(engine)
    _step("summary")
    console.print(", ".join(f"{n} {t}" for t, n in counts.items()))
    console.print(f"traffic report: {traffic.get('report')}")
    console.print(f"test-set report: {dataset.get('report')}")
    console.print(f"drift report: {drift_html}")
    console.print(f"operations overview: {overview_path}")
    if result.quarantined:
        err_console.print(f"{result.quarantined} sample rows were quarantined (see above)")


def register(app: typer.Typer) -> None:
    """Add the ``demo`` command."""
    app.command("demo")(demo)
