"""Keyed hashes of user and session ids: what the store keeps instead of the raw ids."""

from __future__ import annotations

import hmac

__all__ = ["keyed_hash"]


def keyed_hash(value: str, key: bytes) -> str:
    """HMAC-SHA256 of an identifier, hex: stable per key, not reversible without it.

    Ingest stores user and session ids this way; the privacy commands hash the ids they are
    given the same way to find them.

    Examples:
        >>> keyed_hash("user-1", b"k") == keyed_hash("user-1", b"k") != keyed_hash("user-1", b"j")
        True
    """
    return hmac.digest(key, value.encode("utf-8", "surrogatepass"), "sha256").hex()
