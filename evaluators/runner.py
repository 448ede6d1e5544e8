"""Run evaluators over stored subjects, chunk by chunk, and store what they say.

:func:`run_evaluation` is the one scoring function every job calls (through
:func:`evalwatch.runs.common.score_batch`). It streams
interactions (or model outputs with their dataset items) from the store a chunk at a time,
hands each chunk to every evaluator, and writes scores, embeddings and one profile per
evaluator. Reading the next chunk and writing the last one overlap with scoring (one
background thread each, at most two chunks queued), so the store costs little wall time and
memory stays flat however many subjects a run covers.

A subject that an evaluator (same version, same score-relevant options) has scored already
is not scored again: its stored scores are reused. Every score of the sample, computed now or
reused, becomes a member of the run (``run_scores``) and enters its summary, so a run reports
its whole sample whoever computed each score.

Failures stay visible: an evaluator that cannot start is reported and skipped while the
others go on; an exception inside ``evaluate`` turns that batch's results into unscored
errors carrying the reason; nothing is silently dropped.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy.engine import Engine

from evalwatch.core import SubjectType
from evalwatch.core.defaults import DEFAULT_CHUNK_SIZE
from evalwatch.evaluators.base import (
    BaseEvaluator,
    BatchResult,
    EvaluatorUnavailable,
    Sample,
    ScoreColumns,
    ScoreResult,
)
from evalwatch.evaluators.profiling import Profiler
from evalwatch.evaluators.summary import MetricSummary, ScoreSummarizer
from evalwatch.storage.membership import ScoreKey, link_run_scores, stored_scores
from evalwatch.storage.models import (
    DatasetItem,
    EvaluatorProfile,
    Interaction,
    ModelOutput,
    ScoreStatus,
)
from evalwatch.storage.repo import (
    iter_rows,
    scored_subject_ids,
    write_embeddings,
    write_profile,
    write_scores,
)

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "RunResult",
    "malloc_trimmer",
    "run_evaluation",
]


T = TypeVar("T")


@dataclass
class RunResult:
    """What one scoring pass did: per-metric summaries, profiles, and what could not run.

    The run's stored summary is :class:`evalwatch.runs.summary.RunSummary`, built from the store.
    """

    run_id: int
    subject_type: str
    n_subjects: int
    metrics: list[MetricSummary] = field(default_factory=list)
    by_model_version: list[MetricSummary] = field(default_factory=list)
    profiles: list[EvaluatorProfile] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)
    failed_batches: dict[str, int] = field(default_factory=dict)
    scores_written: int = 0
    scores_reused: int = 0
    embeddings_written: int = 0
    seconds: float = 0.0


@dataclass
class _Chunk:
    samples: list[Sample]
    versions: dict[int, str]
    # Subjects that cannot be scored at all (e.g. a model output that failed), with the reason.
    blocked: dict[int, str]


@dataclass
class _Active:
    evaluator: BaseEvaluator[Any]
    metrics: list[str]
    profiler: Profiler
    key: ScoreKey
    # Subjects whose scores under ``key`` are stored already: reused, not scored again.
    skip: set[int]
    failed: int = 0


@dataclass
class _Link:
    """The chunk's subjects of one evaluator, and those whose stored scores it reuses."""

    key: ScoreKey
    subjects: list[int]
    reused: list[int]


@dataclass
class _Job:
    """One chunk's writes: new scores and embeddings, then the run's links to its scores."""

    scores: list[dict[str, Any]]
    embeddings: list[dict[str, Any]]
    links: list[_Link]


# ---------------------------------------------------------------------------------------------
# Loading subjects


def _interaction_chunks(
    engine: Engine,
    ids: Sequence[int],
    chunk_size: int,
    texts: Mapping[int, Mapping[str, Any]] | None = None,
) -> Iterator[tuple[int, _Chunk]]:
    for rows in iter_rows(engine, Interaction, ids, chunk_size):
        samples: list[Sample] = []
        blocked: dict[int, str] = {}
        for r in rows:
            # The texts handed in (metadata-only ingest) stand for those the store lacks.
            given = texts.get(r["id"]) if texts is not None else None
            src = given if given is not None else r
            samples.append(
                Sample(
                    subject_id=r["id"],
                    subject_type=SubjectType.interaction,
                    prompt=src["prompt"],
                    response=src["response"],
                    reference=src.get("reference"),
                    context=src.get("context"),
                    meta=r.get("metadata") or r.get("meta") or {},
                )
            )
            if given is None and r.get("text_removed_at") is not None:
                # Explicitly unscored, never a score of the placeholder text.
                blocked[r["id"]] = (
                    f"text removed ({r.get('text_removed_reason') or 'retention'}); "
                    "only its length and hash are stored"
                )
        versions = {r["id"]: r["model_version"] for r in rows}
        yield min(chunk_size, len(ids)), _Chunk(samples, versions, blocked)


def _output_chunks(
    engine: Engine, ids: Sequence[int], chunk_size: int
) -> Iterator[tuple[int, _Chunk]]:
    for rows in iter_rows(engine, ModelOutput, ids, chunk_size):
        item_ids = list(dict.fromkeys(r["dataset_item_id"] for r in rows))
        items = {
            it["id"]: it
            for batch in iter_rows(engine, DatasetItem, item_ids, max(1, len(item_ids)))
            for it in batch
        }
        samples: list[Sample] = []
        versions: dict[int, str] = {}
        blocked: dict[int, str] = {}
        for r in rows:
            item = items.get(r["dataset_item_id"])
            if item is None:
                continue
            samples.append(
                Sample(
                    subject_id=r["id"],
                    subject_type=SubjectType.output,
                    prompt=item["input"],
                    response=r["output"],
                    reference=item.get("reference"),
                    context=item.get("context"),
                    meta=item.get("metadata") or item.get("meta") or {},
                )
            )
            versions[r["id"]] = r["model"]
            if r.get("error"):
                blocked[r["id"]] = f"model output failed: {r['error']}"
        yield min(chunk_size, len(ids)), _Chunk(samples, versions, blocked)


# ---------------------------------------------------------------------------------------------
# Background reading and writing


def _prefetch(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Iterate ``items`` in a background thread, at most ``depth`` ahead."""
    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(("item", item), timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(("done", None))
        except BaseException as exc:  # re-raised in the consumer
            q.put(("error", exc))

    thread = threading.Thread(target=produce, name="evalwatch-reader", daemon=True)
    thread.start()
    try:
        while True:
            kind, payload = q.get()
            if kind == "done":
                return
            if kind == "error":
                raise payload
            yield payload
    finally:
        stop.set()
        thread.join(timeout=10)


class _Writer:
    """Writes each chunk's scores and embeddings in one transaction, off the scoring thread."""

    def __init__(self, engine: Engine, run_id: int, threaded: bool) -> None:
        self.engine = engine
        self.run_id = run_id
        self.scores_written = 0
        self.embeddings_written = 0
        self._error: BaseException | None = None
        self._q: queue.Queue[_Job | None] | None = queue.Queue(maxsize=2) if threaded else None
        self._thread: threading.Thread | None = None
        if self._q is not None:
            self._thread = threading.Thread(target=self._run, name="evalwatch-writer", daemon=True)
            self._thread.start()

    def _write(self, job: _Job) -> None:
        with self.engine.begin() as conn:
            written = write_scores(conn, job.scores) if job.scores else 0
            self.scores_written += written
            if job.embeddings:
                self.embeddings_written += write_embeddings(conn, job.embeddings)
            # In the same transaction: the run reports the chunk's scores whoever wrote them.
            # Those written now are its members already (write_scores); those it reuses are
            # linked here, and every one of the chunk's when some insert met a score that a
            # concurrent run stored since this run looked.
            raced = written < len(job.scores)
            for link in job.links:
                ids = link.subjects if raced else link.reused
                if ids:
                    link_run_scores(conn, self.run_id, link.key, ids)

    def _run(self) -> None:
        assert self._q is not None
        while True:
            job = self._q.get()
            if job is None:
                return
            if self._error is None:
                try:
                    self._write(job)
                except BaseException as exc:  # re-raised on the caller's thread
                    self._error = exc

    def submit(self, job: _Job) -> None:
        """Queue a chunk's writes (blocks while two chunks are already waiting)."""
        if self._error is not None:
            raise self._error
        if self._q is None:
            self._write(job)
        else:
            self._q.put(job)

    def close(self) -> None:
        """Wait for queued writes; raise the first write error, if any."""
        if self._q is not None and self._thread is not None:
            self._q.put(None)
            self._thread.join()
        if self._error is not None:
            raise self._error


def malloc_trimmer() -> Callable[[], None]:
    """A function returning freed heap memory to the OS (glibc), or a no-op elsewhere.

    Model inference on texts of varying length leaves glibc holding freed blocks it rarely
    gives back, so RSS creeps up chunk after chunk although nothing is kept alive (measured:
    MiniLM over 4,000 texts grows RSS by ~450 MB without a trim, ~70 MB with one per chunk).
    """
    if not sys.platform.startswith("linux"):
        return lambda: None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return lambda: None
    return lambda: trim(0)


def _threads_ok(engine: Engine) -> bool:
    # An in-memory SQLite database is private to one connection; threads would not see it.
    url = engine.url
    return not (url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"))


# ---------------------------------------------------------------------------------------------
# Scoring


def _contract_error(
    batch: BatchResult, samples: Sequence[Sample], metrics: list[str]
) -> str | None:
    if batch.columns is not None:
        return _columns_contract_error(batch.columns, samples, metrics)
    expected = len(samples) * len(metrics)
    if len(batch.scores) != expected:
        return (
            f"evaluator returned {len(batch.scores)} results for {len(samples)} samples x "
            f"{len(metrics)} metrics"
        )
    k = len(metrics)
    for i, s in enumerate(samples):
        for j, m in enumerate(metrics):
            r = batch.scores[i * k + j]
            if r.subject_id != s.subject_id or r.metric != m:
                return (
                    f"result {i * k + j} is ({r.subject_id}, {r.metric}); expected "
                    f"({s.subject_id}, {m})"
                )
    return None


def _columns_contract_error(
    cols: ScoreColumns, samples: Sequence[Sample], metrics: list[str]
) -> str | None:
    # Shapes, NaN reasons and ranges are checked where the columns are built; here, that they
    # are this batch's and this evaluator's.
    if list(cols.metrics) != metrics:
        return f"columns hold metrics {list(cols.metrics)}; expected {metrics}"
    if len(cols.subject_ids) != len(samples):
        return f"columns hold {len(cols.subject_ids)} samples for {len(samples)} samples"
    expected = [(s.subject_id, s.subject_type) for s in samples]
    got = list(zip(cols.subject_ids.tolist(), cols.subject_types, strict=True))
    if got != expected:
        i = next(i for i, (a, b) in enumerate(zip(got, expected, strict=True)) if a != b)
        return f"column row {i} is subject {got[i]}; expected {expected[i]}"
    return None


def _all_unscored(samples: Sequence[Sample], metrics: list[str], reason: str) -> list[ScoreResult]:
    return [ScoreResult.unscored(s, m, reason) for s in samples for m in metrics]


def _score_chunk(act: _Active, samples: list[Sample], console: Console) -> BatchResult:
    ev = act.evaluator
    try:
        with act.profiler.active():
            batch = ev.evaluate(samples)
        act.profiler.add(len(samples), batch.n_tokens)
    except Exception as exc:  # a failing batch becomes unscored errors
        act.failed += 1
        reason = f"evaluator error: {type(exc).__name__}: {exc}"
        if act.failed == 1:
            console.print(
                f"[red]evaluator {ev.name} failed on a batch of {len(samples)}:[/red] {reason} "
                "(results recorded as unscored errors; later failures are counted, not printed)",
                highlight=False,
            )
        return BatchResult(scores=_all_unscored(samples, act.metrics, reason[:2000]))
    problem = _contract_error(batch, samples, act.metrics)
    if problem is not None:
        act.failed += 1
        reason = f"contract violation: {problem}"
        return BatchResult(scores=_all_unscored(samples, act.metrics, reason))
    if batch.embeddings is not None and len(batch.embeddings) != len(samples):
        act.failed += 1
        batch = batch.model_copy(update={"embeddings": None, "embedding_model": None})
    return batch


def _score_row(run_id: int, act: _Active, r: ScoreResult) -> dict[str, Any]:
    value, status, reason = r.value, str(r.status), r.reason
    if status == ScoreStatus.ok and (value is None or not math.isfinite(value)):
        value, status, reason = None, str(ScoreStatus.error), f"non-finite value {value!r}"
    if status != ScoreStatus.ok:
        value = None
    ev = act.evaluator
    return {
        "run_id": run_id,
        "subject_type": r.subject_type,
        "subject_id": r.subject_id,
        "evaluator": ev.name,
        "evaluator_version": ev.version,
        "config_hash": act.key.config_hash,
        "metric": r.metric,
        "value": value,
        "label": r.label,
        "explanation": r.explanation,
        "status": status,
        "reason": reason,
        "details": r.details,
    }


def _column_rows(run_id: int, act: _Active, cols: ScoreColumns) -> list[dict[str, Any]]:
    """Score rows of columnar results, without building an object per result.

    The rows are those :func:`_score_row` makes of the same results as objects; the columns
    checked their values already (finite where ok, NaN with a reason where not).
    """
    ev = act.evaluator
    ids, types = cols.subject_ids.tolist(), cols.subject_types
    fixed = {
        "run_id": run_id,
        "evaluator": ev.name,
        "evaluator_version": ev.version,
        "config_hash": act.key.config_hash,
        "label": None,
        "explanation": None,
    }
    return [
        {
            **fixed,
            "subject_type": types[i],
            "subject_id": ids[i],
            "metric": metric,
            "value": value,
            "status": str(status),
            "reason": reason,
            "details": det,
        }
        for i, metric, value, status, reason, det in cols.cells()
    ]


def _progress(console: Console, enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]evaluating"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
        transient=False,
    )


def _load_all(
    evaluators: Sequence[BaseEvaluator[Any]],
    engine: Engine,
    subject_type: SubjectType,
    subject_ids: Sequence[int],
    skip_scored: bool,
    console: Console,
    report_unavailable: bool = True,
) -> tuple[list[_Active], dict[str, str]]:
    active: list[_Active] = []
    unavailable: dict[str, str] = {}
    for ev in evaluators:
        t0 = time.perf_counter()
        try:
            ev.load()
        except EvaluatorUnavailable as exc:
            unavailable[ev.name] = str(exc)
            if report_unavailable:
                console.print(
                    f"[yellow]evaluator {ev.name} unavailable, skipped:[/yellow] {exc}",
                    highlight=False,
                )
            continue
        load_s = time.perf_counter() - t0
        prof = Profiler(ev.name, ev.version, device=ev.device)
        prof.load_seconds = load_s
        key = ScoreKey(subject_type, ev.name, ev.version, ev.provenance().config_hash)
        skip = (
            scored_subject_ids(
                engine,
                ev.name,
                ev.version,
                subject_type,
                among=subject_ids,
                config_hash=key.config_hash,
            )
            if skip_scored
            else set()
        )
        active.append(_Active(ev, ev.metric_names, prof, key, skip))
    return active, unavailable


def run_evaluation(
    engine: Engine,
    evaluators: Sequence[BaseEvaluator[Any]],
    subject_ids: Sequence[int],
    subject_type: SubjectType | str = SubjectType.interaction,
    *,
    run_id: int,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: bool = True,
    skip_scored: bool = False,
    console: Console | None = None,
    on_chunk: Callable[[int], None] | None = None,
    report_unavailable: bool = True,
    texts: Mapping[int, Mapping[str, Any]] | None = None,
) -> RunResult:
    """Score stored subjects with every evaluator and store scores, embeddings and profiles.

    Args:
        engine: The store.
        evaluators: Evaluator instances (loaded here; unavailable ones are reported and skipped).
        subject_ids: Interaction ids, or model-output ids when ``subject_type`` is ``output``.
        subject_type: ``interaction`` or ``output``.
        run_id: The :class:`~storage.models.EvalRun` the scores belong to.
        chunk_size: Subjects read, scored and written per step.
        progress: Show a progress bar.
        skip_scored: Reuse the stored scores of subjects an evaluator (same version, same
            score-relevant options) has already scored instead of scoring them again. Reused
            scores are reported like new ones.
        console: Where messages and the progress bar go (default: stderr).
        on_chunk: Called with the number of subjects after each chunk (e.g. flow progress).
        report_unavailable: Print each evaluator that cannot start. A caller that runs many
            batches (a flow's tasks) reports them once itself and turns this off.
        texts: Interactions only: texts by interaction id (prompt, response, context,
            reference) for subjects stored without them (metadata-only ingest scores them
            before they are gone). A subject whose text was removed and is not given here
            is recorded unscored (skipped) with the reason.

    Returns:
        Per-metric summaries overall and per model version, profiles, unavailable evaluators.
        The run's status is its job's to set (:func:`evalwatch.runs.lifecycle.run_lifecycle`).

    Examples:
        >>> from evalwatch.storage.db import make_engine, upgrade
        >>> from evalwatch.storage.repo import create_run
        >>> from evalwatch.evaluators.heuristics import HeuristicsEvaluator
        >>> eng = make_engine("sqlite://"); _ = upgrade(eng)
        >>> run = create_run(eng, "traffic")
        >>> res = run_evaluation(eng, [HeuristicsEvaluator()], [], run_id=run.id, progress=False)
        >>> res.n_subjects, res.unavailable
        (0, {})
    """
    if subject_type not in set(SubjectType):
        raise ValueError(
            f"subject_type must be one of {', '.join(repr(t.value) for t in SubjectType)}, "
            f"not {subject_type!r}"
        )
    subject_type = SubjectType(subject_type)
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    console = console or Console(stderr=True)
    t_start = time.perf_counter()
    ids = list(dict.fromkeys(subject_ids))
    result = RunResult(run_id=run_id, subject_type=subject_type, n_subjects=len(ids))
    summarizer = ScoreSummarizer()
    active, result.unavailable = _load_all(
        evaluators, engine, subject_type, ids, skip_scored, console, report_unavailable
    )
    threaded = _threads_ok(engine)
    writer = _Writer(engine, run_id, threaded)
    chunks: Iterable[tuple[int, _Chunk]] = (
        _interaction_chunks(engine, ids, chunk_size, texts)
        if subject_type == SubjectType.interaction
        else _output_chunks(engine, ids, chunk_size)
    )
    if threaded:
        chunks = _prefetch(chunks)
    for act in active:
        act.profiler.start()
    try:
        with _progress(console, progress and bool(ids) and bool(active)) as bar:
            task = bar.add_task("evaluating", total=len(ids))
            done = 0
            release = malloc_trimmer()
            for n_ids, chunk in chunks if active else ():
                job, reused = _score_all(engine, active, chunk, run_id, summarizer, console)
                writer.submit(job)
                result.scores_reused += reused
                del job, chunk
                release()
                step = min(n_ids, len(ids) - done)
                done += step
                bar.advance(task, step)
                if on_chunk is not None:
                    on_chunk(step)
    except BaseException:
        for act in active:
            act.profiler.stop()
        with suppress(BaseException):  # the scoring error is the one to report
            writer.close()
        raise
    for act in active:
        act.profiler.stop()
    writer.close()
    result.scores_written = writer.scores_written
    result.embeddings_written = writer.embeddings_written
    for act in active:
        profile = act.profiler.profile(run_id)
        if act.failed:
            profile.details = {**(profile.details or {}), "failed_batches": act.failed}
        write_profile(engine, profile)
        result.profiles.append(profile)
        result.failed_batches[act.evaluator.name] = act.failed
    result.metrics = summarizer.overall()
    result.by_model_version = summarizer.by_model_version()
    result.seconds = time.perf_counter() - t_start
    return result


def _fold_reused(
    engine: Engine,
    act: _Active,
    chunk: _Chunk,
    reused: list[int],
    summarizer: ScoreSummarizer,
) -> int:
    """Add the stored scores the run reuses to its summary; returns how many."""
    with engine.connect() as conn:
        rows = stored_scores(conn, act.key, reused)
    groups: dict[tuple[str, str | None], tuple[list[float], list[str]]] = {}
    for sid, metric, value, status, reason in rows:
        vals, why = groups.setdefault((metric, chunk.versions.get(sid)), ([], []))
        if status == ScoreStatus.ok and value is not None:
            vals.append(float(value))
        else:
            why.append(f"{status}: {reason}")
    for (metric, version), (vals, why) in groups.items():
        summarizer.add_many(act.evaluator.name, metric, version, vals, why)
    return len(rows)


def _score_all(
    engine: Engine,
    active: list[_Active],
    chunk: _Chunk,
    run_id: int,
    summarizer: ScoreSummarizer,
    console: Console,
) -> tuple[_Job, int]:
    score_rows: list[dict[str, Any]] = []
    emb_rows: list[dict[str, Any]] = []
    links: list[_Link] = []
    n_reused = 0
    for act in active:
        ev = act.evaluator
        reused = [s.subject_id for s in chunk.samples if s.subject_id in act.skip]
        links.append(_Link(act.key, [s.subject_id for s in chunk.samples], reused))
        if reused:
            n_reused += _fold_reused(engine, act, chunk, reused, summarizer)
        todo = [s for s in chunk.samples if s.subject_id not in act.skip]
        blocked = [s for s in todo if s.subject_id in chunk.blocked]
        runnable = [s for s in todo if s.subject_id not in chunk.blocked]
        results: list[ScoreResult] = []
        rows: list[dict[str, Any]] = []
        if runnable:
            batch = _score_chunk(act, runnable, console)
            # Columns become rows directly; a list of objects (plug-ins, failures) row by row.
            if batch.columns is not None:
                rows = _column_rows(run_id, act, batch.columns)
            else:
                results.extend(batch.scores)
            if batch.embeddings is not None:
                vectors = batch.embeddings.astype("<f2")
                model = batch.embedding_model or ev.name
                for s, vec in zip(runnable, vectors, strict=True):
                    emb_rows.append(
                        {
                            "subject_type": s.subject_type,
                            "subject_id": s.subject_id,
                            "model": model,
                            "dim": int(vec.shape[0]),
                            "dtype": "float16",
                            "vector": vec.tobytes(),
                        }
                    )
        for s in blocked:
            results.extend(
                ScoreResult.unscored(s, m, chunk.blocked[s.subject_id], ScoreStatus.skipped)
                for m in act.metrics
            )
        rows.extend(_score_row(run_id, act, r) for r in results)
        score_rows.extend(rows)
        # Summary inputs grouped per (metric, version) so they fold in with one numpy pass.
        groups: dict[tuple[str, str | None], tuple[list[float], list[str]]] = {}
        for row in rows:
            key = (row["metric"], chunk.versions.get(row["subject_id"]))
            vals, why = groups.setdefault(key, ([], []))
            if row["status"] == ScoreStatus.ok:
                vals.append(row["value"])
            else:
                why.append(f"{row['status']}: {row['reason']}")
        for (metric, version), (vals, why) in groups.items():
            summarizer.add_many(ev.name, metric, version, vals, why)
    return _Job(score_rows, emb_rows, links), n_reused
