"""Readers for input files: JSONL, CSV, Parquet and OTLP JSON traces.

Every reader yields one :class:`RawRecord` per line (per row for Parquet, per span for OTLP),
so nothing is dropped on the way in: a line that does not parse comes back with its raw text and
the reason, a blank line comes back marked as such, and bytes that are not UTF-8 are decoded with
U+FFFD replacement characters and flagged.

No input size decides memory: lines (CSV physical lines, OTLP documents) are read with a
bounded ``readline``; one longer than ``max_line_bytes`` comes back as an error record that
holds only its first bytes, its full length and its SHA-256, and is never parsed. Parquet cells
are measured in Arrow before any row becomes Python objects.

Field names are matched loosely (case, ``-``, ``_`` and spaces do not matter) and common aliases
are accepted; see :data:`TRAFFIC_ALIASES`. Fields that are not in the schema are kept in the
row's ``metadata``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, NamedTuple

import orjson

from evalwatch.files import InputFileError, check_input_file
from evalwatch.ingest import otel, traces
from evalwatch.settings import IngestSettings

__all__ = [
    "DATASET_ALIASES",
    "EXTRA_KEY",
    "FEEDBACK_ALIASES",
    "FEEDBACK_FIELDS",
    "FORMATS",
    "PREDICTION_ALIASES",
    "TRAFFIC_ALIASES",
    "TRAFFIC_FIELDS",
    "Format",
    "RawRecord",
    "SourceReader",
    "UnreadableFileError",
    "bounded_raw",
    "cut_raw",
    "detect_format",
    "normalise_keys",
    "open_source",
]

Format = Literal["auto", "jsonl", "csv", "parquet", "otlp"]
FORMATS: tuple[str, ...] = ("auto", "jsonl", "csv", "parquet", "otlp")

#: The canonical traffic row fields (see the README's data schema).
TRAFFIC_FIELDS: tuple[str, ...] = (
    "request_id",
    "timestamp",
    "app",
    "model_name",
    "model_version",
    "prompt",
    "response",
    "context",
    "reference",
    "latency_ms",
    "input_tokens",
    "output_tokens",
    "cost",
    "user_id",
    "session_id",
    "rating",
    "thumbs",
    "metadata",
)
FEEDBACK_FIELDS: tuple[str, ...] = ("request_id", "kind", "value", "timestamp", "comment")

#: Alias -> canonical traffic field. Keys are compared squashed: lower case, letters and digits.
TRAFFIC_ALIASES: dict[str, str] = {
    "id": "request_id",
    "requestid": "request_id",
    "reqid": "request_id",
    "callid": "request_id",
    "ts": "timestamp",
    "time": "timestamp",
    "datetime": "timestamp",
    "createdat": "timestamp",
    "loggedat": "timestamp",
    "application": "app",
    "appname": "app",
    "service": "app",
    "servicename": "app",
    "model": "model_name",
    "version": "model_version",
    "input": "prompt",
    "question": "prompt",
    "query": "prompt",
    "userinput": "prompt",
    "prompttext": "prompt",
    "output": "response",
    "completion": "response",
    "answer": "response",
    "generation": "response",
    "responsetext": "response",
    "contexts": "context",
    "retrievedcontext": "context",
    "documents": "context",
    "expected": "reference",
    "expectedoutput": "reference",
    "groundtruth": "reference",
    "referenceanswer": "reference",
    "latency": "latency_ms",
    "durationms": "latency_ms",
    "elapsedms": "latency_ms",
    "prompttokens": "input_tokens",
    "tokensin": "input_tokens",
    "completiontokens": "output_tokens",
    "tokensout": "output_tokens",
    "costusd": "cost",
    "price": "cost",
    "user": "user_id",
    "session": "session_id",
    "conversationid": "session_id",
    "userrating": "rating",
    "stars": "rating",
    "thumb": "thumbs",
    "meta": "metadata",
}
#: Aliases whose values are in seconds; they become milliseconds.
_SECONDS_ALIASES: dict[str, str] = {
    "latencys": "latency_ms",
    "latencyseconds": "latency_ms",
    "durations": "latency_ms",
    "duration": "latency_ms",
}
#: Alias -> canonical feedback field: the names app analytics and tracing tools log
#: (LangSmith ``run_id``/``key``/``score``, Langfuse ``traceId``/``name``, event trackers'
#: ``event_type``/``action``). What each ``kind`` means: :mod:`evalwatch.core.feedback`.
FEEDBACK_ALIASES: dict[str, str] = {
    "id": "request_id",
    "requestid": "request_id",
    "interactionid": "request_id",
    "runid": "request_id",
    "traceid": "request_id",
    "messageid": "request_id",
    "responseid": "request_id",
    "type": "kind",
    "event": "kind",
    "eventtype": "kind",
    "eventname": "kind",
    "feedbacktype": "kind",
    "action": "kind",
    "key": "kind",
    "name": "kind",
    "score": "value",
    "rating": "value",
    "seconds": "value",
    "ts": "timestamp",
    "time": "timestamp",
    "createdat": "timestamp",
    "eventtime": "timestamp",
    "text": "comment",
    "note": "comment",
    "feedbacktext": "comment",
}
DATASET_ALIASES: dict[str, str] = {
    "itemid": "id",
    "key": "id",
    "prompt": "input",
    "question": "input",
    "query": "input",
    "answer": "reference",
    "expected": "reference",
    "expectedoutput": "reference",
    "groundtruth": "reference",
    "target": "reference",
    "contexts": "context",
    "slices": "tags",
    "labels": "tags",
    "meta": "metadata",
}
PREDICTION_ALIASES: dict[str, str] = {
    "itemid": "id",
    "modelname": "model",
    "response": "output",
    "completion": "output",
    "prediction": "output",
    "answer": "output",
    "latency": "latency_ms",
    "prompttokens": "input_tokens",
    "completiontokens": "output_tokens",
}
#: Key under which :func:`normalise_keys` puts fields that are not in the schema.
EXTRA_KEY = "_extra"

_SQUASH = re.compile(r"[^0-9a-z]")
_JSON_COLUMNS = frozenset({"metadata", "meta", "tags", "slices", "labels"})
_SURROGATE = re.compile("[\udc80-\udcff]")
_BOM = b"\xef\xbb\xbf"
#: The default of ``IngestSettings.max_line_bytes`` (one fact, in the settings).
DEFAULT_MAX_LINE_BYTES: int = IngestSettings.model_fields["max_line_bytes"].default
#: Characters of a rejected row's raw text that quarantine keeps (plus its length and hash).
QUARANTINE_CHARS = 4096
# Extra text past the kept part that redaction sees, so a secret cut by the limit is found.
_REDACT_MARGIN = 512
# Read size while skipping the rest of an oversized line.
_SKIP_BYTES = 1 << 20


class UnreadableFileError(Exception):
    """A file that cannot be opened, or that is not in the format it was read as."""


class RawRecord(NamedTuple):
    """One line (row, span) of an input file, parsed or not.

    Attributes:
        line: 1-based line number (row number for Parquet; the document's line for OTLP).
        text: The line as read: text, or the undecoded bytes of a line that parsed (decoding
            them is left to :attr:`raw`, which only rejected rows need).
        value: The parsed value (usually a dict); None when ``error`` or ``skip`` is set.
        error: Why the line could not be parsed, or None.
        replaced: Whether bytes that are not UTF-8 were replaced by U+FFFD.
        skip: Why this is not a row at all (a blank line, a span that is no GenAI call).
        size: The full length in bytes of an oversized line (CSV row, Parquet cell, OTLP
            document), whose ``text`` is only its start; None otherwise.
        digest: SHA-256 (hex) of the whole oversized line, computed while skipping it.
    """

    line: int
    text: str | bytes
    value: Any
    error: str | None = None
    replaced: bool = False
    skip: str | None = None
    size: int | None = None
    digest: str | None = None

    @property
    def raw(self) -> str:
        """The line as text (without its line break)."""
        text = self.text
        if isinstance(text, bytes):
            return text.rstrip(b"\r\n").decode("utf-8", "replace")
        return text


def _squash(key: str) -> str:
    return _SQUASH.sub("", key.lower())


def normalise_keys(
    obj: Mapping[str, Any],
    fields: Sequence[str] = TRAFFIC_FIELDS,
    aliases: Mapping[str, str] = TRAFFIC_ALIASES,
) -> dict[str, Any]:
    """Rename fields to their canonical names; fields not in the schema go under ``_extra``.

    A canonical name beats an alias for the same field; the alias then goes under ``_extra``.

    Args:
        obj: A parsed row.
        fields: Canonical field names.
        aliases: Squashed alias -> canonical field.

    Returns:
        The row keyed by canonical names (plus ``_extra`` when there were unknown fields).

    Examples:
        >>> normalise_keys({"Input": "hi", "completion": "yo", "team": "a"})
        {'prompt': 'hi', 'response': 'yo', '_extra': {'team': 'a'}}
        >>> normalise_keys({"latency_s": 1.5})
        {'latency_ms': 1500.0}
    """
    if obj.keys() <= _field_set(tuple(fields)):  # the common case: already canonical
        return obj if type(obj) is dict else dict(obj)
    by_squashed = {_squash(f): f for f in fields}
    out: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    pending: list[tuple[str, str, Any]] = []
    for key, value in obj.items():
        if key in fields:
            out[key] = value
            continue
        sq = _squash(str(key))
        if sq in by_squashed:
            pending.append((by_squashed[sq], key, value))
        elif sq in aliases and aliases[sq] in fields:
            pending.append((aliases[sq], key, value))
        elif sq in _SECONDS_ALIASES and _SECONDS_ALIASES[sq] in fields:
            scaled = value * 1000.0 if _is_number(value) else value
            pending.append((_SECONDS_ALIASES[sq], key, scaled))
        else:
            extra[str(key)] = value
    for field, key, value in pending:
        if field in out:
            extra[str(key)] = value
        else:
            out[field] = value
    if extra:
        out[EXTRA_KEY] = extra
    return out


@lru_cache(maxsize=16)
def _field_set(fields: tuple[str, ...]) -> frozenset[str]:
    return frozenset(fields)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _fix_surrogates(text: str) -> tuple[str, bool]:
    """Undo ``surrogateescape``: invalid bytes become U+FFFD, and say whether there were any."""
    if not _SURROGATE.search(text):
        return text, False
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace"), True


def _parse_json(line: bytes) -> tuple[str, Any, str | None, bool]:
    """(text, value, error, replaced) for one JSON line."""
    try:
        value = orjson.loads(line)
        return line.decode("utf-8"), value, None, False
    except orjson.JSONDecodeError:
        pass
    try:
        text = line.decode("utf-8")
        replaced = False
    except UnicodeDecodeError:
        text = line.decode("utf-8", "replace")
        replaced = True
    try:
        # The standard library also reads what orjson refuses (NaN, huge integers).
        value = json.loads(text)
    except ValueError as exc:
        return text, None, f"malformed JSON ({exc})", replaced
    except RecursionError:
        return text, None, "malformed JSON (nested too deeply)", replaced
    try:
        orjson.dumps(value)
    except TypeError as exc:
        if "surrogates" in str(exc):  # "\ud800" escapes decode to text no database stores
            return text, None, "malformed JSON (lone surrogate escape)", replaced
    return text, value, None, replaced


def bounded_raw(rec: RawRecord) -> tuple[str, str, int]:
    """What quarantine may keep of a rejected record: (start of its text, SHA-256, length).

    The start is :data:`QUARANTINE_CHARS` characters plus a margin for redaction to see whole
    secrets (:func:`cut_raw` trims it after masking); the hash and length are of the whole
    raw row, so a giant row is never held or stored whole.

    Examples:
        >>> head, digest, size = bounded_raw(RawRecord(1, "x" * 10_000, None, "bad"))
        >>> len(head) < 10_000, size, len(digest)
        (True, 10000, 64)
    """
    if rec.digest is not None:
        return rec.raw, rec.digest, rec.size or 0
    raw = rec.raw
    digest = hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()
    return raw[: QUARANTINE_CHARS + _REDACT_MARGIN], digest, len(raw)


def cut_raw(head: str, size: int, unit: str = "characters") -> str:
    """The stored raw text: at most :data:`QUARANTINE_CHARS` of ``head``, and a note when cut.

    Args:
        head: The (masked) start of the raw row.
        size: The whole raw row's length.
        unit: What ``size`` counts.

    Examples:
        >>> cut_raw("abc", 3)
        'abc'
        >>> cut_raw("a" * 5000, 9_000_000).endswith("[cut: first 4096 of 9000000 characters]")
        True
    """
    if size <= QUARANTINE_CHARS and len(head) <= QUARANTINE_CHARS:
        return head
    return f"{head[:QUARANTINE_CHARS]}… [cut: first {QUARANTINE_CHARS} of {size} {unit}]"


def _oversized(
    fh: Any, n: int, start: bytes, what: str, cap: int
) -> tuple[RawRecord, int]:
    """The error record of a line longer than ``cap`` whose first ``start`` bytes were read.

    Reads on to the end of the line in bounded pieces, hashing and counting, without keeping
    more than the start. Returns the record and how many more bytes were read.
    """
    digest = hashlib.sha256()
    size = 0
    more = 0
    piece = start
    while True:
        end = piece.endswith(b"\n")
        body = piece.rstrip(b"\r\n") if end else piece
        digest.update(body)
        size += len(body)
        if end:
            break
        piece = fh.readline(_SKIP_BYTES)
        if not piece:
            break
        more += len(piece)
    head = start[: QUARANTINE_CHARS + _REDACT_MARGIN].decode("utf-8", "replace")
    why = f"{what}: longer than {cap} bytes ({size} bytes)"
    return RawRecord(n, head, None, why, size=size, digest=digest.hexdigest()), more


def _oversized_file(fh: Any, cap: int) -> RawRecord:
    """The error record of a whole document longer than ``cap``, read in bounded pieces."""
    digest = hashlib.sha256()
    head = fh.read(QUARANTINE_CHARS + _REDACT_MARGIN)
    digest.update(head)
    size = len(head)
    while piece := fh.read(_SKIP_BYTES):
        digest.update(piece)
        size += len(piece)
    why = f"document: longer than {cap} bytes ({size} bytes)"
    text = head.decode("utf-8", "replace")
    return RawRecord(1, text, None, why, size=size, digest=digest.hexdigest())


def _too_long(line: bytes, cap: int) -> bool:
    """Whether a line read with ``readline(cap + 2)`` is longer than ``cap`` (break excluded)."""
    return len(line) > cap and len(line.rstrip(b"\r\n")) > cap


class SourceReader:
    r"""Iterates the records of one input file and tracks how far it got (for progress bars).

    Args:
        path: The file.
        fmt: Its format (``auto`` detects it from the name and the first bytes).
        max_line_bytes: The longest line (CSV line, Parquet cell, OTLP document) read; a
            longer one becomes an error record holding only its start, length and hash.

    Raises:
        UnreadableFileError: If the file does not exist or cannot be read.

    Examples:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "t.jsonl"
        >>> _ = p.write_text('{"prompt": "hi"}\n\nnot json\n')
        >>> [(r.line, r.value, r.error is not None, r.skip) for r in SourceReader(p)]
        [(1, {'prompt': 'hi'}, False, None), (2, None, False, 'blank line'), (3, None, True, None)]
    """

    def __init__(
        self,
        path: str | Path,
        fmt: Format | str = "auto",
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> None:
        self.path = Path(path)
        self.max_line_bytes = max(1, max_line_bytes)
        if fmt not in FORMATS:
            raise UnreadableFileError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
        try:
            check_input_file(self.path)  # before opening: a FIFO would block the read
        except InputFileError as exc:
            raise UnreadableFileError(str(exc)) from None
        try:
            self.total = self.path.stat().st_size
            with self.path.open("rb") as fh:
                head = fh.read(65_536)
        except OSError as exc:
            raise UnreadableFileError(f"{self.path}: {exc.strerror or exc}") from exc
        self.fmt: str = detect_format(self.path, head) if fmt == "auto" else fmt
        if self.fmt == "parquet":
            # Read the footer now, so a file that is no Parquet fails before anything is stored.
            self._parquet_file()
        #: Progress so far, in the unit of ``total`` (bytes; rows for Parquet).
        self.done = 0

    def _parquet_file(self) -> Any:
        """The opened ``pyarrow.parquet.ParquetFile``, or UnreadableFileError."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(self.path)
        except (pa.ArrowException, OSError) as exc:
            # pyarrow's first sentence says what is wrong; the rest is advice about corruption.
            why = str(exc).split(". ")[0].rstrip(".")
            raise UnreadableFileError(f"{self.path}: not a readable Parquet file ({why})") from exc

    def __iter__(self) -> Iterator[RawRecord]:
        try:
            if self.fmt == "jsonl":
                yield from self._jsonl()
            elif self.fmt == "csv":
                yield from self._csv()
            elif self.fmt == "parquet":
                yield from self._parquet()
            else:
                yield from self._otlp()
        except OSError as exc:
            raise UnreadableFileError(f"{self.path}: {exc.strerror or exc}") from exc

    def _jsonl(self) -> Iterator[RawRecord]:
        loads = orjson.loads
        cap = self.max_line_bytes
        limit = cap + 2  # room for the line break
        with self.path.open("rb") as fh:
            readline = fh.readline
            n = 0
            while line := readline(limit):
                n += 1
                self.done += len(line)
                if len(line) > cap and _too_long(line, cap):
                    rec, more = _oversized(fh, n, line, "line", cap)
                    self.done += more
                    yield rec
                    continue
                try:
                    # The common case: one valid UTF-8 JSON line, taken as is.
                    yield RawRecord(n, line, loads(line))
                    continue
                except orjson.JSONDecodeError:
                    pass
                if n == 1 and line.startswith(_BOM):
                    line = line[len(_BOM) :]
                line = line.rstrip(b"\r\n")
                if not line.strip():
                    yield RawRecord(n, line.decode("utf-8", "replace"), None, skip="blank line")
                    continue
                text, value, error, replaced = _parse_json(line)
                yield RawRecord(n, text, value, error, replaced)

    def _csv(self) -> Iterator[RawRecord]:
        cap = self.max_line_bytes
        if csv.field_size_limit() < cap:
            csv.field_size_limit(cap)  # a field up to the cap is read; a longer one is an error
        with self.path.open("rb") as binary:
            lines = _CsvLines(binary, cap)
            dialect: type[csv.Dialect] = (
                csv.excel_tab if self.path.suffix.lower() == ".tsv" else csv.excel
            )
            reader = csv.reader(lines, dialect)
            header: list[str] | None = None
            while True:
                try:
                    cells = next(reader)
                except StopIteration:
                    break
                except (_RowTooLong, csv.Error) as exc:
                    # The row is given up; a fresh parser starts after its end.
                    reader = csv.reader(lines, dialect)
                    if isinstance(exc, _RowTooLong):
                        rec = exc.record
                    elif "field limit" in str(exc):
                        rec = lines.give_up(f"field: longer than {cap} characters")
                    else:
                        rec = lines.give_up(f"malformed CSV row ({exc})")
                    self.done = lines.done
                    if header is None:
                        # A header that cannot be read: the file cannot be read as CSV.
                        raise UnreadableFileError(
                            f"{self.path}: unreadable CSV header ({rec.error})"
                        ) from None
                    yield rec
                    continue
                first_line = lines.start
                lines.mark()
                self.done = lines.done
                fixed = [_fix_surrogates(c) for c in cells]
                values = [c for c, _ in fixed]
                replaced = any(r for _, r in fixed)
                raw = _csv_line(values, dialect)
                if header is None:
                    if not any(v.strip() for v in values):
                        continue
                    header = [v.strip() for v in values]
                    continue
                if not any(v.strip() for v in values):
                    yield RawRecord(first_line, raw, None, skip="blank line", replaced=replaced)
                    continue
                if len(values) > len(header):
                    yield RawRecord(
                        first_line,
                        raw,
                        None,
                        f"malformed CSV row ({len(values)} fields, header has {len(header)})",
                        replaced,
                    )
                    continue
                row: dict[str, Any] = {}
                for key, value in zip(header, values, strict=False):
                    row[key] = _csv_value(key, value)
                yield RawRecord(first_line, raw, row, None, replaced)

    def _parquet(self) -> Iterator[RawRecord]:
        import pyarrow as pa

        pf = self._parquet_file()
        self.total = pf.metadata.num_rows
        n = 0
        try:
            for batch in pf.iter_batches(batch_size=5_000):
                batch, big = _drop_big_cells(batch, self.max_line_bytes)
                for i, row in enumerate(batch.to_pylist()):
                    n += 1
                    if i in big:
                        yield big[i]._replace(line=n)
                        continue
                    clean = {k: _parquet_value(k, v) for k, v in row.items()}
                    raw = orjson.dumps(clean, default=str, option=orjson.OPT_NON_STR_KEYS)
                    yield RawRecord(n, raw.decode(), clean)
                self.done = n
        except (pa.ArrowException, OSError) as exc:
            # A damaged page behind an intact footer: pyarrow raises OSError or ArrowInvalid.
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UnreadableFileError(
                f"{self.path}: Parquet read failed at row {n + 1} ({why})"
            ) from exc

    def _otlp(self) -> Iterator[RawRecord]:
        cap = self.max_line_bytes
        with self.path.open("rb") as fh:
            first = fh.readline(cap + 2)
            fh.seek(0)
            # One export request per line (the collector's file exporter), or one document.
            per_line = _too_long(first, cap) or _parses_as_object(first)
            if not per_line and self.total > cap:
                # One document too large to load: refused without reading it into memory.
                rec = _oversized_file(fh, cap)
                self.done = self.total
                yield rec
                return
            docs: Iterator[tuple[int, bytes]] = (
                _bounded_lines(fh, cap) if per_line else iter([(1, fh.read())])
            )
            out: list[tuple[int, int, RawRecord]] = []
            traces: dict[str, list[tuple[int, int, Any, Any, bool]]] = {}
            seq = 0
            for n, blob in docs:
                seq += 1
                if isinstance(blob, RawRecord):
                    self.done = fh.tell()
                    out.append((n, seq, blob))
                    continue
                self.done += len(blob)
                if n == 1 and blob.startswith(_BOM):
                    blob = blob[len(_BOM) :]
                if not blob.strip():
                    out.append((n, seq, RawRecord(n, "", None, skip="blank line")))
                    continue
                text, doc, error, replaced = _parse_json(blob.strip())
                if error is not None:
                    out.append((n, seq, RawRecord(n, text, None, error, replaced)))
                    continue
                try:
                    spans = list(otel.iter_spans(doc))
                except ValueError as exc:
                    out.append((n, seq, RawRecord(n, text, None, str(exc), replaced)))
                    continue
                except (AttributeError, TypeError):
                    why = "malformed OTLP document"
                    out.append((n, seq, RawRecord(n, text, None, why, replaced)))
                    continue
                for resource, _scope, span in spans:
                    try:
                        key = otel.span_id_hex(span.get("traceId"), 16) or ""
                    except (AttributeError, TypeError):
                        key = ""
                    seq += 1
                    if not key:
                        out.append((n, seq, _otlp_span_record(n, resource, span, replaced)))
                    else:
                        traces.setdefault(key, []).append((n, seq, resource, span, replaced))
        # A trace's spans may be spread over the file (one export request per batch, in any
        # order), so they are grouped here and each trace becomes its records at the end; the
        # records come out in the order of their first span.
        for group in traces.values():
            out.extend(_otlp_trace_records(group))
        out.sort(key=lambda item: (item[0], item[1]))
        for _, _, rec in out:
            yield rec


def _otlp_span_record(n: int, resource: Any, span: Any, replaced: bool) -> RawRecord:
    """One span as its own row (the one-span-one-row mapping of :func:`otel.span_to_row`)."""
    raw = orjson.dumps(span, option=orjson.OPT_NON_STR_KEYS).decode()
    try:
        row = otel.span_to_row(span, resource)
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        return RawRecord(n, raw, None, f"malformed OTLP span ({exc})", replaced)
    if row is None:
        return RawRecord(n, raw, None, skip="not a GenAI span", replaced=replaced)
    return RawRecord(n, raw, row, None, replaced)


def _otlp_trace_records(
    group: Sequence[tuple[int, int, Any, Any, bool]],
) -> list[tuple[int, int, RawRecord]]:
    """The records of one trace's spans: one per interaction (see :mod:`ingest.traces`).

    A trace of one parentless span that is no agent invocation keeps the one-span-one-row
    mapping, so single calls ingest as they always have (repeats of it stay repeats).
    """
    first_line, first_seq = group[0][0], group[0][1]
    replaced = any(item[4] for item in group)
    try:
        span_ids = {otel.span_id_hex(item[3].get("spanId"), 8) for item in group}
        single = len(span_ids) == 1 and all(not item[3].get("parentSpanId") for item in group)
        if single:
            attrs = otel.attributes(group[0][3].get("attributes"))
            single = traces.span_kind(group[0][3].get("name"), attrs) != "agent"
    except (AttributeError, TypeError, KeyError):
        single = True  # let the per-span path name what is wrong
    if single:
        return [(n, seq, _otlp_span_record(n, res, span, rep)) for n, seq, res, span, rep in group]
    raw = orjson.dumps([item[3] for item in group], option=orjson.OPT_NON_STR_KEYS).decode()
    try:
        rows = traces.trace_rows([(item[2], item[3]) for item in group])
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        why = f"malformed OTLP span ({exc})"
        return [(first_line, first_seq, RawRecord(first_line, raw, None, why, replaced))]
    if not rows:
        return [
            (n, seq, RawRecord(n, orjson.dumps(span).decode(), None, None, rep, "not a GenAI span"))
            for n, seq, _res, span, rep in group
        ]
    return [(first_line, first_seq, RawRecord(first_line, raw, r, None, replaced)) for r in rows]


class _RowTooLong(Exception):
    """A CSV row over the cap (raised through ``csv.reader``, which then restarts)."""

    def __init__(self, record: RawRecord) -> None:
        super().__init__(record.error)
        self.record = record


class _CsvLines:
    """The lines of a CSV file for ``csv.reader``, each read with a bounded readline.

    Decoding is ``TextIOWrapper(encoding="utf-8-sig", errors="surrogateescape", newline="")``
    (so CR, LF and CRLF all end lines), read ``cap + 2`` characters at
    most at a time. The current row's start, size, SHA-256 and quote count are tracked, so a
    row given up half-way (a line or a field over the cap) can be skipped to its real end
    (where its quotes balance) and quarantined with its length and hash, without holding it.
    """

    def __init__(self, binary: Any, cap: int) -> None:
        self._binary = binary
        text = io.TextIOWrapper(binary, encoding="utf-8-sig", errors="surrogateescape", newline="")
        self._readline = text.readline
        self._cap = cap
        self.count = 0  # physical lines read
        self.mark()

    @property
    def done(self) -> int:
        """Bytes read so far."""
        return int(self._binary.tell())

    def mark(self) -> None:
        """Start a new row after the line last read."""
        self.start = self.count + 1
        self._head = ""
        self._size = 0
        self._quotes = 0
        self._digest = hashlib.sha256()

    def _take(self, piece: str) -> None:
        if len(self._head) < QUARANTINE_CHARS + _REDACT_MARGIN:
            self._head += piece[: QUARANTINE_CHARS + _REDACT_MARGIN].rstrip("\r\n")
        data = piece.encode("utf-8", "surrogateescape")
        self._size += len(data)
        self._quotes += piece.count('"')
        self._digest.update(data)

    def __iter__(self) -> _CsvLines:
        return self

    def __next__(self) -> str:
        line = self._readline(self._cap + 2)
        if not line:
            raise StopIteration
        self.count += 1
        self._take(line)
        if len(line) > self._cap and len(line.rstrip("\r\n")) > self._cap:
            # Skip the rest of this line in pieces, then the rest of its row.
            while not line.endswith(("\n", "\r")) and (line := self._readline(_SKIP_BYTES)):
                self._take(line)
            raise _RowTooLong(self.give_up(f"line: longer than {self._cap} characters"))
        if self._size > self._cap:
            # A quoted field spanning lines has grown past the cap. Checked here, not left to
            # csv.field_size_limit, which is process-wide and may have been raised by a reader
            # with a larger cap.
            raise _RowTooLong(self.give_up(f"field: longer than {self._cap} characters"))
        return line

    def give_up(self, why: str) -> RawRecord:
        """Skip to the end of the current row (quotes balanced) and return its error record."""
        line = "\n"
        while self._quotes % 2 and (line := self._readline(_SKIP_BYTES)):
            if line.endswith(("\n", "\r")) or len(line) < _SKIP_BYTES:
                self.count += 1
            self._take(line)
        size = self._size
        head, _ = _fix_surrogates(self._head)
        rec = RawRecord(
            self.start, head, None, f"{why} ({size} bytes)", size=size,
            digest=self._digest.hexdigest(),
        )
        self.mark()
        return rec


def _drop_big_cells(batch: Any, cap: int) -> tuple[Any, dict[int, RawRecord]]:
    """The batch with text/binary cells longer than ``cap`` bytes nulled, and those rows' records.

    Cell sizes are measured in Arrow, so an oversized value never becomes a Python object;
    its row comes back as an error record with the cell's start, size and SHA-256.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    big: dict[int, RawRecord] = {}
    columns = list(batch.columns)
    for c, (name, column) in enumerate(zip(batch.schema.names, columns, strict=True)):
        kind = column.type
        if not (
            pa.types.is_string(kind) or pa.types.is_large_string(kind)
            or pa.types.is_binary(kind) or pa.types.is_large_binary(kind)
        ):
            continue
        too_long = pc.greater(pc.binary_length(column), cap)
        if not pc.any(too_long).as_py():
            continue
        for i in pc.indices_nonzero(too_long).to_pylist():
            buf = column[i].as_buffer()  # no copy of the value
            size = buf.size
            head = bytes(buf[: QUARANTINE_CHARS + _REDACT_MARGIN]).decode("utf-8", "replace")
            why = f"{name}: longer than {cap} bytes ({size} bytes)"
            if i not in big:
                digest = hashlib.sha256(memoryview(buf)).hexdigest()
                big[i] = RawRecord(0, head, None, why, size=size, digest=digest)
        columns[c] = pc.if_else(too_long, pa.scalar(None, kind), column)
    if big:
        batch = pa.RecordBatch.from_arrays(columns, schema=batch.schema)
    return batch, big


def _bounded_lines(fh: Any, cap: int) -> Iterator[tuple[int, Any]]:
    """(line number, line) of a file, read with a bounded readline.

    An oversized line comes as its error record instead of its bytes.
    """
    n = 0
    while line := fh.readline(cap + 2):
        n += 1
        if len(line) > cap and _too_long(line, cap):
            yield n, _oversized(fh, n, line, "line", cap)[0]
        else:
            yield n, line


def _parses_as_object(line: bytes) -> bool:
    try:
        return isinstance(orjson.loads(line.strip().lstrip(_BOM) or b"null"), dict)
    except orjson.JSONDecodeError:
        return False


def _csv_line(values: Sequence[str], dialect: type[csv.Dialect]) -> str:
    buf = io.StringIO()
    csv.writer(buf, dialect, lineterminator="").writerow(values)
    return buf.getvalue()


def _json_cell(key: str, value: str) -> Any:
    # Tables keep free-form fields (metadata, tags) as JSON text; decode what looks like it.
    stripped = value.strip()
    if stripped[:1] in ("{", "[") and _squash(key) in _JSON_COLUMNS:
        try:
            return json.loads(stripped)
        except ValueError:
            return value
    return value


def _csv_value(key: str, value: str) -> Any:
    # CSV has only text: an empty cell is a missing value. Numbers stay text; validation
    # reads numeric text.
    if value == "":
        return None
    return _json_cell(key, value)


def _parquet_value(key: str, value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, str):
        return _json_cell(key, value)
    return value


def detect_format(path: Path, head: bytes) -> str:
    """The format of a file from its name and first bytes.

    Args:
        path: The file's path (the suffix decides CSV and Parquet).
        head: Its first bytes.

    Returns:
        ``jsonl``, ``csv``, ``parquet`` or ``otlp`` (a JSON file whose head mentions
        ``resourceSpans``).

    Examples:
        >>> detect_format(Path("t.json"), b'{"resourceSpans": []}')
        'otlp'
        >>> detect_format(Path("x.csv"), b"")
        'csv'

    """
    suffix = path.suffix.lower()
    if head.startswith(b"PAR1") or suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".csv", ".tsv"):
        return "csv"
    if b'"resourceSpans"' in head or b'"resource_spans"' in head:
        return "otlp"
    return "jsonl"


def open_source(path: str | Path, fmt: Format | str = "auto") -> SourceReader:
    """A reader for one input file (see :class:`SourceReader`).

    Examples:
        >>> try:
        ...     open_source("missing.jsonl")
        ... except UnreadableFileError as exc:
        ...     print(exc)
        missing.jsonl does not exist
    """
    return SourceReader(path, fmt)
