"""Journey: differentially private exports and overview through the installed ``evalwatch``.

A user ingests traffic, exports noised daily aggregates, writes a noised overview page, and is
refused (exit 1, nothing written) when a release would exceed the dataset's privacy budget.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from tests.journeys.conftest import Result, base_env, run_cli


def test_dp_export_and_overview_spend_one_budget(user_dir: Path) -> None:
    lines = (user_dir / "datasets" / "sample_traffic.jsonl").read_text().splitlines()
    (user_dir / "traffic.jsonl").write_text("\n".join(lines[:600]) + "\n")
    env = base_env(EVALWATCH_HASH_KEY="journey-key", EVALWATCH_DP__DEFAULT_BUDGET="2")
    db = f"sqlite:///{user_dir / 'store.db'}"

    def cli(*args: str) -> Result:
        return run_cli("--db", db, *args, cwd=user_dir, env=env)

    ingested = cli("ingest", "traffic.jsonl")
    assert ingested.code == 0, str(ingested)
    window = ("--since", "2026-11-01", "--until", "2026-11-03")

    export = cli("export", "daily", *window, "--out", "daily.csv", "--dp-epsilon", "1")
    assert export.code == 0, str(export)
    assert "epsilon 1 of dataset 'traffic'" in export.out and "1 of 2 spent" in export.out
    with (user_dir / "daily.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert {r["day"] for r in rows} == {"2026-11-01", "2026-11-02"}
    assert {r["app"] for r in rows} == {"support-bot", "sales-assistant"}
    assert all(r["epsilon"] == "1.0" and float(r["interactions_noise95"]) > 0 for r in rows)

    page = cli("report", "--overview", "--days", "2", "--until", "2026-11-03",
               "--dp-epsilon", "0.5", "--html", "overview.html")  # fmt: skip
    assert page.code == 0, str(page)
    text = (user_dir / "overview.html").read_text()
    assert "differentially private" in text and "epsilon = 0.5" in text and "±" in text

    execv = cli("report", "--executive", "--days", "2", "--until", "2026-11-03",
                "--dp-epsilon", "0.25", "--html", "executive.html")  # fmt: skip
    assert execv.code == 0, str(execv)
    text = (user_dir / "executive.html").read_text()
    assert "executive view (differentially private)" in text and "epsilon = 0.25" in text

    refused = cli("export", "daily", *window, "--format", "json", "--out", "more.json",
                  "--dp-epsilon", "0.75")  # fmt: skip
    assert refused.code == 1, str(refused)
    assert "spent 1.75 of 2, remaining 0.25, requested 0.75" in refused.out
    assert not (user_dir / "more.json").exists()

    # Another dataset (one app) has its own budget; the JSON states the release.
    other = cli("export", "daily", *window, "--format", "json", "--out", "bot.json",
                "--dp-epsilon", "0.75", "--app", "support-bot")  # fmt: skip
    assert other.code == 0, str(other)
    body = json.loads((user_dir / "bot.json").read_text())
    assert body["release"]["dataset"] == "traffic:support-bot"
    assert body["release"]["epsilon"] == 0.75
    assert {r["app"] for r in body["rows"]} == {"support-bot"}

    budget = cli("export", "budget")
    assert budget.code == 0, str(budget)
    assert "traffic: budget 2, spent 1.75, remaining 0.25, 3 release(s)" in budget.out
