"""The LLM-as-judge evaluator: rubric scores from any OpenAI-compatible endpoint.

One metric per rubric. A score's ``value`` is the verdict normalised to [0, 1]; ``details``
keep the score on the rubric's own scale, the rubric version, each judge model's vote, the
tokens and cost, and whether it came from the cache; ``explanation`` is the judge's
reasoning. A call that fails after its retries is an ``error`` result with the reason (and
the raw output when the judge answered but not validly); calls not made because the run's
budget was reached are ``skipped`` with reason ``"budget"``.

Modes: ``single`` grades each response; ``pairwise`` compares it with a baseline answer
(``sample.meta["baseline_response"]``) in both orders (see :mod:`evalwatch.evaluators.pairwise`).
Several ``models`` make a jury (see :mod:`evalwatch.evaluators.jury`).

Endpoint, key, timeouts and concurrency come from :class:`evalwatch.settings.JudgeSettings`
(``EVALWATCH_JUDGE__*``, falling back to ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``). The key
never appears in the config, provenance, results, cache or logs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from statistics import fmean, pstdev
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator
from sqlalchemy.engine import Engine

from evalwatch.core import ScoreStatus
from evalwatch.core.redact import Redactor
from evalwatch.evaluators.base import (
    BaseEvaluator,
    BatchResult,
    EvaluatorConfig,
    EvaluatorUnavailable,
    MetricKind,
    MetricSpec,
    Sample,
    ScoreResult,
    register_evaluator,
)
from evalwatch.evaluators.judge_client import (
    ClientOptions,
    CostEstimate,
    JudgeClient,
    JudgeOutcome,
    JudgeRequest,
    RunStats,
    estimate_cost,
)
from evalwatch.evaluators.jury import aggregate_scores
from evalwatch.evaluators.openai_client import OpenAIEndpoint
from evalwatch.evaluators.pairwise import (
    Order,
    PairItem,
    PairResult,
    PairwiseReport,
    build_report,
    pair_requests,
    resolve_pairs,
)
from evalwatch.evaluators.rubrics import (
    Rubric,
    RubricError,
    available_rubrics,
    build_messages,
    load_rubrics,
)
from evalwatch.settings import JudgeSettings, Settings
from evalwatch.storage.repo import get_judge_cache

__all__ = [
    "ENDPOINT_HINT",
    "JudgeConfig",
    "JudgeEvaluator",
    "endpoint_configured",
    "rubric_metric",
]

logger = logging.getLogger(__name__)

ENDPOINT_HINT = (
    "set EVALWATCH_JUDGE__BASE_URL and EVALWATCH_JUDGE__MODEL (and EVALWATCH_JUDGE__API_KEY "
    "if the endpoint needs a key), or OPENAI_BASE_URL / OPENAI_API_KEY"
)


def endpoint_configured(settings: JudgeSettings) -> bool:
    """Whether a judge endpoint and model are set (a base URL or a key for OpenAI itself).

    Examples:
        >>> endpoint_configured(JudgeSettings(base_url="http://h/v1", model="m"))
        True
        >>> endpoint_configured(JudgeSettings(base_url="http://h/v1"))  # no model
        False
    """
    # has_key, not resolved_api_key: a Prefect Secret block is read only when the key is used.
    return bool(settings.model) and (settings.base_url is not None or settings.has_key())


class JudgeConfig(EvaluatorConfig):
    """Options of the judge evaluator. Endpoint and key are settings, not options."""

    rubrics: list[str] = Field(
        default_factory=lambda: ["helpfulness"],
        min_length=1,
        description="Rubric names (built-in or from rubric_paths) or rubric file paths.",
    )
    rubric_paths: list[str] = Field(
        default_factory=list, description="User rubric files or folders of *.yaml files."
    )
    mode: Literal["single", "pairwise"] = "single"
    models: list[str] = Field(
        default_factory=list,
        description="Judge models; several make a jury. Empty: the settings' judge.model.",
    )
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    repeats: int = Field(
        1, ge=1, le=20, description="Single mode: verdicts per item and model, averaged."
    )
    max_output_chars: int = Field(
        2_000,
        ge=0,
        description="Raw judge output kept on errors.",
        json_schema_extra={"runtime": True},
    )
    max_tokens: int | None = Field(None, ge=1, description="Cap on each verdict's tokens.")
    redact: bool | None = Field(
        None, description="Redact PII before sending; None follows settings.judge.redact."
    )
    baseline_key: str = Field(
        "baseline_response", description="Pairwise: sample.meta key of the baseline answer."
    )
    jury_disagreement: float = Field(
        2.0, gt=0, description="Scale points between jury votes that flag disagreement."
    )
    # How the calls are made, not what is asked: runtime-only (see EvaluatorConfig).
    cache: bool = Field(
        True,
        description="Use the store's judge cache when a store is given.",
        json_schema_extra={"runtime": True},
    )
    concurrency: int | None = Field(
        None,
        ge=1,
        description="None: settings.judge.concurrency.",
        json_schema_extra={"runtime": True},
    )
    timeout_s: float | None = Field(
        None,
        gt=0,
        description="None: settings.judge.timeout_s.",
        json_schema_extra={"runtime": True},
    )
    max_retries: int | None = Field(
        None,
        ge=0,
        description="None: settings.judge.max_retries.",
        json_schema_extra={"runtime": True},
    )
    budget_usd: float | None = Field(
        None,
        ge=0,
        description="None: settings.judge.budget_usd.",
        json_schema_extra={"runtime": True},
    )
    # Retries and their back-off are the openai client's own (see evaluators.openai_client);
    # these two are still accepted so that configs and stored provenance that name them load.
    backoff_base_s: float = Field(
        0.5,
        ge=0,
        description="Unused: the openai client backs off (accepted for older configs).",
        json_schema_extra={"runtime": True},
    )
    backoff_max_s: float = Field(
        30.0,
        ge=0,
        description="Unused: the openai client backs off (accepted for older configs).",
        json_schema_extra={"runtime": True},
    )

    rubric_versions: dict[str, str] = Field(
        default_factory=dict,
        description="Rubric name -> version, filled from the rubric files so that versions are "
        "part of the provenance and config hash; give it to pin versions (a mismatch is an "
        "error).",
    )

    @model_validator(mode="after")
    def _rubrics_exist(self) -> JudgeConfig:
        try:
            rubrics = load_rubrics(self.rubrics, self.rubric_paths)
        except RubricError as exc:
            raise ValueError(str(exc)) from exc
        actual = {r.name: r.version for r in rubrics}
        for name, pinned in self.rubric_versions.items():
            if name not in actual:
                raise ValueError(f"rubric_versions pins {name!r}, which is not in rubrics")
            if actual[name] != pinned:
                raise ValueError(
                    f"rubric {name!r} is at version {actual[name]}, the config pins {pinned}"
                )
        self.rubric_versions = actual
        if len(set(self.models)) != len(self.models):
            raise ValueError("judge models must be distinct")
        return self


_PairKey = tuple[str, str, Order]  # item id, model, order


def rubric_metric(rubric: Rubric, pairwise: bool = False) -> MetricSpec:
    """The metric a rubric gives: its verdict normalised to [0, 1], or a pairwise verdict.

    A two-point scale (pass/fail) is a rate; a pairwise verdict is the candidate's
    win (1), tie (0.5) or loss (0) against the baseline answer.

    Examples:
        >>> from evalwatch.evaluators.rubrics import load_rubric
        >>> m = rubric_metric(load_rubric("helpfulness"))
        >>> m.name, m.kind, m.range
        ('helpfulness', <MetricKind.score: 'score'>, (0.0, 1.0))
        >>> rubric_metric(load_rubric("helpfulness"), pairwise=True).name
        'helpfulness_pairwise'
    """
    if pairwise:
        return MetricSpec(
            name=f"{rubric.name}_pairwise",
            range=(0, 1),
            description=f"{rubric.name}, candidate against baseline: win 1, tie 0.5, loss 0.",
        )
    scale = rubric.scale
    return MetricSpec(
        name=rubric.name,
        kind=MetricKind.rate if scale.binary else MetricKind.score,
        range=(0, 1),
        description=f"{rubric.description} (judge score {scale.min}-{scale.max} mapped to 0-1)",
    )


@register_evaluator
class JudgeEvaluator(BaseEvaluator[JudgeConfig]):
    """Scores responses with an LLM judge on one or more rubrics.

    Args:
        config: Options (or pass them as keyword arguments).
        client: An :class:`~evalwatch.evaluators.openai_client.OpenAIEndpoint` or a ready
            :class:`JudgeClient`; built from the settings on :meth:`load` when omitted.
        settings: Judge settings; when omitted, read from the environment (and the config
            file) as :class:`~evalwatch.settings.JudgeSettings` does.
        engine: The store, for the judge cache.

    Examples:
        >>> JudgeEvaluator(rubrics=["helpfulness", "correctness"]).metric_names
        ['helpfulness', 'correctness']
    """

    name: ClassVar[str] = "judge"
    version: ClassVar[str] = "1.0"
    Config: ClassVar[type[EvaluatorConfig]] = JudgeConfig

    def __init__(
        self,
        config: JudgeConfig | None = None,
        *,
        client: OpenAIEndpoint | JudgeClient | None = None,
        settings: JudgeSettings | None = None,
        engine: Engine | None = None,
        **options: Any,
    ) -> None:
        super().__init__(config, **options)
        self._given_client = client
        self._settings = settings
        # Whether ``models`` came from the settings, which use_settings may still replace.
        self._models_from_settings = not self.config.models
        if self._models_from_settings and self.settings().model:
            # The judge model is part of what produced a score: record it in the config.
            self.config = self.config.model_copy(
                update={"models": [str(self.settings().model)]}
            )
        self._engine = engine if self.config.cache else None
        self._client: JudgeClient | None = None
        self._rubrics = load_rubrics(self.config.rubrics, self.config.rubric_paths)
        self.last_stats: RunStats | None = None
        self.last_estimate: CostEstimate | None = None
        self.last_pairwise: dict[str, PairwiseReport] = {}

    # -- contract ----------------------------------------------------------------------------

    @property
    def rubrics(self) -> list[Rubric]:
        """The loaded rubrics, in metric order."""
        return list(self._rubrics)

    @property
    def metrics(self) -> list[MetricSpec]:
        """One metric per rubric (``<rubric>_pairwise`` in pairwise mode)."""
        return [rubric_metric(r, self.config.mode == "pairwise") for r in self._rubrics]

    @classmethod
    def declared_metrics(cls, config: EvaluatorConfig | None = None) -> list[MetricSpec]:
        """Every rubric's metric in both modes: the built-in rubrics and ``config``'s files."""
        rubrics = available_rubrics()
        if isinstance(config, JudgeConfig):
            rubrics |= available_rubrics(config.rubric_paths)
            rubrics |= {r.name: r for r in load_rubrics(config.rubrics, config.rubric_paths)}
        return [rubric_metric(r, mode) for mode in (False, True) for r in rubrics.values()]

    def settings(self) -> JudgeSettings:
        """The judge settings in use."""
        if self._settings is None:
            self._settings = JudgeSettings()
        return self._settings

    def judge_models(self) -> list[str]:
        """The judge models: the ``models`` option, else the settings' model (maybe empty)."""
        if self.config.models:
            return list(self.config.models)
        model = self.settings().model
        return [model] if model else []

    def client_options(self) -> ClientOptions:
        """Throughput, retry and cost options: config overrides on top of the settings."""
        s, c = self.settings(), self.config
        return ClientOptions(
            concurrency=c.concurrency or s.concurrency,
            timeout_s=c.timeout_s or s.timeout_s,
            max_retries=c.max_retries if c.max_retries is not None else s.max_retries,
            budget_usd=c.budget_usd if c.budget_usd is not None else s.budget_usd,
            prices=dict(s.prices),
            max_tokens=c.max_tokens,
            max_output_chars=c.max_output_chars,
        )

    def _load(self) -> None:
        models = self.judge_models()
        if not models:
            raise EvaluatorUnavailable(f"no judge model configured: {ENDPOINT_HINT}")
        opts = self.client_options()
        if opts.budget_usd is not None:
            unpriced = [m for m in models if m not in opts.prices and "*" not in opts.prices]
            if unpriced:
                raise EvaluatorUnavailable(
                    f"a judge budget is set but judge.prices has no price for {unpriced}; "
                    "add them (EVALWATCH_JUDGE__PRICES) or remove the budget"
                )
        s = self.settings()
        if isinstance(self._given_client, JudgeClient):
            self._client = self._given_client
            return
        if isinstance(self._given_client, OpenAIEndpoint):
            self._client = JudgeClient(
                self._given_client, opts, self._engine, secret=None, owns_client=False
            )
            return
        if not endpoint_configured(s):
            raise EvaluatorUnavailable(f"no judge endpoint configured: {ENDPOINT_HINT}")
        self._client = JudgeClient.for_endpoint(
            s.base_url, s.resolved_api_key(), opts, self._engine
        )

    def use_settings(self, settings: Settings) -> None:
        """Use ``settings.judge`` (endpoint, key, model, limits) instead of the environment's.

        For callers that build the judge by name (:func:`~evaluators.base.create_evaluator`).
        A judge model taken from the earlier settings is replaced by this one's (a ``models``
        option stays), and a client built from them is closed: the next call builds one from
        these.
        """
        self._settings = settings.judge
        if self._models_from_settings:
            model = settings.judge.model
            self.config = self.config.model_copy(update={"models": [str(model)] if model else []})
        if self._client is not None and self._client is not self._given_client:
            self.close()

    def use_store(self, engine: Engine | None) -> None:
        """Attach the store whose judge cache this judge reads and fills (None detaches).

        For callers that build evaluators by name (:func:`~evaluators.base.create_evaluator`)
        and get the store later. Ignored when the ``cache`` option is off.
        """
        self._engine = engine if self.config.cache else None
        if self._client is not None and self._client is not self._given_client:
            self._client.engine = self._engine

    @property
    def client(self) -> JudgeClient:
        """The judge client (loading on first use)."""
        self.load()
        assert self._client is not None
        return self._client

    def close(self) -> None:
        """Release the HTTP client and its event loop."""
        if self._client is not None and self._client is not self._given_client:
            self._client.close()
        self._client = None
        self._loaded = False

    def derive(self, **updates: Any) -> JudgeEvaluator:
        """A judge with some options changed that shares this one's client, settings and store.

        Examples:
            >>> JudgeEvaluator(rubrics=["helpfulness"]).derive(rubrics=["coherence"]).metric_names
            ['coherence']
        """
        data = self.config.model_dump()
        if "rubrics" in updates or "rubric_paths" in updates:
            data.pop("rubric_versions")  # re-read from the new rubric list
        config = JudgeConfig.model_validate({**data, **updates})
        client = self._client or self._given_client
        return JudgeEvaluator(
            config, client=client, settings=self._settings, engine=self._engine
        )

    # -- planning ----------------------------------------------------------------------------

    def text_filter(self) -> Callable[[str], str]:
        """What every text goes through before it is sent: the redactor, or nothing."""
        return self._redactor()

    def _redactor(self) -> Callable[[str], str]:
        redact = self.config.redact if self.config.redact is not None else self.settings().redact
        if not redact:
            return lambda s: s
        r = Redactor()
        return lambda s: r.redact(s)[0]

    def _plan(
        self, samples: Sequence[Sample], models: Sequence[str]
    ) -> tuple[dict[tuple[int, str], ScoreResult], list[tuple[Any, JudgeRequest]]]:
        """Early results (inputs missing) and the requests to send, each with its key."""
        text = self._redactor()
        c = self.config
        early: dict[tuple[int, str], ScoreResult] = {}
        plan: list[tuple[Any, JudgeRequest]] = []
        for i, s in enumerate(samples):
            cache: dict[str | None, str | None] = {}

            def red(v: str | None, _cache: dict[str | None, str | None] = cache) -> str | None:
                if v is None:
                    return None
                if v not in _cache:
                    _cache[v] = text(v)
                return _cache[v]

            for r, metric in zip(self._rubrics, self.metric_names, strict=True):
                missing = r.missing_inputs(s.reference, s.context)
                if missing:
                    early[(i, r.name)] = ScoreResult.unscored(
                        s, metric,
                        f"rubric {r.name!r} requires {' and '.join(missing)}; the sample has none",
                        status=ScoreStatus.skipped,
                        details={"rubric_version": r.version},
                    )
                    continue
                if c.mode == "pairwise":
                    baseline = s.meta.get(c.baseline_key)
                    if not isinstance(baseline, str):
                        early[(i, r.name)] = ScoreResult.unscored(
                            s, metric,
                            f"pairwise mode needs the baseline answer in "
                            f"sample.meta[{c.baseline_key!r}]",
                            status=ScoreStatus.skipped,
                        )
                        continue
                    item = PairItem(
                        item_id=str(i), prompt=s.prompt, candidate=s.response, baseline=baseline,
                        reference=s.reference, context=s.context,
                    )
                    for m in models:
                        reqs = pair_requests(
                            item, r, m, c.temperature, c.max_tokens,
                            text=lambda v: red(v) or "",
                        )
                        for order, req in reqs.items():
                            plan.append(((r.name, str(i), m, order), req))
                    continue
                messages = build_messages(
                    r, red(s.prompt) or "", red(s.response) or "", red(s.reference),
                    red(s.context),
                )
                for m in models:
                    for k in range(c.repeats):
                        req = JudgeRequest(
                            model=m,
                            rubric=r.name,
                            rubric_version=r.version,
                            messages=messages,
                            kind="score",
                            scale_min=r.scale.min,
                            scale_max=r.scale.max,
                            temperature=c.temperature,
                            max_tokens=c.max_tokens,
                            repeat=k,
                        )
                        plan.append(((i, r.name, m, k), req))
        return early, plan

    def estimate(self, samples: Sequence[Sample]) -> CostEstimate:
        """Calls, tokens and cost of evaluating ``samples`` (cached calls are free).

        Needs the judge model but makes no call to the endpoint.
        """
        models = self.judge_models()
        if not models:
            raise EvaluatorUnavailable(f"no judge model configured: {ENDPOINT_HINT}")
        _, plan = self._plan(samples, models)
        requests = [req for _, req in plan]
        if self._client is not None:
            return self._client.estimate(requests)
        cached = set(get_judge_cache(self._engine, [r.key for r in requests])) if (
            self._engine is not None
        ) else set()
        return estimate_cost(requests, self.client_options().prices, cached_keys=cached)

    # -- evaluation --------------------------------------------------------------------------

    def evaluate(self, samples: Sequence[Sample]) -> BatchResult:
        """Judge every sample on every rubric: ``len(samples) * len(metrics)`` results."""
        if not samples:
            return BatchResult(scores=[])
        self.load()
        client = self.client
        models = self.judge_models()
        early, plan = self._plan(samples, models)
        requests = [req for _, req in plan]
        self.last_estimate = client.estimate(requests)
        logger.info("%s", self.last_estimate.summary())
        batch = client.judge(requests)
        self.last_stats = batch.stats
        logger.info(
            "judge run: %d ok, %d errors, %d skipped (budget), %d cache hits, %d calls, "
            "%d retries, $%.4f",
            batch.stats.ok, batch.stats.errors, batch.stats.skipped_budget,
            batch.stats.cache_hits, batch.stats.calls, batch.stats.retries, batch.stats.cost_usd,
        )
        outcomes = {key: out for (key, _), out in zip(plan, batch.outcomes, strict=True)}
        if self.config.mode == "pairwise":
            scores = self._pairwise_scores(samples, models, early, outcomes, batch.stats)
        else:
            scores = self._single_scores(samples, models, early, outcomes)
        n_tokens = batch.stats.input_tokens + batch.stats.output_tokens
        return BatchResult(scores=scores, n_tokens=n_tokens)

    def _single_scores(
        self,
        samples: Sequence[Sample],
        models: Sequence[str],
        early: dict[tuple[int, str], ScoreResult],
        outcomes: dict[Any, JudgeOutcome],
    ) -> list[ScoreResult]:
        scores: list[ScoreResult] = []
        for i, s in enumerate(samples):
            for r in self._rubrics:
                if (i, r.name) in early:
                    scores.append(early[(i, r.name)])
                else:
                    scores.append(self._single_score(i, s, r, models, outcomes))
        return scores

    def _single_score(
        self,
        i: int,
        s: Sample,
        r: Rubric,
        models: Sequence[str],
        outcomes: dict[Any, JudgeOutcome],
    ) -> ScoreResult:
        """One sample's score on one rubric: every model's repeats, then the jury's verdict."""
        c = self.config
        votes: dict[str, float | None] = {}
        per_model: dict[str, dict[str, Any]] = {}
        failures: list[tuple[str, JudgeOutcome]] = []
        reasonings: list[tuple[str, str]] = []
        tin = tout = cached = 0
        cost: float | None = 0.0
        for m in models:
            outs = [outcomes[(i, r.name, m, k)] for k in range(c.repeats)]
            for o in outs:
                tin += o.input_tokens
                tout += o.output_tokens
                cached += int(o.cached)
                cost = None if cost is None or o.cost is None else cost + o.cost
            failures += [(m, o) for o in outs if o.status != ScoreStatus.ok]
            votes[m], per_model[m], reasoning = _model_vote(outs)
            if reasoning is not None:
                reasonings.append((m, reasoning))
        jury = aggregate_scores(votes, r.scale, c.jury_disagreement)
        details: dict[str, Any] = {
            "rubric": r.name,
            "rubric_version": r.version,
            "scale": [r.scale.min, r.scale.max],
            "models": per_model,
            "input_tokens": tin,
            "output_tokens": tout,
            "cost_usd": cost,
            "cached_calls": cached,
            # Which judge-cache entries hold this sample's text (`privacy forget` deletes them).
            "cache_keys": sorted(
                {outcomes[(i, r.name, m, k)].key for m in models for k in range(c.repeats)}
            ),
        }
        if len(models) > 1:
            details["jury"] = {
                "method": jury.method,
                "disagreement": jury.disagreement,
                "spread": jury.spread,
                "missing": jury.missing,
            }
        if failures:
            details["failures"] = [
                {
                    "model": m,
                    "status": str(o.status),
                    "reason": o.reason,
                    **({"raw": o.raw} if o.raw else {}),
                }
                for m, o in failures
            ]
        if jury.score is None:
            reason, status = _unscored_reason(failures, len(models) > 1, jury.reason)
            return ScoreResult.unscored(s, r.name, reason, status, details)
        details["score"] = jury.score
        label = r.scale.labels.get(round(jury.score))
        explanation = (
            reasonings[0][1]
            if len(reasonings) == 1
            else "\n".join(f"[{m}] {t}" for m, t in reasonings)
        )
        return ScoreResult(
            subject_id=s.subject_id,
            subject_type=s.subject_type,
            metric=r.name,
            value=r.scale.normalise(jury.score),
            label=label[:100] if label else None,
            explanation=explanation or None,
            details=details,
        )

    def _pairwise_scores(
        self,
        samples: Sequence[Sample],
        models: Sequence[str],
        early: dict[tuple[int, str], ScoreResult],
        outcomes: dict[Any, JudgeOutcome],
        stats: RunStats,
    ) -> list[ScoreResult]:
        value = {"win": 1.0, "tie": 0.5, "loss": 0.0}
        self.last_pairwise = {}
        by_rubric: dict[str, dict[str, PairResult]] = {}
        for r in self._rubrics:
            items = [
                PairItem(item_id=str(i), prompt="", candidate="", baseline="")
                for i in range(len(samples)) if (i, r.name) not in early
            ]
            sub: dict[_PairKey, JudgeOutcome] = {
                (k[1], k[2], k[3]): o for k, o in outcomes.items() if k[0] == r.name
            }
            results = resolve_pairs(items, models, sub)
            by_rubric[r.name] = {p.item_id: p for p in results}
            self.last_pairwise[r.name] = build_report(r, models, results, stats)
        scores: list[ScoreResult] = []
        for i, s in enumerate(samples):
            for r, metric in zip(self._rubrics, self.metric_names, strict=True):
                if (i, r.name) in early:
                    scores.append(early[(i, r.name)])
                    continue
                p = by_rubric[r.name][str(i)]
                details: dict[str, Any] = {
                    "rubric": r.name,
                    "rubric_version": r.version,
                    "mode": "pairwise",
                    "position_consistent": p.consistent,
                    "models": p.per_model,
                    "input_tokens": p.input_tokens,
                    "output_tokens": p.output_tokens,
                    "cost_usd": p.cost_usd,
                    "cached_calls": p.cached_calls,
                    # Judge-cache entries holding this sample's text (`privacy forget`).
                    "cache_keys": sorted(
                        o.key for k, o in outcomes.items() if k[0] == r.name and k[1] == str(i)
                    ),
                }
                if len(models) > 1:
                    details["jury"] = {"method": "majority", "disagreement": p.disagreement}
                if p.outcome is None:
                    scores.append(
                        ScoreResult.unscored(s, metric, p.reason or "no verdict", p.status,
                                             details)
                    )
                    continue
                scores.append(
                    ScoreResult(
                        subject_id=s.subject_id,
                        subject_type=s.subject_type,
                        metric=metric,
                        value=value[p.outcome],
                        label=p.outcome,
                        explanation=p.reasoning,
                        details=details,
                    )
                )
        return scores


def _model_vote(outs: Sequence[JudgeOutcome]) -> tuple[float | None, dict[str, Any], str | None]:
    """One judge model's vote on a sample and rubric, from its repeated calls.

    Args:
        outs: The model's outcomes, one per repeat.

    Returns:
        Its score (mean of the repeats that gave one, None when none did), its entry in the
        score's details, and the reasoning of its first verdict (None without a verdict).
    """
    ok = [o for o in outs if o.status == ScoreStatus.ok and o.verdict]
    vals = [int(o.verdict["score"]) for o in ok if o.verdict]
    vote = fmean(vals) if vals else None
    entry: dict[str, Any] = {"score": vote, "scores": vals}
    if len(vals) > 1:
        entry["score_std"] = pstdev(vals)
    if len(vals) < len(outs):
        entry["failed_repeats"] = len(outs) - len(vals)
    reasoning: str | None = None
    if ok and ok[0].verdict:
        entry["response_format"] = ok[0].response_format
        entry["extraction"] = ok[0].verdict.get("extraction")
        reasoning = str(ok[0].verdict.get("reasoning") or "")
    return vote, entry, reasoning


def _unscored_reason(
    failures: Sequence[tuple[str, JudgeOutcome]], jury: bool, jury_reason: str | None
) -> tuple[str, ScoreStatus]:
    """Why a sample got no score: the budget (every call skipped) or the calls' errors.

    Args:
        failures: (model, outcome) of every failed call.
        jury: Whether several models judged (each reason then names its model).
        jury_reason: The jury's own reason, used when no call failed.

    Returns:
        The reason and the score's status.
    """
    if failures and all(o.status == ScoreStatus.skipped for _, o in failures):
        return "budget", ScoreStatus.skipped
    why = [f"{m}: {o.reason}" if jury else str(o.reason) for m, o in failures]
    return "; ".join(dict.fromkeys(why)) or str(jury_reason), ScoreStatus.error
