"""A small OpenAI-compatible judge server on 127.0.0.1, for tests, benchmarks and trying a setup.

A public testing helper, not test-suite code: it ships with the package because things that
run outside the test suite need it — ``benchmarks/judge.py`` serves it from a child process,
the journey tests start it for a real ``evalwatch`` CLI, and users can point the judge (or a
dataset run's model under test) at it to try a configuration, a rubric or their retry and
budget settings offline, with faults on demand. Import it as ``evalwatch.testing``, or run it:
``python -m evalwatch.testing --port 8000 [--fault-rate 0.1] [--latency 0.05]``
serves until interrupted (``EVALWATCH_JUDGE_BASE_URL=http://127.0.0.1:8000/v1``).

It answers ``POST /v1/chat/completions`` with deterministic judge verdicts, so the real
``openai`` client can be exercised over real HTTP without a model:

* Single grading: the score comes from a ``[[score=N]]`` marker in the judged response, else
  from a hash of the response text (:func:`fake_score`). The scale is read from the request's
  JSON schema, else from the prompt ("an integer from 1 to 5").
* Pairwise: both responses are scored that way and the higher one wins; ``position_bias``
  makes it always pick the first, like a biased judge.
* Faults, injected three ways (first match wins): a queue of scripted faults for the next
  requests (:meth:`FakeJudgeServer.script`), a ``[[fault=KIND]]`` / ``[[fault=KINDxN]]``
  marker in the judged text, or in the prompt of a plain chat request (every time, or for
  the first N requests with that text), or a
  random ``fault_rate``. Kinds: ``429`` (with Retry-After), ``500``, ``slow`` (answers after
  ``slow_s``, past a client timeout), ``malformed`` (verdict text that is not JSON),
  ``out_of_scale`` (a score above the scale), ``bad_body`` (an HTTP body that is not JSON).
* ``supports_json_schema=False`` / ``supports_json_object=False`` reject those response
  formats with HTTP 400, like servers without structured output.
* Every request is recorded (model, messages, response format, fault) for assertions.

The server is threaded (one thread per connection, keep-alive), so many concurrent slow
requests do not block each other.

Examples:
    >>> with FakeJudgeServer() as srv:
    ...     srv.base_url.startswith("http://127.0.0.1:")
    True
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

__all__ = ["FAULT_KINDS", "FakeJudgeServer", "ReceivedRequest", "fake_score"]

FaultKind = Literal["429", "500", "slow", "malformed", "out_of_scale", "bad_body"]
FAULT_KINDS: tuple[str, ...] = ("429", "500", "slow", "malformed", "out_of_scale", "bad_body")

_SCORE_MARK = re.compile(r"\[\[score=(-?\d+)\]\]")
_FAULT_MARK = re.compile(r"\[\[fault=([a-z0-9_]+?)(?:x(\d+))?\]\]")
_SCALE_TEXT = re.compile(r"integer from (-?\d+) to (-?\d+)")


def fake_score(text: str, lo: int = 1, hi: int = 5) -> int:
    """The deterministic score the server gives a response without a ``[[score=N]]`` marker.

    Examples:
        >>> fake_score("hello") == fake_score("hello")
        True
        >>> 1 <= fake_score("anything") <= 5
        True
    """
    m = _SCORE_MARK.search(text)
    if m:
        return int(m.group(1))
    h = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
    return lo + h % (hi - lo + 1)


def _section(text: str, tag: str) -> str | None:
    m = re.search(rf"<<<{tag}\n(.*?)\n{tag}>>>", text, re.DOTALL)
    return m.group(1) if m else None


@dataclass
class ReceivedRequest:
    """What the server received (and did) for one chat completion request."""

    model: str
    messages: list[dict[str, Any]]
    response_format: str | None
    fault: str | None
    status: int
    at: float
    authorized: bool

    @property
    def user_text(self) -> str:
        """The last user message."""
        users = [m for m in self.messages if m.get("role") == "user"]
        return str(users[-1].get("content", "")) if users else ""

    @property
    def all_text(self) -> str:
        """Every message's content, joined."""
        return "\n".join(str(m.get("content", "")) for m in self.messages)


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: list[ReceivedRequest] = field(default_factory=list)
    script: deque[str | None] = field(default_factory=deque)
    marker_hits: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0
    max_in_flight: int = 0


class FakeJudgeServer:
    """A deterministic OpenAI-compatible judge with injectable faults.

    Args:
        latency_s: Delay before every answer.
        fault_rate: Share of requests answered with a random fault from ``fault_kinds``.
        fault_kinds: Faults drawn by ``fault_rate``.
        seed: Seed of the random faults.
        supports_json_schema: Accept ``response_format`` type ``json_schema``.
        supports_json_object: Accept ``response_format`` type ``json_object``.
        retry_after_s: ``Retry-After`` of a 429 (whole seconds are sent as an integer).
        send_retry_after_ms: Also send ``retry-after-ms`` (OpenAI does), for fast tests.
        slow_s: How long a ``slow`` fault takes.
        prose: Wrap the JSON verdict in prose and a code fence even in JSON modes.
        position_bias: ``"first"`` makes pairwise verdicts always pick response A.
        model_offsets: Per judge model, points added to every score (clamped to the scale).
        model_faults: Per judge model, a fault given to every one of its requests.
        expected_api_key: If set, requests without ``Bearer <key>`` get HTTP 401.
    """

    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        fault_rate: float = 0.0,
        fault_kinds: Iterable[str] = ("429", "500", "slow", "malformed", "out_of_scale"),
        seed: int = 0,
        supports_json_schema: bool = True,
        supports_json_object: bool = True,
        retry_after_s: float = 1.0,
        send_retry_after_ms: bool = False,
        slow_s: float = 5.0,
        prose: bool = False,
        position_bias: Literal["first"] | None = None,
        model_offsets: dict[str, int] | None = None,
        model_faults: dict[str, str] | None = None,
        expected_api_key: str | None = None,
    ) -> None:
        kinds = tuple(fault_kinds)
        unknown = (set(kinds) | set((model_faults or {}).values())) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {FAULT_KINDS}")
        self.latency_s = latency_s
        self.fault_rate = fault_rate
        self.fault_kinds = kinds
        self.supports_json_schema = supports_json_schema
        self.supports_json_object = supports_json_object
        self.retry_after_s = retry_after_s
        self.send_retry_after_ms = send_retry_after_ms
        self.slow_s = slow_s
        self.prose = prose
        self.position_bias = position_bias
        self.model_offsets = dict(model_offsets or {})
        self.model_faults = dict(model_faults or {})
        self.expected_api_key = expected_api_key
        self._rng = random.Random(seed)
        self._state = _State()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, port: int = 0) -> FakeJudgeServer:
        """Start serving on ``port`` of 127.0.0.1 (0: a free one)."""
        if self._httpd is not None:
            return self
        server = self

        class Handler(_Handler):
            judge = server

        httpd = _Server(("127.0.0.1", port), Handler)
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-judge-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeJudgeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port served on."""
        if self._httpd is None:
            raise RuntimeError("server not started")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """The ``/v1`` base URL for an OpenAI client."""
        return f"http://127.0.0.1:{self.port}/v1"

    # -- control and inspection ----------------------------------------------------------

    def script(self, *faults: str | None) -> None:
        """Queue faults (or ``None`` for a normal answer) for the next requests, in order."""
        for f in faults:
            if f is not None and f not in FAULT_KINDS:
                raise ValueError(f"unknown fault {f!r}; known: {FAULT_KINDS}")
        with self._state.lock:
            self._state.script.extend(faults)

    @property
    def requests(self) -> list[ReceivedRequest]:
        """Every chat completion request received so far."""
        with self._state.lock:
            return list(self._state.requests)

    @property
    def request_count(self) -> int:
        """How many chat completion requests arrived."""
        with self._state.lock:
            return len(self._state.requests)

    @property
    def max_in_flight(self) -> int:
        """The most requests being answered at the same time."""
        with self._state.lock:
            return self._state.max_in_flight

    def fault_counts(self) -> Counter[str]:
        """Requests per injected fault (``"none"`` for normal answers)."""
        with self._state.lock:
            return Counter(r.fault or "none" for r in self._state.requests)

    def reset(self) -> None:
        """Forget recorded requests, scripted faults and marker counts."""
        with self._state.lock:
            self._state.requests.clear()
            self._state.script.clear()
            self._state.marker_hits.clear()
            self._state.max_in_flight = 0

    # -- behaviour -----------------------------------------------------------------------

    def _choose_fault(self, judged: str, model: str) -> str | None:
        st = self._state
        with st.lock:
            if model in self.model_faults:
                return self.model_faults[model]
            if st.script:
                return st.script.popleft()
            m = _FAULT_MARK.search(judged)
            if m:
                kind, times = m.group(1), m.group(2)
                if times is None:
                    return kind
                key = hashlib.sha256(judged.encode()).hexdigest()
                st.marker_hits[key] += 1
                return kind if st.marker_hits[key] <= int(times) else None
            if self.fault_rate > 0 and self._rng.random() < self.fault_rate:
                return self._rng.choice(self.fault_kinds)
        return None

    def _record(self, req: ReceivedRequest) -> None:
        with self._state.lock:
            self._state.requests.append(req)

    def _enter(self) -> None:
        with self._state.lock:
            self._state.in_flight += 1
            self._state.max_in_flight = max(self._state.max_in_flight, self._state.in_flight)

    def _leave(self) -> None:
        with self._state.lock:
            self._state.in_flight -= 1

    def handle_chat(
        self, body: dict[str, Any], authorization: str | None
    ) -> tuple[int, dict[str, str], bytes, float]:
        """Answer one chat completion request.

        Returns:
            Status, extra headers, body bytes and seconds to wait before answering.
        """
        model = str(body.get("model", ""))
        messages = list(body.get("messages") or [])
        rf = body.get("response_format") or {}
        rf_type = rf.get("type") if isinstance(rf, dict) else None
        users = [m for m in messages if m.get("role") == "user"]
        user_text = str(users[-1].get("content", "")) if users else ""
        system_text = "\n".join(
            str(m.get("content", "")) for m in messages if m.get("role") == "system"
        )
        authorized = self.expected_api_key is None or authorization == (
            f"Bearer {self.expected_api_key}"
        )

        def done(status: int, fault: str | None) -> None:
            self._record(
                ReceivedRequest(
                    model=model,
                    messages=messages,
                    response_format=rf_type,
                    fault=fault,
                    status=status,
                    at=time.monotonic(),
                    authorized=authorized,
                )
            )

        refused = self._refusal(authorized, rf_type)
        if refused is not None:
            done(refused[0], None)
            return refused

        lo, hi = _scale(rf, system_text)
        single = _section(user_text, "RESPONSE")
        a, b = _section(user_text, "RESPONSE_A"), _section(user_text, "RESPONSE_B")
        if single is not None:
            judged = single
        elif a is not None or b is not None:
            judged = f"{a or ''}\n{b or ''}"
        else:
            judged = user_text  # a plain chat request (the model under test): its prompt
        fault = self._choose_fault(judged, model)
        delay = self.latency_s
        failed = self._fault_reply(fault, delay)
        if failed is not None:
            done(failed[0], fault)
            return failed
        if fault == "slow":
            delay += self.slow_s

        if single is not None or a is None or b is None:
            text = single if single is not None else user_text
            verdict, answer_key = self._graded(text, lo, hi, model, fault), "score"
        else:
            verdict, answer_key = self._compared(a, b, lo, hi, fault), "winner"
        content = self._content(verdict, answer_key, fault, rf_type)
        done(200, fault)
        return 200, {}, json.dumps(_completion(model, messages, user_text, content)).encode(), delay

    def _refusal(
        self, authorized: bool, rf_type: str | None
    ) -> tuple[int, dict[str, str], bytes, float] | None:
        """The error answer to a request this server refuses (bad key, unsupported format)."""
        if not authorized:
            return _error(401, "Incorrect API key provided.", "invalid_api_key")
        if rf_type == "json_schema" and not self.supports_json_schema:
            return _error(
                400,
                "response_format type 'json_schema' is not supported by this server",
                "invalid_request_error",
                param="response_format",
            )
        if rf_type == "json_object" and not self.supports_json_object:
            return _error(
                400,
                "response_format type 'json_object' is not supported",
                "invalid_request_error",
                param="response_format",
            )
        return None

    def _fault_reply(
        self, fault: str | None, delay: float
    ) -> tuple[int, dict[str, str], bytes, float] | None:
        """The answer of a fault that replaces the verdict (429, 500, a body that is not JSON)."""
        if fault == "429":
            status, headers, payload, _ = _error(429, "Rate limit reached.", "rate_limit_error")
            ra = self.retry_after_s
            headers["Retry-After"] = str(int(ra)) if float(ra).is_integer() else f"{ra:g}"
            if self.send_retry_after_ms:
                headers["retry-after-ms"] = str(int(ra * 1000))
            return status, headers, payload, delay
        if fault == "500":
            status, headers, payload, _ = _error(500, "Internal server error.", "server_error")
            return status, headers, payload, delay
        if fault == "bad_body":
            return 200, {}, b"<html>upstream proxy error", delay
        return None

    def _graded(self, text: str, lo: int, hi: int, model: str, fault: str | None) -> dict[str, Any]:
        """A single-grading verdict: the marked or hashed score, shifted by the model's offset."""
        score = fake_score(text, lo, hi)
        if not _SCORE_MARK.search(text):
            score = max(lo, min(hi, score + self.model_offsets.get(model, 0)))
        if fault == "out_of_scale":
            score = hi + 5
        return {
            "reasoning": f"Deterministic verdict for a {len(text)}-character response.",
            "score": score,
        }

    def _compared(self, a: str, b: str, lo: int, hi: int, fault: str | None) -> dict[str, Any]:
        """A pairwise verdict: the higher-scoring response wins (or the first, when biased)."""
        sa, sb = fake_score(a, lo, hi), fake_score(b, lo, hi)
        winner = "A" if sa > sb else "B" if sb > sa else "tie"
        if self.position_bias == "first":
            winner = "A"
        verdict: dict[str, Any] = {"reasoning": f"A scores {sa}, B scores {sb}.", "winner": winner}
        if fault == "out_of_scale":
            verdict["winner"] = "C-"
        return verdict

    def _content(
        self, verdict: dict[str, Any], answer_key: str, fault: str | None, rf_type: str | None
    ) -> str:
        """The verdict as the assistant's message: JSON, JSON in prose, or labelled lines."""
        if fault == "malformed":
            return '{"reasoning": "The response is mostly fine but'
        if rf_type in ("json_schema", "json_object") and not self.prose:
            return json.dumps(verdict)
        if rf_type in ("json_schema", "json_object"):
            return "Sure! Here is my verdict:\n```json\n" + json.dumps(verdict) + "\n```"
        label = answer_key.title()
        return f"Reasoning: {verdict['reasoning']}\n{label}: {verdict[answer_key]}"


def _completion(
    model: str, messages: Sequence[dict[str, Any]], user_text: str, content: str
) -> dict[str, Any]:
    """A chat completion object answering ``messages`` with ``content``, with token usage."""
    prompt_tokens = sum(len(str(m.get("content", ""))) for m in messages) // 4 + 1
    return {
        "id": f"chatcmpl-{hashlib.sha256(user_text.encode()).hexdigest()[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(content) // 4 + 1,
            "total_tokens": prompt_tokens + len(content) // 4 + 1,
        },
    }


def _scale(rf: Any, system_text: str) -> tuple[int, int]:
    try:
        enum = rf["json_schema"]["schema"]["properties"]["score"]["enum"]
        return int(min(enum)), int(max(enum))
    except (KeyError, TypeError, ValueError):
        pass
    m = _SCALE_TEXT.search(system_text)
    if m:
        return int(m.group(1)), int(m.group(2))
    return 1, 5


def _error(
    status: int, message: str, kind: str, param: str | None = None
) -> tuple[int, dict[str, str], bytes, float]:
    body = {"error": {"message": message, "type": kind, "param": param, "code": kind}}
    return status, {}, json.dumps(body).encode(), 0.0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
    judge: FakeJudgeServer

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet."""

    def _send(self, status: int, headers: dict[str, str], payload: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (e.g. timed out on a slow answer).
            self.close_connection = True

    def do_GET(self) -> None:
        """List models (``/v1/models``)."""
        if self.path.rstrip("/").endswith("/models"):
            payload = json.dumps({"object": "list", "data": []}).encode()
            self._send(200, {}, payload)
        else:
            self._send(404, {}, b'{"error": {"message": "not found"}}')

    def do_POST(self) -> None:
        """Answer ``/v1/chat/completions``."""
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, {}, b'{"error": {"message": "not found"}}')
            return
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._send(400, {}, b'{"error": {"message": "request body is not JSON"}}')
            return
        self.judge._enter()
        try:
            status, headers, payload, delay = self.judge.handle_chat(
                body, self.headers.get("Authorization")
            )
            if delay > 0:
                time.sleep(delay)
        finally:
            self.judge._leave()
        self._send(status, headers, payload)


def main(argv: Sequence[str] | None = None) -> None:
    """Serve a :class:`FakeJudgeServer` until interrupted (``python -m`` entry point)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m evalwatch.testing",
        description="A fake OpenAI-compatible judge/model server with injectable faults.",
    )
    parser.add_argument("--port", type=int, default=8000, help="Port on 127.0.0.1 (0: free).")
    parser.add_argument("--latency", type=float, default=0.0, help="Seconds per answer.")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="Share of random faults.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the random faults.")
    parser.add_argument("--api-key", default=None, help="Key requests must carry (default: any).")
    args = parser.parse_args(argv)
    server = FakeJudgeServer(
        latency_s=args.latency,
        fault_rate=args.fault_rate,
        seed=args.seed,
        expected_api_key=args.api_key,
    ).start(args.port)
    print(f"serving {server.base_url} (Ctrl-C stops)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
