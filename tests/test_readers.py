from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evalwatch.ingest.readers import (
    DATASET_ALIASES,
    EXTRA_KEY,
    SourceReader,
    UnreadableFileError,
    detect_format,
    normalise_keys,
    open_source,
)


def _records(path: Path, fmt: str = "auto"):
    return list(SourceReader(path, fmt))


def test_jsonl_yields_every_line(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_bytes(
        b'\xef\xbb\xbf{"prompt": "a"}\n'  # BOM on the first line
        b"\n"
        b'{"prompt": "b"}\r\n'
        b"{broken\n"
        b"[1, 2]\n"
        b'{"prompt": "caf\xe9"}\n'
        b'{"latency_ms": NaN}\n'
        b'{"prompt": "\\ud800"}\n'
        b"   \n"
        b'{"last": true}'  # no final newline
    )
    recs = _records(p)
    assert [r.line for r in recs] == list(range(1, 11))
    assert recs[0].value == {"prompt": "a"} and recs[0].error is None
    assert recs[1].skip == "blank line" and recs[1].value is None
    assert recs[2].value == {"prompt": "b"} and recs[2].raw == '{"prompt": "b"}'
    assert recs[3].error.startswith("malformed JSON") and recs[3].raw == "{broken"
    assert recs[4].value == [1, 2] and recs[4].error is None  # not an object: validation says so
    assert recs[5].replaced and recs[5].value == {"prompt": "caf\ufffd"}
    assert recs[6].value["latency_ms"] != recs[6].value["latency_ms"]  # NaN is read, then rejected
    assert recs[7].error == "malformed JSON (lone surrogate escape)"
    assert recs[8].skip == "blank line"
    assert recs[9].value == {"last": True}


def test_empty_files_yield_nothing(tmp_path):
    for name in ("e.jsonl", "e.csv", "e.json"):
        (tmp_path / name).write_bytes(b"")
        assert _records(tmp_path / name) == []


def test_missing_file_and_directory_are_unreadable(tmp_path):
    with pytest.raises(UnreadableFileError, match="does not exist"):
        open_source(tmp_path / "nope.jsonl")
    with pytest.raises(UnreadableFileError, match=r"not a regular file \(a directory\)"):
        open_source(tmp_path)
    os.mkfifo(tmp_path / "pipe.jsonl")
    # Refused without being opened: opening a FIFO for reading would block this test.
    with pytest.raises(UnreadableFileError, match=r"not a regular file \(a FIFO\)"):
        open_source(tmp_path / "pipe.jsonl")
    with pytest.raises(UnreadableFileError, match="unknown format"):
        open_source(__file__, "xml")


def test_csv_rows_with_aliases_empty_cells_and_bad_bytes(tmp_path):
    p = tmp_path / "t.csv"
    p.write_bytes(
        b"Request ID,Timestamp,Input,Completion,latency_ms,meta\n"
        b'r1,2026-10-01T00:00:00Z,"hi, there",hello,12.5,"{""topic"": ""x""}"\n'
        b"r2,2026-10-01T00:00:00Z,caf\xe9,,,\n"
        b"\n"
        b'r3,2026-10-01T00:00:00Z,"multi\nline",ok,1,\n'
        b"r4,2026-10-01T00:00:00Z,a,b,1,{},extra\n"
    )
    recs = _records(p)
    assert [r.line for r in recs] == [2, 3, 4, 5, 7]
    first = normalise_keys(recs[0].value)
    assert first == {
        "request_id": "r1",
        "timestamp": "2026-10-01T00:00:00Z",
        "prompt": "hi, there",
        "response": "hello",
        "latency_ms": "12.5",  # numeric text; validation reads it
        "metadata": {"topic": "x"},
    }
    assert recs[1].replaced and recs[1].value["Input"] == "caf\ufffd"
    assert recs[1].value["Completion"] is None
    assert recs[2].skip == "blank line"
    assert recs[3].value["Input"] == "multi\nline"
    assert recs[4].error.startswith("malformed CSV row (7 fields")


def test_parquet_rows(tmp_path):
    p = tmp_path / "t.parquet"
    table = pa.table(
        {
            "request_id": ["p1", "p2"],
            "timestamp": [datetime(2026, 10, 1, tzinfo=UTC), None],
            "prompt": ["a", "b"],
            "latency_ms": [1.5, float("nan")],
            "input_tokens": pa.array([3, None], type=pa.int64()),
        }
    )
    pq.write_table(table, p)
    reader = SourceReader(p)
    recs = list(reader)
    assert reader.fmt == "parquet" and reader.total == 2 and reader.done == 2
    assert [r.line for r in recs] == [1, 2]
    assert recs[0].value["timestamp"] == datetime(2026, 10, 1, tzinfo=UTC)
    assert recs[1].value["latency_ms"] is None and recs[1].value["input_tokens"] is None
    assert json.loads(recs[0].raw)["request_id"] == "p1"


def test_corrupt_parquet_is_unreadable(tmp_path):
    p = tmp_path / "bad.parquet"
    p.write_bytes(b"PAR1 this is not really parquet")
    with pytest.raises(UnreadableFileError, match="not a readable Parquet file"):
        list(SourceReader(p))


@pytest.mark.parametrize(
    ("name", "head", "fmt"),
    [
        ("a.jsonl", b'{"prompt": "x"}', "jsonl"),
        ("a.json", b'{"resourceSpans": [', "otlp"),
        ("a.jsonl", b'{"resourceSpans": [', "otlp"),
        ("a.csv", b"a,b", "csv"),
        ("a.tsv", b"a\tb", "csv"),
        ("a.parquet", b"", "parquet"),
        ("noext", b"PAR1....", "parquet"),
        ("noext", b'{"x": 1}', "jsonl"),
    ],
)
def test_detect_format(name, head, fmt):
    assert detect_format(Path(name), head) == fmt


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"prompt": "p", "response": "r"}, {"prompt": "p", "response": "r"}),
        ({"input": "p", "output": "r"}, {"prompt": "p", "response": "r"}),
        ({"question": "p", "answer": "r"}, {"prompt": "p", "response": "r"}),
        ({"Model": "m", "modelVersion": "v"}, {"model_name": "m", "model_version": "v"}),
        ({"REQUEST-ID": "x", "ts": "t"}, {"request_id": "x", "timestamp": "t"}),
        ({"latency_s": 0.25}, {"latency_ms": 250.0}),
        ({"duration": "slow"}, {"latency_ms": "slow"}),  # not scaled; validation rejects it
        ({"prompt_tokens": 3, "completion_tokens": 4}, {"input_tokens": 3, "output_tokens": 4}),
        (
            {"prompt": "p", "input": "q"},  # the canonical name wins; the alias is kept
            {"prompt": "p", EXTRA_KEY: {"input": "q"}},
        ),
        ({"team": "a", "meta": {"k": 1}}, {"metadata": {"k": 1}, EXTRA_KEY: {"team": "a"}}),
    ],
)
def test_normalise_traffic_keys(row, expected):
    assert normalise_keys(row) == expected


def test_normalise_dataset_keys():
    fields = ("id", "input", "reference", "context", "tags", "metadata")
    got = normalise_keys(
        {"item_id": 1, "question": "q", "answer": "a", "slices": ["s"]}, fields, DATASET_ALIASES
    )
    assert got == {"id": 1, "input": "q", "reference": "a", "tags": ["s"]}


def test_progress_counts_bytes(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_text('{"a": 1}\n{"a": 2}\n')
    reader = SourceReader(p)
    assert reader.total == p.stat().st_size and reader.done == 0
    list(reader)
    assert reader.done == reader.total
