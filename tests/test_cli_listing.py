"""evalwatch.storage.listing: runs and quarantined rows, filtered, newest first, on SQLite and
PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from evalwatch.storage.listing import get_quarantined, get_run, list_quarantine, list_runs
from evalwatch.storage.models import Quarantine, RunStatus
from evalwatch.storage.repo import create_run, finish_run


def _quarantine(engine: Engine, line: int, reasons: list[str], kind: str = "traffic") -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.insert(Quarantine.__table__),  # type: ignore[attr-defined]
            {
                "kind": kind,
                "source": "bad.jsonl",
                "line": line,
                "raw": f"row {line}",
                "raw_hash": f"h{line}",
                "reasons": reasons,
            },
        )


def test_runs_filtered_by_kind_and_status_newest_first(engine: Engine) -> None:
    traffic = create_run(engine, "traffic", params={"n": 1})
    dataset = create_run(engine, "dataset", params={"n": 2}, model="m1")
    assert dataset.id is not None
    finish_run(engine, dataset.id, RunStatus.completed, summary={"metrics": []})
    page = list_runs(engine)
    assert [r.id for r in page.rows] == [dataset.id, traffic.id] and page.total == 2
    assert [r.id for r in list_runs(engine, kind="dataset").rows] == [dataset.id]
    assert [r.id for r in list_runs(engine, status="running").rows] == [traffic.id]
    limited = list_runs(engine, limit=1)
    assert len(limited.rows) == 1 and limited.total == 2
    got = get_run(engine, dataset.id)
    assert got is not None and got.model == "m1" and got.params == {"n": 2}
    assert get_run(engine, 10_000) is None


def test_quarantine_filtered_by_reason_text_case_insensitively(engine: Engine) -> None:
    _quarantine(engine, 1, ["timestamp: in the future", "app: missing"])
    _quarantine(engine, 2, ["malformed JSON (Expecting value)"])
    _quarantine(engine, 3, ["request_id: 100% not unique"], kind="feedback")
    page = list_quarantine(engine)
    assert [q.line for q in page.rows] == [3, 2, 1] and page.total == 3
    assert [q.line for q in list_quarantine(engine, reason="FUTURE").rows] == [1]
    assert [q.line for q in list_quarantine(engine, reason="json").rows] == [2]
    # LIKE wildcards in the filter are taken literally.
    assert [q.line for q in list_quarantine(engine, reason="100%").rows] == [3]
    assert list_quarantine(engine, reason="_").total == 1  # only "request_id" has one
    assert [q.line for q in list_quarantine(engine, kind="feedback").rows] == [3]
    first = list_quarantine(engine).rows[-1]
    assert first.id is not None
    row = get_quarantined(engine, first.id)
    assert row is not None and row.reasons == ["timestamp: in the future", "app: missing"]
    assert get_quarantined(engine, 10_000) is None
