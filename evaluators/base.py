"""The evaluator contract: samples in, exactly one result per sample per metric out.

An evaluator is a small class with a name, a version and a pydantic config, registered
explicitly with :func:`register_evaluator` (or through the ``evalwatch.evaluators`` entry-point
group). Results record what produced them, and a failure is an explicit unscored result.
A batch's results come as :class:`ScoreResult` objects (simple; what plug-ins usually return)
or as :class:`ScoreColumns` (one array per metric, no object per result; what the built-in
evaluators return, since an object per result costs as much as a fast model's call); the
runner stores both the same way.
"""

from __future__ import annotations

import functools
import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Generic,
    NamedTuple,
    Protocol,
    TypeVar,
    runtime_checkable,
)

import numpy as np
import numpy.typing as npt
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from evalwatch.core import ScoreStatus, SubjectType
from evalwatch.core.defaults import DEFAULT_EVALUATORS
from evalwatch.core.metrics import MetricKind, MetricSpec

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from evalwatch.settings import Settings

__all__ = [
    "DEFAULT_EVALUATORS",
    "ENTRY_POINT_GROUP",
    "BaseEvaluator",
    "BatchResult",
    "Cell",
    "Evaluator",
    "EvaluatorConfig",
    "EvaluatorConfigError",
    "EvaluatorUnavailable",
    "MetricKind",
    "MetricSpec",
    "Provenance",
    "Sample",
    "ScoreColumns",
    "ScoreResult",
    "Unscored",
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


#: Where a :class:`ScoreColumns` holds sparse per-cell facts: (sample row, metric name).
Cell = tuple[int, str]


class Unscored(NamedTuple):
    """Why one cell of a :class:`ScoreColumns` holds no value."""

    reason: str
    status: ScoreStatus = ScoreStatus.error


@dataclass(frozen=True, eq=False)
class ScoreColumns:
    """A batch's scores as columns: per metric one float64 array over the batch's samples.

    The columnar form of a batch's results, built without a Python object per result (a
    :class:`ScoreResult` costs a few microseconds, as much as a fast model spends per text).
    The runner turns it into score rows directly; :meth:`to_results` gives the same results as
    :class:`ScoreResult` objects for callers that want them.

    ``values[i, j]`` is metric ``metrics[j]`` of sample ``i`` (``subject_ids[i]``). A cell with
    no value holds NaN and has an :class:`Unscored` entry in ``unscored`` saying why (a failure
    is an explicit unscored value, never a silent 0); every other cell holds a finite value,
    inside its metric's declared range. ``details`` holds the few cells' details, sparse like
    the reasons. Build one with :meth:`from_samples`; the constructor checks all of this and
    raises ``ValueError`` otherwise. The arrays are read-only copies.

    Attributes:
        subject_ids: The samples' subject ids, in sample order (int64, shape ``(n,)``).
        subject_types: The samples' subject types, in sample order.
        metrics: The metrics' names, in column order (the evaluator's result order).
        values: Shape ``(n, len(metrics))``, float64; NaN exactly where unscored.
        unscored: ``(sample row, metric) -> Unscored`` for every cell without a value.
        details: ``(sample row, metric) -> details`` for the cells that have any.
        ranges: Each metric's declared ``(lo, hi)`` range, or None (unbounded / undeclared).

    Examples:
        >>> s = [Sample(subject_id=7, prompt="p", response="r"), Sample(subject_id=8, prompt="p",
        ...      response="")]
        >>> cols = ScoreColumns.from_samples(
        ...     s, [MetricSpec(name="score", range=(0, 1))], {"score": [0.5, float("nan")]},
        ...     unscored={(1, "score"): Unscored("empty response", ScoreStatus.skipped)})
        >>> [(r.subject_id, r.value, r.status.value, r.reason) for r in cols.to_results()]
        [(7, 0.5, 'ok', None), (8, None, 'skipped', 'empty response')]
    """

    subject_ids: np.ndarray
    subject_types: tuple[SubjectType, ...]
    metrics: tuple[str, ...]
    values: np.ndarray
    unscored: Mapping[Cell, Unscored] = field(default_factory=dict)
    details: Mapping[Cell, dict[str, Any]] = field(default_factory=dict)
    ranges: tuple[tuple[float, float] | None, ...] | None = None

    def __post_init__(self) -> None:
        ids = np.array(self.subject_ids, dtype=np.int64).reshape(-1)
        values = np.array(self.values, dtype=np.float64)
        metrics = tuple(self.metrics)
        n, k = len(ids), len(metrics)
        if values.ndim == 1 and k == 1:
            values = values.reshape(-1, 1)
        if values.shape != (n, k):
            raise ValueError(
                f"values have shape {values.shape}; {n} samples x {k} metrics need ({n}, {k})"
            )
        if len(self.subject_types) != n:
            raise ValueError(f"{len(self.subject_types)} subject types for {n} samples")
        if len(set(metrics)) != k:
            raise ValueError(f"metric names repeat: {list(metrics)}")
        ranges = tuple(self.ranges) if self.ranges is not None else (None,) * k
        if len(ranges) != k:
            raise ValueError(f"{len(ranges)} ranges for {k} metrics")
        col = {m: j for j, m in enumerate(metrics)}
        missing = np.zeros((n, k), dtype=bool)
        unscored: dict[Cell, Unscored] = {}
        for cell, why in self.unscored.items():
            i, j = self._cell(cell, n, col)
            why = why if isinstance(why, Unscored) else Unscored(*why)
            if not isinstance(why.reason, str) or not why.reason.strip():
                raise ValueError(f"unscored cell {cell} needs a reason")
            status = ScoreStatus(why.status)
            if status == ScoreStatus.ok:
                raise ValueError(f"unscored cell {cell} has status ok; use error or skipped")
            missing[i, j] = True
            unscored[cell] = Unscored(why.reason, status)
        nan = np.isnan(values)
        if (nan & ~missing).any():
            i, j = np.argwhere(nan & ~missing)[0]
            raise ValueError(
                f"sample {int(i)} (subject {int(ids[i])}), metric {metrics[j]!r}: NaN without "
                "an unscored reason"
            )
        if (missing & ~nan).any():
            i, j = np.argwhere(missing & ~nan)[0]
            raise ValueError(
                f"sample {int(i)} (subject {int(ids[i])}), metric {metrics[j]!r}: unscored "
                f"but holds the value {values[i, j]!r} (unscored cells hold NaN)"
            )
        scored = ~nan
        if not np.isfinite(values[scored]).all():
            i, j = np.argwhere(scored & ~np.isfinite(values))[0]
            raise ValueError(
                f"sample {int(i)} (subject {int(ids[i])}), metric {metrics[j]!r}: non-finite "
                f"value {values[i, j]!r}; mark it unscored with a reason"
            )
        for j, rng in enumerate(ranges):
            if rng is None:
                continue
            lo, hi = rng
            column = values[:, j]
            outside = scored[:, j] & ((column < lo) | (column > hi))
            if outside.any():
                i = int(np.flatnonzero(outside)[0])
                raise ValueError(
                    f"sample {i} (subject {int(ids[i])}), metric {metrics[j]!r}: value "
                    f"{column[i]!r} outside its declared range [{lo}, {hi}]"
                )
        for cell, det in self.details.items():
            self._cell(cell, n, col)
            if not isinstance(det, dict):
                raise ValueError(f"details of cell {cell} must be a dict, not {type(det).__name__}")
        ids.setflags(write=False)
        values.setflags(write=False)
        # A frozen dataclass: the normalised forms go in through object.__setattr__.
        object.__setattr__(self, "subject_ids", ids)
        object.__setattr__(self, "subject_types", tuple(map(SubjectType, self.subject_types)))
        object.__setattr__(self, "metrics", metrics)
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "unscored", unscored)
        object.__setattr__(self, "details", dict(self.details))
        object.__setattr__(self, "ranges", ranges)

    @staticmethod
    def _cell(cell: Cell, n: int, col: Mapping[str, int]) -> tuple[int, int]:
        i, metric = cell
        if not 0 <= i < n:
            raise ValueError(f"cell {cell}: sample row {i} outside 0..{n - 1}")
        if metric not in col:
            raise ValueError(f"cell {cell}: unknown metric {metric!r}")
        return i, col[metric]

    @classmethod
    def from_samples(
        cls,
        samples: Sequence[Sample],
        metrics: Sequence[MetricSpec | str],
        values: npt.ArrayLike | Mapping[str, Any],
        unscored: Mapping[Cell, Unscored] | None = None,
        details: Mapping[Cell, dict[str, Any]] | None = None,
    ) -> ScoreColumns:
        """Columns over ``samples``, with the metrics' declared ranges checked.

        Args:
            samples: The batch, in result order.
            metrics: The evaluator's metrics (specs give the ranges; plain names have none).
            values: An ``(n, len(metrics))`` array, or one array per metric name.
            unscored: Why each cell without a value (NaN) has none.
            details: Details of the cells that have any.

        Raises:
            ValueError: Lengths or names do not match, a NaN has no reason, a reason's cell
                holds a value, or a value is non-finite or outside its metric's range.
        """
        names = tuple(m.name if isinstance(m, MetricSpec) else str(m) for m in metrics)
        if isinstance(values, Mapping):
            if set(values) != set(names):
                raise ValueError(f"values for {sorted(values)}; the metrics are {list(names)}")
            cols = [np.asarray(values[m], dtype=np.float64).reshape(-1) for m in names]
            if len({len(c) for c in cols}) > 1:
                raise ValueError(
                    "metric columns differ in length: "
                    + ", ".join(f"{m} {len(c)}" for m, c in zip(names, cols, strict=True))
                )
            array = np.column_stack(cols) if cols else np.empty((len(samples), 0), dtype=np.float64)
        else:
            array = np.asarray(values, dtype=np.float64)
        return cls(
            subject_ids=np.fromiter(
                (s.subject_id for s in samples), dtype=np.int64, count=len(samples)
            ),
            subject_types=tuple(s.subject_type for s in samples),
            metrics=names,
            values=array,
            unscored=unscored or {},
            details=details or {},
            ranges=tuple(m.range if isinstance(m, MetricSpec) else None for m in metrics),
        )

    def __len__(self) -> int:
        """The number of results (samples x metrics)."""
        return int(self.values.size)

    def column(self, metric: str) -> np.ndarray:
        """One metric's values over the samples (NaN where unscored); read-only."""
        return self.values[:, self.metrics.index(metric)]

    def cells(
        self,
    ) -> Iterator[tuple[int, str, float | None, ScoreStatus, str | None, dict[str, Any] | None]]:
        """Every result as ``(row, metric, value, status, reason, details)``, sample-major.

        What the runner writes and :meth:`to_results` builds on: plain tuples, no objects.
        """
        unscored, details = self.unscored, self.details
        ok = ScoreStatus.ok
        sparse = bool(unscored or details)
        for i, row in enumerate(self.values.tolist()):
            for metric, value in zip(self.metrics, row, strict=True):
                if not sparse:
                    yield i, metric, value, ok, None, None
                    continue
                why = unscored.get((i, metric))
                det = details.get((i, metric))
                if why is None:
                    yield i, metric, value, ok, None, det
                else:
                    yield i, metric, None, why.status, why.reason, det

    def to_results(self) -> list[ScoreResult]:
        """The same results as :class:`ScoreResult` objects, sample-major (slow; for callers)."""
        ids, types = self.subject_ids.tolist(), self.subject_types
        return _score_list().validate_python(
            [
                {
                    "subject_id": ids[i],
                    "subject_type": types[i],
                    "metric": metric,
                    "value": value,
                    "status": status,
                    "reason": reason,
                    "details": det,
                }
                for i, metric, value, status, reason, det in self.cells()
            ]
        )


@functools.cache
def _score_list() -> TypeAdapter[list[ScoreResult]]:
    return TypeAdapter(list[ScoreResult])


class BatchResult(BaseModel):
    """An evaluator's output for a batch: its results in one of two forms, plus extras.

    The results come either as a list of :class:`ScoreResult` (``scores=``, sample-major,
    metric-minor: the simple form, fine for plug-ins) or as :class:`ScoreColumns`
    (``columns=``: no object per result, for evaluators whose model is fast enough that
    building objects would show). The runner stores either form the same way. ``scores``
    reads the results as a list whichever form they came in (built on first read for columns).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True)

    score_list: list[ScoreResult] | None = Field(
        None, alias="scores", description="The results as objects (given as ``scores=``)."
    )
    columns: ScoreColumns | None = Field(None, description="The results as columns.")
    embeddings: np.ndarray | None = Field(
        None, description="One row per sample (float32), or None for evaluators without one."
    )
    embedding_model: str | None = None
    n_tokens: int | None = Field(None, description="Tokens processed, for tokens/s.")
    _materialised: list[ScoreResult] | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _one_form(self) -> BatchResult:
        if (self.score_list is None) == (self.columns is None):
            raise ValueError("give the results either as scores=[...] or as columns=, not both")
        return self

    @property
    def scores(self) -> list[ScoreResult]:
        """Every result as a :class:`ScoreResult`, sample-major, whichever form was given."""
        if self.score_list is not None:
            return self.score_list
        if self._materialised is None:
            assert self.columns is not None  # one of the two forms is set (validated)
            self._materialised = self.columns.to_results()
        return self._materialised

    @property
    def n_results(self) -> int:
        """How many results the batch holds, without building any object."""
        if self.columns is not None:
            return len(self.columns)
        return len(self.score_list or [])


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

    def use_settings(self, settings: Settings) -> None:
        """Take the caller's settings, for evaluators configured by them (the judge's endpoint).

        Callers that build evaluators by name (:func:`create_evaluator` takes options only)
        call it before the first :meth:`load`, so an evaluator reads the settings it is given
        rather than the environment; the default needs no settings and ignores them.
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

