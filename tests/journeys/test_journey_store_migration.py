"""Journey: several commands open a store of an older revision at once; it is migrated once.

Issue #12. A store made before migration 0002 (which renames the scores' unique constraint)
is opened by three commands at the same time, as a CI job and a flow, or two shells, would.
Before migrations were serialised, each saw revision 0001 and ran 0002: the late ones failed
with ``internal error: ValueError: No such constraint: 'uq_score_subject_metric'`` (exit 3).
Each must now work (exit 0), and the store must end at the newest revision with its scores.
"""

from __future__ import annotations

import subprocess

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from evalwatch.storage.db import current_revision, head_revision, make_engine
from evalwatch.storage.repo import table_counts
from tests.journeys.conftest import EVALWATCH, REPO, TRACEBACK, DemoStore, base_env

pytestmark = [pytest.mark.journey, pytest.mark.slow]


def _downgrade(url: str, revision: str) -> dict[str, int]:
    """Take the store back to ``revision``, as a store made by an older evalwatch is."""
    engine = make_engine(url)
    try:
        cfg = Config()
        cfg.set_main_option("script_location", str(REPO / "storage" / "migrations"))
        cfg.attributes["engine"] = engine
        command.downgrade(cfg, revision)
        assert current_revision(engine) == revision
        return table_counts(engine)
    finally:
        engine.dispose()


def test_concurrent_commands_migrate_an_old_store_once(store: DemoStore) -> None:
    """Three commands start together on a 0001 store: all exit 0, the store ends at head."""
    before = _downgrade(store.url, "0001")
    assert before["scores"] > 0
    env = base_env(EVALWATCH_DATABASE_URL="sqlite:///demo-out/evalwatch.db")
    procs = [
        subprocess.Popen(
            [EVALWATCH, "datasets", "list"],
            cwd=store.out.parent,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, f"exit {p.returncode}\n{out}\n{err}"
        assert TRACEBACK not in out + err
        assert "support-qa" in out
    engine = make_engine(store.url)
    try:
        assert current_revision(engine) == head_revision()
        after = table_counts(engine)
        with engine.connect() as conn:
            members = conn.execute(sa.text("SELECT COUNT(*) FROM run_scores")).scalar_one()
    finally:
        engine.dispose()
    assert after["scores"] == before["scores"]
    # Every score is a member of the run that wrote it, once: 0002 ran once.
    assert members == before["scores"]
