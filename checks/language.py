"""The language of a text, for fairness segments: py3langid, loaded once, imported lazily.

Detection costs about 0.1 ms a text whatever its length (py3langid's feature walk plus one
small sparse product; ``benchmarks/fairness_calibration.py --language`` measures it on 50,000
texts), so the ingest pipeline detects each prompt once and stores the code in the
interaction's metadata (``detected_language``): the segment then survives text retention and
no check pays for it again. :func:`detect_languages` is also the fallback a check uses for
rows stored before (or without) detection, while their text is still kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

__all__ = ["DETECTED_FIELD", "LANGUAGE_FIELD", "PREFIX_CHARS", "detect_languages"]

#: The metadata key the ingest pipeline writes the detected language to.
DETECTED_FIELD = "detected_language"
#: The segment field that falls back to the detected language.
LANGUAGE_FIELD = "language"
#: Characters of a text classified: enough for a stable answer, and a bound on the cost of a
#: huge prompt.
PREFIX_CHARS = 500
# Shorter texts ("ok", "thanks!") carry too few features to name a language reliably.
_MIN_CHARS = 3


@lru_cache(maxsize=1)
def _identifier() -> Any:
    # Loading the model costs ~1 s: once per process, and only when a language is needed.
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE)


def detect_languages(texts: Iterable[str | None]) -> list[str | None]:
    """The ISO 639-1 code of each text's language (None for empty or too short texts).

    Args:
        texts: Texts (e.g. prompts); None counts as empty.

    Returns:
        One code per text, in order.

    Examples:
        >>> detect_languages(["Where is my parcel? It was due on Monday.", "", None])
        ['en', None, None]
        >>> detect_languages(["Wo ist mein Paket? Es sollte am Montag kommen."])
        ['de']
    """
    items: Sequence[str | None] = list(texts)
    if not any(t and len(t.strip()) >= _MIN_CHARS for t in items):
        return [None] * len(items)
    ident = _identifier()
    out: list[str | None] = []
    for t in items:
        s = (t or "").strip()
        out.append(None if len(s) < _MIN_CHARS else str(ident.classify(s[:PREFIX_CHARS])[0]))
    return out
