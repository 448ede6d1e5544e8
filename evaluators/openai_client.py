"""The one way evalwatch calls an OpenAI-compatible endpoint: the judge and the model under test.

:class:`OpenAIEndpoint` is an ``openai.AsyncOpenAI`` whose timeout and retries are the
``openai`` client's own (``max_retries``: 408, 409, 429, 5xx, timeouts and connection errors,
exponential back-off with jitter, a server's ``Retry-After`` honoured up to two minutes), plus
what one client per request cannot do alone: a **pool-wide pause on 429**. Every HTTP attempt,
the client's own retries included, first waits on the endpoint's :class:`PauseGate`; a 429
pauses the gate for the server's ``Retry-After``, so one rate-limited worker holds back every
other worker instead of each hammering the server until it is limited too.

The judge (:mod:`evalwatch.evaluators.judge_client`) and the model-under-test caller
(:mod:`evalwatch.runs.generate`) both build their client with :class:`OpenAIEndpoint`; what
they add on top (verdict parsing, response-format fallback, the budget) is theirs.

The API key lives only inside the ``openai`` client; it is never logged or stored.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping

import httpx2
from pydantic import SecretStr

__all__ = ["OpenAIEndpoint", "PauseGate", "retries_taken", "retry_after_seconds"]

#: Pause after a 429 that names no Retry-After: the ``openai`` client's first back-off.
_DEFAULT_PAUSE_S = 0.5
_PLACEHOLDER_KEY = "not-needed"  # local servers (vLLM, Ollama) accept any key
_RETRY_COUNT_HEADER = "x-stainless-retry-count"  # set by the openai client on every attempt


def retry_after_seconds(
    headers: Mapping[str, str] | None, now: float | None = None
) -> float | None:
    """Seconds a server asked us to wait.

    Reads ``retry-after-ms``, else ``Retry-After`` in seconds or as an HTTP date. None when
    absent or unreadable.

    Examples:
        >>> retry_after_seconds({"retry-after": "2"})
        2.0
        >>> retry_after_seconds({"retry-after-ms": "250"})
        0.25
    """
    from email.utils import parsedate_to_datetime

    if not headers:
        return None
    lower = {k.lower(): v for k, v in headers.items()}
    ms = lower.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    ra = lower.get("retry-after")
    if ra is None:
        return None
    try:
        return max(0.0, float(ra))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(ra).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (now if now is not None else time.time()))


def retries_taken(request: httpx2.Request | None) -> int:
    """How many retries the ``openai`` client made before sending ``request``.

    The client numbers each attempt in a request header; the last attempt's request is on
    the response and on every ``openai.APIError``.

    Examples:
        >>> retries_taken(httpx2.Request("POST", "http://h/", headers={_RETRY_COUNT_HEADER: "2"}))
        2
        >>> retries_taken(None)
        0
    """
    if request is None:
        return 0
    try:
        return int(request.headers.get(_RETRY_COUNT_HEADER, "0"))
    except ValueError:
        return 0


class PauseGate:
    """A pause shared by every worker of a pool: after a 429 nobody sends until it lifts.

    Examples:
        >>> g = PauseGate()
        >>> g.pause(0.01)
        >>> asyncio.run(g.wait()) >= 0.0
        True
    """

    def __init__(self, jitter_s: float = 0.0) -> None:
        self._resume_at = 0.0
        self.jitter_s = jitter_s
        self.total_paused_s = 0.0
        self.pauses = 0

    def pause(self, seconds: float) -> None:
        """Hold every worker for ``seconds`` from now (extends, never shortens, a pause)."""
        now = time.monotonic()
        until = now + seconds
        if until > self._resume_at:
            self.total_paused_s += until - max(now, self._resume_at)
            self._resume_at = until
            self.pauses += 1

    @property
    def paused(self) -> bool:
        """Whether a pause is in force now."""
        return time.monotonic() < self._resume_at

    async def wait(self) -> float:
        """Wait while paused; workers released together are staggered by a random jitter.

        Returns:
            Seconds waited.
        """
        waited = 0.0
        while (delay := self._resume_at - time.monotonic()) > 0:
            await asyncio.sleep(delay)
            waited += delay
        if waited > 0 and self.jitter_s > 0:
            extra = random.uniform(0, self.jitter_s)
            await asyncio.sleep(extra)
            waited += extra
        return waited


class OpenAIEndpoint:
    """An OpenAI-compatible endpoint: one async client, its retries and a pool-wide 429 pause.

    Args:
        base_url: OpenAI-compatible base URL (``http://host:8000/v1``); None for OpenAI.
        api_key: The key; endpoints without auth get a placeholder.
        timeout_s: Per-attempt timeout (the ``openai`` client's ``timeout``).
        max_retries: Retries of one request (the ``openai`` client's ``max_retries``).
        max_pause_s: Longest pool-wide pause one 429 can cause.

    Examples:
        >>> ep = OpenAIEndpoint("http://127.0.0.1:9/v1", None, timeout_s=5, max_retries=1)
        >>> ep.client.max_retries, ep.rate_limited
        (1, 0)
        >>> asyncio.run(ep.aclose())
    """

    def __init__(
        self,
        base_url: str | None,
        api_key: SecretStr | None,
        *,
        timeout_s: float = 60.0,
        max_retries: int = 3,
        max_pause_s: float = 120.0,
    ) -> None:
        self.gate = PauseGate(jitter_s=0.1)
        self.max_pause_s = max_pause_s
        #: HTTP attempts sent and 429 answers received, retries included (all runs).
        self.sent = 0
        self.rate_limited = 0
        # Imported here: the openai package costs about 2 s, and only an endpoint needs it.
        from openai import AsyncOpenAI, DefaultAsyncHttpxClient

        key = api_key.get_secret_value() if api_key is not None else _PLACEHOLDER_KEY
        # DefaultAsyncHttpxClient keeps the openai client's own connection limits and
        # redirects; the hooks run on every attempt, the client's retries included.
        http_client = DefaultAsyncHttpxClient(
            event_hooks={"request": [self._before_send], "response": [self._after_response]}
        )
        self.client = AsyncOpenAI(
            base_url=base_url,
            api_key=key,
            timeout=timeout_s,
            max_retries=max_retries,
            http_client=http_client,
        )

    async def _before_send(self, request: httpx2.Request) -> None:
        await self.gate.wait()
        self.sent += 1

    async def _after_response(self, response: httpx2.Response) -> None:
        if response.status_code == 429:
            self.rate_limited += 1
            wait = retry_after_seconds(dict(response.headers))
            self.gate.pause(min(self.max_pause_s, _DEFAULT_PAUSE_S if wait is None else wait))

    async def aclose(self) -> None:
        """Close the HTTP client (in the event loop that used it)."""
        await self.client.close()
