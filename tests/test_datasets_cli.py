from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa
from typer.testing import CliRunner

from evalwatch.cli import app
from evalwatch.ingest.datasets import check_item, check_prediction, load_dataset, load_outputs
from evalwatch.storage.db import make_engine
from evalwatch.storage.repo import dataset_items

REPO = Path(__file__).resolve().parent.parent
runner = CliRunner()


def _items(n: int = 5) -> list[dict]:
    return [
        {
            "id": f"q{i}",
            "input": f"question {i}?",
            "reference": f"answer {i}",
            "context": None,
            "tags": ["billing" if i % 2 else "shipping"],
        }
        for i in range(n)
    ]


def _write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _cli(db_url: str, *args: str):
    return runner.invoke(app, ["--db", db_url, *args])


def test_load_same_content_same_version_changed_content_new(db_url, tmp_path):
    path = _write(tmp_path / "support-qa.jsonl", _items())
    res = _cli(db_url, "datasets", "load", str(path))
    assert res.exit_code == 0, res.output
    assert "dataset support-qa version" in res.output and "5 items, new version" in res.output
    version = res.output.split("version ")[1].split(":")[0]

    # The same items in another order and with reordered tags are the same content.
    shuffled = list(reversed(_items()))
    again = _write(tmp_path / "copy.jsonl", shuffled)
    res = _cli(db_url, "datasets", "load", str(again), "--name", "support-qa")
    assert res.exit_code == 0
    assert f"version {version}: 5 items, unchanged" in res.output

    changed = _items()
    changed[2]["reference"] = "a better answer"
    res = _cli(db_url, "datasets", "load", str(_write(tmp_path / "support-qa.jsonl", changed)))
    assert res.exit_code == 0 and "new version" in res.output
    assert version not in res.output

    res = _cli(db_url, "datasets", "list")
    assert res.exit_code == 0
    assert res.output.count("support-qa") == 2 and version in res.output
    assert "│     5 │" in res.output


def test_bad_items_are_quarantined_and_the_rest_registered(db_url, tmp_path):
    rows = [
        *_items(3),
        {"id": "q0", "input": "dup", "reference": "x"},  # id used on line 1
        {"input": "no id"},
        {"id": "q9", "input": 5},
        {"id": "q8", "input": "ok", "tags": "single-tag"},
        {"id": "q7", "input": "   "},
        "[1, 2]",
        "{broken",
        "",
    ]
    path = _write(tmp_path / "mixed.jsonl", rows)
    res = _cli(db_url, "datasets", "load", str(path), "--name", "mixed")
    assert res.exit_code == 1, res.output
    assert "6 item(s) quarantined" in res.output
    assert "id: not unique" in res.output and "id: missing" in res.output
    assert "dataset mixed version" in res.output and "4 items, new version" in res.output
    engine = make_engine(db_url)
    with engine.connect() as conn:
        q = conn.execute(sa.text("SELECT line, kind FROM quarantine ORDER BY line")).all()
        ds_id = conn.execute(sa.text("SELECT id FROM datasets WHERE name='mixed'")).scalar_one()
    assert [tuple(r) for r in q] == [(i, "dataset") for i in (4, 5, 6, 8, 9, 10)]
    items = dataset_items(engine, ds_id)
    assert [i.item_key for i in items] == ["q0", "q1", "q2", "q8"]
    assert items[3].tags == ["single-tag"]
    assert items[0].input == "question 0?"
    engine.dispose()


def test_item_metadata_is_kept(engine, tmp_path):
    rows = [{"id": "a", "input": "q", "reference": "r", "difficulty": "hard", "metadata": {"k": 1}}]
    result = load_dataset(engine, _write(tmp_path / "m.jsonl", rows))
    assert result.created and result.dataset is not None and result.dataset.id is not None
    items = dataset_items(engine, result.dataset.id)
    assert items[0].meta == {"difficulty": "hard", "k": 1}


def test_bad_usage_and_files_exit_2(db_url, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    for args in (
        ["datasets", "load", str(tmp_path / "missing.jsonl")],
        ["datasets", "load", str(empty)],
        ["datasets", "load", str(empty), "--format", "otlp"],
        ["datasets", "load-outputs", str(empty), "--name", "nope"],
        ["datasets"],
    ):
        res = _cli(db_url, *args)
        assert res.exit_code == 2, (args, res.output)
    only_bad = _write(tmp_path / "bad.jsonl", ["{oops"])
    res = _cli(db_url, "datasets", "load", str(only_bad))
    assert res.exit_code == 1 and "nothing registered" in res.output


def test_list_when_empty(db_url):
    res = _cli(db_url, "datasets", "list")
    assert res.exit_code == 0 and "no datasets yet" in res.output


def test_load_outputs(db_url, tmp_path):
    path = _write(tmp_path / "qa.jsonl", _items(3))
    assert _cli(db_url, "datasets", "load", str(path)).exit_code == 0
    preds = [
        {
            "id": "q0",
            "model": "m1",
            "output": "answer 0",
            "latency_ms": 120.0,
            "input_tokens": 10,
            "output_tokens": 3,
            "cost": 0.001,
        },
        {"item_id": "q1", "model": "m1", "response": "answer 1"},
        {"id": "q2", "model": "m1", "error": "timeout"},
        {"id": "q9", "model": "m1", "output": "no such item"},
        {"id": "q0", "model": "m1", "output": "x", "cost": -1},
        {"id": "q1", "output": "no model"},
    ]
    out = _write(tmp_path / "preds.jsonl", preds)
    res = _cli(db_url, "datasets", "load-outputs", str(out), "--name", "qa")
    assert res.exit_code == 1, res.output
    assert "3 outputs stored, 0 duplicate, 3 quarantined" in res.output
    assert "id: not an item of qa" in res.output
    res = _cli(db_url, "datasets", "load-outputs", str(out), "--name", "qa")
    assert "0 outputs stored, 3 duplicate" in res.output
    engine = make_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT di.item_key, mo.model, mo.output, mo.error, mo.latency_ms "
                "FROM model_outputs mo JOIN dataset_items di ON di.id = mo.dataset_item_id "
                "ORDER BY di.item_key"
            )
        ).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [
        ("q0", "m1", "answer 0", None, 120.0),
        ("q1", "m1", "answer 1", None, None),
        ("q2", "m1", "", "timeout", None),
    ]


def test_bundled_test_set_and_predictions_load(engine):
    qa = REPO / "datasets" / "support-qa.jsonl"
    result = load_dataset(engine, qa)
    assert result.quarantined == 0 and result.items >= 200 and result.created
    preds = REPO / "datasets" / "support-qa.predictions.baseline.jsonl"
    outputs = load_outputs(engine, preds, "support-qa")
    assert outputs.quarantined == 0 and outputs.stored == result.items


def test_item_and_prediction_checks():
    item, why = check_item({"id": "a", "input": "q", "tags": ["b", "a", "a"]})
    assert item is not None and item["tags"] == ["a", "b"] and why == []
    assert check_item({"id": "a", "input": "q", "tags": [1]})[1] == [
        "tags: expected a list of strings, got list"
    ]
    assert check_item({"id": "a" * 201, "input": "q"})[1] == ["id: longer than 200 characters"]
    row, why = check_prediction({"id": "a", "model": "m", "output": "o", "input_tokens": 2.5})
    assert row is None and why == ["input_tokens: expected an integer"]
