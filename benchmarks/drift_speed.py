"""Speed and memory of a full drift report on large windows.

Builds two synthetic windows (default 50,000 interactions each: 384-d embeddings, six numeric
columns, three rates, ratings with timestamps and texts; the generator of
``drift_calibration.py`` with its small shift in the current window), then times
``evalwatch.checks.drift.run_drift`` end to end, and each test on its own, and prints the process's
peak RSS. Goal: the whole report in under 5 s and under 1.5 GB on 2 CPU cores.

Run: ``python benchmarks/drift_speed.py [--n 50000] [--threads 2] [--repeat 3]`` (about
30 s including data generation).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drift_calibration import SMALL_SHIFT, World, make_window

from evalwatch.checks import drift


def peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn: Callable[[], Any], repeat: int) -> float:
    return timed_cpu(fn, repeat)[0]


def timed_cpu(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """Median wall-clock and CPU seconds (CPU: all threads of this process)."""
    walls, cpus = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000, help="rows per window")
    parser.add_argument("--threads", type=int, default=2, help="BLAS/OpenMP threads")
    parser.add_argument("--repeat", type=int, default=3, help="median of this many runs")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    world = World(rng)
    t0 = time.perf_counter()
    base = make_window(world, rng, args.n)
    cur = make_window(world, rng, args.n, SMALL_SHIFT)
    print(
        f"generated 2 x {args.n:,} rows (384-d embeddings + 6 numeric, 3 rates, ratings) in "
        f"{time.perf_counter() - t0:.1f} s; RSS so far {peak_rss_mb():.0f} MB"
    )
    config = drift.DriftConfig()
    assert base.embeddings is not None and cur.embeddings is not None
    assert base.ratings is not None and cur.ratings is not None
    assert cur.timestamps is not None

    with threadpool_limits(limits=args.threads):
        drift.run_drift(base, cur, config)  # warm-up: lazy sklearn imports, page faults
        total, total_cpu = timed_cpu(lambda: drift.run_drift(base, cur, config), args.repeat)
        report = drift.run_drift(base, cur, config)

        per_test: list[tuple[str, float]] = []
        be, ce = base.embeddings, cur.embeddings
        per_test.append(
            (
                "domain_classifier (embeddings)",
                timed(lambda: drift.domain_classifier_test(be, ce, config=config), args.repeat),
            )
        )
        per_test.append(
            (
                "mmd (embeddings)",
                timed(lambda: drift.mmd_permutation_test(be, ce, config=config), args.repeat),
            )
        )
        per_test.append(
            (
                "topic_shares + new_topic (embeddings)",
                timed(
                    lambda: drift.topic_shift(
                        be, ce, baseline_texts=base.texts, current_texts=cur.texts, config=config
                    ),
                    args.repeat,
                ),
            )
        )
        numeric_fns = {
            "ks": drift.ks_test,
            "wasserstein": drift.wasserstein_normalised,
            "psi": drift.psi,
            "mean_shift": drift.mean_shift_bootstrap,
        }
        for name, fn in numeric_fns.items():

            def run_all(fn: Callable[..., drift.DriftTestResult] = fn) -> None:
                for col in base.numeric:
                    fn(base.numeric[col], cur.numeric[col], feature=col, config=config)

            per_test.append(
                (f"{name} (x{len(base.numeric)} numeric columns)", timed(run_all, args.repeat))
            )

        def rates() -> None:
            for col in base.rates:
                drift.two_proportion_test(
                    base.rates[col], cur.rates[col], feature=col, config=config
                )

        per_test.append((f"two_proportion (x{len(base.rates)} rates)", timed(rates, args.repeat)))
        br, cr, ct = base.ratings, cur.ratings, cur.timestamps
        per_test.append(
            (
                "chi_square (ratings)",
                timed(lambda: drift.chi_square_ratings(br, cr, config=config), args.repeat),
            )
        )
        per_test.append(
            ("rating_trend", timed(lambda: drift.rating_trend(ct, cr, config=config), args.repeat))
        )

    print(
        f"\nfull report, {args.n:,} vs {args.n:,} rows, {args.threads} threads "
        f"(median of {args.repeat}):"
    )
    for name, secs in per_test:
        print(f"  {name:<42} {secs:6.3f} s")
    print(f"  {'sum of tests run alone':<42} {sum(s for _, s in per_test):6.3f} s")
    print(f"  {'run_drift end to end':<42} {total:6.3f} s   (goal < 5 s)")
    print(f"  {'  CPU time of that run (all threads)':<42} {total_cpu:6.3f} s")
    load = os.getloadavg()[0]
    print(
        f"  load average while measuring: {load:.1f} on {os.cpu_count()} CPUs "
        "(other processes inflate wall-clock times)"
    )
    print(f"  {'peak RSS of this process':<42} {peak_rss_mb():6.0f} MB  (goal < 1,536 MB)")
    print(
        f"  {len(report.results)} tests, drift found: {report.drift_found}, "
        f"{len(report.moved())} moved"
    )


if __name__ == "__main__":
    main()
