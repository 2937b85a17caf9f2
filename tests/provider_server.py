"""A local fake of the OpenAI and Anthropic HTTP APIs, with scripted faults per model.

The real partner packages (``langchain_openai.ChatOpenAI``, ``langchain_anthropic.ChatAnthropic``,
``llama_index.llms.openai.OpenAI``, the ``openai`` SDK) talk to it over HTTP on 127.0.0.1,
so tests see what those clients really do with timeouts, retries, missing usage, dated
model names and broken streams.

Endpoints, shaped like the real APIs:

* ``POST /v1/chat/completions``: a JSON answer, or an SSE stream (``"stream": true``) of
  ``chat.completion.chunk`` objects ending with ``data: [DONE]``; the usage chunk
  (``choices: []``) is sent only when ``stream_options.include_usage`` is true. Tool
  calls when the request has ``tools`` and its last message is not a tool result.
* ``POST /v1/messages`` (Anthropic): a JSON message, or the event stream
  ``message_start`` (input usage) / ``content_block_*`` / ``message_delta`` (output
  usage) / ``message_stop``.

Answers name the *served* model: a dated name for the known aliases
(``gpt-4o-mini`` -> ``gpt-4o-mini-2024-07-18``), else the requested name.

Faults are scripted per requested model name with :meth:`FakeProvider.script`; each
request takes the next step, the last step repeats. Steps are strings:

``"ok"``, ``"no_usage"`` (an answer without usage, as many compatible servers send),
``"429"`` (rate limit, ``retry-after-ms: 20``), ``"500"``, ``"hang"`` (the answer
comes after :data:`HANG_SECONDS`, longer than a test client's timeout), ``"break:N"``
(a stream that breaks after N chunks; ``break:0`` breaks before the first), ``"empty"``
(a stream with no chunk at all, only ``[DONE]``), ``"no_content"`` (a stream whose
chunks carry no text), ``"400"`` (the request refused as too long for the context
window, as OpenAI does), ``"long:N"`` (an answer of N words; streamed one word a chunk,
:data:`LONG_CHUNK_SECONDS` apart, so a client can leave mid-stream).

With :attr:`FakeProvider.answer_words` set to N, every answer is ``word1 ... wordN``
whatever the model, and a request that ends with an assistant turn holding the first
words of that answer, then a user turn (a continuation request), is answered with the
rest only: a perfect continuer, to measure the plumbing of stream continuation.

Every request is counted per model (:meth:`FakeProvider.count`) and kept in order
(:attr:`FakeProvider.requests`), so a test can assert "the cheap model got exactly one
request". Only the standard library is used.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["HANG_SECONDS", "LONG_CHUNK_SECONDS", "SERVED_MODELS", "FakeProvider", "Request", "Step"]

HANG_SECONDS = 2.5
"""How long a ``"hang"`` step keeps the client waiting (ended early when the server stops)."""

SERVED_MODELS = {
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4o": "gpt-4o-2024-08-06",
    "claude-3-5-haiku-latest": "claude-3-5-haiku-20241022",
    "claude-sonnet-4-0": "claude-sonnet-4-20250514",
}
"""Requested alias -> the dated name the fake reports, as the real APIs do."""

LONG_CHUNK_SECONDS = 0.05
"""The pause before each word of a ``"long:N"`` stream."""

_KINDS = {"ok", "no_usage", "429", "500", "hang", "break", "empty", "no_content", "400", "long"}


@dataclass(frozen=True)
class Step:
    """What the fake does with one request (see the module docstring for the spellings)."""

    kind: str
    after: int = 0

    @classmethod
    def parse(cls, text: str) -> Step:
        kind, _, count = text.partition(":")
        if kind not in _KINDS:
            raise ValueError(f"unknown fake-provider step {text!r}; known: {sorted(_KINDS)}")
        return cls(kind=kind, after=int(count) if count else 0)


@dataclass
class Request:
    """One request the fake received."""

    api: str  # "openai" or "anthropic"
    model: str
    stream: bool
    body: dict[str, Any]
    step: str


@dataclass
class _Script:
    steps: list[Step] = field(default_factory=lambda: [Step("ok")])
    taken: int = 0

    def next(self) -> Step:
        step = self.steps[min(self.taken, len(self.steps) - 1)]
        self.taken += 1
        return step


def _words(value: Any) -> int:
    """A deterministic token count: the words of every string in a JSON value."""
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(_words(item) for item in value)
    if isinstance(value, dict):
        return sum(_words(item) for key, item in value.items() if key != "role")
    return 0


def _text_of(content: Any) -> str:
    """The text of an OpenAI or Anthropic message content (a string or text blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text") or "") for part in content if isinstance(part, dict))
    return ""


class _Server(ThreadingHTTPServer):
    # many clients at once (a load test): a connection beyond the listen backlog is
    # refused, which is not a fault anyone scripted
    request_queue_size = 1024


class FakeProvider:
    """The fake server: start it, point clients at :attr:`openai_url` / :attr:`anthropic_url`."""

    def __init__(self, *, keep_alive: bool = False) -> None:
        # keep_alive: answers keep their connection open as real providers do (load
        # benchmarks); tests keep the default, one request per connection
        self.keep_alive = keep_alive
        self._lock = threading.Lock()
        self._scripts: dict[str, _Script] = {}
        self.requests: list[Request] = []
        self.connections = 0  # connections accepted (pooled clients reuse theirs)
        self.answer_words: int | None = None
        # seconds each OpenAI answer waits before it goes out, as a real model takes
        # time: a load benchmark sets it (POST /_fake/answer-delay {"seconds": ...})
        self.answer_delay = 0.0
        self.stream_end_delay = 0.0  # seconds between a stream's [DONE] and its body's end
        self._stopping = threading.Event()
        provider = self

        class Handler(_Handler):
            fake = provider

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # ------------------------------------------------------------------ life cycle
    def start(self) -> FakeProvider:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def openai_url(self) -> str:
        """``base_url`` for OpenAI clients."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def anthropic_url(self) -> str:
        """``base_url`` for Anthropic clients."""
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ scripting
    def reset(self) -> None:
        """Forget scripts and requests (between tests)."""
        with self._lock:
            self._scripts.clear()
            self.requests.clear()
            self.answer_words = None
            self.answer_delay = 0.0
            self.stream_end_delay = 0.0

    def answer_text(self, requested: str, messages: list[dict[str, Any]]) -> str:
        """The text an answer holds (see :attr:`answer_words` for continuations)."""
        if self.answer_words is None:
            return f"answer from {requested}"
        full = " ".join(f"word{index}" for index in range(1, self.answer_words + 1))
        if len(messages) >= 2 and messages[-2].get("role") == "assistant":
            prefix = _text_of(messages[-2].get("content"))
            if prefix and full.startswith(prefix) and len(prefix) < len(full):
                return full[len(prefix) :]
        return full

    def script(self, model: str, *steps: str) -> None:
        """What the next requests for ``model`` get, in order; the last step repeats."""
        parsed = [Step.parse(step) for step in steps] or [Step("ok")]
        with self._lock:
            self._scripts[model] = _Script(parsed)

    def count(self, model: str) -> int:
        """How many requests named ``model``."""
        with self._lock:
            return sum(r.model == model for r in self.requests)

    def models_asked(self) -> list[str]:
        """The model of every request, in order."""
        with self._lock:
            return [r.model for r in self.requests]

    def _take(self, api: str, body: dict[str, Any]) -> Step:
        model = str(body.get("model"))
        with self._lock:
            step = self._scripts.setdefault(model, _Script()).next()
            label = step.kind if not step.after else f"{step.kind}:{step.after}"
            self.requests.append(Request(api, model, bool(body.get("stream")), body, label))
        return step

    def hang(self) -> bool:
        """Wait :data:`HANG_SECONDS`; True when the server stopped meanwhile."""
        return self._stopping.wait(HANG_SECONDS)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeProvider
    protocol_version = "HTTP/1.1"
    # headers and body go out in separate writes: without TCP_NODELAY a kept-alive
    # connection waits for the client's delayed ACK (40 ms) before the body
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    # ------------------------------------------------------------------ plumbing
    def end_headers(self) -> None:
        # one request per connection: a client never reuses a connection that an earlier
        # test's broken stream left half-closed (a stale pooled connection fails the next
        # request with a connection error, which is not what a test scripted)
        if not self.fake.keep_alive:
            self.send_header("Connection", "close")
            self.close_connection = True
        super().end_headers()

    def _json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _open_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _send(self, text: str) -> None:
        data = text.encode()
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _end_stream(self) -> None:
        if self.fake.stream_end_delay:  # the body's end comes apart from its last event
            time.sleep(self.fake.stream_end_delay)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _break(self) -> None:
        """Drop the connection mid-body: the client sees an incomplete chunked read."""
        self.wfile.flush()
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def handle(self) -> None:
        with self.fake._lock:
            self.fake.connections += 1
        # a client that gave up (a timeout) resets its connection: nothing to report
        with contextlib.suppress(ConnectionError):
            super().handle()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        try:
            if self.path == "/_fake/answer-delay":
                self.fake.answer_delay = float(body["seconds"])
                self._json(200, {"seconds": self.fake.answer_delay})
            elif self.path.rstrip("/").endswith("/chat/completions"):
                self._openai(body)
            elif self.path.rstrip("/").endswith("/messages"):
                self._anthropic(body)
            else:
                self._json(404, {"error": {"message": f"no route {self.path}"}})
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout)
            self.close_connection = True

    def _fault(self, api: str, step: Step) -> bool:
        """Answer a non-answer step (429, 500, hang); True when the request is done.

        A hang answers normally once it is over (a slow model), unless the server stops.
        """
        if step.kind == "hang":
            if self.fake.hang():
                self.close_connection = True
                return True
            return False
        if step.kind == "400":
            message = (
                "This model's maximum context length is 128000 tokens; the messages are longer"
            )
            if api == "openai":
                error = {"message": message, "type": "invalid_request_error"}
                payload = {
                    "error": {**error, "param": "messages", "code": "context_length_exceeded"}
                }
            else:
                payload = {
                    "type": "error",
                    "error": {"type": "invalid_request_error", "message": message},
                }
            self._json(400, payload)
            return True
        if step.kind in ("429", "500"):
            status = int(step.kind)
            if api == "openai":
                kind = "rate_limit_exceeded" if status == 429 else "server_error"
                payload: dict[str, Any] = {
                    "error": {"message": f"fake {status}", "type": kind, "code": kind}
                }
            else:
                kind = "rate_limit_error" if status == 429 else "api_error"
                payload = {"type": "error", "error": {"type": kind, "message": f"fake {status}"}}
            self._json(status, payload, {"retry-after-ms": "20"} if status == 429 else None)
            return True
        return False

    # ------------------------------------------------------------------ OpenAI
    def _openai(self, body: dict[str, Any]) -> None:
        step = self.fake._take("openai", body)
        if self._fault("openai", step):
            return
        if self.fake.answer_delay:
            time.sleep(self.fake.answer_delay)
        requested = str(body.get("model"))
        served = SERVED_MODELS.get(requested, requested)
        messages = body.get("messages") or []
        tools = body.get("tools") or []
        wants_tool = bool(tools) and (not messages or messages[-1].get("role") != "tool")
        text = self.fake.answer_text(requested, messages)
        if step.kind == "long":
            text = " ".join(f"word{index}" for index in range(1, step.after + 1))
        pieces = [word + " " for word in text.split()]
        pieces[-1] = pieces[-1].rstrip()
        usage = {
            "prompt_tokens": _words(messages) + 3,
            "completion_tokens": len(pieces),
            "total_tokens": _words(messages) + 3 + len(pieces),
        }
        created = int(time.time())
        call_id = "call_fake_1"
        tool_name = tools[0]["function"]["name"] if wants_tool else None
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": None if wants_tool else text}
            if wants_tool:
                message["tool_calls"] = [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": tool_name, "arguments": "{}"},
                    }
                ]
            payload = {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": created,
                "model": served,
                "system_fingerprint": "fp_fake",
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "logprobs": None,
                        "finish_reason": "tool_calls" if wants_tool else "stop",
                    }
                ],
            }
            if step.kind != "no_usage":
                payload["usage"] = usage
            self._json(200, payload)
            return

        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            data: dict[str, Any] = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": created,
                "model": served,
                "system_fingerprint": "fp_fake",
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            if include_usage:
                data["usage"] = None
            return data

        def chunks() -> Iterator[dict[str, Any]]:
            if step.kind == "empty":
                return
            yield chunk({"role": "assistant", "content": ""})
            if step.kind != "no_content":
                if wants_tool:
                    yield chunk(
                        {
                            "tool_calls": [
                                {
                                    "index": 0,
                                    "id": call_id,
                                    "type": "function",
                                    "function": {"name": tool_name, "arguments": ""},
                                }
                            ]
                        }
                    )
                    yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]})
                else:
                    for piece in pieces:
                        if step.kind == "long":
                            time.sleep(LONG_CHUNK_SECONDS)
                        yield chunk({"content": piece})
            yield chunk({}, "tool_calls" if wants_tool else "stop")
            if include_usage and step.kind != "no_usage":
                final = chunk({})
                final["choices"] = []
                final["usage"] = usage
                yield final

        self._open_stream()
        for sent, data in enumerate(chunks()):
            if step.kind == "break" and sent >= step.after:
                self._break()
                return
            self._send(f"data: {json.dumps(data)}\n\n")
        if step.kind == "break":
            self._break()
            return
        self._send("data: [DONE]\n\n")
        self._end_stream()

    # ------------------------------------------------------------------ Anthropic
    def _anthropic(self, body: dict[str, Any]) -> None:
        step = self.fake._take("anthropic", body)
        if self._fault("anthropic", step):
            return
        requested = str(body.get("model"))
        served = SERVED_MODELS.get(requested, requested)
        messages = body.get("messages") or []
        tools = body.get("tools") or []
        last = messages[-1] if messages else {}
        last_content = last.get("content")
        tool_result = isinstance(last_content, list) and any(
            isinstance(part, dict) and part.get("type") == "tool_result" for part in last_content
        )
        wants_tool = bool(tools) and not tool_result
        text = self.fake.answer_text(requested, messages)
        if step.kind == "long":
            text = " ".join(f"word{index}" for index in range(1, step.after + 1))
        pieces = [word + " " for word in text.split()]
        pieces[-1] = pieces[-1].rstrip()
        input_tokens = _words(messages) + _words(body.get("system") or "") + 3
        tool_block = {"type": "tool_use", "id": "toolu_fake_1", "name": None, "input": {}}
        if wants_tool:
            tool_block["name"] = tools[0]["name"]
        if not body.get("stream"):
            content = [tool_block] if wants_tool else [{"type": "text", "text": text}]
            payload = {
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "model": served,
                "content": content,
                "stop_reason": "tool_use" if wants_tool else "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": input_tokens, "output_tokens": len(pieces)},
            }
            self._json(200, payload)
            return

        def event(name: str, data: dict[str, Any]) -> str:
            return f"event: {name}\ndata: {json.dumps(data)}\n\n"

        def events() -> Iterator[str]:
            if step.kind == "empty":
                return
            yield event(
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": "msg_fake",
                        "type": "message",
                        "role": "assistant",
                        "model": served,
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": {"input_tokens": input_tokens, "output_tokens": 1},
                    },
                },
            )
            if step.kind != "no_content":
                if wants_tool:
                    start = {**tool_block, "input": {}}
                    yield event(
                        "content_block_start",
                        {"type": "content_block_start", "index": 0, "content_block": start},
                    )
                    yield event(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": 0,
                            "delta": {"type": "input_json_delta", "partial_json": "{}"},
                        },
                    )
                else:
                    yield event(
                        "content_block_start",
                        {
                            "type": "content_block_start",
                            "index": 0,
                            "content_block": {"type": "text", "text": ""},
                        },
                    )
                    for piece in pieces:
                        yield event(
                            "content_block_delta",
                            {
                                "type": "content_block_delta",
                                "index": 0,
                                "delta": {"type": "text_delta", "text": piece},
                            },
                        )
                yield event("content_block_stop", {"type": "content_block_stop", "index": 0})
            yield event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {
                        "stop_reason": "tool_use" if wants_tool else "end_turn",
                        "stop_sequence": None,
                    },
                    "usage": {"output_tokens": len(pieces)},
                },
            )
            yield event("message_stop", {"type": "message_stop"})

        self._open_stream()
        for sent, data in enumerate(events()):
            if step.kind == "break" and sent >= step.after:
                self._break()
                return
            self._send(data)
        if step.kind == "break":
            self._break()
            return
        self._end_stream()
