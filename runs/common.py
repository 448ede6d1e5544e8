"""Steps shared by every job: building evaluators, provenance, summaries, profiles."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.engine import Engine

from evalwatch.evaluators.base import BaseEvaluator, create_evaluator
from evalwatch.evaluators.runner import RunResult
from evalwatch.evaluators.summary import MetricSummary, summarize
from evalwatch.runs.digest import RunDigest, digest_run
from evalwatch.settings import Settings
from evalwatch.storage.models import EvaluatorProfile
from evalwatch.storage.repo import replace_profiles, run_profiles

__all__ = [
    "adopt_stored_summary",
    "build_evaluators",
    "evaluator_provenance",
    "merge_profiles",
    "run_summary_from_store",
    "summaries_from_frame",
]


def build_evaluators(
    names: Sequence[str],
    settings: Settings,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    engine: Engine | None = None,
) -> list[BaseEvaluator[Any]]:
    """Create evaluators by name with options from settings, then ``overrides``.

    Evaluators that keep state in the store (the judge's cache) are given ``engine`` through
    their ``use_store`` method.

    Raises:
        KeyError: An unknown evaluator name (the message lists the known ones).
        ValueError: Invalid options for an evaluator.
    """
    out = []
    for name in dict.fromkeys(names):
        options = dict(settings.evaluator_options.get(name, {}))
        options.update((overrides or {}).get(name, {}))
        ev = create_evaluator(name, options)
        use_store = getattr(ev, "use_store", None)
        if engine is not None and callable(use_store):
            use_store(engine)
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


def summaries_from_frame(frame: Any, by: str | None = None) -> list[MetricSummary]:
    """Per-metric summaries (count, mean, CI, unscored) of a :func:`run_scores_frame`."""
    out: list[MetricSummary] = []
    if frame.empty:
        return out
    keys = ["evaluator", "metric"] + ([by] if by else [])
    for key, g in frame.groupby(keys, sort=True, dropna=False):
        evaluator, metric = key[0], key[1]
        values = [v if s == "ok" else None for v, s in zip(g["value"], g["status"], strict=True)]
        reasons = [
            None if s == "ok" else f"{s}: {r}"
            for s, r in zip(g["status"], g["reason"], strict=True)
        ]
        summary = summarize(evaluator, metric.split(".", 1)[1], values, reasons)
        if by:
            summary.model_version = str(key[2])
        out.append(summary)
    return out


def run_summary_from_store(
    engine: Engine, run_id: int, digest: RunDigest | None = None
) -> dict[str, Any]:
    """A run's summary from the store: every score it reports, computed by it or reused.

    Complete even after a resumed crash.

    ``digest`` is the run's :class:`~runs.digest.RunDigest` when the caller has it.
    """
    if digest is None:
        digest = digest_run(engine, run_id)
    return {
        "n_subjects": digest.n_subjects,
        "n_scores": digest.n_scores,
        "metrics": [m.model_dump(mode="json") for m in digest.metrics()],
        "by_model_version": [m.model_dump(mode="json") for m in digest.by_group()],
    }


def adopt_stored_summary(engine: Engine, result: RunResult) -> None:
    """Replace a pass's per-metric summaries with the whole run's, from the store.

    A pass already summarises the scores it reuses; after a resumed crash the store also holds
    what earlier passes linked, which this folds in.
    """
    stored = run_summary_from_store(engine, result.run_id)
    result.metrics = [MetricSummary.model_validate(m) for m in stored["metrics"]]
    result.by_model_version = [MetricSummary.model_validate(m) for m in stored["by_model_version"]]


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
    Means are weighted by busy seconds, peaks are maxima, counts and energy are sums.
    """
    rows = run_profiles(engine, run_id)
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
    if folded:
        replace_profiles(engine, replaced, folded)
    return merged
