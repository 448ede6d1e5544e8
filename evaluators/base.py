"""The evaluator contract: samples in, exactly one result per sample per metric out.

An evaluator is a small class with a name, a version and a pydantic config, registered
explicitly with :func:`register_evaluator` (or through the ``evalwatch.evaluators`` entry-point
group). Results record what produced them, and a failure is an explicit unscored result.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from evalwatch.core import ScoreStatus, SubjectType
from evalwatch.core.metrics import MetricKind, MetricSpec

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = [
    "DEFAULT_EVALUATORS",
    "ENTRY_POINT_GROUP",
    "BaseEvaluator",
    "BatchResult",
    "Evaluator",
    "EvaluatorConfig",
    "EvaluatorConfigError",
    "EvaluatorUnavailable",
    "MetricKind",
    "MetricSpec",
    "Provenance",
    "Sample",
    "ScoreResult",
    "config_hash",
    "create_evaluator",
    "evaluator_names",
    "get_evaluator_class",
    "load_entry_points",
    "options_hash",
    "register_evaluator",
    "score_options",
]

ENTRY_POINT_GROUP = "evalwatch.evaluators"

#: The evaluators a run uses when none are named: ``evaluate``, ``run traffic``/``dataset``,
#: the flows' parameters and the gate without a baseline run (the demo adds toxicity to it).
DEFAULT_EVALUATORS: tuple[str, ...] = ("embedding", "heuristics")


class Sample(BaseModel):
    """What an evaluator scores: one response, with its prompt and optional extras."""

    model_config = ConfigDict(frozen=True)

    subject_id: int = Field(description="Interaction id or model-output id.")
    subject_type: SubjectType = Field(
        SubjectType.interaction, description="A logged interaction or a dataset model output."
    )
    prompt: str
    response: str
    reference: str | None = None
    context: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)


class ScoreResult(BaseModel):
    """One metric about one sample. ``value`` is set only when ``status`` is ok."""

    subject_id: int
    subject_type: SubjectType = SubjectType.interaction
    metric: str
    value: float | None = None
    label: str | None = None
    explanation: str | None = None
    status: ScoreStatus = ScoreStatus.ok
    reason: str | None = None
    details: dict[str, Any] | None = None

    @classmethod
    def unscored(
        cls,
        sample: Sample,
        metric: str,
        reason: str,
        status: ScoreStatus = ScoreStatus.error,
        details: dict[str, Any] | None = None,
    ) -> ScoreResult:
        """An explicit "no value" result with its reason (never a silent 0).

        Examples:
            >>> s = Sample(subject_id=1, prompt="p", response="")
            >>> ScoreResult.unscored(s, "relevance", "empty response").value is None
            True
        """
        return cls(
            subject_id=sample.subject_id,
            subject_type=sample.subject_type,
            metric=metric,
            status=status,
            reason=reason,
            details=details,
        )


class BatchResult(BaseModel):
    """An evaluator's output for a batch: scores in sample-major, metric-minor order."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    scores: list[ScoreResult]
    embeddings: np.ndarray | None = Field(
        None, description="One row per sample (float32), or None for evaluators without one."
    )
    embedding_model: str | None = None
    n_tokens: int | None = Field(None, description="Tokens processed, for tokens/s.")


class Provenance(BaseModel):
    """What produced a result, enough to rebuild the evaluator."""

    name: str
    version: str
    config: dict[str, Any] = Field(description="Every option, runtime-only ones included.")
    config_hash: str = Field(description="Hash of the score-relevant options (the score key).")


class EvaluatorUnavailable(RuntimeError):
    """Raised by ``load`` when an evaluator cannot start; the message names the setting to fix."""


class EvaluatorConfig(BaseModel):
    """Base of every evaluator's options. Unknown options are an error, not ignored.

    Every field either changes scores (the default) or only how they are computed: a field
    declared with ``json_schema_extra={"runtime": True}`` (a device, a batch size, a
    concurrency limit, retries, a cache switch) is left out of :func:`config_hash`, so a run
    that changes only such options reuses the scores already stored, and one that changes any
    other option scores again. Leaving the marker off is the safe side: a field that is not
    declared runtime-only re-scores when it changes.

    Examples:
        >>> class Cfg(EvaluatorConfig):
        ...     threshold: float = 0.5
        ...     batch_size: int = Field(32, json_schema_extra={"runtime": True})
        >>> sorted(Cfg.runtime_fields()), Cfg(batch_size=8).score_options()
        (['batch_size'], {'threshold': 0.5})
    """

    model_config = ConfigDict(extra="forbid")

    @classmethod
    def runtime_fields(cls) -> frozenset[str]:
        """Names of the fields marked runtime-only (they never change a score)."""
        return frozenset(
            name
            for name, f in cls.model_fields.items()
            if isinstance(f.json_schema_extra, dict) and f.json_schema_extra.get("runtime") is True
        )

    def score_options(self) -> dict[str, Any]:
        """The options that change scores, as JSON-able values (what :func:`config_hash` hashes)."""
        runtime = self.runtime_fields()
        return {k: v for k, v in self.model_dump(mode="json").items() if k not in runtime}


def options_hash(options: Mapping[str, Any]) -> str:
    """A short stable hash of score-relevant options (a :meth:`~EvaluatorConfig.score_options`).

    Examples:
        >>> options_hash({"b": 1, "a": [2]}) == options_hash({"a": [2], "b": 1})
        True
    """
    blob = json.dumps(dict(options), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def config_hash(config: BaseModel) -> str:
    """The hash of a config's score-relevant options: part of every score's key.

    Runtime-only fields (see :class:`EvaluatorConfig`) are left out, so scores computed on
    another device or with another batch size are the same scores.

    Examples:
        >>> len(config_hash(EvaluatorConfig()))
        16
    """
    if isinstance(config, EvaluatorConfig):
        return options_hash(config.score_options())
    return options_hash(config.model_dump(mode="json"))


def score_options(evaluator: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The score-relevant part of a stored config (e.g. a run's recorded provenance).

    Args:
        evaluator: The evaluator's name; its registered config class says which fields are
            runtime-only. An evaluator that is not registered here keeps every option.
        config: The config as stored (``Provenance.config``).

    Examples:
        >>> score_options("heuristics", {"chars_per_token": 4.0}) == {"chars_per_token": 4.0}
        True
        >>> score_options("embedding", {"model": None, "device": "cuda"})
        {'model': None}
    """
    try:
        runtime = get_evaluator_class(evaluator).Config.runtime_fields()
    except KeyError:
        runtime = frozenset()
    return {k: v for k, v in config.items() if k not in runtime}


@runtime_checkable
class Evaluator(Protocol):
    """The contract every evaluator keeps."""

    name: ClassVar[str]
    version: ClassVar[str]
    config: EvaluatorConfig

    @property
    def metrics(self) -> list[MetricSpec]:
        """What each metric means, in the order results are returned for each sample."""
        ...

    @property
    def metric_names(self) -> list[str]:
        """The metrics' names, in result order (for callers that need only names)."""
        ...

    def load(self) -> None:
        """Load models or clients once; raise :class:`EvaluatorUnavailable` if impossible."""
        ...

    def evaluate(self, samples: Sequence[Sample]) -> BatchResult:
        """Score a batch: ``len(samples) * len(metrics)`` results, sample-major, in order."""
        ...

    def provenance(self) -> Provenance:
        """Name, version and config of this evaluator."""
        ...


C = TypeVar("C", bound=EvaluatorConfig)


class BaseEvaluator(ABC, Generic[C]):
    """Shared plumbing for evaluators: config parsing, provenance, lazy one-time loading.

    Subclasses set ``name``, ``version``, ``Config`` and implement ``metrics``, ``_load``
    (optional) and ``evaluate``. An evaluator whose metrics depend on its options or on what
    loads (the judge's rubrics, the toxicity backend's labels) also overrides
    :meth:`declared_metrics`, which the metric catalogue reads without building or loading it.
    """

    name: ClassVar[str]
    version: ClassVar[str]
    Config: ClassVar[type[EvaluatorConfig]]
    #: Where the evaluator computes ("cpu", "cuda:0"), as its profile records it. Evaluators
    #: that pick a device set it in ``_load``; the rest compute on the CPU.
    device: str = "cpu"

    def __init__(self, config: C | None = None, **options: Any) -> None:
        if config is not None and options:
            raise TypeError("pass either a config object or options, not both")
        self.config: C = config if config is not None else self.Config(**options)  # type: ignore[assignment]
        self._loaded = False

    @property
    @abstractmethod
    def metrics(self) -> list[MetricSpec]:
        """What each metric means, in result order per sample (see :class:`MetricSpec`)."""

    @property
    def metric_names(self) -> list[str]:
        """The metrics' names, in result order per sample.

        A plug-in written before metrics declared their meaning returns plain names from
        ``metrics``; those are taken as names here (and get the undeclared default spec).
        """
        return [m.name if isinstance(m, MetricSpec) else str(m) for m in self.metrics]

    @classmethod
    def declared_metrics(cls, config: EvaluatorConfig | None = None) -> list[MetricSpec]:
        """Every metric this evaluator may store, known without loading anything.

        The metric catalogue is built from this.

        Args:
            config: Options to declare the metrics for (a run's recorded config, a gate's
                plan); None: under any options the evaluator takes.

        Returns:
            The specs. The default builds the evaluator (with ``config``, else its default
            options) and reads :attr:`metrics`; an evaluator that cannot be built that way, or
            whose metrics vary with options or with what loads, overrides it.
        """
        try:
            # A config given here is one of cls.Config, the class's C.
            metrics = (cls() if config is None else cls(config)).metrics  # type: ignore[arg-type]
        except Exception:  # a plug-in that needs options: it declares nothing this way
            return []
        return [m for m in metrics if isinstance(m, MetricSpec)]

    def _load(self) -> None:
        """Load heavy backends; the default has none."""

    def use_store(self, engine: Engine | None) -> None:
        """Attach the store, for evaluators that keep state in it (the judge's cache).

        Callers that build evaluators by name call it once the store is known; the default
        keeps nothing in the store and ignores it.
        """

    def load(self) -> None:
        """Load once; later calls are free."""
        if not self._loaded:
            self._load()
            self._loaded = True

    @abstractmethod
    def evaluate(self, samples: Sequence[Sample]) -> BatchResult:
        """Score a batch (see :class:`Evaluator`)."""

    def provenance(self) -> Provenance:
        """Name, version, config and the hash of its score-relevant options."""
        return Provenance(
            name=self.name,
            version=self.version,
            config=self.config.model_dump(mode="json"),
            config_hash=config_hash(self.config),
        )


_REGISTRY: dict[str, type[BaseEvaluator[Any]]] = {}
_entry_points_loaded = False

E = TypeVar("E", bound=type[BaseEvaluator[Any]])


def register_evaluator(cls: E) -> E:
    """Class decorator adding an evaluator to the registry under its ``name``.

    Examples:
        >>> @register_evaluator
        ... class Echo(BaseEvaluator[EvaluatorConfig]):
        ...     name, version, Config = "doc-echo", "1", EvaluatorConfig
        >>> "doc-echo" in evaluator_names()
        True
    """
    for attr in ("name", "version", "Config"):
        if not hasattr(cls, attr):
            raise TypeError(f"evaluator {cls.__qualname__} lacks class attribute {attr!r}")
    existing = _REGISTRY.get(cls.name)
    if existing is not None and existing is not cls:
        raise ValueError(
            f"evaluator name {cls.name!r} is taken by {existing.__module__}.{existing.__qualname__}"
        )
    _REGISTRY[cls.name] = cls
    return cls


def load_entry_points() -> list[str]:
    """Import evaluators that installed packages declare in the ``evalwatch.evaluators`` group.

    Returns:
        Names of the entry points loaded.
    """
    global _entry_points_loaded
    loaded = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        obj = ep.load()
        if isinstance(obj, type) and issubclass(obj, BaseEvaluator):
            register_evaluator(obj)
        loaded.append(ep.name)
    _entry_points_loaded = True
    return loaded


def _ensure_builtins() -> None:
    # Importing the package registers the built-in evaluators.
    import evalwatch.evaluators  # noqa: F401

    if not _entry_points_loaded:
        load_entry_points()


def evaluator_names() -> list[str]:
    """Names of all registered evaluators."""
    _ensure_builtins()
    return sorted(_REGISTRY)


def get_evaluator_class(name: str) -> type[BaseEvaluator[Any]]:
    """The registered class for ``name``; the error lists the known names."""
    _ensure_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"unknown evaluator {name!r}; registered: {', '.join(sorted(_REGISTRY))}"
        ) from None


class EvaluatorConfigError(ValueError):
    """An evaluator's options are invalid (bad input, as opposed to a failure while scoring)."""


def create_evaluator(name: str, options: dict[str, Any] | None = None) -> BaseEvaluator[Any]:
    """Build an evaluator from its name and options, validating the options.

    Raises:
        KeyError: Unknown evaluator name.
        EvaluatorConfigError: Invalid options (the message names the evaluator and the field).
    """
    cls = get_evaluator_class(name)
    try:
        return cls(**(options or {}))
    except ValidationError as exc:
        # One line per problem, joined: pydantic's own text spans lines and adds a doc link.
        problems = "; ".join(
            (f"{'.'.join(map(str, e['loc']))}: " if e["loc"] else "")
            + str(e["msg"]).removeprefix("Value error, ")
            for e in exc.errors()
        )
        raise EvaluatorConfigError(f"invalid options for evaluator {name!r}: {problems}") from exc
    except (ValueError, TypeError) as exc:
        raise EvaluatorConfigError(f"invalid options for evaluator {name!r}: {exc}") from exc

