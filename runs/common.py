"""Steps shared by every evaluation job: building evaluators, scoring a batch, finishing.

A traffic or test-set run is prepared by its own module (:mod:`evalwatch.runs.traffic`,
:mod:`evalwatch.runs.dataset`) into a :class:`~evalwatch.runs.summary.RunPlan` and its subject
ids; then :func:`score_batch` scores the ids (all at once in the CLI, one batch per Prefect task
in a flow) and :func:`finish_evaluation` folds the profiles, reads the run's scores back into one
:class:`~evalwatch.runs.summary.RunSummary` and completes the run through its
:class:`~evalwatch.runs.lifecycle.RunLifecycle`. :func:`evaluate_here` is those steps in this
process.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from sqlalchemy.engine import Engine

from evalwatch.evaluators.base import BaseEvaluator, create_evaluator
from evalwatch.evaluators.digest import RunDigest, digest_run
from evalwatch.evaluators.runner import run_evaluation
from evalwatch.runs.lifecycle import RunLifecycle, run_lifecycle
from evalwatch.runs.summary import BatchStats, RunPlan, RunSummary
from evalwatch.settings import Settings
from evalwatch.storage.models import EvaluatorProfile
from evalwatch.storage.repo import replace_profiles, run_profiles

__all__ = [
    "FinishedRun",
    "PlannedRun",
    "build_evaluators",
    "evaluate_here",
    "evaluator_provenance",
    "finish_evaluation",
    "merge_profiles",
    "run_summary_from_store",
    "score_batch",
]


class PlannedRun:
    """What a prepared run of either kind reads off its :class:`~evalwatch.runs.summary.RunPlan`."""

    plan: RunPlan

    @property
    def run_id(self) -> int:
        """The run's id."""
        return self.plan.run_id

    @property
    def resumed(self) -> bool:
        """The run existed already (same subjects and evaluators): this pass completes it."""
        return self.plan.resumed


def build_evaluators(
    names: Sequence[str],
    settings: Settings,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    engine: Engine | None = None,
) -> list[BaseEvaluator[Any]]:
    """Create evaluators by name with options from settings, then ``overrides``.

    Every evaluator is given ``settings`` through :meth:`BaseEvaluator.use_settings` (the
    judge takes its endpoint, key and model from them, not from the environment) and
    ``engine`` through :meth:`BaseEvaluator.use_store` (the judge keeps its cache there; the
    others ignore both).

    Raises:
        KeyError: An unknown evaluator name (the message lists the known ones).
        ValueError: Invalid options for an evaluator.
    """
    out = []
    for name in dict.fromkeys(names):
        options = dict(settings.evaluator_options.get(name, {}))
        options.update((overrides or {}).get(name, {}))
        ev = create_evaluator(name, options)
        ev.use_settings(settings)
        if engine is not None:
            ev.use_store(engine)
        out.append(ev)
    return out


def evaluator_provenance(evaluators: Sequence[BaseEvaluator[Any]]) -> dict[str, Any]:
    """Name -> version, config and config hash, as stored on the run."""
    return {
        ev.name: {
            "version": ev.version,
            "config_hash": prov.config_hash,
            "config": prov.config,
        }
        for ev in evaluators
        for prov in [ev.provenance()]
    }


def run_summary_from_store(
    engine: Engine, run_id: int, digest: RunDigest | None = None
) -> dict[str, Any]:
    """A run's summary from the store: every score it reports, computed by it or reused.

    Complete even after a resumed crash.

    ``digest`` is the run's :class:`~evalwatch.evaluators.digest.RunDigest` when the caller has it.
    """
    if digest is None:
        digest = digest_run(engine, run_id)
    return {
        "n_subjects": digest.n_subjects,
        "n_scores": digest.n_scores,
        "metrics": [m.model_dump(mode="json") for m in digest.metrics()],
        "by_model_version": [m.model_dump(mode="json") for m in digest.by_group()],
    }


def _weighted(rows: Sequence[EvaluatorProfile], attr: str) -> float | None:
    pairs = [(getattr(r, attr), r.seconds) for r in rows if getattr(r, attr) is not None]
    total = sum(w for _, w in pairs)
    if not pairs:
        return None
    if total <= 0:
        return sum(v for v, _ in pairs) / len(pairs)
    return sum(v * w for v, w in pairs) / total


def _max(rows: Sequence[EvaluatorProfile], attr: str) -> float | None:
    values = [getattr(r, attr) for r in rows if getattr(r, attr) is not None]
    return max(values) if values else None


def _sum(rows: Sequence[EvaluatorProfile], attr: str) -> float | None:
    values = [getattr(r, attr) for r in rows if getattr(r, attr) is not None]
    return sum(values) if values else None


def merge_profiles(engine: Engine, run_id: int) -> list[EvaluatorProfile]:
    """Fold the per-batch profiles of a run into one row per evaluator and version.

    Flow tasks profile their own batch; the store keeps one summary per evaluator per run.
    Means are weighted by busy seconds, peaks are maxima, counts and energy are sums. Passes
    of one run that finish at once each fold what they read; one whose rows another folded
    first reads them again.
    """
    for _ in range(_MERGE_TRIES):
        merged, replaced, folded = _fold_profiles(run_id, run_profiles(engine, run_id))
        if not folded or replace_profiles(engine, replaced, folded):
            return merged
    # Other passes keep folding these rows: their merges cover them; report what is stored.
    return run_profiles(engine, run_id)


# Concurrent finishers of one run rarely collide twice; beyond this the stored rows stand.
_MERGE_TRIES = 5


def _fold_profiles(
    run_id: int, rows: Sequence[EvaluatorProfile]
) -> tuple[list[EvaluatorProfile], list[EvaluatorProfile], list[EvaluatorProfile]]:
    """Fold profile rows: one per evaluator and version.

    Returns:
        ``(merged, replaced, folded)``: the row of each evaluator and version, the stored
        rows that new ones replace, and those new ones.
    """
    groups: dict[tuple[str, str], list[EvaluatorProfile]] = {}
    for r in rows:
        groups.setdefault((r.evaluator, r.evaluator_version), []).append(r)
    merged: list[EvaluatorProfile] = []
    replaced: list[EvaluatorProfile] = []
    folded: list[EvaluatorProfile] = []
    for (name, version), parts in groups.items():
        if len(parts) == 1:
            merged.append(parts[0])
            continue
        seconds = sum(p.seconds for p in parts)
        n_items = sum(p.n_items for p in parts)
        tokens = _sum(parts, "n_tokens")
        details: dict[str, Any] = {"merged_batches": len(parts)}
        for p in parts:
            for k, v in (p.details or {}).items():
                details.setdefault(k, v)
        m = EvaluatorProfile(
            run_id=run_id,
            evaluator=name,
            evaluator_version=version,
            device=parts[0].device,
            gpu_available=any(p.gpu_available for p in parts),
            gpu_note=next((p.gpu_note for p in parts if p.gpu_note), None),
            n_items=n_items,
            n_tokens=int(tokens) if tokens is not None else None,
            seconds=seconds,
            load_seconds=_max(parts, "load_seconds"),
            items_per_s=n_items / seconds if seconds > 0 and n_items else None,
            tokens_per_s=tokens / seconds if tokens and seconds > 0 else None,
            gpu_util_mean=_weighted(parts, "gpu_util_mean"),
            gpu_util_max=_max(parts, "gpu_util_max"),
            gpu_mem_peak_mb=_max(parts, "gpu_mem_peak_mb"),
            gpu_temp_max_c=_max(parts, "gpu_temp_max_c"),
            gpu_power_mean_w=_weighted(parts, "gpu_power_mean_w"),
            gpu_energy_j=_sum(parts, "gpu_energy_j"),
            torch_peak_mb=_max(parts, "torch_peak_mb"),
            cpu_percent_mean=_weighted(parts, "cpu_percent_mean"),
            rss_peak_mb=_max(parts, "rss_peak_mb"),
            details=details,
        )
        replaced.extend(parts)
        folded.append(m)
        merged.append(m)
    return merged, replaced, folded


# ---------------------------------------------------------------------------------------------
# The steps of an evaluation run


def score_batch(
    engine: Engine,
    plan: RunPlan,
    evaluators: Sequence[BaseEvaluator[Any]],
    ids: Sequence[int],
    *,
    chunk_size: int | None = None,
    progress: bool = False,
    console: Console | None = None,
    report_unavailable: bool = True,
) -> BatchStats:
    """Score a batch of the run's subjects; subjects scored already are reused, not rescored.

    Retrying a batch, or re-running the run after a crash, therefore never duplicates a score.

    Args:
        engine: The store.
        plan: The prepared run.
        evaluators: The run's evaluators, built (:func:`build_evaluators`).
        ids: Subject ids of this batch.
        chunk_size: Subjects read, scored and written per step (default the plan's batch size).
        progress: Show a progress bar.
        console: Where messages and the bar go.
        report_unavailable: Print each evaluator that cannot start (a flow logs them once).
    """
    result = run_evaluation(
        engine,
        evaluators,
        ids,
        plan.subject_type,
        run_id=plan.run_id,
        chunk_size=chunk_size or plan.batch_size,
        progress=progress,
        skip_scored=True,
        console=console,
        report_unavailable=report_unavailable,
    )
    return BatchStats.from_result(result)


@dataclass
class FinishedRun:
    """A finished run: its stored summary, the digest of its scores and its merged profiles.

    The digest serves the report and artifacts without a second pass over the scores.
    """

    summary: RunSummary
    digest: RunDigest
    profiles: list[EvaluatorProfile]


def finish_evaluation(
    engine: Engine, life: RunLifecycle, plan: RunPlan, stats: BatchStats
) -> FinishedRun:
    """Fold the profiles, summarise every score the run reports, and complete the run.

    The metrics are read back from the store (one streaming pass), so they cover scores reused
    from other runs and those an earlier, crashed pass of this run stored.
    """
    profiles = merge_profiles(engine, plan.run_id)
    digest = digest_run(engine, plan.run_id)
    summary = RunSummary(
        **(plan.facts.model_dump() | {"evaluators": plan.evaluators}),
        run_id=plan.run_id,
        kind=plan.kind,
        subject_type=plan.subject_type,
        n_subjects=stats.n_subjects,
        n_scores=digest.n_scores,
        metrics=digest.metrics(),
        by_model_version=digest.by_group(),
        unavailable=stats.unavailable,
        failed_batches=stats.failed_batches,
        scores_written=stats.scores_written,
        scores_reused=stats.scores_reused,
        embeddings_written=stats.embeddings_written,
        seconds=round(stats.seconds, 3),
        profiles=[
            p.model_dump(mode="json", exclude={"id", "run_id", "created_at"}) for p in profiles
        ],
    )
    return FinishedRun(life.complete(summary), digest, profiles)


def evaluate_here(
    engine: Engine,
    plan: RunPlan,
    evaluators: Sequence[BaseEvaluator[Any]],
    ids: Sequence[int],
    *,
    progress: bool = True,
    console: Console | None = None,
) -> FinishedRun:
    """Score every subject and finish the run, in this process (the CLI's path).

    A failure marks the run failed with the reason and is raised; the same parameters again
    resume the run.
    """
    with run_lifecycle(engine, plan.run_id) as life:
        stats = score_batch(engine, plan, evaluators, ids, progress=progress, console=console)
        return finish_evaluation(engine, life, plan, stats)
