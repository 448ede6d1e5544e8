"""Calibration of the regression gate against the naive "mean below baseline minus margin" rule.

Synthetic paired scores on a [0, 1] metric: each item has a latent quality ``m_i`` (uniform
on [0.3, 0.8]); the baseline scores ``m_i + u_i`` and the candidate ``m_i - drop + v_i``, with
``u_i, v_i ~ N(0, sd / sqrt(2))`` so the per-item paired difference has standard deviation
``sd``, clipped to [0, 1]. For every seed both an equal candidate (``drop = 0``) and a
degraded one (``drop = 0.02`` by default) are judged by

* the evalwatch gate (``compare_paired``, regression rule, alpha 0.05: one-sided decisions at
  0.025, 10 000 bootstrap resamples) with margin 0 and with margin 0.01,
* the naive rule "fail when candidate mean < baseline mean - margin" with margin 0.01 and 0,

and the table reports the false-fail rate (equal models) and the catch rate (degraded), with
a Wilson 95 % interval for the rate over seeds. A second table shows the non-inferiority rule:
how often an equal candidate is proven non-inferior, and how often a candidate that is
exactly ``margin`` worse is wrongly passed (should stay near or below 2.5 %).

Goals from the issue: false-fail <= 5 %, catch rate >= 90 % at n = 300, paired SD 0.1.

Run: ``python benchmarks/gate_calibration.py [--seeds 200] [--n 300] [--sd 0.1]``.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from evalwatch.checks.policy import GatePolicy, MetricPolicy
from evalwatch.checks.regression import compare_paired


@dataclass(frozen=True)
class Scenario:
    n: int
    sd: float
    drop: float


def make_pair(
    rng: np.random.Generator, n: int, sd: float, drop: float
) -> tuple[dict[str, float], dict[str, float]]:
    quality = rng.uniform(0.3, 0.8, n)
    noise = sd / math.sqrt(2.0)
    base = np.clip(quality + rng.normal(0.0, noise, n), 0.0, 1.0)
    cand = np.clip(quality - drop + rng.normal(0.0, noise, n), 0.0, 1.0)
    ids = [f"item-{i:05d}" for i in range(n)]
    return dict(zip(ids, base.tolist(), strict=True)), dict(zip(ids, cand.tolist(), strict=True))


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def fmt_rate(k: int, n: int) -> str:
    lo, hi = wilson(k, n)
    return f"{100 * k / n:5.1f}% [{100 * lo:4.1f}, {100 * hi:5.1f}]"


Decider = Callable[[dict[str, float], dict[str, float]], bool]


def gate_decider(margin: float, gate: GatePolicy) -> Decider:
    mp = MetricPolicy(metric="score", margin=margin)

    def fails(base: dict[str, float], cand: dict[str, float]) -> bool:
        return compare_paired(base, cand, mp, gate).decision == "regression"

    return fails


def naive_decider(margin: float) -> Decider:
    def fails(base: dict[str, float], cand: dict[str, float]) -> bool:
        return float(np.mean(list(cand.values()))) < float(np.mean(list(base.values()))) - margin

    return fails


def ni_passes(margin: float, gate: GatePolicy) -> Decider:
    mp = MetricPolicy(metric="score", margin=margin)

    def passes(base: dict[str, float], cand: dict[str, float]) -> bool:
        return compare_paired(base, cand, mp, gate).decision == "pass"

    return passes


def run_scenario(sc: Scenario, seeds: int, gate: GatePolicy, main: bool) -> None:
    deciders: list[tuple[str, Decider]] = [
        ("evalwatch gate, regression rule, margin 0", gate_decider(0.0, gate))
    ]
    if main:
        # What a margin does: fewer false fails, but drops near the margin slip through.
        deciders.append(("evalwatch gate, regression rule, margin 0.01", gate_decider(0.01, gate)))
    deciders += [
        ("naive: mean < baseline - 0.01", naive_decider(0.01)),
        ("naive: mean < baseline - 0", naive_decider(0.0)),
    ]
    with_ni = main
    false_fail = [0] * len(deciders)
    caught = [0] * len(deciders)
    sds: list[float] = []
    ni_gate = gate.model_copy(update={"rule": "non-inferiority"})
    ni_margin = sc.drop
    ni_proven_equal = 0
    ni_false_pass = 0
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        b_eq, c_eq = make_pair(rng, sc.n, sc.sd, 0.0)
        b_dr, c_dr = make_pair(rng, sc.n, sc.sd, sc.drop)
        sds.append(float(np.std(np.array(list(c_eq.values())) - list(b_eq.values()), ddof=1)))
        for j, (_, fails) in enumerate(deciders):
            false_fail[j] += fails(b_eq, c_eq)
            caught[j] += fails(b_dr, c_dr)
        if with_ni:
            passes = ni_passes(ni_margin, ni_gate)
            ni_proven_equal += passes(b_eq, c_eq)
            # Exactly at the margin: H0 of non-inferiority is true, so a pass is an error.
            b_m, c_m = make_pair(rng, sc.n, sc.sd, ni_margin)
            ni_false_pass += passes(b_m, c_m)

    print(
        f"\nn = {sc.n}, paired SD = {sc.sd} (realised {np.mean(sds):.3f}), "
        f"drop = {sc.drop}, {seeds} seeds; rates with Wilson 95% intervals"
    )
    name_w = max(len(name) for name, _ in deciders)
    print(f"  {'rule':<{name_w}}  {'false-fail (equal)':<22}  {'catch (drop)':<22}  goals")
    for j, (name, _) in enumerate(deciders):
        ff = false_fail[j] / seeds
        ct = caught[j] / seeds
        goals = ("ok" if ff <= 0.05 else "FALSE-FAIL > 5%") + (
            ", ok" if ct >= 0.90 else ", catch < 90%"
        )
        print(
            f"  {name:<{name_w}}  {fmt_rate(false_fail[j], seeds):<22}  "
            f"{fmt_rate(caught[j], seeds):<22}  {goals}"
        )
    if with_ni:
        print(
            f"  non-inferiority rule, margin {ni_margin}: equal candidate proven "
            f"non-inferior {fmt_rate(ni_proven_equal, seeds)}; candidate worse by exactly "
            f"the margin wrongly passed {fmt_rate(ni_false_pass, seeds)} (nominal <= 2.5%)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=200, help="simulated gate runs per case")
    parser.add_argument("--n", type=int, default=300, help="items in the main scenario")
    parser.add_argument("--sd", type=float, default=0.1, help="paired SD, main scenario")
    parser.add_argument("--drop", type=float, default=0.02, help="true drop to catch")
    parser.add_argument("--n-bootstrap", type=int, default=10_000, help="gate resamples")
    parser.add_argument(
        "--quick", action="store_true", help="only the main scenario (skip n=100 and SD x2)"
    )
    args = parser.parse_args()

    gate = GatePolicy(n_bootstrap=args.n_bootstrap, slices=False)
    print(
        f"evalwatch gate calibration: alpha {gate.alpha} (one-sided decisions at "
        f"{gate.alpha / 2}), {gate.n_bootstrap} bootstrap resamples, bootstrap seed {gate.seed}"
    )
    started = time.perf_counter()
    scenarios = [(Scenario(args.n, args.sd, args.drop), True)]
    if not args.quick:
        # The naive rule's error rates move with n and noise; the gate's false-fail rate
        # should not.
        scenarios += [
            (Scenario(100, args.sd, args.drop), False),
            (Scenario(args.n, 2 * args.sd, args.drop), False),
        ]
    for sc, main_scenario in scenarios:
        run_scenario(sc, args.seeds, gate, main_scenario)
    print(f"\nelapsed {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
