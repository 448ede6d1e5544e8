"""Input size never decides memory: giant lines, fields, cells and documents are quarantined.

A line longer than ``ingest.max_line_bytes`` is quarantined with its reason, its length and the
SHA-256 of all of it, keeping only its first few KB; it is never parsed or held whole. The
giant files are built in ``tmp_path`` by streaming writes; peak RSS is measured in a child
process (``ru_maxrss``), as a bound on memory, not a timing.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from evalwatch.cli import app
from evalwatch.ingest.pipeline import ingest
from evalwatch.ingest.readers import QUARANTINE_CHARS, SourceReader
from evalwatch.settings import IngestSettings, Settings
from evalwatch.storage.db import make_engine, upgrade

REPO = Path(__file__).resolve().parent.parent
MB = 1_000_000
# The stored raw text: the kept start plus a short note of the whole length.
_RAW_BOUND = QUARANTINE_CHARS + 100
_START = datetime(2026, 1, 5, tzinfo=UTC)


def _row(i: int) -> dict:
    return {
        "request_id": f"ok-{i}",
        "timestamp": (_START + timedelta(minutes=i)).isoformat(),
        "app": "a",
        "model_name": "m",
        "model_version": "v1",
        "prompt": f"question {i}",
        "response": f"answer {i}",
    }


def _line(i: int) -> bytes:
    return json.dumps(_row(i)).encode() + b"\n"


def _giant_jsonl(path: Path, size: int, before: int = 2, after: int = 2) -> tuple[Path, str]:
    """A JSONL file with ``before`` + ``after`` good rows around one valid JSON line of
    ``size`` bytes (a huge prompt); returns the file and the SHA-256 of the giant line."""
    digest = hashlib.sha256()
    with path.open("wb") as fh:
        for i in range(before):
            fh.write(_line(i))
        prefix = json.dumps(_row(999))[:-1].encode() + b', "context": "'
        suffix = b'"}'
        fill = size - len(prefix) - len(suffix)
        block = b"x" * MB
        for part in (prefix,):
            fh.write(part)
            digest.update(part)
        while fill > 0:
            piece = block[: min(fill, MB)]
            fh.write(piece)
            digest.update(piece)
            fill -= len(piece)
        fh.write(suffix + b"\n")
        digest.update(suffix)
        for i in range(before, before + after):
            fh.write(_line(i))
    return path, digest.hexdigest()


def _settings(**ingest_kw) -> Settings:
    return Settings(hash_key="bounded-key", ingest=IngestSettings(**ingest_kw))


def _quarantine(engine) -> list[tuple[int, str, str, list[str]]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT line, raw, raw_hash, reasons FROM quarantine ORDER BY line")
        ).all()
    return [(r[0], r[1], r[2], r[3] if isinstance(r[3], list) else json.loads(r[3])) for r in rows]


def _interactions(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT COUNT(*) FROM interactions")).scalar_one()


def test_50mb_line_is_quarantined_with_length_and_hash_and_bounded_raw(sqlite_engine, tmp_path):
    path, digest = _giant_jsonl(tmp_path / "giant.jsonl", 50 * MB)
    result = ingest(sqlite_engine, [path], settings=_settings(), parallel=False)
    assert (result.rows, result.ingested, result.quarantined) == (5, 4, 1)
    assert result.reasons == {"line: longer than 8000000 bytes": 1}
    [(line, raw, raw_hash, reasons)] = _quarantine(sqlite_engine)
    assert line == 3
    assert reasons == [f"line: longer than 8000000 bytes ({50 * MB} bytes)"]
    assert raw_hash == digest
    assert len(raw) < _RAW_BOUND and raw.startswith('{"request_id": "ok-999"')
    assert raw.endswith(f"[cut: first {QUARANTINE_CHARS} of {50 * MB} bytes]")
    assert _interactions(sqlite_engine) == 4


def test_cap_is_a_setting_and_a_line_at_the_cap_is_read(sqlite_engine, tmp_path, monkeypatch):
    at_cap = json.dumps({**_row(7), "context": "y" * 5_000}).encode()
    path = tmp_path / "t.jsonl"
    path.write_bytes(_line(1) + at_cap + b"\r\n" + at_cap + b"zz\n" + _line(2))
    monkeypatch.setenv("EVALWATCH_INGEST__MAX_LINE_BYTES", str(len(at_cap)))
    settings = Settings(hash_key="bounded-key")
    assert settings.ingest.max_line_bytes == len(at_cap)
    # The bytes of the over-cap line are not a JSON line: it is never parsed either way.
    result = ingest(sqlite_engine, [path], settings=settings, collect_outcomes=True)
    assert result.outcomes is not None
    statuses = [o.status for o in sorted(result.outcomes, key=lambda o: o.line)]
    assert statuses == ["stored", "stored", "quarantined", "stored"]
    [(line, _, raw_hash, reasons)] = _quarantine(sqlite_engine)
    assert line == 3 and raw_hash == hashlib.sha256(at_cap + b"zz").hexdigest()
    assert reasons == [f"line: longer than {len(at_cap)} bytes ({len(at_cap) + 2} bytes)"]


def test_quarantine_raw_is_bounded_for_every_reason(sqlite_engine, tmp_path):
    long_prompt = json.dumps({**_row(1), "prompt": "p" * 2_100_000}) + "\n"
    not_json = "{ nope " + "z" * 300_000 + "\n"
    path = tmp_path / "t.jsonl"
    path.write_text(_line(0).decode() + long_prompt + not_json)
    result = ingest(sqlite_engine, [path], settings=_settings(), parallel=False)
    assert (result.ingested, result.quarantined) == (1, 2)
    rows = _quarantine(sqlite_engine)
    assert [r[0] for r in rows] == [2, 3]
    assert rows[0][3][0].startswith("prompt: length outside")
    assert rows[1][3][0].startswith("malformed JSON")
    for (_, raw, raw_hash, _), text in zip(rows, (long_prompt, not_json), strict=True):
        whole = text.rstrip("\n")
        assert len(raw) < _RAW_BOUND and raw.startswith(whole[:100])
        assert raw.endswith(f"of {len(whole)} characters]")
        assert raw_hash == hashlib.sha256(whole.encode()).hexdigest()


def test_csv_lines_end_at_cr_lf_and_crlf(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b'app,prompt\ra,hi\rb,"multi\rline"\r\nc,"q""x\r\nline"\nd,ok')
    recs = list(SourceReader(path, max_line_bytes=1_000))
    assert [(r.line, r.value) for r in recs] == [
        (2, {"app": "a", "prompt": "hi"}),
        (3, {"app": "b", "prompt": "multi\rline"}),
        (5, {"app": "c", "prompt": 'q"x\r\nline'}),
        (7, {"app": "d", "prompt": "ok"}),
    ]


def test_csv_field_over_the_cap_is_quarantined(sqlite_engine, tmp_path):
    path = tmp_path / "t.csv"
    header = ["request_id", "timestamp", "app", "model_name", "model_version", "prompt", "response"]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for i in range(4):
            r = _row(i)
            if i == 2:
                r["response"] = "q" * 300_000  # over the csv module's default field limit too
            w.writerow([r[k] for k in header])
        # A quoted field over the cap that spans lines, each shorter than the cap.
        w.writerow(["multi", _row(5)["timestamp"], "a", "m", "v1", "p", "line\n" * 30_000])
        w.writerow([_row(6)[k] for k in header])
    result = ingest(sqlite_engine, [path], settings=_settings(max_line_bytes=100_000))
    assert (result.ingested, result.quarantined) == (4, 2), result
    rows = _quarantine(sqlite_engine)
    assert [r[0] for r in rows] == [4, 6]
    assert rows[0][3][0].startswith("line: longer than 100000 characters (3000")
    assert rows[1][3][0].startswith("field: longer than 100000 characters (1500")
    assert all(len(r[1]) < _RAW_BOUND for r in rows)
    assert _interactions(sqlite_engine) == 4


def test_parquet_cell_over_the_cap_is_quarantined_before_python_sees_it(sqlite_engine, tmp_path):
    rows = [_row(i) for i in range(6)]
    rows[3]["response"] = "r" * 200_000
    path = tmp_path / "t.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=4)
    recs = list(SourceReader(path, max_line_bytes=100_000))
    assert [r.error is None for r in recs] == [True, True, True, False, True, True]
    big = recs[3]
    assert big.line == 4 and big.size == 200_000
    assert big.digest == hashlib.sha256(b"r" * 200_000).hexdigest()
    assert big.error == "response: longer than 100000 bytes (200000 bytes)"
    result = ingest(sqlite_engine, [path], settings=_settings(max_line_bytes=100_000))
    assert (result.ingested, result.quarantined) == (5, 1)
    [(line, raw, _, _)] = _quarantine(sqlite_engine)
    assert line == 4 and len(raw) < _RAW_BOUND


def _otlp_doc(prompt: str) -> dict:
    attrs = [
        {"key": "gen_ai.request.model", "value": {"stringValue": "m"}},
        {"key": "gen_ai.prompt", "value": {"stringValue": prompt}},
        {"key": "gen_ai.completion", "value": {"stringValue": "fine"}},
    ]
    span = {
        "traceId": "a" * 32,
        "spanId": "b" * 16,
        "name": "chat m",
        "startTimeUnixNano": "1767225600000000000",
        "endTimeUnixNano": "1767225601000000000",
        "attributes": attrs,
    }
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "a"}}]}
    return {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": [span]}]}]}


def test_otlp_document_over_the_cap_is_refused_unread(sqlite_engine, tmp_path):
    doc = json.dumps(_otlp_doc("p" * 50_000), indent=2)
    pretty = tmp_path / "one.json"
    pretty.write_text(doc)
    [rec] = list(SourceReader(pretty, max_line_bytes=20_000))
    assert rec.error == f"document: longer than 20000 bytes ({len(doc)} bytes)"
    assert rec.digest == hashlib.sha256(doc.encode()).hexdigest()
    assert len(rec.raw) < 2 * QUARANTINE_CHARS
    # One request per line: only the long line is refused; the others are read.
    small = json.dumps(_otlp_doc("hello"))
    lines = tmp_path / "lines.json"
    lines.write_text(small + "\n" + json.dumps(_otlp_doc("p" * 50_000)) + "\n" + small + "\n")
    recs = list(SourceReader(lines, max_line_bytes=20_000))
    assert [(r.line, r.error is None) for r in recs] == [(1, True), (2, False), (3, True)]
    assert recs[1].error is not None and recs[1].error.startswith("line: longer than 20000")
    result = ingest(sqlite_engine, [pretty], settings=_settings(max_line_bytes=20_000))
    assert result.quarantined == 1 and result.reasons == {"document: longer than 20000 bytes": 1}


def test_cli_quarantines_a_giant_line_without_a_traceback(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    path, _ = _giant_jsonl(tmp_path / "giant.jsonl", 20 * MB)
    res = CliRunner().invoke(app, ["--db", url, "ingest", str(path), "--no-progress"])
    # The existing ingest rule: exit 1 ("a check failed") when any row was quarantined.
    assert res.exit_code == 1, res.output
    assert "4 interactions ingested, 0 duplicate, 1 quarantined" in res.output
    assert "line: longer than 8000000 bytes" in res.output
    assert "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)


_CHILD = """
import resource, subprocess, sys
rc = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def peak_rss_mb(db_url: str, path: Path) -> tuple[int, float]:
    """(exit code, peak RSS in MB) of ``evalwatch ingest`` on one file, in a child process.

    A wrapper process runs the CLI, so the peak is that of the CLI and its ingest worker
    alone, not of anything the caller ran before.
    """
    cli = [
        sys.executable,
        "-c",
        "from evalwatch.cli import main; main()",
        "--db",
        db_url,
        "ingest",
        str(path),
        "--no-progress",
    ]
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, *cli],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    rc, kb = out.stdout.split()
    return int(rc), int(kb) / 1024


# 1,900 MB: the line that used to crash the ingest worker with a segmentation fault.
@pytest.mark.parametrize("size_mb", [50, 500, pytest.param(1900, marks=pytest.mark.slow)])
def test_peak_rss_does_not_grow_with_the_line(tmp_path, size_mb):
    path, _ = _giant_jsonl(tmp_path / "giant.jsonl", size_mb * MB)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = make_engine(url)
    upgrade(engine)
    rc, peak = peak_rss_mb(url, path)
    assert rc == 1  # rows quarantined: a check failed, nothing crashed
    assert peak < 400, f"peak RSS {peak:.0f} MB for a {size_mb} MB line"
    [(line, raw, _, reasons)] = _quarantine(engine)
    assert line == 3 and len(raw) < _RAW_BOUND
    assert reasons == [f"line: longer than 8000000 bytes ({size_mb * MB} bytes)"]
    assert _interactions(engine) == 4
    engine.dispose()
