"""Differential-privacy release ledger (issue #17, section 1). See migration 0005."""

from __future__ import annotations

__all__: list[str] = []
