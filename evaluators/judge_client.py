"""Calls to an OpenAI-compatible judge endpoint: fast, bounded, cost-aware and cached.

:class:`JudgeClient` sends many judge requests concurrently through the official ``openai``
async client and turns every one into exactly one :class:`JudgeOutcome` — ``ok`` with a
parsed verdict, ``error`` with its reason, or ``skipped`` (reason ``"budget"``). Nothing is
lost and nothing is judged twice within a run.

* Concurrency: an ``asyncio.Semaphore`` bounds requests in flight.
* Transport: the endpoint is an :class:`~evalwatch.evaluators.openai_client.OpenAIEndpoint`,
  the client shared with the model-under-test caller. Timeouts, connection errors, 408, 409,
  429 and 5xx are retried ``max_retries`` times by the ``openai`` client itself (exponential
  back-off with jitter, ``Retry-After`` honoured), and a 429 pauses the *whole pool* for the
  server's ``Retry-After`` instead of letting every worker hammer the server. A failure after
  the retries is an error with its reason and the number of attempts.
* Structured output: ``response_format`` JSON schema first; a server that rejects it is
  switched (once, for that model) to JSON mode, then to plain text with tolerant extraction.
  An unparseable or out-of-scale verdict, or a body that is not a chat completion (a
  proxy's error page), is asked again ``invalid_retries`` times, then becomes an error
  carrying the (truncated) raw output — never a score.
* Cost: token usage per call priced from a table; a per-run budget stops new calls and
  marks the rest skipped with reason ``"budget"``; :func:`estimate_cost` tells beforehand.
* Cache: answers are stored in the ``judge_cache`` table under a SHA-256 key of the judge
  model, rubric name and version and the exact request, so a re-run pays nothing twice.

The API key lives only inside the ``openai`` client; it is never logged, stored, or put in
a reason (server error texts are scrubbed of it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import threading
import time
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import httpx2
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from sqlalchemy.engine import Engine

from evalwatch.core import ScoreStatus
from evalwatch.evaluators.openai_client import OpenAIEndpoint, retries_taken
from evalwatch.evaluators.rubrics import RubricScale, verdict_response_format
from evalwatch.storage.repo import content_hash, get_judge_cache, put_judge_cache

if TYPE_CHECKING:
    # The openai package costs about 2 s to import; only a judge call needs it.
    import openai

__all__ = [
    "ClientOptions",
    "CostEstimate",
    "JudgeBatch",
    "JudgeClient",
    "JudgeOutcome",
    "JudgeRequest",
    "RunStats",
    "VerdictKind",
    "cost_of",
    "estimate_cost",
    "estimate_tokens",
    "parse_verdict",
]

logger = logging.getLogger(__name__)

VerdictKind = Literal["score", "pairwise"]
ResponseFormatMode = Literal["json_schema", "json_object", "text"]
_FORMAT_ORDER: tuple[ResponseFormatMode, ...] = ("json_schema", "json_object", "text")

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------
# Requests and outcomes


@dataclass(frozen=True)
class JudgeRequest:
    """One judge call: a model, the rubric it applies and the exact chat messages.

    ``key`` is derived from everything that determines the answer, and is the cache key.

    Examples:
        >>> a = JudgeRequest("m", "helpfulness", "1", [{"role": "user", "content": "x"}])
        >>> b = JudgeRequest("m", "helpfulness", "2", [{"role": "user", "content": "x"}])
        >>> a.key != b.key and len(a.key) == 64
        True
    """

    model: str
    rubric: str
    rubric_version: str
    messages: Sequence[Mapping[str, str]]
    kind: VerdictKind = "score"
    scale_min: int = 1
    scale_max: int = 5
    temperature: float = 0.0
    max_tokens: int | None = None
    repeat: int = 0
    key: str = field(init=False)

    def __post_init__(self) -> None:
        key = content_hash(
            {
                "model": self.model,
                "rubric": self.rubric,
                "rubric_version": self.rubric_version,
                "kind": self.kind,
                "scale": [self.scale_min, self.scale_max],
                "messages": [dict(m) for m in self.messages],
                "params": {"temperature": self.temperature, "max_tokens": self.max_tokens},
                # Repeats of one request are separate samples, not cache hits of each other.
                "repeat": self.repeat,
            }
        )
        object.__setattr__(self, "key", key)


@dataclass
class JudgeOutcome:
    """What became of one request. ``verdict`` is set only when ``status`` is ok."""

    key: str
    status: ScoreStatus
    verdict: dict[str, Any] | None = None
    reason: str | None = None
    raw: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float | None = 0.0
    attempts: int = 0
    cached: bool = False
    response_format: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain dict, for details and logs."""
        return asdict(self)


class RunStats(BaseModel):
    """Counters of one :meth:`JudgeClient.judge` call."""

    requests: int = 0
    unique: int = 0
    cache_hits: int = 0
    calls: int = Field(0, description="HTTP attempts, including retries.")
    retries: int = 0
    rate_limited: int = Field(0, description="HTTP 429 answers received.")
    invalid_verdicts: int = 0
    format_fallbacks: list[str] = Field(default_factory=list)
    ok: int = 0
    errors: int = 0
    skipped_budget: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_calls: int = 0
    paused_s: float = 0.0
    cache_write_errors: int = 0
    elapsed_s: float = 0.0

    @property
    def judgments_per_s(self) -> float | None:
        """Outcomes per second of wall time, or None for an instant run."""
        return self.unique / self.elapsed_s if self.elapsed_s > 0 else None


@dataclass
class JudgeBatch:
    """Outcomes in request order, and the run's counters."""

    outcomes: list[JudgeOutcome]
    stats: RunStats


class ClientOptions(BaseModel):
    """Throughput, retry, cost and output knobs of a :class:`JudgeClient`."""

    model_config = ConfigDict(extra="forbid")

    concurrency: int = Field(16, ge=1, description="Requests in flight at once.")
    max_retries: int = Field(
        3, ge=0, description="Retries for 429, 5xx, timeouts (the endpoint's openai client's)."
    )
    timeout_s: float = Field(60.0, gt=0, description="Per-attempt timeout (the endpoint's).")
    invalid_retries: int = Field(1, ge=0, description="Re-asks after an invalid verdict.")
    max_tokens: int | None = Field(None, ge=1, description="Cap on the judge's output tokens.")
    max_output_chars: int = Field(2_000, ge=0, description="Raw output kept with an error.")
    budget_usd: float | None = Field(None, ge=0, description="Stop new calls past this spend.")
    prices: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description="Model (or '*') -> USD per 1M input tokens, per 1M output tokens.",
    )
    expected_output_tokens: int = Field(200, ge=1, description="Output size for estimates.")
    cache_flush_every: int = Field(64, ge=1, description="Cache rows written per batch.")


# ---------------------------------------------------------------------------------------------
# Cost


def _price(model: str, prices: Mapping[str, tuple[float, float]]) -> tuple[float, float] | None:
    return prices.get(model, prices.get("*"))


def cost_of(
    model: str, input_tokens: int, output_tokens: int, prices: Mapping[str, tuple[float, float]]
) -> float | None:
    """USD cost of a call from a price table (per 1M tokens), or None for an unpriced model.

    Examples:
        >>> cost_of("m", 1_000_000, 500_000, {"m": (2.0, 8.0)})
        6.0
        >>> cost_of("other", 10, 10, {"m": (2.0, 8.0)}) is None
        True
    """
    p = _price(model, prices)
    if p is None:
        return None
    return (input_tokens * p[0] + output_tokens * p[1]) / 1_000_000


def estimate_tokens(messages: Sequence[Mapping[str, str]]) -> int:
    """Rough input tokens of chat messages: 4 characters a token plus 4 per message.

    The ratio is the usual rule of thumb for English with BPE tokenizers; estimates are
    for budgeting, and the recorded cost uses the server's reported usage.

    Examples:
        >>> estimate_tokens([{"role": "user", "content": "x" * 400}])
        104
    """
    return sum(math.ceil(len(m.get("content", "")) / 4) + 4 for m in messages)


class CostEstimate(BaseModel):
    """Calls and cost of a run, before it starts."""

    requests: int
    cached: int
    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None = Field(description="None when a model has no price.")
    per_model: dict[str, dict[str, float | int | None]]
    unpriced_models: list[str]

    def summary(self) -> str:
        """One line for humans."""
        cost = "unknown (no price for " + ", ".join(self.unpriced_models) + ")" if (
            self.cost_usd is None
        ) else f"${self.cost_usd:.4f}"
        return (
            f"judge estimate: {self.calls} calls ({self.cached} of {self.requests} cached), "
            f"~{self.input_tokens} input + ~{self.output_tokens} output tokens, cost {cost}"
        )


def estimate_cost(
    requests: Sequence[JudgeRequest],
    prices: Mapping[str, tuple[float, float]],
    expected_output_tokens: int = 200,
    cached_keys: set[str] | frozenset[str] = frozenset(),
) -> CostEstimate:
    """Estimate calls, tokens and cost of judging ``requests`` (cached ones are free).

    Invalid-verdict and transport retries are not included; they add calls only on failure.

    Args:
        requests: The requests of the run (duplicates count once).
        prices: Model -> USD per 1M input and output tokens.
        expected_output_tokens: Typical verdict length in tokens.
        cached_keys: Keys already in the cache.

    Returns:
        The estimate, per model and in total.

    Examples:
        >>> r = JudgeRequest("m", "h", "1", [{"role": "user", "content": "x" * 40}])
        >>> e = estimate_cost([r, r], {"m": (1.0, 1.0)}, expected_output_tokens=10)
        >>> e.calls, e.input_tokens, e.output_tokens
        (1, 14, 10)
    """
    unique = {r.key: r for r in requests}
    per_model: dict[str, dict[str, float | int | None]] = {}
    unpriced: set[str] = set()
    n_cached = 0
    for key, r in unique.items():
        m = per_model.setdefault(
            r.model, {"calls": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0}
        )
        if key in cached_keys:
            n_cached += 1
            continue
        tin = estimate_tokens(r.messages)
        m["calls"] = int(m["calls"] or 0) + 1
        m["input_tokens"] = int(m["input_tokens"] or 0) + tin
        m["output_tokens"] = int(m["output_tokens"] or 0) + expected_output_tokens
        c = cost_of(r.model, tin, expected_output_tokens, prices)
        if c is None:
            unpriced.add(r.model)
            m["cost_usd"] = None
        elif m["cost_usd"] is not None:
            m["cost_usd"] = float(m["cost_usd"]) + c
    total_cost: float | None = None
    if not unpriced:
        total_cost = sum(float(m["cost_usd"] or 0.0) for m in per_model.values())
    return CostEstimate(
        requests=len(requests),
        cached=n_cached,
        calls=sum(int(m["calls"] or 0) for m in per_model.values()),
        input_tokens=sum(int(m["input_tokens"] or 0) for m in per_model.values()),
        output_tokens=sum(int(m["output_tokens"] or 0) for m in per_model.values()),
        cost_usd=total_cost,
        per_model=per_model,
        unpriced_models=sorted(unpriced),
    )


class _Budget:
    """Per-run spend, checked before every call.

    A call starts only if spend so far, plus the estimates of calls in flight, plus its own
    estimate stay within the limit; after the first refusal every later call is refused too,
    so the run stops cleanly instead of trickling.
    """

    def __init__(self, limit: float | None) -> None:
        self.limit = limit
        self.spent = 0.0
        self.reserved = 0.0
        self.exhausted = False

    def reserve(self, estimate: float) -> bool:
        if self.limit is None:
            return True
        if self.exhausted or self.spent + self.reserved + estimate > self.limit:
            self.exhausted = True
            return False
        self.reserved += estimate
        return True

    def settle(self, estimate: float, actual: float | None) -> None:
        if self.limit is None:
            return
        self.reserved = max(0.0, self.reserved - estimate)
        self.spent += actual if actual is not None else estimate


# ---------------------------------------------------------------------------------------------
# Verdict parsing

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)
_SCORE_PATTERN = re.compile(r"\bscore\"?\s*(?:[:=]|is)\s*\"?(-?\d+(?:\.\d+)?)", re.IGNORECASE)
_WINNER_PATTERN = re.compile(
    r"\bwinner\"?\s*(?:[:=]|is)\s*\"?(A|B|tie)\b|\[\[(A|B|C|tie)\]\]", re.IGNORECASE
)


def _json_objects(text: str) -> list[dict[str, Any]]:
    """Every JSON object embedded in ``text``, in order."""
    decoder = json.JSONDecoder()
    found: list[dict[str, Any]] = []
    pos = text.find("{")
    while pos != -1:
        try:
            obj, end = decoder.raw_decode(text, pos)
        except ValueError:
            pos = text.find("{", pos + 1)
            continue
        if isinstance(obj, dict):
            found.append(obj)
        pos = text.find("{", end)
    return found


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+(?:\.0+)?\s*", value):
        return int(float(value))
    return None


def parse_verdict(
    raw: str | None, kind: VerdictKind = "score", scale: tuple[int, int] = (1, 5)
) -> tuple[dict[str, Any] | None, str | None]:
    """Parse a judge's answer tolerantly.

    Tried in order: strict JSON, JSON inside prose or a code fence, then a ``score: N`` /
    ``winner: A`` pattern.

    Args:
        raw: The model's text.
        kind: ``"score"`` (an integer on ``scale``) or ``"pairwise"`` (A, B or tie).
        scale: Inclusive score range.

    Returns:
        ``(verdict, None)`` with ``reasoning``, ``score`` or ``winner``, and ``extraction``
        (how it was found); or ``(None, problem)``.

    Examples:
        >>> parse_verdict('{"reasoning": "fine", "score": 4}')[0]["score"]
        4
        >>> parse_verdict("Mostly right. Score: 3")[0]["extraction"]
        'pattern'
        >>> parse_verdict('{"reasoning": "x", "score": 9}')[1]
        'score 9 is outside the 1-5 scale'
    """
    if raw is None or not raw.strip():
        return None, "empty answer"
    text = raw.strip()
    answer_key = "score" if kind == "score" else "winner"
    candidates: list[tuple[str, dict[str, Any]]] = []
    try:
        whole = json.loads(text)
        if isinstance(whole, dict):
            candidates.append(("json", whole))
    except ValueError:
        pass
    if not candidates:
        for block in _FENCE.findall(text):
            candidates += [("embedded_json", o) for o in _json_objects(block)]
        candidates += [("embedded_json", o) for o in _json_objects(text)]
    for how, obj in candidates:
        lowered = {str(k).lower(): v for k, v in obj.items()}
        if answer_key in lowered:
            reasoning = lowered.get("reasoning", lowered.get("explanation", ""))
            return _validate(lowered[answer_key], str(reasoning or ""), how, kind, scale)
    if kind == "score":
        matches = _SCORE_PATTERN.findall(text)
        if matches:
            m = _SCORE_PATTERN.search(text)
            reasoning = text[: m.start()].strip() if m else ""
            return _validate(matches[-1], reasoning, "pattern", kind, scale)
    else:
        wm = list(_WINNER_PATTERN.finditer(text))
        if wm:
            last = wm[-1]
            value = last.group(1) or last.group(2)
            return _validate(value, text[: wm[0].start()].strip(), "pattern", kind, scale)
    return None, f"no {answer_key} found in the answer"


def _validate(
    value: Any, reasoning: str, how: str, kind: VerdictKind, scale: tuple[int, int]
) -> tuple[dict[str, Any] | None, str | None]:
    if kind == "score":
        score = _as_int(value)
        if score is None:
            return None, f"score {value!r} is not an integer"
        lo, hi = scale
        if not lo <= score <= hi:
            return None, f"score {score} is outside the {lo}-{hi} scale"
        return {"reasoning": reasoning, "score": score, "extraction": how}, None
    text = str(value).strip()
    winner = {"a": "A", "b": "B", "tie": "tie", "c": "tie"}.get(text.lower())
    if winner is None:
        return None, f"winner {value!r} is not A, B or tie"
    return {"reasoning": reasoning, "winner": winner, "extraction": how}, None


# ---------------------------------------------------------------------------------------------
# The client


class _LoopThread:
    """A private event loop on a daemon thread.

    The async ``openai`` client and its connection pool belong to one event loop; keeping
    that loop alive between calls lets the client be built once and reused, and lets sync
    callers (and callers already inside an event loop, like async flows) use it.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="evalwatch-judge-loop", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._ensure()).result()

    def close(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()


class _Failure(Exception):
    """An attempt's failure, classified."""

    def __init__(
        self,
        reason: str,
        attempts: int,
        *,
        ask_again: bool = False,
        format_fallback: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        #: HTTP attempts this call made (the openai client's retries included).
        self.attempts = attempts
        #: Worth asking again like an invalid verdict (an answer that was not a completion).
        self.ask_again = ask_again
        self.format_fallback = format_fallback


_FORMAT_HINTS = ("response_format", "json", "schema", "guided", "structured", "grammar")


class JudgeClient:
    """Runs judge requests against an endpoint; see the module docstring for the behaviour.

    Args:
        endpoint: The endpoint; :meth:`for_endpoint` builds one from a URL and key with the
            options' timeout and retries.
        options: Throughput, retry, cost and output knobs (``timeout_s`` and ``max_retries``
            are the endpoint's; they are used when :meth:`for_endpoint` builds it).
        engine: The store, for the judge cache; None disables caching.
        secret: The API key, only to scrub it from server error texts.
        owns_client: Close ``endpoint`` in :meth:`close`.

    Examples:
        >>> jc = JudgeClient.for_endpoint("http://127.0.0.1:9/v1", None)
        >>> jc.options.concurrency, jc.endpoint.client.max_retries
        (16, 3)
        >>> jc.close()
    """

    def __init__(
        self,
        endpoint: OpenAIEndpoint,
        options: ClientOptions | None = None,
        engine: Engine | None = None,
        secret: SecretStr | None = None,
        owns_client: bool = True,
    ) -> None:
        self.endpoint = endpoint
        self.options = options or ClientOptions()
        self.engine = engine
        self._secret = secret
        self._owns_client = owns_client
        self._runner = _LoopThread()
        self._formats: dict[str, ResponseFormatMode] = {}
        self._budget = _Budget(self.options.budget_usd)
        self._lock = threading.Lock()  # one run at a time per client

    @classmethod
    def for_endpoint(
        cls,
        base_url: str | None,
        api_key: SecretStr | None,
        options: ClientOptions | None = None,
        engine: Engine | None = None,
    ) -> JudgeClient:
        """A client that owns a new :class:`OpenAIEndpoint` with the options' timeout, retries."""
        opts = options or ClientOptions()
        endpoint = OpenAIEndpoint(
            base_url, api_key, timeout_s=opts.timeout_s, max_retries=opts.max_retries
        )
        return cls(endpoint, opts, engine, secret=api_key, owns_client=True)

    # -- public API --------------------------------------------------------------------------

    @property
    def spent_usd(self) -> float:
        """Spend counted against the budget so far (all runs of this client)."""
        return self._budget.spent

    def reset_budget(self, budget_usd: float | None = None) -> None:
        """Start a new budget period (a new run)."""
        self._budget = _Budget(budget_usd if budget_usd is not None else self.options.budget_usd)

    def response_format_mode(self, model: str) -> ResponseFormatMode:
        """The structured-output mode currently used for ``model``."""
        return self._formats.get(model, "json_schema")

    def cached_keys(self, keys: Sequence[str]) -> set[str]:
        """Which of ``keys`` are already in the cache (none without a store)."""
        if self.engine is None or not keys:
            return set()
        return set(get_judge_cache(self.engine, keys))

    def estimate(self, requests: Sequence[JudgeRequest]) -> CostEstimate:
        """Calls, tokens and cost of ``requests``, counting cached ones as free."""
        return estimate_cost(
            requests,
            self.options.prices,
            self.options.expected_output_tokens,
            self.cached_keys([r.key for r in requests]),
        )

    def judge(self, requests: Sequence[JudgeRequest]) -> JudgeBatch:
        """Judge requests (blocking); one outcome per request, in order."""
        with self._lock:
            return self._runner.run(self.ajudge(requests))

    def close(self) -> None:
        """Close the HTTP client (if owned) and stop the private event loop."""
        if self._owns_client:
            try:
                self._runner.run(self.endpoint.aclose())
            except Exception as exc:  # closing must not mask the caller's own error
                logger.debug("closing the judge client failed: %s", type(exc).__name__)
        self._runner.close()

    def __enter__(self) -> JudgeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the run -----------------------------------------------------------------------------

    async def ajudge(self, requests: Sequence[JudgeRequest]) -> JudgeBatch:
        """Judge requests in the running event loop; see :meth:`judge`.

        Raises:
            ValueError: A budget is set but a request's model has no price, so the budget
                could not be enforced.
        """
        if self._budget.limit is not None:
            unpriced = sorted({r.model for r in requests if _price(r.model, self.options.prices)
                               is None})
            if unpriced:
                raise ValueError(
                    f"a judge budget is set but there is no price for {unpriced}; "
                    "add them to the price table"
                )
        t0 = time.perf_counter()
        stats = RunStats(requests=len(requests))
        unique: dict[str, JudgeRequest] = {}
        for r in requests:
            unique.setdefault(r.key, r)
        stats.unique = len(unique)
        results: dict[str, JudgeOutcome] = {}
        if self.engine is not None and unique:
            hits = await asyncio.to_thread(get_judge_cache, self.engine, list(unique))
            for key, row in hits.items():
                results[key] = _outcome_from_cache(key, row)
            stats.cache_hits = len(hits)
        sem = asyncio.Semaphore(self.options.concurrency)
        limited_before = self.endpoint.rate_limited
        paused_before = self.endpoint.gate.total_paused_s
        writer = _CacheWriter(self.engine, self.options.cache_flush_every, stats)
        pending = [r for k, r in unique.items() if k not in results]

        async def one(req: JudgeRequest) -> None:
            out = await self._judge_one(req, sem, stats)
            results[req.key] = out
            if out.status == ScoreStatus.ok and not out.cached:
                writer.add(req, out)

        await asyncio.gather(*(one(r) for r in pending))
        await writer.close()
        # The endpoint's counters span every run of this client: this run's share.
        stats.rate_limited = self.endpoint.rate_limited - limited_before
        stats.paused_s = round(self.endpoint.gate.total_paused_s - paused_before, 3)
        for out in results.values():
            if out.status == ScoreStatus.ok:
                stats.ok += 1
            elif out.status == ScoreStatus.skipped:
                stats.skipped_budget += 1
            else:
                stats.errors += 1
        stats.elapsed_s = time.perf_counter() - t0
        return JudgeBatch(outcomes=[results[r.key] for r in requests], stats=stats)

    def _scrub(self, text: str) -> str:
        if self._secret is not None:
            secret = self._secret.get_secret_value()
            if secret:
                text = text.replace(secret, "[REDACTED:secret]")
        return text[:500]

    async def _judge_one(
        self,
        req: JudgeRequest,
        sem: asyncio.Semaphore,
        stats: RunStats,
    ) -> JudgeOutcome:
        opts = self.options
        gate = self.endpoint.gate
        out = JudgeOutcome(key=req.key, status=ScoreStatus.error)
        est_cost = cost_of(
            req.model, estimate_tokens(req.messages), opts.expected_output_tokens, opts.prices
        )
        invalid_left = opts.invalid_retries
        while True:
            # Wait out a pool-wide pause before taking a slot, and again once holding one
            # (a pause may have begun while this worker queued); the endpoint's own retries
            # wait on the same gate.
            await gate.wait()
            async with sem:
                await gate.wait()
                if not self._budget.reserve(est_cost or 0.0):
                    out.status, out.reason = ScoreStatus.skipped, "budget"
                    return out
                mode = self.response_format_mode(req.model)
                try:
                    raw, tin, tout, attempts = await self._call(req, mode)
                except _Failure as fail:
                    self._budget.settle(est_cost or 0.0, 0.0)
                    failure: _Failure | None = fail
                    attempts = fail.attempts
                else:
                    failure = None
                    call_cost = cost_of(req.model, tin, tout, opts.prices)
                    self._budget.settle(est_cost or 0.0, call_cost)
                    out.input_tokens += tin
                    out.output_tokens += tout
                    stats.input_tokens += tin
                    stats.output_tokens += tout
                    if call_cost is None:
                        stats.unpriced_calls += 1
                        out.cost = None
                    else:
                        stats.cost_usd += call_cost
                        if out.cost is not None:
                            out.cost += call_cost
            out.attempts += attempts
            stats.calls += attempts
            stats.retries += attempts - 1
            if failure is None:
                out.response_format = mode
                verdict, problem = parse_verdict(
                    raw, req.kind, (req.scale_min, req.scale_max)
                )
                if verdict is not None:
                    out.status, out.verdict, out.reason = ScoreStatus.ok, verdict, None
                    out.raw = raw[: opts.max_output_chars]
                    return out
                stats.invalid_verdicts += 1
                if invalid_left > 0:
                    invalid_left -= 1
                    continue
                out.status = ScoreStatus.error
                out.reason = (
                    f"invalid verdict after {out.attempts} attempts: "
                    f"{problem or 'invalid verdict'}"
                )
                out.raw = (raw or "")[: opts.max_output_chars]
                return out
            if failure.format_fallback:
                if mode not in stats.format_fallbacks:
                    stats.format_fallbacks.append(mode)
                continue  # at once, in the next mode; the endpoint's retries are not spent
            if failure.ask_again and invalid_left > 0:
                invalid_left -= 1
                stats.retries += 1
                continue
            # The endpoint already retried what is worth retrying: this failure is final.
            out.status = ScoreStatus.error
            suffix = f" (after {out.attempts} attempts)" if out.attempts > 1 else ""
            out.reason = failure.reason + suffix
            return out

    async def _call(
        self, req: JudgeRequest, mode: ResponseFormatMode
    ) -> tuple[str, int, int, int]:
        """One call, the endpoint's retries included.

        Returns:
            ``(text, input tokens, output tokens, HTTP attempts)``.

        Raises:
            _Failure: The call failed after the endpoint's retries, or the answer was not a
                chat completion.
        """
        kwargs: dict[str, Any] = {
            "model": req.model,
            "messages": [dict(m) for m in req.messages],
            "temperature": req.temperature,
        }
        if req.max_tokens is not None:
            kwargs["max_tokens"] = req.max_tokens
        if mode == "json_schema":
            scale = RubricScale(min=req.scale_min, max=req.scale_max)
            kwargs["response_format"] = verdict_response_format(req.kind, scale)
        elif mode == "json_object":
            kwargs["response_format"] = {"type": "json_object"}
        import openai

        try:
            # The client's generic ``post`` (its documented way to send raw requests) is the
            # same HTTP request, auth, timeout, retries and error mapping as
            # ``chat.completions.create`` but skips the per-call TypedDict transform and the
            # pydantic model of the reply, a large share of the client's CPU per call at
            # hundreds of calls a second; the raw response also says how many retries it took.
            response = await self.endpoint.client.post(
                "/chat/completions", body=kwargs, cast_to=httpx2.Response
            )
        except openai.APIError as exc:
            raise self._failure(exc, mode, req.model) from None
        attempts = retries_taken(response.request) + 1
        text, tin, tout = _read_completion(response.text, attempts)
        return text, tin, tout, attempts

    def _failure(self, exc: openai.APIError, mode: ResponseFormatMode, model: str) -> _Failure:
        """The classified, scrubbed failure of a call the endpoint gave up on."""
        import openai

        attempts = retries_taken(exc.request) + 1
        if isinstance(exc, openai.RateLimitError):
            return _Failure("rate limited (HTTP 429)", attempts)
        if isinstance(exc, openai.BadRequestError):
            message = self._scrub(str(exc.message))
            if mode != "text" and any(h in message.lower() for h in _FORMAT_HINTS):
                nxt = _FORMAT_ORDER[_FORMAT_ORDER.index(mode) + 1]
                if self._formats.get(model, "json_schema") == mode:
                    self._formats[model] = nxt
                    logger.info(
                        "judge server rejected response_format %s for model %s; using %s",
                        mode, model, nxt,
                    )
                return _Failure(f"HTTP 400: {message}", attempts, format_fallback=True)
            return _Failure(f"HTTP 400: {message}", attempts)
        if isinstance(exc, openai.AuthenticationError):
            return _Failure(
                "HTTP 401: authentication failed; check the judge API key setting", attempts
            )
        if isinstance(exc, openai.APITimeoutError):
            return _Failure(f"timeout after {self.options.timeout_s:g}s", attempts)
        if isinstance(exc, openai.APIConnectionError):
            return _Failure(f"connection error: {self._scrub(str(exc))}", attempts)
        if isinstance(exc, openai.APIStatusError):
            return _Failure(
                f"HTTP {exc.status_code}: {self._scrub(str(exc.message))}", attempts
            )
        return _Failure(f"{type(exc).__name__}: {self._scrub(str(exc))}", attempts)


def _read_completion(body: str, attempts: int = 1) -> tuple[str, int, int]:
    """Text and token usage of a chat completion body; raises _Failure if it is not one.

    Examples:
        >>> _read_completion('{"choices": [{"message": {"content": "hi"}}], '
        ...                  '"usage": {"prompt_tokens": 3, "completion_tokens": 1}}')
        ('hi', 3, 1)
    """
    try:
        data = json.loads(body)
        message = data["choices"][0]["message"]
        text = message.get("content") or message.get("refusal") or ""
        usage = data.get("usage") or {}
        tin = int(usage.get("prompt_tokens") or 0)
        tout = int(usage.get("completion_tokens") or 0)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        # A proxy's error page or a truncated body; worth asking again.
        raise _Failure(
            f"malformed response: not a chat completion ({type(exc).__name__})",
            attempts,
            ask_again=True,
        ) from None
    if not isinstance(text, str):
        raise _Failure("malformed response: message content is not text", attempts, ask_again=True)
    return text, tin, tout


def _outcome_from_cache(key: str, row: Mapping[str, Any]) -> JudgeOutcome:
    body = row.get("response") or {}
    return JudgeOutcome(
        key=key,
        status=ScoreStatus.ok,
        verdict=body.get("verdict"),
        raw=body.get("raw"),
        input_tokens=0,
        output_tokens=0,
        cost=0.0,  # paid by the run that cached it
        attempts=0,
        cached=True,
        response_format=body.get("response_format"),
    )


class _CacheWriter:
    """Buffers new answers and writes them to the store in batches, off the event loop."""

    def __init__(self, engine: Engine | None, every: int, stats: RunStats) -> None:
        self.engine = engine
        self.every = every
        self.stats = stats
        self.rows: list[dict[str, Any]] = []
        self.tasks: list[asyncio.Task[None]] = []

    def add(self, req: JudgeRequest, out: JudgeOutcome) -> None:
        if self.engine is None:
            return
        self.rows.append(
            {
                "key": req.key,
                "model": req.model[:200],
                "rubric": req.rubric[:200],
                "rubric_version": req.rubric_version[:50],
                "response": {
                    "verdict": out.verdict,
                    "raw": out.raw,
                    "response_format": out.response_format,
                    "attempts": out.attempts,
                },
                "input_tokens": out.input_tokens,
                "output_tokens": out.output_tokens,
                "cost": out.cost,
            }
        )
        if len(self.rows) >= self.every:
            self._flush()

    def _flush(self) -> None:
        rows, self.rows = self.rows, []
        if rows:
            self.tasks.append(asyncio.create_task(self._write(rows)))

    async def _write(self, rows: list[dict[str, Any]]) -> None:
        assert self.engine is not None
        try:
            await asyncio.to_thread(put_judge_cache, self.engine, rows)
        except Exception as exc:  # a cache failure costs a future re-run, not this run
            self.stats.cache_write_errors += len(rows)
            logger.warning("judge cache write failed for %d rows: %s", len(rows), exc)

    async def close(self) -> None:
        self._flush()
        if self.tasks:
            await asyncio.gather(*self.tasks)
