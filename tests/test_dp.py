"""Differential privacy of released aggregates: contribution bounds, noise, budget ledger.

Real SQLite files and the real PostgreSQL; OpenDP's own noise (not seedable, so the noise
tests draw many times and hold loose tolerances that a wrong scale would still fail).
"""

from __future__ import annotations

import json
import math
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy.engine import Engine

from evalwatch.checks.dp import CountQuery, SumQuery, bound_contributions, noise_scale, release
from evalwatch.reporting.dp_release import DPParams, daily_release, overview_release
from evalwatch.runs.dp import dp_params, publish_daily_export, publish_overview
from evalwatch.settings import DPSettings
from evalwatch.storage.db import make_engine
from evalwatch.storage.dp_data import load_dp_frames
from evalwatch.storage.dp_ledger import (
    BudgetExceededError,
    budget_status,
    charge,
    list_releases,
)
from evalwatch.storage.repo import insert_feedback, insert_interactions, interaction_ids_for

START = datetime(2026, 11, 1, tzinfo=UTC)
END = START + timedelta(days=2)
BOUNDS = {"cost": (0.0, 0.05), "latency_ms": (0.0, 30000.0), "rating": (1.0, 5.0)}


def _seed(engine: Engine, heavy: int = 1000) -> None:
    """Two days of app "shop": one heavy user (``heavy`` on day 1) and 20 light users.

    The light users each have 2 interactions a day, one of them rated 5.
    """
    rows: list[dict[str, Any]] = []
    for i in range(heavy):
        rows.append(_row(f"h{i}", START + timedelta(seconds=i), "heavy", cost=10.0))
    for day in range(2):
        for u in range(20):
            for j in range(2):
                ts = START + timedelta(days=day, hours=1 + u * 0.5 + j * 0.1)
                rows.append(_row(f"l{day}-{u}-{j}", ts, f"user{u}", cost=0.01))
    insert_interactions(engine, rows)
    ids = interaction_ids_for(engine, [r["request_id"] for r in rows if r["request_id"][0] == "l"])
    insert_feedback(
        engine,
        [
            {
                "feedback_key": f"f{rid}",
                "interaction_id": iid,
                "kind": "rating",
                "value": 5.0,
                "ts": START,
            }
            for rid, iid in ids.items()
            if rid.endswith("-0")
        ],
    )


def _row(rid: str, ts: datetime, user: str, cost: float) -> dict[str, Any]:
    return {
        "request_id": rid,
        "ts": ts,
        "app": "shop",
        "model_name": "m",
        "model_version": "v1",
        "prompt": "p",
        "response": "r",
        "cost": cost,
        "latency_ms": 200.0,
        "user_hash": user,
    }


def _params(epsilon: float = 1.0, k: int = 3, dataset: str = "traffic:shop") -> DPParams:
    return DPParams(epsilon, dataset, k, dict(BOUNDS))


# --- contribution bounds and noise (pure) -----------------------------------------------------


def test_a_heavy_user_moves_a_daily_count_by_at_most_k(sqlite_engine: Engine) -> None:
    _seed(sqlite_engine, heavy=1000)
    frames = load_dp_frames(sqlite_engine, START, END)
    for k in (1, 3, 5):
        kept = bound_contributions(frames.traffic, ["day", "app"], k)
        per_cell = kept.groupby(["user_hash", "day", "app"]).size()
        assert per_cell.max() <= k
        heavy = kept[kept["user_hash"] == "heavy"]
        # 1,000 interactions on day 1 count as k; the earliest are the ones kept.
        assert len(heavy) == k
        assert sorted(heavy["ts"]) == sorted(frames.traffic.nsmallest(k, "ts")["ts"])
        without = bound_contributions(
            frames.traffic[frames.traffic["user_hash"] != "heavy"], ["day", "app"], k
        )
        day1 = lambda f: int((f["day"] == "2026-11-01").sum())  # noqa: E731
        assert day1(kept) - day1(without) == k


def test_interactions_without_a_user_are_bounded_together() -> None:
    frame = pd.DataFrame({"user_hash": [None] * 50 + ["a"] * 2, "day": ["d"] * 52, "ts": range(52)})
    kept = bound_contributions(frame, ["day"], k=2)
    assert kept["user_hash"].isna().sum() == 2
    assert (kept["user_hash"] == "a").sum() == 2


def test_values_are_clamped_to_their_bounds_before_the_sum() -> None:
    # One value of 1e9 clamped to 5 moves the sum by at most 5: with a tiny noise scale the
    # noised sum stays near 5 * n, far from 1e9.
    q = SumQuery("s", (1e9, 1.0, 1.0), (0.0, 5.0), d_in=1)
    out = release([q], epsilon=1000.0)[0]
    assert abs(out.value - 7.0) < 1.0
    assert out.mechanism == "laplace"


def test_the_scale_follows_sensitivity_over_epsilon() -> None:
    # Count: sensitivity d_in = k * days; sum: d_in * max(|low|, |high|) for bounds >= 0.
    assert noise_scale("count", 1.0, d_in=5) == pytest.approx(5.0, rel=1e-6)
    assert noise_scale("count", 0.5, d_in=5) == pytest.approx(10.0, rel=1e-6)
    assert noise_scale("sum", 1.0, d_in=3, bounds=(0.0, 2.0)) == pytest.approx(6.0, rel=1e-6)
    # Bounds either side of 0: OpenDP takes high - low per row (its conservative bound).
    assert noise_scale("sum", 1.0, d_in=3, bounds=(-4.0, 2.0)) == pytest.approx(18.0, rel=1e-6)


def test_the_noise_has_the_stated_scale_and_interval() -> None:
    # 2,000 draws of a count at epsilon 1/3 per value (3 queries of 1 split evenly), d_in 2:
    # scale 6. Discrete Laplace: mean |noise| close to the scale; 95% of draws within noise95.
    queries = [CountQuery(f"c{i}", 500, d_in=2) for i in range(3)]
    draws: list[float] = []
    stated: set[float] = set()
    for _ in range(700):
        for n in release(queries, epsilon=1.0):
            draws.append(n.value - 500)
            stated.add(round(n.noise95, 9))
            assert n.epsilon == pytest.approx(1 / 3)
    (noise95,) = stated
    mean_abs = sum(abs(d) for d in draws) / len(draws)
    assert mean_abs == pytest.approx(6.0, rel=0.1)
    inside = sum(abs(d) <= noise95 for d in draws) / len(draws)
    assert 0.93 <= inside <= 0.97
    # Not a scale off by the number of values: 1/3 of the epsilon each means 3x the noise.
    assert noise95 == pytest.approx(6.0 * math.log(20), rel=0.1)


def test_a_daily_release_has_every_day_and_its_noise(sqlite_engine: Engine) -> None:
    _seed(sqlite_engine)
    r = daily_release(load_dp_frames(sqlite_engine, START, END), _params(epsilon=2.0))
    days = [row["day"] for row in r.tables["daily"]]
    assert days == ["2026-11-01", "2026-11-02"]
    assert r.n_values == 14  # 7 primitives per day and app
    assert r.per_value_epsilon == pytest.approx(2.0 / 14)
    row = r.tables["daily"][0]
    # 20 light users x 2 + the heavy user's 3 kept = 43; the noise is scale 3 * 7 = 21.
    assert row["interactions"]["noise95"] == pytest.approx(21 * math.log(20), rel=0.1)
    assert abs(row["interactions"]["value"] - 43) < 10 * 21
    # A rate is a ratio of noised counts, kept in [0, 1]; none when the noised count is < 1.
    rate = row["success_rate"]
    assert rate is None or 0.0 <= rate["value"] <= 1.0


# --- the budget ledger -------------------------------------------------------------------------


def test_budget_is_accounted_across_releases_and_refuses_the_one_too_many(engine: Engine) -> None:
    for i in range(4):
        c = charge(engine, "traffic", 0.25, 1.0, kind="export-daily", n_values=7)
        assert c.spent_after == pytest.approx(0.25 * (i + 1))
    with pytest.raises(BudgetExceededError) as err:
        charge(engine, "traffic", 0.1, 1.0, kind="export-daily", n_values=7)
    msg = str(err.value)
    assert "spent 1 of 1" in msg and "remaining 0" in msg and "requested 0.1" in msg
    status = budget_status(engine, "traffic", 1.0)
    assert (status.spent, status.releases) == (pytest.approx(1.0), 4)
    # Another dataset has its own budget.
    assert charge(engine, "traffic:shop", 1.0, 1.0, kind="overview", n_values=3).remaining == 0


def test_a_refused_release_writes_nothing(engine: Engine, tmp_path: Path) -> None:
    _seed(engine, heavy=10)
    settings = DPSettings(default_budget=1.0, bounds=BOUNDS)
    out = tmp_path / "daily.csv"
    publish_daily_export(engine, settings, dp_params(settings, 0.75, "t"), START, END, out, "csv")
    assert out.exists()
    before = list_releases(engine)
    again = tmp_path / "again.json"
    with pytest.raises(BudgetExceededError):
        publish_daily_export(
            engine, settings, dp_params(settings, 0.5, "t"), START, END, again, "json"
        )
    assert not again.exists()
    assert list_releases(engine) == before
    assert budget_status(engine, "t", 1.0).spent == pytest.approx(0.75)
    page = tmp_path / "overview.html"
    with pytest.raises(BudgetExceededError):
        publish_overview(engine, settings, dp_params(settings, 0.5, "t"), START, END, page)
    assert not page.exists()
    # A dataset that never released and is refused leaves no row behind either.
    with pytest.raises(BudgetExceededError):
        charge(engine, "never", 2.0, 1.0, kind="overview", n_values=1)
    assert budget_status(engine, "never", 1.0).spent == 0


def test_concurrent_releases_do_not_overspend(db_url: str) -> None:
    # Eight threads, each its own engine (own connections), each asking 0.3 of a budget of 1:
    # three may pass, never four, whatever the interleaving.
    results: list[str] = []
    barrier = threading.Barrier(8)

    def one() -> None:
        eng = make_engine(db_url)
        try:
            barrier.wait()
            charge(eng, "race", 0.3, 1.0, kind="export-daily", n_values=1)
            results.append("ok")
        except BudgetExceededError:
            results.append("refused")
        finally:
            eng.dispose()

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    eng = make_engine(db_url)
    try:
        assert results.count("ok") == 3
        assert results.count("refused") == 5
        assert budget_status(eng, "race", 1.0).spent == pytest.approx(0.9)
        assert len(list_releases(eng, "race")) == 3
    finally:
        eng.dispose()


# --- what the page and the export say ----------------------------------------------------------


def test_the_export_states_epsilon_and_noise(sqlite_engine: Engine, tmp_path: Path) -> None:
    _seed(sqlite_engine, heavy=50)
    settings = DPSettings(bounds=BOUNDS)
    params = dp_params(settings, 1.5, "traffic:shop")
    out = tmp_path / "d.json"
    done = publish_daily_export(sqlite_engine, settings, params, START, END, out, "json")
    body = json.loads(out.read_text())
    assert body["release"]["epsilon"] == 1.5
    assert body["release"]["release_id"] == done.charge.release_id
    assert body["release"]["max_contributions_per_day"] == settings.max_contributions_per_day
    assert body["release"]["n_values"] == 14
    assert {"interactions", "interactions_noise95", "mean_rating_noise95"} <= set(body["rows"][0])
    csv_out = tmp_path / "d.csv"
    publish_daily_export(sqlite_engine, settings, params, START, END, csv_out, "csv")
    frame = pd.read_csv(csv_out)
    assert list(frame["epsilon"].unique()) == [1.5]
    assert (frame["interactions_noise95"] > 0).all()
    assert budget_status(sqlite_engine, "traffic:shop", settings.default_budget).spent == 3.0


def test_the_overview_page_marks_noised_numbers(sqlite_engine: Engine, tmp_path: Path) -> None:
    _seed(sqlite_engine, heavy=50)
    settings = DPSettings(bounds=BOUNDS)
    page = tmp_path / "o.html"
    done = publish_overview(
        sqlite_engine, settings, dp_params(settings, 1.0, "traffic"), START, END, page
    )
    text = page.read_text()
    assert "epsilon = 1" in text and "95% interval" in text
    assert "≈" in text and "±" in text
    assert done.release.tables["per_version"][0]["model version"] == "v1"
    # Window numbers cover 2 days: d_in = k * 2.
    k = settings.max_contributions_per_day
    n = done.release.n_values
    head = done.release.tables["headline"][0]["interactions"]
    assert head["noise95"] == pytest.approx(2 * k * n * math.log(20), rel=0.15)


def test_overview_release_has_no_raw_numbers_of_users(sqlite_engine: Engine) -> None:
    _seed(sqlite_engine, heavy=50)
    r = overview_release(load_dp_frames(sqlite_engine, START, END), _params())
    for table in r.tables.values():
        for row in table:
            for key, cell in row.items():
                if key in ("day", "model version"):
                    continue
                assert cell is None or set(cell) == {"value", "noise95"}, key


def test_bad_dp_options_are_bad_input(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from evalwatch.cli import app

    db = f"sqlite:///{tmp_path / 's.db'}"
    runner = CliRunner()
    for args, says in [
        (["export", "daily", "--out", "x.csv", "--dp-epsilon", "0"], "must be positive"),
        (["export", "daily", "--out", "x.csv", "--dp-epsilon", "50"], "max_epsilon_per_release"),
        (["report", "3", "--dp-epsilon", "1"], "go with --overview"),
    ]:
        res = runner.invoke(app, ["--db", db, *args])
        assert res.exit_code == 2, res.output
        assert says in " ".join(res.output.split())
    assert not (tmp_path / "x.csv").exists()


def test_the_executive_page_is_noised_per_app_and_version(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    _seed(sqlite_engine, heavy=50)
    settings = DPSettings(bounds=BOUNDS)
    page = tmp_path / "e.html"
    params = dp_params(settings, 0.8, "exec")
    done = publish_overview(sqlite_engine, settings, params, START, END, page, kind="executive")
    assert done.charge.epsilon == 0.8 and done.release.kind == "executive"
    (row,) = done.release.tables["health"]
    assert (row["app"], row["model version"]) == ("shop", "v1")
    assert set(row["interactions"]) == {"value", "noise95"}
    text = page.read_text()
    assert "executive view (differentially private)" in text and "epsilon = 0.8" in text
    assert list_releases(sqlite_engine, "exec")[0]["kind"] == "executive"


def test_a_sum_carries_noise_of_the_stated_scale() -> None:
    # Sum of 10 values clamped to [0, 2], d_in 2, epsilon 0.5: scale 2 * 2 / 0.5 = 8.
    q = SumQuery("s", (1.0,) * 10, (0.0, 2.0), d_in=2)
    draws = [n.value - 10.0 for _ in range(2000) for n in release([q], epsilon=0.5)]
    mean_abs = sum(abs(d) for d in draws) / len(draws)
    assert mean_abs == pytest.approx(8.0, rel=0.1)
    assert abs(sum(draws) / len(draws)) < 1.0  # unbiased


def test_asked_for_apps_get_every_day_even_without_traffic(sqlite_engine: Engine) -> None:
    _seed(sqlite_engine, heavy=5)
    frames = load_dp_frames(sqlite_engine, START, END, ["quiet"])
    r = daily_release(frames, _params(), ["quiet"])
    assert [(row["day"], row["app"]) for row in r.tables["daily"]] == [
        ("2026-11-01", "quiet"),
        ("2026-11-02", "quiet"),
    ]


def test_dp_settings_refuse_bounds_and_budgets_that_cannot_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="low must be below high: cost"):
        DPSettings(bounds={"cost": (1.0, 0.0)})
    with pytest.raises(ValidationError, match="must be positive: t=0"):
        DPSettings(budgets={"t": 0.0})
    monkeypatch.setenv("EVALWATCH_DP__BUDGETS", '{"traffic:shop": 3}')
    from evalwatch.settings import Settings

    assert Settings().dp.budget_for("traffic:shop") == 3.0
    assert Settings().dp.budget_for("other") == Settings().dp.default_budget
