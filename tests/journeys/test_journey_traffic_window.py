"""Journey: a traffic window that holds nothing is said, and `compare` finds the traffic.

The bundled traffic ends on 2026-11-14, so the README's "last 24 hours" finds nothing on the
demo store. A traffic run over it must not show a green run with empty tables: the CLI and
the Prefect artifact say, in one line, that the window is empty and what the newest stored
interaction is (issue #12, defect 3). ``compare`` anchors its window at the newest traffic,
as ``drift`` does, so the README's example compares real data.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.journeys.conftest import DemoStore, PrefectServer, base_env, run_cli

NEWEST = "the newest is 2026-11-14 23:55 UTC"


def test_evaluate_an_empty_window_says_so(store: DemoStore, user_dir: Path) -> None:
    env = base_env(EVALWATCH_DATABASE_URL=store.url)
    res = run_cli("evaluate", "--since", "24h", "--evaluators", "heuristics", cwd=user_dir, env=env)
    assert res.code == 0, str(res)
    assert "0 interactions since" in res.out and NEWEST in res.out
    assert len(res.stdout.strip().splitlines()) == 1, str(res)

    # A window of one app that ends before its traffic starts names that app's newest time.
    res = run_cli(
        "evaluate",
        "--since",
        "2026-10-01",
        "--until",
        "2026-10-02",
        "--app",
        "sales-assistant",
        "--evaluators",
        "heuristics",
        cwd=user_dir,
        env=env,
    )
    assert res.code == 0, str(res)
    assert (
        "0 interactions (app sales-assistant) between 2026-10-01 00:00 and 2026-10-02 00:00 UTC;"
        " the newest (app sales-assistant) is 2026-11-14 23:07 UTC" in res.out
    )


@pytest.mark.slow
def test_run_traffic_on_an_empty_window_says_so_in_cli_and_artifact(
    store: DemoStore, user_dir: Path, prefect_server: PrefectServer
) -> None:
    env = base_env(EVALWATCH_DATABASE_URL=store.url, PREFECT_API_URL=prefect_server.api_url)
    res = run_cli(
        "run", "traffic", "--since", "24h", "--evaluators", "heuristics", cwd=user_dir, env=env
    )
    assert res.code == 0, str(res)
    assert "0 interactions since" in res.out and NEWEST in res.out
    assert "nothing evaluated" in res.out
    art = httpx.get(f"{prefect_server.api_url}/artifacts/evalwatch-traffic-summary/latest")
    art.raise_for_status()
    assert "0 interactions since" in art.json()["data"] and NEWEST in art.json()["data"]


def test_compare_anchors_at_the_newest_traffic(store: DemoStore, user_dir: Path) -> None:
    env = base_env(EVALWATCH_DATABASE_URL=store.url)
    args = ["compare", "--app", "support-bot", "--model-a", "v1.1", "--model-b", "v2.0-canary"]
    res = run_cli(*args, "--window", "24h", cwd=user_dir, env=env)
    # The canary of the bundled data is slower: shown worse on the last day it served.
    assert res.code == 1, str(res)
    assert "2026-11-14T00:00:00+00:00 to 2026-11-15T00:00:00+00:00" in res.out
    assert "latency_ms regressed" in res.out

    # A window where the canary served nothing: exit 2 and the one line with its newest time.
    res = run_cli(*args, "--window", "24h", "--until", "2026-11-12", cwd=user_dir, env=env)
    assert res.code == 2, str(res)
    assert (
        "0 interactions (app support-bot; model version v2.0-canary) between 2026-11-11 00:00 "
        "and 2026-11-12 00:00 UTC; the newest (app support-bot; model version v2.0-canary) is "
        "2026-11-14 23:23 UTC" in res.out
    )
