"""The OpenAI chat-completions wire format: requests in, LangChain messages, answers out.

A request body is checked with :class:`ChatCompletionRequest` (a bad field becomes a
:class:`ApiError` naming it, HTTP 400); its messages become LangChain messages; an
answer (``AIMessage``) or a stream of ``AIMessageChunk`` becomes ``chat.completion`` /
``chat.completion.chunk`` objects shaped like OpenAI's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, convert_to_messages
from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "ApiError",
    "ChatCompletionRequest",
    "ChunkWriter",
    "completion_body",
    "error_body",
    "json_object",
    "parse_request",
    "parse_request_json",
    "to_messages",
    "usage_body",
]


class ApiError(Exception):
    """An error answered to the client as an OpenAI-shaped JSON body.

    Args:
        status: The HTTP status.
        message: What is wrong, for a person.
        type: OpenAI's error type (``"invalid_request_error"``, ...).
        code: A machine-readable code (``"model_not_found"``, ...).
        param: The request field at fault, if any.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param

    def body(self) -> dict[str, Any]:
        """The JSON body: ``{"error": {"message", "type", "param", "code"}}``."""
        return error_body(self.message, type=self.type, code=self.code, param=self.param)


def error_body(
    message: str, *, type: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """An OpenAI error body."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


class StreamOptions(BaseModel):
    """``stream_options`` of a request."""

    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """The fields of ``POST /v1/chat/completions`` that langroute reads; others are ignored."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    n: int = Field(default=1, ge=1, le=1, description="Only one choice is supported.")
    seed: int | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    response_format: dict[str, Any] | None = None

    @property
    def include_usage(self) -> bool:
        """Whether a stream ends with a usage chunk."""
        return bool(self.stream_options and self.stream_options.include_usage)

    @property
    def output_limit(self) -> int | None:
        """The answer's token cap the request gives (``None``: the route's own)."""
        return self.max_completion_tokens or self.max_tokens

    def stop_list(self) -> list[str] | None:
        """``stop`` as a list (``None``: none given)."""
        if self.stop is None:
            return None
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def model_kwargs(self) -> dict[str, Any]:
        """The sampling settings given, as call keyword arguments of the chosen model."""
        kwargs: dict[str, Any] = {}
        for name in (
            "temperature",
            "top_p",
            "seed",
            "presence_penalty",
            "frequency_penalty",
            "response_format",
        ):
            value = getattr(self, name)
            if value is not None:
                kwargs[name] = value
        if self.output_limit is not None:
            kwargs["max_tokens"] = self.output_limit
        return kwargs

    def tool_options(self) -> dict[str, Any]:
        """``bind_tools`` options: ``tool_choice`` and ``parallel_tool_calls`` when given."""
        options: dict[str, Any] = {}
        if self.tool_choice is not None:
            options["tool_choice"] = self.tool_choice
        if self.parallel_tool_calls is not None:
            options["parallel_tool_calls"] = self.parallel_tool_calls
        return options


def _field(location: tuple[Any, ...]) -> str:
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def json_object(body: bytes) -> dict[str, Any]:
    """A request body's JSON object.

    Raises:
        ApiError: 400, the body is not JSON, is nested too deep to parse, or is no object.
    """
    try:
        data = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}") from exc
    except RecursionError:
        raise ApiError(400, "the request body is nested too deep") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return data


def parse_request(
    body: bytes, check: Callable[[dict[str, Any]], None] | None = None
) -> ChatCompletionRequest:
    """Check a request body.

    Args:
        body: The raw body.
        check: Further checks of the parsed JSON, run before the fields are read (they
            raise :class:`ApiError`).

    Raises:
        ApiError: 400, the body is not JSON or a field is missing or invalid (named).
    """
    return parse_request_json(body, check)[1]


def parse_request_json(
    body: bytes, check: Callable[[dict[str, Any]], None] | None = None
) -> tuple[dict[str, Any], ChatCompletionRequest]:
    """:func:`parse_request`, with the body's JSON object as it came (to forward it).

    Raises:
        ApiError: see :func:`parse_request`.
    """
    data = json_object(body)
    if check is not None:
        check(data)
    try:
        return data, ChatCompletionRequest.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = _field(tuple(error["loc"]))
        message = error["msg"]
        if field == "n":
            message = "only n=1 is supported"
        raise ApiError(400, f"{field}: {message}", param=field or None) from exc


def to_messages(raw: list[dict[str, Any]]) -> list[BaseMessage]:
    """OpenAI messages as LangChain messages.

    Raises:
        ApiError: 400 naming the first message that is not a valid chat message.
    """
    messages: list[BaseMessage] = []
    for index, item in enumerate(raw):
        item = {name: value for name, value in item.items() if value is not None}  # null: absent
        if item.get("role") == "assistant" and "content" not in item:
            item["content"] = ""  # an assistant turn of tool calls only
        try:
            messages.extend(convert_to_messages([item]))
        except (ValueError, TypeError, KeyError) as exc:
            problem = str(exc).splitlines()[0]
            raise ApiError(
                400, f"messages[{index}]: {problem}", param=f"messages[{index}]"
            ) from exc
    return messages


def usage_body(usage: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """LangChain ``usage_metadata`` as OpenAI ``usage`` (``None``: none reported)."""
    if not usage:
        return None
    prompt = int(usage.get("input_tokens") or 0)
    completion = int(usage.get("output_tokens") or 0)
    body: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": int(usage.get("total_tokens") or prompt + completion),
    }
    cached = (usage.get("input_token_details") or {}).get("cache_read")
    if cached:
        body["prompt_tokens_details"] = {"cached_tokens": int(cached)}
    return body


def _text(message: BaseMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    return "".join(
        block if isinstance(block, str) else str(block.get("text") or "")
        for block in content
        if isinstance(block, str) or block.get("type") == "text"
    )


def _served(message: BaseMessage, fallback: str) -> str:
    name = (message.response_metadata or {}).get("model_name")
    return name if isinstance(name, str) and name else fallback


def completion_body(
    message: AIMessage, *, response_id: str, model: str, created: int | None = None
) -> dict[str, Any]:
    """A ``chat.completion`` object for one answer.

    ``model`` names the answer when its provider named no served model.
    """
    tool_calls = [
        {
            "id": call.get("id") or f"call_{index}",
            "type": "function",
            "function": {"name": call["name"], "arguments": json.dumps(call["args"])},
        }
        for index, call in enumerate(message.tool_calls)
    ]
    text = _text(message)
    reply: dict[str, Any] = {"role": "assistant", "content": text or (None if tool_calls else "")}
    if tool_calls:
        reply["tool_calls"] = tool_calls
    finish = (message.response_metadata or {}).get("finish_reason")
    body: dict[str, Any] = {
        "id": response_id,
        "object": "chat.completion",
        "created": created if created is not None else int(time.time()),
        "model": _served(message, model),
        "choices": [
            {
                "index": 0,
                "message": reply,
                "logprobs": None,
                "finish_reason": "tool_calls" if tool_calls else (finish or "stop"),
            }
        ],
    }
    usage = usage_body(message.usage_metadata)
    if usage is not None:
        body["usage"] = usage
    return body


class ChunkWriter:
    """Turns a stream of ``AIMessageChunk`` into ``chat.completion.chunk`` objects.

    Args:
        response_id: The ``id`` of every chunk.
        model: The model named until a chunk names the served one.
        include_usage: Send ``"usage": null`` on every chunk and a last chunk with the
            summed usage (``stream_options.include_usage``).
    """

    def __init__(self, *, response_id: str, model: str, include_usage: bool) -> None:
        self.response_id = response_id
        self.model = model
        self.include_usage = include_usage
        self.created = int(time.time())
        self.usage: dict[str, Any] | None = None
        self._started = False
        self._tools = False
        self._finish: str | None = None

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.response_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if self.include_usage:
            data["usage"] = None
        return data

    def _add_usage(self, usage: Mapping[str, Any] | None) -> None:
        if not usage:
            return
        if self.usage is None:
            self.usage = dict(usage)
            return
        for key in ("input_tokens", "output_tokens", "total_tokens"):
            self.usage[key] = int(self.usage.get(key) or 0) + int(usage.get(key) or 0)

    def chunks(self, message: AIMessageChunk) -> list[dict[str, Any]]:
        """The chunk objects for one LangChain chunk (none when it carries nothing new)."""
        self._add_usage(message.usage_metadata)
        self.model = _served(message, self.model)
        finish = (message.response_metadata or {}).get("finish_reason")
        if isinstance(finish, str) and finish:
            self._finish = finish
        delta: dict[str, Any] = {}
        if not self._started:
            delta["role"] = "assistant"
        text = _text(message)
        if text:
            delta["content"] = text
        calls = []
        for position, call in enumerate(message.tool_call_chunks or []):
            index = call.get("index")
            entry: dict[str, Any] = {"index": index if index is not None else position}
            if call.get("id"):
                entry["id"] = call["id"]
                entry["type"] = "function"
            function: dict[str, Any] = {}
            if call.get("name"):
                function["name"] = call["name"]
            function["arguments"] = call.get("args") or ""
            entry["function"] = function
            calls.append(entry)
        if calls:
            self._tools = True
            delta["tool_calls"] = calls
        if "content" not in delta and "tool_calls" not in delta:
            return []  # metadata only: the first chunk with output carries the role
        self._started = True
        return [self._chunk(delta)]

    def closing(self) -> list[dict[str, Any]]:
        """The last chunks: the finish reason, then the usage when it was asked for."""
        out = []
        if not self._started:
            out.append(self._chunk({"role": "assistant", "content": ""}))
            self._started = True
        finish = "tool_calls" if self._tools else (self._finish or "stop")
        out.append(self._chunk({}, finish))
        if self.include_usage:
            final = self._chunk({})
            final["choices"] = []
            final["usage"] = usage_body(self.usage)
            out.append(final)
        return out
