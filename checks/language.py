"""The language of a text, for fairness segments: py3langid's model, classified a batch at a time.

py3langid classifies one text at a time in Python (a byte-by-byte walk of its DFA, then a small
sparse product), about 0.1 ms a text whatever its length. :func:`detect_languages` gives the
same answer for a whole batch with NumPy: it steps every text's DFA state one byte position at
a time, counts the features the states emit, and scores all texts with one sparse product. A
text whose two best languages are too close for the two sums' rounding to be told apart is
classified by py3langid itself, so the label is always py3langid's own ``classify`` label
(``tests/test_language.py`` checks this on a multilingual corpus).

The ingest pipeline detects each prompt once and stores the code in the interaction's metadata
(``detected_language``): the segment then survives text retention and no check pays for it
again. :func:`detect_languages` is also the fallback a check uses for rows stored before (or
without) detection, while their text is still kept. The model (about 0.6 s to load) is read
only when a language is needed, once per process; :func:`warm_up` reads it ahead, e.g. before
a worker process forks.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = [
    "DETECTED_FIELD",
    "LANGUAGE_FIELD",
    "PREFIX_CHARS",
    "classify_exact",
    "detect_languages",
    "warm_up",
]

#: The metadata key the ingest pipeline writes the detected language to.
DETECTED_FIELD = "detected_language"
#: The segment field that falls back to the detected language.
LANGUAGE_FIELD = "language"
#: Characters of a text classified: enough for a stable answer, and a bound on the cost of a
#: huge prompt.
PREFIX_CHARS = 500
# Shorter texts ("ok", "thanks!") carry too few features to name a language reliably.
_MIN_CHARS = 3
# Characters walked per NumPy batch (at most 4 bytes each): the walk keeps about 13 bytes
# per byte, so a batch holds at most ~50 MB, most batches (mostly ASCII) a quarter of it.
_BATCH_CHARS = 1_000_000
# float32 unit roundoff: both py3langid's sums and ours are float32.
_U32 = 2.0**-24


@dataclass(frozen=True)
class _Model:
    """py3langid's model in the arrays the batched walk indexes.

    Attributes:
        ident: py3langid's own identifier (for near ties, and the reference in tests).
        classes: Output label of each score column.
        nextmove: DFA transitions: ``nextmove[rowbase[state] + byte]`` is the next state.
        rowbase: Per state, the offset of its transition row.
        out: Per state, the feature it emits (-1 for none).
        ptc: Per feature, its log-probability per class (py3langid's float16 table).
        pc: Per class, its prior.
        first: Per column, the first column with the same label (aliases such as srl/sr).
    """

    ident: Any
    classes: list[str]
    nextmove: np.ndarray
    rowbase: np.ndarray
    out: np.ndarray
    ptc: np.ndarray
    pc: np.ndarray
    first: np.ndarray


@lru_cache(maxsize=1)
def _model() -> _Model:
    # Imported here: py3langid and SciPy cost import time, and only detection needs them
    # (SciPy now, so that a worker forked after warm_up() finds it imported).
    import scipy.sparse  # noqa: F401
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    ident = LanguageIdentifier.from_model_file(MODEL_FILE)
    nextmove = np.frombuffer(ident.tk_nextmove, dtype=f"u{ident.tk_nextmove.itemsize}")
    rows = np.frombuffer(ident.tk_row, dtype=f"u{ident.tk_row.itemsize}")
    classes = [str(c) for c in ident.nb_classes]
    index = {c: classes.index(c) for c in classes}
    return _Model(
        ident=ident,
        classes=classes,
        nextmove=nextmove,
        rowbase=rows.astype(np.intp) << 8,
        out=np.asarray(ident.tk_output, dtype=np.int32),
        ptc=np.asarray(ident.nb_ptc),
        pc=np.asarray(ident.nb_pc, dtype=np.float32),
        first=np.array([index[c] for c in classes], dtype=np.intp),
    )


def warm_up() -> None:
    """Load the model now (about 0.6 s) instead of on the first text.

    Examples:
        >>> warm_up()
    """
    _model()


def classify_exact(text: str) -> str:
    """py3langid's own label for a text (its one-text-at-a-time ``classify``).

    Examples:
        >>> classify_exact("Wo ist mein Paket? Es sollte am Montag kommen.")
        'de'
    """
    return str(_model().ident.classify(text)[0])


def _encode(text: str) -> bytes:
    """The bytes py3langid walks for a text (``LanguageIdentifier._encode``)."""
    if text.isupper():
        text = text.lower()
    return unicodedata.normalize("NFC", text).encode("utf8", errors="surrogatepass")


def _feature_counts(model: _Model, encoded: Sequence[bytes]) -> tuple[np.ndarray, Any]:
    """Walk every text's DFA at once; the order walked and each text's feature counts.

    Returns:
        The texts' indexes in the order walked (longest first), and a CSR matrix with one row
        per text in that order: how often the text's walk emitted each feature.
    """
    from scipy import sparse

    n = len(encoded)
    lens = np.fromiter(map(len, encoded), dtype=np.intp, count=n)
    # Longest first: the texts still walking at a position are then a prefix of the batch.
    order = np.argsort(-lens, kind="stable")
    lens = lens[order]
    flat = np.frombuffer(b"".join([encoded[i] for i in order]), dtype=np.uint8)
    starts = np.zeros(n + 1, dtype=np.intp)
    np.cumsum(lens, out=starts[1:])
    longest = int(lens[0]) if n else 0
    walking = n - np.cumsum(np.bincount(lens, minlength=longest + 1))
    # The state after each byte, laid out like the bytes (text by text), so each text's
    # features come out together, as CSR rows want them.
    states = np.empty(len(flat), dtype=model.nextmove.dtype)
    cursor = starts[:-1].copy()
    base = np.full(n, model.rowbase[0], dtype=np.intp)  # every walk starts in state 0
    step = np.empty(n, dtype=np.intp)
    nextmove, rowbase = model.nextmove, model.rowbase
    for pos in range(longest):
        k = int(walking[pos])
        at = cursor[:k]
        index = step[:k]
        np.add(base[:k], flat[at], out=index)
        state = nextmove[index]
        states[at] = state
        np.take(rowbase, state, out=base[:k])
        at += 1
    feats = model.out[states]
    emitted = feats >= 0
    # Features per text (every text has a byte: detect_languages walks 3 characters or more).
    indptr = np.zeros(n + 1, dtype=np.intp)
    np.cumsum(np.add.reduceat(emitted, starts[:-1], dtype=np.intp), out=indptr[1:])
    counts = sparse.csr_matrix(
        (np.ones(int(indptr[-1]), dtype=np.float32), feats[emitted], indptr),
        shape=(n, model.ptc.shape[0]),
    )
    counts.sum_duplicates()  # a feature emitted twice in a text: one entry, count 2
    return order, counts


def _labels(model: _Model, texts: Sequence[str]) -> list[str]:
    """py3langid's label of each text (stripped, at least ``_MIN_CHARS`` long)."""
    order, counts = _feature_counts(model, [_encode(t) for t in texts])
    n = len(texts)
    # py3langid's score: log1p(counts) @ ptc + pc, per class. Only the features the batch
    # emitted take part, so only their rows of the table become float32 (the whole table
    # would be 57 MB more for as long as the process lives).
    used = np.zeros(model.ptc.shape[0], dtype=bool)
    used[counts.indices] = True
    column = np.cumsum(used, dtype=np.int32) - 1
    table = model.ptc[np.flatnonzero(used)].astype(np.float32)
    np.log1p(counts.data, out=counts.data)
    counts = type(counts)(
        (counts.data, column[counts.indices], counts.indptr), shape=(n, len(table))
    )
    scores = np.asarray(counts @ table, dtype=np.float32)
    scores += model.pc
    distinct = np.diff(counts.indptr)
    # Aliased columns (srl and sr) are one label: fold each into its first column, as
    # py3langid does (max of the two), and leave the others out of the ranking.
    for dupe, first in enumerate(model.first.tolist()):
        if first != dupe:
            np.maximum(scores[:, first], scores[:, dupe], out=scores[:, first])
            scores[:, dupe] = -np.inf
    best = scores.argmax(axis=1)
    rows = np.arange(n)
    top = scores[rows, best].astype(np.float64)
    scores[rows, best] = -np.inf
    runner = scores.argmax(axis=1)
    second = scores[rows, runner].astype(np.float64)
    # Either sum may be off by gamma_k * (sum of |terms|) (k terms, float32); the terms are
    # log-probabilities times positive counts, so that sum is |score - prior| + |prior|.
    # (k * u stays far below 1 for float32 and a 2,000-byte prefix; the clamp only keeps
    # the bound finite when a test inflates u.)
    ku = (distinct.astype(np.float64) + 3.0) * _U32
    gamma = ku / (1.0 - np.minimum(ku, 0.5))
    pc = model.pc.astype(np.float64)
    slack = (
        4.0
        * gamma
        * (
            np.abs(top - pc[best])
            + np.abs(pc[best])
            + np.abs(second - pc[runner])
            + np.abs(pc[runner])
        )
        + 1e-6
    )
    # Near ties, and texts without features (py3langid ranks those by a fill value), are
    # left to py3langid itself.
    exact = ((top - second) <= slack) | (distinct == 0)
    labels: list[str] = [""] * n
    classes = model.classes
    for i, c, ask in zip(order.tolist(), best.tolist(), exact.tolist(), strict=True):
        labels[i] = str(model.ident.classify(texts[i])[0]) if ask else classes[c]
    return labels


def detect_languages(texts: Iterable[str | None]) -> list[str | None]:
    """The ISO 639-1 code of each text's language (None for empty or too short texts).

    Args:
        texts: Texts (e.g. prompts); None counts as empty.

    Returns:
        One code per text, in order: py3langid's ``classify`` label of the text's first
        :data:`PREFIX_CHARS` characters (stripped).

    Examples:
        >>> detect_languages(["Where is my parcel? It was due on Monday.", "", None])
        ['en', None, None]
        >>> detect_languages(["Wo ist mein Paket? Es sollte am Montag kommen."])
        ['de']
    """
    items: Sequence[str | None] = list(texts)
    out: list[str | None] = [None] * len(items)
    todo: list[int] = []
    prefixes: list[str] = []
    for i, t in enumerate(items):
        s = (t or "").strip()
        if len(s) >= _MIN_CHARS:
            todo.append(i)
            prefixes.append(s[:PREFIX_CHARS])
    if not todo:
        return out
    model = _model()
    start = 0
    while start < len(prefixes):
        end, size = start, 0
        while end < len(prefixes) and (size < _BATCH_CHARS or end == start):
            size += len(prefixes[end])
            end += 1
        for i, label in zip(todo[start:end], _labels(model, prefixes[start:end]), strict=True):
            out[i] = label
        start = end
    return out
