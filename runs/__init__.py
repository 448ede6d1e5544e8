"""The jobs evalwatch runs, as plain functions.

The CLI calls them directly and the Prefect flows compose the same steps as tasks.
"""

from evalwatch.runs.canary import CanaryParams, compare_versions
from evalwatch.runs.common import (
    build_evaluators,
    evaluator_provenance,
    merge_profiles,
    run_summary_from_store,
)
from evalwatch.runs.dataset import (
    DatasetParams,
    DatasetRunError,
    evaluate_dataset,
    prepare_dataset_run,
)
from evalwatch.runs.gate import GateParams, run_gate_job
from evalwatch.runs.traffic import PreparedRun, TrafficParams, evaluate_traffic, prepare_traffic_run

__all__ = [
    "CanaryParams",
    "DatasetParams",
    "DatasetRunError",
    "GateParams",
    "PreparedRun",
    "TrafficParams",
    "build_evaluators",
    "compare_versions",
    "evaluate_dataset",
    "evaluate_traffic",
    "evaluator_provenance",
    "merge_profiles",
    "prepare_dataset_run",
    "prepare_traffic_run",
    "run_gate_job",
    "run_summary_from_store",
]
