"""Drift compares like with like: one evaluator version and options per evaluator.

Two toxicity backends (detoxify, the embedded alt-profanity-check) both write ``toxicity.*``
under the same evaluator name and version; their scores differ by ``config_hash``. The drift
loader compares, per evaluator, the current window's newest key only, loads the baseline
under the same key, and says on the affected results what it left out.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from evalwatch.runs.drift import DriftParams, TimeWindow, check_drift, load_frame
from evalwatch.settings import Settings
from evalwatch.storage.repo import (
    create_run,
    insert_interactions,
    interaction_ids_for,
    write_scores,
)

T0 = datetime(2026, 11, 1, tzinfo=UTC)
CURRENT = TimeWindow(start=T0 + timedelta(days=7), end=T0 + timedelta(days=8))
BASELINE = TimeWindow(start=T0, end=T0 + timedelta(days=7))


def _tox(run_id: int, iid: int, value: float, options: str, version: str = "1") -> dict[str, Any]:
    return {
        "run_id": run_id,
        "subject_type": "interaction",
        "subject_id": iid,
        "evaluator": "toxicity",
        "evaluator_version": version,
        "config_hash": options,
        "metric": "safety",
        "value": value,
        "status": "ok",
    }


def _heur(run_id: int, iid: int, value: float) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "subject_type": "interaction",
        "subject_id": iid,
        "evaluator": "heuristics",
        "evaluator_version": "1",
        "config_hash": "h",
        "metric": "response_chars",
        "value": value,
        "status": "ok",
    }


def _seed(engine: Any, per_day: int = 60) -> tuple[list[int], list[int]]:
    """Baseline (7 days) and current (1 day) interactions; returns their ids."""
    rows: list[dict[str, Any]] = [
        {
            "request_id": f"q{i}",
            "ts": T0 + timedelta(seconds=i * 86_400 / per_day + 1),
            "app": "help%desk",
            "model_name": "m",
            "model_version": "v1",
            "prompt": "p?",
            "response": "x" * (10 + i % 7),
            "latency_ms": 100.0 + i % 13,
            "input_tokens": 5,
            "output_tokens": 7,
            "cost": 0.5,
        }
        for i in range(8 * per_day)
    ]
    insert_interactions(engine, rows)
    ids = interaction_ids_for(engine, [r["request_id"] for r in rows])
    ordered = [ids[r["request_id"]] for r in rows]
    return ordered[: 7 * per_day], ordered[7 * per_day :]


def test_the_current_windows_options_are_compared_and_the_rest_left_out(engine):
    base, cur = _seed(engine)
    rng = np.random.default_rng(3)
    run = create_run(engine, "traffic", run_key="detoxify")
    assert run.id is not None
    # The baseline was scored by detoxify ("dx"): values near 1.
    write_scores(engine, [_tox(run.id, i, float(rng.uniform(0.9, 1.0)), "dx") for i in base])
    write_scores(engine, [_heur(run.id, i, 10.0 + i % 7) for i in base + cur])
    # Later, the embedded classifier ("apc") scored the current window and half the
    # baseline: values near 0.5, so a mixed comparison would read as a huge drop.
    later = create_run(engine, "traffic", run_key="profanity-check")
    assert later.id is not None
    rescored = base[::2]
    write_scores(
        engine,
        [_tox(later.id, i, float(rng.uniform(0.4, 0.6)), "apc") for i in rescored + cur],
    )

    # A "%" in a filter value reaches the database as it is (the driver's reads render values).
    frame = load_frame(engine, [BASELINE, CURRENT], current=CURRENT, apps=["help%desk"])
    assert len(frame) == len(base) + len(cur)
    assert frame.score_keys == {"toxicity": ("1", "apc"), "heuristics": ("1", "h")}
    safety = frame.numeric["toxicity.safety"]
    by_id = dict(zip(frame.ids.tolist(), safety.tolist(), strict=True))
    # Only the compared options' values: the detoxify-only baseline rows have none.
    assert all(0.4 <= by_id[i] <= 0.6 for i in rescored + cur)
    assert all(math.isnan(by_id[i]) for i in base[1::2])
    assert set(frame.left_out) == {"toxicity"}  # heuristics has one key: nothing left out
    assert frame.left_out_keys["toxicity"] == [("1", "dx")]
    left = dict(zip(frame.ids.tolist(), frame.left_out["toxicity"].tolist(), strict=True))
    assert all(left[i] for i in base) and not any(left[i] for i in cur)

    out = check_drift(
        engine,
        DriftParams(
            current_start=CURRENT.start,
            current_end=CURRENT.end,
            baseline_start=BASELINE.start,
            baseline_end=BASELINE.end,
            scopes=["overall"],
        ),
        Settings(),
        store=False,
        alerts=False,
    )
    results = out.scopes[0].report.results
    tox = [r for r in results if r.feature in ("toxicity.safety", "unsafe")]
    assert tox and all("left out" in r.details["note"] for r in tox)
    assert all(f"{len(base):,} baseline" in r.details["note"] for r in tox)
    assert all("version 1 options dx" in r.details["note"] for r in tox)
    # Like with like: both windows' safety values come from the same backend.
    ks = next(r for r in results if r.test == "ks" and r.feature == "toxicity.safety")
    assert ks.n_baseline == len(rescored) and ks.n_current == len(cur)
    assert ks.verdict == "no_drift"
    assert all("note" not in r.details for r in results if r.feature == "response_chars")


def test_the_key_covering_most_of_the_current_window_is_compared_newest_on_a_tie(sqlite_engine):
    base, cur = _seed(sqlite_engine, per_day=10)
    run = create_run(sqlite_engine, "traffic", run_key="a")
    assert run.id is not None
    write_scores(sqlite_engine, [_tox(run.id, i, 0.9, "old", version="2") for i in base + cur])
    write_scores(sqlite_engine, [_tox(run.id, i, 0.5, "new", version="2") for i in cur])
    frame = load_frame(sqlite_engine, [BASELINE, CURRENT], current=CURRENT)
    # Both keys scored the whole current window: the one stored last is compared.
    assert frame.score_keys["toxicity"] == ("2", "new")
    # Without a current window, coverage of every loaded row counts: the older key has more.
    assert load_frame(sqlite_engine, [BASELINE, CURRENT]).score_keys["toxicity"] == ("2", "old")
    # A window the newer options never scored compares the older ones, nothing left out.
    old = load_frame(sqlite_engine, [BASELINE], current=BASELINE)
    assert old.score_keys["toxicity"] == ("2", "old") and not old.left_out
    assert np.nanmax(old.numeric["toxicity.safety"]) == 0.9


def test_an_ad_hoc_run_with_other_options_does_not_displace_the_scheduled_scores(sqlite_engine):
    base, cur = _seed(sqlite_engine, per_day=10)
    run = create_run(sqlite_engine, "traffic", run_key="scheduled")
    assert run.id is not None
    write_scores(sqlite_engine, [_tox(run.id, i, 0.9, "sched") for i in base + cur])
    # Later, someone tries other options on three interactions of the current window.
    trial = create_run(sqlite_engine, "traffic", run_key="trial")
    assert trial.id is not None
    write_scores(sqlite_engine, [_tox(trial.id, i, 0.1, "trial") for i in cur[:3]])
    frame = load_frame(sqlite_engine, [BASELINE, CURRENT], current=CURRENT)
    assert frame.score_keys["toxicity"] == ("1", "sched")
    assert np.nanmin(frame.numeric["toxicity.safety"]) == 0.9
    left = dict(zip(frame.ids.tolist(), frame.left_out["toxicity"].tolist(), strict=True))
    assert sorted(i for i, out in left.items() if out) == sorted(cur[:3])
