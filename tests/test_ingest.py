from __future__ import annotations

import csv
import hashlib
import hmac
import importlib.util
import io
import json
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from rich.console import Console
from typer.testing import CliRunner

import evalwatch.ingest.pipeline as pipeline
from evalwatch.cli import app
from evalwatch.ingest.pipeline import derived_request_id, ingest, keyed_hash
from evalwatch.settings import IngestSettings, Settings
from evalwatch.storage.models import Interaction
from evalwatch.storage.repo import insert_ignore, table_counts

REPO = Path(__file__).resolve().parent.parent
BAD = REPO / "datasets" / "bad_traffic.jsonl"
EXPECTED = json.loads((REPO / "datasets" / "bad_traffic.expected.json").read_text())
KEY = "ingest-test-key"


def _settings(**ingest_kw) -> Settings:
    return Settings(hash_key=KEY, ingest=IngestSettings(**ingest_kw))


def _generator():
    name = "generate_sample_data"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _traffic(n: int, seed: int = 3) -> list[dict]:
    start = datetime(2026, 10, 1, tzinfo=UTC)
    return list(_generator().generate_traffic(n, start, 14, seed, 3))


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _count(engine, table: str, where: str = "") -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT COUNT(*) FROM {table} {where}")).scalar_one())


def _check_outcomes(result) -> None:
    assert result.outcomes is not None
    got = {o.line: o for o in result.outcomes}
    assert set(got) == {int(k) for k in EXPECTED["lines"]}, "every line must be accounted for"
    for line, exp in EXPECTED["lines"].items():
        o = got[int(line)]
        assert o.status == exp["outcome"], (line, exp["case"], o.reasons)
        for sub in exp["reasons"]:
            assert any(sub in r for r in o.reasons), (line, exp["case"], sub, o.reasons)
        if o.status == "quarantined":
            assert len(o.reasons) == len(exp["reasons"]), (line, exp["case"], o.reasons)


@pytest.mark.parametrize("parallel", [False, True], ids=["in-process", "worker"])
def test_bad_traffic_every_line_is_accounted_for(engine, parallel):
    result = ingest(engine, [BAD], settings=_settings(), collect_outcomes=True, parallel=parallel)
    _check_outcomes(result)
    totals = EXPECTED["totals"]
    assert result.ingested == totals["stored"]
    assert result.duplicates == totals["duplicate"]
    assert result.quarantined == totals["quarantined"]
    assert sum(result.skipped.values()) == totals["skipped"]
    assert result.feedback == EXPECTED["feedback"]
    assert result.warnings == {"invalid UTF-8 bytes replaced": 1}
    assert result.rows == len(EXPECTED["lines"]) - totals["skipped"]
    # The store agrees with the report.
    assert _count(engine, "interactions") == totals["stored"]
    assert _count(engine, "feedback") == EXPECTED["feedback"]
    source = str(BAD.resolve())
    with engine.connect() as conn:
        q = (
            conn.execute(
                sa.text("SELECT line, raw, reasons, source, kind FROM quarantine ORDER BY line")
            )
            .mappings()
            .all()
        )
    assert [r["line"] for r in q] == sorted(
        int(k) for k, v in EXPECTED["lines"].items() if v["outcome"] == "quarantined"
    )
    assert {r["source"] for r in q} == {source} and {r["kind"] for r in q} == {"traffic"}
    by_line = {r["line"]: r for r in q}
    reasons = by_line[29]["reasons"]
    reasons = json.loads(reasons) if isinstance(reasons, str) else reasons
    assert len(reasons) == 3
    assert by_line[3]["raw"].startswith('{"request_id": "bad-003"')


def test_bad_traffic_outcomes_do_not_depend_on_chunk_size(sqlite_engine, tmp_path):
    from evalwatch.storage.db import make_engine, upgrade

    for size, parallel in ((1, False), (7, True)):
        eng = make_engine(f"sqlite:///{tmp_path / f's{size}.db'}")
        upgrade(eng)
        result = ingest(
            eng,
            [BAD],
            settings=_settings(chunk_size=size),
            collect_outcomes=True,
            parallel=parallel,
        )
        _check_outcomes(result)
        assert result.ingested == EXPECTED["totals"]["stored"]
        eng.dispose()


def test_stored_rows_are_redacted_hashed_and_flagged(engine):
    ingest(engine, [BAD], settings=_settings())
    with engine.connect() as conn:
        rows = {
            r["request_id"]: dict(r)
            for r in conn.execute(sa.text("SELECT * FROM interactions")).mappings()
        }
    pii = rows["bad-002"]
    assert "jane.doe@example.com" not in pii["prompt"]
    assert "[REDACTED:email]" in pii["prompt"] and "[REDACTED:card]" in pii["prompt"]
    assert "[REDACTED:secret]" in pii["response"]
    assert pii["redactions"] == 5
    expected_hash = hmac.new(KEY.encode(), b"user_00001", hashlib.sha256).hexdigest()
    assert pii["user_hash"] == expected_hash == keyed_hash("user_00001", KEY.encode())
    assert rows["bad-040"]["user_hash"] == keyed_hash("12345", KEY.encode())
    with engine.connect() as conn:
        dump = " ".join(
            str(v) for r in conn.execute(sa.text("SELECT * FROM interactions")) for v in r
        )
    assert "user_00001" not in dump and "sess_000001" not in dump
    latin = rows["bad-009"]
    assert "\ufffd" in latin["prompt"]
    meta = latin["metadata"]
    meta = json.loads(meta) if isinstance(meta, str) else meta
    assert meta["_ingest"] == {"warnings": ["invalid UTF-8 bytes replaced"]}
    assert len(rows["bad-010"]["prompt"]) == 1_048_576
    aliased = rows["bad-011"]
    assert (aliased["app"], aliased["model_name"], aliased["model_version"]) == (
        "sales-assistant",
        "acme-chat",
        "v1.1",
    )
    assert aliased["latency_ms"] == pytest.approx(640.0)
    assert str(aliased["ts"]).startswith("2026-10-02 06:30:00")  # stored as naive UTC
    extra = rows["bad-028"]["metadata"]
    extra = json.loads(extra) if isinstance(extra, str) else extra
    assert isinstance(extra.pop("detected_language"), str)  # the prompt's, for fairness
    assert extra == {"topic": "shipping", "team": "payments", "region": "eu-west"}
    derived = [rid for rid in rows if rid.startswith("h-")]
    assert len(derived) == 1
    # Quarantined raw text is redacted too.
    with engine.connect() as conn:
        raws = [r[0] for r in conn.execute(sa.text("SELECT raw FROM quarantine"))]
    assert not any("jane.doe@example.com" in r for r in raws)


def test_no_redact_stores_text_as_is(engine):
    ingest(engine, [BAD], settings=_settings(), redact=False)
    with engine.connect() as conn:
        prompt, n = conn.execute(
            sa.text("SELECT prompt, redactions FROM interactions WHERE request_id = 'bad-002'")
        ).one()
    assert "jane.doe@example.com" in prompt and n == 0


def test_ingesting_twice_stores_nothing_new(engine, tmp_path):
    path = _write_jsonl(tmp_path / "t.jsonl", _traffic(700))
    first = ingest(engine, [path], settings=_settings(chunk_size=300), parallel=True)
    assert (first.ingested, first.duplicates, first.quarantined) == (700, 0, 0)
    counts = table_counts(engine)
    second = ingest(engine, [path], settings=_settings())
    assert (second.ingested, second.duplicates, second.quarantined) == (0, 700, 0)
    assert second.feedback == 0
    assert table_counts(engine) == counts
    assert counts["feedback"] == first.feedback > 0


@pytest.mark.parametrize("parallel", [False, True], ids=["in-process", "worker"])
def test_a_crash_loses_nothing_reported_and_a_rerun_finishes(
    engine, tmp_path, monkeypatch, parallel
):
    rows = _traffic(1500, seed=5)
    path = _write_jsonl(tmp_path / "t.jsonl", rows)
    reported: list[int] = []
    real = pipeline.insert_interactions
    calls = {"n": 0}

    def crashing(engine_, batch):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated crash while writing chunk 2")
        return real(engine_, batch)

    monkeypatch.setattr(pipeline, "insert_interactions", crashing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        ingest(
            engine,
            [path],
            settings=_settings(chunk_size=500),
            parallel=parallel,
            on_chunk=lambda r: reported.append(r.ingested),
        )
    assert reported == [500]
    assert _count(engine, "interactions") >= reported[-1] == 500
    monkeypatch.setattr(pipeline, "insert_interactions", real)
    again = ingest(engine, [path], settings=_settings(chunk_size=500), parallel=parallel)
    assert (again.ingested, again.duplicates, again.quarantined) == (1000, 500, 0)
    with engine.connect() as conn:
        stored = [r[0] for r in conn.execute(sa.text("SELECT request_id FROM interactions"))]
    assert len(stored) == len(set(stored)) == 1500
    expected_ids = {r.get("request_id") for r in rows} - {None}
    assert expected_ids <= set(stored)


def test_formats_store_the_same_rows(engine, tmp_path):
    rows = _traffic(40, seed=9)
    for r in rows:
        r["request_id"] = r.get("request_id") or f"gen-{r['timestamp']}"
    jsonl = _write_jsonl(tmp_path / "t.jsonl", rows)
    fields = list(rows[0])
    csv_path = tmp_path / "t.csv"
    with csv_path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow(
                {
                    k: json.dumps(v) if isinstance(v, dict) else ("" if v is None else v)
                    for k, v in r.items()
                }
            )
    parquet = tmp_path / "t.parquet"
    pq.write_table(
        pa.Table.from_pylist([{**r, "metadata": json.dumps(r["metadata"])} for r in rows]),
        parquet,
    )

    def snapshot():
        with engine.connect() as conn:
            got = conn.execute(
                sa.text(
                    "SELECT request_id, ts, app, model_name, model_version, prompt, response, "
                    "context, latency_ms, input_tokens, output_tokens, cost, user_hash, "
                    "session_hash FROM interactions ORDER BY request_id"
                )
            ).all()
            fb = conn.execute(
                sa.text("SELECT kind, value, label FROM feedback ORDER BY kind, value")
            ).all()
        return [tuple(r) for r in got], [tuple(r) for r in fb]

    baseline = None
    for path in (jsonl, csv_path, parquet):
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM feedback"))
            conn.execute(sa.text("DELETE FROM interactions"))
        result = ingest(engine, [path], settings=_settings())
        assert (result.ingested, result.quarantined) == (40, 0), path.suffix
        snap = snapshot()
        baseline = baseline or snap
        assert snap == baseline, path.suffix


def test_feedback_files(engine, tmp_path):
    traffic = _traffic(5, seed=11)
    for i, r in enumerate(traffic):
        r["request_id"] = f"fb-{i}"
        r["rating"] = None
        r["thumbs"] = None
    ingest(engine, [_write_jsonl(tmp_path / "t.jsonl", traffic)], settings=_settings())
    ts = "2026-10-20T00:00:00Z"
    feedback = [
        {"request_id": "fb-0", "kind": "rating", "value": 4, "timestamp": ts},
        {
            "request_id": "fb-1",
            "kind": "thumbs",
            "value": "down",
            "timestamp": ts,
            "comment": "wrong",
        },
        {"request_id": "fb-2", "kind": "follow_up", "value": "and the price?", "timestamp": ts},
        {"request_id": "fb-3", "kind": "abandon", "timestamp": ts},
        {"request_id": "fb-0", "kind": "rating", "value": 4, "timestamp": ts},  # a repeat
        {"request_id": "nope", "kind": "rating", "value": 3, "timestamp": ts},
        {"request_id": "fb-4", "kind": "rating", "value": 11, "timestamp": ts},
        {"request_id": "fb-4", "type": "stars", "value": 3, "timestamp": ts},
        "not an object",
    ]
    path = tmp_path / "fb.jsonl"
    path.write_text("".join(json.dumps(f) + "\n" for f in feedback) + "{oops\n")
    result = ingest(engine, [path], kind="feedback", settings=_settings(), collect_outcomes=True)
    assert (result.ingested, result.duplicates, result.quarantined) == (4, 1, 5)
    assert result.feedback == 4
    assert result.outcomes is not None
    status = {o.line: o.status for o in result.outcomes}
    assert status == {
        1: "stored",
        2: "stored",
        3: "stored",
        4: "stored",
        5: "duplicate",
        6: "quarantined",
        7: "quarantined",
        8: "quarantined",
        9: "quarantined",
        10: "quarantined",
    }
    assert result.reasons["request_id: unknown interaction"] == 1
    assert result.reasons["value: rating outside the 1..5 scale"] == 1
    assert any(k.startswith("kind: not one of") for k in result.reasons)
    with engine.connect() as conn:
        fb = conn.execute(
            sa.text(
                "SELECT i.request_id, f.kind, f.value, f.label, f.comment FROM feedback f "
                "JOIN interactions i ON i.id = f.interaction_id ORDER BY i.request_id"
            )
        ).all()
        kinds = {r[0] for r in conn.execute(sa.text("SELECT kind FROM quarantine"))}
    assert [tuple(r) for r in fb] == [
        ("fb-0", "rating", 4.0, None, None),
        ("fb-1", "thumbs", 0.0, "down", "wrong"),
        ("fb-2", "follow_up", None, "and the price?", None),
        ("fb-3", "abandon", None, None, None),
    ]
    assert kinds == {"feedback"}
    again = ingest(engine, [path], kind="feedback", settings=_settings())
    assert (again.ingested, again.duplicates, again.quarantined) == (0, 5, 5)


def test_both_bulk_write_paths_store_the_same_rows(engine):
    now = datetime(2026, 11, 1, tzinfo=UTC)
    rows = [
        {
            "request_id": f"bulk-{i}",
            "ts": now,
            "app": "a",
            "model_name": "m",
            "model_version": "v",
            "prompt": f"p{i}",
            "response": "r",
            "context": None,
            "metadata": {"i": i} if i % 2 else None,
            "latency_ms": 1.5,
            "input_tokens": i,
            "user_hash": None,
        }
        for i in range(1200)
    ]
    small, large = rows[:400], rows[400:]  # 400 go row by row in VALUES, 800 through staging
    with engine.begin() as conn:
        assert len(insert_ignore(conn, Interaction, small, ["request_id"], "request_id")) == 400
        got = insert_ignore(conn, Interaction, large + small[:10], ["request_id"], "request_id")
    assert sorted(got) == sorted(str(r["request_id"]) for r in large)
    with engine.connect() as conn:
        stored = (
            conn.execute(
                sa.text(
                    "SELECT request_id, ts, metadata, redactions, ingested_at FROM interactions"
                )
            )
            .mappings()
            .all()
        )
    by_id = {r["request_id"]: r for r in stored}
    for rid in ("bulk-3", "bulk-403", "bulk-4", "bulk-404"):
        row = by_id[rid]
        assert str(row["ts"]).startswith("2026-11-01 00:00:00")
        meta = row["metadata"]
        meta = json.loads(meta) if isinstance(meta, str) else meta
        i = int(rid.split("-")[1])
        assert meta == ({"i": i} if i % 2 else None)
        assert row["redactions"] == 0 and row["ingested_at"] is not None
    with engine.begin() as conn:
        assert insert_ignore(conn, Interaction, large, ["request_id"], "request_id") == []


def test_derived_ids_are_stable_and_content_based():
    row = {"ts": datetime(2026, 1, 1, tzinfo=UTC), "app": "a", "prompt": "p", "response": "r"}
    assert derived_request_id(row) == derived_request_id(dict(row))
    assert derived_request_id(row) != derived_request_id({**row, "response": "other"})
    # Feedback fields do not change the interaction's identity.
    assert derived_request_id(row) == derived_request_id({**row, "rating": 5})


def test_progress_bar_on_long_ingests(sqlite_engine, tmp_path, monkeypatch):
    path = _write_jsonl(tmp_path / "t.jsonl", _traffic(30))
    monkeypatch.setattr(pipeline, "_PROGRESS_MIN_BYTES", 0)
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    ingest(sqlite_engine, [path], settings=_settings(chunk_size=10), progress=True, console=console)
    assert "ingest t.jsonl" in out.getvalue()
    quiet = io.StringIO()
    ingest(
        sqlite_engine,
        [path],
        settings=_settings(),
        progress=False,
        console=Console(file=quiet, force_terminal=True),
    )
    assert quiet.getvalue() == ""


runner = CliRunner()


def test_cli_exit_codes_and_summary(db_url, tmp_path):
    clean = _write_jsonl(tmp_path / "clean.jsonl", _traffic(20))
    res = runner.invoke(app, ["--db", db_url, "ingest", str(clean), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "20 interactions ingested, 0 duplicate, 0 quarantined" in res.output
    res = runner.invoke(app, ["--db", db_url, "ingest", str(clean)])
    assert res.exit_code == 0 and "0 interactions ingested, 20 duplicate" in res.output

    res = runner.invoke(app, ["--db", db_url, "ingest", str(BAD)])
    assert res.exit_code == 1, res.output
    t = EXPECTED["totals"]
    assert (
        f"{t['stored']} interactions ingested, {t['duplicate']} duplicate, "
        f"{t['quarantined']} quarantined"
    ) in res.output
    assert "Top quarantine reasons" in res.output and "timestamp: in the future" in res.output
    assert "skipped 2 line(s): blank line" in res.output
    assert "test-hash-key" not in res.output  # the hash key from conftest never shows

    for args in (
        ["ingest", str(tmp_path / "missing.jsonl")],
        ["ingest", str(tmp_path)],
        ["ingest", str(clean), "--kind", "nonsense"],
        ["ingest", str(clean), "--format", "xml"],
        ["ingest"],
    ):
        res = runner.invoke(app, ["--db", db_url, *args])
        assert res.exit_code == 2, (args, res.output)
    # A missing file among good ones stores nothing.
    with sa.create_engine(db_url.replace("postgresql://", "postgresql+psycopg://")).connect() as c:
        before = c.execute(sa.text("SELECT COUNT(*) FROM interactions")).scalar_one()
    other = _write_jsonl(tmp_path / "other.jsonl", _traffic(5, seed=99))
    res = runner.invoke(app, ["--db", db_url, "ingest", str(other), str(tmp_path / "nope.jsonl")])
    assert res.exit_code == 2
    with sa.create_engine(db_url.replace("postgresql://", "postgresql+psycopg://")).connect() as c:
        assert c.execute(sa.text("SELECT COUNT(*) FROM interactions")).scalar_one() == before


def test_cli_feedback_kind(db_url, tmp_path):
    traffic = _traffic(3, seed=21)
    for i, r in enumerate(traffic):
        r["request_id"] = f"cli-{i}"
    clean = _write_jsonl(tmp_path / "t.jsonl", traffic)
    assert runner.invoke(app, ["--db", db_url, "ingest", str(clean)]).exit_code == 0
    fb = tmp_path / "fb.jsonl"
    fb.write_text(
        json.dumps(
            {
                "request_id": "cli-0",
                "kind": "thumbs",
                "value": "up",
                "timestamp": "2026-10-20T00:00:00Z",
            }
        )
        + "\n"
    )
    res = runner.invoke(app, ["--db", db_url, "ingest", "--kind", "feedback", str(fb)])
    assert res.exit_code == 0 and "1 feedback rows ingested" in res.output
    fb.write_text(
        json.dumps(
            {
                "request_id": "unknown",
                "kind": "thumbs",
                "value": "up",
                "timestamp": "2026-10-20T00:00:00Z",
            }
        )
        + "\n"
    )
    res = runner.invoke(app, ["--db", db_url, "ingest", "--kind", "feedback", str(fb)])
    assert res.exit_code == 1 and "request_id: unknown interaction" in res.output


def test_reasons_are_counted_once_per_row(sqlite_engine, tmp_path):
    rows = [{"request_id": f"x{i}", "prompt": "p"} for i in range(3)]
    result = ingest(sqlite_engine, [_write_jsonl(tmp_path / "m.jsonl", rows)], settings=_settings())
    assert result.reasons == Counter(
        {
            f"{f}: missing": 3
            for f in ("timestamp", "app", "model_name", "model_version", "response")
        }
    )


def test_postgres_copy_falls_back_when_a_key_appears_meanwhile(pg_database_url, monkeypatch):
    import evalwatch.storage.repo as repo
    from evalwatch.storage.db import make_engine

    engine = make_engine(pg_database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE interactions RESTART IDENTITY CASCADE"))
    now = datetime(2026, 11, 1, tzinfo=UTC)
    rows = [
        {
            "request_id": f"race-{i}",
            "ts": now,
            "app": "a",
            "model_name": "m",
            "model_version": "v",
            "prompt": "p",
            "response": "r",
        }
        for i in range(600)
    ]
    with engine.begin() as conn:
        insert_ignore(conn, Interaction, rows[:5], ["request_id"], "request_id")
    # As if another writer stored race-0..4 after the lookup: the COPY collides, is undone
    # to its savepoint, and the staging path stores the rest.
    monkeypatch.setattr(repo, "_existing_keys", lambda *a, **k: set())
    with engine.begin() as conn:
        got = insert_ignore(conn, Interaction, rows, ["request_id"], "request_id")
    assert sorted(got) == sorted(f"race-{i}" for i in range(5, 600))
    assert _count(engine, "interactions") == 600
    engine.dispose()


@pytest.mark.parametrize("parallel", [False, True], ids=["in-process", "worker"])
def test_unreadable_input_mid_run_is_raised_to_the_caller(sqlite_engine, tmp_path, parallel):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from evalwatch.ingest.readers import UnreadableFileError

    good = _write_jsonl(tmp_path / "good.jsonl", _traffic(5, seed=31))
    # A Parquet file whose footer is intact (it opens) but whose pages are damaged, so the
    # failure comes while reading; a file that is no Parquet at all fails when it is opened.
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"app": ["a"] * 1000, "prompt": [f"p{i}" for i in range(1000)]}), bad)
    data = bytearray(bad.read_bytes())
    data[10 : len(data) // 2] = b"\xab" * (len(data) // 2 - 10)
    bad.write_bytes(bytes(data))
    with pytest.raises(UnreadableFileError, match="Parquet read failed"):
        ingest(sqlite_engine, [good, bad], settings=_settings(), parallel=parallel)
    # The chunk before the unreadable file is stored.
    assert _count(sqlite_engine, "interactions") == 5


def test_chunks_also_end_on_their_text_size(sqlite_engine, monkeypatch):
    monkeypatch.setattr(pipeline, "_MAX_CHUNK_CHARS", 100_000)
    chunks: list[int] = []
    result = ingest(
        sqlite_engine,
        [BAD],
        settings=_settings(chunk_size=1000),
        collect_outcomes=True,
        on_chunk=lambda r: chunks.append(r.rows),
    )
    assert len(chunks) == 2  # the 1 MiB prompt closes the first chunk
    _check_outcomes(result)
