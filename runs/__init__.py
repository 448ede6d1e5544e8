"""The jobs evalwatch runs, as plain functions.

Each evaluation job is steps (prepare -> score batches -> finish) ending in one
:class:`~evalwatch.runs.summary.RunSummary`, with the run's ending owned by
:func:`~evalwatch.runs.lifecycle.run_lifecycle`. The CLI calls them directly and the Prefect
flows compose the same steps as tasks. The public names are re-exported lazily, so
``import evalwatch.runs.drift`` does not pay for the judge, openai and the gate.
"""

from __future__ import annotations

from typing import Any

from evalwatch.core.lazy import LazyExports

_EXPORTS: dict[str, tuple[str, ...]] = {
    "evalwatch.runs.canary": ("CanaryParams", "compare_versions"),
    "evalwatch.runs.common": (
        "build_evaluators",
        "evaluator_provenance",
        "merge_profiles",
        "run_summary_from_store",
    ),
    "evalwatch.runs.dataset": (
        "DatasetParams",
        "DatasetRunError",
        "evaluate_dataset",
        "prepare_dataset_run",
    ),
    "evalwatch.runs.gate": ("GateParams", "run_gate_job"),
    "evalwatch.runs.lifecycle": ("RunLifecycle", "run_lifecycle"),
    "evalwatch.runs.summary": ("BatchStats", "RunFacts", "RunPlan", "RunSummary"),
    "evalwatch.runs.traffic": (
        "PreparedRun",
        "TrafficParams",
        "evaluate_traffic",
        "prepare_traffic_run",
    ),
}
_LAZY = LazyExports(__name__, _EXPORTS)

__all__ = _LAZY.names


def __getattr__(name: str) -> Any:
    return _LAZY.get(name)
