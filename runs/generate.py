"""Calling the model under test to answer a test set (for ``evaluate_dataset``).

Uses the same retry discipline as the judge: bounded concurrency, a pool-wide pause on 429
that honours Retry-After, bounded retries with jittered back-off for timeouts and 5xx, and
an explicit error per item when retries run out — no item is dropped.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

import openai

from evalwatch.evaluators.judge_client import (
    PauseGate,
    cost_of,
    make_openai_client,
    retry_after_seconds,
)
from evalwatch.settings import TargetSettings

__all__ = ["Generation", "generate_outputs"]


@dataclass
class Generation:
    """One answer of the model under test, or the error that prevented it."""

    key: str
    output: str | None
    error: str | None = None
    latency_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost: float | None = None
    attempts: int = 0


async def _one(
    client: openai.AsyncOpenAI,
    model: str,
    key: str,
    prompt: str,
    target: TargetSettings,
    sem: asyncio.Semaphore,
    gate: PauseGate,
    base_backoff_s: float,
) -> Generation:
    messages = []
    if target.system_prompt:
        messages.append({"role": "system", "content": target.system_prompt})
    messages.append({"role": "user", "content": prompt})
    last = "no attempt made"
    for attempt in range(target.max_retries + 1):
        await gate.wait()
        async with sem:
            t0 = time.perf_counter()
            try:
                resp = await client.chat.completions.create(
                    model=model,
                    messages=messages,  # type: ignore[arg-type]
                    temperature=target.temperature,
                    max_tokens=target.max_tokens,
                )
            except openai.RateLimitError as exc:
                wait = retry_after_seconds(dict(exc.response.headers)) or base_backoff_s
                gate.pause(wait)
                last = f"rate limited (429) after {attempt + 1} attempts"
                continue
            except openai.APIStatusError as exc:
                last = f"HTTP {exc.status_code}: {str(exc.message)[:200]}"
                if exc.status_code < 500:
                    return Generation(key, None, error=last, attempts=attempt + 1)
            except (openai.APITimeoutError, openai.APIConnectionError) as exc:
                last = f"{type(exc).__name__}: {exc}"[:300]
            else:
                text = resp.choices[0].message.content if resp.choices else None
                if text is None:
                    last = "the endpoint returned no message content"
                else:
                    usage = resp.usage
                    tin = usage.prompt_tokens if usage else None
                    tout = usage.completion_tokens if usage else None
                    return Generation(
                        key,
                        text,
                        latency_ms=(time.perf_counter() - t0) * 1000,
                        input_tokens=tin,
                        output_tokens=tout,
                        cost=cost_of(model, tin or 0, tout or 0, target.prices) if usage else None,
                        attempts=attempt + 1,
                    )
        await asyncio.sleep(base_backoff_s * 2**attempt * random.uniform(0.5, 1.5))
    return Generation(
        key, None, error=f"failed after retries: {last}", attempts=target.max_retries + 1
    )


def generate_outputs(
    model: str,
    prompts: Sequence[tuple[str, str]],
    target: TargetSettings,
    *,
    base_backoff_s: float = 0.5,
) -> list[Generation]:
    """Ask ``model`` at ``target.base_url`` to answer each ``(key, prompt)``, concurrently.

    Returns:
        One :class:`Generation` per prompt, in order: an output, or an error with its reason.
    """

    async def main() -> list[Generation]:
        client = make_openai_client(target.base_url, target.api_key, target.timeout_s)
        sem = asyncio.Semaphore(max(1, target.concurrency))
        gate = PauseGate(jitter_s=0.1)
        try:
            return list(
                await asyncio.gather(
                    *(
                        _one(client, model, k, p, target, sem, gate, base_backoff_s)
                        for k, p in prompts
                    )
                )
            )
        finally:
            await client.close()

    return asyncio.run(main())
