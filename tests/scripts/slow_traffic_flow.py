"""Runs evaluate_traffic with a deliberately slow evaluator, for the crash-and-rerun test.

Usage: python slow_traffic_flow.py DATABASE_URL  (PREFECT_API_URL set by the test)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

from evalwatch.evaluators.base import (
    BaseEvaluator,
    BatchResult,
    EvaluatorConfig,
    MetricSpec,
    Sample,
    ScoreResult,
    register_evaluator,
)


class SlowConfig(EvaluatorConfig):
    seconds_per_batch: float = 0.3


@register_evaluator
class SlowEvaluator(BaseEvaluator[SlowConfig]):
    name = "slow-length"
    version = "1"
    Config = SlowConfig

    @property
    def metrics(self) -> list[MetricSpec]:
        return [MetricSpec(name="chars")]

    def evaluate(self, samples: Sequence[Sample]) -> BatchResult:
        time.sleep(self.config.seconds_per_batch)
        return BatchResult(
            scores=[
                ScoreResult(subject_id=s.subject_id, metric="chars", value=float(len(s.response)))
                for s in samples
            ]
        )


def main(argv: list[str]) -> dict[str, Any]:
    from evalwatch.flows.traffic import evaluate_traffic
    from evalwatch.runs.traffic import TrafficParams
    from evalwatch.storage.sampling import SampleSpec

    params = TrafficParams(
        sample=SampleSpec(), evaluators=["slow-length", "heuristics"], batch_size=10
    )
    return evaluate_traffic(params=params, database_url=argv[1])


if __name__ == "__main__":
    out = main(sys.argv)
    print("RUN_ID", out["run_id"])
