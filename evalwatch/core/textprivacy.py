"""What stands in for text that privacy settings removed, in the store and in every report.

Text retention (``ingest.text_retention``) and metadata-only ingest (``ingest.text_mode:
metadata_only``) keep an interaction's metadata, scores and embeddings but not its prompt,
response, context or reference: each text is replaced by its length and SHA-256
(:func:`text_digest`), and whatever shows a removed text shows :data:`TEXT_REMOVED` instead.
Forgotten users' traces in stored reports become :data:`TEXT_FORGOTTEN`.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum

__all__ = [
    "TEXT_FIELDS",
    "TEXT_FORGOTTEN",
    "TEXT_REMOVED",
    "TextRemoval",
    "shown_text",
    "text_digest",
]

#: Shown wherever a text that retention (or metadata-only ingest) removed would appear.
TEXT_REMOVED = "[text removed by retention]"
#: Shown in stored reports where an example came from an interaction ``privacy forget`` deleted.
TEXT_FORGOTTEN = "[removed: user data forgotten]"
#: The interaction text fields that retention removes.
TEXT_FIELDS: tuple[str, ...] = ("prompt", "response", "context", "reference")


class TextRemoval(StrEnum):
    """Why an interaction holds no text (``interactions.text_removed_reason``)."""

    retention = "retention"
    metadata_only = "metadata_only"


def text_digest(text: str | None) -> tuple[int | None, str | None]:
    """Length in characters and SHA-256 hex of a text (None, None for no text).

    Examples:
        >>> text_digest("hi")
        (2, '8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4')
        >>> text_digest(None)
        (None, None)
    """
    if text is None:
        return None, None
    return len(text), hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def shown_text(text: str | None, removed: bool) -> str | None:
    """The text to show: the marker once removed, else the text itself.

    Examples:
        >>> shown_text("", True), shown_text("hello", False)
        ('[text removed by retention]', 'hello')
    """
    return TEXT_REMOVED if removed else text
