"""Defaults that the command line shows and the jobs use, kept here so ``--help`` is cheap.

The CLI's option defaults are read when its modules are imported; defined in the evaluator
modules, they would import numpy, the store and the judge client for ``evalwatch --help``.
"""

from __future__ import annotations

__all__ = ["DEFAULT_CHUNK_SIZE", "DEFAULT_EVALUATORS"]

#: The evaluators a run uses when none are named: ``evaluate``, ``run traffic``/``dataset``,
#: the flows' parameters and the gate without a baseline run (the demo adds toxicity to it).
DEFAULT_EVALUATORS: tuple[str, ...] = ("embedding", "heuristics")

#: Subjects read, scored and written per step (``--chunk-size``, ``--batch-size``).
DEFAULT_CHUNK_SIZE = 1024
