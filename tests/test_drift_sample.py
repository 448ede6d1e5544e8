"""The drift check on the bundled sample traffic: it finds the injected shift, and nothing else.

The store is built once for the module: the 5,000 sample rows ingested into a SQLite file,
heuristics on every row, and the real (offline) all-MiniLM-L6-v2 embeddings on a deterministic
hash subsample (rate 0.12 on Nov 1-4, 0.25 from Nov 5: enough rows per window for every
embedding test, about 1,050 embeddings in all, because MiniLM on two CPU cores is the slow part
of this suite).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from evalwatch.checks.drift import DriftTestResult
from evalwatch.ingest.pipeline import ingest
from evalwatch.reporting.drift_markdown import drift_outcome_markdown
from evalwatch.runs.drift import DriftParams, TimeWindow, check_drift
from evalwatch.runs.traffic import TrafficParams, evaluate_traffic
from evalwatch.settings import Settings
from evalwatch.storage.db import make_engine, upgrade
from evalwatch.storage.sampling import SampleSpec

pytestmark = pytest.mark.slow  # the real MiniLM on ~1,050 responses: ~2 min on 2 cores

REPO = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 16, tzinfo=UTC)  # after the sample's last day, whatever the clock


def day(d: int) -> datetime:
    return datetime(2026, 11, d, tzinfo=UTC)


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path_factory.mktemp('drift-sample') / 'sample.db'}"
    engine = make_engine(url)
    upgrade(engine)
    settings = Settings(database_url=url)
    loaded = ingest(
        engine, [REPO / "datasets" / "sample_traffic.jsonl"], settings=settings, now=NOW
    )
    assert loaded.ingested == 5000 and loaded.feedback > 2000
    evaluate_traffic(engine, TrafficParams(evaluators=["heuristics"]), settings, progress=False)
    for start, end, rate in ((day(1), day(5), 0.12), (day(5), None, 0.25)):
        spec = SampleSpec(start=start, end=end, rate=rate, seed=0)
        out = evaluate_traffic(
            engine, TrafficParams(sample=spec, evaluators=["embedding"]), settings, progress=False
        )
        assert not out.summary.unavailable, out.summary.unavailable
    yield engine
    engine.dispose()


def test_last_three_days_vs_the_week_before_find_the_injected_shift(sample_store, tmp_path):
    out = check_drift(
        sample_store,
        DriftParams(window="3d", baseline_days=7),
        Settings(),
        html=tmp_path / "drift.html",
        now=NOW,
    )
    # The current window ends after the newest stored interaction: Nov 12-14, vs Nov 5-11.
    assert out.current == TimeWindow(start=day(12), end=day(15))
    assert out.baseline.window == TimeWindow(start=day(5), end=day(12))
    assert out.drift_found
    overall = out.scopes[0]
    assert overall.label == "overall" and overall.n_current == 1039
    res = {(r.test, r.feature): r for r in overall.report.results}

    length = res[("mean_shift", "response_length")]
    assert length.verdict == "drift" and length.details["relative_change"] > 0.4  # x1.63
    refusal = res[("two_proportion", "refusal")]
    assert refusal.verdict == "drift"
    assert refusal.details["rate_current"] > 3 * refusal.details["rate_baseline"]  # x4.4
    assert res[("mean_shift", "latency_ms")].verdict == "drift"
    rating = res[("chi_square", "rating")]
    assert rating.verdict == "drift"
    assert rating.details["mean_current"] < rating.details["mean_baseline"]

    # The new topic: responses far from every baseline cluster, and they are about crypto.
    new = res[("new_topic", "embeddings")]
    assert new.verdict == "drift"
    assert new.details["observed_share"] > 3 * new.details["expected_share"]
    crypto = re.compile(r"crypto|bitcoin|ethereum|wallet|token", re.IGNORECASE)
    examples = new.details["examples"]
    assert sum(bool(crypto.search(t)) for t in examples) > len(examples) / 2, examples
    assert res[("mmd", "embeddings")].verdict == "drift"

    # The report leads with what moved, and the anomaly series see the longer responses.
    md = drift_outcome_markdown(out)
    assert md.startswith("## Drift check: drift in")
    assert "response_length: mean" in md.split("### Anomalies")[0]
    series = {a.feature: a for a in out.anomalies}
    assert series["response_length.mean"].verdict == "anomaly"
    page = (tmp_path / "drift.html").read_text()
    assert "Topics" in page and page.count("<img") >= 3


def test_two_shift_free_windows_find_nothing(sample_store):
    params = DriftParams(
        current_start=day(6), current_end=day(11), baseline_start=day(1), baseline_end=day(6)
    )
    out = check_drift(sample_store, params, Settings(), now=NOW)
    assert not out.drift_found, [h["summary"] for h in out.headlines()]
    assert not out.anomaly_found, [a.summary() for a in out.anomalies if a.verdict == "anomaly"]
    # Nothing found because nothing moved, not because nothing could be tested.
    overall: dict[tuple[str, str], DriftTestResult] = {
        (r.test, r.feature): r for r in out.scopes[0].report.results
    }
    for key in [
        ("mmd", "embeddings"),
        ("domain_classifier", "embeddings"),
        ("topic_shares", "embeddings"),
        ("new_topic", "embeddings"),
        ("ks", "response_length"),
        ("two_proportion", "refusal"),
        ("chi_square", "rating"),
    ]:
        assert overall[key].verdict == "no_drift", key
    assert out.n_tests > 150
    assert sum(a.verdict != "insufficient_data" for a in out.anomalies) >= 8
