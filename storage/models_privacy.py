"""Privacy tables (issue #17, section 1). Owned by the privacy work; see migration 0004."""

from __future__ import annotations

__all__: list[str] = []
