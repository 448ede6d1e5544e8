"""A run's scores digested in one streaming pass, in memory that does not grow with the run.

A run's scores are every score it reports (``run_scores``): those it computed and those it
reused from earlier runs, so a re-run or an overlapping window is summarised over its whole
sample.

Summaries, reports and artifacts of a run need aggregates, not every score: per-metric counts,
means and intervals (overall and per group), a sample of values for the histograms, daily
means for the trend, and a few extreme items to show. :class:`RunDigest` builds all of them
from the run's scores read chunk by chunk (:func:`evalwatch.storage.frames.iter_run_scores`),
so a run of a million scores costs the same memory as one of ten thousand. It lives beside
:mod:`evalwatch.evaluators.summary`, whose accumulators it drives, below the runs and the
reports that both use it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from evalwatch.evaluators.runner import malloc_trimmer
from evalwatch.evaluators.summary import MetricAccumulator, MetricSummary
from evalwatch.storage.frames import iter_run_scores

__all__ = ["RunDigest", "digest_run"]

# Values kept per metric for its histogram: a uniform sample, plenty for 30 bins.
SAMPLE_SIZE = 20_000
# Lowest and highest values kept per metric, from which reports pick their worst items.
EXTREMES = 5
_EXTREME_COLUMNS = ["subject_type", "subject_id", "metric", "value", "status", "group"]


@dataclass
class RunDigest:
    """Streaming aggregates of a run's scores.

    Examples:
        >>> import pandas as pd
        >>> d = RunDigest()
        >>> d.add(pd.DataFrame({
        ...     "subject_type": ["interaction"] * 3, "subject_id": [1, 2, 3],
        ...     "evaluator": ["h"] * 3, "metric": ["h.refusal"] * 3, "value": [0.0, 1.0, 0.0],
        ...     "status": ["ok"] * 3, "reason": [None] * 3, "group": ["v1", "v1", "v2"],
        ...     "ts": pd.to_datetime(["2026-11-01"] * 3, utc=True)}))
        >>> d.n_subjects, d.n_scores, round(d.metrics()[0].mean, 3)
        (3, 3, 0.333)
    """

    seed: int = 0
    n_scores: int = 0
    _overall: dict[tuple[str, str], MetricAccumulator] = field(default_factory=dict)
    _by_group: dict[tuple[str, str, str], MetricAccumulator] = field(default_factory=dict)
    _subjects: dict[str, set[int]] = field(default_factory=dict)
    _samples: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    _daily: dict[tuple[str, str, pd.Timestamp], list[float]] = field(default_factory=dict)
    _extremes: pd.DataFrame | None = None

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)

    @property
    def n_subjects(self) -> int:
        """Distinct subjects scored."""
        return sum(len(ids) for ids in self._subjects.values())

    def add(self, chunk: pd.DataFrame) -> None:
        """Fold in a chunk of :func:`evalwatch.storage.frames.run_scores_frame` rows (no texts)."""
        if chunk.empty:
            return
        self.n_scores += len(chunk)
        for subject_type, ids in chunk.groupby("subject_type", sort=False)["subject_id"]:
            self._subjects.setdefault(str(subject_type), set()).update(ids.astype(int).tolist())
        ok = (chunk["status"] == "ok") & chunk["value"].notna()
        for (evaluator, metric, group), g in chunk.groupby(
            ["evaluator", "metric", "group"], sort=False, dropna=False
        ):
            good = ok.loc[g.index]
            values = g.loc[good, "value"].to_numpy(dtype=np.float64)
            bad = g.loc[~good]
            reasons = [f"{s}: {r}" for s, r in zip(bad["status"], bad["reason"], strict=True)]
            name = str(metric).split(".", 1)[1]
            targets = [self._overall.setdefault((str(evaluator), name), MetricAccumulator())]
            if not pd.isna(group):
                key = (str(evaluator), name, str(group))
                targets.append(self._by_group.setdefault(key, MetricAccumulator()))
            for acc in targets:
                acc.add_many(values.tolist())
                for reason in reasons:
                    acc.add(None, reason)
        good_rows = chunk.loc[ok]
        for metric, g in good_rows.groupby("metric", sort=False):
            self._sample(str(metric), g["value"].to_numpy(dtype=np.float64))
        if "ts" in good_rows and not good_rows.empty:
            days = good_rows["ts"].dt.floor("D")
            sums = good_rows.groupby([good_rows["metric"], good_rows["group"], days])["value"].agg(
                ["sum", "count"]
            )
            for (metric, group, day), row in sums.iterrows():
                cell = self._daily.setdefault((str(metric), str(group), day), [0.0, 0.0])
                cell[0] += float(row["sum"])
                cell[1] += float(row["count"])
        self._keep_extremes(good_rows)

    def _sample(self, metric: str, values: np.ndarray) -> None:
        # Bottom-k by a random key: a uniform sample without replacement, whatever the order.
        keys = self._rng.random(values.size)
        if metric in self._samples:
            old_v, old_k = self._samples[metric]
            values, keys = np.concatenate([old_v, values]), np.concatenate([old_k, keys])
        if values.size > SAMPLE_SIZE:
            keep = np.argpartition(keys, SAMPLE_SIZE)[:SAMPLE_SIZE]
            values, keys = values[keep], keys[keep]
        self._samples[metric] = (values, keys)

    def _keep_extremes(self, rows: pd.DataFrame) -> None:
        parts = [] if self._extremes is None else [self._extremes]
        for _, g in rows.groupby("metric", sort=False):
            parts += [g.nsmallest(EXTREMES, "value"), g.nlargest(EXTREMES, "value")]
        if not parts:
            return
        both = pd.concat(parts, ignore_index=True)[_EXTREME_COLUMNS]
        kept = [
            pd.concat([g.nsmallest(EXTREMES, "value"), g.nlargest(EXTREMES, "value")])
            for _, g in both.groupby("metric", sort=False)
        ]
        self._extremes = (
            pd.concat(kept)
            .drop_duplicates(["subject_type", "subject_id", "metric"])
            .reset_index(drop=True)
        )

    def metrics(self) -> list[MetricSummary]:
        """One summary per (evaluator, metric), sorted."""
        return [acc.summary(ev, m) for (ev, m), acc in sorted(self._overall.items())]

    def by_group(self) -> list[MetricSummary]:
        """One summary per (evaluator, metric, group), sorted; ``model_version`` is the group."""
        return [acc.summary(ev, m, g) for (ev, m, g), acc in sorted(self._by_group.items())]

    def sample_frame(self) -> pd.DataFrame:
        """``metric``, ``value``: at most :data:`SAMPLE_SIZE` values per metric."""
        frames = [
            pd.DataFrame({"metric": metric, "value": values})
            for metric, (values, _) in sorted(self._samples.items())
        ]
        return pd.concat(frames, ignore_index=True) if frames else _empty(["metric", "value"])

    def daily_frame(self) -> pd.DataFrame:
        """``metric``, ``group``, ``ts`` (day), ``value`` (that day's mean)."""
        rows = [
            {"metric": m, "group": g, "ts": day, "value": s / n}
            for (m, g, day), (s, n) in sorted(self._daily.items(), key=lambda kv: kv[0][:2])
            if n
        ]
        return pd.DataFrame(rows) if rows else _empty(["metric", "group", "ts", "value"])

    def extremes_frame(self) -> pd.DataFrame:
        """The lowest and highest scored rows per metric (for the worst items)."""
        if self._extremes is None:
            return _empty(_EXTREME_COLUMNS)
        return self._extremes.copy()


def _empty(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})


def digest_run(
    engine: Engine, run_id: int, chunks: Iterable[pd.DataFrame] | None = None
) -> RunDigest:
    """Digest the scores a run reports (or the given chunks) into a :class:`RunDigest`."""
    digest = RunDigest()
    release = malloc_trimmer()
    for chunk in chunks if chunks is not None else iter_run_scores(engine, run_id):
        digest.add(chunk)
        del chunk
        release()  # each chunk's rows are garbage now; keep RSS at one chunk's worth
    return digest
