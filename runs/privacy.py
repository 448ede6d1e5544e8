"""Metadata-only ingest: traffic stored without its texts, scored while they are in memory.

With ``ingest.text_mode: metadata_only`` the store never holds a prompt, response, context or
reference (only their length and SHA-256), so nothing could score them later. :func:`ingest_
and_score` therefore ingests through :func:`evalwatch.ingest.pipeline.ingest` and, after each
chunk's commit, scores the interactions it stored with ``privacy.ingest_evaluators``
(heuristics and the embedded toxicity classifier by default) from the texts still in memory,
through the same scoring step every run uses (:func:`evalwatch.evaluators.runner.run_evaluation`
with the texts handed in). The scores belong to one traffic run (params ``source: ingest``),
completed with its summary like any other, so reports, alerts and drift read them as usual.

With ``text_mode: full`` it is a plain ingest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from evalwatch.core import SubjectType
from evalwatch.evaluators.runner import run_evaluation
from evalwatch.ingest.pipeline import IngestResult, StoredTexts, ingest
from evalwatch.runs.common import build_evaluators, evaluator_provenance, finish_evaluation
from evalwatch.runs.lifecycle import run_lifecycle
from evalwatch.runs.summary import BatchStats, RunPlan, RunSummary
from evalwatch.settings import Settings
from evalwatch.storage.repo import create_run

__all__ = ["IngestScoring", "ingest_and_score"]


@dataclass
class IngestScoring:
    """An ingest, and the run that scored it at ingest time (None unless metadata-only)."""

    result: IngestResult
    summary: RunSummary | None = None


def ingest_and_score(
    engine: Engine,
    paths: Sequence[str | Path],
    settings: Settings,
    **ingest_options: Any,
) -> IngestScoring:
    r"""Ingest traffic; in metadata-only mode, score each stored chunk before its text goes.

    Args:
        engine: The store (migrated).
        paths: Traffic files.
        settings: Settings (``ingest.text_mode``, ``privacy.ingest_evaluators``).
        **ingest_options: Passed to :func:`evalwatch.ingest.pipeline.ingest`.

    Returns:
        The ingest counts and, in metadata-only mode, the scoring run's summary.

    Examples:
        >>> import tempfile, pathlib
        >>> from evalwatch.storage.db import make_engine, upgrade
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> e = make_engine(f"sqlite:///{d / 's.db'}"); _ = upgrade(e)
        >>> _ = (d / "t.jsonl").write_text('{"timestamp": "2026-01-01T00:00:00Z", "app": "a", '
        ...     '"model_name": "m", "model_version": "v1", "prompt": "hi", "response": "yo"}\n')
        >>> s = Settings(hash_key="k", ingest={"text_mode": "metadata_only"},
        ...              privacy={"ingest_evaluators": ["heuristics"]})
        >>> out = ingest_and_score(e, [d / "t.jsonl"], s)
        >>> out.result.ingested, out.summary.n_subjects
        (1, 1)
    """
    if settings.ingest.text_mode != "metadata_only":
        return IngestScoring(
            ingest(engine, paths, kind="traffic", settings=settings, **ingest_options)
        )
    evaluators = build_evaluators(settings.privacy.ingest_evaluators, settings, engine=engine)
    provenance = evaluator_provenance(evaluators)
    run = create_run(
        engine,
        "traffic",
        params={
            "source": "ingest",
            "text_mode": "metadata_only",
            "files": [str(Path(p).resolve()) for p in paths],
        },
        evaluators=provenance,
    )
    assert run.id is not None
    plan = RunPlan(
        run_id=run.id,
        kind="traffic",
        subject_type=SubjectType.interaction,
        evaluators=list(provenance),
        batch_size=max(1, settings.ingest.chunk_size),
    )
    parts: list[BatchStats] = []

    def score(texts: StoredTexts) -> None:
        result = run_evaluation(
            engine,
            evaluators,
            list(texts),
            run_id=plan.run_id,
            progress=False,
            skip_scored=True,
            report_unavailable=not parts,
            texts=texts,
        )
        parts.append(BatchStats.from_result(result))

    with run_lifecycle(engine, plan.run_id) as life:
        result = ingest(
            engine, paths, kind="traffic", settings=settings, on_stored=score, **ingest_options
        )
        finished = finish_evaluation(engine, life, plan, BatchStats.combine(parts))
    return IngestScoring(result, finished.summary)
