"""Columnar batch results (:class:`ScoreColumns`): the type's checks, and that the store holds
exactly the same rows whether an evaluator returns columns or a list of ScoreResult objects.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.engine import Engine

from evalwatch.core import ScoreStatus
from evalwatch.evaluators.base import (
    BaseEvaluator,
    BatchResult,
    Cell,
    EvaluatorConfig,
    MetricSpec,
    Sample,
    ScoreColumns,
    ScoreResult,
    Unscored,
)
from evalwatch.evaluators.embedding import EmbeddingEvaluator
from evalwatch.evaluators.heuristics import HeuristicsEvaluator
from evalwatch.evaluators.runner import RunResult, run_evaluation
from evalwatch.evaluators.toxicity import ToxicityEvaluator
from evalwatch.storage.db import make_engine, upgrade
from evalwatch.storage.models import DatasetItem
from evalwatch.storage.repo import (
    create_run,
    insert_interactions,
    insert_model_outputs,
    register_dataset,
)
from tests.evaluator_factories import tiny_detoxify_checkpoint
from tests.test_runner import _traffic

SPECS = [
    MetricSpec(name="p", range=(0, 1)),
    MetricSpec(name="length"),  # unbounded
]


def _samples(n: int = 3) -> list[Sample]:
    return [Sample(subject_id=10 + i, prompt="q", response=f"answer {i}") for i in range(n)]


# ---------------------------------------------------------------------------------------------
# The type


def test_columns_read_back_as_the_results_they_hold() -> None:
    samples = [*_samples(2), Sample(subject_id=30, subject_type="output", prompt="q", response="")]
    cols = ScoreColumns.from_samples(
        samples,
        SPECS,
        {"p": [0.25, 1.0, math.nan], "length": [8.0, 8.0, math.nan]},
        unscored={
            (2, "p"): Unscored("empty response", ScoreStatus.skipped),
            (2, "length"): Unscored("model failed"),
        },
        details={(1, "p"): {"why": "boundary"}},
    )
    assert len(cols) == 6 and cols.metrics == ("p", "length")
    assert cols.column("p")[:2].tolist() == [0.25, 1.0]
    expected = [
        ScoreResult(subject_id=10, metric="p", value=0.25),
        ScoreResult(subject_id=10, metric="length", value=8.0),
        ScoreResult(subject_id=11, metric="p", value=1.0, details={"why": "boundary"}),
        ScoreResult(subject_id=11, metric="length", value=8.0),
        ScoreResult(
            subject_id=30,
            subject_type="output",
            metric="p",
            status=ScoreStatus.skipped,
            reason="empty response",
        ),
        ScoreResult(
            subject_id=30,
            subject_type="output",
            metric="length",
            status=ScoreStatus.error,
            reason="model failed",
        ),
    ]
    assert cols.to_results() == expected
    batch = BatchResult(columns=cols)
    assert batch.n_results == 6 and batch.scores == expected
    assert batch.score_list is None  # the objects are built only when asked for


def test_columns_are_read_only_copies() -> None:
    values = np.array([[0.5, 1.0]])
    cols = ScoreColumns.from_samples(_samples(1), SPECS, values)
    values[0, 0] = 0.9
    assert cols.values[0, 0] == 0.5
    with pytest.raises(ValueError, match="read-only"):
        cols.values[0, 0] = 0.1
    with pytest.raises(ValueError, match="read-only"):
        cols.subject_ids[0] = 99


def test_an_empty_batch_has_no_results() -> None:
    cols = ScoreColumns.from_samples([], SPECS, np.empty((0, 2)))
    assert len(cols) == 0 and cols.to_results() == []


@pytest.mark.parametrize(
    ("values", "match"),
    [
        (np.zeros((2, 2)), r"shape \(2, 2\); 3 samples x 2 metrics"),
        (np.zeros((3, 3)), r"shape \(3, 3\)"),
        ({"p": [0.1, 0.2, 0.3], "length": [1.0, 2.0]}, "differ in length: p 3, length 2"),
        ({"p": [0.1, 0.2, 0.3]}, "values for"),
    ],
)
def test_lengths_must_match(values: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ScoreColumns.from_samples(_samples(3), SPECS, values)


def test_subject_types_and_metric_names_must_match() -> None:
    with pytest.raises(ValueError, match="2 subject types for 3 samples"):
        ScoreColumns(
            subject_ids=np.arange(3),
            subject_types=("interaction", "interaction"),  # type: ignore[arg-type]
            metrics=("p",),
            values=np.zeros((3, 1)),
        )
    with pytest.raises(ValueError, match="repeat"):
        ScoreColumns.from_samples(_samples(1), ["p", "p"], np.zeros((1, 2)))


@pytest.mark.parametrize(
    ("p", "ok"),
    [(0.0, True), (1.0, True), (0.5, True), (1.0000001, False), (-0.01, False)],
)
def test_values_lie_in_their_declared_range(p: float, ok: bool) -> None:
    values = {"p": [0.5, p], "length": [-1e9, 1e9]}  # length declares no range: anything finite
    if ok:
        ScoreColumns.from_samples(_samples(2), SPECS, values)
    else:
        with pytest.raises(ValueError, match=r"subject 11\), metric 'p'.*outside .*\[0.0, 1.0\]"):
            ScoreColumns.from_samples(_samples(2), SPECS, values)


@pytest.mark.parametrize("bad", [math.inf, -math.inf])
def test_a_value_must_be_finite(bad: float) -> None:
    with pytest.raises(ValueError, match="non-finite value"):
        ScoreColumns.from_samples(_samples(1), SPECS, {"p": [0.5], "length": [bad]})


@pytest.mark.parametrize(
    ("unscored", "match"),
    [
        ({}, r"sample 1 \(subject 11\), metric 'p': NaN without an unscored reason"),
        ({(1, "p"): Unscored("")}, "needs a reason"),
        ({(1, "p"): Unscored("  ")}, "needs a reason"),
        ({(1, "p"): Unscored("why", ScoreStatus.ok)}, "has status ok"),
        ({(1, "p"): Unscored("why"), (0, "p"): Unscored("why")}, "unscored but holds the value"),
        ({(1, "p"): Unscored("why"), (5, "p"): Unscored("why")}, "row 5 outside"),
        ({(1, "p"): Unscored("why"), (0, "nope"): Unscored("why")}, "unknown metric 'nope'"),
    ],
)
def test_every_unscored_cell_has_a_reason_and_no_value(
    unscored: dict[Cell, Unscored], match: str
) -> None:
    values = {"p": [0.5, math.nan], "length": [1.0, 2.0]}
    with pytest.raises(ValueError, match=match):
        ScoreColumns.from_samples(_samples(2), SPECS, values, unscored=unscored)


def test_details_name_existing_cells() -> None:
    with pytest.raises(ValueError, match="unknown metric"):
        ScoreColumns.from_samples(
            _samples(1), SPECS, [[0.5, 1.0]], details={(0, "other"): {"a": 1}}
        )
    with pytest.raises(ValueError, match="must be a dict"):
        ScoreColumns.from_samples(
            _samples(1),
            SPECS,
            [[0.5, 1.0]],
            details={(0, "p"): "text"},  # type: ignore[dict-item]
        )


def test_a_batch_gives_its_results_in_exactly_one_form() -> None:
    cols = ScoreColumns.from_samples(_samples(1), SPECS, [[0.5, 1.0]])
    with pytest.raises(ValidationError, match="either as scores"):
        BatchResult(scores=cols.to_results(), columns=cols)
    with pytest.raises(ValidationError, match="either as scores"):
        BatchResult()
    listed = BatchResult(scores=cols.to_results())
    assert listed.columns is None and listed.n_results == 2


# ---------------------------------------------------------------------------------------------
# The same results stored through the list path and the column path


class _Pair(BaseEvaluator[EvaluatorConfig]):
    """A plug-in with ok, skipped and error results and details, built by hand in each form.

    The two forms are written independently (objects one by one; arrays and sparse maps), so
    the comparison checks the column path against the list path, not against itself.
    """

    name = "pair"
    version = "1"
    Config = EvaluatorConfig
    columnar = False

    @property
    def metrics(self) -> list[MetricSpec]:
        return list(SPECS)

    def evaluate(self, samples: Sequence[Sample]) -> BatchResult:
        if self.columnar:
            n = len(samples)
            p = np.array([len(s.response) % 7 / 7 for s in samples])
            length = np.array([float(len(s.response)) for s in samples])
            unscored: dict[Cell, Unscored] = {}
            details: dict[Cell, dict[str, Any]] = {}
            for i, s in enumerate(samples):
                if not s.response:
                    p[i] = length[i] = math.nan
                    unscored[(i, "p")] = Unscored("empty response", ScoreStatus.skipped)
                    unscored[(i, "length")] = Unscored("nothing to measure")
                elif s.subject_id % 3 == 0:
                    details[(i, "length")] = {"third": True, "n": n}
            cols = ScoreColumns.from_samples(
                samples, SPECS, {"p": p, "length": length}, unscored, details
            )
            return BatchResult(columns=cols, n_tokens=n)
        out: list[ScoreResult] = []
        for s in samples:
            if not s.response:
                out.append(ScoreResult.unscored(s, "p", "empty response", ScoreStatus.skipped))
                out.append(ScoreResult.unscored(s, "length", "nothing to measure"))
                continue
            out.append(
                ScoreResult(
                    subject_id=s.subject_id,
                    subject_type=s.subject_type,
                    metric="p",
                    value=len(s.response) % 7 / 7,
                )
            )
            out.append(
                ScoreResult(
                    subject_id=s.subject_id,
                    subject_type=s.subject_type,
                    metric="length",
                    value=float(len(s.response)),
                    details={"third": True, "n": len(samples)} if s.subject_id % 3 == 0 else None,
                )
            )
        return BatchResult(scores=out, n_tokens=len(samples))


class _PairColumns(_Pair):
    columnar = True


def _as_list(ev: BaseEvaluator[Any]) -> BaseEvaluator[Any]:
    """The same evaluator (name, version, options), its columns handed over as objects."""
    inner = type(ev).evaluate

    def evaluate(self: BaseEvaluator[Any], samples: Sequence[Sample]) -> BatchResult:
        batch = inner(self, samples)
        assert batch.columns is not None, f"{self.name} returns columns"
        return BatchResult(
            scores=batch.scores,
            embeddings=batch.embeddings,
            embedding_model=batch.embedding_model,
            n_tokens=batch.n_tokens,
        )

    listed = type(f"Listed{type(ev).__name__}", (type(ev),), {"evaluate": evaluate})
    return listed(ev.config)


def _store(path: Path) -> Engine:
    eng = make_engine(f"sqlite:///{path}")
    upgrade(eng)
    return eng


def _rows(engine: Engine, table: str, order: str = "id") -> list[dict[str, Any]]:
    with engine.connect() as conn:
        q = sa.text(f"SELECT * FROM {table} ORDER BY {order}")
        rows = [dict(r) for r in conn.execute(q).mappings()]
    for r in rows:
        r.pop("created_at", None)
    return rows


def _traffic_with_edges() -> list[dict[str, Any]]:
    rows = _traffic()
    # Long texts (truncated by the tiny detoxify model), an unknown-word text, an offensive one.
    rows[1]["response"] = "word " * 60
    rows[2]["response"] = "zzqx vvrt"
    rows[3]["response"] = "you are an idiot, I hate you"
    rows[6]["response"] = "I'm sorry, but I can't share bob@example.com or [REDACTED:email]."
    return rows


def _run(engine: Engine, evaluators: list[BaseEvaluator[Any]], chunk: int) -> RunResult:
    insert_interactions(engine, _traffic_with_edges())
    with engine.connect() as conn:
        ids = [r[0] for r in conn.execute(sa.text("SELECT id FROM interactions ORDER BY id"))]
    run = create_run(engine, "traffic")
    assert run.id is not None
    return run_evaluation(engine, evaluators, ids, run_id=run.id, chunk_size=chunk, progress=False)


@pytest.fixture(scope="module")
def evaluators(tmp_path_factory: pytest.TempPathFactory) -> list[BaseEvaluator[Any]]:
    ckpt, base = tiny_detoxify_checkpoint(tmp_path_factory.getbasetemp() / "detoxify-tiny")
    evs: list[BaseEvaluator[Any]] = [
        HeuristicsEvaluator(),
        EmbeddingEvaluator(device="cpu", batch_size=8),
        ToxicityEvaluator(backend="alt-profanity-check"),
        ToxicityEvaluator(
            backend="detoxify",
            device="cpu",
            checkpoint=str(ckpt),
            huggingface_config_path=str(base),
            batch_size=4,
        ),
    ]
    for ev in evs:
        ev.load()
    return evs


def test_column_and_list_paths_store_the_same_rows(
    tmp_path: Path, evaluators: list[BaseEvaluator[Any]]
) -> None:
    # The detoxify instance's toxicity name clashes with the embedded one's in one run only by
    # name: their options (backend, model) differ, so their scores have different keys.
    columnar = [*evaluators, _PairColumns()]
    listed = [*map(_as_list, evaluators), _Pair()]
    for a, b in zip(columnar, listed, strict=True):
        assert a.provenance().config_hash == b.provenance().config_hash
    eng_a, eng_b = _store(tmp_path / "columns.db"), _store(tmp_path / "list.db")
    res_a = _run(eng_a, columnar, chunk=5)
    res_b = _run(eng_b, listed, chunk=5)
    rows_a, rows_b = _rows(eng_a, "scores"), _rows(eng_b, "scores")
    assert rows_a == rows_b
    assert len(rows_a) == 12 * (6 + 2 + 2 + 7 + 2)
    assert _rows(eng_a, "embeddings") == _rows(eng_b, "embeddings")
    assert _rows(eng_a, "run_scores", "1, 2") == _rows(eng_b, "run_scores", "1, 2")
    assert res_a.scores_written == res_b.scores_written == len(rows_a)
    assert res_a.metrics == res_b.metrics
    assert res_a.by_model_version == res_b.by_model_version
    # The stored rows hold every kind of result, so the comparison covers each.
    statuses = {(r["evaluator"], r["status"], r["reason"]) for r in rows_a}
    assert ("heuristics", "skipped", "sample does not expect JSON") in statuses
    assert ("embedding", "skipped", "empty response") in statuses
    assert ("embedding", "skipped", "no reference") in statuses
    assert ("pair", "error", "nothing to measure") in statuses
    details: dict[tuple[str, str], list[Any]] = {}
    for r in rows_a:
        found = json.loads(r["details"]) if isinstance(r["details"], str) else r["details"]
        if found:
            details.setdefault((r["evaluator"], r["metric"]), []).append(found)
    assert {"truncated": True, "tokens": 62, "max_tokens": 32} in details[("toxicity", "safety")]
    assert {"known_terms": 0, "note": "no term the model knows; the value is its prior"} in (
        details[("toxicity", "offensive")]
    )
    assert details[("heuristics", "pii_leak")][0]["count"] >= 2
    for eng in (eng_a, eng_b):
        eng.dispose()


def test_blocked_outputs_are_unscored_the_same_way(tmp_path: Path) -> None:
    stores = []
    for label, ev in (
        ("columns", HeuristicsEvaluator()),
        ("list", _as_list(HeuristicsEvaluator())),
    ):
        eng = _store(tmp_path / f"{label}.db")
        ds, _ = register_dataset(eng, "qa", [{"item_key": "a", "input": "2+2?", "reference": "4"}])
        with eng.connect() as conn:
            (item,) = conn.execute(sa.select(DatasetItem.__table__.c.id)).scalars()  # type: ignore[attr-defined]
        out_ids = insert_model_outputs(
            eng,
            [
                {
                    "dataset_item_id": item,
                    "model": "m",
                    "output": "4",
                    "error": None,
                    "output_hash": "h0",
                },
                {
                    "dataset_item_id": item,
                    "model": "m2",
                    "output": "",
                    "error": "timeout",
                    "output_hash": "h1",
                },
            ],
        )
        run = create_run(eng, "dataset", dataset_id=ds.id)
        assert run.id is not None
        run_evaluation(eng, [ev], out_ids, subject_type="output", run_id=run.id, progress=False)
        stores.append(_rows(eng, "scores"))
        eng.dispose()
    assert stores[0] == stores[1]
    blocked = [r for r in stores[0] if r["reason"] == "model output failed: timeout"]
    assert len(blocked) == 6 and {r["status"] for r in blocked} == {"skipped"}


# ---------------------------------------------------------------------------------------------
# Columns that break the contract are stored as explicit errors, never as values


class _WrongIds(_PairColumns):
    name = "wrong-ids"

    def evaluate(self, samples: Sequence[Sample]) -> BatchResult:
        shifted = [s.model_copy(update={"subject_id": s.subject_id + 1000}) for s in samples]
        return super().evaluate(shifted)


class _OutOfRange(_PairColumns):
    name = "out-of-range"

    def evaluate(self, samples: Sequence[Sample]) -> BatchResult:
        values = np.full((len(samples), 2), 2.0)  # p declares [0, 1]
        return BatchResult(columns=ScoreColumns.from_samples(samples, SPECS, values))


def test_broken_columns_become_unscored_errors(tmp_path: Path) -> None:
    eng = _store(tmp_path / "store.db")
    res = _run(eng, [_WrongIds(), _OutOfRange()], chunk=100)
    rows = _rows(eng, "scores")
    assert len(rows) == 2 * 12 * 2
    assert all(r["status"] == "error" and r["value"] is None for r in rows)
    reasons = {r["evaluator"]: r["reason"] for r in rows}
    assert reasons["wrong-ids"].startswith("contract violation: column row 0 is subject (1001,")
    assert "outside its declared range [0.0, 1.0]" in reasons["out-of-range"]
    assert reasons["out-of-range"].startswith("evaluator error: ValueError:")
    assert res.failed_batches == {"wrong-ids": 1, "out-of-range": 1}
    eng.dispose()
