"""Journey: the reports a person opens (issue #12, defect 7).

Two teams keep two stores; each asks for the report of its run 1 and runs a traffic evaluation
through the Prefect server. Each store's reports land beside it (or under the configured
reports root, one folder per store), so neither overwrites the other and the Prefect artifact
of each run carries that run's own report. The drift report titles each histogram with its own
column, the overview says the latest drift check found nothing (and when it ran) while still
showing the latest check with findings, and no report uses an emoji (a box without an emoji
font).
"""

from __future__ import annotations

import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.journeys.conftest import DemoStore, PrefectServer, base_env, run_cli

pytestmark = pytest.mark.slow


def _no_emoji(page: str) -> None:
    assert "👍" not in page
    emoji = sorted({c for c in page if ord(c) >= 0x1F000})
    assert not emoji, f"emoji in a report: {emoji}"


def _two_stores(store: DemoStore, user_dir: Path) -> tuple[str, str]:
    """The demo store and a copy of it in another folder, as relative store URLs."""
    other = user_dir / "team-b"
    other.mkdir()
    shutil.copy2(store.db, other / "evalwatch.db")
    return "sqlite:///demo-out/evalwatch.db", "sqlite:///team-b/evalwatch.db"


def test_each_store_keeps_its_own_reports(store: DemoStore, user_dir: Path) -> None:
    a, b = _two_stores(store, user_dir)
    env = base_env()
    env.pop("EVALWATCH_REPORT_DIR", None)
    first = run_cli("--db", a, "report", "1", cwd=user_dir, env=env)
    assert first.code == 0, str(first)
    report_a = user_dir / "demo-out" / "reports" / "run-1.html"
    assert report_a.is_file(), str(first)
    written_a = report_a.read_bytes()

    second = run_cli("--db", b, "report", "1", cwd=user_dir, env=env)
    assert second.code == 0, str(second)
    report_b = user_dir / "team-b" / "reports" / "run-1.html"
    assert report_b.is_file(), str(second)
    assert report_a.read_bytes() == written_a, "the second store's report overwrote the first"
    assert not (user_dir / "report.html").exists() and not (user_dir / "reports").exists()

    # A configured reports root (relative, as a user writes it) keeps one folder per store.
    shared = base_env(EVALWATCH_REPORT_DIR="shared-reports")
    for url in (a, b):
        res = run_cli("--db", url, "report", "1", cwd=user_dir, env=shared)
        assert res.code == 0, str(res)
    under = sorted(
        p.relative_to(user_dir / "shared-reports")
        for p in user_dir.rglob("run-1.html")
        if (user_dir / "shared-reports") in p.parents
    )
    assert len(under) == 2 and under[0].parent != under[1].parent, under
    assert all(p.name == "run-1.html" for p in under)
    for page in (report_a, report_b):
        _no_emoji(page.read_text(encoding="utf-8"))


class _Panels(HTMLParser):
    """The panel captions and image alt texts of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.panels: list[str] = []
        self.alts: list[str] = []
        self._in_panel = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "span" and a.get("class") == "panel":
            self._in_panel = True
            self.panels.append("")
        if tag == "img":
            self.alts.append(a.get("alt") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "span":
            self._in_panel = False

    def handle_data(self, data: str) -> None:
        if self._in_panel:
            self.panels[-1] += data


def test_drift_histograms_are_titled_with_their_own_columns(
    store: DemoStore, user_dir: Path, prefect_server: PrefectServer
) -> None:
    # The alert rules the check runs deliver through the team's Prefect server.
    env = base_env(PREFECT_API_URL=prefect_server.api_url)
    res = run_cli(
        "--db", "sqlite:///demo-out/evalwatch.db", "drift",
        "--current-since", "2026-11-12", "--current-until", "2026-11-15",
        "--baseline-days", "7", "--scopes", "overall", "--html", "drift.html",
        cwd=user_dir, env=env, timeout=300,
    )  # fmt: skip
    assert res.code == 1, str(res)  # the bundled traffic drifts from 12 November
    page = (user_dir / "drift.html").read_text(encoding="utf-8")
    parsed = _Panels()
    parsed.feed(page)
    assert parsed.panels, "the distributions figure names no panel"
    assert len(set(parsed.panels)) == len(parsed.panels)
    assert not {"current", "baseline"} & set(parsed.panels)
    assert "latency_ms" in parsed.panels  # the sample's largest shift
    alt = next(a for a in parsed.alts if a.startswith("overall distributions"))
    assert all(p in alt for p in parsed.panels)
    _no_emoji(page)


def test_overview_says_the_latest_check_found_nothing_and_shows_the_last_findings(
    store: DemoStore, user_dir: Path
) -> None:
    # The demo's last drift check is its shift-free control; the one before found the shift.
    res = run_cli(
        "--db", "sqlite:///demo-out/evalwatch.db", "report", "--overview", "--days", "14",
        "--html", "overview.html", cwd=user_dir,
    )  # fmt: skip
    assert res.code == 0, str(res)
    page = (user_dir / "overview.html").read_text(encoding="utf-8")
    drift = page.split("<h2>Latest drift check", 1)[1].split("</section>", 1)[0]
    assert "nothing to show" not in drift
    assert re.search(r"no drift in the latest check, \d{4}-\d\d-\d\d \d\d:\d\d UTC", drift), drift
    found = drift.split("Latest check with findings", 1)[1]
    assert "<table>" in found and "<td>drift</td>" in found and "response_chars" in found
    _no_emoji(page)


def _report_artifacts(server: PrefectServer) -> list[dict[str, Any]]:
    resp = httpx.post(
        f"{server.api_url}/artifacts/filter",
        json={"artifacts": {"key": {"any_": ["evalwatch-traffic-report"]}}, "limit": 50},
        timeout=30,
    )
    resp.raise_for_status()
    return list(resp.json())


def test_each_stores_flow_run_publishes_its_own_report(
    store: DemoStore, user_dir: Path, prefect_server: PrefectServer
) -> None:
    a, b = _two_stores(store, user_dir)
    env = base_env(PREFECT_API_URL=prefect_server.api_url)
    env.pop("EVALWATCH_REPORT_DIR", None)
    reports = []
    for url, folder in ((a, "demo-out"), (b, "team-b")):
        res = run_cli(
            "--db", url, "run", "traffic", "--evaluators", "heuristics", "--max-items", "40",
            cwd=user_dir, env=env,
        )  # fmt: skip
        assert res.code == 0, str(res)
        (report,) = (user_dir / folder / "reports").glob("run-*.html")
        reports.append(report)
    # Both copies numbered the new run alike; the reports are still two files.
    assert reports[0].name == reports[1].name and reports[0] != reports[1]
    mine = [art for art in _report_artifacts(prefect_server) if str(user_dir) in art["data"]]
    assert len(mine) == 2, mine
    for report in reports:
        (art,) = [x for x in mine if f"`{report}`" in x["data"]]
        # The run's content, not a file:// link the UI cannot open.
        assert art["type"] == "markdown" and report.as_uri() not in art["data"]
        assert "heuristics.refusal" in art["data"] and "Worst items" in art["data"]
