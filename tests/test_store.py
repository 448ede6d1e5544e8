from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from evalwatch.core import RunStatus
from evalwatch.storage.db import current_revision, head_revision, upgrade
from evalwatch.storage.repo import (
    create_run,
    finish_run,
    get_run,
    insert_interactions,
    interaction_ids_for,
    prune,
    register_dataset,
    table_counts,
    write_scores,
)
from evalwatch.storage.sampling import SampleSpec, sample_interactions


def _rows(n: int, start: datetime, versions=("v1", "v2", "v3")) -> list[dict]:
    return [
        {
            "request_id": f"r{i}",
            "ts": start + timedelta(minutes=i),
            "app": "a" if i % 2 else "b",
            "model_name": "m",
            "model_version": versions[i % len(versions)],
            "prompt": f"prompt {i}",
            "response": f"response {i}",
        }
        for i in range(n)
    ]


def test_migrations_reach_head_and_are_idempotent(engine):
    assert current_revision(engine) == head_revision()
    assert upgrade(engine) == "head"
    names = set(sa.inspect(engine).get_table_names())
    for table in (
        "interactions",
        "feedback",
        "datasets",
        "dataset_items",
        "model_outputs",
        "eval_runs",
        "scores",
        "embeddings",
        "evaluator_profiles",
        "drift_reports",
        "regression_reports",
        "alerts",
        "alert_state",
        "quarantine",
        "judge_cache",
    ):
        assert table in names


def test_sqlite_store_needs_its_folder_not_its_file(tmp_path):
    """A missing folder is a typo (exit 2, nothing made); a missing file is a new store."""
    from evalwatch.storage.db import StoreURLError, make_engine

    with pytest.raises(StoreURLError, match=r"folder \S*/no/such does not exist"):
        make_engine(f"sqlite:///{tmp_path}/no/such/x.db")
    assert list(tmp_path.iterdir()) == []
    engine = make_engine(f"sqlite:///{tmp_path}/x.db")
    try:
        assert upgrade(engine) == head_revision()
    finally:
        engine.dispose()
    assert (tmp_path / "x.db").is_file()


def test_interactions_are_idempotent_and_times_roundtrip(engine):
    start = datetime(2026, 11, 1, tzinfo=UTC)
    rows = _rows(10, start)
    assert len(insert_interactions(engine, rows)) == 10
    assert insert_interactions(engine, rows) == []
    assert table_counts(engine)["interactions"] == 10
    with engine.connect() as conn:
        ts = conn.execute(sa.text("SELECT ts FROM interactions WHERE request_id='r3'")).scalar()
    # Stored as naive UTC on both backends.
    assert str(ts).startswith("2026-11-01 00:03:00")


def test_scores_unique_key_makes_reruns_idempotent(engine):
    insert_interactions(engine, _rows(3, datetime(2026, 11, 1, tzinfo=UTC)))
    ids = interaction_ids_for(engine, ["r0", "r1", "r2"])
    run = create_run(engine, "traffic", params={"x": 1}, run_key="k1")
    score = {
        "run_id": run.id,
        "subject_type": "interaction",
        "evaluator": "e",
        "evaluator_version": "1",
        "config_hash": "h",
        "metric": "m",
        "status": "ok",
    }
    rows = [dict(score, subject_id=i, value=0.5) for i in ids.values()]
    assert write_scores(engine, rows) == 3
    assert write_scores(engine, rows) == 0
    # Resuming by run key returns the same run.
    again = create_run(engine, "traffic", params={"x": 1}, run_key="k1")
    assert again.id == run.id
    assert run.id is not None
    finish_run(engine, run.id, RunStatus.completed, summary={"n": 3})
    stored = get_run(engine, run.id)
    assert stored is not None and stored.status == "completed" and stored.summary == {"n": 3}


def test_dataset_versions_are_content_hashes(engine):
    items = [
        {"item_key": str(i), "input": f"q{i}", "reference": f"a{i}", "tags": ["t"]}
        for i in range(5)
    ]
    ds1, created1 = register_dataset(engine, "qa", items)
    ds2, created2 = register_dataset(engine, "qa", list(reversed(items)))
    assert created1 and not created2 and ds1.version == ds2.version
    changed: list[dict[str, Any]] = [
        *items[:4],
        {"item_key": "4", "input": "changed", "reference": "a4"},
    ]
    ds3, created3 = register_dataset(engine, "qa", changed)
    assert created3 and ds3.version != ds1.version


def test_sampling_is_deterministic_filtered_and_stratified(engine):
    start = datetime(2026, 11, 1, tzinfo=UTC)
    insert_interactions(engine, _rows(300, start))
    everything = sample_interactions(engine, SampleSpec())
    assert len(everything) == 300
    half = sample_interactions(engine, SampleSpec(rate=0.5, seed=3))
    assert half == sample_interactions(engine, SampleSpec(rate=0.5, seed=3))
    assert 100 < len(half) < 200
    assert half != sample_interactions(engine, SampleSpec(rate=0.5, seed=4))
    # A smaller rate keeps a subset of a larger one with the same seed.
    assert set(sample_interactions(engine, SampleSpec(rate=0.2, seed=3))) <= set(half)
    window = sample_interactions(
        engine, SampleSpec(start=start + timedelta(minutes=10), end=start + timedelta(minutes=20))
    )
    assert len(window) == 10
    only_v1 = sample_interactions(engine, SampleSpec(model_versions=["v1"], apps=["a"]))
    assert len(only_v1) == 50
    strat = sample_interactions(engine, SampleSpec(max_items=30, stratify=True))
    with engine.connect() as conn:
        versions = conn.execute(
            sa.text(
                "SELECT model_version, COUNT(*) FROM interactions WHERE id IN "
                f"({','.join(map(str, strat))}) GROUP BY model_version"
            )
        ).all()
    assert sorted(c for _, c in versions) == [10, 10, 10]


def test_sampling_only_unscored(engine):
    insert_interactions(engine, _rows(10, datetime(2026, 11, 1, tzinfo=UTC)))
    ids = sorted(interaction_ids_for(engine, [f"r{i}" for i in range(10)]).values())
    run = create_run(engine, "traffic")
    write_scores(
        engine,
        [
            {
                "run_id": run.id,
                "subject_type": "interaction",
                "subject_id": i,
                "evaluator": "e",
                "evaluator_version": "1",
                "config_hash": "h",
                "metric": "m",
                "status": "ok",
                "value": 1.0,
            }
            for i in ids[:4]
        ],
    )
    assert sample_interactions(engine, SampleSpec(unscored_by="e@1")) == ids[4:]
    assert sample_interactions(engine, SampleSpec(unscored_by="e@2")) == ids


def test_sample_spec_rejects_inverted_window():
    with pytest.raises(ValueError, match="not before end"):
        SampleSpec(start=datetime(2026, 1, 2), end=datetime(2026, 1, 1))


def test_prune_removes_old_traffic_and_its_scores(engine):
    now = datetime(2026, 11, 20, tzinfo=UTC)
    insert_interactions(engine, _rows(4, now - timedelta(days=100)))
    insert_interactions(
        engine,
        [dict(r, request_id="new" + r["request_id"]) for r in _rows(2, now - timedelta(days=1))],
    )
    run = create_run(engine, "traffic")
    old_id = interaction_ids_for(engine, ["r0"])["r0"]
    write_scores(
        engine,
        [
            {
                "run_id": run.id,
                "subject_type": "interaction",
                "subject_id": old_id,
                "evaluator": "e",
                "evaluator_version": "1",
                "config_hash": "h",
                "metric": "m",
                "status": "ok",
                "value": 1.0,
            }
        ],
    )
    deleted = prune(engine, timedelta(days=90), now=now)
    assert deleted["interactions"] == 4 and deleted["scores"] == 1
    assert table_counts(engine)["interactions"] == 2


def test_the_head_read_from_the_migration_files_is_alembics() -> None:
    from evalwatch.storage.db import _head_in_files

    assert _head_in_files() == head_revision()


def test_a_store_at_the_head_opens_without_importing_alembic(engine) -> None:
    import subprocess
    import sys

    url = engine.url.render_as_string(hide_password=False)
    code = (
        "import sys\n"
        "from evalwatch.storage.db import make_engine, upgrade\n"
        f"assert upgrade(make_engine({url!r})) == 'head'\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_store_behind_the_head_is_still_migrated(engine) -> None:
    from evalwatch.storage.db import _stored_revision

    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0004'"))
        conn.execute(sa.text("DROP TABLE dp_releases"))
        conn.execute(sa.text("DROP TABLE dp_budgets"))
    assert _stored_revision(engine) == "0004"
    assert upgrade(engine) == head_revision()
    assert {"dp_budgets", "dp_releases"} <= set(sa.inspect(engine).get_table_names())
