"""RunDigest: the streaming aggregates equal what the whole frame gives, in bounded memory."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evalwatch.evaluators import digest as digest_module
from evalwatch.evaluators.digest import RunDigest
from evalwatch.evaluators.summary import MetricSummary, summarize


def summaries_from_frame(frame: pd.DataFrame, by: str | None = None) -> list[MetricSummary]:
    """The reference: :func:`summarize` over each metric's (and group's) whole column."""
    out: list[MetricSummary] = []
    keys = ["evaluator", "metric"] + ([by] if by else [])
    for key, g in frame.groupby(keys, sort=True, dropna=False):
        values = [v if s == "ok" else None for v, s in zip(g["value"], g["status"], strict=True)]
        reasons = [
            None if s == "ok" else f"{s}: {r}"
            for s, r in zip(g["status"], g["reason"], strict=True)
        ]
        summary = summarize(str(key[0]), str(key[1]).split(".", 1)[1], values, reasons)
        if by:
            summary.model_version = str(key[2])
        out.append(summary)
    return out


def _frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    metric = rng.choice(["h.refusal", "e.relevance"], n)
    value = np.where(metric == "h.refusal", rng.integers(0, 2, n), rng.normal(0.6, 0.1, n))
    status = np.where(rng.random(n) < 0.05, "error", "ok")
    return pd.DataFrame(
        {
            "subject_type": "interaction",
            "subject_id": rng.integers(0, n // 2, n),
            "evaluator": [m.split(".")[0] for m in metric],
            "metric": metric,
            "value": np.where(status == "ok", value, np.nan),
            "status": status,
            "reason": [None if s == "ok" else "timeout" for s in status],
            "group": rng.choice(["v1", "v2", "v3"], n),
            "ts": pd.Timestamp("2026-11-01", tz="UTC")
            + pd.to_timedelta(rng.integers(0, 5 * 86400, n), unit="s"),
        }
    )


def test_streamed_summaries_equal_the_whole_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(digest_module, "SAMPLE_SIZE", 500)
    frame = _frame(6_000)
    d = RunDigest()
    for start in range(0, len(frame), 1_000):  # six chunks
        d.add(frame.iloc[start : start + 1_000])
    expected = summaries_from_frame(frame)
    got = d.metrics()
    assert [(m.evaluator, m.metric) for m in got] == [(m.evaluator, m.metric) for m in expected]
    for a, b in zip(got, expected, strict=True):
        assert a.count == b.count and a.unscored == b.unscored
        assert a.mean == pytest.approx(b.mean) and a.std == pytest.approx(b.std)
        assert (a.ci_low, a.ci_high) == (pytest.approx(b.ci_low), pytest.approx(b.ci_high))
        assert a.unscored_reasons == b.unscored_reasons
    by_group = summaries_from_frame(frame, by="group")
    assert [(m.metric, m.model_version, m.count) for m in d.by_group()] == [
        (m.metric, m.model_version, m.count) for m in by_group
    ]
    assert d.n_scores == 6_000
    assert d.n_subjects == frame["subject_id"].nunique()

    # Bounded: at most SAMPLE_SIZE values per metric, drawn from that metric's values.
    sample = d.sample_frame()
    for metric, g in sample.groupby("metric"):
        assert len(g) == 500
        assert set(g["value"]) <= set(frame.loc[frame["metric"] == metric, "value"].dropna())

    # The extremes hold each metric's true lowest and highest value.
    ext = d.extremes_frame()
    for metric, g in frame[frame["status"] == "ok"].groupby("metric"):
        kept = ext.loc[ext["metric"] == metric, "value"]
        assert kept.min() == g["value"].min() and kept.max() == g["value"].max()

    # Daily means per metric and group, as resampling the whole frame gives them.
    daily = d.daily_frame()
    ok = frame[frame["status"] == "ok"]
    one = ok[(ok["metric"] == "e.relevance") & (ok["group"] == "v2")]
    want = one.set_index("ts")["value"].resample("D").mean().dropna()
    got_daily = daily[(daily["metric"] == "e.relevance") & (daily["group"] == "v2")]
    assert got_daily["value"].to_numpy() == pytest.approx(want.to_numpy())


def test_an_empty_digest_gives_empty_parts() -> None:
    d = RunDigest()
    assert d.metrics() == [] and d.by_group() == [] and d.n_subjects == 0
    assert d.sample_frame().empty and d.daily_frame().empty and d.extremes_frame().empty
