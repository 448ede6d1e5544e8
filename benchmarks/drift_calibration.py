"""Calibration of the drift report: false alarms under no shift, detection under shifts.

Synthetic baseline/current pairs (384-d unit embeddings from a topic mixture, lognormal
lengths and latencies, token counts and cost, beta scores, rates, 1-5 ratings) are compared
with ``evalwatch.checks.drift.run_drift`` under no shift, a small shift and a large shift, for
``--seeds`` seeds each at ``--n`` rows per window. Prints the report-level false-alarm rate
(goal <= 5 % under no shift) and the detection rate per shift (goals: >= 90 % small, 100 %
large), plus how often each test fired, so it is visible which tests carry the detection.

Run: ``python benchmarks/drift_calibration.py [--seeds 20] [--n 2000] [--parts] [--threads 2]``
(about 3 minutes for the defaults on 2 busy cores; ``--parts`` adds each part of the small
shift alone, another 3 minutes; ``--only none --seeds 100`` estimates the false-alarm rate
more tightly in about 5 minutes).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evalwatch.checks.drift import DriftConfig, DriftInput, run_drift

DIM = 384
BASE_WEIGHTS = np.array([0.22, 0.18, 0.14, 0.12, 0.10, 0.09, 0.08, 0.07])
BASE_RATINGS = np.array([0.05, 0.07, 0.15, 0.33, 0.40])


@dataclass(frozen=True)
class Shift:
    """What differs in the current window (all zero: no shift)."""

    name: str
    topic_points: float = 0.0  # share moved from the largest topic to the smallest
    new_topic_share: float = 0.0  # share of responses from a topic absent from the baseline
    length_factor: float = 1.0  # response length (and output tokens) multiplied by this
    relevance_delta: float = 0.0  # mean of the beta relevance score moved by this
    latency_factor: float = 1.0
    refusal_rate: float = 0.04
    ratings: tuple[float, ...] = tuple(BASE_RATINGS)

    def describe(self) -> str:
        parts = []
        if self.topic_points:
            parts.append(
                f"{100 * self.topic_points:.0f} points of topic share moved from the largest "
                f"topic (22%) to the smallest (7%)"
            )
        if self.new_topic_share:
            parts.append(f"{100 * self.new_topic_share:.0f}% of responses from a new topic")
        if self.length_factor != 1:
            parts.append(f"response length and output tokens x{self.length_factor:g}")
        if self.relevance_delta:
            parts.append(f"relevance score mean {self.relevance_delta:+.2f} (of 0.70)")
        if self.latency_factor != 1:
            parts.append(f"latency x{self.latency_factor:g}")
        if self.refusal_rate != 0.04:
            parts.append(f"refusal rate 4% -> {100 * self.refusal_rate:.0f}%")
        if self.ratings != tuple(BASE_RATINGS):
            parts.append(
                "ratings 1-5 "
                + "/".join(f"{100 * x:.0f}" for x in BASE_RATINGS)
                + " -> "
                + "/".join(f"{100 * x:.0f}" for x in self.ratings)
                + " %"
            )
        return "; ".join(parts) if parts else "nothing (both windows from the same distribution)"


NO_SHIFT = Shift("none")
SMALL_SHIFT = Shift("small", topic_points=0.04, length_factor=1.05, relevance_delta=-0.02)
LARGE_SHIFT = Shift(
    "large",
    topic_points=0.15,
    new_topic_share=0.10,
    length_factor=1.30,
    relevance_delta=-0.10,
    latency_factor=1.2,
    refusal_rate=0.10,
    ratings=(0.10, 0.12, 0.18, 0.30, 0.30),
)
# Components of the small shift alone, to show which test sees what.
SMALL_PARTS = [
    Shift("small: topics only", topic_points=0.04),
    Shift("small: length only", length_factor=1.05),
    Shift("small: relevance only", relevance_delta=-0.02),
]


class World:
    """Fixed topic centres shared by both windows of one seed (and a held-back new topic)."""

    def __init__(self, rng: np.random.Generator, n_topics: int = 8, dim: int = DIM) -> None:
        common = _unit(rng.standard_normal(dim))
        own = _unit(rng.standard_normal((n_topics + 1, dim)))
        # Real sentence embeddings share a common direction: centres at cosine ~0.35.
        self.centres = _unit(0.6 * common + 0.8 * own)
        self.noise = 1.0  # within-topic cosine ~0.5, like paraphrases on one topic

    def embeddings(self, rng: np.random.Generator, topics: np.ndarray) -> np.ndarray:
        eps = rng.standard_normal((topics.size, self.centres.shape[1])).astype(np.float32)
        eps *= self.noise / np.sqrt(self.centres.shape[1])
        return _unit(self.centres[topics].astype(np.float32) + eps).astype(np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def make_window(
    world: World, rng: np.random.Generator, n: int, shift: Shift = NO_SHIFT
) -> DriftInput:
    """One synthetic window of ``n`` interactions under ``shift``."""
    weights = BASE_WEIGHTS.copy()
    weights[0] -= shift.topic_points
    weights[-1] += shift.topic_points
    weights = np.append(weights * (1 - shift.new_topic_share), shift.new_topic_share)
    topics = rng.choice(weights.size, size=n, p=weights)
    emb = world.embeddings(rng, topics)
    length = rng.lognormal(6.0, 0.6, n) * shift.length_factor
    out_tokens = np.round(length / 4.2 + rng.normal(0, 3, n)).clip(1)
    in_tokens = np.round(rng.lognormal(5.0, 0.7, n)).clip(1)
    # Generation time grows with output tokens, so longer responses also move latency and cost.
    latency = rng.lognormal(np.log(800), 0.5, n) * shift.latency_factor + out_tokens * 8
    cost = in_tokens * 0.15e-6 + out_tokens * 0.6e-6
    mean = 0.7 + shift.relevance_delta
    conc = 10.0
    relevance = rng.beta(mean * conc, (1 - mean) * conc, n)
    unscored = rng.random(n) < 0.02
    relevance[unscored] = np.nan
    has_rating = rng.random(n) < 0.3
    ratings = np.full(n, np.nan)
    ratings[has_rating] = rng.choice(5, size=int(has_rating.sum()), p=shift.ratings) + 1
    timestamps = np.sort(rng.uniform(0, 7 * 86400, n))
    texts = [f"topic {t}: response {i}" for i, t in enumerate(topics)]
    return DriftInput(
        embeddings=emb,
        numeric={
            "response_length": length,
            "output_tokens": out_tokens,
            "input_tokens": in_tokens,
            "latency_ms": latency,
            "cost": cost,
            "embedding.relevance": relevance,
        },
        rates={
            "refusal": rng.random(n) < shift.refusal_rate,
            "unsafe": rng.random(n) < 0.01,
            "unscored": unscored,
        },
        ratings=ratings,
        texts=texts,
        timestamps=timestamps,
    )


def run_scenario(
    shift: Shift, seeds: int, n: int, config: DriftConfig
) -> tuple[float, Counter[str]]:
    fired: Counter[str] = Counter()
    found = 0
    for seed in range(seeds):
        rng = np.random.default_rng([seed, 17])
        world = World(rng)
        base = make_window(world, rng, n)
        cur = make_window(world, rng, n, shift)
        report = run_drift(base, cur, config.model_copy(update={"seed": seed}))
        found += report.drift_found
        for r in report.moved():
            fired[f"{r.test}:{r.feature}"] += 1
    return found / seeds, fired


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--n", type=int, default=2000, help="rows per window")
    parser.add_argument("--parts", action="store_true", help="also run each small-shift part")
    parser.add_argument("--threads", type=int, default=2, help="BLAS/OpenMP threads")
    parser.add_argument(
        "--only", choices=["none", "small", "large"], help="run one scenario (e.g. more seeds)"
    )
    args = parser.parse_args()
    with threadpool_limits(limits=args.threads):
        _run(args)


def _run(args: argparse.Namespace) -> None:
    config = DriftConfig()
    scenarios = [NO_SHIFT, SMALL_SHIFT, LARGE_SHIFT] + (SMALL_PARTS if args.parts else [])
    if args.only:
        scenarios = [s for s in scenarios if s.name == args.only]
    print(
        f"drift calibration: {args.seeds} seeds x {args.n} rows per window, alpha "
        f"{config.alpha}, BH across all tests of a report"
    )
    for shift in scenarios:
        t0 = time.perf_counter()
        rate, fired = run_scenario(shift, args.seeds, args.n, config)
        elapsed = time.perf_counter() - t0
        label = "false-alarm rate" if shift is NO_SHIFT else "detection rate"
        goal = {"none": "goal <= 5%", "small": "goal >= 90%", "large": "goal 100%"}.get(
            shift.name, "no goal (diagnostic)"
        )
        print(f"\n[{shift.name}] {shift.describe()}")
        print(
            f"  report-level {label}: {100 * rate:.0f}% ({goal}); "
            f"{elapsed / args.seeds:.2f} s per report"
        )
        for key, count in fired.most_common():
            print(f"    {key:<36} fired in {count}/{args.seeds}")


if __name__ == "__main__":
    main()
