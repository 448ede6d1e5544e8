"""Testing helpers shipped with evalwatch: a fake OpenAI-compatible judge and model server.

Public on purpose (see :mod:`evalwatch.testing.openai_server`): the benchmarks and journey
tests run it outside the test suite, and users can try a judge setup against it offline.
"""

from evalwatch.testing.openai_server import (
    FAULT_KINDS,
    FakeJudgeServer,
    ReceivedRequest,
    fake_score,
)

__all__ = ["FAULT_KINDS", "FakeJudgeServer", "ReceivedRequest", "fake_score"]
