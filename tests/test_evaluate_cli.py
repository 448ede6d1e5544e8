"""``evalwatch evaluate`` end to end on a SQLite store."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from typer.testing import CliRunner

from evalwatch.cli import app
from evalwatch.evaluators import evaluator_names
from evalwatch.settings import reset_settings
from evalwatch.storage.db import make_engine, upgrade
from evalwatch.storage.repo import insert_interactions
from tests.evaluator_factories import tiny_detoxify_checkpoint

N = 9


@pytest.fixture
def store(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    engine = make_engine(url)
    upgrade(engine)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    insert_interactions(
        engine,
        [
            {
                "request_id": f"r{i}",
                "ts": start + timedelta(hours=i),
                "app": "shop" if i % 2 else "support",
                "model_name": "m",
                "model_version": "v1" if i < 5 else "v2",
                "prompt": f"Where is order {i}?",
                "response": "I'm sorry, but I can't help with that."
                if i == 3
                else f"Order {i} ships tomorrow.",
                "reference": None,
                "metadata": {},
            }
            for i in range(N)
        ],
    )
    engine.dispose()
    return url


@pytest.fixture
def no_torch_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No detoxify checkpoint anywhere, and detoxify asked for by name (auto would fall back to
    # the embedded model): toxicity is unavailable unless configured.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("EVALWATCH_EVALUATOR_OPTIONS", '{"toxicity": {"backend": "detoxify"}}')


def _run(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def _text(res: Any) -> str:
    """The output with rich's line wrapping undone."""
    return " ".join(res.output.split())


def _query(url: str, sql: str) -> list[Any]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(sql)).all())
    finally:
        engine.dispose()


def test_heuristics_run_prints_summary_and_profile(store: str) -> None:
    res = _run("--db", store, "evaluate", "--evaluators", "heuristics", "--no-progress")
    assert res.exit_code == 0, res.output
    out = _text(res)
    assert f"{N} interactions" in out
    for metric in ("response_chars", "refusal", "json_valid", "pii_leak"):
        assert metric in out
    assert "95% CI" in out and "profile" in out and "process RSS peak MB" in out
    assert "per model version" in out  # two versions in the sample
    assert "heuristics: evaluator ran on cpu; no GPU figures recorded" in out
    (n_scores,) = _query(store, "SELECT COUNT(*) FROM scores")[0]
    assert n_scores == N * 6
    refusal = _query(store, "SELECT AVG(value) FROM scores WHERE metric = 'refusal'")[0][0]
    assert refusal == pytest.approx(1 / N)
    runs = _query(store, "SELECT status, evaluators FROM eval_runs")
    assert len(runs) == 1 and runs[0][0] == "completed"
    assert "heuristics" in json.loads(runs[0][1])


def test_sampling_options_limit_the_run(store: str) -> None:
    res = _run(
        "--db", store, "evaluate", "-e", "heuristics", "--model-version", "v2", "--no-progress"
    )
    assert res.exit_code == 0, res.output
    assert f"{N - 5} interactions" in _text(res)
    res = _run("--db", store, "evaluate", "-e", "heuristics", "--max-items", "2", "--no-progress")
    assert "2 interactions" in _text(res)


def test_unknown_evaluator_exits_2_listing_the_known_ones(store: str) -> None:
    res = _run("--db", store, "evaluate", "--evaluators", "heuristics,nope", "--no-progress")
    assert res.exit_code == 2
    assert "unknown evaluator(s): nope" in _text(res)
    for name in evaluator_names():
        assert name in _text(res)
    assert _query(store, "SELECT COUNT(*) FROM eval_runs")[0][0] == 0


def test_invalid_options_exit_2(store: str, tmp_path: Path) -> None:
    opts = tmp_path / "opts.yaml"
    opts.write_text(yaml.safe_dump({"heuristics": {"chars_per_tokn": 3}}))
    res = _run(
        "--db", store, "evaluate", "-e", "heuristics", "--options-file", str(opts), "--no-progress"
    )
    assert res.exit_code == 2
    assert "heuristics" in _text(res) and "chars_per_tokn" in _text(res)
    opts.write_text("- not\n- a mapping\n")
    res = _run(
        "--db", store, "evaluate", "-e", "heuristics", "--options-file", str(opts), "--no-progress"
    )
    assert res.exit_code == 2 and "must map evaluator names" in _text(res)


def test_rubrics_need_the_judge(store: str) -> None:
    res = _run("--db", store, "evaluate", "-e", "heuristics", "--rubrics", "helpfulness")
    assert res.exit_code == 2 and "--rubrics applies to the judge" in _text(res)


def test_unavailable_evaluator_is_reported_and_the_rest_runs(
    store: str, no_torch_hub: None
) -> None:
    res = _run("--db", store, "evaluate", "-e", "toxicity,heuristics", "--no-progress")
    assert res.exit_code == 0, res.output
    assert "toxicity did not run" in _text(res)
    assert "evaluator_options.toxicity.checkpoint" in _text(res)
    assert _query(store, "SELECT DISTINCT evaluator FROM scores") == [("heuristics",)]


def test_only_unavailable_evaluators_exit_2(store: str, no_torch_hub: None) -> None:
    res = _run("--db", store, "evaluate", "-e", "toxicity", "--no-progress")
    assert res.exit_code == 2
    assert "no evaluator could start" in _text(res)


def test_toxicity_options_from_file_and_from_the_environment(
    store: str,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    no_torch_hub: None,
) -> None:
    ckpt, base = tiny_detoxify_checkpoint(tmp_path_factory.getbasetemp() / "detoxify-tiny")
    options = {"checkpoint": str(ckpt), "huggingface_config_path": str(base), "device": "cpu"}
    opts = tmp_path / "opts.yaml"
    opts.write_text(yaml.safe_dump({"toxicity": options}))
    res = _run(
        "--db", store, "evaluate", "-e", "toxicity", "--options-file", str(opts), "--no-progress"
    )
    assert res.exit_code == 0, res.output
    assert "safety" in _text(res) and "identity_attack" in _text(res)
    assert _query(store, "SELECT COUNT(*) FROM scores WHERE evaluator = 'toxicity'")[0][0] == N * 7

    # The same options through the setting the unavailable message names: the same
    # evaluator configuration on the same sample, so the stored run is resumed, not repeated.
    monkeypatch.setenv("EVALWATCH_EVALUATOR_OPTIONS", json.dumps({"toxicity": options}))
    reset_settings()  # a new process would read the environment afresh
    res = _run("--db", store, "evaluate", "-e", "toxicity", "--no-progress")
    assert res.exit_code == 0, res.output
    assert "resuming run" in _text(res) and "0 new scores" in _text(res)
    assert _query(store, "SELECT COUNT(*) FROM eval_runs WHERE status = 'completed'")[0][0] == 1
    assert _query(store, "SELECT COUNT(*) FROM scores WHERE evaluator = 'toxicity'")[0][0] == N * 7


def test_rerun_after_a_crash_fills_the_gap_and_reports_the_whole_run(store: str) -> None:
    res = _run("--db", store, "evaluate", "-e", "heuristics", "--no-progress")
    assert res.exit_code == 0, res.output
    # A crash part-way: the last interactions' scores never reached the store.
    engine = make_engine(store)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM scores WHERE subject_id > 6"))
        conn.execute(sa.text("UPDATE eval_runs SET status = 'running', summary = '{}'"))
    engine.dispose()
    lost = N - 6
    res = _run("--db", store, "evaluate", "-e", "heuristics", "--no-progress")
    assert res.exit_code == 0, res.output
    out = _text(res)
    assert f"{lost * 6} new scores" in out
    assert _query(store, "SELECT COUNT(*) FROM scores")[0][0] == N * 6
    assert _query(store, "SELECT COUNT(*) FROM eval_runs")[0] == (1,)
    # The printed and stored summary covers the whole run, not just the refilled part.
    (summary,) = _query(store, "SELECT summary FROM eval_runs WHERE status = 'completed'")[0]
    refusal = next(m for m in json.loads(summary)["metrics"] if m["metric"] == "refusal")
    assert refusal["count"] == N


def test_empty_sample_creates_no_run(store: str) -> None:
    res = _run("--db", store, "evaluate", "-e", "heuristics", "--app", "nobody", "--no-progress")
    assert res.exit_code == 0
    assert "0 interactions (app nobody) in the store" in _text(res)
    assert _query(store, "SELECT COUNT(*) FROM eval_runs")[0][0] == 0


def test_rubrics_reach_the_judge_options(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # No judge endpoint here: the judge is reported unavailable, but its recorded config
    # shows where --rubrics went.
    for var in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "EVALWATCH_JUDGE__BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    res = _run(
        "--db",
        store,
        "evaluate",
        "-e",
        "heuristics,judge",
        "--rubrics",
        "helpfulness",
        "--no-progress",
    )
    assert res.exit_code == 0, res.output
    (evs,) = _query(store, "SELECT evaluators FROM eval_runs")[0]
    assert json.loads(evs)["judge"]["config"]["rubrics"] == ["helpfulness"]


def test_report_writes_a_self_contained_html_of_the_run(store: str, tmp_path: Path) -> None:
    assert _run("--db", store, "evaluate", "-e", "heuristics", "--no-progress").exit_code == 0
    out = tmp_path / "reports" / "run-1.html"
    res = _run("--db", store, "report", "1", "--html", str(out))
    assert res.exit_code == 0, res.output
    assert "report:" in _text(res)
    page = out.read_text()
    # Plots are inline images; nothing is fetched from elsewhere.
    assert page.count('src="data:image/png;base64,') >= 2
    assert "<script" not in page and "http://" not in page and "https://" not in page
    for metric in ("heuristics.refusal", "heuristics.response_chars"):
        assert metric in page
    assert "v1" in page and "v2" in page  # the comparison across model versions
    # The worst items carry their text: r3's refusal is the one refusal.
    assert "r3" in page and "sorry" in page

    res = _run("--db", store, "report", "99", "--html", str(out))
    assert res.exit_code == 2 and "no evaluation run 99" in _text(res)
    assert _run("--db", store, "report").exit_code == 2


def test_sample_counts_per_app_and_version(store: str) -> None:
    res = _run("--db", store, "sample", "--model-version", "v2", "--ids")
    assert res.exit_code == 0, res.output
    rows = {tuple(line.split("│")[1:4]) for line in res.output.splitlines() if "│" in line}
    cells = {tuple(c.strip() for c in r) for r in rows}
    # r5..r8 are v2: odd i is "shop" (5, 7), even is "support" (6, 8).
    assert ("shop", "v2", "2") in cells and ("support", "v2", "2") in cells
    assert "sample: 4 interactions" in _text(res)
