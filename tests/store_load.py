"""Helpers of the concurrency and soak tests: traffic files, CLI processes, store invariants.

The tests drive the installed console script (``.venv/bin/evalwatch``) in real processes, as
a busy team's cron jobs and CI runs would, against one store; these helpers write their input,
start and collect them, and check what the store holds afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from evalwatch.storage.db import make_engine

EVALWATCH = str(Path(sys.executable).parent / "evalwatch")
TRACEBACK = "Traceback (most recent call last)"

_RESPONSES = [
    "You can reset your password from the account page; the link is under Security.",
    "I'm sorry, but I can't help with that request.",
    '{"status": "ok", "items": 3}',
    "Our refund window is 30 days from delivery; start it from your orders page.",
    "Shipping to Canada takes five to seven business days with the standard option.",
]


def traffic_rows(
    prefix: str, start: datetime, n: int, *, step: timedelta = timedelta(seconds=7)
) -> list[dict[str, object]]:
    """``n`` valid interactions from ``start`` on, ids ``{prefix}-{i}``, some with feedback.

    Every third row has a rating and every fifth a thumbs verdict (each one feedback row).
    """
    rows: list[dict[str, object]] = []
    for i in range(n):
        row: dict[str, object] = {
            "request_id": f"{prefix}-{i}",
            "timestamp": (start + i * step).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "app": "support-bot" if i % 2 else "sales-assistant",
            "model_name": "acme-chat",
            "model_version": "v1.0" if i % 4 else "v1.1",
            "prompt": f"Question {i} from {prefix}: how do I get help with order {i * 7}?",
            "response": _RESPONSES[i % len(_RESPONSES)] + f" (ref {i})",
            "latency_ms": 200 + (i * 37) % 900,
            "input_tokens": 40 + i % 50,
            "output_tokens": 20 + i % 30,
            "cost": 0.0001,
            "user_id": f"user-{i % 40}",
        }
        if i % 3 == 0:
            row["rating"] = 1 + i % 5
        if i % 5 == 0:
            row["thumbs"] = "up" if i % 2 else "down"
        rows.append(row)
    return rows


def write_jsonl(path: Path, rows: Sequence[dict[str, object]]) -> Path:
    """Write ``rows`` as JSON lines; returns ``path``."""
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def feedback_count(rows: Sequence[dict[str, object]]) -> int:
    """How many feedback rows ``rows`` make (a rating and a thumbs verdict are one each)."""
    return sum(("rating" in r) + ("thumbs" in r) for r in rows)


def cli_env(url: str, home: Path) -> dict[str, str]:
    """The environment of a user's shell with the store at ``url`` (no Prefect server)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVALWATCH_", "PREFECT_API"))}
    env.update(
        {
            "EVALWATCH_DATABASE_URL": url,
            "EVALWATCH_HASH_KEY": "concurrency-test-key",
            "EVALWATCH_HOME": str(home / "evalwatch-home"),
            "EVALWATCH_REPORT_DIR": str(home / "reports"),
            "PREFECT_HOME": str(home / "prefect-home"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "COLUMNS": "120",
        }
    )
    return env


@dataclass
class Done:
    """A finished CLI process."""

    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return (
            f"evalwatch {' '.join(self.args)} -> {self.code}\n"
            f"--- stdout\n{self.stdout[-3000:]}\n--- stderr\n{self.stderr[-3000:]}"
        )


class Cli:
    """Starts ``evalwatch`` processes on one store and collects them."""

    def __init__(self, url: str, home: Path) -> None:
        self.env = cli_env(url, home)
        self.cwd = home

    def start(self, *args: str) -> tuple[tuple[str, ...], subprocess.Popen[str]]:
        """Start ``evalwatch ARGS`` without waiting."""
        proc = subprocess.Popen(
            [EVALWATCH, *args],
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        return args, proc

    @staticmethod
    def wait(started: tuple[tuple[str, ...], subprocess.Popen[str]], timeout: float = 300) -> Done:
        """Wait for a started process (killed past ``timeout``)."""
        args, proc = started
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            return Done(args, -9, out, err + f"\n(killed after {timeout}s)")
        return Done(args, proc.returncode, out, err)

    def run(self, *args: str, timeout: float = 300) -> Done:
        """Run ``evalwatch ARGS`` and wait for it."""
        return self.wait(self.start(*args), timeout)

    def together(self, *commands: Sequence[str], timeout: float = 300) -> list[Done]:
        """Start every command at once, then wait for all of them."""
        started = [self.start(*c) for c in commands]
        return [self.wait(s, timeout) for s in started]


def assert_clean(done: Done, codes: Sequence[int] = (0,)) -> None:
    """The process exited with one of ``codes`` and printed no traceback."""
    assert done.code in codes, str(done)
    assert TRACEBACK not in done.stderr and TRACEBACK not in done.stdout, str(done)


# Each query counts rows that break an invariant of the store; all must be 0.
INVARIANTS = {
    "scores about a missing interaction": (
        "SELECT COUNT(*) FROM scores s WHERE s.subject_type = 'interaction' "
        "AND NOT EXISTS (SELECT 1 FROM interactions i WHERE i.id = s.subject_id)"
    ),
    "scores about a missing model output": (
        "SELECT COUNT(*) FROM scores s WHERE s.subject_type = 'output' "
        "AND NOT EXISTS (SELECT 1 FROM model_outputs o WHERE o.id = s.subject_id)"
    ),
    "embeddings about a missing interaction": (
        "SELECT COUNT(*) FROM embeddings e WHERE e.subject_type = 'interaction' "
        "AND NOT EXISTS (SELECT 1 FROM interactions i WHERE i.id = e.subject_id)"
    ),
    "feedback about a missing interaction": (
        "SELECT COUNT(*) FROM feedback f "
        "WHERE NOT EXISTS (SELECT 1 FROM interactions i WHERE i.id = f.interaction_id)"
    ),
    "run links to a missing score or run": (
        "SELECT COUNT(*) FROM run_scores r "
        "WHERE NOT EXISTS (SELECT 1 FROM scores s WHERE s.id = r.score_id) "
        "OR NOT EXISTS (SELECT 1 FROM eval_runs e WHERE e.id = r.run_id)"
    ),
    "scores not linked to the run that computed them": (
        "SELECT COUNT(*) FROM scores s WHERE NOT EXISTS "
        "(SELECT 1 FROM run_scores r WHERE r.score_id = s.id AND r.run_id = s.run_id)"
    ),
    "duplicate score keys": (
        "SELECT COUNT(*) FROM (SELECT 1 FROM scores GROUP BY subject_id, subject_type, "
        "evaluator, evaluator_version, config_hash, metric HAVING COUNT(*) > 1) d"
    ),
    "duplicate request ids": (
        "SELECT COUNT(*) FROM (SELECT 1 FROM interactions GROUP BY request_id "
        "HAVING COUNT(*) > 1) d"
    ),
    "duplicate feedback keys": (
        "SELECT COUNT(*) FROM (SELECT 1 FROM feedback GROUP BY feedback_key HAVING COUNT(*) > 1) d"
    ),
    "duplicate run keys": (
        "SELECT COUNT(*) FROM (SELECT 1 FROM eval_runs GROUP BY run_key HAVING COUNT(*) > 1) d"
    ),
    "duplicate embeddings": (
        "SELECT COUNT(*) FROM (SELECT 1 FROM embeddings GROUP BY subject_type, subject_id, "
        "model HAVING COUNT(*) > 1) d"
    ),
    "runs left running": "SELECT COUNT(*) FROM eval_runs WHERE status = 'running'",
}


def broken_invariants(url: str) -> dict[str, int]:
    """Each invariant of :data:`INVARIANTS` that the store at ``url`` breaks, with its count."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            counts = {
                name: int(conn.execute(sa.text(sql)).scalar_one())
                for name, sql in INVARIANTS.items()
            }
    finally:
        engine.dispose()
    return {name: n for name, n in counts.items() if n}


def count(url: str, sql: str) -> int:
    """One integer the store at ``url`` answers ``sql`` with."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(sql)).scalar_one())
    finally:
        engine.dispose()


def fresh_pg_database(admin_url: str, name: str) -> str:
    """Create the empty PostgreSQL database ``name`` beside ``admin_url``'s; returns its URL."""
    admin = make_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def drop_pg_database(admin_url: str, name: str) -> None:
    """Drop the PostgreSQL database ``name`` (connections to it are ended)."""
    admin = make_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


# --- Children of multiprocessing tests (module level, so that spawned processes import them) --


def open_run_at_once(url: str, key: str, barrier: Any, out: Any) -> None:
    """Wait for the others at ``barrier``, then open the run ``key``; put ``(id, created)``."""
    from evalwatch.storage.repo import open_run

    engine = make_engine(url)
    try:
        barrier.wait(timeout=60)
        run, created = open_run(engine, "traffic", params={"n": 1}, run_key=key)
        out.put((run.id, created))
    except Exception as exc:  # reported to the test, which fails with it
        out.put(("error", repr(exc)))
    finally:
        engine.dispose()


def write_about_interactions(url: str, ids: list[int], seed: int, out: Any) -> None:
    """Write scores, embeddings and feedback about ``ids``, 40 at a time, in a shuffled order.

    What retention deletes meanwhile is skipped by the store; any exception is put on ``out``.
    """
    import random

    from evalwatch.core import RunStatus
    from evalwatch.storage.repo import (
        create_run,
        finish_run,
        insert_feedback,
        write_embeddings,
        write_scores,
    )

    engine = make_engine(url)
    try:
        run = create_run(engine, "traffic", run_key=f"writer-{seed}")
        assert run.id is not None
        order = list(ids)
        random.Random(seed).shuffle(order)
        ts = datetime(2026, 1, 1)
        for start in range(0, len(order), 40):
            chunk = order[start : start + 40]
            scores = [
                {
                    "run_id": run.id,
                    "subject_type": "interaction",
                    "subject_id": i,
                    "evaluator": "writer",
                    "evaluator_version": "1",
                    "config_hash": f"c{seed % 2}",
                    "metric": "m",
                    "value": 1.0,
                    "status": "ok",
                }
                for i in chunk
            ]
            vectors = [
                {
                    "subject_type": "interaction",
                    "subject_id": i,
                    "model": f"m{seed % 2}",
                    "dim": 2,
                    "dtype": "float16",
                    "vector": b"\x00\x00\x00\x00",
                }
                for i in chunk
            ]
            with engine.begin() as conn:
                write_scores(conn, scores)
                write_embeddings(conn, vectors)
            insert_feedback(
                engine,
                [
                    {
                        "feedback_key": f"w{seed % 2}-{i}",
                        "interaction_id": i,
                        "kind": "rating",
                        "value": 3.0,
                        "ts": ts,
                    }
                    for i in chunk
                ],
            )
        finish_run(engine, run.id, RunStatus.completed, summary={})
        out.put(("ok", seed))
    except Exception as exc:
        out.put(("error", repr(exc)))
    finally:
        engine.dispose()


def prune_in_small_batches(url: str, out: Any) -> None:
    """Prune everything older than 30 days, 25 interactions per transaction; put the counts."""
    from evalwatch.storage.repo import prune

    engine = make_engine(url)
    try:
        out.put(("pruned", prune(engine, timedelta(days=30), batch_size=25)))
    except Exception as exc:
        out.put(("error", repr(exc)))
    finally:
        engine.dispose()
