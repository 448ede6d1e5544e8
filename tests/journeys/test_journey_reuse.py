"""Journey: evaluating traffic that is already scored reports the reused scores.

Issue #12 defect 8: on the demo store (whose traffic the demo scored with heuristics),
``evalwatch evaluate --since 30d --max-items 200`` printed "run 5: 200 interactions" and no
metric, because a run reported only the scores it wrote itself. A run now reports every score
of its sample, reused or new; other score-relevant options score again.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from tests.journeys.conftest import DemoStore, base_env, run_cli

pytestmark = pytest.mark.slow

EVALUATE = ("evaluate", "--since", "30d", "--max-items", "200", "--evaluators", "heuristics")
METRICS = ("response_chars", "response_tokens_est", "empty_response", "refusal", "pii_leak")


def _scores(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM scores").fetchone()[0])


def _row(stdout: str, metric: str) -> tuple[int, str]:
    """``(n, mean)`` of a metric in the printed per-metric table."""
    m = re.search(rf"│\s*heuristics\s*│\s*{metric}\s*│\s*(\d+)\s*│\s*([0-9.]+)\s*│", stdout)
    assert m, f"no row for heuristics.{metric} in:\n{stdout}"
    return int(m.group(1)), m.group(2)


def test_evaluating_scored_traffic_shows_its_metrics(store: DemoStore, user_dir: Path) -> None:
    env = base_env(EVALWATCH_DATABASE_URL=store.url)
    before = _scores(store.db)

    first = run_cli(*EVALUATE, "--no-progress", cwd=user_dir, env=env)
    assert first.code == 0, str(first)
    assert "200 interactions" in first.out
    rows = {metric: _row(first.stdout, metric) for metric in METRICS}
    assert all(n == 200 for n, _ in rows.values()), rows
    # The demo scored this traffic already: the run reused those scores.
    assert _scores(store.db) == before

    second = run_cli(*EVALUATE, "--no-progress", cwd=user_dir, env=env)
    assert second.code == 0, str(second)
    assert {metric: _row(second.stdout, metric) for metric in METRICS} == rows
    assert _scores(store.db) == before

    # Other refusal phrases change the scores: the sample is scored again, under them.
    options = user_dir / "options.yaml"
    options.write_text("heuristics:\n  refusal_phrases: ['no phrase like this one']\n")
    third = run_cli(
        *EVALUATE, "--no-progress", "--options-file", "options.yaml", cwd=user_dir, env=env
    )
    assert third.code == 0, str(third)
    assert _row(third.stdout, "refusal") == (200, "0.000")
    assert _row(third.stdout, "response_chars") == rows["response_chars"]
    assert _scores(store.db) == before + 200 * 6  # six heuristics metrics per interaction
