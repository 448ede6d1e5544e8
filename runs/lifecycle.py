"""The one owner of an evaluation run's ending: completed with its summary, or failed with why.

Every path that drives a run (the CLI's in-process jobs, the gate's scoring, each Prefect flow
and its finishing task) wraps its steps in :func:`run_lifecycle`. A run whose steps raise is
marked failed with the exception's one-line reason, and the exception goes on; a run that ends
with a summary is marked completed with it, or failed when none of its evaluators could start.
The run key is untouched, so running the same parameters again resumes the same run and scores
only what is missing.

Several processes may drive one run at once (identical commands started together join the run
with the same key). Each finisher's summary is read back from the store's membership, which by
then holds every score of the sample, so the last one stored is complete. A pass that fails
after another pass completed the run leaves it completed, with that pass's summary: the failure
was this pass's (its command still reports it), not the run's.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress

from sqlalchemy.engine import Engine

from evalwatch.core import RunStatus
from evalwatch.runs.summary import RunSummary
from evalwatch.storage.repo import finish_run, run_mark

__all__ = ["RunLifecycle", "failure_reason", "run_lifecycle"]

# Stored reasons are kept short enough to read in `evalwatch runs list`.
_REASON_LIMIT = 2_000


def failure_reason(exc: BaseException) -> str:
    r"""The one line stored on a run that ``exc`` stopped.

    Examples:
        >>> failure_reason(ValueError("bad\nthing"))
        'ValueError: bad thing'
    """
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:_REASON_LIMIT] if text else type(exc).__name__


class RunLifecycle:
    """Marks one run completed or failed in the store (get one from :func:`run_lifecycle`)."""

    def __init__(self, engine: Engine, run_id: int) -> None:
        self.engine = engine
        self.run_id = run_id
        self.summary: RunSummary | None = None
        # How the run had last ended as this pass began: a completion stored after it is
        # another pass's, which this pass's failure must not undo.
        self._mark = run_mark(engine, run_id)

    def complete(self, summary: RunSummary) -> RunSummary:
        """Store the run's summary and mark it completed (failed when no evaluator started).

        Returns:
            The summary as stored, with the run's costs filled in.
        """
        if summary.no_evaluator_started():
            reason = "no evaluator could start: " + "; ".join(
                f"{k}: {v}" for k, v in summary.unavailable.items()
            )
            stored = finish_run(
                self.engine,
                self.run_id,
                RunStatus.failed,
                summary=summary.stored(),
                error=reason,
                since=self._mark,
            )
        else:
            stored = finish_run(
                self.engine, self.run_id, RunStatus.completed, summary=summary.stored()
            )
        self.summary = RunSummary.model_validate(stored)
        return self.summary

    def fail(self, reason: str) -> None:
        """Mark the run failed with ``reason`` (a summary stored earlier stays).

        A run that this pass completed itself is marked failed (a later step of it failed);
        one that another pass completed meanwhile stays completed.
        """
        since = None if self.summary is not None else self._mark
        finish_run(self.engine, self.run_id, RunStatus.failed, error=reason, since=since)


@contextmanager
def run_lifecycle(engine: Engine, run_id: int) -> Iterator[RunLifecycle]:
    """Own a run's ending: whatever the block raises marks the run failed with the reason.

    The block calls :meth:`RunLifecycle.complete` with the run's summary when its steps are done.
    Blocks may nest (a flow's body around its finishing task's); a run completed early in a
    block whose later step fails (its report, say) is marked failed, its summary kept.

    Args:
        engine: The store.
        run_id: The run (created or resumed by the job's prepare step).

    Yields:
        The run's :class:`RunLifecycle`.

    Examples:
        >>> from evalwatch.storage.db import make_engine, upgrade
        >>> from evalwatch.storage.repo import create_run, get_run
        >>> eng = make_engine("sqlite://"); _ = upgrade(eng)
        >>> run = create_run(eng, "traffic")
        >>> try:
        ...     with run_lifecycle(eng, run.id):
        ...         raise RuntimeError("scorer crashed")
        ... except RuntimeError:
        ...     pass
        >>> stored = get_run(eng, run.id)
        >>> str(stored.status), stored.error
        ('failed', 'RuntimeError: scorer crashed')
    """
    life = RunLifecycle(engine, run_id)
    try:
        yield life
    except BaseException as exc:
        # The original error is the one to report; a store that is down cannot record it.
        with suppress(Exception):
            life.fail(failure_reason(exc))
        raise
