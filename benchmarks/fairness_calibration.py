"""Calibration of the fairness report: false alarms under no gap, detection of real gaps.

Synthetic traffic of ``--n`` interactions with three segment fields (``language`` with five
segments of 40/25/15/12/8 %, ``region`` with three of 50/30/20 %, ``user_tier`` with two of
70/30 %) and six metrics (a beta quality score, an embedding-like similarity, the refusal and
unsafe rates, lognormal latency, 1-5 ratings on a third of the rows) is judged by
``evalwatch.checks.fairness.run_fairness``: every segment against the rest, one FDR family of
all 10 segments x 6 metrics = 60 tests of a report (54 after the two-segment field's mirror)
at FDR 0.05, adjusted by Benjamini-Yekutieli (the default; ``--correction bh`` for plain
Benjamini-Hochberg, which measured 7.3 % per-report false alarms over 600 reports: the
segment-vs-rest tests are negatively dependent, outside BH's guarantee).

Printed:

* the **per-report (family-wise) false-alarm rate** under no gap: the share of reports with
  any ``"gap"`` verdict when no segment differs (goal <= 5 %; under the global null BY at
  ``q`` bounds it by ``q`` under any dependence), and the per-test rate;
* the **detection rate** of a real gap planted in the smallest language segment (8 %): a
  quality drop of ``--gap`` (score SD 0.15) and a refusal rate of 4 % -> 4 % +
  ``--refusal-gap``, at ``--n`` rows and at a quarter of them, i.e. at stated segment sizes.

``--language`` also times py3langid on 50,000 prompts (the ingest-time detection's cost).

Run: ``python benchmarks/fairness_calibration.py [--seeds 200] [--n 4000] [--language]
[--null-only]``
(about a minute for the defaults on one busy core). No timing is asserted anywhere.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evalwatch.checks.fairness import FairnessConfig, FairnessMetric, run_fairness

LANGUAGES = (("en", 0.40), ("de", 0.25), ("fr", 0.15), ("es", 0.12), ("pt", 0.08))
REGIONS = (("eu", 0.5), ("us", 0.3), ("apac", 0.2))
TIERS = (("free", 0.7), ("pro", 0.3))


def _labels(rng: np.random.Generator, n: int, table: tuple[tuple[str, float], ...]) -> np.ndarray:
    names = np.array([t[0] for t in table], dtype=object)
    return names[rng.choice(len(table), size=n, p=[t[1] for t in table])]


def simulate(n: int, seed: int, gap: float = 0.0, refusal_gap: float = 0.0):
    """One report's inputs; ``gap``/``refusal_gap`` are planted in language=pt."""
    rng = np.random.default_rng(seed)
    lang = _labels(rng, n, LANGUAGES)
    segments = {
        "language": lang,
        "region": _labels(rng, n, REGIONS),
        "user_tier": _labels(rng, n, TIERS),
    }
    hit = lang == "pt"
    # Beta(6, 2): mean 0.75, SD 0.145; the planted drop moves the segment's values down.
    quality = np.clip(rng.beta(6, 2, n) - gap * hit, 0, 1)
    similarity = np.clip(rng.normal(0.62, 0.08, n), -1, 1)
    refusal = (rng.random(n) < 0.04 + refusal_gap * hit).astype(float)
    unsafe = (rng.random(n) < 0.01).astype(float)
    latency = rng.lognormal(6.5, 0.5, n)
    rated = np.flatnonzero(rng.random(n) < 1 / 3)
    ratings = rng.choice(5, size=rated.size, p=[0.05, 0.07, 0.15, 0.33, 0.40]) + 1.0
    metrics = [
        FairnessMetric("judge.correctness", "quality", "score", True, quality),
        FairnessMetric("embedding.relevance", "quality", "score", True, similarity),
        FairnessMetric("refusal", "refusal", "rate", False, refusal),
        FairnessMetric("unsafe", "safety", "rate", False, unsafe),
        FairnessMetric("latency_ms", "latency", "duration", False, latency),
        FairnessMetric("rating", "satisfaction", "rating", True, ratings, rated),
    ]
    return metrics, segments


def _calibrate(args: argparse.Namespace) -> None:
    config = FairnessConfig(fdr=0.05, min_segment_size=30, correction=args.correction)
    t0 = time.perf_counter()
    any_alarm, false_tests, tests = 0, 0, 0
    for s in range(args.seeds):
        metrics, segments = simulate(args.n, s)
        report = run_fairness(metrics, segments, config)
        found = [f for f in report.findings if f.verdict == "gap"]
        any_alarm += bool(found)
        false_tests += len(found)
        tests += sum(f.verdict != "insufficient_data" for f in report.findings)
    se = np.sqrt(max(any_alarm, 1) / args.seeds * (1 - any_alarm / args.seeds) / args.seeds)
    print(
        f"no gap, n={args.n:,} ({args.seeds} reports of {tests // args.seeds} tests, "
        f"FDR {config.fdr:g}, {config.correction.upper()}): per-report false-alarm rate "
        f"{100 * any_alarm / args.seeds:.1f}% (±{100 * se:.1f}, goal <= 5%), "
        f"per-test {100 * false_tests / max(tests, 1):.2f}%"
    )
    for n in () if args.null_only else (args.n, args.n // 4):
        size = int(n * LANGUAGES[-1][1])
        hits = {"quality": 0, "refusal": 0}
        for s in range(args.seeds):
            metrics, segments = simulate(n, 10_000 + s, args.gap, args.refusal_gap)
            report = run_fairness(metrics, segments, config)
            gaps = {(f.metric, f.segment) for f in report.findings if f.verdict == "gap"}
            hits["quality"] += ("judge.correctness", "pt") in gaps
            hits["refusal"] += ("refusal", "pt") in gaps
        print(
            f"gap in language=pt (~{size:,} of {n:,} rows): quality -{args.gap:g} "
            f"(SD 0.145) detected in {100 * hits['quality'] / args.seeds:.0f}%, refusal "
            f"4% -> {100 * (0.04 + args.refusal_gap):.0f}% detected in "
            f"{100 * hits['refusal'] / args.seeds:.0f}% of {args.seeds} reports"
        )
    runs = args.seeds if args.null_only else 3 * args.seeds
    print(f"({time.perf_counter() - t0:.1f} s for {runs} reports)")


def _language(n: int = 50_000) -> None:
    from evalwatch.checks.language import detect_languages
    from scripts.generate_sample_data import generate_traffic

    start = datetime(2026, 11, 1, tzinfo=UTC)
    rows = generate_traffic(5_000, start, days=14, seed=1, shift_last_days=0)
    prompts = [r["prompt"] for r in rows]
    texts = (prompts * (n // len(prompts) + 1))[:n]
    t0 = time.perf_counter()
    detect_languages(texts[:1])  # the one-off model load
    load = time.perf_counter() - t0
    t0 = time.perf_counter()
    found = detect_languages(texts)
    took = time.perf_counter() - t0
    mean_chars = sum(map(len, texts)) / len(texts)
    print(
        f"py3langid: {n:,} prompts (mean {mean_chars:.0f} chars) in {took:.1f} s = "
        f"{1e6 * took / n:.0f} µs each, model load {load:.1f} s once; "
        f"{100 * sum(f == 'en' for f in found) / n:.1f}% detected 'en'"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=200, help="reports per condition")
    parser.add_argument("--n", type=int, default=4000, help="interactions per report")
    parser.add_argument("--gap", type=float, default=0.05, help="planted quality drop")
    parser.add_argument("--refusal-gap", type=float, default=0.06, help="planted refusal rise")
    parser.add_argument("--language", action="store_true", help="also time py3langid")
    parser.add_argument(
        "--correction", choices=["by", "bh"], default="by", help="FDR adjustment (default by)"
    )
    parser.add_argument(
        "--null-only", action="store_true", help="only the no-gap reports (a tighter estimate)"
    )
    args = parser.parse_args()
    _calibrate(args)
    if args.language:
        _language()


if __name__ == "__main__":
    main()
