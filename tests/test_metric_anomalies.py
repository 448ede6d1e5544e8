"""Anomalies on metric series: stored samples -> anomaly report rows -> a firing alert rule.

A week of GPU temperatures with a daily cycle (cooler at night) is stored through the real
ingest path (``ingest.metric_store.store``) on SQLite and PostgreSQL; a spike in the last
complete hour of one GPU is flagged for that host and GPU only, stored as an ``anomaly`` row,
and an ``anomaly.verdict`` rule scoped by host and GPU fires on it through the real alert
engine. The same week without the spike flags nothing. The CLI runs as installed.
"""

from __future__ import annotations

import math
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy.engine import Engine

from evalwatch.alerting.engine import evaluate_rules
from evalwatch.checks.rules import load_rules
from evalwatch.core.telemetry import MetricPoint, SeriesKind
from evalwatch.ingest.metric_store import store
from evalwatch.runs.metric_anomalies import MetricAnomalyParams, check_metric_anomalies
from evalwatch.storage.db import make_engine, upgrade
from evalwatch.storage.models import DriftReportRow
from tests.store_load import EVALWATCH, cli_env

HOST = "gpu-node-1"
MODEL = "llama-3-8b"
STEP = timedelta(minutes=10)
# The judged hour is the one before END; the history is the week before it.
END = datetime(2026, 11, 20, 12, tzinfo=UTC)
NOW = END + timedelta(minutes=7)


def _temperatures(
    end: datetime, gpu: str, spike: float = 0.0, seed: int = 0, days: int = 7
) -> list[MetricPoint]:
    """Readings every 10 minutes for ``days`` plus the judged hour: 60 +- 8 C daily, noise 0.7."""
    rng = np.random.default_rng(seed)
    start = end - timedelta(days=days, hours=1)
    out = []
    t = start
    while t < end:
        hour = t.hour + t.minute / 60
        value = 60 + 8 * math.sin(2 * math.pi * hour / 24) + float(rng.normal(0, 0.7))
        if t >= end - timedelta(hours=1):
            value += spike
        out.append(
            MetricPoint(
                "gpu.temperature",
                "dcgm",
                "DCGM_FI_DEV_GPU_TEMP",
                SeriesKind.gauge,
                "celsius",
                t,
                round(value, 2),
                host=HOST,
                gpu=gpu,
                model=MODEL,
            )
        )
        t += STEP
    return out


def _ttft(end: datetime, slow_last_hour: bool) -> list[MetricPoint]:
    """Cumulative TTFT histograms every 10 minutes: 60 requests per interval, mostly < 0.25 s."""
    le = [0.1, 0.25, 0.5, 1.0, 2.5, math.inf]
    fast, slow = [30, 28, 2, 0, 0, 0], [0, 2, 8, 20, 30, 0]
    counts = [0.0] * len(le)
    total_sum = 0.0
    out = []
    t = end - timedelta(days=7, hours=1)
    while t < end:
        per = slow if slow_last_hour and t >= end - timedelta(hours=1) else fast
        running = 0.0
        for i, n in enumerate(per):
            running += n
            counts[i] += running
        total_sum += sum(n * b for n, b in zip(per, [0.05, 0.2, 0.4, 0.8, 2.0, 3.0], strict=True))
        out.append(
            MetricPoint(
                "engine.ttft_seconds",
                "vllm",
                "vllm:time_to_first_token_seconds",
                SeriesKind.histogram,
                "seconds",
                t,
                None,
                host=HOST,
                model=MODEL,
                buckets={"le": le, "counts": list(counts), "sum": total_sum, "count": counts[-1]},
            )
        )
        t += STEP
    return out


def _rules(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "rules": [
                    {
                        "name": "gpu-metric-anomaly",
                        "selector": "anomaly.verdict",
                        "aggregation": "any",
                        "comparison": "==",
                        "threshold": 1,
                        "window": "run",
                        "scope": {"host": "each", "gpu": "each", "series": "gpu.temperature"},
                        "severity": "warning",
                    },
                    {
                        # A drift-job style rule keeps working: metric rows have no app.
                        "name": "app-anomaly",
                        "selector": "anomaly.verdict",
                        "aggregation": "any",
                        "comparison": "==",
                        "threshold": 1,
                        "window": "run",
                        "scope": {"app": "support-bot"},
                    },
                ],
            }
        )
    )
    return path


def _params() -> MetricAnomalyParams:
    return MetricAnomalyParams(series=["gpu.temperature"], window="1h", history="7d")


def test_a_temperature_spike_is_flagged_for_its_gpu_and_fires_the_rule(
    engine: Engine, tmp_path: Path
) -> None:
    store(engine, _temperatures(END, "0", spike=9.0, seed=1))
    store(engine, _temperatures(END, "1", seed=2))
    out = check_metric_anomalies(engine, _params(), now=NOW)

    assert out.no_data is None and out.current.start == END - timedelta(hours=1)
    verdicts = {s.dims["gpu"]: s.verdict for s in out.series}
    assert verdicts == {"0": "anomaly", "1": "no_anomaly"}
    hot = next(s for s in out.series if s.dims["gpu"] == "0")
    (point, _n), *_ = hot.anomalies()
    assert point.direction == "up" and point.seasonal
    assert point.value is not None and point.expected is not None
    assert 5 < point.value - point.expected < 13  # the 9 C spike, not the daily swing

    with engine.connect() as conn:
        rows = conn.execute(sa.select(DriftReportRow.__table__)).mappings().all()  # type: ignore[attr-defined]
    assert sorted((r["feature"], r["scope"]["gpu"], r["verdict"]) for r in rows) == [
        ("gpu.temperature", "0", "anomaly"),
        ("gpu.temperature", "1", "no_anomaly"),
    ]
    assert {r["family"] for r in rows} == {"anomaly"}
    assert rows[0]["scope"]["host"] == HOST and rows[0]["scope"]["model"] == MODEL

    events = evaluate_rules(engine, load_rules(_rules(tmp_path)), now=NOW, deliver=False)
    assert [(e.summary()["rule"], e.summary()["action"], e.scope_key) for e in events] == [
        ("gpu-metric-anomaly", "open", f"gpu=0,host={HOST},series=gpu.temperature")
    ]

    # The flow runs every few minutes: the same hour is one report, stored once.
    again = check_metric_anomalies(engine, _params(), now=NOW + timedelta(minutes=5))
    assert again.already_stored and again.n_rows_stored == 0 and again.anomalies_found
    assert evaluate_rules(engine, load_rules(_rules(tmp_path)), now=NOW, deliver=False) == []


def test_the_same_week_without_a_spike_flags_nothing(engine: Engine, tmp_path: Path) -> None:
    store(engine, _temperatures(END, "0", seed=1))
    store(engine, _temperatures(END, "1", seed=2))
    # A GPU that stopped reporting two days ago gets no verdict (nothing in the judged hour).
    store(engine, _temperatures(END - timedelta(days=2), "2", seed=3))
    out = check_metric_anomalies(engine, _params(), now=NOW)
    assert [(s.dims["gpu"], s.verdict) for s in out.series] == [
        ("0", "no_anomaly"),
        ("1", "no_anomaly"),
    ]
    assert not out.anomalies_found and out.n_rows_stored == 2
    assert evaluate_rules(engine, load_rules(_rules(tmp_path)), now=NOW, deliver=False) == []


def test_a_histogram_p95_is_read_from_the_windows_buckets(sqlite_engine: Engine) -> None:
    store(sqlite_engine, _ttft(END, slow_last_hour=True))
    params = MetricAnomalyParams(series=["engine.ttft_p95"], window="1h", history="7d")
    out = check_metric_anomalies(sqlite_engine, params, now=NOW, store=False)
    (series,) = out.series
    (point, _n), *_ = series.anomalies()
    # Quiet hours: the p95 of 360 requests lies in (0.1, 0.25]; the slow hour's in (1, 2.5].
    # (A mean of per-sample means would say 0.13 and 1.1: not percentiles of requests.)
    assert point.expected is not None and 0.1 < point.expected <= 0.25
    assert point.value is not None and 1.0 < point.value <= 2.5
    assert series.dims == {"host": HOST, "gpu": None, "model": MODEL}


def test_no_samples_in_the_window_says_when_the_newest_is(sqlite_engine: Engine) -> None:
    out = check_metric_anomalies(sqlite_engine, _params(), now=NOW)
    assert out.no_data is not None and out.no_data.endswith("the store holds no metric samples")
    store(sqlite_engine, _temperatures(END - timedelta(days=2), "0"))
    out = check_metric_anomalies(sqlite_engine, _params(), now=NOW)
    assert out.no_data == (
        "0 metric samples between 2026-11-20 11:00 and 2026-11-20 12:00 UTC; "
        "the newest is 2026-11-18 11:50 UTC"
    )
    assert out.series == [] and out.n_rows_stored == 0


def test_unknown_series_are_refused() -> None:
    with pytest.raises(ValueError, match=r"unknown metric series 'gpu\.temprature'"):
        MetricAnomalyParams(series=["gpu.temprature"])


def test_the_cli_exits_1_on_a_spike_and_2_without_samples(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    eng = make_engine(url)
    upgrade(eng)
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    store(eng, _temperatures(end, "0", spike=9.0, seed=1))
    eng.dispose()
    env = cli_env(url, tmp_path)
    env["EVALWATCH_RULES_FILE"] = str(_rules(tmp_path))
    until = end.isoformat()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [EVALWATCH, "collect", "anomalies", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    found = run(
        "--window", "1h", "--history", "7d", "--series", "gpu.temperature", "--until", until
    )
    assert found.returncode == 1, found.stdout + found.stderr
    assert (
        "ANOMALY host=gpu-node-1,gpu=0,model=llama-3-8b: gpu.temperature (hourly)" in found.stdout
    )
    assert "1 of 1 metric series anomalous" in found.stdout
    assert "alert 1 open [warning] gpu-metric-anomaly" in found.stdout

    later = (end + timedelta(days=3)).isoformat()
    empty = run("--series", "gpu.temperature", "--until", later)
    assert empty.returncode == 2, empty.stdout + empty.stderr
    newest = (end - STEP).strftime("%Y-%m-%d %H:%M")
    assert f"the newest is {newest} UTC" in empty.stdout


@pytest.mark.usefixtures("prefect_harness")
def test_the_collect_metrics_flow_judges_anomalies_before_the_rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from evalwatch.flows.metrics import collect_metrics

    # One backend here: the report and the rule on PostgreSQL are the first test's.
    db_url = f"sqlite:///{tmp_path / 'store.db'}"
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    eng = make_engine(db_url)
    upgrade(eng)
    store(eng, _temperatures(end, "0", spike=9.0, seed=1))
    eng.dispose()
    monkeypatch.setenv("EVALWATCH_RULES_FILE", str(_rules(tmp_path)))
    monkeypatch.setenv("EVALWATCH_TELEMETRY__ANOMALY_SERIES", '["gpu.temperature"]')
    result = collect_metrics(database_url=db_url, targets=[])
    assert result["anomalies"]["anomalies"] == [
        "gpu.temperature host=gpu-node-1,gpu=0,model=llama-3-8b"
    ]
    assert [(a["rule"], a["action"], a["scope"]) for a in result["alerts"]] == [
        ("gpu-metric-anomaly", "open", "gpu=0,host=gpu-node-1,series=gpu.temperature")
    ]
