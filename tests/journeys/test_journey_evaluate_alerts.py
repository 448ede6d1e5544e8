"""Journey: ``evalwatch evaluate`` judges the alert rules that watch the run it stored.

Before, the command stored a finished run and never evaluated the rules, so a metric rule with
``window: run`` (or a ``run.cost`` rule) fired only when the run came from the flow. Now the
command evaluates them once the run is stored, prints each alert change as ``evalwatch drift``
does, and keeps its exit code.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.journeys.conftest import DemoStore, base_env, run_cli

RULES = """\
version: 1
rules:
  - name: answers-long
    description: Mean response length above one character in a run (always true).
    selector: heuristics.response_chars
    aggregation: mean
    comparison: ">"
    threshold: 1
    window: run
    severity: warning
"""


def test_evaluate_opens_the_alert_of_a_rule_watching_its_run(
    store: DemoStore, user_dir: Path
) -> None:
    rules = user_dir / "rules.yaml"
    rules.write_text(RULES)
    res = run_cli(
        "--db", f"sqlite:///{store.db}",
        "evaluate", "-e", "heuristics", "--since", "2026-11-14", "--max-items", "20",
        "--no-progress",
        cwd=user_dir,
        env=base_env(EVALWATCH_RULES_FILE=str(rules)),
        timeout=300,
    )  # fmt: skip
    assert res.code == 0, res.out
    assert "alert " in res.stdout and "open [warning] answers-long (all)" in res.stdout, res.out
    with sqlite3.connect(store.db) as con:
        rows = con.execute(
            "SELECT status, json_extract(context, '$.links.run_id') FROM alerts "
            "WHERE rule = 'answers-long'"
        ).fetchall()
    run_id = int(res.stdout.split("stored as run ")[1].split()[0])
    assert rows == [("open", run_id)]
