"""Issue #18: safe under concurrency — runs that join, and retention under load.

* Identical ``evalwatch evaluate`` commands started at once create one run between them (the
  run key is inserted with ``ON CONFLICT DO NOTHING`` and read back), every one exits 0, and
  each score is stored once; on PostgreSQL and on SQLite (WAL).
* ``evalwatch db prune`` while an ingest and a run write, on PostgreSQL: the writers finish,
  no deadlock reaches a user, and no score, embedding, feedback row or run link is left about
  a deleted interaction. The same at the store's level, with writers of embeddings and
  feedback, on both backends.

Real processes throughout: the installed console script, or spawned Python processes where a
test needs them to start at one instant (a barrier).
"""

from __future__ import annotations

import multiprocessing
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from evalwatch.evaluators.heuristics import HeuristicsEvaluator
from evalwatch.storage.db import make_engine
from evalwatch.storage.repo import get_run, insert_interactions, interaction_ids_for
from tests.conftest import PG_ADMIN_URL
from tests.store_load import (
    Cli,
    assert_clean,
    broken_invariants,
    count,
    drop_pg_database,
    feedback_count,
    fresh_pg_database,
    open_run_at_once,
    prune_in_small_batches,
    traffic_rows,
    write_about_interactions,
    write_jsonl,
)

# Enough subjects that the commands' scoring overlaps; few enough for two shared cores.
N_TRAFFIC = 1_200
HEURISTIC_METRICS = len(HeuristicsEvaluator().metric_names)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL database of this test's own (its writers' locks meet nobody else's)."""
    name = f"evalwatch_cc_{uuid.uuid4().hex[:10]}"
    url = fresh_pg_database(PG_ADMIN_URL, name)
    yield url
    drop_pg_database(PG_ADMIN_URL, name)


def _spawn() -> multiprocessing.context.SpawnContext:
    return multiprocessing.get_context("spawn")


# --- concurrent runs join ------------------------------------------------------------------


def test_runs_opened_at_the_same_instant_are_one_run(db_url: str) -> None:
    ctx = _spawn()
    n = 4
    barrier = ctx.Barrier(n)
    out = ctx.Queue()
    procs = [
        ctx.Process(target=open_run_at_once, args=(db_url, "same-key", barrier, out))
        for _ in range(n)
    ]
    for p in procs:
        p.start()
    got = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert all(p.exitcode == 0 for p in procs)
    assert not [g for g in got if g[0] == "error"], got
    assert len({run_id for run_id, _ in got}) == 1, got
    assert sorted(created for _, created in got) == [False] * (n - 1) + [True]
    assert count(db_url, "SELECT COUNT(*) FROM eval_runs") == 1


def test_identical_evaluate_commands_started_at_once_join_one_run(
    db_url: str, tmp_path: Path
) -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    traffic = write_jsonl(tmp_path / "traffic.jsonl", traffic_rows("join", start, N_TRAFFIC))
    cli = Cli(db_url, tmp_path)
    assert_clean(cli.run("ingest", str(traffic)))
    window = ["--since", (start - timedelta(hours=1)).isoformat()]
    window += ["--until", datetime.now(UTC).isoformat()]
    command = ["evaluate", "--evaluators", "heuristics", *window]

    done = cli.together(command, command, command)

    for d in done:
        assert_clean(d)
    run_ids = {line for d in done for line in d.stdout.splitlines() if "stored as run" in line}
    assert run_ids == {"stored as run 1"}, [str(d) for d in done]
    assert count(db_url, "SELECT COUNT(*) FROM eval_runs") == 1
    assert count(db_url, "SELECT COUNT(*) FROM eval_runs WHERE status = 'completed'") == 1
    expected = N_TRAFFIC * HEURISTIC_METRICS
    assert count(db_url, "SELECT COUNT(*) FROM scores") == expected
    assert count(db_url, "SELECT COUNT(*) FROM run_scores WHERE run_id = 1") == expected
    assert broken_invariants(db_url) == {}
    # The summary stored last is complete: it covers every score of the sample.
    engine = make_engine(db_url)
    try:
        run = get_run(engine, 1)
    finally:
        engine.dispose()
    assert run is not None and run.summary is not None and run.error is None
    assert run.summary["n_scores"] == expected
    assert run.summary["n_subjects"] == N_TRAFFIC
    # Each pass profiled what it scored itself (between nothing and everything, as the race
    # went); folding the passes' rows counted each once.
    assert count(db_url, "SELECT COUNT(*) FROM evaluator_profiles") == 1
    assert count(db_url, "SELECT SUM(n_items) FROM evaluator_profiles") >= N_TRAFFIC
    assert count(db_url, "SELECT SUM(n_items) FROM evaluator_profiles") <= 3 * N_TRAFFIC

    # Run again afterwards: the same run, nothing left to score.
    again = cli.run(*command)
    assert_clean(again)
    assert "stored as run 1" in again.stdout
    assert count(db_url, "SELECT COUNT(*) FROM scores") == expected


# --- retention under load ------------------------------------------------------------------


def test_store_writers_and_small_batch_prunes_leave_no_orphans(db_url: str) -> None:
    old = datetime.now(UTC) - timedelta(days=60)
    recent = datetime.now(UTC) - timedelta(days=1)
    engine = make_engine(db_url)
    try:
        rows = [
            {
                "request_id": f"{label}-{i}",
                "ts": ts + timedelta(seconds=i),
                "app": "a",
                "model_name": "m",
                "model_version": "v1",
                "prompt": "p",
                "response": "r",
            }
            for label, ts, n in (("old", old, 600), ("new", recent, 100))
            for i in range(n)
        ]
        insert_interactions(engine, rows)
        by_request = interaction_ids_for(engine, [str(r["request_id"]) for r in rows])
    finally:
        engine.dispose()
    ids = sorted(by_request.values())
    survivors = sorted(v for k, v in by_request.items() if k.startswith("new-"))
    among = f"({', '.join(map(str, survivors))})"
    ctx = _spawn()
    out = ctx.Queue()
    procs = [
        ctx.Process(target=write_about_interactions, args=(db_url, ids, seed, out))
        for seed in (1, 2, 3)
    ]
    procs.append(ctx.Process(target=prune_in_small_batches, args=(db_url, out)))
    for p in procs:
        p.start()
    got = [out.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert not [g for g in got if g[0] == "error"], got
    assert all(p.exitcode == 0 for p in procs)
    pruned = next(g[1] for g in got if g[0] == "pruned")
    assert pruned["interactions"] == 600
    assert count(db_url, "SELECT COUNT(*) FROM interactions") == 100
    assert broken_invariants(db_url) == {}
    # What is about the surviving interactions was all written.
    # Two embedding models, two feedback keys and two score options per interaction.
    assert count(db_url, f"SELECT COUNT(*) FROM embeddings WHERE subject_id IN {among}") == 200
    assert count(db_url, f"SELECT COUNT(*) FROM feedback WHERE interaction_id IN {among}") == 200
    assert count(db_url, f"SELECT COUNT(*) FROM scores WHERE subject_id IN {among}") == 200


@pytest.mark.postgres
def test_db_prune_while_an_ingest_and_a_run_write_on_postgres(pg_url: str, tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    old, recent = now - timedelta(days=60), now - timedelta(days=1)
    seed_old = traffic_rows("seed-old", old, 3_000, step=timedelta(seconds=2))
    seed_new = traffic_rows("seed-new", recent, 400)
    more_old = traffic_rows("more-old", old + timedelta(hours=3), 2_000, step=timedelta(seconds=2))
    more_new = traffic_rows("more-new", recent + timedelta(hours=1), 400)
    first = write_jsonl(tmp_path / "first.jsonl", seed_old + seed_new)
    second = write_jsonl(tmp_path / "second.jsonl", more_old + more_new)
    cli = Cli(pg_url, tmp_path)
    assert_clean(cli.run("ingest", str(first)))

    window = ["--since", (old - timedelta(days=1)).isoformat(), "--until", now.isoformat()]
    writers = [
        cli.start("ingest", str(second)),
        cli.start("evaluate", "--evaluators", "heuristics", *window),
    ]
    prunes = []
    # Prune again and again while the writers write, so that their transactions meet.
    while any(proc.poll() is None for _, proc in writers):
        prunes.append(cli.run("db", "prune", "--older-than", "30d", "--yes"))
        time.sleep(0.2)
    done = [Cli.wait(w) for w in writers]
    prunes.append(cli.run("db", "prune", "--older-than", "30d", "--yes"))

    for d in done + prunes:
        assert_clean(d)
        assert "deadlock" not in (d.stdout + d.stderr).lower(), str(d)
    assert len(prunes) >= 2
    assert any(p.stdout.startswith("pruned ") for p in prunes), [str(p) for p in prunes]
    cutoff = (now - timedelta(days=30)).isoformat()
    assert count(pg_url, f"SELECT COUNT(*) FROM interactions WHERE ts < '{cutoff}'") == 0
    assert count(pg_url, "SELECT COUNT(*) FROM interactions") == len(seed_new) + len(more_new)
    assert count(pg_url, "SELECT COUNT(*) FROM feedback") == feedback_count(seed_new + more_new)
    assert broken_invariants(pg_url) == {}
    # The run scored the recent traffic it sampled; what it scored of the old went with it.
    scored_recent = count(
        pg_url,
        "SELECT COUNT(DISTINCT subject_id) FROM scores s JOIN interactions i "
        "ON i.id = s.subject_id WHERE s.subject_type = 'interaction'",
    )
    assert scored_recent >= len(seed_new)
