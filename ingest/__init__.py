"""Getting data in: input readers, the ingest pipeline and test-set loading.

Public names are re-exported lazily, so importing one reader does not pay for Great
Expectations. The redactor ingest runs on every row is :mod:`evalwatch.core.redact`.
"""

from __future__ import annotations

from typing import Any

from evalwatch.core.lazy import LazyExports

_EXPORTS: dict[str, tuple[str, ...]] = {
    "evalwatch.ingest.datasets": ("load_dataset", "load_outputs"),
    "evalwatch.ingest.pipeline": ("IngestResult", "RowOutcome", "ingest"),
    "evalwatch.ingest.readers": (
        "RawRecord",
        "SourceReader",
        "UnreadableFileError",
        "normalise_keys",
    ),
}
_LAZY = LazyExports(__name__, _EXPORTS)

__all__ = _LAZY.names


def __getattr__(name: str) -> Any:
    return _LAZY.get(name)
