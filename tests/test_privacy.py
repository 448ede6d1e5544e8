"""Privacy controls (issue #17, section 1): opt-outs, forget, text retention, metadata-only.

Every store test runs on a real SQLite file and the real PostgreSQL (the ``engine`` fixture);
the concurrency test drives real ``evalwatch ingest`` / ``evaluate`` / ``privacy forget``
processes against one store, as in tests/test_hostile_keep.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from evalwatch.core.textprivacy import TEXT_FORGOTTEN, TEXT_REMOVED, text_digest
from evalwatch.evaluators.heuristics import HeuristicsEvaluator
from evalwatch.evaluators.runner import run_evaluation
from evalwatch.ingest.pipeline import OPTED_OUT_USER, ingest, keyed_hash
from evalwatch.runs.privacy import ingest_and_score
from evalwatch.settings import Settings
from evalwatch.storage.db import make_engine, upgrade
from evalwatch.storage.privacy import (
    Identity,
    add_optouts,
    enforce_text_retention,
    forget,
    list_optouts,
    remove_optouts,
)
from evalwatch.storage.repo import create_run, put_judge_cache, write_scores
from tests.conftest import PG_ADMIN_URL
from tests.store_load import (
    EVALWATCH,
    Cli,
    assert_clean,
    broken_invariants,
    drop_pg_database,
    fresh_pg_database,
    traffic_rows,
    write_jsonl,
)

KEY = b"test-hash-key"
_T0 = datetime(2026, 10, 1, tzinfo=UTC)


def _settings(engine: Engine, **extra: Any) -> Settings:
    return Settings(hash_key=KEY.decode(), database_url=str(engine.url), **extra)


def _rows(n: int = 40, start: datetime = _T0) -> list[dict[str, object]]:
    """Traffic of users user-0 .. user-39 (``traffic_rows``), one hour apart per 10 rows."""
    return traffic_rows("p", start, n, step=timedelta(minutes=6))


def _q(engine: Engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text(sql), params))


def _n(engine: Engine, sql: str, **params: Any) -> int:
    return int(_q(engine, sql, **params)[0][0])


def _user(name: str) -> Identity:
    return Identity("user", keyed_hash(name, KEY), name)


# ---------------------------------------------------------------------------------------------
# Opt-out at ingest


def test_opted_out_rows_are_dropped_before_anything_is_written(
    engine: Engine, tmp_path: Path
) -> None:
    rows = _rows(40)
    # A row of the opted-out user that fails validation: dropped too, never quarantined.
    bad = dict(rows[1], request_id="bad-1", prompt="", user_id="user-1")
    other_bad = dict(rows[2], request_id="bad-2", prompt="", user_id="user-2")
    path = write_jsonl(tmp_path / "t.jsonl", [*rows, bad, other_bad])
    assert add_optouts(engine, "user", [keyed_hash("user-1", KEY)], note="ticket 1") == 1
    assert add_optouts(engine, "user", [keyed_hash("user-1", KEY)]) == 0  # idempotent

    result = ingest(engine, [path], settings=_settings(engine), collect_outcomes=True)

    assert result.opted_out == {OPTED_OUT_USER: 2}  # its one valid row and its bad row
    assert result.ingested == 39
    assert result.quarantined == 1  # only user-2's bad row
    assert _n(engine, "SELECT COUNT(*) FROM interactions") == 39
    assert (
        _n(
            engine,
            "SELECT COUNT(*) FROM interactions WHERE user_hash = :h",
            h=keyed_hash("user-1", KEY),
        )
        == 0
    )
    raws = [r[0] for r in _q(engine, "SELECT raw FROM quarantine")]
    assert len(raws) == 1 and "user-2" in raws[0]
    assert all('user-1"' not in r for r in raws)
    statuses = {o.request_id or o.line: o.status for o in result.outcomes or []}
    assert sum(s == "opted_out" for s in statuses.values()) == 2
    # Off the list, the user's traffic is stored again.
    assert remove_optouts(engine, "user", [keyed_hash("user-1", KEY)]) == 1
    assert list_optouts(engine) == []
    again = ingest(engine, [path], settings=_settings(engine))
    assert again.ingested == 1 and not again.opted_out


# ---------------------------------------------------------------------------------------------
# Forget


def _ingest_and_score(engine: Engine, tmp_path: Path, rows: list[dict[str, object]]) -> int:
    path = write_jsonl(tmp_path / f"t{uuid.uuid4().hex[:6]}.jsonl", rows)
    ingest(engine, [path], settings=_settings(engine))
    run = create_run(engine, "traffic")
    assert run.id is not None
    ids = [r[0] for r in _q(engine, "SELECT id FROM interactions ORDER BY id")]
    run_evaluation(engine, [HeuristicsEvaluator()], ids, run_id=run.id, progress=False)
    return run.id


def _one(engine: Engine, sql: str, **params: Any) -> Any:
    return _q(engine, sql, **params)[0]


def test_forget_deletes_everything_derived_from_a_user_and_nothing_else(
    engine: Engine, tmp_path: Path
) -> None:
    rows = _rows(80)  # user-3 has rows 3 and 43
    run_id = _ingest_and_score(engine, tmp_path, rows)
    h3 = keyed_hash("user-3", KEY)
    mine = [r[0] for r in _q(engine, "SELECT id FROM interactions WHERE user_hash = :h", h=h3)]
    theirs = _one(
        engine,
        "SELECT id, request_id, response FROM interactions "
        "WHERE user_hash != :h ORDER BY id LIMIT 1",
        h=h3,
    )
    assert len(mine) == 2
    mine_row = _one(
        engine, "SELECT id, request_id, response FROM interactions WHERE id = :i", i=mine[0]
    )
    # What a judge run writes: cached answers, and scores naming their cache keys.
    put_judge_cache(
        engine,
        [
            {"key": k, "model": "m", "rubric": "r", "rubric_version": "1", "response": {"v": 1}}
            for k in ("k-mine", "k-theirs")
        ],
    )
    write_scores(
        engine,
        [
            {
                "run_id": run_id,
                "subject_type": "interaction",
                "subject_id": sid,
                "evaluator": "judge",
                "evaluator_version": "1",
                "config_hash": "c",
                "metric": "help",
                "value": 0.5,
                "status": "ok",
                "details": {"cache_keys": [key]},
            }
            for sid, key in ((mine[0], "k-mine"), (theirs[0], "k-theirs"))
        ],
    )
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO embeddings (subject_type, subject_id, model, dim, dtype, vector, "
                "created_at) VALUES ('interaction', :i, 'e', 1, 'float16', :v, :t)"
            ),
            [{"i": i, "v": b"\x00\x3c", "t": _T0} for i in (mine[0], theirs[0])],
        )
        # A quarantined raw row of the user (raw id) and one of another user named alike.
        for line, uid in ((1, "user-3"), (2, "user-33"), (3, "xuser-3")):
            conn.execute(
                sa.text(
                    "INSERT INTO quarantine (kind, source, line, raw, raw_hash, reasons, "
                    "created_at) VALUES ('traffic', 's', :l, :raw, :h, '[]', :t)"
                ),
                {
                    "l": line,
                    "raw": json.dumps({"user_id": uid, "prompt": "x"}),
                    "h": str(line) * 8,
                    "t": _T0,
                },
            )
        conn.execute(
            sa.text(
                "INSERT INTO quarantine (kind, source, line, raw, raw_hash, reasons, created_at)"
                " VALUES ('traffic', 's.csv', 4, :raw, 'csv', '[]', :t)"
            ),
            {"raw": f"2026-10-01,support-bot,{h3},hello", "t": _T0},
        )
        # Reports that quote the user's interaction (and another's).
        details = {"clusters": [{"examples": [mine_row[2][:200], theirs[2][:200]]}]}
        conn.execute(
            sa.text(
                "INSERT INTO drift_reports (report_key, created_at, test, feature, n_baseline, "
                "n_current, verdict, details) VALUES ('r', :t, 'topics', 'x', 1, 1, 'drift', :d)"
            ),
            {"t": _T0, "d": json.dumps(details)},
        )
        context = {
            "offending": [
                {"id": mine_row[0], "request_id": mine_row[1], "prompt": "p", "response": "r"},
                {"id": theirs[0], "request_id": theirs[1], "prompt": "p", "response": "r"},
            ]
        }
        conn.execute(
            sa.text(
                "INSERT INTO alerts (rule, scope_key, severity, status, count, opened_at, "
                "last_seen_at, context) VALUES ('r', 's', 'warning', 'open', 1, :t, :t, :c)"
            ),
            {"t": _T0, "c": json.dumps(context)},
        )
    before = {
        t: _n(engine, f"SELECT COUNT(*) FROM {t}")
        for t in ("interactions", "feedback", "scores", "run_scores", "embeddings")
    }
    my_feedback = _n(
        engine,
        "SELECT COUNT(*) FROM feedback f JOIN interactions i ON "
        "i.id = f.interaction_id WHERE i.user_hash = :h",
        h=h3,
    )
    my_scores = _n(
        engine,
        "SELECT COUNT(*) FROM scores s JOIN interactions i ON "
        "i.id = s.subject_id WHERE i.user_hash = :h",
        h=h3,
    )

    dry = forget(engine, [_user("user-3")], KEY, dry_run=True)
    assert _n(engine, "SELECT COUNT(*) FROM interactions") == before["interactions"]
    counts = forget(engine, [_user("user-3")], KEY, batch_size=1)

    assert dry == counts
    assert counts["interactions"] == 2
    assert counts["feedback"] == my_feedback
    assert counts["scores"] == my_scores > 0
    assert counts["run_scores"] == my_scores  # each score is linked to its run
    assert counts["embeddings"] == 1
    assert counts["judge_cache"] == 1
    assert counts["quarantine"] == 2  # the raw id as a user field, the hash as a CSV token
    assert counts["drift_reports"] == 1 and counts["alerts"] == 1
    assert _n(engine, "SELECT COUNT(*) FROM interactions WHERE user_hash = :h", h=h3) == 0
    assert [r[0] for r in _q(engine, "SELECT key FROM judge_cache")] == ["k-theirs"]
    lines = sorted(r[0] for r in _q(engine, "SELECT line FROM quarantine"))
    assert lines == [2, 3]  # user-33 and xuser-3 are other users
    d = (
        json.loads(_one(engine, "SELECT details FROM drift_reports")[0])
        if isinstance(_one(engine, "SELECT details FROM drift_reports")[0], str)
        else _one(engine, "SELECT details FROM drift_reports")[0]
    )
    assert d["clusters"][0]["examples"] == [TEXT_FORGOTTEN, theirs[2][:200]]
    c = _one(engine, "SELECT context FROM alerts")[0]
    c = json.loads(c) if isinstance(c, str) else c
    assert [o["request_id"] for o in c["offending"]] == [theirs[1]]
    after = {t: _n(engine, f"SELECT COUNT(*) FROM {t}") for t in before}
    assert after["interactions"] == before["interactions"] - 2
    assert after["feedback"] == before["feedback"] - my_feedback
    assert after["scores"] == before["scores"] - my_scores
    broken = broken_invariants(engine.url.render_as_string(hide_password=False))
    assert {k: v for k, v in broken.items() if k != "runs left running"} == {}

    # Idempotent: nothing more to delete.
    assert set(forget(engine, [_user("user-3")], KEY).values()) == {0}


# ---------------------------------------------------------------------------------------------
# Text retention


def test_text_retention_replaces_texts_but_keeps_scores(engine: Engine, tmp_path: Path) -> None:
    old, new = _rows(10, _T0), traffic_rows("n", _T0 + timedelta(days=10), 5)
    run_id = _ingest_and_score(engine, tmp_path, [*old, *new])
    scores_before = _n(engine, "SELECT COUNT(*) FROM scores WHERE status = 'ok'")
    first = _one(engine, "SELECT id, prompt, response FROM interactions ORDER BY ts LIMIT 1")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO drift_reports (report_key, created_at, test, feature, n_baseline, "
                "n_current, verdict, details) VALUES ('r', :t, 'topics', 'x', 1, 1, 'drift', :d)"
            ),
            {"t": _T0, "d": json.dumps({"examples": [first[2][:200]]})},
        )
    now = _T0 + timedelta(days=11)

    dry = enforce_text_retention(engine, timedelta(days=7), now, dry_run=True)
    counts = enforce_text_retention(engine, timedelta(days=7), now, batch_size=3)

    assert dry == counts and counts["interactions"] == 10 and counts["drift_reports"] == 1
    row = _one(
        engine,
        "SELECT prompt, response, prompt_chars, prompt_sha256, response_chars, "
        "text_removed_reason, context FROM interactions WHERE id = :i",
        i=first[0],
    )
    assert row[0] == row[1] == TEXT_REMOVED
    assert (row[2], row[3]) == text_digest(first[1])
    assert row[4] == len(first[2]) and row[5] == "retention" and row[6] is None
    assert _n(engine, "SELECT COUNT(*) FROM interactions WHERE text_removed_at IS NULL") == 5
    assert _n(engine, "SELECT COUNT(*) FROM scores WHERE status = 'ok'") == scores_before
    d = _one(engine, "SELECT details FROM drift_reports")[0]
    assert (json.loads(d) if isinstance(d, str) else d) == {"examples": [TEXT_REMOVED]}
    assert set(enforce_text_retention(engine, timedelta(days=7), now).values()) == {0}
    # The run's report shows none of the removed texts (old rows 5-9 have responses of their own).
    from evalwatch.reporting.run_report import render_run_html, run_markdown

    shown = render_run_html(engine, run_id) + run_markdown(engine, run_id)
    assert not [r["response"] for r in old[5:] if str(r["response"]) in shown]
    assert (
        _n(
            engine,
            "SELECT COUNT(*) FROM scores WHERE run_id = :r AND metric = 'refusal' AND value > 0",
            r=run_id,
        )
        > 0
    )  # so worst items are listed

    # A new evaluator version cannot score a removed text: unscored with the reason, not 0.
    ids = [r[0] for r in _q(engine, "SELECT id FROM interactions ORDER BY id")]
    run2 = create_run(engine, "traffic")
    assert run2.id is not None and run2.id != run_id
    ev = HeuristicsEvaluator(chars_per_token=3.5)
    run_evaluation(engine, [ev], ids, run_id=run2.id, progress=False)
    skipped = _q(
        engine,
        "SELECT status, reason, value FROM scores WHERE run_id = :r AND subject_id = :i",
        r=run2.id,
        i=first[0],
    )
    assert skipped and all(
        s == "skipped" and "text removed" in why and v is None for s, why, v in skipped
    )
    assert (
        _n(engine, "SELECT COUNT(*) FROM scores WHERE run_id = :r AND status = 'ok'", r=run2.id) > 0
    )  # the 5 recent ones


# ---------------------------------------------------------------------------------------------
# Metadata-only ingest


def test_metadata_only_ingest_stores_no_text_and_scores_at_ingest(
    engine: Engine, tmp_path: Path
) -> None:
    rows = _rows(30)
    path = write_jsonl(tmp_path / "t.jsonl", rows)
    settings = _settings(
        engine,
        ingest={"text_mode": "metadata_only", "chunk_size": 10},
        privacy={"ingest_evaluators": ["heuristics", "toxicity"]},
    )

    out = ingest_and_score(engine, [path], settings)

    assert out.result.ingested == 30 and out.summary is not None
    assert out.summary.n_subjects == 30
    texts = _q(
        engine,
        "SELECT prompt, response, prompt_chars, response_sha256, "
        "text_removed_reason FROM interactions",
    )
    assert all(p == r == TEXT_REMOVED and reason == "metadata_only" for p, r, _, _, reason in texts)
    by_len = sorted(t[2] for t in texts)
    assert by_len == sorted(len(str(r["prompt"])) for r in rows)
    assert {t[3] for t in texts} == {text_digest(str(r["response"]))[1] for r in rows}
    ok = dict(
        _q(engine, "SELECT evaluator, COUNT(*) FROM scores WHERE status = 'ok' GROUP BY evaluator")
    )
    assert ok["heuristics"] >= 30
    # The embedded toxicity classifier scored every interaction too (each of its metrics).
    assert out.summary.unavailable == {}
    assert (
        _n(
            engine,
            "SELECT COUNT(DISTINCT subject_id) FROM scores WHERE status = 'ok' "
            "AND evaluator = 'toxicity'",
        )
        == 30
    )
    assert ok["toxicity"] % 30 == 0
    # Nothing of the texts anywhere in the store.
    dump = json.dumps([list(r) for r in _q(engine, "SELECT * FROM interactions")], default=str)
    assert str(rows[0]["prompt"]) not in dump and str(rows[0]["response"]) not in dump


# ---------------------------------------------------------------------------------------------
# Forget while ingest and evaluate run (real processes)


@pytest.fixture(params=["sqlite", "postgres"])
def cli_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
        eng = make_engine(url)
        upgrade(eng)
        eng.dispose()
        yield url
        return
    name = f"evalwatch_pv_{uuid.uuid4().hex[:10]}"
    url = fresh_pg_database(PG_ADMIN_URL, name)
    eng = make_engine(url)
    upgrade(eng)
    eng.dispose()
    yield url
    drop_pg_database(PG_ADMIN_URL, name)


def test_forget_while_ingest_and_evaluate_run(cli_store: str, tmp_path: Path) -> None:
    cli = Cli(cli_store, tmp_path)
    key = cli.env["EVALWATCH_HASH_KEY"].encode()
    first = traffic_rows("a", _T0, 1_000)
    second = traffic_rows("b", _T0 + timedelta(days=1), 1_000)
    write_jsonl(tmp_path / "a.jsonl", first)
    write_jsonl(tmp_path / "b.jsonl", second)
    assert_clean(cli.run("ingest", "a.jsonl", "--no-progress"))
    window = ["--since", _T0.isoformat(), "--until", (_T0 + timedelta(days=1)).isoformat()]

    ingesting = cli.start("ingest", "b.jsonl", "--no-progress")
    evaluating = cli.start("evaluate", "--evaluators", "heuristics", *window, "--no-progress")
    # Forget again and again while both run (each pass is a whole process, as from cron).
    forgetting = [cli.run("privacy", "forget", "--user-id", "user-7", "--json")]
    while ingesting[1].poll() is None or evaluating[1].poll() is None:
        forgetting.append(cli.run("privacy", "forget", "--user-id", "user-7", "--json"))
    for done in (cli.wait(ingesting), cli.wait(evaluating), *forgetting):
        assert_clean(done, codes=(0,))
    final = cli.run("privacy", "forget", "--user-id", "user-7", "--json")
    assert_clean(final)
    again = cli.run("privacy", "forget", "--user-id", "user-7", "--json")
    assert_clean(again)
    assert set(json.loads(again.stdout).values()) == {0}

    engine = make_engine(cli_store)
    try:
        h = keyed_hash("user-7", key)
        assert _n(engine, "SELECT COUNT(*) FROM interactions WHERE user_hash = :h", h=h) == 0
        assert broken_invariants(cli_store) == {}
        # Nothing else was lost: every other user's interaction and feedback is there, and
        # every other interaction of the evaluated day has its heuristics scores.
        others = [r for r in [*first, *second] if r["user_id"] != "user-7"]
        assert _n(engine, "SELECT COUNT(*) FROM interactions") == len(others)
        fb = sum(("rating" in r) + ("thumbs" in r) for r in others)
        assert _n(engine, "SELECT COUNT(*) FROM feedback") == fb
        unscored = _n(
            engine,
            (
                "SELECT COUNT(*) FROM interactions i WHERE i.ts < :end AND NOT EXISTS (SELECT 1 "
                "FROM scores s WHERE s.subject_id = i.id AND s.subject_type = 'interaction')"
            ),
            end=_T0 + timedelta(days=1),
        )
        assert unscored == 0
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------------------------
# The installed command, from a temp dir with relative paths


def test_privacy_commands_through_the_installed_script(tmp_path: Path) -> None:
    rows = _rows(20)
    write_jsonl(tmp_path / "t.jsonl", rows)
    (tmp_path / "ids.txt").write_text("# opt-outs\nuser-4\nsession:nope\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVALWATCH_")}
    env.update(
        {
            "EVALWATCH_DATABASE_URL": "sqlite:///store.db",
            "EVALWATCH_HASH_KEY": "k",
            "EVALWATCH_HOME": str(tmp_path / "home"),
            "COLUMNS": "150",
        }
    )

    def ev(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [EVALWATCH, *args],
            cwd=tmp_path,
            env=env,
            text=True,
            capture_output=True,
            timeout=300,
            check=False,
        )

    assert ev("ingest", "t.jsonl", "--no-progress").returncode == 0
    added = ev("privacy", "opt-out", "add", "--file", "ids.txt", "--json")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout[added.stdout.index("{") :])["interactions"] == 1
    listed = ev("privacy", "opt-out", "list", "--json")
    assert {r["kind"] for r in json.loads(listed.stdout)} == {"user", "session"}
    again = ev("ingest", "t.jsonl", "--no-progress")
    assert again.returncode == 0 and "dropped 1 row(s), nothing kept: user opted out" in (
        again.stdout
    ), again.stdout
    dry = ev("privacy", "forget", "--user-id", "user-5", "--dry-run")
    assert dry.returncode == 0 and "dry run" in dry.stdout
    forgot = ev("privacy", "forget", "--user-id", "user-5", "--json")
    assert json.loads(forgot.stdout)["interactions"] == 1
    enforced = ev("privacy", "enforce", "--older-than", "1d", "--json")
    assert enforced.returncode == 0 and json.loads(enforced.stdout)["interactions"] == 18
    bad = ev("privacy", "enforce")
    assert bad.returncode == 2 and "--older-than" in bad.stderr
    none = ev("privacy", "forget")
    assert none.returncode == 2 and "--user-id" in none.stderr
    assert ev("privacy", "opt-out", "remove", "--user-id", "user-4").returncode == 0
