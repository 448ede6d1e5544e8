"""Issue #18: a bounded soak on PostgreSQL — a busy team's jobs, all at once, round after round.

Each round, as concurrent processes of the installed console script: two ingests of
overlapping files (new traffic with feedback, plus traffic older than the retention period),
two identical evaluations of the previous round's hour (heuristics only, so the round stays
fast), a drift check, an evaluation of the alert rules and a retention prune. Afterwards the
store's invariants hold: every score, embedding and feedback row has its subject, every run
link its score and run, no key is stored twice, no run is left running, identical evaluations
made one run, and the counts add up to what was ingested. Loopback only; a few minutes at most
(the rounds stop after ``SOAK_SECONDS``).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from evalwatch.evaluators.heuristics import HeuristicsEvaluator
from evalwatch.storage.db import make_engine
from tests.conftest import PG_ADMIN_URL
from tests.store_load import (
    Cli,
    assert_clean,
    broken_invariants,
    count,
    drop_pg_database,
    feedback_count,
    fresh_pg_database,
    traffic_rows,
    write_jsonl,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

HEURISTIC_METRICS = len(HeuristicsEvaluator().metric_names)
# The rounds stop once this much time has gone (a round takes about 35 s on 2 shared cores).
SOAK_SECONDS = 90
MAX_ROUNDS = 4
# Interactions per hour, 14 s apart: all of them inside their hour.
PER_HOUR = 240


@pytest.fixture
def soak_url() -> Iterator[str]:
    """A PostgreSQL database of the soak's own."""
    name = f"evalwatch_soak_{uuid.uuid4().hex[:10]}"
    url = fresh_pg_database(PG_ADMIN_URL, name)
    yield url
    drop_pg_database(PG_ADMIN_URL, name)


def test_soak_ingest_evaluate_drift_alerts_and_prune_at_once(soak_url: str, tmp_path: Path) -> None:
    cli = Cli(soak_url, tmp_path)
    day = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=1)
    old = day - timedelta(days=90)
    baseline = traffic_rows("base", day - timedelta(days=1), 600, step=timedelta(seconds=120))
    assert_clean(cli.run("ingest", str(write_jsonl(tmp_path / "base.jsonl", baseline))))
    kept: dict[str, dict[str, object]] = {str(r["request_id"]): r for r in baseline}
    evaluated: list[tuple[datetime, datetime]] = []
    started = time.monotonic()
    rounds = 0
    while rounds < MAX_ROUNDS and (rounds < 2 or time.monotonic() - started < SOAK_SECONDS):
        hour = day + timedelta(hours=rounds)
        fresh = traffic_rows(f"h{rounds}", hour, PER_HOUR, step=timedelta(seconds=14))
        stale = traffic_rows(f"old{rounds}", old + timedelta(hours=rounds), 300)
        half = PER_HOUR // 2
        first = write_jsonl(tmp_path / f"a{rounds}.jsonl", fresh[: half + 40] + stale)
        second = write_jsonl(tmp_path / f"b{rounds}.jsonl", fresh[half - 40 :])
        kept.update({str(r["request_id"]): r for r in fresh})
        commands: list[list[str]] = [
            ["ingest", str(first)],
            ["ingest", str(second)],
            ["alerts", "evaluate", "--no-deliver"],
            ["db", "prune", "--older-than", "30d", "--yes"],
        ]
        if rounds:
            # The previous round's hour, twice at once: they must join one run.
            since, until = hour - timedelta(hours=1), hour
            window = ["--since", since.isoformat(), "--until", until.isoformat()]
            evaluate = ["evaluate", "--evaluators", "heuristics", *window]
            # Drift of the hours so far (pinned: the hour being ingested may not be in yet).
            drift = ["drift", "--current-since", day.isoformat(), "--current-until"]
            drift += [hour.isoformat(), "--baseline-days", "1", "--json"]
            commands += [evaluate, evaluate, drift]
            evaluated.append((since, until))
        for done in cli.together(*commands, timeout=300):
            is_drift = done.args[0] == "drift"
            assert_clean(done, codes=(0, 1) if is_drift else (0,))
            assert "deadlock" not in (done.stdout + done.stderr).lower(), str(done)
            if is_drift:
                json.loads(done.stdout)  # a whole report, not a torn one
        rounds += 1
    assert_clean(cli.run("db", "prune", "--older-than", "30d", "--yes"))

    assert broken_invariants(soak_url) == {}
    rows = list(kept.values())
    assert count(soak_url, "SELECT COUNT(*) FROM interactions") == len(rows)
    assert count(soak_url, "SELECT COUNT(*) FROM feedback") == feedback_count(rows)
    assert count(soak_url, "SELECT COUNT(*) FROM quarantine") == 0
    cutoff = (datetime.now(UTC) - timedelta(days=30)).isoformat()
    assert count(soak_url, f"SELECT COUNT(*) FROM interactions WHERE ts < '{cutoff}'") == 0
    # One run per evaluated hour; each reports every score of its sample, as its summary says.
    engine = make_engine(soak_url)
    try:
        with engine.connect() as conn:
            runs = conn.execute(
                sa.text(
                    "SELECT r.id, r.status, r.summary, "
                    "(SELECT COUNT(*) FROM run_scores s WHERE s.run_id = r.id) AS linked "
                    "FROM eval_runs r WHERE r.kind = 'traffic' ORDER BY r.id"
                )
            ).all()
    finally:
        engine.dispose()
    assert len(runs) == len(evaluated), runs
    for run_id, status, summary, linked in runs:
        summary = json.loads(summary) if isinstance(summary, str) else summary
        assert status == "completed", (run_id, summary)
        assert summary["n_subjects"] == PER_HOUR, (run_id, summary)
        assert summary["n_scores"] == linked == PER_HOUR * HEURISTIC_METRICS, (run_id, summary)
