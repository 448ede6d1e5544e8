"""How much of an ``evaluate_traffic`` flow run is spent outside the evaluators' model calls.

For each size (default 10,000 and 100,000 interactions) a fresh subprocess builds a SQLite store
of synthetic traffic (``scripts/generate_sample_data.generate_traffic``, through the real ingest
pipeline), then runs the ``evaluate_traffic`` flow with the embedding and heuristic evaluators on
one task thread, so the evaluators' busy time (their profiles' ``seconds``: the model calls and
scoring inside each batch) and the wall time are directly comparable. It prints the flow's wall
time, the share spent outside the evaluators (Prefect, the store, sampling, validation, reports)
and peak RSS: the whole process's (which includes generating and ingesting the data here) and
the flow run's own (sampled at 20 Hz while it runs). Goals: overhead at most 10% of wall time,
and the peak RSS at 100k within 10% of 10k.

Run: ``python benchmarks/flow_overhead.py [--sizes 10000 100000] [--batch-size 1024]``. On a
2-core CPU the 100k run embeds 200k texts with MiniLM and takes a long time; ``--sizes 2000
20000`` checks the same properties faster.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def child(n: int, batch_size: int, folder: Path, evaluators: list[str]) -> dict[str, float]:
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    import psutil
    from prefect.task_runners import ThreadPoolTaskRunner

    from evalwatch.flows.traffic import evaluate_traffic
    from evalwatch.ingest.pipeline import ingest
    from evalwatch.runs.traffic import TrafficParams
    from evalwatch.settings import Settings
    from evalwatch.storage.db import get_engine
    from evalwatch.storage.models import EvaluatorProfile
    from scripts.generate_sample_data import generate_traffic

    data = folder / "traffic.jsonl"
    with data.open("w") as fh:
        for row in generate_traffic(n, datetime(2026, 10, 1, tzinfo=UTC), 14, 7, 3):
            fh.write(json.dumps(row) + "\n")
    url = f"sqlite:///{folder / 'store.db'}"
    engine = get_engine(url)
    ingest(engine, [data], settings=Settings(database_url=url, hash_key="bench"))
    runner: ThreadPoolTaskRunner[Any] = ThreadPoolTaskRunner(max_workers=1)
    flow = evaluate_traffic.with_options(task_runner=runner)  # type: ignore[arg-type]
    # Warm the Prefect server and the model outside the timing.
    flow(
        params=TrafficParams(evaluators=evaluators, sample={"max_items": 8, "seed": 99}),
        database_url=url,
    )
    # The flow's own peak, apart from generating and ingesting the data in this process.
    proc = psutil.Process()
    before = proc.memory_info().rss / 2**20
    peak = [before]
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.05):
            peak[0] = max(peak[0], proc.memory_info().rss / 2**20)

    sampler = threading.Thread(target=watch, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    summary = flow(
        params=TrafficParams(evaluators=evaluators, batch_size=batch_size),
        database_url=url,
    )
    wall = time.perf_counter() - t0
    stop.set()
    sampler.join()
    import sqlalchemy as sa

    table = EvaluatorProfile.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        busy = conn.execute(
            sa.select(sa.func.sum(table.c.seconds)).where(table.c.run_id == summary["run_id"])
        ).scalar_one()
    return {
        "n": n,
        "wall_s": wall,
        "evaluator_s": float(busy or 0.0),
        "scored": summary["n_subjects"],
        "rss_before_flow_mb": before,
        "flow_peak_rss_mb": peak[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument(
        "--evaluators", default="embedding,heuristics", help="comma-separated evaluator names"
    )
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        out = child(args.child, args.batch_size, Path(args.folder), args.evaluators.split(","))
        out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print("RESULT " + json.dumps(out))
        return
    rows = []
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            done = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    str(n),
                    "--folder",
                    tmp,
                    "--batch-size",
                    str(args.batch_size),
                    "--evaluators",
                    args.evaluators,
                ],
                capture_output=True,
                text=True,
                env=dict(os.environ, PREFECT_HOME=tmp),
            )
            line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if line is None:
                print(done.stdout[-2000:], done.stderr[-4000:])
                raise SystemExit(f"size {n} failed")
            rows.append(json.loads(line[7:]))
    print(f"evaluators: {args.evaluators}")
    print(
        f"{'n':>8} {'wall s':>9} {'evaluators s':>13} {'overhead':>9} "
        f"{'process peak MB':>16} {'before flow MB':>15} {'flow peak MB':>13}"
    )
    for r in rows:
        overhead = 1 - r["evaluator_s"] / r["wall_s"]
        print(
            f"{r['n']:>8} {r['wall_s']:>9.1f} {r['evaluator_s']:>13.1f} {overhead:>9.1%} "
            f"{r['peak_rss_mb']:>16.0f} {r['rss_before_flow_mb']:>15.0f} "
            f"{r['flow_peak_rss_mb']:>13.0f}"
        )
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        for label, key in (("process", "peak_rss_mb"), ("flow", "flow_peak_rss_mb")):
            growth = last[key] / first[key] - 1
            print(
                f"{label} peak RSS growth {first['n']} -> {last['n']}: {growth:+.1%} "
                "(goal within 10%)"
            )


if __name__ == "__main__":
    main()
