"""Journey: a manager's one page, and the operations overview's new panels (issue #16 §2, §5).

From a user's directory, against a copy of the demo store, the installed ``evalwatch`` writes
the executive view (HTML and markdown beside the store) and the overview with its model
performance, infrastructure and active-alert panels; a broken targets file is one line and
exit 2.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.journeys.conftest import DemoStore, base_env, run_cli

pytestmark = pytest.mark.slow


def test_executive_view_on_the_demo_store(store: DemoStore, user_dir: Path) -> None:
    env = base_env()
    env.pop("EVALWATCH_REPORT_DIR", None)
    db = "sqlite:///demo-out/evalwatch.db"
    res = run_cli("--db", db, "report", "--executive", cwd=user_dir, env=env)
    assert res.code == 0, str(res)
    pages = sorted((user_dir / "demo-out" / "reports").glob("executive-*.html"))
    assert len(pages) == 1, str(res)
    page = pages[0].read_text(encoding="utf-8")
    md = pages[0].with_suffix(".md").read_text(encoding="utf-8")
    assert str(pages[0].resolve()) in res.out
    # One row per app and version of the demo, each with a health score and its parts.
    for app in ("support-bot", "sales-assistant"):
        assert re.search(rf"### {app} / [^:]+: health \d+\.\d", md), md[:2000]
    for part in ("quality", "safety", "latency", "error_rate", "satisfaction"):
        assert f"| {part} |" in md
    assert "Health per app and model version" in page and "Trends" in page
    # The demo scores toxicity: safety compliance is a share, shown for the whole window.
    whole = re.search(r"\| all \| all \| ([\d.]+) \| (\d+) \| ([\d.]+) \|", md)
    assert whole is not None, md[:1500]
    health, interactions, compliance = float(whole[1]), int(whole[2]), float(whole[3])
    assert 0 < health <= 100 and interactions > 100 and 0.5 < compliance <= 1.0

    bad = user_dir / "targets.yaml"
    bad.write_text("latency: {target: fast}\n", encoding="utf-8")
    res = run_cli("--db", db, "report", "--executive", "--targets", "targets.yaml",
                  cwd=user_dir, env=env)  # fmt: skip
    assert res.code == 2, str(res)
    assert "latency.target" in res.out and len(res.stderr.strip().splitlines()) == 1


def test_overview_shows_performance_and_active_alerts(store: DemoStore, user_dir: Path) -> None:
    env = base_env()
    res = run_cli("--db", "sqlite:///demo-out/evalwatch.db", "report", "--overview",
                  "--html", "ov.html", cwd=user_dir, env=env)  # fmt: skip
    assert res.code == 0, str(res)
    page = (user_dir / "ov.html").read_text(encoding="utf-8")
    assert "Model performance per version" in page
    assert "v2.0-canary" in page and "latency p95 ms" in page
    assert "Infrastructure" in page and "Active alerts (" in page
