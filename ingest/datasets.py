"""Test sets and model outputs: load a test-set file as a dataset version, and predictions.

A test-set version is the content hash of its items
(:func:`evalwatch.storage.repo.register_dataset`):
loading identical content again returns the same version, changed content makes a new one.
Items that cannot be used (no id, no input, wrong types, a repeated id) go to quarantine with
every reason; the rest form the version.

Test-set item: ``id``, ``input``, ``reference``, ``context`` (optional), ``tags`` (list of
slice tags); other fields are kept as item metadata. Predictions: ``id`` (the item's id),
``model``, ``output``, and optional ``latency_ms``, ``input_tokens``, ``output_tokens``,
``cost``, ``error``.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from evalwatch.checks.validation import MAX_ID_CHARS, MAX_INT, reason_key
from evalwatch.ingest.readers import (
    DATASET_ALIASES,
    EXTRA_KEY,
    PREDICTION_ALIASES,
    RawRecord,
    SourceReader,
    bounded_raw,
    cut_raw,
    normalise_keys,
)
from evalwatch.storage.models import Dataset
from evalwatch.storage.repo import (
    dataset_items,
    get_dataset,
    insert_model_outputs,
    insert_quarantine,
    output_ids,
    register_dataset,
)

__all__ = [
    "DATASET_ITEM_FIELDS",
    "PREDICTION_FIELDS",
    "DatasetLoad",
    "OutputsLoad",
    "ParsedOutputs",
    "check_item",
    "check_prediction",
    "load_dataset",
    "load_outputs",
    "read_outputs",
    "store_outputs_file",
]

DATASET_ITEM_FIELDS: tuple[str, ...] = ("id", "input", "reference", "context", "tags", "metadata")
PREDICTION_FIELDS: tuple[str, ...] = (
    "id",
    "model",
    "output",
    "latency_ms",
    "input_tokens",
    "output_tokens",
    "cost",
    "error",
)


@dataclass
class DatasetLoad:
    """What loading a test-set file did.

    Attributes:
        dataset: The version registered (None when the file held no usable item).
        created: Whether the version is new (False: identical content was loaded before).
        items: Items in the version.
        quarantined: Items rejected into quarantine.
        reasons: Quarantine reasons and how many items had each.
        skipped: Blank lines.
    """

    dataset: Dataset | None
    created: bool
    items: int
    quarantined: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    skipped: int = 0


@dataclass
class OutputsLoad:
    """What loading a predictions file did.

    Attributes:
        dataset: The dataset version the predictions answer.
        stored: Predictions newly stored.
        duplicates: Predictions stored before (same item, model and output), from any file.
        quarantined: Predictions rejected into quarantine.
        reasons: Quarantine reasons and how many predictions had each.
        skipped: Blank lines.
        outputs: Model -> item key -> stored output id, for every usable prediction of the
            file (new or stored before): what the file means, wherever it was read from.
    """

    dataset: Dataset
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    skipped: int = 0
    outputs: dict[str, dict[str, int]] = field(default_factory=dict)


def _text(value: Any, name: str, why: list[str], required: bool) -> str | None:
    if value is None:
        if required:
            why.append(f"{name}: missing")
        return None
    if not isinstance(value, str):
        why.append(f"{name}: expected a string, got {type(value).__name__}")
        return None
    if "\x00" in value:
        why.append(f"{name}: contains NUL characters")
        return None
    return value


def _key(value: Any, name: str, why: list[str]) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    key = _text(value, name, why, required=True)
    if key is not None and not key.strip():
        why.append(f"{name}: missing")
        return None
    if key is not None and len(key) > MAX_ID_CHARS:
        why.append(f"{name}: longer than {MAX_ID_CHARS} characters")
        return None
    return key


def check_item(value: Any) -> tuple[dict[str, Any] | None, list[str]]:
    """One test-set item as :func:`evalwatch.storage.repo.register_dataset` takes it, or reasons.

    Args:
        value: A parsed row (any aliases already resolved).

    Returns:
        The item (None when it is unusable) and every reason it is not.

    Examples:
        >>> check_item({"id": 7, "input": "q", "reference": "a", "tags": "billing"})[0]["tags"]
        ['billing']
        >>> check_item({"input": 3})[1]
        ['id: missing', 'input: expected a string, got int']
    """
    if not isinstance(value, Mapping):
        return None, [f"row: expected an object, got {type(value).__name__}"]
    why: list[str] = []
    key = _key(value.get("id"), "id", why)
    text = _text(value.get("input"), "input", why, required=True)
    if text is not None and not text.strip():
        why.append("input: empty")
    reference = _text(value.get("reference"), "reference", why, required=False)
    context = value.get("context")
    if isinstance(context, list) and all(isinstance(c, str) for c in context):
        context = "\n\n".join(context)
    context = _text(context, "context", why, required=False)
    tags = value.get("tags")
    if isinstance(tags, str):
        tags = [tags]
    if tags is not None and not (isinstance(tags, list) and all(isinstance(t, str) for t in tags)):
        why.append(f"tags: expected a list of strings, got {type(tags).__name__}")
    meta = value.get("metadata")
    if meta is not None and not isinstance(meta, Mapping):
        why.append(f"metadata: expected an object, got {type(meta).__name__}")
        meta = None
    extra = value.get(EXTRA_KEY)
    if extra:
        meta = {**extra, **(meta or {})}
    if why:
        return None, why
    return {
        "item_key": key,
        "input": text,
        "reference": reference,
        "context": context,
        "tags": sorted(set(tags or [])),
        "meta": dict(meta) if meta else None,
    }, []


def _number(value: Any, name: str, why: list[str], integer: bool) -> float | int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        why.append(f"{name}: expected a number, got {type(value).__name__}")
        return None
    if value != value or value < 0 or value in (float("inf"),):
        why.append(f"{name}: must be a non-negative number")
        return None
    if integer:
        if not float(value).is_integer() or value > MAX_INT:
            why.append(f"{name}: expected an integer")
            return None
        return int(value)
    return float(value)


def check_prediction(value: Any) -> tuple[dict[str, Any] | None, list[str]]:
    """One prediction as a model-output row (without the dataset item id), or reasons.

    Examples:
        >>> row, why = check_prediction({"id": "q1", "model": "m", "output": "a", "cost": -1})
        >>> row, why
        (None, ['cost: must be a non-negative number'])
    """
    if not isinstance(value, Mapping):
        return None, [f"row: expected an object, got {type(value).__name__}"]
    why: list[str] = []
    key = _key(value.get("id"), "id", why)
    model = _key(value.get("model"), "model", why)
    error = _text(value.get("error"), "error", why, required=False)
    output = _text(value.get("output"), "output", why, required=error is None)
    latency = _number(value.get("latency_ms"), "latency_ms", why, integer=False)
    tin = _number(value.get("input_tokens"), "input_tokens", why, integer=True)
    tout = _number(value.get("output_tokens"), "output_tokens", why, integer=True)
    cost = _number(value.get("cost"), "cost", why, integer=False)
    if why:
        return None, why
    text = output or ""
    return {
        "item_key": key,
        "model": model,
        "output": text,
        "output_hash": hashlib.sha256(text.encode()).hexdigest(),
        "latency_ms": latency,
        "input_tokens": tin,
        "output_tokens": tout,
        "cost": cost,
        "error": error,
    }, []


def _quarantine(
    engine: Engine, source: str, bad: Sequence[tuple[RawRecord, list[str]]]
) -> Counter[str]:
    reasons: Counter[str] = Counter()
    if not bad:
        return reasons
    rows = []
    for rec, why in bad:
        head, digest, size = bounded_raw(rec)
        unit = "characters" if rec.digest is None else "bytes"
        rows.append(
            {
                "kind": "dataset",
                "source": source,
                "line": rec.line,
                # Bounded: the start, with the whole row's length (and its hash beside it).
                "raw": cut_raw(head, size, unit).replace("\x00", "\ufffd"),
                "raw_hash": digest,
                "reasons": list(why),
                "created_at": datetime.now(UTC),
            }
        )
        reasons.update({reason_key(w) for w in why})
    insert_quarantine(engine, rows)
    return reasons


def load_dataset(
    engine: Engine, path: str | Path, name: str | None = None, fmt: str = "auto"
) -> DatasetLoad:
    r"""Register a test-set file as a dataset version.

    Args:
        engine: The store.
        path: A JSONL (or CSV, Parquet) file of test-set items.
        name: The test set's name (default: the file name without its suffix).
        fmt: File format (``auto`` detects it).

    Returns:
        The version, whether it is new, and what was quarantined.

    Raises:
        evalwatch.ingest.readers.UnreadableFileError: If the file cannot be read.

    Examples:
        >>> import tempfile, pathlib
        >>> from evalwatch.storage.db import make_engine, upgrade
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> engine = make_engine(f"sqlite:///{d / 'store.db'}")
        >>> _ = upgrade(engine)
        >>> _ = (d / "qa.jsonl").write_text('{"id": "1", "input": "q", "reference": "a"}\n')
        >>> first = load_dataset(engine, d / "qa.jsonl")
        >>> again = load_dataset(engine, d / "qa.jsonl")
        >>> first.dataset.name, first.created, again.created
        ('qa', True, False)
        >>> first.dataset.version == again.dataset.version
        True
    """
    reader = SourceReader(path, fmt)
    source = str(reader.path.resolve())[-500:]
    items: list[dict[str, Any]] = []
    bad: list[tuple[RawRecord, list[str]]] = []
    first_line: dict[str, int] = {}
    skipped = 0
    for rec in reader:
        if rec.skip is not None:
            skipped += 1
            continue
        if rec.error is not None:
            bad.append((rec, [rec.error]))
            continue
        value = rec.value
        if isinstance(value, Mapping):
            value = normalise_keys(value, DATASET_ITEM_FIELDS, DATASET_ALIASES)
        item, why = check_item(value)
        if item is not None and item["item_key"] in first_line:
            why = [f"id: not unique (first used on line {first_line[item['item_key']]})"]
            item = None
        if item is None:
            bad.append((rec, why))
            continue
        first_line[item["item_key"]] = rec.line
        items.append(item)
    reasons = _quarantine(engine, source, bad)
    if not items:
        return DatasetLoad(None, False, 0, len(bad), reasons, skipped)
    dataset, created = register_dataset(engine, name or reader.path.stem, items, source=source)
    return DatasetLoad(dataset, created, len(items), len(bad), reasons, skipped)


@dataclass
class ParsedOutputs:
    """A predictions file read and checked against a dataset version, nothing stored yet.

    Attributes:
        dataset: The dataset version the predictions answer.
        source: Where they were read from (as stored with each row).
        rows: The usable predictions, ready to store.
        bad: The lines rejected, with every reason (quarantined when stored).
        skipped: Blank lines.
        keys: Item key -> item id of the dataset version.
    """

    dataset: Dataset
    source: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    bad: list[tuple[RawRecord, list[str]]] = field(default_factory=list)
    skipped: int = 0
    keys: dict[str, int] = field(default_factory=dict)

    @property
    def models(self) -> list[str]:
        """The models the usable predictions name, sorted."""
        return sorted({str(r["model"]) for r in self.rows})

    def reasons(self) -> Counter[str]:
        """Quarantine reasons of the rejected lines and how many had each."""
        return Counter(k for _, why in self.bad for k in {reason_key(w) for w in why})


def read_outputs(
    engine: Engine,
    path: str | Path,
    name: str,
    version: str | None = None,
    fmt: str = "auto",
) -> ParsedOutputs:
    """Read and check a predictions file against a dataset version, storing nothing.

    A caller that needs more of the file than that it reads (e.g. one model only) checks the
    result before :func:`store_outputs_file` writes anything.

    Args:
        engine: The store (read only).
        path: Predictions (JSONL, CSV or Parquet), one per item and model.
        name: The dataset's name.
        version: Its version (default: the newest).
        fmt: File format (``auto`` detects it).

    Returns:
        The usable and the rejected predictions.

    Raises:
        KeyError: If the dataset (version) does not exist.
        evalwatch.ingest.readers.UnreadableFileError: If the file cannot be read.
    """
    dataset = get_dataset(engine, name, version)
    if dataset is None or dataset.id is None:
        raise KeyError(f"no dataset {name!r}" + (f" version {version!r}" if version else ""))
    keys = {i.item_key: i.id for i in dataset_items(engine, dataset.id) if i.id is not None}
    reader = SourceReader(path, fmt)
    parsed = ParsedOutputs(dataset, str(reader.path.resolve())[-500:], keys=keys)
    for rec in reader:
        if rec.skip is not None:
            parsed.skipped += 1
            continue
        if rec.error is not None:
            parsed.bad.append((rec, [rec.error]))
            continue
        value = rec.value
        if isinstance(value, Mapping):
            value = normalise_keys(value, PREDICTION_FIELDS, PREDICTION_ALIASES)
        row, why = check_prediction(value)
        if row is not None and row["item_key"] not in keys:
            why = [
                f"id: not an item of {dataset.name} version {dataset.version} ({row['item_key']!r})"
            ]
            row = None
        if row is None:
            parsed.bad.append((rec, why))
            continue
        parsed.rows.append(row)
    return parsed


def store_outputs_file(engine: Engine, parsed: ParsedOutputs) -> OutputsLoad:
    """Store what :func:`read_outputs` read: the usable predictions, the rejected in quarantine.

    Args:
        engine: The store.
        parsed: The file as read.

    Returns:
        Counts of stored, duplicate and quarantined predictions.
    """
    keys = parsed.keys
    result = OutputsLoad(parsed.dataset)
    result.skipped = parsed.skipped
    rows: list[dict[str, Any]] = []
    for parsed_row in parsed.rows:
        row = dict(parsed_row)
        item_key = row.pop("item_key")
        row["dataset_item_id"] = keys[item_key]
        row["source"] = parsed.source
        row["created_at"] = datetime.now(UTC)
        rows.append(row)
    result.reasons = _quarantine(engine, parsed.source, parsed.bad)
    result.quarantined = len(parsed.bad)
    if rows:
        new = insert_model_outputs(engine, rows)
        result.stored = len(new)
        result.duplicates = len(rows) - len(new)
        # Resolve by identity, not by source: rows stored earlier from another path count.
        idents = [(r["dataset_item_id"], r["model"], r["output_hash"]) for r in rows]
        ids = output_ids(engine, idents)
        key_of = {item_id: key for key, item_id in keys.items()}
        for item_id, model, digest in idents:  # a later line for the same item and model wins
            result.outputs.setdefault(model, {})[key_of[item_id]] = ids[(item_id, model, digest)]
    return result


def load_outputs(
    engine: Engine,
    path: str | Path,
    name: str,
    version: str | None = None,
    fmt: str = "auto",
) -> OutputsLoad:
    """Store a predictions file as model outputs for the items of a dataset version.

    Args:
        engine: The store.
        path: Predictions (JSONL, CSV or Parquet), one per item and model.
        name: The dataset's name.
        version: Its version (default: the newest).
        fmt: File format (``auto`` detects it).

    Returns:
        Counts of stored, duplicate and quarantined predictions.

    Raises:
        KeyError: If the dataset (version) does not exist.
        evalwatch.ingest.readers.UnreadableFileError: If the file cannot be read.
    """
    return store_outputs_file(engine, read_outputs(engine, path, name, version, fmt))
