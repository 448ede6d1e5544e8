"""The jobs evalwatch runs, as plain functions.

Each evaluation job is steps (prepare -> score batches -> finish) ending in one
:class:`~evalwatch.runs.summary.RunSummary`, with the run's ending owned by
:func:`~evalwatch.runs.lifecycle.run_lifecycle`. The CLI calls them directly and the Prefect
flows compose the same steps as tasks.
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
from evalwatch.runs.lifecycle import RunLifecycle, run_lifecycle
from evalwatch.runs.summary import BatchStats, RunFacts, RunPlan, RunSummary
from evalwatch.runs.traffic import PreparedRun, TrafficParams, evaluate_traffic, prepare_traffic_run

__all__ = [
    "BatchStats",
    "CanaryParams",
    "DatasetParams",
    "DatasetRunError",
    "GateParams",
    "PreparedRun",
    "RunFacts",
    "RunLifecycle",
    "RunPlan",
    "RunSummary",
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
    "run_lifecycle",
    "run_summary_from_store",
]
