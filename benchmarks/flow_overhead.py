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

``--startup [--repeat 3]`` measures the other overhead, Prefect's start-up, the way a user
meets it: the installed ``evalwatch run dataset support-qa --outputs <baseline> --evaluators
heuristics`` (250 items), from a fresh folder and Prefect home, run ``--repeat`` times in each
of three set-ups: with ``evalwatch server start`` running (no start-up: the reference),
without any server (the command's own temporary server, started first and overlapping its
preparation), and with Prefect's own temporary server (what commands did before; chosen by a
``.env`` naming a Prefect setting, which leaves the choice to Prefect). It prints each set-up's
median and fastest wall time, the median CPU time of the command and its children (the server
included), and the median wall time over the reference: the Prefect start-up a user waits for
(goal: 2 s at most). The set-ups take turns, run by run, so other load weighs on each alike.
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


def _evalwatch() -> str:
    script = Path(sys.executable).parent / "evalwatch"
    return str(script) if script.exists() else "evalwatch"


def _timed(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, str]:
    """Wall and CPU seconds (the command's and its children's) of one command; its output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return wall, cpu, done.stdout + done.stderr


def startup(repeat: int) -> None:
    """Time ``evalwatch run dataset`` with a server, with its own temporary one, with Prefect's."""
    import statistics

    exe = _evalwatch()
    data = REPO / "datasets"
    run = [
        exe,
        "run",
        "dataset",
        "support-qa",
        "--outputs",
        str(data / "support-qa.predictions.baseline.jsonl"),
        "--evaluators",
        "heuristics",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "EVALWATCH_"))}
        base.update(
            EVALWATCH_DATABASE_URL=f"sqlite:///{folder / 'store.db'}",
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            DO_NOT_TRACK="1",
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
        )
        # Each set-up has its own folder, evalwatch home and Prefect home (so the temporary
        # ones do not find the server); the runs take turns, so load from other processes
        # weighs on all three alike.
        setups: dict[str, tuple[Path, dict[str, str]]] = {}
        for label, name in (
            ("evalwatch server", "server"),
            ("temporary (evalwatch)", "temporary"),
            ("temporary (Prefect's own)", "prefects-own"),
        ):
            cwd = folder / name
            cwd.mkdir()
            env = dict(base, EVALWATCH_HOME=str(cwd / "ew-home"), PREFECT_HOME=str(cwd / "p-home"))
            setups[label] = (cwd, env)
        # A setting named in .env: evalwatch leaves the choice of server to Prefect.
        own = setups["temporary (Prefect's own)"][0]
        (own / ".env").write_text("PREFECT_SERVER_EPHEMERAL_ENABLED=true\n")
        _timed([exe, "datasets", "load", str(data / "support-qa.jsonl")], folder, base)
        server_cwd, server_env = setups["evalwatch server"]
        _timed([exe, "server", "start", "--no-ui"], server_cwd, server_env)
        times: dict[str, list[tuple[float, float]]] = {label: [] for label in setups}
        try:
            for cwd, env in setups.values():
                _timed(run, cwd, env)  # untimed: the file cache, each Prefect database
            for _ in range(repeat):
                for label, (cwd, env) in setups.items():
                    times[label].append(_timed(run, cwd, env)[:2])
        finally:
            _timed([exe, "server", "stop"], server_cwd, server_env)
    rows = [
        (
            label,
            statistics.median(w for w, _ in runs),
            min(w for w, _ in runs),
            statistics.median(c for _, c in runs),
        )
        for label, runs in times.items()
    ]
    reference = rows[0][1]
    print(f"evalwatch run dataset support-qa --evaluators heuristics (250 items), x{repeat}")
    print(f"{'Prefect server':<26} {'wall s':>7} {'min s':>7} {'CPU s':>7} {'start-up s':>11}")
    for label, wall, fastest, cpu in rows:
        print(f"{label:<26} {wall:>7.2f} {fastest:>7.2f} {cpu:>7.2f} {wall - reference:>11.2f}")
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument(
        "--startup", action="store_true", help="time Prefect's start-up in `evalwatch run`"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per set-up (--startup)")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument(
        "--evaluators", default="embedding,heuristics", help="comma-separated evaluator names"
    )
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.startup:
        startup(args.repeat)
        return
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
