"""Test utilities shipped with evalwatch: a fake OpenAI-compatible judge server."""

from evalwatch.testing.openai_server import (
    FAULT_KINDS,
    FakeJudgeServer,
    ReceivedRequest,
    fake_score,
)

__all__ = ["FAULT_KINDS", "FakeJudgeServer", "ReceivedRequest", "fake_score"]
