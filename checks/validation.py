"""Validation of ingested rows, chunk by chunk, with Great Expectations.

Two steps, each giving every reason a row fails (a row is rejected with all of them):

1. :func:`coerce_traffic` / :func:`coerce_feedback` read each parsed row into typed values.
   They catch what a DataFrame cannot show: a line that is not a JSON object, a text field
   holding a number, a count holding ``"fast"``, a timestamp that does not parse.
2. :func:`validate_traffic_rows` / :func:`validate_feedback_rows` put the chunk in a pandas
   DataFrame and validate it with one Great Expectations suite: required fields present, text
   lengths within bounds, timestamps not in the future, rating within its scale, latency,
   tokens and cost non-negative, request ids unique. ``COMPLETE`` results give the failing row
   indexes, which become per-row reasons.

The Great Expectations context is ephemeral, built once per process and reused; each chunk is
one batch validated against one suite, with progress bars off.

Reasons read ``"<field>: <problem>"`` with an optional `` (<detail>)``; :func:`reason_key` strips
the detail so reasons can be counted.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import pandas as pd

from evalwatch.core.feedback import FEEDBACK_KIND_NAMES, canonical_kind, feedback_kind
from evalwatch.settings import IngestSettings

__all__ = [
    "FEEDBACK_KINDS",
    "MAX_ID_CHARS",
    "MAX_INT",
    "REQUIRED_TRAFFIC_FIELDS",
    "Coerced",
    "ValidationEngineError",
    "coerce_feedback",
    "coerce_traffic",
    "parse_timestamp",
    "reason_key",
    "validate_feedback",
    "validate_feedback_rows",
    "validate_traffic",
    "validate_traffic_rows",
    "warm_up",
]

#: Fields every traffic row must have.
REQUIRED_TRAFFIC_FIELDS: tuple[str, ...] = (
    "timestamp",
    "app",
    "model_name",
    "model_version",
    "prompt",
    "response",
)
#: Kinds of feedback event (what each means: :mod:`evalwatch.core.feedback`).
FEEDBACK_KINDS: tuple[str, ...] = FEEDBACK_KIND_NAMES

_EXTRA_KEY = "_extra"  # where ingest.readers.normalise_keys puts unknown fields
#: Longest identifier (request id, app, model name and version) the store holds.
MAX_ID_CHARS = 200
#: Largest token count the store holds (a 32-bit integer column).
MAX_INT = 2_147_483_647
# Identifier-like fields: numbers are read as their text, blank text counts as missing.
_ID_FIELDS = ("request_id", "user_id", "session_id", "model_version")
_ID_NAME_FIELDS = ("request_id", "user_id", "session_id", "model_version", "app", "model_name")
_TEXT_FIELDS = ("prompt", "response", "reference")
_FLOAT_FIELDS = ("latency_ms", "cost")
_INT_FIELDS = ("input_tokens", "output_tokens", "rating")
_THUMBS = {"up": "up", "down": "down", "true": "up", "false": "down", "+1": "up", "-1": "down"}


class ValidationEngineError(RuntimeError):
    """Great Expectations could not evaluate an expectation (a bug, not bad data)."""


@dataclass
class Coerced:
    """Typed rows of one chunk, with the reasons found while reading them.

    Attributes:
        rows: One typed row per input (None where the input was not an object).
        reasons: Per input row, every problem found so far.
        bad_fields: Per input row, the fields whose value had the wrong type; the "missing"
            check does not repeat those.
    """

    rows: list[dict[str, Any] | None]
    reasons: list[list[str]]
    bad_fields: list[set[str]] = field(default_factory=list)


def reason_key(reason: str) -> str:
    """A reason without its detail, for counting.

    Examples:
        >>> reason_key("timestamp: not ISO-8601 ('yesterday')")
        'timestamp: not ISO-8601'
    """
    return reason.split(" (", 1)[0]


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def parse_timestamp(value: Any) -> datetime | str:
    """An aware UTC datetime, or the reason the value is not one.

    ISO-8601 text (``Z`` or an offset; no zone means UTC) and datetime objects are accepted.

    Examples:
        >>> parse_timestamp("2026-11-01T10:00:00Z")
        datetime.datetime(2026, 11, 1, 10, 0, tzinfo=datetime.timezone.utc)
        >>> parse_timestamp("yesterday")
        "not ISO-8601 ('yesterday')"
    """
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.strip())
        except ValueError:
            return f"not ISO-8601 ({_short(value)})"
    else:
        return f"expected an ISO-8601 string, got {_type_name(value)}"
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def _as_float(value: Any) -> float | str:
    if isinstance(value, bool):
        return "expected a number, got boolean"
    if isinstance(value, int | float):
        f = float(value)
    elif isinstance(value, str):
        try:
            f = float(value.strip())
        except ValueError:
            return f"expected a number ({_short(value)})"
    else:
        return f"expected a number, got {_type_name(value)}"
    if not math.isfinite(f):
        return f"not a finite number ({_short(value)})"
    return f


def _as_int(value: Any) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    f = _as_float(value)
    if isinstance(f, str):
        return f.replace("a number", "an integer")
    if not f.is_integer():
        return f"expected an integer ({_short(value)})"
    return int(f)


def _str_problem(name: str, v: str, limit: int | None) -> str | None:
    if "\x00" in v:
        return f"{name}: contains NUL characters"
    if limit is not None and len(v) > limit:
        return f"{name}: longer than {limit} characters"
    return None


def _read_text(
    name: str, v: Any, why: list[str], bad: set[str], expected: str = "a string"
) -> str | None:
    """A text field's value, or None with its problem noted (not text, NUL characters)."""
    if v is None:
        return None
    if not isinstance(v, str):
        bad.add(name)
        why.append(f"{name}: expected {expected}, got {_type_name(v)}")
        return None
    if "\x00" in v:
        bad.add(name)
        why.append(f"{name}: contains NUL characters")
        return None
    return v


def _read_timestamp(v: Any, why: list[str], bad: set[str]) -> datetime | None:
    """The ``timestamp`` field as an aware UTC datetime, or None with its problem noted."""
    if v is None:
        return None
    ts = parse_timestamp(v)
    if isinstance(ts, str):
        bad.add("timestamp")
        why.append(f"timestamp: {ts}")
        return None
    return ts


def _fast_traffic_row(value: dict[str, Any]) -> dict[str, Any] | None:
    """The typed row for a row whose every field already has its plain type, else None.

    Most rows of a real log are like that; anything else goes the long way, which gives the
    same row for these and the reasons for the rest.
    """
    get = value.get
    rid, app, name, version = get("request_id"), get("app"), get("model_name"), get(
        "model_version"
    )
    user, session = get("user_id"), get("session_id")
    for ident in (app, name, version):
        if (
            type(ident) is not str or not ident or len(ident) > MAX_ID_CHARS
            or ident.isspace() or "\x00" in ident
        ):
            return None
    for ident in (rid, user, session):
        if ident is not None and (
            type(ident) is not str or not ident or len(ident) > MAX_ID_CHARS
            or ident.isspace() or "\x00" in ident
        ):
            return None
    prompt, response, context, reference = (
        get("prompt"), get("response"), get("context"), get("reference")
    )
    if type(prompt) is not str or type(response) is not str or "\x00" in prompt or (
        "\x00" in response
    ):
        return None
    for text in (context, reference):
        if text is not None and (type(text) is not str or "\x00" in text):
            return None
    latency, cost = get("latency_ms"), get("cost")
    for number in (latency, cost):
        if number is not None and (
            (type(number) is not float and type(number) is not int) or not math.isfinite(number)
        ):
            return None
    tin, tout, rating = get("input_tokens"), get("output_tokens"), get("rating")
    for count in (tin, tout, rating):
        if count is not None and (type(count) is not int or abs(count) > MAX_INT):
            return None
    thumbs, meta, stamp = get("thumbs"), get("metadata"), get("timestamp")
    if (thumbs is not None and thumbs not in ("up", "down")) or (
        meta is not None and type(meta) is not dict
    ) or type(stamp) is not str or _EXTRA_KEY in value:
        return None
    try:
        ts = datetime.fromisoformat(stamp.strip())
    except ValueError:
        return None
    ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    return {
        "request_id": rid,
        "user_id": user,
        "session_id": session,
        "model_version": version,
        "app": app,
        "model_name": name,
        "prompt": prompt,
        "response": response,
        "reference": reference,
        "context": context,
        "latency_ms": float(latency) if latency is not None else None,
        "cost": float(cost) if cost is not None else None,
        "input_tokens": tin,
        "output_tokens": tout,
        "rating": rating,
        "thumbs": thumbs,
        "ts": ts,
        "metadata": dict(meta) if meta is not None else None,
    }


def _coerce_each(
    values: Sequence[Any],
    read: Callable[[Mapping[str, Any], list[str], set[str]], dict[str, Any]],
    fast: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None,
) -> Coerced:
    """Type every row with ``read`` (``fast`` first, where given); non-objects are rejected.

    ``read`` appends each problem to the row's reasons and each wrongly typed field to its
    bad fields, and returns the typed row.
    """
    rows: list[dict[str, Any] | None] = []
    reasons: list[list[str]] = []
    bad_fields: list[set[str]] = []
    for value in values:
        fast_row = fast(value) if fast is not None and type(value) is dict else None
        if fast_row is not None:
            rows.append(fast_row)
            reasons.append([])
            bad_fields.append(set())
            continue
        why: list[str] = []
        bad: set[str] = set()
        if not isinstance(value, Mapping):
            rows.append(None)
            reasons.append([f"row: expected an object, got {_type_name(value)}"])
        else:
            rows.append(read(value, why, bad))
            reasons.append(why)
        bad_fields.append(bad)
    return Coerced(rows, reasons, bad_fields)


def coerce_traffic(values: Sequence[Any]) -> Coerced:
    """Read parsed traffic rows (canonical keys) into typed values, noting every type problem.

    Besides types this checks what the store cannot hold: identifiers longer than
    :data:`MAX_ID_CHARS`, NUL characters in text, token counts beyond a 32-bit integer.

    Args:
        values: Parsed rows, keyed as :func:`evalwatch.ingest.readers.normalise_keys` returns them;
            anything that is not a dict is rejected as a whole.

    Returns:
        Typed rows (``ts`` is an aware datetime; ``metadata`` includes unknown fields) and the
        reasons found per row.

    Examples:
        >>> c = coerce_traffic([{"prompt": 3, "latency_ms": "12.5", "rating": "4"}, [1]])
        >>> c.rows[0]["latency_ms"], c.rows[0]["rating"], c.reasons[0]
        (12.5, 4, ['prompt: expected a string, got number'])
        >>> c.reasons[1]
        ['row: expected an object, got array']
    """
    return _coerce_each(values, _read_traffic, _fast_traffic_row)


def _read_traffic(value: Mapping[str, Any], why: list[str], bad: set[str]) -> dict[str, Any]:
    """The typed traffic row of one object, noting problems in ``why`` and ``bad``."""
    get = value.get
    row: dict[str, Any] = {}
    _read_ids(get, row, why, bad)
    for name in _TEXT_FIELDS:
        row[name] = _read_text(name, get(name), why, bad)
    v = get("context")
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        v = "\n\n".join(v)  # retrieved passages, one after another
    row["context"] = _read_text("context", v, why, bad, "a string or a list of strings")
    _read_numbers(get, row, why, bad)
    row["thumbs"] = _read_thumbs(get("thumbs"), why, bad)
    row["ts"] = _read_timestamp(get("timestamp"), why, bad)
    row["metadata"] = _read_metadata(get("metadata"), get(_EXTRA_KEY), why, bad)
    return row


def _read_ids(
    get: Callable[[str], Any], row: dict[str, Any], why: list[str], bad: set[str]
) -> None:
    """Identifiers and names into ``row``: text (numbers read as text); blank counts as missing."""
    for name in _ID_NAME_FIELDS:
        v = get(name)
        t = type(v)
        if v is None:
            row[name] = None
            continue
        if t is int and name in _ID_FIELDS:
            v = str(v)
        elif t is not str:
            row[name] = None
            bad.add(name)
            why.append(f"{name}: expected a string, got {_type_name(v)}")
            continue
        if not v or v.isspace():
            row[name] = None
            continue
        if len(v) > MAX_ID_CHARS or "\x00" in v:
            bad.add(name)
            why.append(_str_problem(name, v, MAX_ID_CHARS))  # type: ignore[arg-type]
            v = None
        row[name] = v


def _read_numbers(
    get: Callable[[str], Any], row: dict[str, Any], why: list[str], bad: set[str]
) -> None:
    """Measurements (finite floats) and counts (integers within a 32-bit range) into ``row``."""
    isfinite = math.isfinite
    for name in _FLOAT_FIELDS:
        v = get(name)
        t = type(v)
        if v is None:
            row[name] = None
        elif (t is float or t is int) and isfinite(v):
            row[name] = float(v)
        else:
            f = _as_float(v)
            if isinstance(f, str):
                row[name] = None
                bad.add(name)
                why.append(f"{name}: {f}")
            else:
                row[name] = f
    for name in _INT_FIELDS:
        v = get(name)
        if v is None:
            row[name] = None
            continue
        n = v if type(v) is int else _as_int(v)
        if isinstance(n, str):
            row[name] = None
            bad.add(name)
            why.append(f"{name}: {n}")
        elif abs(n) > MAX_INT:
            row[name] = None
            bad.add(name)
            why.append(f"{name}: too large ({n})")
        else:
            row[name] = n


def _read_thumbs(v: Any, why: list[str], bad: set[str]) -> str | None:
    """A thumbs value as its label: a boolean is up/down, text goes through :data:`_THUMBS`."""
    if v is None:
        return None
    if isinstance(v, bool):
        return "up" if v else "down"
    if isinstance(v, str):
        return _THUMBS.get(v.strip().lower(), v)
    bad.add("thumbs")
    why.append(f"thumbs: expected 'up' or 'down', got {_type_name(v)}")
    return None


def _read_metadata(
    meta: Any, extra: Mapping[str, Any] | None, why: list[str], bad: set[str]
) -> dict[str, Any] | None:
    """The row's metadata object, with the unknown fields (``extra``) under its own keys."""
    if meta is not None and not isinstance(meta, Mapping):
        bad.add("metadata")
        why.append(f"metadata: expected an object, got {_type_name(meta)}")
        meta = None
    if extra:
        meta = {**extra, **(meta or {})}
    return dict(meta) if meta is not None else None


def coerce_feedback(values: Sequence[Any]) -> Coerced:
    """Read parsed feedback rows (canonical keys) into typed values, noting every type problem.

    A ``thumbs`` value becomes a label (``up``/``down``) and a value (1/0); a ``rating`` value
    must be an integer; a ``time_to_rate`` value must be a number of seconds; event kinds
    (``follow_up``, ``copy``, ``refinement``, ``abandon``) carry an optional value. Event
    names apps log are read as their kind (:func:`evalwatch.core.feedback.canonical_kind`:
    ``thumbs_down`` is a thumbs vote ``down``, ``time_to_rate_ms`` is milliseconds).

    Args:
        values: Parsed feedback rows (``request_id``, ``kind``, ``value``, ``timestamp``,
            ``comment``).

    Returns:
        Typed rows (``ts``, ``value`` as float or None, ``label``) and reasons per row.

    Examples:
        >>> c = coerce_feedback([{"request_id": "r1", "kind": "thumbs", "value": "up",
        ...                       "timestamp": "2026-11-01T00:00:00Z"}])
        >>> c.rows[0]["value"], c.rows[0]["label"], c.reasons
        (1.0, 'up', [[]])
    """
    return _coerce_each(values, _read_feedback)


def _read_feedback(value: Mapping[str, Any], why: list[str], bad: set[str]) -> dict[str, Any]:
    """The typed feedback row of one object, noting problems in ``why`` and ``bad``."""
    row: dict[str, Any] = {"label": None, "value": None}
    rid = value.get("request_id")
    if isinstance(rid, int) and not isinstance(rid, bool):
        rid = str(rid)
    if rid is not None and not isinstance(rid, str):
        bad.add("request_id")
        why.append(f"request_id: expected a string, got {_type_name(rid)}")
        rid = None
    if rid is not None and (problem := _str_problem("request_id", rid, MAX_ID_CHARS)):
        bad.add("request_id")
        why.append(problem)
        rid = None
    row["request_id"] = rid if rid is None or rid.strip() else None
    kind = value.get("kind")
    if kind is not None and not isinstance(kind, str):
        bad.add("kind")
        why.append(f"kind: expected a string, got {_type_name(kind)}")
        kind = None
    kind = kind.strip().lower().replace("-", "_") if isinstance(kind, str) else None
    alias = canonical_kind(kind) if kind else None
    if alias is not None:
        kind = alias.kind  # unknown names stay as they are: the in-set check reports them
    row["kind"] = kind
    raw_value = value.get("value")
    if raw_value is None and alias is not None:
        raw_value = alias.value
    if kind == "time_to_rate":
        if raw_value is not None:
            f = _as_float(raw_value)
            if isinstance(f, str):
                bad.add("value")
                why.append(f"value: {f.replace('a number', 'a number of seconds')}")
            else:
                row["value"] = f * (alias.scale if alias is not None else 1.0)
    elif kind == "thumbs":
        if isinstance(raw_value, bool):
            row["label"] = "up" if raw_value else "down"
        elif isinstance(raw_value, str):
            row["label"] = _THUMBS.get(raw_value.strip().lower(), raw_value[:64])
        elif isinstance(raw_value, int | float) and raw_value in (1, 0, -1):
            row["label"] = "up" if raw_value == 1 else "down"
        elif raw_value is not None:
            bad.add("value")
            why.append(f"value: expected 'up' or 'down', got {_type_name(raw_value)}")
        if row["label"] in ("up", "down"):
            row["value"] = 1.0 if row["label"] == "up" else 0.0
    elif kind == "rating":
        if raw_value is not None:
            n = _as_int(raw_value)
            if isinstance(n, str):
                bad.add("value")
                why.append(f"value: {n}")
            else:
                row["value"] = float(n)
    elif raw_value is not None:
        if isinstance(raw_value, str):
            row["label"] = raw_value[:64].replace("\x00", "\ufffd")
        else:
            f = _as_float(raw_value)
            if isinstance(f, str):
                bad.add("value")
                why.append(f"value: {f}")
            else:
                row["value"] = f
    row["ts"] = _read_timestamp(value.get("timestamp"), why, bad)
    row["comment"] = _read_text("comment", value.get("comment"), why, bad)
    return row


# --------------------------------------------------------------------------- Great Expectations


class _Engine:
    """The process's ephemeral Great Expectations context and its one pandas batch definition."""

    def __init__(self) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.gx = gx
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        source = self.context.data_sources.add_pandas("evalwatch_ingest")
        asset = source.add_dataframe_asset("chunk")
        self.batch_definition = asset.add_batch_definition_whole_dataframe("whole_chunk")
        self.lock = threading.Lock()

    def failures(
        self, frame: pd.DataFrame, suite: Any, parameters: Mapping[str, Any]
    ) -> list[tuple[int, str, str]]:
        """(row index, reason, field) for every failing row of every expectation."""
        with self.lock:
            batch = self.batch_definition.get_batch(batch_parameters={"dataframe": frame})
            result = batch.validate(
                suite,
                result_format={
                    "result_format": "COMPLETE",
                    "partial_unexpected_count": 0,
                    "return_unexpected_index_query": False,
                    "exclude_unexpected_values": True,
                },
                expectation_parameters=dict(parameters),
            )
        out: list[tuple[int, str, str]] = []
        for r in result.results:
            meta = r.expectation_config.meta or {}
            problem = _raised(r.exception_info)
            if problem is not None:
                raise ValidationEngineError(
                    f"expectation {r.expectation_config.type} on {meta.get('field')!r} "
                    f"could not run: {problem}"
                )
            if r.success:
                continue
            indexes = (r.result or {}).get("unexpected_index_list")
            if indexes is None:
                raise ValidationEngineError(
                    f"expectation {r.expectation_config.type} gave no failing row indexes"
                )
            out += [(int(i), str(meta["reason"]), str(meta["field"])) for i in indexes]
        return out


def _raised(info: Any) -> str | None:
    """The message of an exception Great Expectations caught, if any.

    It reports them either flat or keyed by metric, depending on where they happened.
    """
    if not isinstance(info, Mapping):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message") or "unknown error")
    for value in info.values():
        if isinstance(value, Mapping) and value.get("raised_exception"):
            return str(value.get("exception_message") or "unknown error")
    return None


@lru_cache(maxsize=1)
def _engine() -> _Engine:
    return _Engine()


def warm_up() -> None:
    """Build the Great Expectations context now (imports take seconds) instead of on first use.

    Examples:
        >>> warm_up()
    """
    _engine()


def _suite(name: str, expectations: list[Any]) -> Any:
    suite = _engine().gx.ExpectationSuite(name=name)
    for e in expectations:
        suite.add_expectation(e)
    return suite


@dataclass(frozen=True)
class _Expect:
    """One expectation of a suite, written as data.

    Attributes:
        check: Which Great Expectations expectation (a key of :data:`_GX_CHECKS`).
        column: The frame column it checks.
        field: The input field a failure is reported on.
        reason: The reason a failing row gets; ``{name}`` placeholders are filled from the
            suite's bounds.
        min: Lower bound: a number, or the name of a bound (an ``IngestSettings`` field).
        max: Upper bound, likewise; ``"latest_ts"`` is the per-chunk "not in the future"
            parameter.
        values: The allowed values of an ``in_set`` check.
    """

    check: Literal["not_null", "between", "in_set", "unique"]
    column: str
    field: str
    reason: str
    min: int | str | None = None
    max: int | str | None = None
    values: tuple[str, ...] = ()


_GX_CHECKS = {
    "not_null": "ExpectColumnValuesToNotBeNull",
    "between": "ExpectColumnValuesToBeBetween",
    "in_set": "ExpectColumnValuesToBeInSet",
    "unique": "ExpectColumnValuesToBeUnique",
}
#: The ``IngestSettings`` fields the suites read their thresholds from.
_BOUND_FIELDS = (
    "min_prompt_chars",
    "max_prompt_chars",
    "max_response_chars",
    "rating_min",
    "rating_max",
)
_LATEST = "latest_ts"  # evaluated per chunk (the clock moves), so a suite parameter
_NOT_IN_FUTURE = _Expect(
    "between", "ts_epoch", "timestamp", "timestamp: in the future", max=_LATEST
)
_UP_DOWN = ("up", "down")

#: The traffic suite, in the order its reasons are reported.
_TRAFFIC_EXPECTATIONS: tuple[_Expect, ...] = (
    *(
        _Expect("not_null", col, name, f"{name}: missing")
        for name, col in zip(
            REQUIRED_TRAFFIC_FIELDS,
            ("ts_epoch", "app", "model_name", "model_version", "prompt_chars", "response_chars"),
            strict=True,
        )
    ),
    _Expect(
        "between",
        "prompt_chars",
        "prompt",
        "prompt: length outside {min_prompt_chars}..{max_prompt_chars} characters",
        min="min_prompt_chars",
        max="max_prompt_chars",
    ),
    _Expect(
        "between",
        "response_chars",
        "response",
        "response: longer than {max_response_chars} characters",
        min=0,
        max="max_response_chars",
    ),
    _NOT_IN_FUTURE,
    _Expect(
        "between",
        "rating",
        "rating",
        "rating: outside the {rating_min}..{rating_max} scale",
        min="rating_min",
        max="rating_max",
    ),
    _Expect("in_set", "thumbs", "thumbs", "thumbs: not 'up' or 'down'", values=_UP_DOWN),
    _Expect("unique", "request_id", "request_id", "request_id: not unique"),
    *(
        _Expect("between", col, col, f"{col}: negative", min=0)
        for col in ("latency_ms", "input_tokens", "output_tokens", "cost")
    ),
)
#: The feedback suite, in the order its reasons are reported.
_FEEDBACK_EXPECTATIONS: tuple[_Expect, ...] = (
    _Expect("not_null", "request_id", "request_id", "request_id: missing"),
    _Expect("not_null", "kind", "kind", "kind: missing"),
    _Expect("not_null", "ts_epoch", "timestamp", "timestamp: missing"),
    _Expect(
        "in_set",
        "kind",
        "kind",
        f"kind: not one of {', '.join(FEEDBACK_KINDS)}",
        values=FEEDBACK_KINDS,
    ),
    _NOT_IN_FUTURE,
    _Expect(
        "between",
        "rating_value",
        "value",
        "value: rating outside the {rating_min}..{rating_max} scale",
        min="rating_min",
        max="rating_max",
    ),
    _Expect(
        "between", "seconds_value", "value", "value: negative number of seconds", min=0
    ),
    # Ratings, thumbs and durations need a value, events do not (see _feedback_columns).
    _Expect("not_null", "needs_value", "value", "value: missing"),
    _Expect("in_set", "thumbs_label", "value", "value: thumbs not 'up' or 'down'", values=_UP_DOWN),
)
_SUITES = {"traffic": _TRAFFIC_EXPECTATIONS, "feedback": _FEEDBACK_EXPECTATIONS}


def _bounds(settings: IngestSettings) -> tuple[tuple[str, int], ...]:
    return tuple((name, getattr(settings, name)) for name in _BOUND_FIELDS)


@lru_cache(maxsize=16)
def _table_suite(name: str, bounds: tuple[tuple[str, int], ...]) -> Any:
    """The suite ``name`` of :data:`_SUITES` with its thresholds filled from ``bounds``."""
    import great_expectations.expectations as gxe

    known: dict[str, Any] = {**dict(bounds), _LATEST: {"$PARAMETER": _LATEST}}
    expectations: list[Any] = []
    for e in _SUITES[name]:
        options: dict[str, Any] = {
            "column": e.column,
            "meta": {"field": e.field, "reason": e.reason.format(**known)},
        }
        for option, value in (("min_value", e.min), ("max_value", e.max)):
            if value is not None:
                options[option] = known[value] if isinstance(value, str) else value
        if e.values:
            options["value_set"] = list(e.values)
        expectations.append(getattr(gxe, _GX_CHECKS[e.check])(**options))
    return _suite(name, expectations)


def _floats(values: list[Any]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _lengths(values: list[str | None]) -> np.ndarray:
    return np.array([np.nan if v is None else len(v) for v in values], dtype=np.float64)


def _epoch(values: list[datetime | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v.timestamp() for v in values], dtype=np.float64)


def _collect(
    n: int,
    failures: list[tuple[int, str, str]],
    positions: list[int],
    bad_fields: Sequence[set[str]] | None,
) -> list[list[str]]:
    out: list[list[str]] = [[] for _ in range(n)]
    for i, reason, fld in failures:
        row = positions[i]
        if bad_fields is not None and fld in bad_fields[row]:
            continue  # already reported as a wrong type
        out[row].append(reason)
    return out


def _traffic_columns(present: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "request_id": [r["request_id"] for r in present],
        "ts_epoch": _epoch([r["ts"] for r in present]),
        "app": [r["app"] for r in present],
        "model_name": [r["model_name"] for r in present],
        "model_version": [r["model_version"] for r in present],
        # Text enters the frame as its length: that is all the checks need, and copying
        # megabytes of prompts into Arrow strings is what a chunk's validation would
        # otherwise spend most of its time on.
        "prompt_chars": _lengths([r["prompt"] for r in present]),
        "response_chars": _lengths([r["response"] for r in present]),
        "rating": _floats([r["rating"] for r in present]),
        "thumbs": [r["thumbs"] for r in present],
        "latency_ms": _floats([r["latency_ms"] for r in present]),
        "input_tokens": _floats([r["input_tokens"] for r in present]),
        "output_tokens": _floats([r["output_tokens"] for r in present]),
        "cost": _floats([r["cost"] for r in present]),
    }


def _needs_value(kind: str | None) -> bool:
    """Whether a feedback row of ``kind`` must carry a value (every kind but events)."""
    return kind in FEEDBACK_KINDS and feedback_kind(kind).value != "event"


def _feedback_columns(present: list[dict[str, Any]]) -> dict[str, Any]:
    kinds = [r["kind"] for r in present]
    return {
        "request_id": [r["request_id"] for r in present],
        "kind": kinds,
        "ts_epoch": _epoch([r["ts"] for r in present]),
        "rating_value": _floats(
            [r["value"] if k == "rating" else None for r, k in zip(present, kinds, strict=True)]
        ),
        "seconds_value": _floats(
            [
                r["value"] if k == "time_to_rate" else None
                for r, k in zip(present, kinds, strict=True)
            ]
        ),
        # Ratings, thumbs and durations need a value, events do not ("x" stands for "fine");
        # a thumbs value that is not up/down is reported once, by the in-set check.
        "needs_value": [
            r["value"] if _needs_value(k) and r["label"] is None else "x"
            for r, k in zip(present, kinds, strict=True)
        ],
        "thumbs_label": [
            r["label"] if k == "thumbs" else None for r, k in zip(present, kinds, strict=True)
        ],
    }


_COLUMNS: dict[str, Callable[[list[dict[str, Any]]], dict[str, Any]]] = {
    "traffic": _traffic_columns,
    "feedback": _feedback_columns,
}


def _check_rows(
    kind: str,
    rows: Sequence[dict[str, Any] | None],
    settings: IngestSettings,
    now: datetime | None,
    bad_fields: Sequence[set[str]] | None,
) -> list[list[str]]:
    """Validate the typed rows of one chunk with the ``kind`` suite; reasons per input row."""
    positions = [i for i, r in enumerate(rows) if r is not None]
    if not positions:
        return [[] for _ in rows]
    present: list[dict[str, Any]] = [rows[i] for i in positions]  # type: ignore[misc]
    frame = pd.DataFrame(_COLUMNS[kind](present))
    now = now or datetime.now(UTC)
    latest = (now + timedelta(seconds=settings.max_future_skew_s)).timestamp()
    suite = _table_suite(kind, _bounds(settings))
    failures = _engine().failures(frame, suite, {_LATEST: latest})
    return _collect(len(rows), failures, positions, bad_fields)


def validate_traffic_rows(
    rows: Sequence[dict[str, Any] | None],
    settings: IngestSettings,
    now: datetime | None = None,
    bad_fields: Sequence[set[str]] | None = None,
) -> list[list[str]]:
    """Great Expectations reasons for each typed traffic row of one chunk.

    Args:
        rows: Typed rows from :func:`coerce_traffic` (None rows are skipped); ``request_id``
            must already be final (ingest derives missing ones first).
        settings: Bounds (text lengths, rating scale, future-timestamp tolerance).
        now: The present, for the future-timestamp check (default: the clock).
        bad_fields: Fields per row already reported as wrong types (not reported as missing).

    Returns:
        One list of reasons per input row (empty when valid).

    Raises:
        ValidationEngineError: If Great Expectations could not evaluate an expectation.
    """
    return _check_rows("traffic", rows, settings, now, bad_fields)


def validate_feedback_rows(
    rows: Sequence[dict[str, Any] | None],
    settings: IngestSettings,
    now: datetime | None = None,
    bad_fields: Sequence[set[str]] | None = None,
) -> list[list[str]]:
    """Great Expectations reasons for each typed feedback row of one chunk.

    As :func:`validate_traffic_rows`, for rows from :func:`coerce_feedback`; of the settings,
    the rating scale and the future-timestamp tolerance apply.
    """
    return _check_rows("feedback", rows, settings, now, bad_fields)


def _with_gx_reasons(
    kind: str, coerced: Coerced, settings: IngestSettings, now: datetime | None
) -> Coerced:
    gx_reasons = _check_rows(kind, coerced.rows, settings, now, coerced.bad_fields)
    coerced.reasons = [
        list(dict.fromkeys(a + b)) for a, b in zip(coerced.reasons, gx_reasons, strict=True)
    ]
    return coerced


def validate_traffic(
    values: Sequence[Any], settings: IngestSettings, now: datetime | None = None
) -> Coerced:
    """Type checks and Great Expectations checks for one chunk of parsed traffic rows.

    Rows without a ``request_id`` are not given one here (ingest derives it), so uniqueness
    is checked among the ids present.

    Args:
        values: Parsed rows with canonical keys.
        settings: Validation bounds.
        now: The present (default: the clock).

    Returns:
        Typed rows and every reason per row.

    Examples:
        >>> from evalwatch.settings import IngestSettings
        >>> row = {"timestamp": "2026-01-01T00:00:00Z", "app": "a", "model_name": "m",
        ...        "model_version": "v1", "prompt": "hi", "response": "yo", "latency_ms": -5}
        >>> validate_traffic([row], IngestSettings()).reasons
        [['latency_ms: negative']]
    """
    return _with_gx_reasons("traffic", coerce_traffic(values), settings, now)


def validate_feedback(
    values: Sequence[Any], settings: IngestSettings, now: datetime | None = None
) -> Coerced:
    """Type checks and Great Expectations checks for one chunk of parsed feedback rows.

    Args:
        values: Parsed feedback rows with canonical keys.
        settings: Rating scale and future-timestamp tolerance.
        now: The present (default: the clock).

    Returns:
        Typed rows and every reason per row.

    Examples:
        >>> from evalwatch.settings import IngestSettings
        >>> fb = {"request_id": "r1", "kind": "rating", "value": 9,
        ...       "timestamp": "2026-01-01T00:00:00Z"}
        >>> validate_feedback([fb], IngestSettings()).reasons
        [['value: rating outside the 1..5 scale']]
    """
    return _with_gx_reasons("feedback", coerce_feedback(values), settings, now)
