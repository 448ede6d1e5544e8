"""Speed and memory of a full drift report on large windows.

Builds two synthetic windows (default 50,000 interactions each: 384-d embeddings, six numeric
columns, three rates, ratings with timestamps and texts; the generator of
``drift_calibration.py`` with its small shift in the current window), then times
``evalwatch.checks.drift.run_drift`` end to end, and each test on its own, and prints the process's
peak RSS. Goal: the whole report in under 5 s and under 1.5 GB on 2 CPU cores.

Run: ``python benchmarks/drift_speed.py [--n 50000] [--threads 2] [--repeat 3]`` (about
30 s including data generation).

``--from-store sqlite|postgres`` times what a user waits for instead: it builds a store
directly (``n`` baseline + ``n`` current interactions over two apps and three model versions,
14 score metrics each, 384-d float16 embeddings and feedback, written through the storage
layer's bulk writers; no model), then runs the installed CLI's entry point
(``evalwatch.cli:main``, what ``.venv/bin/evalwatch`` runs) as ``evalwatch drift`` in a fresh
subprocess, once with ``--scopes overall`` and once with all scopes, and prints one line per
case: wall time of the subprocess, the job's own load and test timings (``check_drift``'s
``outcome.timings``: ``drift`` + ``anomalies`` are the tests) and the subprocess's peak RSS.
PostgreSQL: a throwaway database on ``--pg-admin-url`` (default ``EVALWATCH_TEST_POSTGRES_URL``
or ``postgres@127.0.0.1:5432/test``), dropped at the end. ``--store-url URL`` times an existing
store instead of building one (``--keep`` leaves the built one in place and prints its URL).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
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
    parser.add_argument(
        "--from-store", choices=("sqlite", "postgres"), help="time `evalwatch drift` on a store"
    )
    parser.add_argument("--pg-admin-url", default=DEFAULT_PG, help="PostgreSQL to create it in")
    parser.add_argument("--store-url", help="with --from-store: time this existing store")
    parser.add_argument("--keep", action="store_true", help="keep the built store")
    args = parser.parse_args()
    if args.from_store:
        from_store(
            args.from_store,
            args.n,
            repeat=1 if "--repeat" not in sys.argv else args.repeat,
            pg_admin=args.pg_admin_url,
            store_url=args.store_url,
            keep=args.keep,
        )
        return

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


# --------------------------------------------------------------------------------------------
# --from-store: `evalwatch drift` on a store holding the windows
# --------------------------------------------------------------------------------------------

DEFAULT_PG = os.environ.get(
    "EVALWATCH_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
# The current window ends here; the baseline is the 7 days before it (the CLI's defaults).
_END = datetime(2026, 11, 15, tzinfo=UTC)
_APPS = ("support-bot", "shop-assistant")
_VERSIONS = ("v1", "v2", "v3")
# 14 score metrics, as the built-in heuristics, toxicity and embedding evaluators write them.
_METRICS: dict[str, tuple[str, ...]] = {
    "heuristics": (
        "empty_response",
        "json_valid",
        "pii_leak",
        "refusal",
        "response_chars",
        "response_tokens_est",
    ),
    "toxicity": (
        "identity_attack",
        "insult",
        "obscene",
        "safety",
        "severe_toxicity",
        "threat",
        "toxicity",
    ),
    "embedding": ("relevance",),
}
_RATES = {"empty_response", "json_valid", "pii_leak", "refusal"}
_DIM = 384
_WORDS = np.array(
    [
        "the",
        "order",
        "refund",
        "account",
        "password",
        "shipping",
        "delivery",
        "invoice",
        "return",
        "exchange",
        "warranty",
        "size",
        "colour",
        "price",
        "discount",
        "coupon",
        "help",
        "please",
        "thanks",
        "sorry",
        "cannot",
        "policy",
        "store",
    ]
)


def _responses(rng: np.random.Generator, n: int) -> list[str]:
    lengths = rng.integers(3, 40, n)
    words = rng.choice(_WORDS, size=int(lengths.sum()))
    cut = np.cumsum(lengths)[:-1]
    return [" ".join(w) for w in np.split(words, cut)]


def _build_store(engine: Any, n: int, seed: int = 0) -> None:
    """Write ``n`` baseline and ``n`` current interactions with scores, embeddings, feedback.

    Everything goes through the storage layer's bulk writers (``insert_interactions``,
    ``write_scores``, ``write_embeddings``, ``insert_feedback``); the current window has a
    small shift in latency, one rate and the embeddings' topic mix.
    """
    from evalwatch.storage.repo import (
        create_run,
        insert_feedback,
        insert_interactions,
        interaction_ids_for,
        write_embeddings,
        write_scores,
    )

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(12, _DIM)).astype(np.float32)
    run = create_run(engine, "traffic", run_key=f"bench-{uuid.uuid4().hex[:8]}")
    assert run.id is not None
    chunk = 10_000
    for window, (start, span) in enumerate(
        (
            (_END - timedelta(days=8), timedelta(days=7)),
            (_END - timedelta(days=1), timedelta(days=1)),
        )
    ):
        shift = window == 1
        for lo in range(0, n, chunk):
            m = min(chunk, n - lo)
            offs = np.sort(rng.uniform(0, span.total_seconds(), m))
            texts = _responses(rng, m)
            rows: list[dict[str, Any]] = [
                {
                    "request_id": f"bench-{window}-{lo + i}",
                    "ts": start + timedelta(seconds=float(offs[i])),
                    "app": _APPS[int(rng.integers(0, 2))],
                    "model_name": "acme",
                    "model_version": _VERSIONS[int(rng.integers(0, 3))],
                    "prompt": "How do I return my order?",
                    "response": texts[i],
                    "latency_ms": float(rng.lognormal(6.0 + 0.05 * shift, 0.4)),
                    "input_tokens": int(rng.integers(10, 400)),
                    "output_tokens": int(rng.integers(5, 300)),
                    "cost": float(rng.uniform(0.0001, 0.01)),
                }
                for i in range(m)
            ]
            insert_interactions(engine, rows)
            ids = interaction_ids_for(engine, [r["request_id"] for r in rows])
            subj = [ids[r["request_id"]] for r in rows]
            scores: list[dict[str, Any]] = []
            for ev, metrics in _METRICS.items():
                for metric in metrics:
                    if metric in _RATES:
                        p = 0.05 + (0.01 if shift and metric == "refusal" else 0.0)
                        vals = (rng.random(m) < p).astype(np.float64)
                    else:
                        vals = rng.beta(5, 2, m)
                    scores.extend(
                        {
                            "run_id": run.id,
                            "subject_type": "interaction",
                            "subject_id": s,
                            "evaluator": ev,
                            "evaluator_version": "1",
                            "config_hash": "bench",
                            "metric": metric,
                            "value": float(v),
                            "status": "ok",
                        }
                        for s, v in zip(subj, vals, strict=True)
                    )
            write_scores(engine, scores)
            mix = np.where(rng.random(m) < (0.15 if shift else 0.1), 11, rng.integers(0, 11, m))
            vecs = centres[mix] + rng.normal(scale=0.8, size=(m, _DIM)).astype(np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            blobs = vecs.astype("<f2")
            write_embeddings(
                engine,
                [
                    {
                        "subject_type": "interaction",
                        "subject_id": s,
                        "model": "all-MiniLM-L6-v2",
                        "dim": _DIM,
                        "dtype": "float16",
                        "vector": blobs[i].tobytes(),
                    }
                    for i, s in enumerate(subj)
                ],
            )
            feedback = []
            for i in np.flatnonzero(rng.random(m) < 0.15):
                kind = "rating" if rng.random() < 0.7 else "thumbs"
                value = float(rng.integers(1, 6)) if kind == "rating" else float(rng.random() < 0.8)
                feedback.append(
                    {
                        "feedback_key": f"fb-{window}-{lo + i}",
                        "interaction_id": subj[i],
                        "kind": kind,
                        "value": value,
                        "label": None,
                        "ts": rows[i]["ts"] + timedelta(minutes=5),
                    }
                )
            insert_feedback(engine, feedback)


# The child process: the installed CLI's entry point, with check_drift wrapped so the step
# timings it records (outcome.timings) can be read back.
_CHILD = """
import json, os, sys
import evalwatch.runs.drift as d
_orig = d.check_drift
def _wrapped(*a, **k):
    out = _orig(*a, **k)
    with open(os.environ["BENCH_TIMINGS"], "w") as f:
        json.dump(out.timings, f)
    return out
d.check_drift = _wrapped
sys.argv = ["evalwatch", "drift", "--scopes", sys.argv[1]]
from evalwatch.cli import main
main()
"""


def _time_cli(url: str, scopes: str, home: Path) -> tuple[float, dict[str, float], float, int]:
    """Wall seconds, step timings, peak RSS (MB) and exit code of one ``evalwatch drift``."""
    timings = home / "timings.json"
    env = {
        **os.environ,
        "EVALWATCH_DATABASE_URL": url,
        "EVALWATCH_HOME": str(home),
        "EVALWATCH_HASH_KEY": "bench",
        # A user's own Prefect home: a machine whose ~/.prefect holds saved notification
        # blocks makes every alert delivery start a temporary Prefect server (about 10 s).
        "PREFECT_HOME": str(home / "prefect"),
        "BENCH_TIMINGS": str(timings),
    }
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, scopes],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code
    if code not in (0, 1):
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"evalwatch drift exited {code}: {err[-2000:]}")
    return wall, json.loads(timings.read_text()), usage.ru_maxrss / 1024, code


def from_store(
    backend: str,
    n: int,
    *,
    repeat: int = 1,
    pg_admin: str = DEFAULT_PG,
    store_url: str | None = None,
    keep: bool = False,
) -> None:
    """Build a store of ``n`` + ``n`` interactions and time ``evalwatch drift`` on it."""
    from evalwatch.storage.db import make_engine, upgrade

    tmp = Path(tempfile.mkdtemp(prefix="evalwatch-drift-bench-"))
    admin = name = None
    if store_url is not None:
        url = store_url
    elif backend == "sqlite":
        url = f"sqlite:///{tmp / 'store.db'}"
    else:
        name = f"evalwatch_bench_{uuid.uuid4().hex[:10]}"
        admin = make_engine(pg_admin, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        url = pg_admin.rsplit("/", 1)[0] + f"/{name}"
    try:
        if store_url is None:
            engine = make_engine(url)
            upgrade(engine)
            t0 = time.perf_counter()
            _build_store(engine, n)
            if backend == "postgres":
                with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    conn.execute(sa.text("ANALYZE"))
            engine.dispose()
            print(
                f"built the {backend} store: {n:,} + {n:,} interactions, {14 * 2 * n:,} scores, "
                f"{2 * n:,} x {_DIM}-d float16 embeddings in {time.perf_counter() - t0:.0f} s"
                + (f"; kept at {url}" if keep else ""),
                file=sys.stderr,
            )
        cases = (("overall", "overall scope"), ("overall,app,model_version", "all scopes"))
        for scopes, label in cases:
            runs = [_time_cli(url, scopes, tmp) for _ in range(repeat)]
            wall, timings, rss, _ = sorted(runs, key=lambda r: r[0])[len(runs) // 2]
            tests = timings.get("drift", 0.0) + timings.get("anomalies", 0.0)
            print(
                f"{backend}, {label}: end to end from the store: {wall:.1f} s "
                f"(load {timings['load']:.1f} s, tests {tests:.1f} s), peak RSS {rss:.0f} MB",
                flush=True,
            )
        avg = os.getloadavg()
        print(
            f"load average {avg[0]:.1f} {avg[1]:.1f} {avg[2]:.1f} on {os.cpu_count()} CPUs "
            "(a shared machine: other processes inflate wall-clock times)",
            file=sys.stderr,
        )
    finally:
        if admin is not None and not keep:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if admin is not None:
            admin.dispose()
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
