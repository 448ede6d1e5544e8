"""Judge throughput and fault handling against the fake OpenAI-compatible server.

Phase 1: N judgments at concurrency C against a server answering after L seconds. The bound
is C / L judgments per second (every slot always busy); the goal is at least 0.9 of it.

Phase 2: the same with a share of injected faults (429 with Retry-After, 500, answers slower
than the client timeout, malformed and out-of-scale verdicts). Every item must end exactly
once, scored or as an error with its reason: zero lost, zero duplicated. The server's log
is also checked: no item got more than one valid verdict (nothing was paid for twice).

The server runs in its own process, as a remote endpoint would, so its threads do not share
the client's interpreter lock. Everything goes through the real ``openai`` client over HTTP.

    python benchmarks/judge.py --n 1000 --concurrency 32 --latency 0.1 --fault-rate 0.1
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import re
import resource
import sys
import time
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

# The repository root first: a sibling script named like a package (benchmarks/evaluators.py)
# must not shadow it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evalwatch.core import ScoreStatus
from evalwatch.evaluators.base import Sample
from evalwatch.evaluators.judge import JudgeEvaluator
from evalwatch.settings import JudgeSettings

_ITEM = re.compile(r"<<<RESPONSE\nbenchmark item (\d+) ")


def _serve(conn: Connection, options: dict[str, Any]) -> None:
    from evalwatch.testing import FakeJudgeServer

    srv = FakeJudgeServer(**options).start()
    conn.send(srv.base_url)
    while True:
        cmd = conn.recv()
        if cmd == "requests":
            conn.send([(r.user_text, r.fault, r.status) for r in srv.requests])
        elif cmd == "reset":
            srv.reset()
            conn.send("ok")
        else:
            srv.stop()
            conn.send("stopped")
            return


class RemoteServer:
    """A FakeJudgeServer in a child process."""

    def __init__(self, **options: Any) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, options), daemon=True)
        self.proc.start()
        self.base_url: str = self.conn.recv()

    def requests(self) -> list[tuple[str, str | None, int]]:
        self.conn.send("requests")
        out: list[tuple[str, str | None, int]] = self.conn.recv()
        return out

    def reset(self) -> None:
        self.conn.send("reset")
        self.conn.recv()

    def stop(self) -> None:
        self.conn.send("stop")
        self.conn.recv()
        self.proc.join(timeout=10)


def _samples(n: int, offset: int = 0) -> list[Sample]:
    return [
        Sample(
            subject_id=offset + i,
            prompt=f"Question number {i}: how do I reset it?",
            response=f"benchmark item {offset + i} - press and hold the button for 5 s.",
        )
        for i in range(n)
    ]


def _judge(url: str, concurrency: int, timeout_s: float, max_retries: int) -> JudgeEvaluator:
    settings = JudgeSettings(
        base_url=url,
        model="bench-judge",
        timeout_s=timeout_s,
        max_retries=max_retries,
        concurrency=concurrency,
        redact=True,
    )
    return JudgeEvaluator(
        rubrics=["helpfulness"], settings=settings
    )


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def throughput(n: int, concurrency: int, latency: float) -> dict[str, float]:
    server = RemoteServer(latency_s=latency)
    try:
        judge = _judge(server.base_url, concurrency, timeout_s=30, max_retries=2)
        judge.evaluate(_samples(2 * concurrency, offset=10_000_000))  # open the connections
        samples = _samples(n)
        cpu0, t0 = _cpu(), time.perf_counter()
        scores = judge.evaluate(samples).scores
        elapsed, cpu = time.perf_counter() - t0, _cpu() - cpu0
        judge.close()
    finally:
        server.stop()
    ok = sum(s.status == ScoreStatus.ok for s in scores)
    bound = concurrency / latency
    rate = n / elapsed
    return {
        "n": n,
        "ok": ok,
        "elapsed_s": elapsed,
        "rate": rate,
        "bound": bound,
        "ratio": rate / bound,
        "client_cpu_ms_per_call": 1000 * cpu / n,
    }


def faults(n: int, concurrency: int, latency: float, fault_rate: float) -> dict[str, Any]:
    server = RemoteServer(
        latency_s=latency,
        fault_rate=fault_rate,
        seed=11,
        retry_after_s=0.2,
        send_retry_after_ms=True,
        slow_s=3.0,
        fault_kinds=("429", "500", "slow", "malformed", "out_of_scale"),
    )
    try:
        judge = _judge(server.base_url, concurrency, timeout_s=1.0, max_retries=3)
        samples = _samples(n)
        t0 = time.perf_counter()
        result = judge.evaluate(samples)
        elapsed = time.perf_counter() - t0
        stats = judge.last_stats
        judge.close()
        log = server.requests()
    finally:
        server.stop()
    scores = result.scores
    per_item = Counter(s.subject_id for s in scores)
    lost = [s.subject_id for s in samples if per_item[s.subject_id] == 0]
    duplicated = [i for i, c in per_item.items() if c > 1]
    unexplained = [s for s in scores if s.status != ScoreStatus.ok and not s.reason]
    valueless_ok = [s for s in scores if s.status == ScoreStatus.ok and s.value is None]
    # Server side: valid verdicts (no fault, HTTP 200) per item; at most one each.
    valid = Counter(
        int(m.group(1))
        for text, fault, status in log
        if status == 200 and fault is None and (m := _ITEM.search(text))
    )
    paid_twice = [i for i, c in valid.items() if c > 1]
    ok_ids = {s.subject_id for s in scores if s.status == ScoreStatus.ok}
    ok_without_valid = [i for i in ok_ids if valid[i] != 1]
    reasons = Counter(
        re.sub(r"\d+(\.\d+)?", "N", s.reason or "") for s in scores if s.status != ScoreStatus.ok
    )
    return {
        "n": n,
        "elapsed_s": elapsed,
        "requests": len(log),
        "injected": Counter(f or "none" for _, f, _ in log),
        "ok": len(ok_ids),
        "errors": sum(s.status == ScoreStatus.error for s in scores),
        "skipped": sum(s.status == ScoreStatus.skipped for s in scores),
        "lost": len(lost),
        "duplicated": len(duplicated),
        "unexplained": len(unexplained),
        "ok_without_value": len(valueless_ok),
        "judged_twice": len(paid_twice),
        "ok_without_one_valid_answer": len(ok_without_valid),
        "retries": stats.retries if stats else None,
        "rate_limited": stats.rate_limited if stats else None,
        "paused_s": stats.paused_s if stats else None,
        "error_reasons": reasons.most_common(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="Judgments per phase.")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--latency", type=float, default=0.1, help="Server latency in seconds.")
    ap.add_argument("--fault-rate", type=float, default=0.1)
    args = ap.parse_args()

    t = throughput(args.n, args.concurrency, args.latency)
    print(
        f"== throughput: {t['n']} judgments, concurrency {args.concurrency}, "
        f"server latency {args.latency * 1000:.0f} ms"
    )
    print(
        f"  {t['rate']:.1f} judgments/s in {t['elapsed_s']:.2f} s; bound "
        f"{args.concurrency}/{args.latency:g} = {t['bound']:.0f}/s; "
        f"ratio {t['ratio']:.3f} (goal >= 0.9) -> {'MET' if t['ratio'] >= 0.9 else 'NOT MET'}"
    )
    cpu_ms = t["client_cpu_ms_per_call"]
    print(f"  client CPU {cpu_ms:.2f} ms per judgment, so one core caps the client at "
          f"~{1000 / cpu_ms:.0f}/s; ok {t['ok']}/{t['n']}")

    f = faults(args.n, args.concurrency, args.latency, args.fault_rate)
    print(
        f"== faults: {f['n']} judgments with {args.fault_rate:.0%} injected faults "
        f"in {f['elapsed_s']:.2f} s ({f['requests']} requests)"
    )
    print(f"  injected: {dict(f['injected'])}")
    print(
        f"  outcomes: ok {f['ok']}, error {f['errors']}, skipped {f['skipped']}; "
        f"retries {f['retries']}, 429s {f['rate_limited']}, pool paused {f['paused_s']} s"
    )
    print(
        f"  lost {f['lost']}, duplicated {f['duplicated']}, errors without reason "
        f"{f['unexplained']}, ok without value {f['ok_without_value']}, "
        f"items judged twice {f['judged_twice']}, ok without exactly one valid answer "
        f"{f['ok_without_one_valid_answer']}"
    )
    for reason, count in f["error_reasons"]:
        print(f"  error: {count} x {reason}")
    clean = not any(
        f[k]
        for k in (
            "lost",
            "duplicated",
            "unexplained",
            "ok_without_value",
            "judged_twice",
            "ok_without_one_valid_answer",
        )
    )
    print(f"  every item ended exactly once, scored or with its reason: {'YES' if clean else 'NO'}")


if __name__ == "__main__":
    main()
