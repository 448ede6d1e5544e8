"""Journey: the CLI's messages and exit codes, and the commands a user looks around with.

Issue #12, defects 6 and 9. A bad store URL is one line and exit 2; a store, Prefect server or
internal failure is one line and exit 3 (never 0 or 1, which CI reads as pass / regression),
with the traceback only under ``--debug``; runs and the quarantine can be listed and shown (the
raw row redacted); ``db prune`` counts before it deletes and does not delete unasked; flags
show no value placeholder; ``--unscored-by`` works wherever traffic is evaluated; gate errors
name flags, not Python fields.
"""

from __future__ import annotations

import re
import sqlite3
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from evalwatch.evaluators.base import DEFAULT_EVALUATORS
from tests.conftest import PG_ADMIN_URL
from tests.journeys.conftest import (
    TRACEBACK,
    DemoStore,
    PrefectServer,
    Result,
    base_env,
    free_port,
    run_cli,
)

BASELINE = "datasets/support-qa.predictions.baseline.jsonl"
EQUIVALENT = "datasets/support-qa.predictions.candidate-equivalent.jsonl"


def _error_lines(res: Result) -> list[str]:
    """The lines of stderr that are evalwatch's own error messages."""
    return [line for line in res.stderr.splitlines() if line.startswith("error:")]


def _one_error_line(res: Result) -> str:
    """The single error line a failure must print (and nothing else of evalwatch's on stderr)."""
    lines = _error_lines(res)
    assert len(lines) == 1, str(res)
    return lines[0]


def _count(db: Path, sql: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(sql).fetchone()[0])


# --- defect 6: one line and an honest exit code ---------------------------------------------


@pytest.mark.parametrize("url", ["notaurl", "foo://host/db", "mysql://host/db"])
def test_bad_store_url_is_one_line_and_exit_2(user_dir: Path, url: str) -> None:
    res = run_cli("--db", url, "datasets", "list", cwd=user_dir)
    assert res.code == 2, str(res)
    line = _one_error_line(res)
    assert url in line and "sqlite:///" in line  # names the URL and shows a good one
    assert res.stderr.strip() == line


def test_unreachable_postgres_exits_3_naming_it(user_dir: Path) -> None:
    port = free_port()  # nothing listens there
    res = run_cli(
        "--db", f"postgresql+psycopg://postgres@127.0.0.1:{port}/x", "runs", "list", cwd=user_dir
    )
    assert res.code == 3, str(res)
    line = _one_error_line(res)
    assert f"127.0.0.1:{port}" in line and "cannot reach the store" in line


@pytest.mark.postgres
def test_db_upgrade_on_a_missing_postgres_database_says_how_to_create_it(user_dir: Path) -> None:
    name = f"evalwatch_missing_{uuid.uuid4().hex[:8]}"
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    res = run_cli("--db", url, "db", "upgrade", cwd=user_dir)
    assert res.code == 3, str(res)
    line = _one_error_line(res)
    assert f"database '{name}' does not exist" in line
    assert f"createdb -h 127.0.0.1 -p 5432 -U postgres {name}" in line
    assert f'CREATE DATABASE "{name}"' in line
    # Following the advice works.
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        done = run_cli("--db", url, "db", "upgrade", cwd=user_dir)
        assert done.code == 0, str(done)
        assert "(was empty)" in done.out
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_bad_setting_is_exit_2_naming_the_variable(user_dir: Path) -> None:
    res = run_cli("runs", "list", cwd=user_dir, env=base_env(EVALWATCH_TASK_RUNNER="bogus"))
    assert res.code == 2, str(res)
    assert "EVALWATCH_TASK_RUNNER" in _one_error_line(res)


def test_internal_error_is_one_line_exit_3_and_debug_shows_the_traceback(store: DemoStore) -> None:
    # A damaged row: the run's parameters are not JSON any more.
    with sqlite3.connect(store.db) as conn:
        conn.execute("UPDATE eval_runs SET params = '{broken' WHERE id = 1")
    args = ("--db", store.url, "runs", "show", "1")
    plain = run_cli(*args, cwd=store.out.parent)
    assert plain.code == 3, str(plain)
    line = _one_error_line(plain)
    assert line.startswith("error: internal error: JSONDecodeError:")
    assert "run with --debug for the traceback" in line

    for debug_args, env in (
        (("--debug", *args), base_env()),
        (args, base_env(EVALWATCH_DEBUG="1")),
    ):
        res = run_cli(*debug_args, cwd=store.out.parent, env=env, traceback_ok=True)
        assert res.code == 3, str(res)  # a traceback shown is still not exit 1
        assert TRACEBACK in res.stderr and "JSONDecodeError" in res.stderr


@pytest.mark.slow
def test_unreachable_prefect_server_ends_run_dataset_with_exit_3(store: DemoStore) -> None:
    env = base_env(PREFECT_API_URL=f"http://127.0.0.1:{free_port()}/api")
    res = run_cli(
        "--db",
        store.url,
        "run",
        "dataset",
        "support-qa",
        "--outputs",
        BASELINE,
        "--evaluators",
        "heuristics",
        cwd=store.out.parent,
        env=env,
    )
    assert res.code == 3, str(res)
    line = _one_error_line(res)
    assert "cannot reach the Prefect API" in line and "PREFECT_API_URL" in line


@pytest.mark.slow
def test_temporary_prefect_server_that_does_not_start_is_exit_3(store: DemoStore) -> None:
    # A start-up timeout of 0 s: Prefect gives up on its temporary server at once.
    env = base_env(
        PREFECT_HOME=str(store.out.parent / "prefect-home"),
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="0",
    )
    res = run_cli(
        "--db",
        store.url,
        "run",
        "dataset",
        "support-qa",
        "--outputs",
        BASELINE,
        "--evaluators",
        "heuristics",
        cwd=store.out.parent,
        env=env,
    )
    assert res.code == 3, str(res)
    line = _one_error_line(res)
    assert "temporary Prefect server did not start" in line
    assert "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" in line


@pytest.mark.slow
def test_gate_whose_alert_rules_cannot_be_evaluated_exits_3(store: DemoStore) -> None:
    # An equivalent candidate passes (exit 0), but the alert rules file is missing: the CI job
    # must not read that as a pass.
    env = base_env(EVALWATCH_RULES_FILE=str(store.out.parent / "missing-rules.yaml"))
    res = run_cli(
        "--db",
        store.url,
        "gate",
        "--dataset",
        "support-qa",
        "--baseline-model",
        "acme-chat-v1.0",
        "--candidate-outputs",
        EQUIVALENT,
        "--evaluators",
        "heuristics",
        "--no-progress",
        cwd=store.out.parent,
        env=env,
    )
    assert res.code == 3, str(res)
    line = _one_error_line(res)
    assert "pass verdict is stored" in line and "alert rules could not be evaluated" in line


def test_gate_bad_input_names_flags_not_fields(user_dir: Path) -> None:
    res = run_cli("gate", "--dataset", "support-qa", "--baseline-run", "1", cwd=user_dir)
    assert res.code == 2, str(res)
    line = _one_error_line(res)
    assert "--candidate-run, --candidate-model or --candidate-outputs" in line
    assert "candidate_run" not in res.out


# --- defect 9: looking around ---------------------------------------------------------------


def test_runs_list_and_show(store: DemoStore) -> None:
    cwd = store.out.parent
    dataset_run = _count(store.db, "SELECT MIN(id) FROM eval_runs WHERE kind = 'dataset'")
    n_runs = _count(store.db, "SELECT COUNT(*) FROM eval_runs")
    n_dataset = _count(store.db, "SELECT COUNT(*) FROM eval_runs WHERE kind = 'dataset'")

    every = run_cli("--db", store.url, "runs", "list", cwd=cwd)
    assert every.code == 0, str(every)
    assert f"{n_runs} of {n_runs} runs" in every.out
    assert "traffic" in every.out and "dataset" in every.out

    datasets = run_cli("--db", store.url, "runs", "list", "--kind", "dataset", cwd=cwd)
    assert f"{n_dataset} of {n_dataset} runs" in datasets.out
    assert "traffic" not in datasets.stdout

    none = run_cli("--db", store.url, "runs", "list", "--status", "failed", cwd=cwd)
    assert none.code == 0 and "0 of 0 runs" in none.out

    shown = run_cli("--db", store.url, "runs", "show", str(dataset_run), cwd=cwd)
    assert shown.code == 0, str(shown)
    assert f"run {dataset_run}" in shown.out and "kind: dataset" in shown.out
    assert "acme-chat-v1.0" in shown.out and "heuristics.refusal" in shown.out

    missing = run_cli("--db", store.url, "runs", "show", "99999", cwd=cwd)
    assert missing.code == 2 and "no run 99999" in missing.out


def test_quarantine_list_and_show_with_the_raw_row_redacted(store: DemoStore) -> None:
    cwd = store.out.parent
    bad = cwd / "bad.jsonl"
    bad.write_text(
        '{"timestamp": "2026-11-01T00:00:00Z", "app": "support", "prompt": "", '
        '"response": "write to bob@example.com, key sk-abcdefghijklmnop1234"}\n'
        '{"timestamp": "2099-01-01T00:00:00Z", "app": "support", "prompt": "hi", '
        '"response": "ok"}\n'
        "not json\n",
        encoding="utf-8",
    )
    # --no-redact: the store keeps the row as it came, so only `show` can mask it.
    ingested = run_cli("--db", store.url, "ingest", "--no-redact", "bad.jsonl", cwd=cwd)
    assert ingested.code == 1, str(ingested)
    # The command closed the store: its last writes are in the file itself, not a leftover
    # write-ahead log, so a copy of the file (as `store` makes) holds them.
    assert not store.db.with_name(store.db.name + "-wal").exists()
    with sqlite3.connect(store.db) as conn:
        row_id, raw = conn.execute(
            "SELECT id, raw FROM quarantine WHERE raw LIKE '%bob@example.com%'"
        ).fetchone()
    assert "sk-abcdefghijklmnop1234" in raw

    listed = run_cli("--db", store.url, "quarantine", "list", cwd=cwd)
    assert listed.code == 0, str(listed)
    assert "3 of 3 quarantined rows" in listed.out and "malformed JSON" in listed.out

    future = run_cli("--db", store.url, "quarantine", "list", "--reason", "FUTURE", cwd=cwd)
    assert "1 of 1 quarantined rows" in future.out and "in the future" in future.out

    shown = run_cli("--db", store.url, "quarantine", "show", str(row_id), cwd=cwd)
    assert shown.code == 0, str(shown)
    assert "bad.jsonl" in shown.out and "prompt: length outside" in shown.out
    assert "bob@example.com" not in shown.out and "sk-abcdefghijklmnop1234" not in shown.out
    assert "[REDACTED:email]" in shown.out and "[REDACTED:secret]" in shown.out

    missing = run_cli("--db", store.url, "quarantine", "show", "99999", cwd=cwd)
    assert missing.code == 2 and "no quarantined row 99999" in missing.out


def test_db_prune_counts_first_and_deletes_only_when_told(store: DemoStore) -> None:
    cwd = store.out.parent
    before = _count(store.db, "SELECT COUNT(*) FROM interactions")
    # The demo's traffic spans Nov 1-15 2026: 20 days back from today reaches into it.
    prune = ("--db", store.url, "db", "prune", "--older-than", "20d")

    dry = run_cli(*prune, "--dry-run", cwd=cwd)
    assert dry.code == 0, str(dry)
    m = re.search(
        r"would delete (\d+) scores, (\d+) embeddings, (\d+) feedback, (\d+) interactions", dry.out
    )
    assert m, str(dry)
    would = int(m.group(4))
    assert 0 < would <= before
    assert "nothing deleted" in dry.out
    assert _count(store.db, "SELECT COUNT(*) FROM interactions") == before

    # stdin is not a terminal and there is no --yes: refuse, delete nothing.
    refused = run_cli(*prune, cwd=cwd)
    assert refused.code == 2, str(refused)
    assert "--yes" in _one_error_line(refused)
    assert _count(store.db, "SELECT COUNT(*) FROM interactions") == before

    done = run_cli(*prune, "--yes", cwd=cwd)
    assert done.code == 0, str(done)
    assert f"{would} interactions older than 20d" in done.out
    assert _count(store.db, "SELECT COUNT(*) FROM interactions") == before - would


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["db", "prune", "--help"],
        ["gate", "--help"],
        ["evaluate", "--help"],
        ["ingest", "--help"],
        ["sample", "--help"],
    ],
)
def test_flags_show_no_value_placeholder(user_dir: Path, args: list[str]) -> None:
    res = run_cli(*args, cwd=user_dir, env=base_env(COLUMNS="200"))
    assert res.code == 0, str(res)
    assert "--help" in res.stdout
    assert "<bool>" not in res.stdout, res.stdout
    for line in res.stdout.splitlines():
        if re.search(r"--help\b", line):
            assert re.search(r"--help\s+Show this message", line), line


def test_evaluate_and_run_traffic_share_one_default(user_dir: Path) -> None:
    default = f"[default: {','.join(DEFAULT_EVALUATORS)}]"
    for cmd in (["evaluate"], ["run", "traffic"], ["run", "dataset"]):
        res = run_cli(*cmd, "--help", cwd=user_dir, env=base_env(COLUMNS="200"))
        evaluators_line = next(ln for ln in res.stdout.splitlines() if "--evaluators" in ln)
        assert default in evaluators_line, (cmd, evaluators_line)


@pytest.mark.slow
def test_unscored_by_on_evaluate_and_run_traffic(
    store: DemoStore, prefect_server: PrefectServer
) -> None:
    cwd = store.out.parent
    # The demo scored all traffic with heuristics: nothing is left unscored by it.
    done = run_cli(
        "--db",
        store.url,
        "evaluate",
        "-e",
        "heuristics",
        "--unscored-by",
        "heuristics",
        "--no-progress",
        cwd=cwd,
    )
    assert done.code == 0, str(done)
    assert "stored as run" not in done.out

    # Nothing of the traffic was scored by the embedding evaluator.
    fresh = run_cli(
        "--db",
        store.url,
        "evaluate",
        "-e",
        "heuristics",
        "--unscored-by",
        "embedding",
        "--max-items",
        "20",
        "--no-progress",
        cwd=cwd,
    )
    assert fresh.code == 0, str(fresh)
    assert "20 interactions" in fresh.out and "stored as run" in fresh.out

    env = base_env(PREFECT_API_URL=prefect_server.api_url)
    flow = run_cli(
        "--db",
        store.url,
        "run",
        "traffic",
        "--evaluators",
        "heuristics",
        "--unscored-by",
        "embedding",
        "--max-items",
        "15",
        cwd=cwd,
        env=env,
    )
    assert flow.code == 0, str(flow)
    assert "heuristics.refusal" in flow.out
    with sqlite3.connect(store.db) as conn:
        sizes = [
            int(n)
            for (n,) in conn.execute(
                "SELECT json_extract(summary, '$.n_subjects') FROM eval_runs "
                "WHERE kind = 'traffic' ORDER BY id DESC LIMIT 2"
            )
        ]
    assert sizes == [15, 20]
