"""Getting data in: input readers, the redactor, the ingest pipeline and test-set loading.

Public names are re-exported lazily, so ``import evalwatch.ingest.redact`` (used by evaluators
and the judge) does not pay for Great Expectations.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, tuple[str, ...]] = {
    "evalwatch.ingest.datasets": ("load_dataset", "load_outputs"),
    "evalwatch.ingest.pipeline": ("IngestResult", "RowOutcome", "ingest"),
    "evalwatch.ingest.readers": (
        "RawRecord",
        "SourceReader",
        "UnreadableFileError",
        "normalise_keys",
    ),
    "evalwatch.ingest.redact": ("Redactor",),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'ingest' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
