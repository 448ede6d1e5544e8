"""Prefect flows: thin compositions of the plain functions in ``runs``, ``checks`` and friends.

Deployments for them are declared in ``prefect.yaml``.
"""

from evalwatch.flows.dataset import evaluate_dataset
from evalwatch.flows.gate import regression_gate
from evalwatch.flows.overview import operations_overview
from evalwatch.flows.traffic import evaluate_traffic

__all__ = ["evaluate_dataset", "evaluate_traffic", "operations_overview", "regression_gate"]
