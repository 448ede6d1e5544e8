"""Calling the model under test to answer a test set (for ``evaluate_dataset``).

Through the same client as the judge, :class:`~evalwatch.evaluators.openai_client.OpenAIEndpoint`:
bounded concurrency, the ``openai`` client's own retries (``target.max_retries``, for 408,
409, 429, 5xx, timeouts and connection errors, honouring Retry-After) and a pool-wide pause on
429; an explicit error per item when the retries run out — no item is dropped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import openai

from evalwatch.evaluators.judge_client import cost_of
from evalwatch.evaluators.openai_client import OpenAIEndpoint, retries_taken
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
    endpoint: OpenAIEndpoint,
    model: str,
    key: str,
    prompt: str,
    target: TargetSettings,
    sem: asyncio.Semaphore,
) -> Generation:
    messages = []
    if target.system_prompt:
        messages.append({"role": "system", "content": target.system_prompt})
    messages.append({"role": "user", "content": prompt})
    await endpoint.gate.wait()  # before taking a slot, so a pause does not hold slots
    async with sem:
        t0 = time.perf_counter()
        try:
            raw = await endpoint.client.chat.completions.with_raw_response.create(
                model=model,
                messages=messages,  # type: ignore[arg-type]
                temperature=target.temperature,
                max_tokens=target.max_tokens,
            )
            resp = raw.parse()
        except openai.APIStatusError as exc:
            attempts = retries_taken(exc.request) + 1
            error = f"HTTP {exc.status_code}: {str(exc.message)[:200]}"
            if exc.status_code >= 500 or exc.status_code in (408, 409, 429):
                error = f"failed after retries: {error}"
            return Generation(key, None, error=error, attempts=attempts)
        except openai.APIError as exc:  # timeouts and connection errors, after the retries
            attempts = retries_taken(exc.request) + 1
            reason = f"{type(exc).__name__}: {exc}"[:300]
            return Generation(key, None, error=f"failed after retries: {reason}", attempts=attempts)
        attempts = raw.retries_taken + 1
        text = resp.choices[0].message.content if resp.choices else None
        if text is None:
            return Generation(
                key, None, error="the endpoint returned no message content", attempts=attempts
            )
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
            attempts=attempts,
        )


def generate_outputs(
    model: str,
    prompts: Sequence[tuple[str, str]],
    target: TargetSettings,
) -> list[Generation]:
    """Ask ``model`` at ``target.base_url`` to answer each ``(key, prompt)``, concurrently.

    Returns:
        One :class:`Generation` per prompt, in order: an output, or an error with its reason.
    """

    async def main() -> list[Generation]:
        endpoint = OpenAIEndpoint(
            target.base_url,
            target.api_key,
            timeout_s=target.timeout_s,
            max_retries=target.max_retries,
        )
        sem = asyncio.Semaphore(max(1, target.concurrency))
        try:
            return list(
                await asyncio.gather(
                    *(_one(endpoint, model, k, p, target, sem) for k, p in prompts)
                )
            )
        finally:
            await endpoint.aclose()

    return asyncio.run(main())
