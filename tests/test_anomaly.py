"""Anomaly detection over time: aggregation, spikes and dips, seasonality, explicit gaps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from evalwatch.checks.anomaly import AnomalyReport, aggregate_series, detect_anomalies

METHODS = ["mad", "ewma"]


def hourly(days: int, start: str = "2024-03-04T00") -> np.ndarray:
    first = np.datetime64(start, "h")
    return first + np.arange(days * 24).astype("timedelta64[h]")


def daily_cycle(hours: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Traffic with a sharp midday peak (3x between 12:00 and 14:00) and a smooth base."""
    hod = hours.astype("datetime64[h]").astype(np.int64) % 24
    base = 100 + 30 * np.sin(2 * np.pi * (hod - 6) / 24)
    peak = np.where((hod >= 12) & (hod <= 13), 200.0, 0.0)
    return base + peak + rng.normal(0, 5, hours.size)


def flagged(report: AnomalyReport) -> list[tuple[str, str | None]]:
    return [(p.window_start.strftime("%m-%d %H"), p.direction) for p in report.anomalies()]


# ------------------------------------------------------------------------------------------
# Aggregation
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("agg", "expected"),
    [
        ("count", [3.0, 0.0, 1.0]),
        ("sum", [60.0, 0.0, 5.0]),
        ("mean", [20.0, None, 5.0]),
        ("p95", [29.0, None, 5.0]),
    ],
)
def test_aggregate_series_fills_gaps_explicitly(agg: str, expected: list[float | None]) -> None:
    t = np.array(
        ["2024-01-01T00:05", "2024-01-01T00:20", "2024-01-01T00:59", "2024-01-01T02:30"],
        dtype="datetime64[s]",
    )
    values = None if agg == "count" else np.array([10.0, 20.0, 30.0, 5.0])
    starts, out, counts = aggregate_series(t, values, freq="hour", agg=agg)  # type: ignore[arg-type]
    assert [str(s) for s in starts] == ["2024-01-01T00", "2024-01-01T01", "2024-01-01T02"]
    assert counts.tolist() == [3, 0, 1]
    got = [None if np.isnan(v) else float(v) for v in out]
    assert got == pytest.approx(expected)


def test_aggregate_rate_of_booleans_and_nan_values_ignored() -> None:
    t = np.array(["2024-01-01", "2024-01-01", "2024-01-01", "2024-01-02"], dtype="datetime64[D]")
    _, rate, _ = aggregate_series(t, np.array([True, False, False, True]), freq="day", agg="rate")
    assert rate.tolist() == pytest.approx([1 / 3, 1.0])
    _, mean, counts = aggregate_series(t, np.array([1.0, np.nan, 3.0, 4.0]), freq="day")
    assert mean.tolist() == pytest.approx([2.0, 4.0]) and counts.tolist() == [3, 1]


def test_aggregate_accepts_aware_datetimes_and_iso_text_in_utc() -> None:
    paris = timedelta(hours=1)
    aware = [datetime(2024, 1, 1, 1, 30, tzinfo=UTC) + paris * 0, datetime(2024, 1, 1, 3, 0)]
    aware[1] = aware[1].replace(tzinfo=UTC)
    iso = ["2024-01-01T01:30:00Z", "2024-01-01T04:00:00+01:00"]
    for ts in (aware, iso):
        starts, _, counts = aggregate_series(ts, freq="hour", agg="count")
        assert str(starts[0]) == "2024-01-01T01" and counts.tolist() == [1, 0, 1]


def test_start_and_end_expose_an_outage_as_zero_volume() -> None:
    t = hourly(2)[:30]  # events stop after 30 hours
    starts, volume, _ = aggregate_series(
        t, freq="hour", agg="count", end=datetime(2024, 3, 5, 23, tzinfo=UTC)
    )
    assert starts.size == 48 and volume[30:].sum() == 0 and volume[:30].min() == 1


def test_aggregate_validates_its_input() -> None:
    t = hourly(1)
    with pytest.raises(ValueError, match="needs values"):
        aggregate_series(t, freq="hour", agg="mean")
    with pytest.raises(ValueError, match="values for"):
        aggregate_series(t, np.ones(3), freq="hour")
    with pytest.raises(TypeError, match="unsupported timestamp"):
        aggregate_series([1.5, 2.5], np.ones(2))


# ------------------------------------------------------------------------------------------
# Detection
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_injected_spike_and_dip_are_flagged_with_direction(method: str) -> None:
    rng = np.random.default_rng(1)
    hours = hourly(10)
    latency = 800 + rng.normal(0, 20, hours.size)
    latency[150] += 400  # spike
    latency[200] -= 300  # dip
    report = detect_anomalies(hours, latency, freq="hour", method=method, seasonal=False)  # type: ignore[arg-type]
    points = {p.window_start: p for p in report.anomalies()}
    spike = report.points[150]
    dip = report.points[200]
    assert spike.anomaly and spike.direction == "up" and spike.robust_z is not None
    assert spike.robust_z > 10
    assert dip.anomaly and dip.direction == "down"
    assert spike.expected == pytest.approx(800, abs=10)
    # The spike did not poison the baseline: the window after it is normal again.
    assert not report.points[151].anomaly
    assert len(points) <= 3  # at most one chance flag besides the two injected


@pytest.mark.parametrize("method", METHODS)
def test_normal_daily_peak_is_not_an_anomaly_with_seasonality(method: str) -> None:
    rng = np.random.default_rng(2)
    hours = hourly(14)
    traffic = daily_cycle(hours, rng)
    seasonal = detect_anomalies(hours, traffic, freq="hour", method=method, seasonal=True)  # type: ignore[arg-type]
    after_three_days = [p for p in seasonal.points[3 * 24 :] if p.anomaly]
    assert after_three_days == [], flagged(seasonal)
    assert all(p.seasonal for p in seasonal.points[4 * 24 :])
    # Without the hour-of-day profile the same peaks look like anomalies every day.
    plain = detect_anomalies(hours, traffic, freq="hour", method=method, seasonal=False)  # type: ignore[arg-type]
    peak_flags = [
        p for p in plain.points[3 * 24 :] if p.anomaly and p.window_start.hour in (12, 13)
    ]
    assert len(peak_flags) >= 10


@pytest.mark.parametrize("method", METHODS)
def test_peak_level_at_night_is_an_anomaly_with_seasonality(method: str) -> None:
    rng = np.random.default_rng(3)
    hours = hourly(10)
    traffic = daily_cycle(hours, rng)
    night = 8 * 24 + 3  # 03:00 on day 9
    traffic[night] = traffic[8 * 24 + 12]  # the midday peak's level, at 3 am
    report = detect_anomalies(hours, traffic, freq="hour", method=method, seasonal=True)  # type: ignore[arg-type]
    assert report.points[night].anomaly and report.points[night].direction == "up"
    assert report.points[night].seasonal


def test_weekly_seasonality_for_daily_series() -> None:
    rng = np.random.default_rng(4)
    days = np.datetime64("2024-01-01", "D") + np.arange(8 * 7)  # 2024-01-01 is a Monday
    weekday = (days.astype(np.int64) + 3) % 7
    volume = np.where(weekday >= 5, 300.0, 1000.0) + rng.normal(0, 20, days.size)
    volume[50] = 600.0  # a weekday (Tuesday) collapse
    report = detect_anomalies(days, volume, freq="day", seasonal=True)
    # Until three weeks of history exist the baseline is plain (weekends may be flagged);
    # from then on only the collapse is.
    after = [p for p in report.points[21:] if p.anomaly]
    assert [p.window_start.date().isoformat() for p in after] == ["2024-02-20"]
    assert report.points[50].direction == "down" and report.points[50].seasonal
    plain = detect_anomalies(days, volume, freq="day", seasonal=False)
    assert len(plain.anomalies()) > 1  # weekends look like anomalies without the profile


@pytest.mark.parametrize("method", METHODS)
def test_noise_alone_raises_few_false_alarms(method: str) -> None:
    flags = windows = 0
    for seed in range(8):
        rng = np.random.default_rng(100 + seed)
        hours = hourly(14)
        report = detect_anomalies(
            hours,
            rng.normal(50, 4, hours.size),
            freq="hour",
            method=method,  # type: ignore[arg-type]
        )
        flags += len(report.anomalies())
        windows += sum(p.status == "ok" for p in report.points)
    # A normal tail beyond 3.5 sd is 0.05 %; allow sampling noise, not a broken baseline.
    assert flags / windows < 0.003


def test_early_windows_say_insufficient_history_and_cutoff_tightens() -> None:
    rng = np.random.default_rng(5)
    hours = hourly(6)
    report = detect_anomalies(hours, rng.normal(10, 1, hours.size), freq="hour")
    assert all(p.status == "insufficient_history" for p in report.points[:24])
    assert all(p.expected is None and not p.anomaly for p in report.points[:24])
    ok = [p for p in report.points if p.status == "ok"]
    assert ok and ok[0].cutoff is not None and ok[-1].cutoff is not None
    assert ok[0].cutoff > ok[-1].cutoff > report.threshold


def test_windows_without_events_are_no_data_not_zero() -> None:
    hours = hourly(3)
    keep = np.ones(hours.size, bool)
    keep[40:45] = False
    report = detect_anomalies(hours[keep], np.full(keep.sum(), 0.9), freq="hour", agg="mean")
    gap = report.points[40:45]
    assert all(p.status == "no_data" and p.value is None and p.n == 0 for p in gap)


def test_volume_outage_is_flagged_as_a_dip() -> None:
    rng = np.random.default_rng(6)
    hours = hourly(5)
    per_hour = rng.poisson(40, hours.size)
    per_hour[100:103] = 0  # three silent hours
    events = np.repeat(hours, per_hour)
    report = detect_anomalies(events, freq="hour", agg="count", seasonal=False)
    assert [p.direction for p in report.points[100:103]] == ["down"] * 3


def test_flat_error_rate_needs_min_scale_to_ignore_a_blip() -> None:
    hours = hourly(5)
    errors = np.zeros(hours.size)
    errors[110] = 0.002  # one failed request in 500
    errors[115] = 0.20  # a real incident
    strict = detect_anomalies(hours, errors, freq="hour", seasonal=False)
    assert strict.points[110].anomaly  # a flat history makes any change extreme
    tolerant = detect_anomalies(hours, errors, freq="hour", seasonal=False, min_scale=0.01)
    assert not tolerant.points[110].anomaly
    assert tolerant.points[115].anomaly and tolerant.points[115].direction == "up"
    assert all(np.isfinite(p.robust_z) for p in strict.points if p.robust_z is not None)


def test_threshold_must_be_positive() -> None:
    with pytest.raises(ValueError, match="threshold"):
        detect_anomalies(hourly(2), np.ones(48), threshold=0)


def test_report_round_trips_through_json() -> None:
    rng = np.random.default_rng(7)
    hours = hourly(3)
    report = detect_anomalies(hours, rng.normal(1, 0.1, hours.size), freq="hour")
    again = AnomalyReport.model_validate_json(report.model_dump_json())
    assert again == report
    assert again.points[0].window_start.tzinfo is not None


@pytest.mark.parametrize("method", ["mad", "ewma"])
def test_judging_from_a_window_gives_it_the_same_verdicts_and_leaves_history_unjudged(
    method: str,
) -> None:
    hours = np.arange("2024-01-01T00", "2024-01-15T00", dtype="datetime64[h]")
    values = np.random.default_rng(7).normal(100, 5, hours.size)
    values[-5] = 180.0  # a spike in the judged day
    values[40] = np.nan  # an empty history window
    full = detect_anomalies(hours, values, method=method)  # type: ignore[arg-type]
    judge_from = datetime(2024, 1, 14, tzinfo=UTC)
    part = detect_anomalies(hours, values, method=method, judge_from=judge_from)  # type: ignore[arg-type]
    assert len(part.points) == len(full.points)
    for a, b in zip(full.points, part.points, strict=True):
        if b.window_start >= judge_from:
            assert a == b  # each baseline still reads the whole history before it
        else:
            assert b.status == "not_judged" and not b.anomaly and b.expected is None
            assert b.n == a.n and b.value == a.value
    spike = hours[-5].astype(datetime).replace(tzinfo=UTC)
    assert [p.window_start for p in part.anomalies()] == [spike]
