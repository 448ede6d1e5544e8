"""Ingest throughput next to the raw database driver, on SQLite and PostgreSQL.

Writes ``--n`` synthetic interactions (``scripts/generate_sample_data.generate_traffic``) to a
JSONL file, then for each backend times

* the raw driver baseline: read the file, parse each line (orjson) and write the same rows
  into the same ``interactions`` table with ``sqlite3.executemany`` or psycopg ``COPY``;
* the full ``evalwatch`` ingest of the same file: parsing, normalising, type checks, Great
  Expectations validation of every chunk, PII redaction, keyed hashing of user/session ids,
  idempotent chunked writes and the feedback rows from ratings;

and prints rows/s of both and their ratio (goal: ingest >= 0.5 of the raw driver). The raw
driver's insert-only time (without reading and parsing) is printed too, for reference.

Then (unless ``--rss-sizes none``) the peak RSS of ``evalwatch ingest`` on SQLite, in a child
process: for the benchmark's normal file, and for files holding one giant JSON line (50 MB,
500 MB and 2 GB by default) between a few normal ones. The giant line is quarantined with its
length and hash and never held whole, so the peak should not grow with it.

PostgreSQL runs in a throwaway database created on the server of ``--pg-url`` and dropped at
the end. The one-off start-up of Great Expectations (imports, context) and of the language
model is timed separately and is not part of the rows/s; a real CLI run pays it once.

Other work on the machine takes CPU from both sides unevenly (the ingest uses two processes,
the raw driver one), so the CPU pressure (Linux PSI, share of time some task waited for a CPU,
over the last minute) is printed before and after the timed runs: figures taken above ~10%
are not comparable.

    python benchmarks/ingest.py                  # 100k rows, SQLite and PostgreSQL
    python benchmarks/ingest.py --n 20000 --backend sqlite --repeat 3
    python benchmarks/ingest.py --n 20000 --backend none --rss-sizes 50,500,2000
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from evalwatch.ingest.pipeline import ingest  # noqa: E402
from evalwatch.settings import IngestSettings, Settings  # noqa: E402
from evalwatch.storage.db import make_engine, upgrade  # noqa: E402

COLUMNS = [
    "request_id", "ts", "app", "model_name", "model_version", "prompt", "response", "context",
    "reference", "latency_ms", "input_tokens", "output_tokens", "cost", "user_hash",
    "session_hash", "metadata", "redactions", "source", "ingested_at",
]
DEFAULT_PG = os.environ.get(
    "EVALWATCH_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def traffic(n: int, seed: int) -> Iterator[dict[str, Any]]:
    try:
        from scripts.generate_sample_data import generate_traffic
    except ImportError:  # a small stand-in when the generator is not there
        return _local_traffic(n, seed)
    return generate_traffic(n, datetime(2026, 10, 1, tzinfo=UTC), 14, seed, 3)


def _local_traffic(n: int, seed: int) -> Iterator[dict[str, Any]]:
    import random

    r = random.Random(seed)
    words = ["order", "refund", "shipping", "account", "password", "invoice", "plan", "device"]
    for i in range(n):
        yield {
            "request_id": f"bench-{seed}-{i}",
            "timestamp": f"2026-10-{1 + i % 14:02d}T{i % 24:02d}:00:00Z",
            "app": "support-bot", "model_name": "acme-chat", "model_version": f"v{i % 3}",
            "prompt": " ".join(r.choices(words, k=15)),
            "response": " ".join(r.choices(words, k=60)),
            "context": None, "reference": None, "latency_ms": r.uniform(100, 3000),
            "input_tokens": r.randint(10, 500), "output_tokens": r.randint(10, 900),
            "cost": r.uniform(0, 0.01), "user_id": f"user_{r.randint(1, 5000)}",
            "session_id": f"sess_{r.randint(1, 20000)}",
            "rating": r.choice([None, None, None, 1, 5]), "thumbs": None,
            "metadata": {"topic": r.choice(words)},
        }


def _raw_rows(path: Path, source: str) -> Iterator[tuple[Any, ...]]:
    """The rows the raw driver writes: the same columns, parsed with the same parser."""
    now = datetime.now(UTC).replace(tzinfo=None)
    with path.open("rb") as fh:
        for line in fh:
            r = orjson.loads(line)
            ts = datetime.fromisoformat(r["timestamp"]).astimezone(UTC).replace(tzinfo=None)
            yield (
                r.get("request_id") or f"raw-{r['timestamp']}-{hash(line)}", ts, r["app"],
                r["model_name"], r["model_version"], r["prompt"], r["response"],
                r.get("context"), r.get("reference"), r.get("latency_ms"),
                r.get("input_tokens"), r.get("output_tokens"), r.get("cost"), r.get("user_id"),
                r.get("session_id"), orjson.dumps(r.get("metadata")).decode(), 0, source, now,
            )


def _fresh_sqlite(folder: Path, name: str) -> str:
    url = f"sqlite:///{folder / name}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def raw_sqlite(url: str, path: Path) -> tuple[float, float]:
    import sqlite3

    db = url.split("sqlite:///", 1)[1]
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    marks = ", ".join("?" * len(COLUMNS))
    sql = f"INSERT INTO interactions ({', '.join(COLUMNS)}) VALUES ({marks})"
    t0 = time.perf_counter()
    rows = [
        (*r[:1], r[1].isoformat(" ", "microseconds"), *r[2:18], r[18].isoformat(" "))
        for r in _raw_rows(path, str(path))
    ]
    t1 = time.perf_counter()
    con.executemany(sql, rows)
    con.commit()
    t2 = time.perf_counter()
    con.close()
    return t2 - t0, t2 - t1


def raw_postgres(url: str, path: Path) -> tuple[float, float]:
    import psycopg

    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as con:
        t0 = time.perf_counter()
        rows = list(_raw_rows(path, str(path)))
        t1 = time.perf_counter()
        with con.cursor() as cur, cur.copy(
            f"COPY interactions ({', '.join(COLUMNS)}) FROM STDIN"
        ) as cp:
            for r in rows:
                cp.write_row(r)
        con.commit()
        t2 = time.perf_counter()
    return t2 - t0, t2 - t1


def run_ingest(
    url: str, path: Path, settings: Settings, redact: bool, parallel: bool | None = None
) -> float:
    engine = make_engine(url)
    t0 = time.perf_counter()
    result = ingest(engine, [path], settings=settings, redact=redact, parallel=parallel)
    dt = time.perf_counter() - t0
    engine.dispose()
    if result.quarantined or result.ingested == 0:
        raise SystemExit(f"unexpected ingest result: {result}")
    return dt


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the ingest worker)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def cpu_pressure() -> str:
    """Linux PSI ``some avg60`` for the CPU: how much of the last minute tasks waited for one."""
    try:
        first = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return "n/a"
    fields = dict(part.split("=", 1) for part in first.split()[1:])
    return f"{float(fields.get('avg60', 'nan')):.0f}%"


def _truncate(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE interactions RESTART IDENTITY CASCADE"))
    engine.dispose()


def _pg_database(admin_url: str) -> tuple[str, Callable[[], None]]:
    name = f"evalwatch_bench_{uuid.uuid4().hex[:10]}"
    admin = make_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


_RSS_CHILD = """
import resource, subprocess, sys
rc = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def cli_peak_rss(url: str, path: Path) -> tuple[int, float, float]:
    """(exit code, peak RSS in MB, seconds) of ``evalwatch ingest`` on one file.

    A wrapper process runs the CLI, so the peak is that of the CLI and its ingest worker only.
    """
    cli = [sys.executable, "-c", "from evalwatch.cli import main; main()",
           "--db", url, "ingest", str(path), "--no-progress"]
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", _RSS_CHILD, *cli], capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "EVALWATCH_HASH_KEY": "benchmark-key"},
    )
    rc, kb = out.stdout.split()
    return int(rc), int(kb) / 1024, time.perf_counter() - t0


def giant_line_file(path: Path, size: int, seed: int) -> None:
    """Two normal rows, one valid JSON line of ``size`` bytes (a huge context), two more."""
    rows = list(traffic(5, seed))
    with path.open("wb") as fh:
        for r in rows[:2]:
            fh.write(orjson.dumps(r) + b"\n")
        head = orjson.dumps({**rows[2], "context": None})[:-1] + b', "ctx": "'
        fill = size - len(head) - 2
        fh.write(head)
        block = b"x" * 1_000_000
        while fill > 0:
            fh.write(block[: min(fill, len(block))])
            fill -= len(block)
        fh.write(b'"}\n')
        for r in rows[3:]:
            fh.write(orjson.dumps(r) + b"\n")


def rss_section(folder: Path, normal: Path, n: int, sizes_mb: list[int], seed: int) -> None:
    print()
    print("peak RSS of `evalwatch ingest` (SQLite, child process; includes ~300 MB of imports)")
    url = _fresh_sqlite(folder, "rss-normal.db")
    rc, peak, secs = cli_peak_rss(url, normal)
    print(f"  normal file ({n} rows, {normal.stat().st_size / 1e6:.0f} MB): {peak:7.0f} MB "
          f"(exit {rc}, {secs:.1f} s)")
    for mb in sizes_mb:
        path = folder / f"giant-{mb}.jsonl"
        giant_line_file(path, mb * 1_000_000, seed)
        url = _fresh_sqlite(folder, f"rss-{mb}.db")
        rc, peak, secs = cli_peak_rss(url, path)
        engine = make_engine(url)
        with engine.connect() as conn:
            q = conn.execute(sa.text("SELECT reasons, LENGTH(raw) FROM quarantine")).all()
            stored = conn.execute(sa.text("SELECT COUNT(*) FROM interactions")).scalar_one()
        engine.dispose()
        what = f"quarantined {q[0][0]}, raw kept {q[0][1]} chars" if q else "NOT quarantined"
        print(f"  one {mb:>5} MB line + 4 rows:   {peak:7.0f} MB (exit {rc}, {secs:.1f} s; "
              f"{stored} rows stored; {what})")
        path.unlink()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="interactions (default 100000)")
    ap.add_argument("--backend", choices=["sqlite", "postgres", "both", "none"], default="both",
                    help="where to time throughput (none: only the RSS section)")
    ap.add_argument("--rss-sizes", default="50,500,2000",
                    help="giant-line sizes in MB for the peak-RSS section, or 'none'")
    ap.add_argument("--pg-url", default=DEFAULT_PG, help="any database on the PostgreSQL server")
    ap.add_argument("--chunk-size", type=int, default=None,
                    help="rows validated and committed per chunk (default: settings)")
    ap.add_argument("--repeat", type=int, default=2,
                    help="alternating runs of baseline and ingest; the best of each is kept")
    ap.add_argument("--parallel", choices=["auto", "on", "off"], default="auto",
                    help="ingest's worker process (auto: on for large inputs)")
    ap.add_argument("--no-redact", action="store_true", help="ingest without PII redaction")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)

    chunk = args.chunk_size or IngestSettings().chunk_size
    settings = Settings(hash_key="benchmark-key", ingest=IngestSettings(chunk_size=chunk))
    redact = not args.no_redact
    folder = Path(tempfile.mkdtemp(prefix="evalwatch-bench-"))
    path = folder / "traffic.jsonl"
    t0 = time.perf_counter()
    with path.open("wb") as fh:
        for row in traffic(args.n, args.seed):
            fh.write(orjson.dumps(row) + b"\n")
    gen_s = time.perf_counter() - t0
    size_mb = path.stat().st_size / 1e6

    # One-off start-up: Great Expectations imports and its context, on a tiny file.
    t0 = time.perf_counter()
    warm = folder / "warm.jsonl"
    warm.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in traffic(20, args.seed + 1)))
    run_ingest(_fresh_sqlite(folder, "warm.db"), warm, settings, redact)
    warm_s = time.perf_counter() - t0

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"evalwatch ingest benchmark: {args.n} rows ({size_mb:.1f} MB JSONL, generated in "
          f"{gen_s:.1f}s), chunk {chunk}, redaction {'on' if redact else 'off'}, "
          f"best of {args.repeat}")
    print(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.1f}, CPU pressure "
          f"{cpu_pressure()}; one-off start-up (Great Expectations, language model) "
          f"{warm_s:.1f}s (not in the rows/s)")
    print()
    parallel = {"auto": None, "on": True, "off": False}[args.parallel]
    header = (f"{'backend':10} {'raw driver':>14} {'(insert only)':>14} {'ingest':>14} "
              f"{'ratio':>7}   {'CPU s raw / ingest (client side)':>32}")
    print(header)
    print("-" * len(header))

    backends = {"both": ["sqlite", "postgres"], "none": []}.get(args.backend, [args.backend])
    for backend in backends:
        drop: Callable[[], None] | None = None
        if backend == "postgres":
            url, drop = _pg_database(args.pg_url)
        try:
            raw_best = insert_best = ingest_best = float("inf")
            raw_cpu = ingest_cpu = float("inf")
            for k in range(args.repeat):
                gc.collect()
                c0 = cpu_seconds()
                if backend == "sqlite":
                    raw_total, raw_insert = raw_sqlite(_fresh_sqlite(folder, f"raw{k}.db"), path)
                else:
                    _truncate(url)
                    raw_total, raw_insert = raw_postgres(url, path)
                c1 = cpu_seconds()
                if backend == "postgres":
                    _truncate(url)
                gc.collect()
                target = _fresh_sqlite(folder, f"ingest{k}.db") if backend == "sqlite" else url
                c2 = cpu_seconds()
                ingest_s = run_ingest(target, path, settings, redact, parallel)
                c3 = cpu_seconds()
                raw_best = min(raw_best, raw_total)
                insert_best = min(insert_best, raw_insert)
                ingest_best = min(ingest_best, ingest_s)
                raw_cpu = min(raw_cpu, c1 - c0)
                ingest_cpu = min(ingest_cpu, c3 - c2)
            n = args.n
            print(f"{backend:10} {n / raw_best:>10,.0f} r/s {n / insert_best:>10,.0f} r/s "
                  f"{n / ingest_best:>10,.0f} r/s {raw_best / ingest_best:>7.2f}   "
                  f"{raw_cpu:>14.1f} / {ingest_cpu:<.1f}")
            print(f"{'':10} {raw_best:>12.1f} s {insert_best:>12.1f} s {ingest_best:>12.1f} s")
        finally:
            if drop is not None:
                drop()
    print()
    print(f"CPU pressure after the timed runs: {cpu_pressure()}")
    print("ratio = ingest rows/s / raw driver rows/s (read + parse + executemany/COPY of the "
          "same rows); goal >= 0.5")
    print("CPU s: this process and the ingest worker (PostgreSQL's server work is not in it); "
          "on a busy machine the wall-clock ratio swings, the CPU figures much less")
    if args.rss_sizes != "none":
        sizes = [int(x) for x in args.rss_sizes.split(",") if x.strip()]
        rss_section(folder, path, args.n, sizes, args.seed)
    shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
