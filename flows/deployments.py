"""The batch-scoring flows as ``prefect.yaml``'s deployments run them.

A deployment's worker imports its entrypoint when a flow run starts, so the task runner that
``EVALWATCH_TASK_RUNNER`` names in the worker's environment is chosen then, with
:func:`~evalwatch.flows._runtime.with_task_runner`; importing :mod:`evalwatch.flows` anywhere
else reads no settings. Callers in Python pick theirs the same way
(``with_task_runner(evaluate_traffic, settings)(...)``).
"""

from __future__ import annotations

from evalwatch.flows import dataset, traffic
from evalwatch.flows._runtime import with_task_runner

__all__ = ["evaluate_dataset", "evaluate_traffic"]

evaluate_traffic = with_task_runner(traffic.evaluate_traffic)
evaluate_dataset = with_task_runner(dataset.evaluate_dataset)
