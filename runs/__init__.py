"""The jobs evalwatch runs, as plain functions.

The CLI calls them directly and the Prefect flows compose the same steps as tasks.
"""

from runs.common import (
    build_evaluators,
    evaluator_provenance,
    merge_profiles,
    run_summary_from_store,
)
from runs.traffic import PreparedRun, TrafficParams, evaluate_traffic, prepare_traffic_run

__all__ = [
    "PreparedRun",
    "TrafficParams",
    "build_evaluators",
    "evaluate_traffic",
    "evaluator_provenance",
    "merge_profiles",
    "prepare_traffic_run",
    "run_summary_from_store",
]
