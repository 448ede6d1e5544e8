"""The ingest pipeline: read, normalise, validate, redact, hash, store; quarantine the rest.

Each file is processed in chunks of ``settings.ingest.chunk_size`` rows. A chunk is read and
normalised (field aliases, types), its rows get their request ids (a stable content-derived id
where the file has none), it is validated (:mod:`evalwatch.checks.validation`, Great Expectations),
and
then, in its own transactions,

* valid rows are redacted (unless turned off), user and session ids replaced by keyed hashes
  (HMAC-SHA256 with the configured key), and stored: a request id already in the store is a
  duplicate and is skipped, so ingesting a file twice stores nothing new;
* ratings and thumbs on traffic rows become feedback rows;
* rejected rows go to quarantine with every reason, their raw text, source file and line.

Counts are reported only after a chunk's commit, so a crash loses nothing reported as stored,
and running the same command again finishes the rest.

Request ids are unique per interaction: the first row with an id wins; a later row in the
same ingest with the same id and identical content is a duplicate, with different content it is
quarantined (``request_id: not unique``). Within a chunk Great Expectations checks this; across
chunks the pipeline carries what it has seen, so outcomes do not depend on the chunk size.

Validation sees the text as it arrived (length bounds apply to it); only rows that pass are
redacted. Quarantined rows keep the start of their raw line (``readers.QUARANTINE_CHARS``
characters and a note of its full length; the hash is of all of it), with personal data masked
unless redaction is off. A line longer than ``settings.ingest.max_line_bytes`` is never read
whole (see :mod:`evalwatch.ingest.readers`). Reading and checking can run in a forked worker
process while this process stores the previous chunk (``parallel``); the store is only ever
written here, in order.
"""

from __future__ import annotations

import gc
import hashlib
import multiprocessing
import os
import queue
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.reduction import ForkingPickler
from pathlib import Path
from typing import Any, Literal

import orjson
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from sqlalchemy.engine import Engine

from evalwatch.checks.language import DETECTED_FIELD, detect_languages
from evalwatch.checks.validation import (
    coerce_feedback,
    coerce_traffic,
    reason_key,
    validate_feedback_rows,
    validate_traffic_rows,
    warm_up,
)
from evalwatch.core.idhash import keyed_hash
from evalwatch.core.redact import Redactor, mask
from evalwatch.core.textprivacy import TEXT_FIELDS, TEXT_REMOVED, TextRemoval, text_digest
from evalwatch.ingest.readers import (
    FEEDBACK_ALIASES,
    FEEDBACK_FIELDS,
    TRAFFIC_ALIASES,
    TRAFFIC_FIELDS,
    RawRecord,
    SourceReader,
    bounded_raw,
    cut_raw,
    normalise_keys,
)
from evalwatch.ingest.traces import is_trace_row, store_trace_rows
from evalwatch.settings import Settings
from evalwatch.storage.models import Feedback, utcnow
from evalwatch.storage.privacy import optout_hashes
from evalwatch.storage.repo import (
    insert_feedback,
    insert_ignore,
    insert_interactions,
    insert_quarantine,
    interaction_ids_for,
)

__all__ = [
    "OPTED_OUT_SESSION",
    "OPTED_OUT_USER",
    "IngestKind",
    "IngestResult",
    "RowOutcome",
    "StoredTexts",
    "derived_request_id",
    "ingest",
    "keyed_hash",
]

IngestKind = Literal["traffic", "feedback"]
#: Why an opted-out row was dropped (keys of :attr:`IngestResult.opted_out`).
OPTED_OUT_USER = "user opted out"
OPTED_OUT_SESSION = "session opted out"
#: The texts of interactions stored without them (metadata-only ingest), by interaction id.
StoredTexts = dict[int, dict[str, Any]]

_REPLACED_WARNING = "invalid UTF-8 bytes replaced"
_UNIQUE_REASON = "request_id: not unique"
_MAX_SOURCE = 500
# Files smaller than this finish before a progress bar would be of any use.
_PROGRESS_MIN_BYTES = 4_000_000
# Most text one chunk holds in memory, whatever its row count.
_MAX_CHUNK_CHARS = 64_000_000
# Below this much input a worker process costs more than it saves.
_PARALLEL_MIN_BYTES = 16_000_000
# Fields of a traffic row that identify an interaction (ratings can arrive later).
_IDENTITY = (
    "app",
    "model_name",
    "model_version",
    "prompt",
    "response",
    "context",
    "user_id",
    "session_id",
)


@dataclass
class RowOutcome:
    """What happened to one input row (collected only when asked for)."""

    source: str
    line: int
    status: Literal["stored", "duplicate", "quarantined", "skipped", "opted_out"]
    reasons: list[str] = field(default_factory=list)
    request_id: str | None = None


@dataclass
class IngestResult:
    """Counts of one ingest run.

    Attributes:
        files: The files read.
        kind: ``traffic`` or ``feedback``.
        rows: Input rows seen (blank lines and non-GenAI spans excluded).
        ingested: Rows newly stored (interactions, or feedback rows for ``feedback``).
        duplicates: Valid rows already in the store (or repeated in the input).
        updated: Stored interactions from traces completed by spans that arrived later.
        quarantined: Rows rejected into quarantine.
        feedback: Feedback rows newly stored (from ratings/thumbs on traffic rows, or the file).
        reasons: Quarantine reasons (without their details) and how many rows had each.
        skipped: Lines that are not rows (blank lines, non-GenAI spans), by why.
        warnings: Rows stored with a caveat (e.g. invalid UTF-8 replaced), by caveat.
        opted_out: Rows dropped, not stored nor quarantined, because their user or session
            is on the opt-out list (``evalwatch privacy opt-out``), by why.
        seconds: Wall time.
        outcomes: Per-row outcomes, when ``collect_outcomes`` was set.
    """

    files: list[str]
    kind: str
    rows: int = 0
    ingested: int = 0
    duplicates: int = 0
    updated: int = 0
    quarantined: int = 0
    feedback: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    warnings: Counter[str] = field(default_factory=Counter)
    opted_out: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    outcomes: list[RowOutcome] | None = None

    @property
    def ok(self) -> bool:
        """True when nothing was quarantined."""
        return self.quarantined == 0


def _dumps(obj: Any) -> bytes:
    return orjson.dumps(
        obj, default=str, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS
    )


def derived_request_id(row: dict[str, Any]) -> str:
    """A stable request id from what identifies an interaction (time, app, model, texts, user).

    Examples:
        >>> from datetime import UTC, datetime
        >>> row = {"ts": datetime(2026, 1, 1, tzinfo=UTC), "prompt": "hi", "response": "yo"}
        >>> derived_request_id(row) == derived_request_id(dict(row)), derived_request_id(row)[:2]
        (True, 'h-')
    """
    ts = row.get("ts")
    ident = [ts.isoformat() if ts is not None else None] + [row.get(k) for k in _IDENTITY]
    return "h-" + hashlib.blake2b(_dumps(ident), digest_size=20).hexdigest()


def _content_hash(row: dict[str, Any]) -> int:
    # Compared only within one run (to tell a repeat from a conflicting row), so Python's own
    # 64-bit hash will do; it is many times cheaper than a cryptographic one on long texts.
    meta = row["metadata"]
    return hash(
        (
            row["ts"], row["request_id"], row["app"], row["model_name"], row["model_version"],
            row["prompt"], row["response"], row["context"], row["reference"], row["latency_ms"],
            row["input_tokens"], row["output_tokens"], row["cost"], row["user_id"],
            row["session_id"], row["rating"], row["thumbs"], _dumps(meta) if meta else None,
        )
    )


def _chunks(records: Iterable[RawRecord], size: int) -> Iterator[list[RawRecord]]:
    # A chunk also ends early once it holds _MAX_CHUNK_CHARS of text (files of huge prompts).
    chunk: list[RawRecord] = []
    chars = 0
    for rec in records:
        chunk.append(rec)
        chars += len(rec.text)
        if len(chunk) >= size or chars >= _MAX_CHUNK_CHARS:
            yield chunk
            chunk = []
            chars = 0
    if chunk:
        yield chunk


def _source_name(path: Path) -> str:
    name = str(path.resolve())
    return name if len(name) <= _MAX_SOURCE else "..." + name[-(_MAX_SOURCE - 3) :]


@dataclass
class _Prepared:
    """One chunk, read and checked, ready to be stored (by :meth:`_Run.commit`).

    It carries everything the commit needs and nothing tied to a process, so a worker process
    can prepare chunks while the main process stores the previous ones.
    """

    source: str
    rows: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line, why)
    # traffic: interaction rows, and per row its line and (rating, thumbs) for feedback
    store: list[dict[str, Any]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    votes: list[tuple[int | None, str | None]] = field(default_factory=list)
    # metadata-only ingest: each stored row's texts (the store gets their length and hash)
    texts: list[dict[str, Any]] = field(default_factory=list)
    # (user hash, session hash) of each rejected row, where it has them (opt-outs drop it)
    rejected_ids: list[tuple[str | None, str | None]] = field(default_factory=list)
    # (user id, session id) of each stored row as read: commit hashes them into the row, in
    # the process that writes (a fair share of a chunk's work, taken off the busier reader)
    user_ids: list[tuple[str | None, str | None]] = field(default_factory=list)
    # feedback files: typed rows and their records
    feedback: list[tuple[RawRecord, dict[str, Any], list[str]]] = field(default_factory=list)
    rejected: list[tuple[RawRecord, list[str]]] = field(default_factory=list)
    quarantine: list[dict[str, Any]] = field(default_factory=list)
    warnings: Counter[str] = field(default_factory=Counter)


class _Run:
    """State of one ingest call: settings, the redactor, ids seen, the running counts.

    ``prepare_*`` read and check a chunk without touching the store (possibly in a worker
    process); :meth:`commit` stores it, in order, and is the only place that counts.
    """

    def __init__(
        self,
        engine: Engine,
        kind: IngestKind,
        settings: Settings,
        redact: bool,
        collect_outcomes: bool,
        now: datetime | None,
        on_stored: Callable[[StoredTexts], None] | None = None,
    ) -> None:
        self.engine = engine
        self.on_stored = on_stored
        self.metadata_only = settings.ingest.text_mode == "metadata_only"
        self.kind = kind
        self.settings = settings
        self.bounds = settings.ingest
        self.redactor = Redactor() if redact else None
        self.now = now
        # Read (or created) once here, before any worker forks: workers creating the file
        # at once would race.
        self.key = settings.resolved_hash_key() if kind == "traffic" else b""
        self.hashes: dict[str, str] = {}
        # request id -> (content hash, source, line) of its first row in this run.
        self.seen: dict[str, tuple[int, str, int]] = {}
        self.result = IngestResult(files=[], kind=kind)
        if collect_outcomes:
            self.result.outcomes = []

    # ------------------------------------------------------------------ shared helpers

    def _outcome(
        self,
        source: str,
        line: int,
        status: Literal["stored", "duplicate", "quarantined", "skipped", "opted_out"],
        reasons: Sequence[str] = (),
        request_id: str | None = None,
    ) -> None:
        if self.result.outcomes is not None:
            self.result.outcomes.append(RowOutcome(source, line, status, list(reasons), request_id))

    def _hash_id(self, value: str | int | None) -> str | None:
        if value is None:
            return None
        value = str(value)
        h = self.hashes.get(value)
        if h is None:
            h = keyed_hash(value, self.key)
            if len(self.hashes) < 1_000_000:
                self.hashes[value] = h
        return h

    def _quarantine_rows(
        self, source: str, items: Sequence[tuple[RawRecord, list[str]]]
    ) -> list[dict[str, Any]]:
        if not items:
            return []
        # Only the start of each raw row is kept (with its length and the hash of all of it),
        # so quarantine stays small whatever arrives.
        bounded = [bounded_raw(rec) for rec, _ in items]
        heads = [head for head, _, _ in bounded]
        if self.redactor is not None:
            # The raw row is kept for whoever fixes it, but not the personal data in it.
            found = self.redactor.find_many(heads)
            heads = [mask(r, f) if f else r for r, f in zip(heads, found, strict=True)]
        return [
            {
                "kind": self.kind,
                "source": source,
                "line": rec.line,
                # PostgreSQL text cannot hold NUL.
                "raw": cut_raw(
                    head, size, "characters" if rec.digest is None else "bytes"
                ).replace("\x00", "\ufffd"),
                "raw_hash": digest,
                # A reason quotes the offending value ("timestamp: not ISO-8601 ('...')"):
                # masked like the raw row.
                "reasons": [self.redactor.redact(r)[0] for r in reasons]
                if self.redactor is not None
                else list(reasons),
            }
            for (rec, reasons), head, (_, digest, size) in zip(items, heads, bounded, strict=True)
        ]

    @staticmethod
    def _split(
        prepared: _Prepared, chunk: Sequence[RawRecord], fields: Sequence[str], aliases: Any
    ) -> tuple[list[RawRecord], list[Any], list[tuple[RawRecord, list[str]]]]:
        """Records that are rows (with their normalised values), and those that failed to parse."""
        keep: list[RawRecord] = []
        values: list[Any] = []
        failed: list[tuple[RawRecord, list[str]]] = []
        for rec in chunk:
            if rec.skip is not None:
                prepared.skipped.append((rec.line, rec.skip))
                continue
            prepared.rows += 1
            if rec.error is not None:
                failed.append((rec, [rec.error]))
                continue
            keep.append(rec)
            if isinstance(rec.value, dict):
                values.append(normalise_keys(rec.value, fields, aliases))
            else:
                values.append(rec.value)
        return keep, values, failed

    # ------------------------------------------------------------------ traffic

    def prepare_traffic(self, source: str, chunk: Sequence[RawRecord]) -> _Prepared:
        prepared = _Prepared(source)
        keep, values, failed = self._split(prepared, chunk, TRAFFIC_FIELDS, TRAFFIC_ALIASES)
        coerced = coerce_traffic(values)
        rows, reasons = coerced.rows, coerced.reasons
        # Final request ids first: uniqueness is checked on them.
        exempt: list[bool] = [True] * len(rows)
        seen = self.seen
        for i, row in enumerate(rows):
            if row is None:
                continue
            if row["request_id"] is None:
                row["request_id"] = derived_request_id(row)
            if is_trace_row(row):
                continue  # parts of one trace share its id: stored ones are merged, not refused
            rid = row["request_id"]
            digest = _content_hash(row)
            first = seen.get(rid)
            if first is None:
                seen[rid] = (digest, source, keep[i].line)
            elif first[0] != digest:
                exempt[i] = False
                where = f"line {first[2]}" + ("" if first[1] == source else f" of {first[1]}")
                reasons[i].append(f"{_UNIQUE_REASON} (first used on {where})")
        gx = validate_traffic_rows(rows, self.bounds, self.now, coerced.bad_fields)
        for i, extra in enumerate(gx):
            for reason in extra:
                if reason == _UNIQUE_REASON and exempt[i]:
                    continue  # the first row with this id, or an identical repeat of it
                if reason_key(reason) not in {reason_key(r) for r in reasons[i]}:
                    reasons[i].append(reason)

        good = [i for i, row in enumerate(rows) if row is not None and not reasons[i]]
        prepared.store = self._interaction_rows(
            source, [keep[i] for i in good], [rows[i] for i in good], prepared.warnings
        )
        prepared.lines = [keep[i].line for i in good]
        prepared.user_ids = [(rows[i]["user_id"], rows[i]["session_id"]) for i in good]  # type: ignore[index]
        prepared.votes = [(rows[i]["rating"], rows[i]["thumbs"]) for i in good]  # type: ignore[index]
        prepared.rejected = failed + [(keep[i], reasons[i]) for i in range(len(rows)) if reasons[i]]
        prepared.rejected_ids = [(None, None)] * len(failed) + [
            self._row_ids(rows[i], values[i]) for i in range(len(rows)) if reasons[i]
        ]
        prepared.quarantine = self._quarantine_rows(source, prepared.rejected)
        if self.metadata_only:
            prepared.texts = [self._strip_texts(row) for row in prepared.store]
        return prepared

    def _row_ids(self, row: Any, value: Any) -> tuple[str | None, str | None]:
        """Hashed user and session ids of a rejected row, from what could be read of it."""
        src = row if isinstance(row, dict) else value if isinstance(value, dict) else {}
        ids = [src.get("user_id"), src.get("session_id")]
        return (
            self._hash_id(ids[0]) if isinstance(ids[0], str | int) else None,
            self._hash_id(ids[1]) if isinstance(ids[1], str | int) else None,
        )

    def _strip_texts(self, row: dict[str, Any]) -> dict[str, Any]:
        """Metadata-only ingest: keep a row's texts aside, store their length and hash only."""
        texts = {f: row[f] for f in TEXT_FIELDS}
        for f, text in texts.items():
            row[f"{f}_chars"], row[f"{f}_sha256"] = text_digest(text)
            row[f] = None if text is None else TEXT_REMOVED
        row["text_removed_at"] = utcnow()
        row["text_removed_reason"] = str(TextRemoval.metadata_only)
        return texts

    def _interaction_rows(
        self,
        source: str,
        recs: Sequence[RawRecord],
        rows: Sequence[Any],
        warnings: Counter[str],
    ) -> list[dict[str, Any]]:
        fields = ("prompt", "response", "context", "reference")
        texts = {f: [row[f] or "" for row in rows] for f in fields}
        found: dict[str, list[Any]] = {}
        if self.redactor is not None:
            # One batched scan per field over the whole chunk; a field empty in every row
            # (often context and reference) has nothing to find.
            found = {f: self.redactor.find_many(t) for f, t in texts.items() if any(t)}
        out: list[dict[str, Any]] = [
            {
                "request_id": row["request_id"],
                "ts": row["ts"],
                "app": row["app"],
                "model_name": row["model_name"],
                "model_version": row["model_version"],
                "prompt": row["prompt"],
                "response": row["response"],
                "context": row["context"],
                "reference": row["reference"],
                "latency_ms": row["latency_ms"],
                "input_tokens": row["input_tokens"],
                "output_tokens": row["output_tokens"],
                "cost": row["cost"],
                "user_hash": None,  # hashed from _Prepared.user_ids by commit
                "session_hash": None,
                "metadata": row["metadata"],
                "redactions": 0,
                "source": source,
            }
            for row in rows
        ]
        # Findings are sparse: touch only the rows that have some.
        for f, per_row in found.items():
            field_texts = texts[f]
            for i, spans in enumerate(per_row):
                if spans:
                    out[i][f] = mask(field_texts[i], spans)
                    out[i]["redactions"] += len(spans)
        if self.settings.fairness.detect_language:
            # Detected once, from the prompt as it arrived, so the fairness segment outlives
            # text retention and no check pays for it again (evalwatch.checks.language).
            for row, lang in zip(out, detect_languages(texts["prompt"]), strict=True):
                if lang is not None:
                    row["metadata"] = {**(row["metadata"] or {}), DETECTED_FIELD: lang}
        for i, rec in enumerate(recs):
            if rec.replaced:
                meta = dict(out[i]["metadata"] or {})
                meta["_ingest"] = {"warnings": [_REPLACED_WARNING]}
                out[i]["metadata"] = meta
                warnings[_REPLACED_WARNING] += 1
        return out

    def _hash_user_ids(self, prepared: _Prepared) -> None:
        """Give each row to store the keyed hashes of its user and session ids."""
        hash_id = self._hash_id
        for row, (user, session) in zip(prepared.store, prepared.user_ids, strict=True):
            row["user_hash"] = hash_id(user)
            row["session_hash"] = hash_id(session)
        prepared.user_ids = []

    def _drop_opted_out(self, prepared: _Prepared) -> None:
        """Drop the rows (stored or quarantined alike) of opted-out users and sessions.

        The list is read again for every chunk, in the process that writes, so an opt-out
        added while a long ingest runs applies from its next chunk on.
        """
        opted = optout_hashes(self.engine)
        users, sessions = opted["user"], opted["session"]
        if not users and not sessions:
            return

        def why(user: str | None, session: str | None) -> str | None:
            if user is not None and user in users:
                return OPTED_OUT_USER
            if session is not None and session in sessions:
                return OPTED_OUT_SESSION
            return None

        keep: list[int] = []
        for i, row in enumerate(prepared.store):
            w = why(row["user_hash"], row["session_hash"])
            if w is None:
                keep.append(i)
                continue
            self.result.opted_out[w] += 1
            self._outcome(prepared.source, prepared.lines[i], "opted_out", [w])
        if len(keep) < len(prepared.store):
            prepared.store = [prepared.store[i] for i in keep]
            prepared.lines = [prepared.lines[i] for i in keep]
            prepared.votes = [prepared.votes[i] for i in keep]
            if prepared.texts:
                prepared.texts = [prepared.texts[i] for i in keep]
        rejected_keep: list[int] = []
        for i, ((rec, _), ids) in enumerate(
            zip(prepared.rejected, prepared.rejected_ids, strict=True)
        ):
            w = why(*ids)
            if w is None:
                rejected_keep.append(i)
                continue
            self.result.opted_out[w] += 1
            self._outcome(prepared.source, rec.line, "opted_out", [w])
        if len(rejected_keep) < len(prepared.rejected):
            prepared.rejected = [prepared.rejected[i] for i in rejected_keep]
            prepared.rejected_ids = [prepared.rejected_ids[i] for i in rejected_keep]
            prepared.quarantine = [prepared.quarantine[i] for i in rejected_keep]

    def _hand_over_texts(self, prepared: _Prepared, new_ids: set[str]) -> None:
        """Give the texts of the rows stored without them to ``on_stored`` (to score them)."""
        assert self.on_stored is not None
        ids = interaction_ids_for(self.engine, new_ids)
        out: StoredTexts = {}
        for row, texts in zip(prepared.store, prepared.texts, strict=True):
            iid = ids.get(row["request_id"])
            if iid is not None and iid not in out:
                out[iid] = {**texts, "metadata": row["metadata"]}
        if out:
            self.on_stored(out)

    def _inline_feedback(self, prepared: _Prepared) -> int:
        voted = [
            (row, vote) for row, vote in zip(prepared.store, prepared.votes, strict=True)
            if vote != (None, None)
        ]
        if not voted:
            return 0
        ids = interaction_ids_for(self.engine, [row["request_id"] for row, _ in voted])
        out: list[dict[str, Any]] = []
        for row, (rating, thumbs) in voted:
            iid = ids.get(row["request_id"])
            if iid is None:  # cannot happen after the insert; never attach to nothing
                continue
            if rating is not None:
                out.append(
                    _feedback_row(iid, row["request_id"], "rating", float(rating), None, None,
                                  row["ts"], prepared.source)
                )
            if thumbs is not None:
                out.append(
                    _feedback_row(iid, row["request_id"], "thumbs",
                                  1.0 if thumbs == "up" else 0.0, thumbs, None, row["ts"],
                                  prepared.source)
                )
        return insert_feedback(self.engine, out) if out else 0

    # ------------------------------------------------------------------ feedback files

    def prepare_feedback(self, source: str, chunk: Sequence[RawRecord]) -> _Prepared:
        prepared = _Prepared(source)
        keep, values, failed = self._split(prepared, chunk, FEEDBACK_FIELDS, FEEDBACK_ALIASES)
        coerced = coerce_feedback(values)
        rows, reasons = coerced.rows, coerced.reasons
        gx = validate_feedback_rows(rows, self.bounds, self.now, coerced.bad_fields)
        prepared.rejected = list(failed)
        for i, (row, extra) in enumerate(zip(rows, gx, strict=True)):
            why = list(dict.fromkeys(reasons[i] + extra))
            if row is None or why:
                prepared.rejected.append((keep[i], why))
            else:
                prepared.feedback.append((keep[i], row, why))
        return prepared

    def _commit_feedback(self, prepared: _Prepared) -> tuple[set[str], list[tuple[int, str, str]]]:
        ids = interaction_ids_for(self.engine, [r["request_id"] for _, r, _ in prepared.feedback])
        out: list[dict[str, Any]] = []
        stored: list[tuple[int, str, str]] = []  # line, request id, feedback key
        for rec, r, why in prepared.feedback:
            iid = ids.get(r["request_id"])
            if iid is None:
                why.append(f"request_id: unknown interaction ({r['request_id']!r})")
                prepared.rejected.append((rec, why))
                continue
            fb = _feedback_row(iid, r["request_id"], r["kind"], r["value"], r["label"],
                               r["comment"], r["ts"], prepared.source)
            out.append(fb)
            stored.append((rec.line, r["request_id"], fb["feedback_key"]))
        new_keys: set[str] = set()
        if out:
            with self.engine.begin() as conn:
                new_keys = set(
                    insert_ignore(conn, Feedback, out, ["feedback_key"], returning="feedback_key")
                )
        prepared.quarantine = self._quarantine_rows(prepared.source, prepared.rejected)
        return new_keys, stored

    # ------------------------------------------------------------------ storing

    def commit(self, prepared: _Prepared) -> None:
        """Store one prepared chunk, then count it (only what is committed is counted)."""
        result = self.result
        source = prepared.source
        result.rows += prepared.rows
        for line, skip in prepared.skipped:
            result.skipped[skip] += 1
            self._outcome(source, line, "skipped", [skip])
        if self.kind == "traffic":
            self._hash_user_ids(prepared)
            self._drop_opted_out(prepared)
            new_ids: set[str] = set()
            updated: set[str] = set()
            plain: list[dict[str, Any]] = []
            traced: list[dict[str, Any]] = []
            for r in prepared.store:
                (traced if is_trace_row(r) else plain).append(r)
            if plain:
                new_ids = set(insert_interactions(self.engine, plain))
            if traced:
                # Multi-span traces: a trace already stored is completed with the new spans.
                fresh, changed = store_trace_rows(self.engine, traced)
                new_ids.update(fresh)
                updated = set(changed)
            feedback = self._inline_feedback(prepared)
            if prepared.quarantine:
                insert_quarantine(self.engine, prepared.quarantine)
            if self.on_stored is not None and prepared.texts and new_ids:
                self._hand_over_texts(prepared, new_ids)
            result.ingested += len(new_ids)
            result.updated += len(updated)
            result.duplicates += len(prepared.store) - len(new_ids) - len(updated)
            result.feedback += feedback
            if result.outcomes is not None:
                for row, line in zip(prepared.store, prepared.lines, strict=True):
                    rid = row["request_id"]
                    if rid in new_ids or rid in updated:
                        new_ids.discard(rid)  # a repeat later in the chunk is the duplicate
                        updated.discard(rid)
                        self._outcome(source, line, "stored", request_id=rid)
                    else:
                        self._outcome(source, line, "duplicate", request_id=rid)
        else:
            new_keys, stored = self._commit_feedback(prepared)
            if prepared.quarantine:
                insert_quarantine(self.engine, prepared.quarantine)
            result.ingested += len(new_keys)
            result.feedback += len(new_keys)
            result.duplicates += len(stored) - len(new_keys)
            for line, rid, key in stored:
                self._outcome(
                    source, line, "stored" if key in new_keys else "duplicate", request_id=rid
                )
                new_keys.discard(key)
        for rec, why in prepared.rejected:
            result.quarantined += 1
            result.reasons.update({reason_key(r) for r in why})
            self._outcome(source, rec.line, "quarantined", why)
        result.warnings.update(prepared.warnings)


def _feedback_row(
    interaction_id: int,
    request_id: str,
    kind: str,
    value: float | None,
    label: str | None,
    comment: str | None,
    ts: datetime,
    source: str,
) -> dict[str, Any]:
    content = [request_id, kind, value, label, comment, ts.isoformat()]
    key = hashlib.sha256(_dumps(content)).hexdigest()
    return {
        "feedback_key": key,
        "interaction_id": interaction_id,
        "kind": kind,
        "value": value,
        "label": label,
        "comment": comment,
        "ts": ts,
        "source": source,
    }


_Stream = Iterator[tuple[int, _Prepared, int]]


def _prepare(run: _Run, readers: Sequence[SourceReader], size: int) -> _Stream:
    """(file index, prepared chunk, progress of its reader) for every chunk, in order."""
    prepare = run.prepare_traffic if run.kind == "traffic" else run.prepare_feedback
    for index, reader in enumerate(readers):
        source = _source_name(reader.path)
        for chunk in _chunks(reader, size):
            yield index, prepare(source, chunk), reader.done


def _worker(
    conn: Any, run: _Run, readers: Sequence[SourceReader], size: int, engine: Engine
) -> None:
    # The parent's pooled connections stay the parent's; this process never touches the store.
    engine.dispose(close=False)
    try:
        for item in _prepare(run, readers, size):
            conn.send(("chunk", item))
        conn.send(("done", None))
    except BaseException as exc:
        try:
            conn.send(("error", exc))
        except Exception:  # not picklable: send what it said
            conn.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
    finally:
        conn.close()


class _Inbox:
    """The worker's messages, read off the pipe by a thread of this process as they come.

    Without it the worker's ``send`` of a chunk (megabytes through a pipe that holds 1 MB at
    most) waits until this process has stored the previous chunk and calls ``recv``, so neither
    process works during the hand-over. The thread holds the GIL only between reads, and keeps
    at most ``_INBOX_CHUNKS`` messages unread (the worker then waits, so memory stays bounded).
    """

    def __init__(self, receive: Any) -> None:
        self._receive = receive
        self._queue: queue.Queue[bytes | BaseException | None] = queue.Queue(_INBOX_CHUNKS)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, name="evalwatch-ingest-inbox")
        self._thread.daemon = True
        self._thread.start()

    def _pump(self) -> None:
        item: bytes | BaseException | None
        while not self._stop.is_set():
            try:
                item = self._receive.recv_bytes()
            except EOFError:
                item = None
            except BaseException as exc:
                item = exc
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if not isinstance(item, bytes):
                return

    def get(self) -> tuple[str, Any]:
        """The next message; EOFError once the worker is gone without saying done."""
        item = self._queue.get()
        if item is None:
            raise EOFError
        if isinstance(item, BaseException):
            raise item
        what, payload = ForkingPickler.loads(item)
        return str(what), payload

    def close(self) -> None:
        """Stop the thread (the worker must be gone, so its read ends) and wait for it."""
        self._stop.set()
        self._thread.join()


# Messages the inbox holds unread: one chunk ahead of the one being stored is all it takes.
_INBOX_CHUNKS = 1
# Pipe buffer asked for (Linux's default limit for it): a chunk of ~15 MB then crosses in a
# few reads. Each read needs the GIL back from the thread that stores, up to a switch interval
# (5 ms) each: with the default 64 KB buffer that alone held the worker up for about a second
# per chunk.
_PIPE_BYTES = 1 << 20


def _widen(conn: Any) -> None:
    """Give a pipe connection's pipe :data:`_PIPE_BYTES` of buffer, where the system allows."""
    try:
        import fcntl

        fcntl.fcntl(conn.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
    except (ImportError, AttributeError, OSError):
        pass  # the default buffer works, only slower


def _forked(run: _Run, readers: Sequence[SourceReader], size: int, engine: Engine) -> _Stream:
    """:func:`_prepare` in a forked worker process.

    Reading and checking the next chunk overlaps with storing this one (the two stages hold
    the GIL of different processes). The worker only reads files and computes; the store is
    written by this process, in order, so commit and crash semantics are the same as without
    the worker.
    """
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    _widen(send)
    worker = ctx.Process(
        target=_worker, args=(send, run, readers, size, engine), name="evalwatch-ingest"
    )
    worker.start()
    send.close()
    inbox = _Inbox(receive)  # after the fork: the worker must not inherit a running thread
    try:
        while True:
            try:
                what, payload = inbox.get()
            except EOFError:
                worker.join()
                raise RuntimeError(
                    f"the ingest worker stopped unexpectedly (exit code {worker.exitcode})"
                ) from None
            if what == "chunk":
                yield payload
            elif what == "done":
                return
            else:
                raise payload
    finally:
        if worker.is_alive():
            worker.terminate()
        worker.join()
        inbox.close()
        receive.close()


def ingest(
    engine: Engine,
    paths: Sequence[str | Path],
    *,
    kind: IngestKind = "traffic",
    fmt: str = "auto",
    settings: Settings | None = None,
    redact: bool | None = None,
    progress: bool = False,
    console: Console | None = None,
    collect_outcomes: bool = False,
    now: datetime | None = None,
    on_chunk: Callable[[IngestResult], None] | None = None,
    parallel: bool | None = None,
    on_stored: Callable[[StoredTexts], None] | None = None,
) -> IngestResult:
    r"""Ingest traffic (or feedback) files into the store.

    Args:
        engine: The store (migrated).
        paths: Input files (JSONL, CSV, Parquet, OTLP JSON; see :mod:`evalwatch.ingest.readers`).
        kind: ``traffic`` rows, or ``feedback`` rows keyed by request id.
        fmt: ``auto`` (by name and content) or a format for every file.
        settings: Settings (default: the process settings).
        redact: Redact PII before storing (default: ``settings.ingest.redact``).
        progress: Show a progress bar for large files.
        console: Where the progress bar goes (default: stderr).
        collect_outcomes: Record what happened to every row in ``result.outcomes``.
        now: The present for the future-timestamp check (default: the clock, per chunk).
        on_chunk: Called with the running result after each committed chunk.
        parallel: Read and check chunks in a forked worker process while this one stores
            (Linux only; default: for 16 MB of input or more, on more than one CPU, when this
            process runs no other thread).
        on_stored: With ``ingest.text_mode: metadata_only``, called after each chunk's commit
            with the texts of the interactions it stored without them (interaction id ->
            prompt, response, context, reference, metadata), so they can be scored now.

    Returns:
        The counts (and outcomes when asked for).

    Raises:
        evalwatch.ingest.readers.UnreadableFileError: If a file cannot be opened or read; chunks
            already committed stay stored.

    Examples:
        >>> import tempfile, pathlib
        >>> from evalwatch.storage.db import make_engine, upgrade
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> engine = make_engine(f"sqlite:///{d / 'store.db'}")
        >>> _ = upgrade(engine)
        >>> _ = (d / "t.jsonl").write_text('{"timestamp": "2026-01-01T00:00:00Z", "app": "a", '
        ...     '"model_name": "m", "model_version": "v1", "prompt": "hi", "response": "yo"}\n')
        >>> s = Settings(hash_key="k", database_url=str(engine.url))
        >>> r = ingest(engine, [d / "t.jsonl"], settings=s)
        >>> r.ingested, r.duplicates, r.quarantined
        (1, 0, 0)
        >>> ingest(engine, [d / "t.jsonl"], settings=s).duplicates
        1
    """
    started = time.perf_counter()
    gc_was_enabled = gc.isenabled()
    # Rows are plain dicts and lists without cycles; the cyclic collector would only walk the
    # chunk in memory over and over (a third of the run time on large files).
    gc.disable()
    try:
        return _ingest(
            engine, paths, kind, fmt, settings, redact, progress, console, collect_outcomes,
            now, on_chunk, parallel, started,
            on_stored,
        )
    finally:
        if gc_was_enabled:
            gc.enable()


def _ingest(
    engine: Engine,
    paths: Sequence[str | Path],
    kind: IngestKind,
    fmt: str,
    settings: Settings | None,
    redact: bool | None,
    progress: bool,
    console: Console | None,
    collect_outcomes: bool,
    now: datetime | None,
    on_chunk: Callable[[IngestResult], None] | None,
    parallel: bool | None,
    started: float,
    on_stored: Callable[[StoredTexts], None] | None = None,
) -> IngestResult:
    settings = settings if settings is not None else Settings()
    do_redact = settings.ingest.redact if redact is None else redact
    run = _Run(engine, kind, settings, do_redact, collect_outcomes, now, on_stored)
    # Every file opens here, so a missing one fails before anything is stored.
    readers = [SourceReader(p, fmt, settings.ingest.max_line_bytes) for p in paths]
    size = max(1, settings.ingest.chunk_size)
    total = sum(r.total for r in readers)
    show = progress and total >= _PROGRESS_MIN_BYTES
    if parallel is None:
        # Forking a process that runs other threads (a Prefect worker, say) can copy a lock
        # that one of them holds; only fork from a single-threaded process.
        parallel = (
            total >= _PARALLEL_MIN_BYTES
            and (os.cpu_count() or 1) > 1
            and threading.active_count() == 1
        )
    parallel = parallel and sys.platform == "linux"  # a forked worker shares what is loaded
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[stored]} stored, {task.fields[quarantined]} quarantined"),
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
        transient=True,
        disable=not show,
    )
    if kind == "traffic":
        warm_up()  # build Great Expectations once, before a worker forks from this process
        # The language model is not loaded here: it would cost the peak memory of a
        # one-off CLI run about 50 MB (tests/test_ingest_bounded.py) and save no time there;
        # the worker loads it on its first prompt (~0.6 s).
    stream = _forked(run, readers, size, engine) if parallel else _prepare(run, readers, size)
    tasks = [
        bar.add_task(f"ingest {r.path.name}", total=r.total, stored=0, quarantined=0)
        for r in readers
    ]
    run.result.files = [str(r.path) for r in readers]
    with bar:
        for index, prepared, done in stream:
            run.commit(prepared)
            bar.update(
                tasks[index],
                completed=done,
                stored=run.result.ingested,
                quarantined=run.result.quarantined,
            )
            if on_chunk is not None:
                on_chunk(run.result)
    run.result.seconds = time.perf_counter() - started
    return run.result
