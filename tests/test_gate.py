"""The regression gate and the canary comparison, end to end: store, CLI, Prefect flow.

The support-qa test set is evaluated once per module (real all-MiniLM-L6-v2 embeddings and
heuristics on the baseline, equivalent and degraded predictions) into a SQLite file that each
test copies, so the gates themselves are fast and independent. Tests that need both backends
use small or heuristics-only data on the ``db_url`` fixture (SQLite, then PostgreSQL).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from evalwatch.cli import app
from evalwatch.commands import compare as compare_commands
from evalwatch.commands import gate as gate_commands
from evalwatch.settings import get_settings, reset_settings
from evalwatch.storage.db import make_engine, upgrade

if not any(c.name == "gate" for c in app.registered_commands):
    gate_commands.register(app)
if not any(c.name == "compare" for c in app.registered_commands):
    compare_commands.register(app)

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "datasets"
TEST_SET = DATA / "support-qa.jsonl"
PREDICTIONS = {
    name: DATA / f"support-qa.predictions.{name}.jsonl"
    for name in ("baseline", "candidate-equivalent", "candidate-degraded")
}
EXAMPLE_POLICY = DATA / "gate-policy.example.yaml"
BILLING_TAGS = {
    "billing",
    "charges",
    "refunds",
    "payment-methods",
    "subscription",
    "invoices",
    "promotions",
}

RULES = """version: 1
channels: {}
rules:
  - {name: gate-failed, selector: gate.verdict, aggregation: any, comparison: '==',
     threshold: 1, window: run, scope: {kind: gate}, severity: high}
  - {name: canary-worse, selector: gate.verdict, aggregation: any, comparison: '==',
     threshold: 1, window: run, scope: {kind: canary}, severity: critical}
"""


@pytest.fixture(autouse=True)
def _rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Rules without channels: alerts are stored, nothing tries to reach a Prefect block.
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    monkeypatch.setenv("EVALWATCH_RULES_FILE", str(path))
    monkeypatch.setenv("COLUMNS", "200")
    reset_settings()


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def invoke(args: list[str]) -> Any:
    reset_settings()
    return CliRunner().invoke(app, args)


def _reports(url: str) -> list[dict[str, Any]]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = (
                conn.execute(
                    sa.text(
                        "SELECT kind, dataset_id, verdict, exit_code, report FROM "
                        "regression_reports ORDER BY id"
                    )
                )
                .mappings()
                .all()
            )
            out = []
            for r in rows:
                rep = r["report"]
                out.append(dict(r) | {"report": json.loads(rep) if isinstance(rep, str) else rep})
            return out
    finally:
        engine.dispose()


def _alerts(url: str) -> list[tuple[str, str]]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text("SELECT rule, status FROM alerts"))]
    finally:
        engine.dispose()


def _count_runs(url: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT COUNT(*) FROM eval_runs")).scalar_one())
    finally:
        engine.dispose()


# --------------------------------------------------------------------------------------------
# The support-qa store, evaluated once
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def support_qa(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """support-qa with the three prediction files evaluated by embedding + heuristics."""
    from evalwatch.ingest.datasets import load_dataset
    from evalwatch.runs.dataset import DatasetParams, evaluate_dataset

    reset_settings()
    db = tmp_path_factory.mktemp("support-qa") / "store.db"
    engine = make_engine(f"sqlite:///{db}")
    upgrade(engine)
    loaded = load_dataset(engine, TEST_SET, "support-qa")
    assert loaded.dataset is not None and loaded.items == 250
    runs = {}
    for name, path in PREDICTIONS.items():
        prepared, result = evaluate_dataset(
            engine,
            DatasetParams(dataset="support-qa", outputs_file=str(path)),
            get_settings(),
            progress=False,
        )
        assert result.unavailable == {}
        runs[name] = prepared.run_id
    engine.dispose()
    return {"db": db, "runs": runs, "version": loaded.dataset.version}


@pytest.fixture
def qa_url(support_qa: dict[str, Any], tmp_path: Path) -> str:
    """A private copy of the evaluated support-qa store."""
    db = tmp_path / "store.db"
    shutil.copy(support_qa["db"], db)
    return f"sqlite:///{db}"


@pytest.mark.parametrize("policy", [None, EXAMPLE_POLICY], ids=["default-policy", "example"])
def test_equivalent_candidate_passes(support_qa, qa_url, policy) -> None:
    args = [
        "--db",
        qa_url,
        "gate",
        "--dataset",
        "support-qa",
        "--baseline-model",
        "acme-chat-v1.0",
        "--candidate-run",
        str(support_qa["runs"]["candidate-equivalent"]),
        "--no-progress",
    ]
    res = invoke(args + (["--policy", str(policy)] if policy else []))
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].startswith("evalwatch gate: PASS")
    assert "embedding.reference_similarity" in res.stdout and "heuristics.refusal" in res.stdout
    # Response length is descriptive: reported as not compared, never a reason to fail.
    assert "heuristics.response_chars: descriptive" in res.stdout
    assert "stored as regression report 1" in res.stdout
    [row] = _reports(qa_url)
    assert (row["kind"], row["verdict"], row["exit_code"]) == ("gate", "pass", 0)
    report = row["report"]
    assert report["meta"]["dataset_version"] == support_qa["version"]
    assert report["meta"]["candidate"]["model"] == "acme-chat-v1.1"
    decisions = {m["metric"]: m["decision"] for m in report["metrics"]}
    assert set(decisions) == {
        "embedding.reference_similarity",
        "embedding.relevance",
        "heuristics.empty_response",
        "heuristics.pii_leak",
        "heuristics.refusal",
    }
    assert set(decisions.values()) == {"pass"}
    # Built-in directions apply without a policy: refusals are a pass/fail rate, more is worse.
    refusal = next(m for m in report["metrics"] if m["metric"] == "heuristics.refusal")
    assert (refusal["kind"], refusal["higher_is_better"], refusal["test"]) == (
        "binary",
        False,
        "mcnemar_exact",
    )
    assert _alerts(qa_url) == []
    assert _count_runs(qa_url) == 3  # both sides were already evaluated: nothing re-run


def test_degraded_candidate_fails_names_billing_and_fires_the_gate_alert(
    support_qa, qa_url
) -> None:
    res = invoke(
        [
            "--db",
            qa_url,
            "gate",
            "--dataset",
            "support-qa",
            "--baseline-run",
            str(support_qa["runs"]["baseline"]),
            "--candidate-outputs",
            str(PREDICTIONS["candidate-degraded"]),
            "--policy",
            str(EXAMPLE_POLICY),
            "--json",
            "--no-progress",
        ]
    )
    assert res.exit_code == 1, res.output
    report = json.loads(res.stdout)
    assert report["mode"] == "gate" and report["verdict"] == "regression"
    assert "billing" in report["regressing_slices"]
    # Only billing items differ: no slice of another topic may be named.
    assert set(report["regressing_slices"]) <= BILLING_TAGS
    assert any("slice 'billing' regressed" in r for r in report["reasons"])
    sim = next(m for m in report["metrics"] if m["metric"] == "embedding.reference_similarity")
    assert sim["decision"] == "regression" and sim["ci_high"] < -sim["margin"]
    assert sim["n_both"] == 250 and sim["margin"] == 0.01
    degraded = {r["id"]: r["output"] for r in _rows(PREDICTIONS["candidate-degraded"])}
    baseline = {r["id"]: r["output"] for r in _rows(PREDICTIONS["baseline"])}
    worst = [w for w in report["worst_items"] if w["metric"] == "embedding.reference_similarity"]
    assert worst and all("billing" in w["tags"] for w in worst)
    for w in worst:
        d = w["details"]
        assert d["candidate_output"] == degraded[w["item_id"]]
        assert d["baseline_output"] == baseline[w["item_id"]]
        assert d["input"] and d["reference"]
    assert report["meta"]["alerts"][0]["rule"] == "gate-failed"
    assert report["meta"]["alerts"][0]["action"] == "open"
    [row] = _reports(qa_url)
    assert (row["kind"], row["verdict"], row["exit_code"]) == ("gate", "regression", 1)
    assert row["report"]["regressing_slices"] == report["regressing_slices"]
    assert report["meta"]["regression_report_id"] == 1
    assert _alerts(qa_url) == [("gate-failed", "open")]
    # The degraded predictions were evaluated by the fixture: the run was resumed, not redone.
    assert _count_runs(qa_url) == 3


def test_text_summary_shows_both_outputs_of_the_worst_items(support_qa, qa_url) -> None:
    res = invoke(
        [
            "--db",
            qa_url,
            "gate",
            "--dataset",
            "support-qa",
            "--baseline-run",
            str(support_qa["runs"]["baseline"]),
            "--candidate-run",
            str(support_qa["runs"]["candidate-degraded"]),
            "--no-progress",
        ]
    )
    assert res.exit_code == 1, res.output
    out = res.stdout
    assert out.startswith("evalwatch gate: REGRESSION")
    assert "Outputs of the items that regressed most:" in out
    section = out.split("Outputs of the items that regressed most:")[1]
    assert "baseline:" in section and "candidate:" in section and "[billing," in section
    assert "alert 1 open [high] gate-failed" in out


def test_regression_gate_flow_publishes_markdown_and_stores_the_report(
    support_qa, qa_url, prefect_harness
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from evalwatch.flows.gate import regression_gate

    state = regression_gate(
        dataset="support-qa",
        baseline_run=support_qa["runs"]["baseline"],
        candidate_outputs=str(PREDICTIONS["candidate-degraded"]),
        policy_file=str(EXAMPLE_POLICY),
        database_url=qa_url,
        return_state=True,
    )
    assert state.is_completed()
    result = state.result()
    assert result["verdict"] == "regression" and result["exit_code"] == 1
    assert "billing" in result["regressing_slices"]
    assert [a["rule"] for a in result["alerts"]] == ["gate-failed"]
    [row] = _reports(qa_url)
    assert row["verdict"] == "regression" and result["report_id"] == 1
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    by_key = {a.key: a for a in arts if a.key}
    md = by_key["evalwatch-gate-support-qa"].data
    assert isinstance(md, str)
    assert md.startswith("## evalwatch gate: REGRESSION")
    assert "billing" in md and "embedding.reference_similarity" in md
    assert "### Outputs of the items that regressed most" in md


def test_regression_gate_flow_can_fail_its_run_on_regression(
    support_qa, qa_url, prefect_harness
) -> None:
    from evalwatch.flows.gate import regression_gate

    state = regression_gate(
        dataset="support-qa",
        baseline_run=support_qa["runs"]["baseline"],
        candidate_run=support_qa["runs"]["candidate-degraded"],
        fail_on_regression=True,
        database_url=qa_url,
        return_state=True,
    )
    assert state.is_failed()
    assert "regression gate on support-qa: regression" in str(state.message)
    assert [r["verdict"] for r in _reports(qa_url)] == ["regression"]  # stored before failing


def test_regression_gate_flow_fails_on_bad_input_without_retrying(
    support_qa, qa_url, prefect_harness
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from evalwatch.flows.gate import regression_gate

    state = regression_gate(
        dataset="support-qa",
        baseline_run=support_qa["runs"]["baseline"],
        candidate_model="never-seen",  # no stored answers and no endpoint to call it
        database_url=qa_url,
        return_state=True,
    )
    assert state.is_failed()
    with get_client(sync_client=True) as client:
        tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
            )
        )
    side = [t for t in tasks if t.name.startswith("evaluate-gate-side")]
    failed = [t.state for t in side if t.state is not None and t.state.is_failed()]
    assert len(failed) == 1 and all(t.run_count == 1 for t in side)
    assert "EVALWATCH_TARGET__BASE_URL" in str(failed[0].message)
    assert _reports(qa_url) == []


# --------------------------------------------------------------------------------------------
# Bad input, on both backends (small test sets, heuristics only)
# --------------------------------------------------------------------------------------------


def _small_qa(tmp_path: Path, n: int = 40, edit_first: bool = False) -> Path:
    items = _rows(TEST_SET)[:n]
    if edit_first:
        items[0] = items[0] | {"reference": items[0]["reference"] + " (policy updated)"}
    return _write(tmp_path / f"qa-{int(edit_first)}.jsonl", items)


def _small_preds(tmp_path: Path, name: str, n: int = 40) -> Path:
    return _write(tmp_path / f"{name}.jsonl", _rows(PREDICTIONS[name])[:n])


def _evaluate(url: str, preds: Path, version: str | None = None) -> int:
    from evalwatch.runs.dataset import DatasetParams, evaluate_dataset

    engine = make_engine(url)
    try:
        prepared, _ = evaluate_dataset(
            engine,
            DatasetParams(
                dataset="qa", version=version, outputs_file=str(preds), evaluators=["heuristics"]
            ),
            get_settings(),
            progress=False,
        )
        return prepared.run_id
    finally:
        engine.dispose()


def _load(url: str, path: Path) -> str:
    from evalwatch.ingest.datasets import load_dataset

    engine = make_engine(url)
    try:
        loaded = load_dataset(engine, path, "qa")
        assert loaded.dataset is not None
        return loaded.dataset.version
    finally:
        engine.dispose()


def test_mismatched_dataset_versions_exit_2(db_url, tmp_path) -> None:
    v1 = _load(db_url, _small_qa(tmp_path))
    base_run = _evaluate(db_url, _small_preds(tmp_path, "baseline"), v1)
    v2 = _load(db_url, _small_qa(tmp_path, edit_first=True))
    assert v1 != v2
    cand_run = _evaluate(db_url, _small_preds(tmp_path, "candidate-equivalent"), v2)
    res = invoke(
        [
            "--db",
            db_url,
            "gate",
            "--dataset",
            "qa",
            "--baseline-run",
            str(base_run),
            "--candidate-run",
            str(cand_run),
            "--no-progress",
        ]
    )
    assert res.exit_code == 2, res.output
    assert "not comparable" in res.output
    assert f"dataset_version: baseline '{v1}', candidate '{v2}'" in res.output
    # Asking for a version the baseline run is not on is bad input too.
    res = invoke(
        [
            "--db",
            db_url,
            "gate",
            "--dataset",
            "qa",
            "--baseline-run",
            str(base_run),
            "--candidate-model",
            "acme-chat-v1.1",
            "--dataset-version",
            v2,
        ]
    )
    assert res.exit_code == 2
    assert f"is on version {v1} of qa, not {v2}" in res.output
    assert _reports(db_url) == []


def test_mismatched_evaluator_versions_exit_2(db_url, tmp_path, monkeypatch) -> None:
    from evalwatch.evaluators.heuristics import HeuristicsEvaluator

    version = _load(db_url, _small_qa(tmp_path))
    base_run = _evaluate(db_url, _small_preds(tmp_path, "baseline"), version)
    monkeypatch.setattr(HeuristicsEvaluator, "version", "2")  # a newer heuristics release
    cand_run = _evaluate(db_url, _small_preds(tmp_path, "candidate-equivalent"), version)
    runs_before = _count_runs(db_url)
    # Run against run, and run against a predictions file that today's version would score:
    # both refused, the second before any evaluation.
    for candidate in (
        ["--candidate-run", str(cand_run)],
        ["--candidate-outputs", str(_small_preds(tmp_path, "candidate-degraded"))],
    ):
        res = invoke(
            [
                "--db",
                db_url,
                "gate",
                "--dataset",
                "qa",
                "--baseline-run",
                str(base_run),
                *candidate,
                "--no-progress",
            ]
        )
        assert res.exit_code == 2, res.output
        assert "evaluator_versions.heuristics: baseline '1', candidate '2'" in res.output
    assert _count_runs(db_url) == runs_before
    assert _reports(db_url) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--candidate-model", "m2"], "exactly one of --baseline-run or --baseline-model"),
        (["--baseline-model", "m1"], "exactly one of --candidate-run, --candidate-model"),
        (
            ["--baseline-model", "m1", "--baseline-run", "1", "--candidate-model", "m2"],
            "exactly one of --baseline-run or --baseline-model",
        ),
        (["--baseline-run", "99", "--candidate-model", "m2"], "baseline run 99 does not exist"),
        (
            ["--baseline-model", "m1", "--candidate-model", "m2", "--evaluators", "nope"],
            "unknown evaluator(s): nope",
        ),
        (
            ["--baseline-model", "m1", "--candidate-model", "m2", "--policy", "missing.yaml"],
            "cannot read gate policy: missing.yaml does not exist",
        ),
        (["--baseline-model", "m1", "--candidate-model", "m2"], "no test set 'qa'"),
    ],
)
def test_bad_input_exits_2(sqlite_engine, args, message) -> None:
    res = invoke(["--db", str(sqlite_engine.url), "gate", "--dataset", "qa", *args])
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.output.split())


def test_model_without_stored_answers_or_endpoint_exits_2(db_url, tmp_path) -> None:
    version = _load(db_url, _small_qa(tmp_path))
    base_run = _evaluate(db_url, _small_preds(tmp_path, "baseline"), version)
    res = invoke(
        [
            "--db",
            db_url,
            "gate",
            "--dataset",
            "qa",
            "--baseline-run",
            str(base_run),
            "--candidate-model",
            "never-seen",
            "--no-progress",
        ]
    )
    assert res.exit_code == 2
    assert "EVALWATCH_TARGET__BASE_URL" in res.output


def test_an_evaluator_that_cannot_start_is_bad_input(sqlite_engine, tmp_path) -> None:
    url = str(sqlite_engine.url)
    version = _load(url, _small_qa(tmp_path))
    base_run = _evaluate(url, _small_preds(tmp_path, "baseline"), version)
    res = invoke(
        [
            "--db",
            url,
            "gate",
            "--dataset",
            "qa",
            "--baseline-run",
            str(base_run),
            "--candidate-outputs",
            str(_small_preds(tmp_path, "candidate-equivalent")),
            "--evaluators",
            "heuristics,judge",
            "--no-progress",
        ]
    )
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())
    assert "the baseline has no score from evaluator 'judge'" in text
    assert "no judge model configured" in text
    assert _reports(url) == []


def test_slice_regression_fails_the_gate_when_the_whole_does_not(db_url, tmp_path) -> None:
    """Heuristics only: truncated billing answers are shorter; the policy gates on length."""
    _load(db_url, _write(tmp_path / "qa.jsonl", _rows(TEST_SET)))
    base_run = _evaluate(db_url, PREDICTIONS["baseline"])
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "metrics:\n  - {metric: heuristics.response_chars, margin: 0.15, margin_kind: relative}\n"
    )
    res = invoke(
        [
            "--db",
            db_url,
            "gate",
            "--dataset",
            "qa",
            "--baseline-run",
            str(base_run),
            "--candidate-outputs",
            str(PREDICTIONS["candidate-degraded"]),
            "--policy",
            str(policy),
            "--json",
            "--no-progress",
        ]
    )
    assert res.exit_code == 1, res.output
    report = json.loads(res.stdout)
    chars = next(m for m in report["metrics"] if m["metric"] == "heuristics.response_chars")
    assert chars["decision"] == "pass" and chars["margin_spec"] == "15% rel"
    assert {m["decision"] for m in report["metrics"]} == {"pass"}
    assert report["verdict"] == "regression" and "billing" in report["regressing_slices"]
    flagged = [s for s in report["slices"] if s["decision"] == "regression"]
    assert {s["metric"] for s in flagged} == {"heuristics.response_chars"}
    assert {s["slice"] for s in flagged} <= BILLING_TAGS
    [row] = _reports(db_url)
    assert (row["verdict"], row["exit_code"]) == ("regression", 1)


# --------------------------------------------------------------------------------------------
# Judge: repeats and pairwise verdicts (a fake OpenAI-compatible judge)
# --------------------------------------------------------------------------------------------


@pytest.fixture
def judge_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from evalwatch.testing import FakeJudgeServer

    with FakeJudgeServer() as srv:
        monkeypatch.setenv("EVALWATCH_JUDGE__BASE_URL", srv.base_url)
        monkeypatch.setenv("EVALWATCH_JUDGE__MODEL", "judge-test")
        monkeypatch.setenv("EVALWATCH_JUDGE__API_KEY", "sk-test-0123456789")
        reset_settings()
        yield srv


def _marked(
    tmp_path: Path, name: str, n: int, score: int, worse_from: int = 0, worse: int = 2
) -> Path:
    # The fake judge grades "[[score=N]]": a candidate marked lower on items >= worse_from.
    rows = _rows(PREDICTIONS["baseline"])[:n]
    for i, r in enumerate(rows):
        s = worse if (name != "baseline" and i >= worse_from) else score
        r["model"] = f"model-{name}"
        r["output"] = f"{r['output']} [[score={s}]]"
    return _write(tmp_path / f"{name}.jsonl", rows)


def test_repeats_rejudge_each_item_and_catch_a_judge_regression(
    sqlite_engine, tmp_path, judge_env
) -> None:
    url = str(sqlite_engine.url)
    _load(url, _small_qa(tmp_path, n=30))
    base = _marked(tmp_path, "baseline", 30, score=5)
    cand = _marked(tmp_path, "candidate", 30, score=5, worse_from=0, worse=3)
    base_run = _evaluate_with(url, base, ["heuristics", "judge"])
    calls_before = judge_env.request_count
    res = invoke(
        [
            "--db",
            url,
            "gate",
            "--dataset",
            "qa",
            "--baseline-run",
            str(base_run),
            "--candidate-outputs",
            str(cand),
            "--repeats",
            "3",
            "--json",
            "--no-progress",
        ]
    )
    assert res.exit_code == 1, res.output
    report = json.loads(res.stdout)
    assert report["policy"]["repeats"] == 3 and report["meta"]["repeats"] == 3
    judge = next(m for m in report["metrics"] if m["metric"] == "judge.helpfulness")
    assert judge["n_both"] == 30 and judge["decision"] == "regression"
    assert judge["baseline_mean"] == 1.0 and judge["candidate_mean"] == 0.5  # 5 -> 3 on 1-5
    # The candidate's first judging (30 calls), then 3 judgements per item and side, of which
    # the first is the stored one (the judge cache in the store answers it without a call).
    assert judge_env.request_count - calls_before == 30 + (3 - 1) * 2 * 30
    w = next(w for w in report["worst_items"] if w["metric"] == "judge.helpfulness")
    assert (
        w["details"]["candidate_explanation"] and "[[score=3]]" in w["details"]["candidate_output"]
    )


def _evaluate_with(url: str, preds: Path, evaluators: list[str]) -> int:
    from evalwatch.runs.dataset import DatasetParams, evaluate_dataset

    engine = make_engine(url)
    try:
        prepared, result = evaluate_dataset(
            engine,
            DatasetParams(dataset="qa", outputs_file=str(preds), evaluators=evaluators),
            get_settings(),
            progress=False,
        )
        assert result.unavailable == {}
        return prepared.run_id
    finally:
        engine.dispose()


def test_pairwise_verdicts_are_compared_with_the_sign_test(
    sqlite_engine, tmp_path, judge_env
) -> None:
    url = str(sqlite_engine.url)
    _load(url, _small_qa(tmp_path, n=30))
    base = _marked(tmp_path, "baseline", 30, score=4)
    cand = _marked(tmp_path, "candidate", 30, score=4, worse_from=10, worse=2)
    base_run = _evaluate_with(url, base, ["heuristics"])
    res = invoke(
        [
            "--db",
            url,
            "gate",
            "--dataset",
            "qa",
            "--baseline-run",
            str(base_run),
            "--candidate-outputs",
            str(cand),
            "--pairwise",
            "--json",
            "--no-progress",
        ]
    )
    assert res.exit_code == 1, res.output
    report = json.loads(res.stdout)
    pw = next(m for m in report["metrics"] if m["metric"] == "judge.helpfulness_pairwise")
    assert pw["kind"] == "pairwise" and pw["test"] == "sign_test"
    # Items 0-9 score the same on both sides (tie); the 20 marked lower lose in both orders.
    assert (pw["wins"], pw["ties"], pw["losses"]) == (0, 10, 20)
    assert pw["decision"] == "regression"
    losers = [w for w in report["worst_items"] if w["metric"] == "judge.helpfulness_pairwise"]
    assert losers and all(w["verdict"] == "loss" for w in losers)
    assert all(w["details"]["judge_explanation"] for w in losers)
    assert report["meta"]["pairwise"] is True


def test_repeats_without_a_judge_are_treated_as_one(sqlite_engine, tmp_path) -> None:
    url = str(sqlite_engine.url)
    version = _load(url, _small_qa(tmp_path))
    base_run = _evaluate(url, _small_preds(tmp_path, "baseline"), version)
    res = invoke(
        [
            "--db",
            url,
            "gate",
            "--dataset",
            "qa",
            "--baseline-run",
            str(base_run),
            "--candidate-outputs",
            str(_small_preds(tmp_path, "candidate-equivalent")),
            "--repeats",
            "4",
            "--json",
            "--no-progress",
        ]
    )
    report = json.loads(res.stdout)
    assert report["policy"]["repeats"] == 1
    assert any("repeats treated as 1" in w for w in report["warnings"])
    assert report["verdict"] == "pass" and res.exit_code == 0


# --------------------------------------------------------------------------------------------
# Policy completion (pure)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("listed", "metric", "expected"),
    [
        (None, "heuristics.refusal", ("binary", False)),
        (None, "heuristics.empty_response", ("binary", False)),
        (None, "latency_ms", ("continuous", False)),
        (None, "embedding.relevance", ("continuous", True)),
        ({"metric": "heuristics.refusal", "margin": 0.02}, "heuristics.refusal", ("binary", False)),
        ({"metric": "latency_ms", "higher_is_better": True}, "latency_ms", ("continuous", True)),
        (
            {"metric": "heuristics.refusal", "kind": "continuous"},
            "heuristics.refusal",
            ("continuous", False),
        ),
    ],
)
def test_effective_policy_fills_only_what_the_policy_leaves_unset(listed, metric, expected):
    from evalwatch.checks.policy import policy_from_mapping
    from evalwatch.runs.gate import effective_policy

    policy = policy_from_mapping({"metrics": [listed] if listed else []})
    mp = effective_policy(policy, [metric]).metric_policy(metric)
    assert (mp.kind, mp.higher_is_better) == expected
    if listed and "margin" in listed:
        assert mp.margin == listed["margin"]


def test_more_refusals_fail_the_gate_without_any_policy() -> None:
    from evalwatch.checks.policy import default_policy
    from evalwatch.checks.regression import run_gate
    from evalwatch.runs.gate import effective_policy

    base = {"heuristics.refusal": {f"q{i}": 0.0 for i in range(60)}}
    cand = {"heuristics.refusal": {f"q{i}": float(i < 15) for i in range(60)}}
    naive = run_gate(base, cand, policy=default_policy())
    assert naive.verdict == "pass"  # read as "higher is better", more refusals look good
    fixed = run_gate(base, cand, policy=effective_policy(default_policy(), list(base)))
    assert fixed.verdict == "regression"


# --------------------------------------------------------------------------------------------
# Canary comparison on live traffic, on both backends
# --------------------------------------------------------------------------------------------

UNTIL = datetime(2026, 11, 14, tzinfo=UTC)


def _traffic(
    version: str,
    n: int,
    seed: int,
    refusal: float,
    latency: float,
    start: datetime,
    app: str = "support-bot",
) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        refused = rng.random() < refusal
        rows.append(
            {
                "request_id": f"{app}-{version}-{seed}-{i}",
                "ts": start + timedelta(seconds=float(rng.uniform(0, 20 * 3600))),
                "app": app,
                "model_name": "acme-chat",
                "model_version": version,
                "prompt": f"Where is my order {i}?",
                "response": "I'm sorry, but I can't help with that."
                if refused
                else f"Your order {i} ships tomorrow and arrives in two days.",
                "latency_ms": float(rng.lognormal(np.log(latency), 0.25)),
            }
        )
    return rows


@pytest.fixture
def canary_store(db_url: str) -> Iterator[str]:
    from evalwatch.evaluators.heuristics import HeuristicsEvaluator
    from evalwatch.evaluators.runner import run_evaluation
    from evalwatch.storage.repo import (
        create_run,
        insert_feedback,
        insert_interactions,
        interaction_ids_for,
    )

    engine = make_engine(db_url)
    start = UNTIL - timedelta(hours=22)
    rows = (
        _traffic("v1", 150, 1, refusal=0.03, latency=1000, start=start)
        + _traffic("v1b", 150, 2, refusal=0.03, latency=1000, start=start)
        + _traffic("v2", 150, 3, refusal=0.30, latency=1500, start=start)
        # Outside the window, or another app: must not count.
        + _traffic("v2", 200, 4, refusal=0.0, latency=200, start=start - timedelta(days=3))
        + _traffic("v2", 100, 5, refusal=0.0, latency=200, start=start, app="sales")
    )
    insert_interactions(engine, rows)
    ids = interaction_ids_for(engine, [r["request_id"] for r in rows])
    run = create_run(engine, "traffic")
    assert run.id is not None
    run_evaluation(
        engine, [HeuristicsEvaluator()], sorted(ids.values()), run_id=run.id, progress=False
    )
    fb = []
    for r in rows[:450]:
        if r["request_id"].endswith(("0", "5")):
            good = r["model_version"] != "v2"
            fb.append(
                {
                    "feedback_key": f"fb-{r['request_id']}",
                    "interaction_id": ids[r["request_id"]],
                    "kind": "rating",
                    "value": 5.0 if good else 2.0,
                    "ts": r["ts"],
                }
            )
    insert_feedback(engine, fb)
    engine.dispose()
    yield db_url


def test_canary_worse_exits_1_and_fires_the_canary_rule(canary_store) -> None:
    res = invoke(
        [
            "--db",
            canary_store,
            "compare",
            "--app",
            "support-bot",
            "--model-a",
            "v1",
            "--model-b",
            "v2",
            "--window",
            "24h",
            "--until",
            UNTIL.isoformat(),
            "--json",
        ]
    )
    assert res.exit_code == 1, res.output
    report = json.loads(res.stdout)
    assert report["mode"] == "canary" and report["verdict"] == "regression"
    assert report["meta"]["interactions"] == {"v1": 150, "v2": 150}
    decisions = {m["metric"]: m for m in report["metrics"]}
    assert decisions["heuristics.refusal"]["decision"] == "regression"
    assert decisions["heuristics.refusal"]["test"] == "two_proportion_newcombe"
    assert decisions["latency_ms"]["decision"] == "regression"
    assert decisions["latency_ms"]["paired"] is False
    assert decisions["latency_ms"]["p_rank"] < 0.001
    assert decisions["feedback.rating"]["decision"] == "regression"
    assert decisions["heuristics.empty_response"]["decision"] == "pass"
    assert "heuristics.response_chars" in report["meta"]["not_compared"]
    [row] = _reports(canary_store)
    assert (row["kind"], row["dataset_id"], row["verdict"], row["exit_code"]) == (
        "canary",
        None,
        "regression",
        1,
    )
    assert report["meta"]["alerts"][0]["rule"] == "canary-worse"
    assert _alerts(canary_store) == [("canary-worse", "open")]


def test_equal_versions_pass_the_canary(canary_store) -> None:
    res = invoke(
        [
            "--db",
            canary_store,
            "compare",
            "--app",
            "support-bot",
            "--model-a",
            "v1",
            "--model-b",
            "v1b",
            "--window",
            "24h",
            "--until",
            UNTIL.isoformat(),
        ]
    )
    assert res.exit_code == 0, res.output
    assert "evalwatch canary comparison: PASS" in res.stdout
    assert "support-bot: v1 (150 interactions) vs canary v1b (150)" in res.stdout
    [row] = _reports(canary_store)
    assert (row["kind"], row["verdict"], row["exit_code"]) == ("canary", "pass", 0)
    assert _alerts(canary_store) == []


def test_compare_without_until_anchors_at_the_newest_traffic(canary_store) -> None:
    # The traffic ended days before "now": the window ends at the hour after its newest row.
    res = invoke(
        [
            "--db",
            canary_store,
            "compare",
            "--app",
            "support-bot",
            "--model-a",
            "v1",
            "--model-b",
            "v2",
            "--window",
            "24h",
            "--json",
        ]
    )
    assert res.exit_code == 1, res.output
    meta = json.loads(res.stdout)["meta"]
    assert meta["interactions"] == {"v1": 150, "v2": 150}
    end = datetime.fromisoformat(meta["window"]["end"])
    assert end <= UNTIL and end.minute == end.second == 0


def test_compare_on_an_empty_window_names_the_newest_traffic(canary_store) -> None:
    res = invoke(
        [
            "--db",
            canary_store,
            "compare",
            "--app",
            "support-bot",
            "--model-a",
            "v1",
            "--model-b",
            "v2",
            "--window",
            "1h",
            "--until",
            "2026-11-01T00:00:00Z",
        ]
    )
    assert res.exit_code == 2, res.output
    assert (
        "0 interactions (app support-bot; model version v1, v2) between 2026-10-31 23:00 "
        "and 2026-11-01 00:00 UTC; the newest (app support-bot; model version v1, v2) is "
        "2026-11-13"
    ) in " ".join(res.output.split())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model-b", "v9"], "no traffic of app 'support-bot' for version(s) 'v9'"),
        (["--model-b", "v1"], "model_a and model_b are the same version"),
        (["--model-b", "v2", "--window", "soon"], "bad duration 'soon'"),
    ],
)
def test_canary_bad_input_exits_2(canary_store, args, message) -> None:
    res = invoke(
        [
            "--db",
            canary_store,
            "compare",
            "--app",
            "support-bot",
            "--model-a",
            "v1",
            "--until",
            UNTIL.isoformat(),
            *args,
        ]
    )
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.output.split())
