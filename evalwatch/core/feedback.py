"""What each kind of user feedback means, written once: its value, its signal, its direction.

Ingest validates feedback rows against this table (:mod:`evalwatch.checks.validation`), the
alert rules read each kind as the selector ``feedback.<signal>`` (:mod:`evalwatch.checks.rules`,
:mod:`evalwatch.storage.ux_signal`), the drift check compares each kind's signal between
windows (:mod:`evalwatch.runs.drift`) and the overview shows each signal's trend per model
version (:mod:`evalwatch.reporting.ux_signal`). None of them keeps a list of kinds of its own.

Two ways a kind becomes a number:

* ``mean``: the mean of the stored values (a 1-5 rating, a thumbs vote as 1/0, seconds);
* ``rate``: the share of interactions with at least one such event (a follow-up question, a
  copy of the answer): the denominator is every interaction of the window, rated or not.

Real apps name their events in many ways; :data:`KIND_ALIASES` maps the common names
(``thumbs_up``, ``copied``, ``regenerate``, ``time_to_feedback_ms``...) to a kind, with the
value an alias implies (``thumbs_down`` is a thumbs vote ``down``) and the factor that turns
its value into the kind's unit (milliseconds into seconds).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "FEEDBACK_KINDS",
    "FEEDBACK_KIND_NAMES",
    "FEEDBACK_SIGNALS",
    "KIND_ALIASES",
    "TASK_SUCCESS_EVALUATOR",
    "TASK_SUCCESS_RUBRIC",
    "FeedbackAlias",
    "FeedbackKind",
    "canonical_kind",
    "feedback_kind",
    "signal_kind",
]

#: Task success is judged, not logged: the pass rate of this pass/fail judge rubric (part of
#: the built-in ``task_success`` rubric set) is the overview's task-success rate.
TASK_SUCCESS_EVALUATOR = "judge"
TASK_SUCCESS_RUBRIC = "task_completed"

ValueType = Literal["scale", "up_down", "seconds", "event"]


@dataclass(frozen=True)
class FeedbackKind:
    """One kind of feedback and the signal it gives.

    Attributes:
        name: The stored ``feedback.kind``.
        value: ``scale`` (an integer rating on the ingest settings' scale), ``up_down`` (a
            thumbs vote, stored as 1 up / 0 down with its label), ``seconds`` (a duration,
            required, never negative) or ``event`` (something happened; a value is optional).
        signal: The signal's name: the alert selector is ``feedback.<signal>``.
        aggregate: ``mean`` of the values, or ``rate``: share of interactions with the event.
        higher_is_better: Which way is good; None where neither is (a change either way is
            news, not a regression).
        description: One line for people.

    Examples:
        >>> feedback_kind("copy").signal
        'copy_rate'
    """

    name: str
    value: ValueType
    signal: str
    aggregate: Literal["mean", "rate"]
    higher_is_better: bool | None
    description: str

    @property
    def selector(self) -> str:
        """The alert-rule selector of this kind's signal.

        Examples:
            >>> feedback_kind("rating").selector
            'feedback.rating'
        """
        return f"feedback.{self.signal}"

    @property
    def drift_feature(self) -> str:
        """The feature name the drift check gives this kind's signal.

        Examples:
            >>> feedback_kind("abandon").drift_feature
            'abandon'
        """
        return self.name


#: Every kind of feedback, in the order reports list them.
FEEDBACK_KINDS: tuple[FeedbackKind, ...] = (
    FeedbackKind("rating", "scale", "rating", "mean", True, "the user's rating (1-5 stars)"),
    FeedbackKind(
        "thumbs", "up_down", "thumbs_up_rate", "mean", True, "share of thumbs votes that are up"
    ),
    FeedbackKind(
        "time_to_rate",
        "seconds",
        "time_to_rate",
        "mean",
        None,
        "seconds from the answer to the user's rating",
    ),
    FeedbackKind(
        "follow_up",
        "event",
        "follow_up_rate",
        "rate",
        False,
        "share of interactions followed by a clarifying question",
    ),
    FeedbackKind(
        "copy", "event", "copy_rate", "rate", True, "share of interactions whose answer was copied"
    ),
    FeedbackKind(
        "refinement",
        "event",
        "refinement_rate",
        "rate",
        False,
        "share of interactions the user asked to redo or refine (regenerate, rephrase, edit)",
    ),
    FeedbackKind(
        "abandon",
        "event",
        "abandon_rate",
        "rate",
        False,
        "share of interactions the user abandoned (left without using the answer)",
    ),
)

#: The stored kind names.
FEEDBACK_KIND_NAMES: tuple[str, ...] = tuple(k.name for k in FEEDBACK_KINDS)
#: Signal name (the part after ``feedback.``) -> its kind.
FEEDBACK_SIGNALS: dict[str, FeedbackKind] = {k.signal: k for k in FEEDBACK_KINDS}
_BY_NAME: dict[str, FeedbackKind] = {k.name: k for k in FEEDBACK_KINDS}


@dataclass(frozen=True)
class FeedbackAlias:
    """What an event name an app logs stands for.

    Attributes:
        kind: The kind it is.
        value: The value it implies when the row has none (``thumbs_down`` -> ``"down"``).
        scale: Factor from the row's value to the kind's unit (``0.001`` for milliseconds).
    """

    kind: str
    value: str | None = None
    scale: float = 1.0


def _alias(
    kind: str, *names: str, value: str | None = None, scale: float = 1.0
) -> dict[str, FeedbackAlias]:
    return {n: FeedbackAlias(kind, value, scale) for n in names}


#: Event name an app logs (squashed: lower case, letters and digits only) -> what it means.
KIND_ALIASES: dict[str, FeedbackAlias] = {
    **_alias("rating", "userrating", "userscore", "csat", "score"),
    **_alias("thumbs", "thumb", "vote", "helpful"),
    **_alias("thumbs", "thumbsup", "thumbup", "upvote", value="up"),
    **_alias("thumbs", "thumbsdown", "thumbdown", "downvote", value="down"),
    **_alias(
        "time_to_rate",
        "timetorate",
        "timetorates",
        "timetofeedback",
        "ratinglatency",
        "ratingdelays",
        "secondstorate",
    ),
    **_alias("time_to_rate", "timetoratems", "timetofeedbackms", "ratinglatencyms", scale=0.001),
    **_alias("follow_up", "followup", "followupquestion", "clarification", "clarifyingquestion"),
    **_alias("copy", "copied", "copytoclipboard", "copyresponse", "copyanswer", "copycode"),
    **_alias(
        "refinement",
        "refine",
        "refined",
        "regenerate",
        "regenerated",
        "retry",
        "rephrase",
        "editprompt",
        "refinementrequest",
    ),
    **_alias("abandon", "abandoned", "abandonment", "bounce", "sessionabandoned"),
}


def _squash(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def canonical_kind(text: str) -> FeedbackAlias | None:
    """The kind an event name stands for, or None when it names no known kind.

    Case, spaces, ``-`` and ``_`` do not matter.

    Examples:
        >>> canonical_kind("Thumbs-Down")
        FeedbackAlias(kind='thumbs', value='down', scale=1.0)
        >>> canonical_kind("follow_up").kind, canonical_kind("time_to_rate_ms").scale
        ('follow_up', 0.001)
        >>> canonical_kind("like") is None
        True
    """
    squashed = _squash(text)
    for k in FEEDBACK_KINDS:
        if _squash(k.name) == squashed:
            return FeedbackAlias(k.name)
    return KIND_ALIASES.get(squashed)


def feedback_kind(name: str) -> FeedbackKind:
    """The kind stored as ``name``.

    Raises:
        KeyError: Not a kind of :data:`FEEDBACK_KINDS`.

    Examples:
        >>> feedback_kind("time_to_rate").value
        'seconds'
    """
    return _BY_NAME[name]


def signal_kind(signal: str) -> FeedbackKind | None:
    """The kind whose signal is ``signal`` (the selector's part after ``feedback.``), if any.

    Examples:
        >>> signal_kind("abandon_rate").name
        'abandon'
        >>> signal_kind("nope") is None
        True
    """
    return FEEDBACK_SIGNALS.get(signal)
